"""The cluster model follows the watches: placements charged where the API server says, decisions
held until confirmed or expired, nodes added and removed without losing anyone's GPUs."""

from __future__ import annotations

import numpy as np

from gpufleet.core.clock import FakeClock
from gpufleet.core.pricing import PriceCatalog
from gpufleet.scheduler.extender.nodes import parse_node
from gpufleet.scheduler.extender.pods import parse_pod
from gpufleet.scheduler.extender.state import ClusterState, StateConfig
from gpufleet.scheduler.model import PodRequest

from . import payloads as P

CATALOG = PriceCatalog.default()


def running(name, node, gpus=1, ids=None, milli=None, phase="Running"):
    annotations = {}
    if ids is not None:
        annotations["gpufleet.io/gpu-ids"] = ids
    if milli:
        annotations["gpufleet.io/gpu-milli"] = str(milli)
    return P.pod(name, gpus=gpus, cpu="2", node_name=node, phase=phase, annotations=annotations)


def new_state(nodes=("a", "b"), clock=None) -> ClusterState:
    state = ClusterState(StateConfig(assume_ttl_s=30, bound_ttl_s=300), clock or FakeClock(), resources=())
    state.replace_nodes([parse_node(P.node(n), CATALOG) for n in nodes])
    return state


def free(state, node):
    return state.cluster.gpu_free[state.cluster.index[node]].tolist()


def test_bound_pods_are_charged_on_the_gpus_their_annotation_names():
    state = new_state()
    state.upsert_pod(parse_pod(running("p", "a", gpus=2, ids="5,7")))
    assert free(state, "a") == [1000] * 5 + [0, 1000, 0]
    assert state.cluster.cpu_free[state.cluster.index["a"]] == 95690 - 2000


def test_a_restart_rebuilds_the_same_gpu_assignment_from_the_pods_annotations():
    pods = [running("p1", "a", gpus=2, ids="6,7"), running("p2", "a", gpus=1, ids="2", milli=300),
            running("p3", "b", gpus=3, ids="1,3,5"), running("p4", "b", gpus=1, ids="1", milli=None, phase="Pending")]
    pods[3]["spec"].pop("nodeName")
    first = new_state()
    first.replace_pods([parse_pod(p) for p in pods])
    restarted = new_state(nodes=("b", "a"))  # a different node order after the restart
    restarted.replace_pods([parse_pod(p) for p in reversed(pods)])
    for node in ("a", "b"):
        assert free(first, node) == free(restarted, node)
    assert free(restarted, "a") == [1000, 1000, 700, 1000, 1000, 1000, 0, 0]
    assert free(restarted, "b") == [1000, 0, 1000, 0, 1000, 0, 1000, 1000]


def test_pods_without_gpu_ids_are_charged_on_the_policies_default_gpus():
    state = new_state()
    state.upsert_pod(parse_pod(running("p", "a", gpus=2)))
    assert free(state, "a")[:3] == [0, 0, 1000]


def test_a_decision_holds_its_gpus_until_it_expires():
    clock = FakeClock()
    state = new_state(clock=clock)
    state.assume("uid-1", "ml/p", "a", PodRequest(1000, 0, 2, 1000), (0, 1), ttl_s=30)
    assert free(state, "a")[:2] == [0, 0] and state.ledger.assumed_count == 1
    clock.advance(29)
    assert state.expire() == 0
    clock.advance(2)
    assert state.expire() == 1
    assert free(state, "a")[:2] == [1000, 1000] and len(state.ledger) == 0


def test_the_watch_confirms_a_decision_so_it_no_longer_expires():
    clock = FakeClock()
    state = new_state(clock=clock)
    pod = running("p", "a", gpus=2, ids="0,1")
    info = parse_pod(pod)
    state.assume(info.uid, info.key, "a", info.request, (0, 1), ttl_s=30)
    state.upsert_pod(info)
    clock.advance(3600)
    assert state.expire() == 0 and free(state, "a")[:2] == [0, 0] and state.ledger.assumed_count == 0


def test_a_pod_bound_elsewhere_moves_its_charge_to_where_it_really_went():
    state = new_state()
    info = parse_pod(running("p", "b", gpus=1, ids="4"))
    state.assume(info.uid, info.key, "a", info.request, (0,), ttl_s=30)
    state.upsert_pod(info)
    assert free(state, "a")[0] == 1000 and free(state, "b")[4] == 0


def test_deleted_and_finished_pods_give_their_gpus_back():
    state = new_state()
    done = parse_pod(running("done", "a", gpus=1, ids="0", phase="Succeeded"))
    gone = parse_pod(running("gone", "a", gpus=1, ids="1"))
    state.upsert_pod(parse_pod(running("done", "a", gpus=1, ids="0")))
    state.upsert_pod(gone)
    state.upsert_pod(done)
    state.delete_pod(gone.uid)
    assert free(state, "a") == [1000] * 8 and len(state.ledger) == 0


def test_a_relist_drops_confirmed_pods_that_vanished_and_keeps_pending_decisions():
    state = new_state()
    kept = parse_pod(running("kept", "a", gpus=1, ids="0"))
    vanished = parse_pod(running("vanished", "a", gpus=1, ids="1"))
    state.replace_pods([kept, vanished])
    state.assume("decided", "ml/d", "b", PodRequest(0, 0, 1, 1000), (0,), ttl_s=30)
    state.replace_pods([kept])
    assert free(state, "a")[:2] == [0, 1000] and free(state, "b")[0] == 0


def test_pods_on_a_node_not_yet_seen_are_charged_when_it_arrives():
    state = new_state(nodes=("a",))
    state.upsert_pod(parse_pod(running("early", "late-node", gpus=2, ids="3,4")))
    generation = state.generation
    state.upsert_node(parse_node(P.node("late-node", gpus=4, product=P.H100), CATALOG))
    assert state.generation > generation
    assert free(state, "late-node") == [1000, 1000, 1000, 0] + [0] * 4  # 4 GPUs: slot 4 is not a GPU
    # The 4-GPU node has no GPU 4: the charge is clamped to what exists, and released exactly.
    state.delete_pod(parse_pod(running("early", "late-node")).uid)
    assert free(state, "late-node") == [1000] * 4 + [0] * 4


def test_nodes_come_and_go_and_changed_capacity_moves_free_capacity():
    state = new_state(nodes=("a", "b", "c"))
    state.upsert_pod(parse_pod(running("p", "b", gpus=1, ids="0")))
    state.delete_node("a")
    assert "a" not in state.cluster.index and state.cluster.gpu_count.sum() == 16
    node = P.node("b")
    node["status"]["allocatable"]["cpu"] = "64"
    state.upsert_node(parse_node(node, CATALOG))
    row = state.cluster.index["b"]
    assert state.cluster.cpu_free[row] == 64000 - 2000
    state.upsert_node(parse_node(P.node("d", gpus=16), CATALOG))  # wider than any node so far
    assert state.cluster.gpu_free.shape[1] == 16 and free(state, "b")[0] == 0


def test_many_removed_nodes_trigger_a_compaction_that_keeps_every_charge():
    names = [f"n{i}" for i in range(80)]
    state = new_state(nodes=names)
    state.upsert_pod(parse_pod(running("p", "n79", gpus=3, ids="1,2,3")))
    for name in names[:60]:
        state.delete_node(name)
    assert len(state.cluster.index) == 20
    assert len(state.cluster) == 47  # compacted once, after 33 removals; 27 removed rows wait for the next
    assert free(state, "n79") == [1000, 0, 0, 0, 1000, 1000, 1000, 1000]


def test_a_gpu_count_change_rebuilds_the_model_and_reapplies_placements():
    state = new_state(nodes=("a",))
    state.upsert_pod(parse_pod(running("p", "a", gpus=1, ids="2")))
    state.upsert_node(parse_node(P.node("a", gpus=4), CATALOG))
    assert free(state, "a") == [1000, 1000, 0, 1000]


def test_over_committed_pods_are_clamped_and_released_exactly():
    state = new_state(nodes=("a",))
    first = parse_pod(running("one", "a", gpus=1, ids="0"))
    second = parse_pod(running("two", "a", gpus=1, ids="0"))  # the API says both hold GPU 0
    state.upsert_pod(first)
    state.upsert_pod(second)
    assert free(state, "a")[0] == 0 and np.all(state.cluster.gpu_free >= 0)
    state.delete_pod(first.uid)
    state.delete_pod(second.uid)
    assert free(state, "a") == [1000] * 8


def test_namespace_defaults_only_accept_known_policies():
    state = new_state()
    state.replace_namespaces({"ml": "fgd", "web": "fastest"})
    assert state.namespace_placement("ml") == "fgd" and state.namespace_placement("web") is None
    state.set_namespace("web", "cost")
    assert state.namespace_placement("web") == "cost"


def test_a_bound_decision_waits_for_the_longer_deadline_and_stale_deadlines_are_ignored():
    clock = FakeClock()
    state = new_state(clock=clock)
    state.assume("u1", "ml/a", "a", PodRequest(0, 0, 1, 1000), (0,), ttl_s=30)
    state.mark_bound("u1")  # bound_ttl_s=300 from now
    state.assume("u2", "ml/b", "a", PodRequest(0, 0, 1, 1000), (1,), ttl_s=30)
    state.forget("u2")
    state.assume("u2", "ml/b", "a", PodRequest(0, 0, 1, 1000), (1,), ttl_s=60)  # re-decided, later deadline
    clock.advance(31)
    assert state.expire() == 0
    clock.advance(30)
    assert state.expire() == 1 and state.ledger.get("u1") is not None
    clock.advance(240)
    assert state.expire() == 1 and len(state.ledger) == 0
