"""Actions against a recording API with injected errors (409, 429, 500, timeouts), undo, and the Lease."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from gpufleet.autoscaler.controller.actuator import Actuator, Result
from gpufleet.autoscaler.controller.config import LeaseConfig
from gpufleet.autoscaler.controller.gate import Mode, format_time, mode_of
from gpufleet.autoscaler.controller.lease import LeaderElector
from gpufleet.autoscaler.controller.metrics import ControllerMetrics
from gpufleet.autoscaler.controller.owners import Root
from gpufleet.autoscaler.controller.plan import Action, ActionKind, PodPlan, PodView, Step
from gpufleet.autoscaler.controller.undo import UndoError, undo
from gpufleet.core import names
from gpufleet.core.clock import FakeClock
from gpufleet.core.kube.errors import Conflict, KubeAPIError

from .fakes import FakeAPI, pod

IDLE_SINCE = 1_699_990_000.0
DEPLOY = "/apis/apps/v1/namespaces/ml/deployments/infer"
POD = "/api/v1/namespaces/ml/pods/p1"


def setup(mode: Mode = Mode.SCALE_TO_ZERO, kind: str = "Deployment") -> tuple[FakeAPI, Actuator, Action]:
    api = FakeAPI()
    clock = FakeClock()
    notice = {names.IDLE_SINCE: format_time(IDLE_SINCE), names.NOTICE_AT: format_time(IDLE_SINCE + 60),
              names.RECLAIM: str(mode)}
    api.add(POD, pod("ml", "p1", "uid-1", owner=("ReplicaSet", "infer-x", "rs1"), annotations=notice))
    api.add(DEPLOY, {"metadata": {"name": "infer", "namespace": "ml", "uid": "d1"}, "spec": {"replicas": 3}})
    api.add("/apis/batch/v1/namespaces/ml/jobs/train", {"metadata": {"name": "train", "namespace": "ml",
                                                                       "uid": "j1"}, "spec": {}})
    actuator = Actuator(api, clock, ControllerMetrics(CollectorRegistry()), "test",
                        lambda pod: mode_of(pod, None))
    view = PodView("uid-1", "ml", "p1", "n0", mode, Root(kind, "ml", "infer" if kind != "Job" else "train"),
                   ("GPU-a",))
    plan = PodPlan(view, Step.DUE, "idle", idle=True, idle_since=IDLE_SINCE, due_at=IDLE_SINCE + 960)
    action_kind = {"Deployment": ActionKind.SCALE, "Job": ActionKind.SUSPEND, "Pod": ActionKind.EVICT}[kind]
    return api, actuator, Action(action_kind, view.root, (plan,), plan.action_key)


def test_scale_to_zero_keeps_the_replica_count_and_runs_once() -> None:
    api, actuator, action = setup()
    assert actuator.act(action) is Result.DONE
    deploy = api.objects[DEPLOY]
    assert deploy["spec"]["replicas"] == 0
    assert deploy["metadata"]["annotations"][names.RECLAIMED_REPLICAS] == "3"
    assert deploy["metadata"]["annotations"][names.RECLAIM_KEY] == action.key
    writes = len(api.writes("PUT"))
    assert actuator.act(action) is Result.ALREADY
    assert len(api.writes("PUT")) == writes
    reasons = [e["reason"] for e in api.events]
    assert reasons.count("IdleGPUReclaimed") == 2  # pod and Deployment, once


@pytest.mark.parametrize("error", [Conflict("409", 409), KubeAPIError("500", 500), KubeAPIError("timed out")])
def test_a_failed_scale_write_is_retried_without_losing_the_replica_count(error: Exception) -> None:
    api, actuator, action = setup()
    for _ in range(3 if isinstance(error, Conflict) else 1):  # a 409 is retried at once: fail every try
        api.fail_next("PUT", "/scale", error)
    assert actuator.act(action) in (Result.CONFLICT, Result.ERROR)
    assert api.objects[DEPLOY]["spec"]["replicas"] == 3
    assert actuator.act(action) is Result.DONE
    assert api.objects[DEPLOY]["metadata"]["annotations"][names.RECLAIMED_REPLICAS] == "3"
    assert api.objects[DEPLOY]["spec"]["replicas"] == 0


def test_a_scale_write_that_loses_one_race_with_a_status_update_is_retried_at_once() -> None:
    api, actuator, action = setup()
    api.fail_next("PUT", "/scale", Conflict("409", 409))
    assert actuator.act(action) is Result.DONE
    assert api.objects[DEPLOY]["spec"]["replicas"] == 0


def test_a_workload_already_at_zero_that_we_did_not_scale_is_not_ours() -> None:
    api, actuator, action = setup()
    api.objects[DEPLOY]["spec"]["replicas"] = 0
    assert actuator.act(action) is Result.NOT_OURS
    assert names.RECLAIMED_REPLICAS not in (api.objects[DEPLOY]["metadata"].get("annotations") or {})


@pytest.mark.parametrize(("change", "expected"), [
    ({names.KEEP_UNTIL: "2099-01-01T00:00:00Z"}, "snooze"),
    ({names.DO_NOT_DISRUPT: "true"}, "do-not-disrupt"),
    ({names.IDLE_SINCE: None}, "notice"),
    ({names.RECLAIM: "notify"}, "mode"),
])
def test_the_pod_is_read_again_right_before_acting(change: dict, expected: str) -> None:
    api, actuator, action = setup()
    api.patch(POD, {"metadata": {"annotations": change}})
    assert actuator.act(action) is Result.CHANGED
    assert api.objects[DEPLOY]["spec"]["replicas"] == 3


def test_a_job_is_suspended_not_deleted() -> None:
    api, actuator, action = setup(kind="Job")
    assert actuator.act(action) is Result.DONE
    job = api.objects["/apis/batch/v1/namespaces/ml/jobs/train"]
    assert job["spec"]["suspend"] is True and job["metadata"]["annotations"][names.RECLAIMED_REPLICAS] == "suspend"
    assert actuator.act(action) is Result.ALREADY


def test_eviction_honours_the_pdb_and_never_deletes() -> None:
    api, actuator, action = setup(mode=Mode.EVICT, kind="Pod")
    api.pdb_blocks.add("p1")
    assert actuator.act(action) is Result.PDB
    assert actuator.act(action) is Result.PDB
    assert POD in api.objects
    assert [e["reason"] for e in api.events].count("IdleGPUEvictionBlocked") == 1
    api.pdb_blocks.clear()
    assert actuator.act(action) is Result.DONE
    assert POD not in api.objects
    assert not api.writes("DELETE")
    eviction = api.writes("POST", "/eviction")[-1][2]
    assert eviction["deleteOptions"]["preconditions"]["uid"] == "uid-1"


def test_undo_restores_the_replica_count_and_clears_the_annotations() -> None:
    api, actuator, action = setup()
    actuator.act(action)
    assert "scaled back to 3" in undo(api, "ml/Deployment/infer")
    deploy = api.objects[DEPLOY]
    assert deploy["spec"]["replicas"] == 3
    assert names.RECLAIMED_REPLICAS not in deploy["metadata"]["annotations"]
    assert "nothing to do" in undo(api, "ml/deploy/infer")
    with pytest.raises(UndoError):
        undo(api, "ml/DaemonSet/x")


def test_undo_resumes_a_suspended_job() -> None:
    api, actuator, action = setup(kind="Job")
    actuator.act(action)
    undo(api, "ml/Job/train")
    assert api.objects["/apis/batch/v1/namespaces/ml/jobs/train"]["spec"]["suspend"] is False


# ---- the Lease ----------------------------------------------------------------------------------

LEASE = LeaseConfig(name="ctl", namespace="sys", duration_s=15, renew_deadline_s=10, retry_s=2)


def electors(api: FakeAPI, clock: FakeClock) -> tuple[LeaderElector, LeaderElector]:
    return LeaderElector(api, "a", LEASE, clock), LeaderElector(api, "b", LEASE, clock)


def test_one_of_two_replicas_leads_and_the_other_takes_over_only_after_expiry() -> None:
    api, clock = FakeAPI(), FakeClock()
    a, b = electors(api, clock)
    assert a.step() and not b.step()
    clock.advance(10)
    assert a.step()  # renewed at 10 s
    clock.advance(10)
    assert not b.step()  # b sees a new record: a lives
    clock.advance(14)
    assert not b.step()  # 14 s since b saw it change, by b's own clock
    clock.advance(2)
    assert b.step()  # a stopped renewing 26 s ago
    assert not a.step()  # a sees b holding it and steps down
    assert api.objects["/apis/coordination.k8s.io/v1/namespaces/sys/leases/ctl"]["spec"]["leaseTransitions"] == 1


def test_a_leader_that_cannot_renew_steps_down_before_the_lease_expires() -> None:
    api, clock = FakeAPI(), FakeClock()
    a, _ = electors(api, clock)
    assert a.step()
    for _ in range(6):
        clock.advance(2)
        api.fail_next("GET", "/leases/", KubeAPIError("timed out"))
        a.step()
    assert not a.is_leader()


def test_two_replicas_racing_for_a_free_lease_cannot_both_win() -> None:
    api, clock = FakeAPI(), FakeClock()
    a, b = electors(api, clock)
    assert a.step()
    a.release()
    path = "/apis/coordination.k8s.io/v1/namespaces/sys/leases/ctl"
    stale = api.get(path)
    assert b.step()  # b takes the released lease
    api.objects[path] = {**api.objects[path]}
    # a replays a write based on the stale read: the resourceVersion check refuses it
    with pytest.raises(Conflict):
        api.put(path, {**stale, "spec": {**stale["spec"], "holderIdentity": "a"}})


def test_a_new_leader_reads_the_budget_ledger_the_old_one_wrote() -> None:
    api, clock = FakeAPI(), FakeClock()
    seen: list[dict] = []
    a = LeaderElector(api, "a", LEASE, clock, annotations=lambda: {names.RECLAIM_LEDGER: '[[1,2,"k","r"]]'})
    b = LeaderElector(api, "b", LEASE, clock, on_acquire=seen.append)
    a.step()
    clock.advance(2)
    a.step()  # the renewal writes the ledger
    a.release()
    assert b.step()
    assert seen and seen[0][names.RECLAIM_LEDGER] == '[[1,2,"k","r"]]'


def test_a_restarted_replica_with_the_same_name_leads_again_and_reads_the_ledger() -> None:
    api, clock = FakeAPI(), FakeClock()
    before = LeaderElector(api, "pod-0", LEASE, clock, annotations=lambda: {names.RECLAIM_LEDGER: "[]"})
    assert before.step()
    clock.advance(2)
    before.step()
    seen: list[dict] = []
    after = LeaderElector(api, "pod-0", LEASE, clock, on_acquire=seen.append)  # the container restarted
    assert after.step()
    assert seen and names.RECLAIM_LEDGER in seen[0]
