"""Policy-as-code rules across the objects of a config repository (what no single schema can see).

- ``namespace-owner``: a namespace that opts in to gpufleet (a ``gpufleet.io/`` label or annotation, or
  selected by a PlacementPolicy or ReclaimPolicy) or runs GPU workloads in the repository has ``team``
  and ``cost-center`` labels;
- ``budget-team``: every GpuBudget names a team that exists (a namespace labelled ``team: <name>``),
  one budget per team;
- ``reclaim-kube-system``: no ReclaimPolicy selects kube-system (with kube-system's labels from the
  repository, or the ones Kubernetes gives it);
- ``placement-overlap``: no namespace is selected by two namespace-wide PlacementPolicies (without
  ``podSelector``), nor by two with the same ``podSelector``;
- ``duplicate-object``: no object is defined twice;
- ``schedule``: budget time zones exist in the IANA database and cron fields are in range (the API
  server checks only their shape).

Pure functions over parsed documents; no I/O here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from gpufleet.core import names
from gpufleet.core.config.kinds import API_VERSION, NAMESPACE_NAME_LABEL, LabelSelector
from gpufleet.core.config.schema import SpecError, parse
from gpufleet.validate.documents import Document

TEAM_LABEL, COST_CENTER_LABEL = "team", "cost-center"
OPT_IN_PREFIX = names.PREFIX
#: Where each workload kind keeps its pod spec.
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}


@dataclass(frozen=True)
class Finding:
    """One violation: where, which field, what is wrong, and which check said so."""

    path: str
    line: int
    ref: str
    field: str
    message: str
    #: "apiserver" or a rule name above.
    rule: str

    def text(self) -> str:
        where = f"{self.field}: " if self.field else ""
        return f"{self.path}:{self.line}: {self.ref}: {where}{self.message} [{self.rule}]"


def finding(doc: Document, field: str, message: str, rule: str) -> Finding:
    return Finding(str(doc.path), doc.line_of(field) if field else doc.line, doc.ref, field, message, rule)


def namespace_labels(doc: Document) -> dict[str, str]:
    """A Namespace's labels including the one Kubernetes adds with its name."""
    return {**doc.labels, NAMESPACE_NAME_LABEL: doc.name}


def uses_gpus(doc: Document) -> bool:
    """Whether a workload's pod spec requests a GPU resource or names the gpufleet scheduler."""
    spec = doc.obj
    for key in POD_SPEC_PATHS.get(doc.kind, ()):
        spec = spec.get(key) if isinstance(spec, dict) else None
    if not isinstance(spec, dict):
        return False
    if str(spec.get("schedulerName") or "").startswith("gpufleet"):
        return True
    containers = (spec.get("containers") or []) + (spec.get("initContainers") or [])
    for container in containers if isinstance(containers, list) else []:
        resources = container.get("resources") if isinstance(container, dict) else None
        for part in ("limits", "requests"):
            amounts = (resources or {}).get(part) if isinstance(resources, dict) else None
            if isinstance(amounts, dict) and any("gpu" in str(name).lower() for name in amounts):
                return True
    return False


def _selector(doc: Document) -> LabelSelector | None:
    spec = doc.obj.get("spec") if isinstance(doc.obj, dict) else None
    raw = spec.get("namespaceSelector") if isinstance(spec, dict) else None
    try:
        return parse(LabelSelector, raw, "spec.namespaceSelector")
    except SpecError:
        return None  # the API server's verdict reports the bad selector


def _ours(doc: Document, kind: str) -> bool:
    return doc.api_version == API_VERSION and doc.kind == kind


def check(docs: Iterable[Document]) -> list[Finding]:
    """Every rule over the documents of one repository."""
    docs = [d for d in docs if isinstance(d.obj, dict)]
    namespaces = {d.name: d for d in docs if d.api_version == "v1" and d.kind == "Namespace" and d.name}
    placements = [d for d in docs if _ours(d, "PlacementPolicy")]
    reclaims = [d for d in docs if _ours(d, "ReclaimPolicy")]
    findings: list[Finding] = []
    findings += _duplicates(docs)
    findings += _owners(docs, namespaces, placements + reclaims)
    findings += _budgets([d for d in docs if _ours(d, "GpuBudget")], namespaces)
    findings += _reclaim_kube_system(reclaims, namespaces)
    findings += _placement_overlap(placements, namespaces)
    findings += _schedules(reclaims, [d for d in docs if _ours(d, "GpuBudget")])
    return findings


#: (lowest, highest) of the five cron fields: minute, hour, day of month, month, day of week.
CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_CRON_NAMES = {"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8, "sep": 9,
               "oct": 10, "nov": 11, "dec": 12, "sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5,
               "sat": 6}


def cron_problem(schedule: str) -> str | None:
    """Why a 5-field cron schedule is not one (robfig/cron's syntax), or None."""
    if schedule.startswith("@"):
        return None
    fields = schedule.split()
    if len(fields) != 5:
        return f"{schedule!r} has {len(fields)} fields, not 5"
    for value, (low, high), name in zip(fields, CRON_RANGES, ("minute", "hour", "day", "month", "weekday"),
                                        strict=True):
        for part in value.split(","):
            base, _, step = part.partition("/")
            if step and (not step.isdigit() or int(step) == 0):
                return f"{name} {part!r}: the step must be a positive number"
            if base in ("*", "?"):
                continue
            for bound in base.split("-", 1):
                number = _CRON_NAMES.get(bound.lower()) if not bound.isdigit() else int(bound)
                if number is None or not low <= number <= high:
                    return f"{name} {bound!r} is not in {low}..{high}"
    return None


def _time_zones() -> set[str]:
    import zoneinfo

    return zoneinfo.available_timezones()


def _schedules(reclaims: list[Document], budgets: list[Document]) -> list[Finding]:
    zones = _time_zones()
    out = []

    def zone(doc: Document, field: str, value: object) -> None:
        if isinstance(value, str) and value not in zones:
            out.append(finding(doc, field, f"time zone {value!r} is not in the IANA database (e.g. Europe/Berlin, UTC)",
                               "schedule"))

    for doc in reclaims:
        spec = doc.obj.get("spec")
        budget_list = spec.get("budgets") if isinstance(spec, dict) else None
        for i, budget in enumerate(budget_list if isinstance(budget_list, list) else []):
            if not isinstance(budget, dict):
                continue
            zone(doc, f"spec.budgets[{i}].timeZone", budget.get("timeZone"))
            schedule = budget.get("schedule")
            problem = cron_problem(schedule) if isinstance(schedule, str) else None
            if problem:
                out.append(finding(doc, f"spec.budgets[{i}].schedule", problem, "schedule"))
    for doc in budgets:
        spec = doc.obj.get("spec")
        zone(doc, "spec.timeZone", spec.get("timeZone") if isinstance(spec, dict) else None)
    return out


def _duplicates(docs: list[Document]) -> list[Finding]:
    seen: dict[tuple[str, str, str | None, str], Document] = {}
    out = []
    for doc in docs:
        if not doc.metadata.get("name"):
            continue
        group = doc.api_version.split("/")[0] if "/" in doc.api_version else ""
        key = (f"{group}/{doc.kind}", doc.name, doc.namespace, "")
        if key in seen:
            first = seen[key]
            out.append(finding(doc, "metadata.name", f"defined twice (first at {first.path}:{first.line})",
                               "duplicate-object"))
        else:
            seen[key] = doc
    return out


def _owners(docs: list[Document], namespaces: dict[str, Document], policies: list[Document]) -> list[Finding]:
    out = []
    for name, ns in namespaces.items():
        keys = [k for k in (*ns.labels, *ns.annotations) if k.startswith(OPT_IN_PREFIX)]
        selected_by = [p.ref for p in policies if (s := _selector(p)) is not None and s.matches(namespace_labels(ns))]
        if not keys and not selected_by:
            continue
        reason = f"opts in to gpufleet ({keys[0]})" if keys else f"is selected by {selected_by[0]}"
        for label in (TEAM_LABEL, COST_CENTER_LABEL):
            if not ns.labels.get(label):
                out.append(finding(ns, "metadata.labels", f"namespace {name} {reason} but has no "
                                   f"`{label}` label; add metadata.labels.{label}", "namespace-owner"))
    reported: set[str] = set()
    for doc in docs:
        if doc.kind not in POD_SPEC_PATHS or not uses_gpus(doc):
            continue
        name = doc.namespace or "default"
        ns = namespaces.get(name)
        if ns is not None or name in reported:
            if ns is not None and name not in reported:
                reported.add(name)
                for label in (TEAM_LABEL, COST_CENTER_LABEL):
                    if not ns.labels.get(label) and not any(f.ref == ns.ref and label in f.message for f in out):
                        out.append(finding(ns, "metadata.labels", f"namespace {name} runs GPU workloads "
                                           f"({doc.ref}) but has no `{label}` label; add metadata.labels.{label}",
                                           "namespace-owner"))
            continue
        reported.add(name)
        out.append(finding(doc, "metadata.namespace", f"runs GPU workloads in namespace {name}, which has no "
                           "Namespace object in the repository with `team` and `cost-center` labels; add one",
                           "namespace-owner"))
    return out


def _budgets(budgets: list[Document], namespaces: dict[str, Document]) -> list[Finding]:
    teams = {ns.labels[TEAM_LABEL] for ns in namespaces.values() if ns.labels.get(TEAM_LABEL)}
    by_team: dict[str, Document] = {}
    out = []
    for doc in budgets:
        spec = doc.obj.get("spec")
        team = spec.get("team") if isinstance(spec, dict) else None
        if not isinstance(team, str):
            continue  # the schema reports it
        if team not in teams:
            known = ", ".join(sorted(teams)) or "none"
            out.append(finding(doc, "spec.team", f"team {team!r} does not exist: no namespace is labelled "
                               f"team={team} (teams: {known})", "budget-team"))
        if team in by_team:
            first = by_team[team]
            out.append(finding(doc, "spec.team", f"team {team!r} already has a budget ({first.ref} at "
                               f"{first.path}:{first.line})", "budget-team"))
        by_team.setdefault(team, doc)
    return out


def _reclaim_kube_system(reclaims: list[Document], namespaces: dict[str, Document]) -> list[Finding]:
    kube_system = namespaces.get("kube-system")
    labels = namespace_labels(kube_system) if kube_system else {NAMESPACE_NAME_LABEL: "kube-system"}
    out = []
    for doc in reclaims:
        selector = _selector(doc)
        if selector is not None and selector.matches(labels):
            out.append(finding(doc, "spec.namespaceSelector", "selects kube-system (labels "
                               f"{dict(sorted(labels.items()))}); narrow the selector", "reclaim-kube-system"))
    return out


def _pod_selector_key(doc: Document) -> tuple | None:
    """A key equal for PlacementPolicies whose podSelectors are the same as written: ``()`` without one
    (namespace-wide), None when it does not parse (the API server's verdict reports it)."""
    spec = doc.obj.get("spec") if isinstance(doc.obj, dict) else None
    raw = spec.get("podSelector") if isinstance(spec, dict) else None
    if raw is None:
        return ()
    try:
        selector = parse(LabelSelector, raw, "spec.podSelector")
    except SpecError:
        return None
    return (tuple(sorted((selector.match_labels or {}).items())),
            tuple(sorted((r.key, r.operator, tuple(sorted(r.values))) for r in selector.match_expressions)))


def _placement_overlap(placements: list[Document], namespaces: dict[str, Document]) -> list[Finding]:
    """One namespace-wide PlacementPolicy per namespace, and no two with the same podSelector (the
    extender picks the oldest of policies whose different podSelectors select the same pod)."""
    owners: dict[tuple[str, tuple], list[Document]] = defaultdict(list)
    for doc in placements:
        selector, pods = _selector(doc), _pod_selector_key(doc)
        if selector is None or pods is None:
            continue
        for name, ns in namespaces.items():
            if selector.matches(namespace_labels(ns)):
                owners[(name, pods)].append(doc)
    out = []
    for (name, pods), docs in sorted(owners.items(), key=lambda item: item[0][0]):
        first = docs[0]
        where = f"{first.ref} ({first.path}:{first.line})"
        for doc in docs[1:]:
            if pods:
                out.append(finding(doc, "spec.podSelector", f"namespace {name} is also selected by {where} "
                                   "with the same podSelector; a pod takes one placement policy",
                                   "placement-overlap"))
            else:
                out.append(finding(doc, "spec.namespaceSelector", f"namespace {name} is also selected by "
                                   f"{where}; a namespace takes one namespace-wide placement policy "
                                   "(add a podSelector to place some of its pods otherwise)", "placement-overlap"))
    return out
