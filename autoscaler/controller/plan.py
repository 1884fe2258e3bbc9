"""The controller's pure step: the decision function's verdicts + the pod's notice + the clock -> what to do.

For each opted-in pod holding GPUs, :func:`plan_pod` combines its GPUs' decisions (from
:func:`gpufleet.autoscaler.reclaim.decide`, never a second rule) with what the pod carries:

- protected (kube-system, do-not-disrupt, snooze) -> cancel a notice if there is one, else skip;
- no data (agent silent, stale, no kubelet answer) -> skip and hold any notice: no data is never idle;
- grace -> skip; activity -> cancel the notice;
- no notice and the policy says reclaim -> give notice (notify, scale-to-zero, evict) or report;
- notice given, no activity since its idle-since, notice period over -> due (scale-to-zero, evict).

:func:`group_actions` turns due pods into actions on their root workload; a Deployment is scaled to zero
only when every GPU pod it has is due. Level-triggered: the notice lives in the pod's annotations, so a
restarted controller or another replica plans the same. No I/O here.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from gpufleet.autoscaler.controller.gate import Mode, Skip, format_time
from gpufleet.autoscaler.controller.owners import SCALABLE, Root
from gpufleet.autoscaler.reclaim import Decision, Verdict


class Step(enum.StrEnum):
    NONE = "none"  # busy, or idle but the policy is not confident yet, or waiting out the notice
    REPORT = "report"  # report mode: the policy would act (Event and metric only)
    NOTICE = "notice"  # annotate idle-since + Event
    CANCEL = "cancel"  # remove the notice (activity, snooze, do-not-disrupt)
    DUE = "due"  # notice period over and still idle: act (after budgets and re-validation)
    SKIP = "skip"  # the policy would act, or a notice is pending, but something holds it


@dataclass(frozen=True, slots=True)
class PodView:
    """An opted-in pod as the planner sees it (from the informers' cache and the agents' store)."""

    uid: str
    namespace: str
    name: str
    node: str
    mode: Mode
    root: Root | None  # None when its owner could not be read
    gpus: tuple[str, ...]  # GPU UUIDs the agents say it holds
    notice: tuple[float, float] | None = None  # (idle-since, notice-at) annotations
    protection: Skip | None = None
    data_problem: Skip | None = None  # STALE / NO_POD_RESOURCES for one of its nodes' agents
    observed_from: float | None = None  # first sample the controller has for it (restarts see less)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class PodPlan:
    pod: PodView
    step: Step
    reason: str
    skip: Skip | None = None
    idle: bool = False  # every GPU in an idle run now
    idle_since: float | None = None  # the idle run's start (of the notice, when one is kept)
    due_at: float | None = None  # notice-at + notice period
    decisions: tuple[Decision, ...] = ()

    @property
    def action_key(self) -> str:
        """The idempotency key: pod UID + idle-since."""
        return f"{self.pod.uid}@{format_time(self.idle_since or 0.0)}"


def combine(decisions: Sequence[Decision]) -> tuple[Verdict, float | None, str]:
    """One verdict for a pod from its GPUs': any no-data, grace or busy wins; reclaim needs every GPU."""
    if not decisions:
        return Verdict.NO_DATA, None, "no samples for any GPU"
    for verdict in (Verdict.NO_DATA, Verdict.GRACE, Verdict.BUSY):
        hit = next((d for d in decisions if d.verdict is verdict), None)
        if hit is not None:
            return verdict, None, hit.reason
    since = max(d.idle_since or 0.0 for d in decisions)
    if all(d.verdict is Verdict.RECLAIM for d in decisions):
        return Verdict.RECLAIM, since, decisions[0].reason
    waiting = next(d for d in decisions if d.verdict is not Verdict.RECLAIM)
    return Verdict.WAIT, since, waiting.reason


def plan_pod(pod: PodView, decisions: Sequence[Decision], now: float, notice_s: float,
             tolerance_s: float) -> PodPlan:
    """What to do about one pod now. ``tolerance_s``: how far the observed idle run may start after the
    notice's idle-since without meaning activity (one sample bucket or two)."""
    decisions = tuple(decisions)
    notice = pod.notice
    if pod.protection is not None:
        if notice is not None:
            return PodPlan(pod, Step.CANCEL, f"notice cancelled: {pod.protection}", pod.protection,
                           decisions=decisions)
        return PodPlan(pod, Step.SKIP, str(pod.protection), pod.protection, decisions=decisions)
    if pod.data_problem is not None:
        return PodPlan(pod, Step.SKIP, f"no trustworthy data: {pod.data_problem}", pod.data_problem,
                       idle_since=notice[0] if notice else None, decisions=decisions)
    verdict, since, reason = combine(decisions)
    if verdict is Verdict.NO_DATA:
        return PodPlan(pod, Step.SKIP, reason, Skip.STALE if "old" in reason else Skip.NO_DATA,
                       idle_since=notice[0] if notice else None, decisions=decisions)
    if verdict is Verdict.GRACE:
        return PodPlan(pod, Step.SKIP, reason, Skip.GRACE, decisions=decisions)
    if verdict is Verdict.BUSY:
        if notice is not None:
            return PodPlan(pod, Step.CANCEL, f"notice cancelled: {reason}", decisions=decisions)
        return PodPlan(pod, Step.NONE, reason, decisions=decisions)
    if notice is not None:
        noticed_since, notice_at = notice
        seen_from = max(noticed_since, pod.observed_from or noticed_since)
        if since is not None and since > seen_from + tolerance_s:
            return PodPlan(pod, Step.CANCEL, f"notice cancelled: activity after idle-since "
                           f"{format_time(noticed_since)} (idle again since {format_time(since)})",
                           decisions=decisions)
        due_at = notice_at + notice_s
        if now < due_at or not pod.mode.acts:
            return PodPlan(pod, Step.NONE, f"notice given {format_time(notice_at)}; {reason}", idle=True,
                           idle_since=noticed_since, due_at=due_at, decisions=decisions)
        return PodPlan(pod, Step.DUE, f"idle since {format_time(noticed_since)}, notice given "
                       f"{format_time(notice_at)}; {reason}", idle=True, idle_since=noticed_since,
                       due_at=due_at, decisions=decisions)
    if verdict is Verdict.RECLAIM:
        step = Step.NOTICE if pod.mode.gives_notice else Step.REPORT
        return PodPlan(pod, step, reason, idle=True, idle_since=since, decisions=decisions)
    return PodPlan(pod, Step.NONE, reason, idle=True, idle_since=since, decisions=decisions)


class ActionKind(enum.StrEnum):
    SCALE = "scale-to-zero"
    SUSPEND = "suspend"
    EVICT = "evict"


@dataclass(frozen=True, slots=True)
class Action:
    kind: ActionKind
    root: Root
    pods: tuple[PodPlan, ...]  # the due pods it frees
    key: str  # idempotency key (the first pod's UID + idle-since)

    @property
    def gpus(self) -> int:
        return sum(len(p.pod.gpus) for p in self.pods)

    @property
    def due_at(self) -> float:
        return max(p.due_at or 0.0 for p in self.pods)


def group_actions(plans: Sequence[PodPlan]) -> tuple[list[Action], list[tuple[PodPlan, Skip, str]]]:
    """Due pods -> actions on their roots; and the due pods that must wait, with why."""
    actions: list[Action] = []
    held: list[tuple[PodPlan, Skip, str]] = []
    by_root: dict[str, list[PodPlan]] = {}
    members: dict[str, list[PodPlan]] = {}
    for p in plans:
        if p.pod.root is not None:
            members.setdefault(p.pod.root.key, []).append(p)
    for p in plans:
        if p.step is not Step.DUE:
            continue
        root = p.pod.root
        if root is None or not root.supported:
            held.append((p, Skip.OWNER, f"owner {root.key if root else '?'} cannot be scaled or evicted safely"))
        elif p.pod.mode is Mode.EVICT or root.kind == "Pod":
            actions.append(Action(ActionKind.EVICT, root, (p,), p.action_key))
        else:
            by_root.setdefault(root.key, []).append(p)
    for key, due in sorted(by_root.items()):
        waiting = [m for m in members.get(key, []) if m.step is not Step.DUE]
        if waiting:
            for p in due:
                held.append((p, Skip.SIBLINGS, f"{len(waiting)} other pod(s) of {key} are not due "
                                               f"(e.g. {waiting[0].pod.key}: {waiting[0].reason})"))
            continue
        due = sorted(due, key=lambda p: p.pod.uid)
        root = due[0].pod.root
        assert root is not None
        kind = ActionKind.SCALE if root.kind in SCALABLE else ActionKind.SUSPEND
        actions.append(Action(kind, root, tuple(due), due[0].action_key))
    return actions, held
