"""kube-scheduler's extender wire format (``k8s.io/kube-scheduler/extender/v1``): TypedDicts for the
JSON, parsing into frozen dataclasses, and encoding of the replies.

The Go structs have no JSON tags, so kube-scheduler writes PascalCase keys (``Pod``, ``NodeNames``);
Go reads replies case-insensitively. Request keys are matched case-insensitively here too, so the
pre-2020 lowercase tags work. Replies follow the contract to the letter: ``prioritize`` is a bare
array of ``{"Host", "Score"}`` with integer scores, ``filter`` never has a null ``NodeNames`` in
names mode. No I/O here.

Speed: ``SchedulingReader`` reads the bodies kube-scheduler actually sends (names mode, its own key
spelling) in one typed msgspec pass and parses each distinct Pod once (filter and prioritize of one
scheduling cycle carry the same Pod bytes); any other body goes to the general parser, which also
words the errors. Replies are encoded with msgspec (compact, UTF-8), falling back to ``json``.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

import msgspec

from gpufleet.scheduler.extender.errors import Problems, WireError, as_dict, as_list, as_str
from gpufleet.scheduler.extender.pods import PodInfo, parse_pod

MIN_SCORE = 0
MAX_SCORE = 10
MAX_NODES = 100_000


class NodeListJSON(TypedDict, total=False):
    metadata: dict[str, Any]
    items: list[dict[str, Any]]


class ExtenderArgsJSON(TypedDict):
    Pod: dict[str, Any]
    Nodes: NodeListJSON | None
    NodeNames: list[str] | None


class HostPriorityJSON(TypedDict):
    Host: str
    Score: int


class ExtenderFilterResultJSON(TypedDict):
    Nodes: NodeListJSON | None
    NodeNames: list[str] | None
    FailedNodes: dict[str, str]
    FailedAndUnresolvableNodes: dict[str, str]
    Error: str


class ExtenderBindingArgsJSON(TypedDict):
    PodName: str
    PodNamespace: str
    PodUID: str
    Node: str


class ExtenderBindingResultJSON(TypedDict):
    Error: str


class MetaPodJSON(TypedDict):
    UID: str


class MetaVictimsJSON(TypedDict):
    Pods: list[MetaPodJSON]
    NumPDBViolations: int


class VictimsJSON(TypedDict):
    Pods: list[dict[str, Any]]
    NumPDBViolations: int


class ExtenderPreemptionArgsJSON(TypedDict):
    Pod: dict[str, Any]
    NodeNameToVictims: dict[str, VictimsJSON] | None
    NodeNameToMetaVictims: dict[str, MetaVictimsJSON] | None


class ExtenderPreemptionResultJSON(TypedDict):
    NodeNameToMetaVictims: dict[str, MetaVictimsJSON]


@dataclass(frozen=True)
class SchedulingArgs:
    """A filter or prioritize request. ``nodes`` holds the raw Node objects in full-Nodes mode
    (``nodeCacheCapable: false``) and is None in names mode."""

    pod: PodInfo
    node_names: tuple[str, ...]
    nodes: tuple[dict[str, Any], ...] | None

    @property
    def names_only(self) -> bool:
        return self.nodes is None


@dataclass(frozen=True)
class BindingArgs:
    pod_name: str
    namespace: str
    uid: str
    node: str


@dataclass(frozen=True)
class Victims:
    uids: tuple[str, ...]
    pdb_violations: int


@dataclass(frozen=True)
class PreemptionArgs:
    pod: PodInfo
    victims: Mapping[str, Victims]


def _keys(doc: object, what: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise WireError(f"{what}: expected a JSON object, got {type(doc).__name__}")
    return {str(k).lower(): v for k, v in doc.items()}


def parse_scheduling_args(doc: object) -> SchedulingArgs:
    """ExtenderArgs -> SchedulingArgs; raises ``WireError`` with every problem."""
    keys = _keys(doc, "ExtenderArgs")
    problems = Problems()
    if keys.get("pod") is None:
        problems.add("Pod", "required")
    names_value, nodes_value = keys.get("nodenames"), keys.get("nodes")
    nodes: tuple[dict[str, Any], ...] | None = None
    if names_value is not None:
        names = _names(names_value, problems)
    elif nodes_value is not None:
        items = as_list(as_dict(nodes_value, "Nodes", problems).get("items"), "Nodes.items", problems)
        if len(items) > MAX_NODES:
            problems.add("Nodes.items", f"more than {MAX_NODES} nodes")
            items = []
        nodes = tuple(as_dict(item, f"Nodes.items[{i}]", problems) for i, item in enumerate(items))
        names = tuple(as_str(as_dict(n.get("metadata"), f"Nodes.items[{i}].metadata", problems).get("name"),
                             f"Nodes.items[{i}].metadata.name", problems) for i, n in enumerate(nodes))
    else:
        problems.add("NodeNames", "one of NodeNames or Nodes is required")
        names = ()
    problems.raise_if_any()
    return SchedulingArgs(pod=parse_pod(keys["pod"]), node_names=names, nodes=nodes)


class _NamesModeArgs(msgspec.Struct, forbid_unknown_fields=True):
    """ExtenderArgs exactly as kube-scheduler writes them in names mode (``Nodes`` is null there and
    ignored when ``NodeNames`` is set, as in ``parse_scheduling_args``)."""

    Pod: msgspec.Raw = msgspec.Raw(b"")
    Nodes: msgspec.Raw = msgspec.Raw(b"")
    NodeNames: list[str] | None = None


_NAMES_MODE = msgspec.json.Decoder(_NamesModeArgs)
_ANY_JSON = msgspec.json.Decoder()


class SchedulingReader:
    """ExtenderArgs from a request body, fast for the common shape. ``read`` returns None for any
    body that is not a names-mode request with a Pod (other key spellings, full Nodes, too many
    names, not JSON): the caller then decodes it and calls ``parse_scheduling_args``, which gives the
    same result or the errors. A Pod's bytes map to its ``PodInfo`` in a small cache, so the second
    verb of a scheduling cycle does not parse it again (``parse_pod`` reads nothing but the Pod)."""

    def __init__(self, cache_size: int = 512) -> None:
        self._pods: dict[bytes, PodInfo] = {}
        self._size = cache_size

    def read(self, body: bytes) -> SchedulingArgs | None:
        try:
            args = _NAMES_MODE.decode(body)
        except (msgspec.MsgspecError, RecursionError):
            return None
        raw = bytes(args.Pod)
        names = args.NodeNames
        if names is None or len(names) > MAX_NODES or raw in (b"", b"null"):
            return None
        pod = self._pods.get(raw)
        if pod is None:
            try:
                doc = _ANY_JSON.decode(raw)
            except (msgspec.MsgspecError, RecursionError):
                return None
            pod = parse_pod(doc)  # a WireError here is the one parse_scheduling_args would raise
            if len(self._pods) >= self._size:
                self._pods.clear()
            self._pods[raw] = pod
        return SchedulingArgs(pod=pod, node_names=tuple(names), nodes=None)


def _names(value: object, problems: Problems) -> tuple[str, ...]:
    items = as_list(value, "NodeNames", problems)
    if len(items) > MAX_NODES:
        problems.add("NodeNames", f"more than {MAX_NODES} names")
        return ()
    if not set(map(type, items)) <= {str}:  # one C-level pass; the slow loop only to name the culprits
        for i, item in enumerate(items):
            if not isinstance(item, str):
                problems.add(f"NodeNames[{i}]", f"expected a string, got {type(item).__name__}")
    return tuple(items) if not problems.items else ()


def parse_binding_args(doc: object) -> BindingArgs:
    keys = _keys(doc, "ExtenderBindingArgs")
    problems = Problems()
    values = {}
    for field in ("PodName", "PodNamespace", "PodUID", "Node"):
        value = as_str(keys.get(field.lower()), field, problems)
        if not value and field != "PodUID":
            problems.add(field, "must be a non-empty string")
        values[field] = value
    problems.raise_if_any()
    return BindingArgs(values["PodName"], values["PodNamespace"], values["PodUID"], values["Node"])


def parse_preemption_args(doc: object) -> PreemptionArgs:
    """Victims come as UIDs (``NodeNameToMetaVictims``, names mode) or as full pods."""
    keys = _keys(doc, "ExtenderPreemptionArgs")
    problems = Problems()
    if keys.get("pod") is None:
        problems.add("Pod", "required")
    victims: dict[str, Victims] = {}
    meta = keys.get("nodenametometavictims")
    field = "NodeNameToMetaVictims" if meta is not None else "NodeNameToVictims"
    for node, entry in as_dict(meta if meta is not None else keys.get("nodenametovictims"), field,
                               problems).items():
        where = f"{field}.{node}"
        entry = {str(k).lower(): v for k, v in as_dict(entry, where, problems).items()}
        uids = []
        for i, pod in enumerate(as_list(entry.get("pods"), f"{where}.Pods", problems)):
            pod = as_dict(pod, f"{where}.Pods[{i}]", problems)
            if meta is not None:
                uid = next((v for k, v in pod.items() if str(k).lower() == "uid"), None)
            else:
                uid = as_dict(pod.get("metadata"), f"{where}.Pods[{i}].metadata", problems).get("uid")
            uids.append(as_str(uid, f"{where}.Pods[{i}].UID", problems))
        count = entry.get("numpdbviolations", 0)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            problems.add(f"{where}.NumPDBViolations", "expected a non-negative integer")
            count = 0
        victims[node] = Victims(tuple(uids), count)
    problems.raise_if_any()
    return PreemptionArgs(pod=parse_pod(keys["pod"]), victims=victims)


def _dumps(value: object) -> bytes:
    try:
        return msgspec.json.encode(value)
    except (UnicodeEncodeError, TypeError, OverflowError):  # e.g. a lone surrogate from a \ud800 escape
        return json.dumps(value, separators=(",", ":")).encode()


class PriorityEncoder:
    """Encodes HostPriorityList replies from cached per-host entries (``{"Host":"n","Score":7}`` for each
    score 0..10): a reply for 500 hosts is one join, with no per-host Python frame or ``json.dumps``."""

    def __init__(self, max_cached: int = 100_000) -> None:
        self._entries: dict[str, tuple[bytes, ...]] = {}
        self._max = max_cached

    def _host(self, name: str) -> tuple[bytes, ...]:
        prefix = b'{"Host":' + _dumps(name) + b',"Score":'
        entries = tuple(prefix + str(score).encode() + b"}" for score in range(MIN_SCORE, MAX_SCORE + 1))
        if len(self._entries) < self._max:
            self._entries[name] = entries
        return entries

    def encode(self, names: Sequence[str], scores: Sequence[int]) -> bytes:
        entries = list(map(self._entries.get, names))
        if None in entries:
            entries = [e if e is not None else self._host(n) for e, n in zip(entries, names)]
        return b"[" + b",".join(map(operator.getitem, entries, scores)) + b"]"


def encode_filter_result(passed: Sequence[str], failed: Mapping[str, str], unresolvable: Mapping[str, str],
                         nodes: Sequence[dict[str, Any]] | None = None, error: str = "") -> bytes:
    """ExtenderFilterResult. In full-Nodes mode (``nodes`` given) the survivors go back as a NodeList,
    which is what kube-scheduler reads when nodeCacheCapable is false."""
    result: ExtenderFilterResultJSON = {
        "Nodes": None,
        "NodeNames": list(passed),
        "FailedNodes": dict(failed),
        "FailedAndUnresolvableNodes": dict(unresolvable),
        "Error": error,
    }
    if nodes is not None:
        keep = set(passed)
        result["Nodes"] = {"metadata": {}, "items": [n for n in nodes if _node_name(n) in keep]}
        result["NodeNames"] = None
    return _dumps(result)


def _node_name(node: dict[str, Any]) -> str:
    meta = node.get("metadata")
    return meta.get("name", "") if isinstance(meta, dict) else ""


def encode_binding_result(error: str = "") -> bytes:
    result: ExtenderBindingResultJSON = {"Error": error}
    return _dumps(result)


def encode_preemption_result(victims: Mapping[str, Victims]) -> bytes:
    result: ExtenderPreemptionResultJSON = {"NodeNameToMetaVictims": {
        node: {"Pods": [{"UID": uid} for uid in v.uids], "NumPDBViolations": v.pdb_violations}
        for node, v in victims.items()
    }}
    return _dumps(result)


def encode_error(message: str) -> bytes:
    """The body of a 4xx reply: ``{"Error": ...}``, the field every extender result has."""
    return _dumps({"Error": message})
