"""The exact JSON kube-scheduler sends and reads, both ways, over a live server.

Requests are real-shaped (a Pod as kube-scheduler marshals it, 8-GPU Nodes with capacity, allocatable
and instance labels); replies are compared byte for byte where kube-scheduler is strict: prioritize is
a bare array of {"Host", "Score"} with integer scores, filter never answers a null NodeNames in names
mode, bind answers {"Error": ""}, preempt answers NodeNameToMetaVictims.
"""

from __future__ import annotations

import json

import pytest

from gpufleet.scheduler.extender.wire import (
    PriorityEncoder,
    encode_binding_result,
    encode_preemption_result,
    parse_binding_args,
    parse_preemption_args,
    parse_scheduling_args,
)

from . import payloads as P
from .conftest import Client, eight_gpu_nodes, make_rig

NAMES = ["gpu-000", "gpu-001", "gpu-002", "gpu-003"]


def raw_post(client: Client, verb: str, doc) -> tuple[int, bytes]:
    return client.request("POST", f"/v1/{verb}", json.dumps(doc).encode())


def test_the_upstream_compatibility_strings_round_trip():
    # kubernetes/kubernetes staging/src/k8s.io/kube-scheduler/extender/v1/types_test.go, TestCompatibility
    assert PriorityEncoder().encode(["myhost"], [1]) == b'{"Host":"myhost","Score":1}'.join([b"[", b"]"])
    args = parse_binding_args(json.loads(
        '{"PodName":"mypodname","PodNamespace":"mypodnamespace","PodUID":"mypoduid","Node":"mynode"}'))
    assert (args.pod_name, args.namespace, args.uid, args.node) == ("mypodname", "mypodnamespace", "mypoduid",
                                                                    "mynode")
    assert encode_binding_result("myerror") == b'{"Error":"myerror"}'
    doc = json.loads('{"Pod":{"metadata":{"name":"podname","creationTimestamp":null},"spec":{"containers":null},'
                     '"status":{}},"Nodes":{"metadata":{},"items":[{"metadata":{"name":"nodename",'
                     '"creationTimestamp":null},"spec":{},"status":{}}]},"NodeNames":["node1"]}')
    assert parse_scheduling_args(doc).node_names == ("node1",)
    preempt = parse_preemption_args({"Pod": doc["Pod"], "NodeNameToVictims": None,
                                     "NodeNameToMetaVictims": {"foo": {"Pods": [{"UID": "myuid"}],
                                                                       "NumPDBViolations": 1}}})
    assert encode_preemption_result(preempt.victims) == \
        b'{"NodeNameToMetaVictims":{"foo":{"Pods":[{"UID":"myuid"}],"NumPDBViolations":1}}}'


def test_prioritize_answers_a_bare_array_with_integer_scores_for_every_node_asked(live):
    _, client = live
    pod = P.pod(gpus=2, annotations={"gpufleet.io/placement": "fgd"})
    status, body = raw_post(client, "prioritize", P.names_args(pod, NAMES + ["not-a-node"]))
    assert status == 200
    reply = json.loads(body)
    assert isinstance(reply, list)
    assert [h["Host"] for h in reply] == NAMES + ["not-a-node"]
    assert all(set(h) == {"Host", "Score"} and type(h["Score"]) is int and 0 <= h["Score"] <= 10 for h in reply)
    assert b"." not in body.replace(b'"Host":"', b"").split(b'"Score":', 1)[1][:3]  # no float anywhere
    assert reply[-1] == {"Host": "not-a-node", "Score": 0}


def test_prioritize_of_an_unannotated_pod_is_byte_exact_and_uniform(live):
    _, client = live
    status, body = raw_post(client, "prioritize", P.names_args(P.pod(gpus=1), NAMES))
    assert status == 200
    assert body == (b'[{"Host":"gpu-000","Score":0},{"Host":"gpu-001","Score":0},'
                    b'{"Host":"gpu-002","Score":0},{"Host":"gpu-003","Score":0}]')


def test_filter_in_names_mode_is_byte_exact_and_never_null(live):
    _, client = live
    status, body = raw_post(client, "filter", P.names_args(P.pod(gpus=1), NAMES))
    assert status == 200
    assert body == (b'{"Nodes":null,"NodeNames":["gpu-000","gpu-001","gpu-002","gpu-003"],'
                    b'"FailedNodes":{},"FailedAndUnresolvableNodes":{},"Error":""}')
    status, body = raw_post(client, "filter", P.names_args(P.pod(gpus=1), []))
    assert json.loads(body)["NodeNames"] == []


def test_filter_gives_a_reason_per_node_it_rejects(live):
    rig, client = live
    share = P.pod("share-0", gpus=1, annotations={"gpufleet.io/placement": "fgd", "gpufleet.io/gpu-milli": "600"})
    # Leave only 500m on every GPU of gpu-000.
    from gpufleet.scheduler.extender.pods import parse_pod
    for g in range(8):
        filler = P.pod(f"fill-{g}", gpus=1, cpu="1", node_name="gpu-000", phase="Running",
                       annotations={"gpufleet.io/gpu-milli": "500", "gpufleet.io/gpu-ids": str(g)})
        rig.state.upsert_pod(parse_pod(filler))
    status, reply = client.post("filter", P.names_args(share, ["gpu-000", "ghost"]))
    assert status == 200
    assert reply == {
        "Nodes": None,
        "NodeNames": [],
        "FailedNodes": {"gpu-000": "gpufleet: no single GPU has 600m free (most free: 500m of 1000m)",
                        "ghost": "gpufleet: node not (yet) in the extender's cache"},
        "FailedAndUnresolvableNodes": {},
        "Error": "",
    }
    # Where a node fits, the pod keeps only its top node and the others are left out, without reasons.
    status, reply = client.post("filter", P.names_args(share, ["gpu-000", "gpu-001", "ghost"]))
    assert (status, reply["NodeNames"], reply["FailedNodes"]) == (200, ["gpu-001"], {})


def test_filter_marks_an_excluded_gpu_model_unresolvable(live):
    _, client = live
    pod = P.pod(gpus=1, annotations={"gpufleet.io/placement": "binpack"})
    pod["spec"]["nodeSelector"] = {"nvidia.com/gpu.product": P.H100}
    _status, reply = client.post("filter", P.names_args(pod, ["gpu-000"]))
    assert reply["NodeNames"] == []
    assert reply["FailedAndUnresolvableNodes"] == {
        "gpu-000": f"gpufleet: GPU model {P.A100} is excluded by the pod's node affinity"}


def test_full_nodes_mode_filter_returns_the_surviving_node_objects_unchanged():
    rig = make_rig([], standalone=True)
    nodes = eight_gpu_nodes(3)
    args = parse_scheduling_args(P.nodes_args(P.pod(gpus=1, annotations={"gpufleet.io/placement": "fgd"}), nodes))
    reply = json.loads(rig.extender.filter(args))
    assert reply["NodeNames"] is None
    (top,) = reply["Nodes"]["items"]  # the opted-in pod keeps its top node, as the request carried it
    assert top in nodes and reply["Nodes"]["metadata"] == {}
    assert reply["FailedNodes"] == {} and reply["Error"] == ""  # the others are left out, without a reason


def test_full_nodes_mode_prioritize_scores_the_nodes_carried_in_the_request():
    rig = make_rig([], standalone=True)
    nodes = [P.node("cheap", capacity_type="spot"), P.node("dear")]
    pod = P.pod(gpus=1, annotations={"gpufleet.io/placement": "cost", "gpufleet.io/interruptible": "true"})
    reply = json.loads(rig.extender.prioritize(parse_scheduling_args(P.nodes_args(pod, nodes))))
    assert reply == [{"Host": "cheap", "Score": 10}, {"Host": "dear", "Score": 1}]
    names_only = json.loads(rig.extender.prioritize(parse_scheduling_args(P.names_args(pod, ["cheap", "dear"]))))
    assert names_only == [{"Host": "cheap", "Score": 0}, {"Host": "dear", "Score": 0}]


def test_pre_2020_lowercase_request_keys_are_read_too(live):
    _, client = live
    doc = {"pod": P.pod(gpus=1), "nodes": None, "nodenames": ["gpu-000"]}
    status, reply = client.post("prioritize", doc)
    assert status == 200 and reply == [{"Host": "gpu-000", "Score": 0}]


def test_bind_posts_the_binding_with_gpu_ids_and_answers_an_empty_error(live):
    rig, client = live
    pod = P.pod("trainer-0", gpus=2, annotations={"gpufleet.io/placement": "fgd"})
    rig.api.add_pod(pod)
    client.post("filter", P.names_args(pod, NAMES))
    _, scores = client.post("prioritize", P.names_args(pod, NAMES))
    best = max(scores, key=lambda h: h["Score"])["Host"]
    status, body = raw_post(client, "bind", P.binding_args(pod, best))
    assert (status, body) == (200, b'{"Error":""}')
    assert rig.api.binds == [{"namespace": "ml", "name": "trainer-0", "uid": pod["metadata"]["uid"], "node": best,
                              "annotations": {"gpufleet.io/gpu-ids": "0,1"}}]


def test_preempt_answers_meta_victims_for_full_victim_pods_too(live):
    _, client = live
    victim = P.pod("low-0", gpus=1, node_name="gpu-000", phase="Running")
    doc = {"Pod": P.pod(gpus=1), "NodeNameToVictims": {"gpu-000": {"Pods": [victim], "NumPDBViolations": 0}},
           "NodeNameToMetaVictims": None}
    status, body = raw_post(client, "preempt", doc)
    assert status == 200
    assert json.loads(body) == {"NodeNameToMetaVictims": {"gpu-000": {
        "Pods": [{"UID": victim["metadata"]["uid"]}], "NumPDBViolations": 0}}}


@pytest.mark.parametrize("verb", ["filter", "prioritize"])
def test_node_names_with_odd_characters_are_echoed_as_valid_json(live, verb):
    _, client = live
    names = ['quote"node', "back\\slash", "ünïcode", "\u2028line"]
    status, body = raw_post(client, verb, P.names_args(P.pod(gpus=1), names))
    assert status == 200
    reply = json.loads(body)
    echoed = [h["Host"] for h in reply] if verb == "prioritize" else reply["NodeNames"]
    assert echoed == names
