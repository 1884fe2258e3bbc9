"""The verbs over the state: decisions recorded, binds idempotent, preemption refined, opt-in respected."""

from __future__ import annotations

import json

from gpufleet.core.kube.errors import KubeAPIError
from gpufleet.scheduler.extender.events import EventConfig
from gpufleet.scheduler.extender.pods import parse_pod
from gpufleet.scheduler.extender.wire import parse_binding_args, parse_preemption_args, parse_scheduling_args

from . import payloads as P
from .conftest import eight_gpu_nodes, make_rig

NAMES = ["gpu-000", "gpu-001", "gpu-002", "gpu-003"]
FGD = {"gpufleet.io/placement": "fgd"}


def prioritize(rig, pod, names=NAMES):
    return json.loads(rig.extender.prioritize(parse_scheduling_args(P.names_args(pod, names))))


def filter_(rig, pod, names=NAMES):
    return json.loads(rig.extender.filter(parse_scheduling_args(P.names_args(pod, names))))


def bind(rig, pod, node):
    return json.loads(rig.extender.bind(parse_binding_args(P.binding_args(pod, node))))


def best(scores):
    return max(scores, key=lambda h: h["Score"])["Host"]


def free(rig, node):
    cluster = rig.state.cluster
    return cluster.gpu_free[cluster.index[node]].tolist()


def test_prioritize_records_a_decision_that_the_next_pod_sees(rig):
    first = P.pod("a-0", gpus=4, annotations=FGD)
    second = P.pod("a-1", gpus=4, annotations=FGD)
    node = best(prioritize(rig, first))
    assert rig.state.ledger.assumed_count == 1
    scores = prioritize(rig, second)
    assert best(scores) == node  # FGD fills the half-used node instead of splitting a new one
    assert free(rig, node) == [0] * 8


def test_a_retried_pod_does_not_compete_with_its_own_earlier_decision(rig):
    pod = P.pod("big-0", gpus=8, annotations=FGD)
    first = prioritize(rig, pod)
    again = prioritize(rig, pod)
    assert first == again and rig.state.ledger.assumed_count == 1


def test_the_namespace_annotation_opts_its_pods_in_and_the_pod_annotation_wins():
    rig = make_rig(eight_gpu_nodes(2), namespaces=[P.namespace("ml", "binpack")])
    scores = prioritize(rig, P.pod("p", gpus=1), names=["gpu-000", "gpu-001"])
    assert sorted(h["Score"] for h in scores) == [9, 10]  # equal nodes: one is chosen
    assert rig.metrics.decisions.labels("binpack")._value.get() == 1
    prioritize(rig, P.pod("q", gpus=1, annotations={"gpufleet.io/placement": "off"}), names=["gpu-000"])
    assert rig.metrics.decisions.labels("off")._value.get() == 1


def test_nothing_is_scored_before_the_caches_have_synced():
    rig = make_rig(eight_gpu_nodes(2))
    rig.state._synced.clear()
    assert {h["Score"] for h in prioritize(rig, P.pod(gpus=1, annotations=FGD), names=["gpu-000", "gpu-001"])} == {0}
    assert filter_(rig, P.pod(gpus=1, annotations=FGD), names=["ghost"])["NodeNames"] == ["ghost"]


def test_filter_passes_every_node_for_pods_that_did_not_opt_in(rig):
    assert filter_(rig, P.pod(gpus=1), names=["gpu-000", "ghost"])["NodeNames"] == ["gpu-000", "ghost"]


def test_bind_uses_the_decided_gpus_and_posts_them_with_the_binding(rig):
    pod = P.pod("t-0", gpus=2, annotations=FGD)
    rig.api.add_pod(pod)
    node = best(prioritize(rig, pod))
    decided = rig.state.ledger.get(pod["metadata"]["uid"]).gpus
    assert bind(rig, pod, node) == {"Error": ""}
    assert rig.api.binds[0]["annotations"] == {"gpufleet.io/gpu-ids": ",".join(map(str, decided))}
    placement = rig.state.ledger.get(pod["metadata"]["uid"])
    assert placement.bound and placement.node == node


def test_bind_to_another_node_than_decided_moves_the_charge(rig):
    pod = P.pod("t-0", gpus=2, annotations=FGD)
    rig.api.add_pod(pod)
    node = best(prioritize(rig, pod))
    other = next(n for n in NAMES if n != node)
    assert bind(rig, pod, other) == {"Error": ""}
    assert free(rig, node) == [1000] * 8 and free(rig, other)[:2] == [0, 0]


def test_a_retried_bind_of_a_pod_already_bound_there_succeeds_and_elsewhere_fails(rig):
    pod = P.pod("t-0", gpus=1, annotations=FGD)
    rig.api.add_pod(pod)
    prioritize(rig, pod)
    assert bind(rig, pod, "gpu-002") == {"Error": ""}
    assert bind(rig, pod, "gpu-002") == {"Error": ""}  # kube-scheduler retries after a timeout
    assert len(rig.api.binds) == 1
    reply = bind(rig, pod, "gpu-003")
    assert "already bound to gpu-002" in reply["Error"]
    assert free(rig, "gpu-003") == [1000] * 8 and free(rig, "gpu-002")[0] == 0


def test_a_bind_to_another_node_before_the_watch_confirmed_keeps_the_posted_one(rig):
    pod = P.pod("t-1", gpus=1, annotations=FGD)
    rig.api.add_pod(pod)
    prioritize(rig, pod)
    assert bind(rig, pod, "gpu-001") == {"Error": ""}
    assert "already bound to gpu-001" in bind(rig, pod, "gpu-003")["Error"]
    placement = rig.state.ledger.get(pod["metadata"]["uid"])
    assert placement.node == "gpu-001" and free(rig, "gpu-003") == [1000] * 8


def test_a_pod_scored_again_after_its_binding_was_posted_keeps_its_gpus(rig):
    """kube-scheduler's bind call timed out (httpTimeout) while the extender's Binding still landed:
    kube-scheduler retries the pod, which is scored and bound again before the watch shows it bound.
    The posted placement must keep its node and GPUs, or a later pod is given the same GPUs."""
    from gpufleet.scheduler.extender.pods import parse_pod

    pod = P.pod("t-2", gpus=1, annotations=FGD)
    uid = pod["metadata"]["uid"]
    rig.api.add_pod(pod)
    rig.state.upsert_pod(parse_pod(pod))  # the watch has seen it pending, not yet bound
    node = best(prioritize(rig, pod))
    assert bind(rig, pod, node) == {"Error": ""}
    gpus = rig.state.ledger.get(uid).gpus
    prioritize(rig, pod)  # the retry
    other = next(n for n in NAMES if n != node)
    assert "already bound to " + node in bind(rig, pod, other)["Error"]
    placement = rig.state.ledger.get(uid)
    assert placement is not None and (placement.node, placement.gpus) == (node, gpus)
    assert free(rig, other) == [1000] * 8 and free(rig, node)[gpus[0]] == 0
    assert len(rig.api.binds) == 1


def test_bind_of_a_pod_the_extender_never_saw_reads_it_from_the_api(rig):
    pod = P.pod("unseen-0", gpus=3)
    rig.api.add_pod(pod)
    assert bind(rig, pod, "gpu-001") == {"Error": ""}
    assert ("get_pod", "ml", "unseen-0") in rig.api.calls
    assert rig.api.binds[0]["annotations"] == {"gpufleet.io/gpu-ids": "0,1,2"}


def test_bind_of_a_pod_seen_in_filter_needs_no_read_though_the_watch_never_showed_it(rig):
    # The pod watch carries bound pods only; a plain pod with several nodes left has no decision either.
    pod = P.pod("plain-0", gpus=2)
    rig.api.add_pod(pod)
    assert filter_(rig, pod)["NodeNames"] == NAMES
    assert bind(rig, pod, "gpu-002") == {"Error": ""}
    assert not [c for c in rig.api.calls if c[0] == "get_pod"]
    assert rig.api.binds[0]["annotations"] == {"gpufleet.io/gpu-ids": "0,1"}
    assert rig.state.pending_pod(pod["metadata"]["uid"]) is not None  # until the watch shows it bound
    bound = P.pod("plain-0", gpus=2, node_name="gpu-002", annotations={"gpufleet.io/gpu-ids": "0,1"})
    rig.state.upsert_pod(parse_pod(bound))
    assert rig.state.pending_pod(pod["metadata"]["uid"]) is None


def test_pods_remembered_for_bind_are_bounded_oldest_first(monkeypatch):
    from gpufleet.scheduler.extender import state as state_module

    monkeypatch.setattr(state_module, "MAX_PENDING", 3)
    rig = make_rig(eight_gpu_nodes(1))
    pods = [parse_pod(P.pod(f"p-{i}", gpus=1)) for i in range(5)]
    for info in pods:
        rig.state.remember_pending(info)
    assert [rig.state.pending_pod(i.uid) is not None for i in pods] == [False, False, True, True, True]


def test_bind_errors_release_the_gpus_and_are_reported_to_kube_scheduler(rig):
    pod = P.pod("t-0", gpus=2, annotations=FGD)
    rig.api.add_pod(pod)
    node = best(prioritize(rig, pod))
    rig.api.fail_next("bind", KubeAPIError("POST binding: 503 Service Unavailable", 503))
    reply = bind(rig, pod, node)
    assert "503" in reply["Error"]
    assert free(rig, node) == [1000] * 8 and rig.state.ledger.get(pod["metadata"]["uid"]) is None


def test_bind_of_a_missing_or_replaced_pod_is_an_error(rig):
    ghost = P.pod("ghost-0", gpus=1)
    assert "not found" in bind(rig, ghost, "gpu-000")["Error"]
    rig.api.add_pod(P.pod("ghost-0", gpus=1, uid="another-uid"))
    assert "was replaced" in bind(rig, ghost, "gpu-000")["Error"]


def test_standalone_mode_refuses_to_bind():
    rig = make_rig([], standalone=True)
    assert "standalone" in bind(rig, P.pod(gpus=1), "gpu-000")["Error"]


def test_the_watch_confirming_a_bind_keeps_the_same_gpus(rig):
    from gpufleet.scheduler.extender.pods import parse_pod

    pod = P.pod("t-0", gpus=2, annotations=FGD)
    rig.api.add_pod(pod)
    node = best(prioritize(rig, pod))
    bind(rig, pod, node)
    before = free(rig, node)
    rig.state.upsert_pod(parse_pod(rig.api.pods[("ml", "t-0")]))  # the watch delivers the bound pod
    assert free(rig, node) == before and rig.state.ledger.assumed_count == 0


def test_decision_events_name_the_top_nodes_and_are_rate_limited():
    rig = make_rig(eight_gpu_nodes(4), events=EventConfig(rate_per_s=1.0, burst=2, per_pod_interval_s=60))
    for i in range(5):
        prioritize(rig, P.pod(f"e-{i}", gpus=1, annotations={"gpufleet.io/placement": "cost"}))
    assert rig.events.drain() == 2
    namespace, body = rig.api.events[0]
    assert namespace == "ml" and body["involvedObject"]["name"] == "e-0"
    assert body["reason"] == "GpufleetPlacement" and body["type"] == "Normal"
    assert body["message"].startswith("policy=cost best=gpu-0")
    assert "$" in body["message"] and "/GPU-h" in body["message"]
    rig.clock.advance(10)
    prioritize(rig, P.pod("e-0", gpus=1, annotations={"gpufleet.io/placement": "cost"}))  # same pod: too soon
    prioritize(rig, P.pod("e-9", gpus=1, annotations={"gpufleet.io/placement": "cost"}))
    assert rig.events.drain() == 1 and rig.api.events[-1][1]["involvedObject"]["name"] == "e-9"


def _preempt(rig, pod, victims_by_node):
    doc = {"Pod": pod, "NodeNameToVictims": None, "NodeNameToMetaVictims": {
        node: {"Pods": [{"UID": v["metadata"]["uid"]} for v in victims], "NumPDBViolations": 0}
        for node, victims in victims_by_node.items()}}
    return json.loads(rig.extender.preempt(parse_preemption_args(doc)))["NodeNameToMetaVictims"]


def _gpu_node_pods():
    """gpu-000 full in kube-scheduler's count (8 units): whole-GPU pods on GPUs 0-5, two halves on GPU 6,
    and GPU 7 physically free (its pod just ended and a half is waiting for it)."""
    whole = [P.pod(f"w-{g}", gpus=1, cpu="1", node_name="gpu-000", phase="Running",
                   annotations={"gpufleet.io/gpu-ids": str(g)}) for g in range(6)]
    halves = [P.pod(f"h-{i}", gpus=1, cpu="1", node_name="gpu-000", phase="Running",
                    annotations={"gpufleet.io/gpu-ids": "6", "gpufleet.io/gpu-milli": "500"}) for i in range(2)]
    return whole, halves


def _uids(pods):
    return [{"UID": p["metadata"]["uid"]} for p in pods]


def test_preempt_drops_victims_whose_gpus_the_preemptor_does_not_need():
    whole, halves = _gpu_node_pods()
    rig = make_rig(eight_gpu_nodes(1), pods=whole + halves)
    preemptor = P.pod("urgent", gpus=2, cpu="1", annotations=FGD)
    kept = _preempt(rig, preemptor, {"gpu-000": [whole[3], *halves]})
    # Two units and two whole GPUs: GPU 7 is already free, so one whole GPU and one unit more suffice.
    assert kept == {"gpu-000": {"Pods": _uids([whole[3], halves[0]]), "NumPDBViolations": 0}}


def test_preempt_keeps_a_proposal_no_smaller_set_satisfies_and_one_with_unknown_victims():
    whole, halves = _gpu_node_pods()
    rig = make_rig(eight_gpu_nodes(1), pods=whole + halves)
    preemptor = P.pod("urgent", gpus=2, cpu="1", annotations=FGD)
    kept = _preempt(rig, preemptor, {"gpu-000": halves})
    assert kept["gpu-000"]["Pods"] == _uids(halves)  # each half alone frees one unit, and two are needed
    stranger = P.pod("stranger", gpus=1)
    kept = _preempt(rig, preemptor, {"gpu-000": [stranger, whole[3], *halves]})
    assert len(kept["gpu-000"]["Pods"]) == 4


def test_preempt_leaves_pods_that_did_not_opt_in_to_kube_scheduler():
    whole, halves = _gpu_node_pods()
    rig = make_rig(eight_gpu_nodes(1), pods=whole + halves)
    kept = _preempt(rig, P.pod("urgent", gpus=2, cpu="1"), {"gpu-000": [whole[3], *halves]})
    assert len(kept["gpu-000"]["Pods"]) == 3
