"""A burst of concurrent decisions never hands the same GPU capacity out twice.

The test plays kube-scheduler: scheduling cycles are serial (filter, prioritize, pick a node, count the
pod's nvidia.com/gpu units on it), bindings run concurrently from many threads. Sometimes (10%) the
emulated scheduler overrides the extender's top node for a whole-GPU pod, as strong in-tree
preferences can, but never beyond the node's free units, as NodeResourcesFit would not.
"""

from __future__ import annotations

import random
import threading
from collections import defaultdict

import pytest

from gpufleet.scheduler.extender.server import ExtenderServer

from . import payloads as P
from .conftest import Client, eight_gpu_nodes, make_rig

NODES = 8
THREADS = 8


def _burst(rig, pods, *, bind: bool, seed: int, units_per_node: int | None = 8) -> list[str]:
    server = ExtenderServer(rig.extender, rig.metrics, "127.0.0.1", 0)
    server.start()
    names = [f"gpu-{i:03d}" for i in range(NODES)]
    units = dict.fromkeys(names, 0)
    cycle = threading.Lock()  # kube-scheduler's scheduling cycle is serial; binding cycles are not
    errors: list[str] = []
    start = threading.Barrier(THREADS)

    def schedule(client: Client, rng: random.Random, pod) -> str | None:
        need = int(pod["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu", 0))
        with cycle:
            fits = [n for n in names if units_per_node is None or units[n] + need <= units_per_node]
            status, filtered = client.post("filter", P.names_args(pod, fits))
            assert status == 200
            if not filtered["NodeNames"]:
                return None
            status, scores = client.post("prioritize", P.names_args(pod, filtered["NodeNames"]))
            assert status == 200
            top = max(scores, key=lambda h: h["Score"])
            if top["Score"] == 0 and not bind:
                return None  # without bind, a pod the extender found no room for is not counted
            node = top["Host"]
            if need and rng.random() < 0.1:
                node = rng.choice([h["Host"] for h in scores])
            units[node] += need
            return node

    def worker(index: int) -> None:
        rng = random.Random(seed + index)
        client = Client(server.port)
        try:
            start.wait()
            for pod in pods[index::THREADS]:
                node = schedule(client, rng, pod)
                if node is None:
                    errors.append(f"{pod['metadata']['name']}: no node")
                elif bind:
                    _status, reply = client.post("bind", P.binding_args(pod, node))
                    if reply["Error"]:
                        errors.append(reply["Error"])
        except Exception as err:  # noqa: BLE001 - reported by the main thread
            errors.append(repr(err))
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    server.stop()
    return errors


@pytest.mark.parametrize("policy", ["fgd", "binpack", "spread", "cost"])
def test_whole_gpu_pods_filling_the_cluster_never_share_a_gpu(policy):
    rig = make_rig(eight_gpu_nodes(NODES))
    sizes = [1, 2, 1, 4] * 8  # 64 GPUs asked, 64 GPUs in the cluster
    pods = [P.pod(f"p-{i}", gpus=g, cpu="1", annotations={"gpufleet.io/placement": policy})
            for i, g in enumerate(sizes)]
    for pod in pods:
        rig.api.add_pod(pod)
    errors = _burst(rig, pods, bind=True, seed=7)
    assert not [e for e in errors if "no node" not in e], errors
    held = defaultdict(list)
    for b in rig.api.binds:
        for gpu in b["annotations"]["gpufleet.io/gpu-ids"].split(","):
            held[(b["node"], int(gpu))].append(b["name"])
    doubled = {k: v for k, v in held.items() if len(v) > 1}
    assert not doubled, doubled
    assert len(rig.api.binds) + len(errors) == len(pods)


def test_gpu_shares_from_concurrent_binds_never_exceed_a_whole_gpu():
    rig = make_rig(eight_gpu_nodes(NODES))
    shares = [250, 500, 750, 300] * 40  # 1.8x the cluster's capacity
    pods = [P.pod(f"s-{i}", gpus=0, cpu="100m", annotations={"gpufleet.io/placement": "fgd",
                                                           "gpufleet.io/gpu-milli": str(m)})
            for i, m in enumerate(shares)]
    for pod in pods:
        rig.api.add_pod(pod)
    errors = _burst(rig, pods, bind=True, seed=11, units_per_node=None)
    assert not [e for e in errors if "no node" not in e], errors
    used = defaultdict(int)
    milli = {p["metadata"]["name"]: int(p["metadata"]["annotations"]["gpufleet.io/gpu-milli"]) for p in pods}
    for b in rig.api.binds:
        used[(b["node"], int(b["annotations"]["gpufleet.io/gpu-ids"]))] += milli[b["name"]]
    assert max(used.values()) <= 1000
    # and the cluster did fill up: how full depends on the order the threads deliver the pods (12 runs
    # under load: 92-97%; one loaded CI run 89.7%), so the bound only rules out a burst that never got there
    assert sum(used.values()) >= 0.85 * 64_000


def test_decisions_without_bind_hold_disjoint_gpus_until_they_expire():
    rig = make_rig(eight_gpu_nodes(NODES))
    pods = [P.pod(f"d-{i}", gpus=2, cpu="1", annotations={"gpufleet.io/placement": "fgd"}) for i in range(40)]
    errors = _burst(rig, pods, bind=False, seed=3, units_per_node=None)
    decided = rig.state.ledger.assumed()
    assert len(decided) == 32 and len(errors) == 8  # 64 GPUs hold 32 two-GPU pods; the rest find no node
    held = [(p.node, g) for p in decided for g in p.gpus]
    assert len(held) == len(set(held)) == 64
    rig.clock.advance(rig.state.config.assume_ttl_s + 1)
    assert rig.state.expire() == 32
    assert int(rig.state.cluster.gpu_free.sum()) == 64_000
