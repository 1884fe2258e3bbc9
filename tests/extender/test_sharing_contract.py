"""The GPU-sharing contract (docs/designs/014-gpu-sharing.md): a share asks for the extended resource
``gpufleet.io/gpu-milli``, the filter decides per-GPU fit for whole and shared pods alike, opted in
or not; whole GPUs and shares never meet on a GPU, and a share never spans two GPUs."""

from __future__ import annotations

import copy
import json

import pytest

from gpufleet.scheduler.extender.pods import parse_pod
from gpufleet.scheduler.extender.wire import parse_binding_args, parse_scheduling_args

from . import payloads as P
from .conftest import eight_gpu_nodes, make_rig

FGD = {"gpufleet.io/placement": "fgd"}


def share_pod(name: str, milli: int | str, *, annotations: dict[str, str] | None = None,
              node_name: str = "", gpu_ids: str | None = None, phase: str = "Pending") -> dict:
    pod = P.pod(name, gpus=0, annotations=annotations, node_name=node_name, phase=phase)
    pod["spec"]["containers"][0]["resources"]["limits"]["gpufleet.io/gpu-milli"] = str(milli)
    if gpu_ids is not None:
        pod["metadata"]["annotations"]["gpufleet.io/gpu-ids"] = gpu_ids
    return pod


def bound(pod: dict, node: str, ids: str) -> dict:
    pod = copy.deepcopy(pod)
    pod["spec"]["nodeName"] = node
    pod["status"]["phase"] = "Running"
    pod["metadata"]["annotations"]["gpufleet.io/gpu-ids"] = ids
    return pod


def filter_(rig, pod, names):
    return json.loads(rig.extender.filter(parse_scheduling_args(P.names_args(pod, names))))


def added_and_prioritized(rig, pod, names):
    """Add ``pod`` to the API server, prioritize it over ``names``; the best-scored node."""
    rig.api.add_pod(pod)
    scores = json.loads(rig.extender.prioritize(parse_scheduling_args(P.names_args(pod, names))))
    return max(scores, key=lambda h: h["Score"])["Host"]


def free(rig, node):
    cluster = rig.state.cluster
    return cluster.gpu_free[cluster.index[node]].tolist()


@pytest.mark.parametrize(("milli", "expected"), [("1", 1), ("250", 250), ("1000", 1000), ("500m", 1)])
def test_the_gpu_milli_resource_is_a_share_of_one_gpu(milli, expected):
    info = parse_pod(share_pod("s", milli))
    assert info.request is not None and info.gpu_error is None
    assert (info.request.num_gpu, info.request.gpu_milli) == (1, expected)


@pytest.mark.parametrize(("pod_change", "says"), [
    (lambda p: p["spec"]["containers"][0]["resources"]["limits"].update({"gpufleet.io/gpu-milli": "1500"}),
     "never spans two GPUs"),
    (lambda p: p["spec"]["containers"][0]["resources"]["limits"].update({"nvidia.com/gpu": "1"}),
     "not both"),
])
def test_an_unusable_gpu_milli_request_is_turned_away_by_every_node_with_the_reason(pod_change, says):
    rig = make_rig(eight_gpu_nodes(2))
    pod = share_pod("s", 500, annotations=FGD)
    pod_change(pod)
    reply = filter_(rig, pod, ["gpu-000", "gpu-001"])
    assert reply["NodeNames"] == []
    assert set(reply["FailedAndUnresolvableNodes"]) == {"gpu-000", "gpu-001"}
    assert all(says in reason for reason in reply["FailedAndUnresolvableNodes"].values())


def test_the_annotation_form_still_parses_as_a_share():
    info = parse_pod(P.pod("legacy", gpus=1, annotations={"gpufleet.io/gpu-milli": "300"}))
    assert (info.request.num_gpu, info.request.gpu_milli) == (1, 300) and info.gpu_error is None


@pytest.mark.parametrize("opted_in", [True, False])
def test_a_whole_gpu_pod_is_refused_where_shares_leave_too_few_gpus_free(opted_in):
    # gpu-000: seven GPUs each hold a 100m share; kube-scheduler's device count sees 8 free devices.
    shares = [bound(share_pod(f"s-{g}", 100), "gpu-000", str(g)) for g in range(7)]
    rig = make_rig(eight_gpu_nodes(2), pods=shares)
    whole = P.pod("w", gpus=2, annotations=FGD if opted_in else None)
    assert filter_(rig, whole, ["gpu-000", "gpu-001"])["NodeNames"] == ["gpu-001"]
    reply = filter_(rig, whole, ["gpu-000"])
    assert reply["NodeNames"] == [] and "1 GPUs free of other pods, the pod asks for 2" in reply["FailedNodes"]["gpu-000"]
    one = P.pod("w1", gpus=1, annotations=FGD if opted_in else None)
    reply = filter_(rig, one, ["gpu-000", "gpu-001"])
    assert not reply["FailedNodes"]  # both fit: a plain pod keeps both, an opted-in one only its top node
    assert len(reply["NodeNames"]) == (1 if opted_in else 2)


@pytest.mark.parametrize("opted_in", [True, False])
def test_a_share_is_refused_where_no_single_gpu_has_room_even_if_the_node_total_does(opted_in):
    # Every GPU of gpu-000 holds 700m: 2,400m free on the node, but never 400m on one GPU.
    shares = [bound(share_pod(f"s-{g}", 700), "gpu-000", str(g)) for g in range(8)]
    rig = make_rig(eight_gpu_nodes(2), pods=shares)
    pod = share_pod("new", 400, annotations=FGD if opted_in else None)
    assert filter_(rig, pod, ["gpu-000", "gpu-001"])["NodeNames"] == ["gpu-001"]
    reply = filter_(rig, pod, ["gpu-000"])
    assert reply["NodeNames"] == [] and "no single GPU has 400m free" in reply["FailedNodes"]["gpu-000"]
    assert filter_(rig, share_pod("small", 300), ["gpu-000"])["NodeNames"] == ["gpu-000"]


@pytest.mark.parametrize("opted_in", [True, False])
def test_when_one_node_passes_the_filter_charges_the_pod_before_its_asynchronous_bind(opted_in):
    # kube-scheduler skips prioritize for a sole feasible node and filters the next pod while the
    # first one's bind is still in flight: 600m shares must still take one GPU each.
    rig = make_rig(eight_gpu_nodes(1))
    pods = [share_pod(f"s-{i}", 600, annotations=FGD if opted_in else None) for i in range(9)]
    replies = [filter_(rig, pod, ["gpu-000"]) for pod in pods]
    assert [r["NodeNames"] for r in replies] == [["gpu-000"]] * 8 + [[]]
    assert "no single GPU has 600m free" in replies[8]["FailedNodes"]["gpu-000"]
    rig.api.add_pod(pods[0])
    assert json.loads(rig.extender.bind(parse_binding_args(P.binding_args(pods[0], "gpu-000")))) == {"Error": ""}
    assert sorted(free(rig, "gpu-000")) == [400] * 8


def test_a_share_never_lands_on_a_gpu_held_by_a_whole_gpu_pod():
    wholes = [bound(P.pod(f"w-{g}", gpus=1), "gpu-000", str(g)) for g in range(8)]
    rig = make_rig(eight_gpu_nodes(1), pods=wholes)
    reply = filter_(rig, share_pod("s", 1, annotations=FGD), ["gpu-000"])
    assert reply["NodeNames"] == [] and "no single GPU has 1m free" in reply["FailedNodes"]["gpu-000"]


def test_plain_pods_keep_kube_schedulers_view_of_nodes_the_extender_does_not_know():
    rig = make_rig(eight_gpu_nodes(1))
    assert filter_(rig, share_pod("s", 500), ["gpu-000", "ghost"])["NodeNames"] == ["gpu-000", "ghost"]
    assert filter_(rig, share_pod("s", 500, annotations=FGD), ["gpu-000", "ghost"])["NodeNames"] == ["gpu-000"]


def test_bind_of_a_share_writes_one_gpu_and_charges_only_that_gpu():
    rig = make_rig(eight_gpu_nodes(2))
    pod = share_pod("s", 250, annotations=FGD)
    node = added_and_prioritized(rig, pod, ["gpu-000", "gpu-001"])
    assert json.loads(rig.extender.bind(parse_binding_args(P.binding_args(pod, node)))) == {"Error": ""}
    (ids,) = [b["annotations"]["gpufleet.io/gpu-ids"] for b in rig.api.binds]
    gpu = int(ids)
    assert free(rig, node)[gpu] == 750 and sum(free(rig, node)) == 8000 - 250


def test_a_restart_rebuilds_shares_on_the_gpus_their_annotations_name():
    pods = [bound(share_pod("a", 600), "gpu-000", "3"), bound(share_pod("b", 400), "gpu-000", "3"),
            bound(P.pod("w", gpus=2), "gpu-000", "0,1")]
    rig = make_rig(eight_gpu_nodes(1), pods=pods)
    assert free(rig, "gpu-000") == [0, 0, 1000, 0, 1000, 1000, 1000, 1000]


def test_when_kube_schedulers_own_binder_wins_the_race_the_gpu_ids_are_still_recorded():
    rig = make_rig(eight_gpu_nodes(2))
    pod = share_pod("s", 400, annotations=FGD)
    node = added_and_prioritized(rig, pod, ["gpu-000", "gpu-001"])
    decided = rig.state.ledger.get(pod["metadata"]["uid"]).gpus
    rig.api.pods[("ml", "s")]["spec"]["nodeName"] = node  # DefaultBinder got there first, without ids
    assert json.loads(rig.extender.bind(parse_binding_args(P.binding_args(pod, node)))) == {"Error": ""}
    stored = rig.api.pods[("ml", "s")]["metadata"]["annotations"]
    assert stored["gpufleet.io/gpu-ids"] == ",".join(map(str, decided))
