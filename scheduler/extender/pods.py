"""A Pod object (as kube-scheduler serialises it, or as a watch delivers it) -> ``PodInfo``.

What the extender needs from a pod: its identity, where it is bound, what it requests (CPU, memory,
``nvidia.com/gpu`` with Kubernetes' rules for init and sidecar containers, overhead and pod-level
resources), the gpufleet annotations, and which GPU models its node selector or required node
affinity allows.

A GPU share is asked for with the extended resource ``gpufleet.io/gpu-milli`` (1..1000 thousandths
of one GPU, without ``nvidia.com/gpu``): kube-scheduler sees it and the node advertises it, so the
share is not counted as a whole device. The older form, ``nvidia.com/gpu: 1`` plus the annotation
``gpufleet.io/gpu-milli``, still parses as a share (kube-scheduler then counts a whole device for it;
see docs/designs/014-gpu-sharing.md for the migration).

Structural problems raise ``WireError`` with every path; a bad gpufleet annotation is not a wire
error (the pod is valid Kubernetes) and only lands in ``PodInfo.problems``. No I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

import msgspec

from gpufleet.core import names
from gpufleet.core.quantity import QuantityError, parse_quantity
from gpufleet.scheduler.extender.errors import Problems, as_dict, as_list, as_str, str_map
from gpufleet.scheduler.model import GPU_MILLI, ModelError, PodRequest

GPU_RESOURCE = names.GPU_RESOURCE
#: The extended resource a GPU share requests (and a node advertises, 1000 per GPU).
GPU_MILLI_RESOURCE = names.GPU_MILLI
PRODUCT_LABEL = names.GPU_PRODUCT_LABEL
PLACEMENT_ANNOTATION = names.PLACEMENT
GPU_MILLI_ANNOTATION = names.GPU_MILLI
INTERRUPTIBLE_ANNOTATION = names.INTERRUPTIBLE
GPU_IDS_ANNOTATION = names.GPU_IDS
#: The kubelet's mark on the API copy of a static pod (a per-node pod, like a DaemonSet's).
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
PLACEMENTS = ("fgd", "fgd-strand", "binpack", "spread", "cost", "off")
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})
_MIB = Decimal(2**20)
_RESOURCES = ("cpu", "memory", GPU_RESOURCE, GPU_MILLI_RESOURCE)
#: The spec fields ``_pod_requests`` and ``_model_rule`` read.
_SPEC_FIELDS = ("containers", "initContainers", "resources", "overhead", "nodeSelector", "affinity")
_SPECS: dict[bytes, tuple[dict[str, Decimal], ModelRule]] = {}  # their JSON -> what they parse to
_SPECS_KEPT = 1024
_SPEC_KEY_MAX = 16384  # bytes: a bigger spec (a hostile or odd one) is parsed every time, never kept
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class ModelRule:
    """GPU models a pod may run on, from ``nvidia.com/gpu.product`` in its node selector and its
    required node affinity (terms are ORed, expressions in a term ANDed). Other keys are ignored:
    kube-scheduler enforces them before the extender is asked."""

    selector: str | None = None
    terms: tuple[tuple[tuple[str, frozenset[str]], ...], ...] = ()

    @property
    def is_any(self) -> bool:
        return self.selector is None and not self.terms

    def allows(self, model: str) -> bool:
        if self.selector is not None and model != self.selector:
            return False
        if not self.terms:
            return True
        return any(all(_matches(op, values, model) for op, values in term) for term in self.terms)

    def resolve(self, models: Iterable[str]) -> tuple[str, ...]:
        """The allow-list over a cluster's models for ``PodRequest.gpu_models`` (() = any)."""
        if self.is_any:
            return ()
        allowed = tuple(m for m in models if self.allows(m))
        # An empty list would mean "any model" to the model; a name no node has means "none".
        return allowed or ("\x00no-model",)


def _matches(op: str, values: frozenset[str], model: str) -> bool:
    if op == "In":
        return model in values
    if op == "NotIn":
        return model not in values
    if op == "Exists":
        return model != ""
    if op == "DoesNotExist":
        return model == ""
    return True  # Gt/Lt make no sense for a product name; kube-scheduler has judged them already


ANY_MODEL = ModelRule()


@dataclass(frozen=True)
class PodInfo:
    """One pod as the extender sees it. ``request`` is None when the gpufleet annotations make no
    valid request (``problems`` says why); its ``gpu_models`` is left empty, see ``model_rule``."""

    uid: str
    name: str
    namespace: str
    node_name: str
    phase: str
    deleting: bool
    request: PodRequest | None
    placement: str | None
    interruptible: bool
    gpu_ids: tuple[int, ...] | None
    model_rule: ModelRule
    problems: tuple[str, ...] = ()
    #: Why the pod's GPU request can be met nowhere (e.g. a ``gpufleet.io/gpu-milli`` over 1000),
    #: or None. Unlike a bad annotation, such a pod has no fallback: the filter turns every node away.
    gpu_error: str | None = None
    #: The pod's labels (what a PlacementPolicy's podSelector selects).
    labels: dict[str, str] = field(default_factory=dict)
    #: One per node by construction (a DaemonSet's pod or a static pod), not an arrival of the workload:
    #: the learnt workload mix leaves it out.
    per_node: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES

    @property
    def gpus(self) -> int:
        return self.request.num_gpu if self.request is not None else 0


def parse_pod(obj: object, path: str = "Pod") -> PodInfo:
    """Parse a Pod; raises ``WireError`` listing every structural problem."""
    problems = Problems()
    pod = as_dict(obj, path, problems)
    meta = as_dict(pod.get("metadata"), f"{path}.metadata", problems)
    spec = as_dict(pod.get("spec"), f"{path}.spec", problems)
    status = as_dict(pod.get("status"), f"{path}.status", problems)
    name = as_str(meta.get("name"), f"{path}.metadata.name", problems)
    namespace = as_str(meta.get("namespace"), f"{path}.metadata.namespace", problems, "default") or "default"
    uid = as_str(meta.get("uid"), f"{path}.metadata.uid", problems)
    annotations = str_map(meta.get("annotations"), f"{path}.metadata.annotations", problems)
    labels = str_map(meta.get("labels"), f"{path}.metadata.labels", problems)
    node_name = as_str(spec.get("nodeName"), f"{path}.spec.nodeName", problems)
    owners = as_list(meta.get("ownerReferences"), f"{path}.metadata.ownerReferences", problems)
    phase = as_str(status.get("phase"), f"{path}.status.phase", problems)
    totals, rule = _spec_parts(spec, f"{path}.spec", problems)
    problems.raise_if_any()

    notes: list[str] = []
    placement = annotations.get(PLACEMENT_ANNOTATION)
    if placement is not None and placement not in PLACEMENTS:
        notes.append(f"{PLACEMENT_ANNOTATION}={placement!r} is not one of {', '.join(PLACEMENTS)}")
        placement = None
    interruptible = annotations.get(INTERRUPTIBLE_ANNOTATION, "").strip().lower() == "true"
    gpu_ids = _gpu_ids(annotations.get(GPU_IDS_ANNOTATION), notes)
    request = _request(totals, annotations.get(GPU_MILLI_ANNOTATION), f"{namespace}/{name}", notes)
    gpu_error = notes[-1] if request is None and totals.get(GPU_MILLI_RESOURCE) else None
    return PodInfo(
        uid=uid, name=name, namespace=namespace, node_name=node_name, phase=phase,
        deleting=meta.get("deletionTimestamp") is not None, request=request, placement=placement,
        interruptible=interruptible, gpu_ids=gpu_ids, model_rule=rule, problems=tuple(notes), gpu_error=gpu_error,
        labels=labels,
        per_node=MIRROR_ANNOTATION in annotations or any(isinstance(o, dict) and o.get("kind") == "DaemonSet"
                                                          for o in owners),
    )


def _spec_parts(spec: dict, path: str, problems: Problems) -> tuple[dict[str, Decimal], ModelRule]:
    """The pod's request totals and model rule, from ``_SPECS`` when a pod with the same fields was
    parsed before: the replicas of a workload share them, and each pod is parsed at filter and again
    at its watch events."""
    try:
        key: bytes | None = _encode([spec.get(k) for k in _SPEC_FIELDS])
    except (TypeError, ValueError):  # not JSON-shaped (a caller's own object): parsed, not kept
        key = None
    known = _SPECS.get(key) if key is not None else None
    if known is not None:
        return known
    before = len(problems.items)
    parts = _pod_requests(spec, path, problems), _model_rule(spec, path, problems)
    if key is not None and len(key) <= _SPEC_KEY_MAX and len(problems.items) == before < 100:  # clean ones
        if len(_SPECS) >= _SPECS_KEPT:
            _SPECS.clear()
        _SPECS[key] = parts
    return parts


def _container_requests(container: dict, path: str, problems: Problems) -> dict[str, Decimal]:
    """Requests of one container, defaulted from limits where a request is not set (Kubernetes'
    defaulting, which also makes extended resources' request equal their limit)."""
    resources = as_dict(container.get("resources"), f"{path}.resources", problems)
    requests = as_dict(resources.get("requests"), f"{path}.resources.requests", problems)
    limits = as_dict(resources.get("limits"), f"{path}.resources.limits", problems)
    out = {}
    for name in _RESOURCES:
        source, where = (requests, "requests") if name in requests else (limits, "limits")
        if name in source:
            try:
                out[name] = parse_quantity(source[name])
            except QuantityError as err:
                problems.add(f"{path}.resources.{where}.{name}", str(err))
    return out


def _add(a: dict[str, Decimal], b: dict[str, Decimal]) -> dict[str, Decimal]:
    return {k: a.get(k, Decimal(0)) + b.get(k, Decimal(0)) for k in _RESOURCES}


def _max(a: dict[str, Decimal], b: dict[str, Decimal]) -> dict[str, Decimal]:
    return {k: max(a.get(k, Decimal(0)), b.get(k, Decimal(0))) for k in _RESOURCES}


def _pod_requests(spec: dict, path: str, problems: Problems) -> dict[str, Decimal]:
    """max(sum of containers + sidecars, each init container + the sidecars started before it),
    plus overhead; pod-level ``resources.requests`` replace the container sums for CPU and memory."""
    total: dict[str, Decimal] = {}
    for i, c in enumerate(as_list(spec.get("containers"), f"{path}.containers", problems)):
        where = f"{path}.containers[{i}]"
        total = _add(total, _container_requests(as_dict(c, where, problems), where, problems))
    sidecars: dict[str, Decimal] = {}
    init_peak: dict[str, Decimal] = {}
    for i, c in enumerate(as_list(spec.get("initContainers"), f"{path}.initContainers", problems)):
        where = f"{path}.initContainers[{i}]"
        container = as_dict(c, where, problems)
        requests = _container_requests(container, where, problems)
        if container.get("restartPolicy") == "Always":
            sidecars = _add(sidecars, requests)
            init_peak = _max(init_peak, sidecars)
        else:
            init_peak = _max(init_peak, _add(requests, sidecars))
    total = _max(_add(total, sidecars), init_peak)
    pod_level = as_dict(as_dict(spec.get("resources"), f"{path}.resources", problems).get("requests"),
                        f"{path}.resources.requests", problems)
    for name in ("cpu", "memory"):
        if name in pod_level:
            try:
                total[name] = parse_quantity(pod_level[name])
            except QuantityError as err:
                problems.add(f"{path}.resources.requests.{name}", str(err))
    overhead = as_dict(spec.get("overhead"), f"{path}.overhead", problems)
    for name in ("cpu", "memory"):
        if name in overhead:
            try:
                total[name] = total.get(name, Decimal(0)) + parse_quantity(overhead[name])
            except QuantityError as err:
                problems.add(f"{path}.overhead.{name}", str(err))
    return total


def _ceil(value: Decimal) -> int:
    return int(value.to_integral_value(rounding="ROUND_CEILING"))


def _request(totals: dict[str, Decimal], milli_annotation: str | None, name: str,
             notes: list[str]) -> PodRequest | None:
    cpu = min(_ceil(totals.get("cpu", Decimal(0)) * 1000), 2**62)
    memory = min(_ceil(totals.get("memory", Decimal(0)) / _MIB), 2**62)
    gpus = _ceil(totals.get(GPU_RESOURCE, Decimal(0)))
    whole = GPU_MILLI if gpus else 0
    shared = totals.get(GPU_MILLI_RESOURCE, Decimal(0))
    if shared:
        milli = _shared_resource(shared, gpus, notes)
        if milli is None:
            return None
    else:
        milli = _share(milli_annotation, gpus, notes)
    try:
        if milli is not None:
            return PodRequest(cpu, memory, 1, milli, (), name)
        return PodRequest(cpu, memory, gpus, whole, (), name)
    except ModelError as err:
        notes.append(str(err))
        return None


def _share(value: str | None, gpus: int, notes: list[str]) -> int | None:
    """The per-GPU share the annotation asks for, or None (absent or unusable: noted, and the pod
    is taken at its whole-GPU request, which is what kube-scheduler accounts anyway)."""
    if value is None:
        return None
    try:
        milli = int(value.strip())
    except ValueError:
        notes.append(f"{GPU_MILLI_ANNOTATION}={value!r} is not an integer")
        return None
    if not 1 <= milli <= GPU_MILLI:
        notes.append(f"{GPU_MILLI_ANNOTATION}={milli} must be in 1..{GPU_MILLI}")
        return None
    if gpus > 1:
        notes.append(f"{GPU_MILLI_ANNOTATION} asks for a share of one GPU, but the pod requests {gpus} GPUs")
        return None
    return milli


def _shared_resource(value: Decimal, gpus: int, notes: list[str]) -> int | None:
    """The share a ``gpufleet.io/gpu-milli`` request asks for, or None (noted: the pod has no valid
    request, and the extender's filter turns it away with the note as the reason)."""
    if gpus:
        notes.append(f"the pod requests both {GPU_RESOURCE} and {GPU_MILLI_RESOURCE}; ask for whole GPUs "
                     f"with {GPU_RESOURCE} or for a share of one GPU with {GPU_MILLI_RESOURCE}, not both")
        return None
    milli = _ceil(value)
    if not 1 <= milli <= GPU_MILLI:
        notes.append(f"{GPU_MILLI_RESOURCE}: {milli} must be in 1..{GPU_MILLI} (a share never spans two GPUs; "
                     f"ask for whole GPUs with {GPU_RESOURCE})")
        return None
    return milli


def _gpu_ids(value: str | None, notes: list[str]) -> tuple[int, ...] | None:
    if value is None or not value.strip():
        return None
    try:
        ids = tuple(int(part) for part in value.split(","))
    except ValueError:
        notes.append(f"{GPU_IDS_ANNOTATION}={value!r} is not a comma-separated list of GPU indices")
        return None
    if any(i < 0 or i > 1023 for i in ids) or len(set(ids)) != len(ids):
        notes.append(f"{GPU_IDS_ANNOTATION}={value!r} must list distinct indices in 0..1023")
        return None
    return ids


def _model_rule(spec: dict, path: str, problems: Problems) -> ModelRule:
    selector = str_map(spec.get("nodeSelector"), f"{path}.nodeSelector", problems).get(PRODUCT_LABEL)
    affinity = as_dict(spec.get("affinity"), f"{path}.affinity", problems)
    node_affinity = as_dict(affinity.get("nodeAffinity"), f"{path}.affinity.nodeAffinity", problems)
    required_path = f"{path}.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
    required = as_dict(node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution"), required_path,
                       problems)
    terms = []
    any_term = False
    for i, t in enumerate(as_list(required.get("nodeSelectorTerms"), f"{required_path}.nodeSelectorTerms",
                                  problems)):
        where = f"{required_path}.nodeSelectorTerms[{i}]"
        term = as_dict(t, where, problems)
        exprs = []
        for j, e in enumerate(as_list(term.get("matchExpressions"), f"{where}.matchExpressions", problems)):
            expr = as_dict(e, f"{where}.matchExpressions[{j}]", problems)
            if expr.get("key") != PRODUCT_LABEL:
                continue
            values = as_list(expr.get("values"), f"{where}.matchExpressions[{j}].values", problems)
            op = as_str(expr.get("operator"), f"{where}.matchExpressions[{j}].operator", problems)
            exprs.append((op, frozenset(v for v in values if isinstance(v, str))))
        any_term = any_term or not exprs  # a term without the product key allows every model
        terms.append(tuple(exprs))
    return ModelRule(selector=selector, terms=() if any_term else tuple(terms))
