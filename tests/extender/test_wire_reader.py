"""The fast reader of ExtenderArgs gives what the general parser gives, or steps aside for it."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufleet.scheduler.extender.errors import WireError
from gpufleet.scheduler.extender.wire import (
    MAX_NODES,
    SchedulingReader,
    encode_filter_result,
    parse_scheduling_args,
)
from tests.extender import payloads


def general(body: bytes):
    """What the server does without the fast path: decode, then parse (or the error it raises)."""
    try:
        return parse_scheduling_args(json.loads(body))
    except WireError as err:
        return ("WireError", str(err))


def fast(reader: SchedulingReader, body: bytes):
    try:
        return reader.read(body)
    except WireError as err:
        return ("WireError", str(err))


def test_kube_schedulers_names_mode_body_is_read_by_the_fast_path_with_the_general_result():
    body = json.dumps(payloads.names_args(payloads.pod(annotations={"gpufleet.io/placement": "fgd"}),
                                          ["gpu-000", "gpu-001"])).encode()
    args = SchedulingReader().read(body)
    assert args is not None
    assert args == general(body)


@pytest.mark.parametrize("doc", [
    {"pod": payloads.pod(), "nodenames": ["a"]},  # pre-2020 lowercase keys
    {"Pod": payloads.pod(), "Nodes": {"items": [payloads.node("gpu-000")]}, "NodeNames": None},  # full Nodes
    {"Pod": None, "NodeNames": ["a"]},
    {"NodeNames": ["a"]},
    {"Pod": payloads.pod(), "NodeNames": ["a", 5]},
    {"Pod": payloads.pod(), "NodeNames": None, "Nodes": None},
    {"Pod": payloads.pod(), "NodeNames": ["a"], "Extra": 1},
    {"Pod": payloads.pod(), "NodeNames": "a"},
    [1, 2],
])
def test_other_bodies_are_left_to_the_general_parser(doc):
    assert SchedulingReader().read(json.dumps(doc).encode()) is None


def test_a_body_that_is_not_json_is_left_to_the_general_parser():
    reader = SchedulingReader()
    assert reader.read(b'{"Pod": {"metadata": ') is None
    assert reader.read(b"[" * 100_000) is None


def test_too_many_names_are_left_to_the_general_parser():
    body = json.dumps({"Pod": payloads.pod(), "NodeNames": ["n"] * (MAX_NODES + 1)}).encode()
    assert SchedulingReader().read(body) is None
    with pytest.raises(WireError, match="more than"):
        parse_scheduling_args(json.loads(body))


def test_a_pod_the_general_parser_refuses_raises_the_same_error():
    body = json.dumps({"Pod": {"metadata": "x", "spec": 3}, "NodeNames": ["a"]}).encode()
    assert fast(SchedulingReader(), body) == general(body)
    assert isinstance(general(body), tuple)


def test_the_same_pod_bytes_are_parsed_once_and_other_bytes_again():
    reader = SchedulingReader()
    p = payloads.pod(annotations={"gpufleet.io/placement": "fgd"})
    first = reader.read(json.dumps(payloads.names_args(p, ["a", "b"])).encode())
    second = reader.read(json.dumps(payloads.names_args(p, ["b"])).encode())
    assert first is not None and second is not None
    assert second.pod is first.pod and second.node_names == ("b",)
    changed = payloads.pod(annotations={"gpufleet.io/placement": "spread"})
    third = reader.read(json.dumps(payloads.names_args(changed, ["a"])).encode())
    assert third is not None and third.pod.placement == "spread"


def test_the_pod_cache_stays_bounded():
    reader = SchedulingReader(cache_size=4)
    for i in range(10):
        assert reader.read(json.dumps(payloads.names_args(payloads.pod(f"p-{i}"), ["a"])).encode()) is not None
    assert len(reader._pods) <= 4


names = st.lists(st.text(max_size=12), max_size=6)
annotations = st.dictionaries(st.sampled_from(["gpufleet.io/placement", "gpufleet.io/gpu-milli", "other"]),
                              st.sampled_from(["fgd", "off", "500", "1500", "x", ""]), max_size=3)


@settings(max_examples=200, deadline=None)
@given(names=names, annotations=annotations, gpus=st.integers(0, 3), lowercase=st.booleans(),
       extra_nodes=st.sampled_from([None, "absent", {"items": []}]))
def test_fast_and_general_agree_on_every_names_mode_body(names, annotations, gpus, lowercase, extra_nodes):
    p = payloads.pod(gpus=gpus, annotations=annotations)
    doc = {"pod" if lowercase else "Pod": p, "nodenames" if lowercase else "NodeNames": names}
    if extra_nodes != "absent":
        doc["Nodes"] = extra_nodes
    body = json.dumps(doc).encode()
    result = fast(SchedulingReader(), body)
    if result is not None:
        assert result == general(body)


def test_replies_with_a_lone_surrogate_still_encode_as_json():
    body = encode_filter_result(["a\ud800"], {}, {})
    assert json.loads(body)["NodeNames"] == ["a\ud800"]
