"""The planner: the decision function's verdicts + a pod's notice + the clock -> one step per pod."""

from __future__ import annotations

import pytest

from gpufleet.autoscaler.controller.gate import Mode, Skip
from gpufleet.autoscaler.controller.owners import Root
from gpufleet.autoscaler.controller.plan import ActionKind, PodView, Step, group_actions, plan_pod
from gpufleet.autoscaler.reclaim import Decision, GpuKey, Verdict

NOW = 10_000.0
NOTICE = 900.0


def view(mode: Mode = Mode.SCALE_TO_ZERO, notice: tuple[float, float] | None = None, uid: str = "u1",
         root: Root | None = Root("Deployment", "ml", "infer"), protection: Skip | None = None,
         data_problem: Skip | None = None, gpus: tuple[str, ...] = ("GPU-a",),
         observed_from: float | None = 5_000.0, name: str = "p1") -> PodView:
    return PodView(uid=uid, namespace="ml", name=name, node="n0", mode=mode, root=root, gpus=gpus, notice=notice,
                   protection=protection, data_problem=data_problem, observed_from=observed_from)


def decision(verdict: Verdict, idle_since: float | None = 6_000.0, gpu: str = "GPU-a") -> Decision:
    return Decision(GpuKey("ml/p1", gpu), verdict, f"{verdict} because", idle_since, 100.0)


@pytest.mark.parametrize(("mode", "expected"), [
    (Mode.REPORT, Step.REPORT), (Mode.NOTIFY, Step.NOTICE), (Mode.SCALE_TO_ZERO, Step.NOTICE),
    (Mode.EVICT, Step.NOTICE),
])
def test_a_confident_idle_pod_gets_notice_or_a_report_by_mode(mode: Mode, expected: Step) -> None:
    plan = plan_pod(view(mode=mode), [decision(Verdict.RECLAIM)], NOW, NOTICE, 30)
    assert plan.step is expected
    assert plan.idle_since == 6_000.0


def test_no_notice_until_every_gpu_of_the_pod_is_confidently_idle() -> None:
    decisions = [decision(Verdict.RECLAIM), decision(Verdict.WAIT, gpu="GPU-b")]
    plan = plan_pod(view(gpus=("GPU-a", "GPU-b")), decisions, NOW, NOTICE, 30)
    assert plan.step is Step.NONE and plan.idle


@pytest.mark.parametrize("verdict", [Verdict.NO_DATA, Verdict.GRACE, Verdict.BUSY])
def test_one_gpu_without_data_in_grace_or_busy_decides_for_the_pod(verdict: Verdict) -> None:
    decisions = [decision(Verdict.RECLAIM), decision(verdict, None, gpu="GPU-b")]
    plan = plan_pod(view(gpus=("GPU-a", "GPU-b")), decisions, NOW, NOTICE, 30)
    assert plan.step in (Step.SKIP, Step.NONE)
    assert not plan.idle


def test_the_notice_period_must_pass_before_the_pod_is_due() -> None:
    noticed = view(notice=(6_000.0, NOW - NOTICE + 10))
    assert plan_pod(noticed, [decision(Verdict.RECLAIM)], NOW, NOTICE, 30).step is Step.NONE
    due = plan_pod(noticed, [decision(Verdict.RECLAIM)], NOW + 10, NOTICE, 30)
    assert due.step is Step.DUE
    assert due.due_at == NOW + 10


def test_a_due_pod_stays_due_when_the_policy_becomes_less_confident_but_no_activity_was_seen() -> None:
    plan = plan_pod(view(notice=(6_000.0, 7_000.0)), [decision(Verdict.WAIT)], NOW, NOTICE, 30)
    assert plan.step is Step.DUE


def test_notify_mode_never_becomes_due() -> None:
    plan = plan_pod(view(mode=Mode.NOTIFY, notice=(6_000.0, 7_000.0)), [decision(Verdict.RECLAIM)], NOW, NOTICE, 30)
    assert plan.step is Step.NONE and plan.idle


def test_activity_cancels_the_notice() -> None:
    plan = plan_pod(view(notice=(6_000.0, 7_000.0)), [decision(Verdict.BUSY, None)], NOW, NOTICE, 30)
    assert plan.step is Step.CANCEL


def test_an_idle_run_that_restarted_after_the_notice_means_activity_and_cancels() -> None:
    plan = plan_pod(view(notice=(6_000.0, 7_000.0)), [decision(Verdict.RECLAIM, idle_since=8_000.0)], NOW,
                    NOTICE, 30)
    assert plan.step is Step.CANCEL


def test_a_restarted_controller_that_sees_less_history_keeps_the_notice() -> None:
    # the controller's samples begin at 9_500 (a restart): its idle run starts there, after the notice's
    # idle-since, without any activity seen: the notice holds and the pod is due
    plan = plan_pod(view(notice=(6_000.0, 7_000.0), observed_from=9_500.0),
                    [decision(Verdict.WAIT, idle_since=9_500.0)], NOW, NOTICE, 30)
    assert plan.step is Step.DUE
    assert plan.idle_since == 6_000.0


@pytest.mark.parametrize("why", [Skip.SNOOZE, Skip.DO_NOT_DISRUPT, Skip.KUBE_SYSTEM])
def test_protection_cancels_a_notice_and_otherwise_skips(why: Skip) -> None:
    assert plan_pod(view(protection=why, notice=(6_000.0, 7_000.0)), [decision(Verdict.RECLAIM)], NOW, NOTICE,
                    30).step is Step.CANCEL
    plan = plan_pod(view(protection=why), [decision(Verdict.RECLAIM)], NOW, NOTICE, 30)
    assert (plan.step, plan.skip) == (Step.SKIP, why)


@pytest.mark.parametrize("problem", [Skip.STALE, Skip.NO_POD_RESOURCES])
def test_untrustworthy_data_holds_a_notice_without_acting_or_cancelling(problem: Skip) -> None:
    plan = plan_pod(view(notice=(6_000.0, 7_000.0), data_problem=problem), [decision(Verdict.RECLAIM)], NOW,
                    NOTICE, 30)
    assert (plan.step, plan.skip) == (Step.SKIP, problem)


def test_a_deployment_is_scaled_only_when_every_gpu_pod_of_it_is_due() -> None:
    root = Root("Deployment", "ml", "infer", "d1")
    a = plan_pod(view(uid="a", name="a", root=root, notice=(6_000.0, 7_000.0)), [decision(Verdict.RECLAIM)], NOW,
                 NOTICE, 30)
    b_busy = plan_pod(view(uid="b", name="b", root=root), [decision(Verdict.BUSY, None)], NOW, NOTICE, 30)
    actions, held = group_actions([a, b_busy])
    assert actions == []
    assert [(p.pod.name, why) for p, why, _ in held] == [("a", Skip.SIBLINGS)]
    b_due = plan_pod(view(uid="b", name="b", root=root, notice=(6_500.0, 7_000.0)), [decision(Verdict.RECLAIM)],
                     NOW, NOTICE, 30)
    actions, held = group_actions([a, b_due])
    assert len(actions) == 1 and held == []
    assert actions[0].kind is ActionKind.SCALE and actions[0].gpus == 2
    assert actions[0].key == a.action_key  # smallest UID: stable across passes and replicas


@pytest.mark.parametrize(("mode", "kind", "expected"), [
    (Mode.SCALE_TO_ZERO, "Job", ActionKind.SUSPEND), (Mode.SCALE_TO_ZERO, "Pod", ActionKind.EVICT),
    (Mode.EVICT, "Deployment", ActionKind.EVICT), (Mode.SCALE_TO_ZERO, "StatefulSet", ActionKind.SCALE),
])
def test_the_action_follows_the_mode_and_the_root_kind(mode: Mode, kind: str, expected: ActionKind) -> None:
    plan = plan_pod(view(mode=mode, root=Root(kind, "ml", "w"), notice=(6_000.0, 7_000.0)),
                    [decision(Verdict.RECLAIM)], NOW, NOTICE, 30)
    actions, _ = group_actions([plan])
    assert [a.kind for a in actions] == [expected]


def test_an_unsupported_owner_is_held_not_acted_on() -> None:
    plan = plan_pod(view(root=Root("DaemonSet", "ml", "ds"), notice=(6_000.0, 7_000.0)),
                    [decision(Verdict.RECLAIM)], NOW, NOTICE, 30)
    actions, held = group_actions([plan])
    assert actions == [] and held[0][1] is Skip.OWNER
