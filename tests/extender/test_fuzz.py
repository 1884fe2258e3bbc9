"""Thousands of mutated real-shaped requests against a live server: never a 5xx, and it keeps serving.

Each example takes a valid request of one verb (a real-shaped Pod with 8-GPU Nodes, names or full
objects, a binding, a preemption) and mutates it: a value anywhere replaced by hostile JSON (wrong
types, huge numbers, NaN, deep nesting, odd strings), a key deleted, or the encoded bytes cut or
flipped. The reply must be a 200 or a 4xx with a JSON body.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpufleet.scheduler.extender.server import ExtenderServer, ServerConfig

from . import payloads as P
from .conftest import Client, eight_gpu_nodes, make_rig

NAMES = [f"gpu-{i:03d}" for i in range(6)]
POD = P.pod("fuzz-0", gpus=2, annotations={"gpufleet.io/placement": "cost", "gpufleet.io/gpu-milli": "500"})
POD["spec"]["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
    "nodeSelectorTerms": [{"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In",
                                                 "values": [P.A100]}]}]}}}
POD["spec"]["initContainers"] = [{"name": "init", "image": "busybox", "restartPolicy": "Always",
                                  "resources": {"requests": {"cpu": "100m"}}}]
VICTIM = P.pod("low-0", gpus=1, node_name="gpu-000", phase="Running", annotations={"gpufleet.io/gpu-ids": "0"})
BASES: dict[str, list[Any]] = {
    "filter": [P.names_args(POD, NAMES), P.nodes_args(POD, eight_gpu_nodes(2))],
    "prioritize": [P.names_args(POD, NAMES), P.nodes_args(POD, eight_gpu_nodes(2))],
    "bind": [P.binding_args(POD, "gpu-001")],
    "preempt": [{"Pod": POD, "NodeNameToVictims": None,
                 "NodeNameToMetaVictims": {"gpu-000": {"Pods": [{"UID": VICTIM["metadata"]["uid"]}],
                                                       "NumPDBViolations": 1}}},
                {"Pod": POD, "NodeNameToVictims": {"gpu-000": {"Pods": [VICTIM], "NumPDBViolations": 0}},
                 "NodeNameToMetaVictims": None}],
}

hostile_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["", "500m", "-1", "1e999", "1Ei", "NaN", "9" * 40, "0x10", "gpu-000", "\u0000", "\ud7ff",
                     "Always", "In", "NotIn", "fgd", "spot", "true", "1,2,3", "-5,99999"]),
)
hostile = st.recursive(hostile_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=12)


def paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out.extend(paths(value, (*prefix, key)))
    elif isinstance(doc, list):
        for index, value in enumerate(doc[:3]):
            out.extend(paths(value, (*prefix, index)))
    return out


def mutate(doc: Any, path: tuple, op: str, value: Any) -> Any:
    if not path:
        return value
    doc = json.loads(json.dumps(doc))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if op == "delete":
        del parent[last]
    elif op == "wrap":
        parent[last] = [parent[last]]
    else:
        parent[last] = value
    return doc


@st.composite
def requests(draw) -> tuple[str, bytes]:
    verb = draw(st.sampled_from(sorted(BASES)))
    doc = draw(st.sampled_from(BASES[verb]))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths(doc)))
        doc = mutate(doc, path, draw(st.sampled_from(["replace", "replace", "delete", "wrap"])), draw(hostile))
    body = json.dumps(doc, allow_nan=True).encode()
    cut = draw(st.sampled_from(["none", "none", "none", "truncate", "flip"]))
    if cut == "truncate":
        body = body[: draw(st.integers(0, max(0, len(body) - 1)))]
    elif cut == "flip" and body:
        i = draw(st.integers(0, len(body) - 1))
        body = body[:i] + bytes([body[i] ^ draw(st.integers(1, 255))]) + body[i + 1:]
    return verb, body


def test_mutated_real_shaped_requests_never_get_a_5xx_and_the_server_stays_up():
    rig = make_rig(eight_gpu_nodes(6), pods=[VICTIM])
    for _base in BASES["bind"]:
        rig.api.add_pod(POD)
    server = ExtenderServer(rig.extender, rig.metrics, "127.0.0.1", 0, ServerConfig(max_body_bytes=1 << 20))
    server.start()
    client = Client(server.port)
    seen: dict[int, int] = {}

    @settings(max_examples=2500, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(requests())
    def one(request: tuple[str, bytes]) -> None:
        verb, body = request
        status, data = client.request("POST", f"/v1/{verb}", body)
        seen[status] = seen.get(status, 0) + 1
        assert status < 500, (verb, body[:300], data[:300])
        if status >= 400:
            assert "Error" in json.loads(data)
        else:
            json.loads(data)

    try:
        one()
        assert client.post("prioritize", P.names_args(POD, NAMES))[0] == 200
    finally:
        client.close()
        server.stop()
    assert sum(seen.values()) >= 2500 and seen.get(200, 0) > 100 and seen.get(400, 0) > 100, seen
