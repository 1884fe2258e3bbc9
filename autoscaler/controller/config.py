"""The controller's settings: one typed object read from YAML (``--config``), shaped to become a CRD.

The reclaim policy itself (detection, forecast, grace, notice) is :class:`ReclaimConfig`, shared with
the backtest; this module adds what only a live controller needs: budgets, allowed windows, sample
buffers, agent freshness and the leader Lease. Durations are seconds (``...Seconds`` fields) or Go
duration strings (``90s``, ``15m``, ``1h30m``). Every bad field is reported with its path at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gpufleet.autoscaler.controller.cron import CronError, CronSchedule
from gpufleet.autoscaler.cost.budgets import BudgetConfig as TeamBudgets
from gpufleet.autoscaler.cost.budgets import BudgetConfigError, parse_budgets
from gpufleet.autoscaler.reclaim.config import ReclaimConfig, ReclaimConfigError
from gpufleet.core.config.kinds import seconds as go_duration
from gpufleet.core.config.schema import camel


class ControllerConfigError(ValueError):
    """The controller's settings are invalid; ``errors`` lists ``path: what is wrong``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("invalid controller config: " + "; ".join(errors))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    """At most ``max_actions`` actions and ``max_percent`` % of the opted-in GPUs per rolling ``window_s``."""

    max_actions: int = 10  # actions per window (0 blocks every action)
    max_percent: float = 10.0  # GPUs freed per window, % of opted-in GPUs (at least one action may free 1)
    window_s: float = 3600.0  # rolling window, s


@dataclass(frozen=True, slots=True)
class AllowedWindow:
    """Actions allowed for ``duration_s`` after each start of ``schedule`` (cron, in ``time_zone``)."""

    schedule: str  # five cron fields or @daily/@hourly/...
    duration_s: float
    time_zone: str = "UTC"  # IANA name


@dataclass(frozen=True, slots=True)
class SamplesConfig:
    """Per-GPU sample buffers: agents' 1 Hz samples folded into ``bucket_s`` buckets, kept ``history_s``."""

    bucket_s: float = 60.0  # max utilisation / last memory per bucket, s (GenTD26 samples every 57 s)
    history_s: float = 6 * 3600.0  # how far back the idle-span history goes, s
    history_every_s: float = 300.0  # how often the idle-span history is rebuilt (in the background), s


@dataclass(frozen=True, slots=True)
class AgentsConfig:
    """How agents are read: a node whose newest sample is older than ``stale_after_s`` is never acted on."""

    stale_after_s: float = 30.0  # s since the node's last batch was received
    inventory_every_s: float = 30.0  # GetInventory (pod_resources_ok) period, s
    replay: int = 300  # batches asked for on each (re)connect
    backoff_s: float = 0.5  # first reconnect wait, s (doubles, with jitter)
    backoff_max_s: float = 30.0
    discovery_every_s: float = 30.0  # EndpointSlice re-read period, s


@dataclass(frozen=True, slots=True)
class LeaseConfig:
    """Leader election on a coordination.k8s.io Lease (client-go's timings)."""

    name: str = "gpufleet-controller"
    namespace: str = "gpufleet-system"
    duration_s: float = 15.0  # a holder that has not renewed for this long may be replaced
    renew_deadline_s: float = 10.0  # the leader stops acting when it could not renew for this long
    retry_s: float = 2.0  # renew / try-acquire period


@dataclass(frozen=True, slots=True)
class CostConfig:
    """The live waste ledger: ``team_labels`` (pod, then namespace labels naming the team; first present
    wins; unlabelled -> ``unassigned``), ``idle_below`` (activity under this fraction of the GPU is idle)
    and the teams' monthly ``budgets`` (top-level ``budgets:`` list, thresholds in ``cost.budgetThresholds``)."""

    team_labels: tuple[str, ...] = ("team", "cost-center")
    idle_below: float = 0.01
    budgets: TeamBudgets = field(default_factory=TeamBudgets)


@dataclass(frozen=True, slots=True)
class GitOpsConfig:
    """Recommendations as commits (leader only; off while ``repo_url`` is empty): one branch per change in
    the config repository. Credentials never here: a token from the env var ``token_env`` or the mounted
    file ``token_file`` (re-read at each publish), sent as the URL's password for ``username``."""

    repo_url: str = ""  # https://host/org/config.git; empty: publishing off
    base: str = "main"  # the branch people merge into (never pushed to)
    nodepool_path: str = "nodepools/gpufleet-recommended.yaml"  # Karpenter NodePool patches
    workload_dir: str = "workloads"  # kustomize patches, one file per workload: <dir>/<ns>/<kind>-<name>.yaml
    author_name: str = "gpufleet-bot"
    author_email: str = "gpufleet-bot@users.noreply.local"
    max_new_branches_per_hour: int = 2
    publish_every_s: float = 3600.0  # one publish pass every this long, s
    retry_s: float = 300.0  # after a failed publish (push refused, server down), s
    min_usd_per_month: float = 10.0  # smaller savings are not proposed
    token_env: str = ""  # name of the env var holding the token
    token_file: str = ""  # path of a mounted file holding the token
    username: str = "x-access-token"
    workdir: str = "/tmp/gpufleet-gitops"  # the bot's working clone


@dataclass(frozen=True, slots=True)
class ControllerConfig:
    reclaim: ReclaimConfig = field(default_factory=ReclaimConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    allowed_windows: tuple[AllowedWindow, ...] = ()  # empty: any time
    samples: SamplesConfig = field(default_factory=SamplesConfig)
    agents: AgentsConfig = field(default_factory=AgentsConfig)
    lease: LeaseConfig = field(default_factory=LeaseConfig)
    pass_interval_s: float = 5.0  # one decision pass every this many seconds
    cost: CostConfig = field(default_factory=CostConfig)  # the waste ledger and team budgets
    gitops: GitOpsConfig = field(default_factory=GitOpsConfig)  # recommendations as commits

    def __post_init__(self) -> None:
        errors = validate(self)
        if errors:
            raise ControllerConfigError(errors)

    def schedules(self) -> list[tuple[CronSchedule, float, ZoneInfo]]:
        return [(CronSchedule.parse(w.schedule), w.duration_s, ZoneInfo(w.time_zone)) for w in self.allowed_windows]

    @classmethod
    def from_dict(cls, data: Any) -> ControllerConfig:
        errors: list[str] = []
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ControllerConfigError(["top level: must be a mapping"])
        known = {"reclaim", "budget", "allowedWindows", "samples", "agents", "lease", "passInterval", "cost",
                 "budgets", "gitops"}
        for key in data:
            if key not in known and key != "passIntervalSeconds":
                errors.append(f"{key}: unknown field (known: {', '.join(sorted(known))})")
        values: dict[str, Any] = {}
        try:
            values["reclaim"] = ReclaimConfig.from_dict(data.get("reclaim") or {})
        except ReclaimConfigError as err:
            errors.extend(f"reclaim.{e}" for e in err.errors)
        groups = {"budget": BudgetConfig, "samples": SamplesConfig, "agents": AgentsConfig, "lease": LeaseConfig,
                  "gitops": GitOpsConfig}
        for key, group in groups.items():
            values[key] = group(**_read(group, data.get(key) or {}, f"{key}.", errors))
        windows = data.get("allowedWindows") or []
        if not isinstance(windows, list):
            errors.append("allowedWindows: must be a list")
            windows = []
        allowed = []
        for i, w in enumerate(windows):
            where = f"allowedWindows[{i}]."
            allowed.append(AllowedWindow(**_read(AllowedWindow, w, where, errors, required=("schedule", "duration"))))
        values["allowed_windows"] = tuple(allowed)
        errors.extend(_window_errors(values["allowed_windows"]))
        values["cost"] = _cost(data.get("cost"), data.get("budgets"), errors)
        interval = data.get("passInterval", data.get("passIntervalSeconds"))
        if interval is not None:
            values["pass_interval_s"] = _duration(interval, "passInterval", errors)
        if errors:
            raise ControllerConfigError(errors)
        try:
            return cls(**values)
        except TypeError as err:
            raise ControllerConfigError([str(err)]) from err

    @classmethod
    def load(cls, path: str | Path) -> ControllerConfig:
        import yaml

        try:
            text = Path(path).read_text()
        except OSError as err:
            raise ControllerConfigError([f"{path}: cannot read: {err.strerror or err}"]) from err
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ControllerConfigError([f"{path}: not YAML: {err}"]) from err
        return cls.from_dict(data)


def validate(config: ControllerConfig) -> list[str]:
    errors: list[str] = []
    positive = [("budget.window", config.budget.window_s), ("samples.bucket", config.samples.bucket_s),
                ("samples.history", config.samples.history_s),
                ("samples.historyEvery", config.samples.history_every_s), ("agents.staleAfter", config.agents.stale_after_s),
                ("agents.inventoryEvery", config.agents.inventory_every_s), ("lease.duration", config.lease.duration_s),
                ("lease.renewDeadline", config.lease.renew_deadline_s), ("lease.retry", config.lease.retry_s),
                ("passInterval", config.pass_interval_s)]
    for path, value in positive:
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            errors.append(f"{path}: must be a positive number of seconds, got {value!r}")
    if not isinstance(config.budget.max_actions, int) or config.budget.max_actions < 0:
        errors.append(f"budget.maxActions: must be an integer >= 0, got {config.budget.max_actions!r}")
    if not isinstance(config.budget.max_percent, (int, float)) or not 0 <= config.budget.max_percent <= 100:
        errors.append(f"budget.maxPercent: must be between 0 and 100, got {config.budget.max_percent!r}")
    if not errors and config.lease.renew_deadline_s >= config.lease.duration_s:
        errors.append("lease.renewDeadline: must be shorter than lease.duration")
    if not config.lease.name or not config.lease.namespace:
        errors.append("lease: name and namespace must not be empty")
    errors.extend(_window_errors(config.allowed_windows))
    errors.extend(_gitops_errors(config.gitops))
    return errors


def _gitops_errors(g: GitOpsConfig) -> list[str]:
    if not g.repo_url:
        return []
    errors = []
    if urlsplit(g.repo_url).password:
        errors.append("gitops.repoUrl: must not carry a password; put the token in the env var named by "
                      "gitops.tokenEnv or the file gitops.tokenFile")
    if g.token_env and g.token_file:
        errors.append("gitops: set tokenEnv or tokenFile, not both")
    for path, value in (("gitops.publishEvery", g.publish_every_s), ("gitops.retry", g.retry_s)):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            errors.append(f"{path}: must be a positive number of seconds, got {value!r}")
    if isinstance(g.max_new_branches_per_hour, bool) or not isinstance(g.max_new_branches_per_hour, int) \
            or g.max_new_branches_per_hour < 0:
        errors.append(f"gitops.maxNewBranchesPerHour: must be an integer >= 0, got {g.max_new_branches_per_hour!r}")
    for key in ("base", "nodepool_path", "workload_dir", "author_name", "author_email", "workdir", "username"):
        value = getattr(g, key)
        if not isinstance(value, str) or not value:
            errors.append(f"gitops.{_camel(key)}: must be a non-empty string, got {value!r}")
    for key in ("nodepool_path", "workload_dir"):
        value = getattr(g, key)
        if isinstance(value, str) and (value.startswith("/") or ".." in value.split("/")):
            errors.append(f"gitops.{_camel(key)}: must be a path inside the repository, got {value!r}")
    return errors


def _window_errors(windows: tuple[AllowedWindow, ...]) -> list[str]:
    errors = []
    for i, w in enumerate(windows):
        try:
            CronSchedule.parse(w.schedule)
        except CronError as err:
            errors.append(f"allowedWindows[{i}].schedule: {err}")
        try:
            ZoneInfo(w.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            errors.append(f"allowedWindows[{i}].timeZone: unknown IANA time zone {w.time_zone!r}")
        if not isinstance(w.duration_s, (int, float)) or not w.duration_s > 0:
            errors.append(f"allowedWindows[{i}].duration: must be positive, got {w.duration_s!r}")
    return errors


def _cost(cost: Any, budgets: Any, errors: list[str]) -> CostConfig:
    """``cost: {teamLabels, idleBelow, budgetThresholds}`` and ``budgets: [{team, monthlyUSD}]``."""
    if cost is None:
        cost = {}
    if not isinstance(cost, dict):
        errors.append(f"cost: must be a mapping, got {type(cost).__name__}")
        cost = {}
    for key in set(cost) - {"teamLabels", "idleBelow", "budgetThresholds"}:
        errors.append(f"cost.{key}: unknown field (known: budgetThresholds, idleBelow, teamLabels)")
    default = CostConfig()
    labels = cost.get("teamLabels", list(default.team_labels))
    if not isinstance(labels, list) or not labels or not all(isinstance(k, str) and k for k in labels):
        errors.append(f"cost.teamLabels: must be a non-empty list of label keys, got {labels!r}")
        labels = list(default.team_labels)
    idle = cost.get("idleBelow", default.idle_below)
    if isinstance(idle, bool) or not isinstance(idle, (int, float)) or not 0 <= idle <= 1:
        errors.append(f"cost.idleBelow: must be a fraction of the GPU between 0 and 1, got {idle!r}")
        idle = default.idle_below
    raw: dict[str, Any] = {"budgets": [] if budgets is None else budgets}
    if "budgetThresholds" in cost:
        raw["thresholds"] = cost["budgetThresholds"]
    try:
        team_budgets = parse_budgets(raw)
    except BudgetConfigError as err:
        errors.extend(p if p.startswith("budgets") else f"cost.budgetThresholds: {p.partition(': ')[2]}"
                      for p in err.problems)
        team_budgets = TeamBudgets()
    return CostConfig(tuple(labels), float(idle), team_budgets)


def _camel(name: str) -> str:
    """The CRD key of a field without its unit: ``window_s`` -> ``window`` (read as ``windowSeconds``)."""
    return camel(name.removesuffix("_s"))


def _read(cls: type, data: Any, path: str, errors: list[str], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """``data``'s camelCase keys as ``cls``'s field names; ``_s`` fields take seconds or a Go duration."""
    if not isinstance(data, dict):
        errors.append(f"{path.rstrip('.')}: must be a mapping, got {type(data).__name__}")
        data = {}
    names = {_camel(f): f for f in cls.__dataclass_fields__}
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = names.get(key.removesuffix("Seconds"))
        if name is None:
            errors.append(f"{path}{key}: unknown field (known: {', '.join(sorted(names))})")
        elif name.endswith("_s"):
            values[name] = _duration(value, f"{path}{key}", errors)
        else:
            values[name] = value
    for key in required:
        if names[key] not in values:
            errors.append(f"{path}{key}: required")
            values[names[key]] = 1.0 if names[key].endswith("_s") else "* * * * *"
    return values


def _duration(value: Any, path: str, errors: list[str]) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return go_duration(value)
        except ValueError as err:
            errors.append(f"{path}: {err}")
            return 1.0
    errors.append(f"{path}: must be seconds or a duration like 15m, got {value!r}")
    return 1.0
