"""A pod kube-scheduler schedules again after our Binding went through (its bind call passed the 1 s
timeout and its own binder got 409) is steered back to the node it is bound to, so the retry's bind
succeeds there instead of failing on every other node until the watch catches up."""

from __future__ import annotations

import json

from gpufleet.scheduler.extender.wire import parse_binding_args, parse_scheduling_args

from . import payloads as P
from .conftest import eight_gpu_nodes, make_rig

NAMES = ["gpu-000", "gpu-001", "gpu-002"]
FGD = {"gpufleet.io/placement": "fgd"}


def call(rig, verb, pod, names=NAMES):
    return json.loads(getattr(rig.extender, verb)(parse_scheduling_args(P.names_args(pod, names))))


def test_a_retry_after_the_binding_was_posted_keeps_the_bound_node():
    rig = make_rig(eight_gpu_nodes(3))
    pod = P.pod("t-0", gpus=2, annotations=FGD)
    rig.api.add_pod(pod)
    scores = call(rig, "prioritize", pod)
    node = max(scores, key=lambda h: h["Score"])["Host"]
    assert json.loads(rig.extender.bind(parse_binding_args(P.binding_args(pod, node)))) == {"Error": ""}
    # kube-scheduler gave up waiting and schedules the pod again, before the watch shows it bound
    reply = call(rig, "filter", pod)
    assert reply["NodeNames"] == [node] and set(reply["FailedNodes"]) == set(NAMES) - {node}
    again = {h["Host"]: h["Score"] for h in call(rig, "prioritize", pod)}
    assert again[node] == 10 and all(again[n] == 0 for n in NAMES if n != node)
    assert json.loads(rig.extender.bind(parse_binding_args(P.binding_args(pod, node)))) == {"Error": ""}
    assert len(rig.api.binds) == 1 and rig.state.ledger.get(pod["metadata"]["uid"]).node == node
