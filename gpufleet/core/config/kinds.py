"""The gpufleet.io/v1alpha1 kinds: PlacementPolicy, ReclaimPolicy, PriceCatalog and GpuBudget.

Each spec is a frozen dataclass; :mod:`gpufleet.core.config.crd` writes the CRDs from them and the
components parse objects into them with :func:`gpufleet.core.config.schema.parse`. Durations are Go
duration strings (``90s``, ``30m``, ``1h30m``) as Kubernetes writes them; :func:`seconds` converts.
All four kinds are cluster-scoped: they select namespaces, so no namespace owns them. No I/O here.
"""

# prop() returns dataclasses.field(...), which RUF009 cannot tell.
# ruff: noqa: RUF009

from __future__ import annotations

import re
from dataclasses import dataclass

from gpufleet.core.config.schema import Rule, prop

GROUP = "gpufleet.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

#: Go's time.ParseDuration units that make sense for policies.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
#: Five cron fields, or a @-macro (robfig/cron, as CronJob accepts).
CRON_PATTERN = r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|(\S+\s+){4}\S+)$"
#: An IANA zone name ("UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires").
TIME_ZONE_PATTERN = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def seconds(duration: str) -> float:
    """A Go duration string (``1h30m``) in seconds; ValueError when it is not one."""
    if not re.fullmatch(DURATION_PATTERN, duration):
        raise ValueError(f"{duration!r} is not a duration like 90s, 30m or 1h30m")
    return sum(float(n) * _UNIT_SECONDS[u] for n, _, u in re.findall(r"([0-9]+(\.[0-9]+)?)(ms|s|m|h)", duration))


# ---- shared pieces -----------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class LabelSelectorRequirement:
    """One matchExpressions entry, as in metav1.LabelSelector."""

    key: str = prop(doc="label key", max_length=317)
    operator: str = prop(doc="In, NotIn, Exists or DoesNotExist", enum=("In", "NotIn", "Exists", "DoesNotExist"))
    values: tuple[str, ...] = prop((), "values for In and NotIn", max_items=64, show_default=False,
                                   item_max_length=63)

    __cel__ = (
        Rule("self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) "
             ": (!has(self.values) || size(self.values) == 0)",
             "In and NotIn need values; Exists and DoesNotExist take none"),
    )


@dataclass(frozen=True, kw_only=True)
class LabelSelector:
    """A label selector (metav1.LabelSelector): every matchLabels pair and every expression must match."""

    match_labels: dict[str, str] | None = prop(None, "labels that must all be present with these values",
                                               max_properties=32, item_max_length=63)
    match_expressions: tuple[LabelSelectorRequirement, ...] = prop((), "requirements that must all hold",
                                                                   max_items=16, show_default=False)

    def matches(self, labels: dict[str, str]) -> bool:
        """Whether an object with ``labels`` is selected (Kubernetes' semantics)."""
        if any(labels.get(k) != v for k, v in (self.match_labels or {}).items()):
            return False
        for req in self.match_expressions:
            present = req.key in labels
            if req.operator == "In" and (not present or labels[req.key] not in req.values):
                return False
            if req.operator == "NotIn" and present and labels[req.key] in req.values:
                return False
            if req.operator == "Exists" and not present:
                return False
            if req.operator == "DoesNotExist" and present:
                return False
        return True


#: CEL on a namespace selector that must never reach kube-system.
NOT_KUBE_SYSTEM: tuple[Rule, ...] = (
    Rule("(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && "
         "self.matchExpressions.exists(e, e.operator == 'In' || (e.operator == 'Exists' && "
         f"e.key != '{NAMESPACE_NAME_LABEL}')))",
         "an empty or only-negative selector selects every namespace, kube-system included; "
         "select namespaces with matchLabels or an In/Exists expression", reason="FieldValueForbidden"),
    Rule(f"!has(self.matchLabels) || !('{NAMESPACE_NAME_LABEL}' in self.matchLabels) || "
         f"self.matchLabels['{NAMESPACE_NAME_LABEL}'] != 'kube-system'",
         "must not select kube-system", reason="FieldValueForbidden"),
    Rule(f"!has(self.matchExpressions) || !self.matchExpressions.exists(e, e.key == '{NAMESPACE_NAME_LABEL}' "
         "&& e.operator == 'In' && has(e.values) && 'kube-system' in e.values)",
         "must not select kube-system", reason="FieldValueForbidden"),
)

#: CEL on a namespace selector that must not select every namespace by being empty.
NOT_EMPTY: tuple[Rule, ...] = (
    Rule("(has(self.matchLabels) && size(self.matchLabels) > 0) || "
         "(has(self.matchExpressions) && size(self.matchExpressions) > 0)",
         "an empty selector selects every namespace; opt namespaces in with matchLabels or matchExpressions"),
)


# ---- PlacementPolicy ---------------------------------------------------------------------------

POLICIES = ("fgd", "fgd-strand", "binpack", "spread", "cost", "off")
MIX_SOURCES = ("Learned", "Default", "ConfigMap")


@dataclass(frozen=True, kw_only=True)
class PlacementWeights:
    """Weights of the cost policy's terms."""

    fragmentation: float = prop(1.0, "multiplier on the cost of the GPU capacity a placement strands",
                                minimum=0, maximum=100)


@dataclass(frozen=True, kw_only=True)
class ConfigMapKeyRef:
    """A key of a ConfigMap."""

    namespace: str = prop(doc="namespace of the ConfigMap", pattern=DNS_LABEL, max_length=63)
    name: str = prop(doc="name of the ConfigMap", max_length=253)
    key: str = prop(doc="key holding the pod list CSV (openb columns)", max_length=253)


@dataclass(frozen=True, kw_only=True)
class WorkloadMixSource:
    """Where FGD's typical pods come from: learnt from the running pods (``workload.learnt_mix``), the
    built-in default, or a pod list CSV in a ConfigMap."""

    source: str = prop("Learned", "Learned, Default or ConfigMap", enum=MIX_SOURCES)
    config_map: ConfigMapKeyRef | None = prop(None, "the ConfigMap key (source ConfigMap only)")

    __cel__ = (
        Rule("(self.source == 'ConfigMap') == has(self.configMap)",
             "configMap is required with source ConfigMap and not allowed otherwise", field_path=".configMap"),
    )


@dataclass(frozen=True, kw_only=True)
class PlacementPolicySpec:
    """Which pods the gpufleet extender places, and how."""

    namespace_selector: LabelSelector = prop(doc="namespaces whose pods this policy places",
                                             rules=NOT_EMPTY)
    pod_selector: LabelSelector | None = prop(None, "only pods with these labels (default: every GPU pod)")
    policy: str = prop("fgd", "fgd (least fragmentation), fgd-strand (FGD and CPU-stranded GPUs), binpack, "
                              "spread, cost ($/h with stranded GPUs "
                              "and spot risk) or off", enum=POLICIES)
    weights: PlacementWeights = prop(PlacementWeights(), "weights of the cost policy")
    interruption_penalty_gpu_hours: float = prop(
        1.0, "cost policy: GPU-hours per GPU charged to pods not marked interruptible on spot nodes",
        minimum=0, maximum=1000)
    workload_mix: WorkloadMixSource = prop(WorkloadMixSource(), "where FGD's typical pods come from")


@dataclass(frozen=True, kw_only=True)
class ReclaimBudget:
    """At most ``maxPods`` reclaims at a time; with a schedule, only during its windows (cron + duration)."""

    max_pods: int = prop(doc="reclaims allowed at once while this budget is active (0 blocks all)",
                         minimum=0, maximum=10000)
    schedule: str | None = prop(None, "cron schedule when the budget starts (5 fields or @daily)",
                                pattern=CRON_PATTERN, max_length=128)
    time_zone: str | None = prop(None, "IANA time zone of the schedule (default UTC)",
                                 pattern=TIME_ZONE_PATTERN, max_length=64)
    duration: str | None = prop(None, "how long the budget stays active after each scheduled start",
                                pattern=DURATION_PATTERN, max_length=32)

    __cel__ = (
        Rule("has(self.schedule) == has(self.duration)",
             "a schedule needs a duration, and a duration needs a schedule"),
        Rule("!has(self.timeZone) || has(self.schedule)", "timeZone applies only to a schedule",
             field_path=".timeZone"),
        Rule("!has(self.duration) || duration(self.duration) > duration('0s')", "duration must be positive",
             field_path=".duration"),
    )


# ---- ReclaimPolicy -----------------------------------------------------------------------------

RECLAIM_MODES = ("Off", "DryRun", "Notify", "Reclaim")
RECLAIM_DETECTION = ("forecast", "window")


@dataclass(frozen=True, kw_only=True)
class ReclaimPolicySpec:
    """When idle GPU pods are reclaimed: opted-in namespaces only, never kube-system, with notice,
    grace and disruption budgets."""

    namespace_selector: LabelSelector = prop(doc="namespaces whose idle GPU pods may be reclaimed",
                                             rules=NOT_KUBE_SYSTEM)
    pod_selector: LabelSelector | None = prop(None, "only pods with these labels")
    mode: str = prop("DryRun", "Off, DryRun (record decisions), Notify (annotate and post Events) or Reclaim",
                     enum=RECLAIM_MODES)
    detection: str = prop("forecast", "forecast (idle span forecast) or window (idle for the whole window)",
                          enum=RECLAIM_DETECTION)
    window: str | None = prop(None, "idle time before acting (detection window)", pattern=DURATION_PATTERN,
                              max_length=32)
    threshold_percent: float = prop(1.0, "GPU utilisation at or below this is idle, %", minimum=0, maximum=100)
    notice: str = prop("15m", "notice (annotation and Event) before acting", pattern=DURATION_PATTERN,
                       max_length=32)
    grace: str = prop("10m", "pods younger than this are never reclaimed", pattern=DURATION_PATTERN,
                      max_length=32)
    budgets: tuple[ReclaimBudget, ...] = prop((), "disruption budgets; the smallest active one applies",
                                              max_items=16, show_default=False)

    __cel__ = (
        Rule("self.detection != 'window' || has(self.window)", "detection window needs spec.window",
             field_path=".window"),
        Rule("!has(self.window) || duration(self.window) >= duration('1m')", "window must be at least 1m",
             field_path=".window"),
    )


# ---- PriceCatalog ------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class InstancePriceEntry:
    """One instance type's price in one region (``*``: every region), USD per hour for the instance."""

    instance_type: str = prop(doc="cloud instance type, e.g. p4d.24xlarge", min_length=1, max_length=63)
    region: str = prop("*", "region, or * for every region", max_length=63)
    cloud: str | None = prop(None, "aws, gcp, azure, ...", max_length=32)
    gpu_model: str | None = prop(None, "GPU model, e.g. A100", max_length=63)
    gpu_count: int | None = prop(None, "GPUs per instance", minimum=0, maximum=64)
    on_demand_per_hour: float | None = prop(None, "on-demand price, USD per hour", minimum=0, maximum=10000)
    spot_per_hour: float | None = prop(None, "spot price, USD per hour", minimum=0, maximum=10000)

    __cel__ = (
        Rule("has(self.onDemandPerHour) || has(self.spotPerHour)",
             "an instance needs onDemandPerHour or spotPerHour"),
        Rule("!has(self.onDemandPerHour) || !has(self.spotPerHour) || self.spotPerHour <= self.onDemandPerHour",
             "spotPerHour must not exceed onDemandPerHour", field_path=".spotPerHour"),
    )


@dataclass(frozen=True, kw_only=True)
class PriceCatalogSpec:
    """Instance prices that override the built-in table (per instance type and region)."""

    currency: str = prop("USD", "currency of every price", enum=("USD",))
    instances: tuple[InstancePriceEntry, ...] = prop(
        doc="prices; one entry per instance type and region", min_items=1, max_items=2048,
        list_type="map", list_map_keys=("instanceType", "region"))


# ---- GpuBudget ---------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class GpuBudgetSpec:
    """A team's monthly GPU budget and the shares of it that raise alerts."""

    team: str = prop(doc="the team (the `team` label of its namespaces)", pattern=DNS_LABEL, max_length=63)
    monthly_usd: float = prop(doc="budget per calendar month, USD", minimum=0, exclusive_minimum=True,
                              maximum=1e9)
    alert_thresholds_percent: tuple[int, ...] = prop(
        (50, 80, 100), "alert when spend reaches these shares of the budget, %", max_items=10,
        list_type="set", rules=(Rule("self.all(t, t > 0 && t <= 1000)", "thresholds must be in 1..1000 %"),))
    time_zone: str = prop("UTC", "IANA time zone in which months start", pattern=TIME_ZONE_PATTERN,
                          max_length=64)
