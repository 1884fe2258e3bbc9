"""``--decide-in-filter`` (the default): filter leaves an opted-in pod only the node prioritize would rank first, so
kube-scheduler (one feasible node) skips its scoring and the prioritize call; the decision is charged
at once, bind writes its GPUs, and pods that did not opt in keep every node that fits."""

from __future__ import annotations

import json

from gpufleet.scheduler.extender.scoring import ScoringConfig
from gpufleet.scheduler.extender.wire import parse_binding_args, parse_scheduling_args

from . import payloads as P
from .conftest import eight_gpu_nodes, make_rig

FGD = {"gpufleet.io/placement": "fgd"}
NAMES = ["gpu-000", "gpu-001", "gpu-002"]
DECIDES = ScoringConfig()


def running(name: str, node: str, gpus: str) -> dict:
    pod = P.pod(name, gpus=len(gpus.split(",")), node_name=node, phase="Running")
    pod["metadata"]["annotations"]["gpufleet.io/gpu-ids"] = gpus
    return pod


def cluster_pods() -> list[dict]:
    """gpu-001 half full, gpu-002 with one GPU taken: FGD packs onto gpu-001, not the first name."""
    return [running("a", "gpu-001", "0,1,2,3"), running("b", "gpu-002", "0")]


def test_filter_leaves_only_the_node_prioritize_ranks_first():
    pod = P.pod("p", gpus=2, annotations=FGD)
    scores = json.loads(make_rig(eight_gpu_nodes(3), cluster_pods()).extender.prioritize(
        parse_scheduling_args(P.names_args(pod, NAMES))))
    top = max(scores, key=lambda h: h["Score"])["Host"]
    assert top != NAMES[0]  # the test would pass vacuously if the first name won anyway

    rig = make_rig(eight_gpu_nodes(3), cluster_pods(), scoring=DECIDES)
    reply = json.loads(rig.extender.filter(parse_scheduling_args(P.names_args(pod, NAMES))))
    assert reply["NodeNames"] == [top]
    assert reply["FailedNodes"] == {} and reply["FailedAndUnresolvableNodes"] == {}  # the others are left out
    assert rig.metrics.decisions.labels("fgd")._value.get() == 1


def test_the_decision_is_charged_at_filter_and_bind_writes_its_gpus():
    rig = make_rig(eight_gpu_nodes(3), cluster_pods(), scoring=DECIDES)
    pod = P.pod("p", gpus=2, annotations=FGD)
    cluster = rig.state.cluster
    before = {n: cluster.gpu_free[cluster.index[n]].tolist() for n in NAMES}
    (node,) = json.loads(rig.extender.filter(parse_scheduling_args(P.names_args(pod, NAMES))))["NodeNames"]
    after = cluster.gpu_free[cluster.index[node]].tolist()
    taken = [g for g in range(8) if before[node][g] == 1000 and after[g] == 0]
    assert len(taken) == 2  # the pod's two GPUs are charged before any bind
    rig.api.add_pod(pod)
    assert json.loads(rig.extender.bind(parse_binding_args(P.binding_args(pod, node)))) == {"Error": ""}
    (ids,) = [b["annotations"]["gpufleet.io/gpu-ids"] for b in rig.api.binds]
    assert sorted(int(g) for g in ids.split(",")) == taken
    assert cluster.gpu_free[cluster.index[node]].tolist() == after  # charged once, not twice


def test_a_pod_that_did_not_opt_in_keeps_every_node_that_fits():
    rig = make_rig(eight_gpu_nodes(3), cluster_pods(), scoring=DECIDES)
    reply = json.loads(rig.extender.filter(parse_scheduling_args(P.names_args(P.pod("plain", gpus=2), NAMES))))
    assert reply["NodeNames"] == NAMES and not reply["FailedNodes"]


def test_with_the_option_off_filter_passes_every_node_that_fits():
    rig = make_rig(eight_gpu_nodes(3), cluster_pods(), scoring=ScoringConfig(decide_in_filter=False))
    pod = P.pod("p", gpus=2, annotations=FGD)
    assert json.loads(rig.extender.filter(parse_scheduling_args(P.names_args(pod, NAMES))))["NodeNames"] == NAMES
