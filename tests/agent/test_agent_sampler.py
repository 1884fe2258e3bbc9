"""The sampling pass, the pod refresh, the history ring, and the agent's health."""

from __future__ import annotations

import threading

import pytest

from gpufleet.autoscaler.agent.history import Batch, SampleHistory
from gpufleet.autoscaler.agent.podmap import PodAssignments
from gpufleet.autoscaler.agent.pods import NoPodSource, PodSnapshot, StaticPodSource
from gpufleet.autoscaler.agent.sampler import Sampler
from gpufleet.autoscaler.gpu.model import GpuBackendFailed, GpuError, GpuReading, Health
from gpufleet.autoscaler.gpu.nvml import NvmlReader
from gpufleet.autoscaler.gpu.script import Scenario
from gpufleet.autoscaler.gpu.simulated import SimulatedNvml
from gpufleet.core.clock import FakeClock


class FlakyPods:
    """A pod source that answers from a list of snapshots, then repeats the last."""

    name = "flaky"

    def __init__(self, *snapshots: PodSnapshot) -> None:
        self.snapshots = list(snapshots)
        self.asked = 0

    def snapshot(self) -> PodSnapshot:
        self.asked += 1
        return self.snapshots.pop(0) if len(self.snapshots) > 1 else self.snapshots[0]

    def close(self) -> None:
        pass


class RecordingObserver:
    def __init__(self) -> None:
        self.passes: list[Batch] = []
        self.failures: list[Exception] = []
        self.refreshes: list[bool] = []

    def observe_pass(self, batch: Batch) -> None:
        self.passes.append(batch)

    def observe_pass_failure(self, error: Exception) -> None:
        self.failures.append(error)

    def observe_pod_refresh(self, seconds: float, ok: bool) -> None:
        self.refreshes.append(ok)


def make_sampler(reader, sim, scenario, clock, pods=None, history=None, observer=None):  # type: ignore[no-untyped-def]
    return Sampler(reader, reader.devices(), pods or StaticPodSource(scenario, sim), history or SampleHistory(10),
                   clock, interval_s=1.0, pod_refresh_s=5.0, observer=observer)


def test_a_pass_joins_readings_to_the_pods_holding_each_gpu(
    reader: NvmlReader, sim: SimulatedNvml, scenario: Scenario, clock: FakeClock
) -> None:
    batch = make_sampler(reader, sim, scenario, clock).sample_once()
    assert batch.seq == 1 and batch.unix_time == clock.now()
    pods = {r.index: [p.pod for p in batch.assignments.pods_of(r.uuid)] for r in batch.readings if not r.is_mig}
    assert pods == {0: ["trainer-0"], 1: ["trainer-0"], 2: ["batch-infer"], 3: [], 4: ["notebook-7f9c"], 5: [],
                    6: [], 7: ["stuck-job"]}
    mig0 = batch.readings[8]
    assert [p.pod for p in batch.assignments.pods_of(mig0.uuid)] == ["probe"]
    assert len(batch.assignments.allocatable) == 7 + 2  # 7 whole GPUs and 2 MIG devices


def test_pods_are_refreshed_every_refresh_period_not_every_pass(
    reader: NvmlReader, sim: SimulatedNvml, scenario: Scenario, clock: FakeClock
) -> None:
    pods = FlakyPods(StaticPodSource(scenario, sim).snapshot())
    sampler = make_sampler(reader, sim, scenario, clock, pods=pods)
    for _ in range(11):
        sampler.sample_once()
        clock.advance(1)
    assert pods.asked == 3  # t = 0, 5, 10


def test_a_failed_pod_refresh_keeps_the_last_answer_marked_stale(
    reader: NvmlReader, sim: SimulatedNvml, scenario: Scenario, clock: FakeClock
) -> None:
    good = StaticPodSource(scenario, sim).snapshot()
    observer = RecordingObserver()
    sampler = make_sampler(reader, sim, scenario, clock, pods=FlakyPods(good, PodSnapshot(error="down")),
                           observer=observer)
    first = sampler.sample_once()
    clock.advance(5)
    second = sampler.sample_once()
    assert first.assignments.ok and not second.assignments.ok
    assert second.assignments.by_uuid == first.assignments.by_uuid
    assert observer.refreshes == [True, False]


def test_without_a_pod_source_gpus_are_reported_without_pods(
    reader: NvmlReader, sim: SimulatedNvml, scenario: Scenario, clock: FakeClock
) -> None:
    batch = make_sampler(reader, sim, scenario, clock, pods=NoPodSource()).sample_once()
    assert not batch.assignments.ok and batch.assignments.by_uuid == {}


def test_a_backend_failure_is_reported_and_the_next_pass_works(
    reader: NvmlReader, sim: SimulatedNvml, scenario: Scenario, clock: FakeClock
) -> None:
    import pynvml

    observer = RecordingObserver()
    sampler = make_sampler(reader, sim, scenario, clock, observer=observer)
    sim.fail_next("nvmlDeviceGetUtilizationRates", pynvml.NVMLError_Uninitialized())
    with pytest.raises(GpuBackendFailed):
        sampler.sample_once()
    assert not sampler.health().ok and "Uninitialized" in sampler.health().last_error
    assert sampler.sample_once().seq == 1  # failed passes take no sequence number
    assert len(observer.failures) == 1 and len(observer.passes) == 1


def test_health_turns_red_when_passes_stop(reader: NvmlReader, sim: SimulatedNvml, scenario: Scenario,
                                           clock: FakeClock) -> None:
    sampler = make_sampler(reader, sim, scenario, clock)
    assert not sampler.health().ok  # nothing sampled yet
    sampler.sample_once()
    clock.advance(9)
    assert sampler.health().ok
    clock.advance(2)
    health = sampler.health()
    assert not health.ok and health.last_pass_age_s == pytest.approx(11)


def test_the_sampler_thread_samples_at_its_interval_until_stopped(
    reader: NvmlReader, sim: SimulatedNvml, scenario: Scenario
) -> None:
    from gpufleet.core.clock import SystemClock

    history = SampleHistory(100)
    sampler = Sampler(reader, reader.devices(), StaticPodSource(scenario, sim), history, SystemClock(),
                      interval_s=0.02)
    sampler.start()
    try:
        assert history.wait_after(3, timeout=5.0)
    finally:
        sampler.stop()
    count = history.latest_seq()
    assert count >= 4
    assert history.latest_seq() == count  # stopped means stopped


def test_the_sampler_loop_survives_a_crashing_reader(scenario: Scenario, sim: SimulatedNvml) -> None:
    from gpufleet.core.clock import SystemClock

    class Crashing:
        def __init__(self) -> None:
            self.calls = 0

        def read_all(self) -> tuple[GpuReading, ...]:
            self.calls += 1
            if self.calls == 1:
                raise ZeroDivisionError("bug")
            if self.calls == 2:
                raise GpuError("backend hiccup")
            return (GpuReading("GPU-x", 0, Health.OK, 1),)

    history = SampleHistory(10)
    sampler = Sampler(Crashing(), (), NoPodSource(), history, SystemClock(), interval_s=0.01)  # type: ignore[arg-type]
    sampler.start()
    try:
        assert history.wait_after(0, timeout=5.0)
    finally:
        sampler.stop()


def batch(seq: int) -> Batch:
    return Batch(seq, float(seq), 0.0, (GpuReading("GPU-a", 0, Health.OK, 1, gpu_util_percent=seq),),
                 PodAssignments())


def test_the_history_keeps_the_newest_batches_and_a_series_per_gpu() -> None:
    history = SampleHistory(3)
    for seq in range(1, 6):
        history.append(batch(seq))
    assert [b.seq for b in history.recent(10)] == [3, 4, 5]
    assert [b.seq for b in history.recent(2)] == [4, 5] and history.recent(0) == []
    assert [b.seq for b in history.after(3)] == [4, 5]
    assert [(seq, r.gpu_util_percent) for seq, _, r in history.gpu_series("GPU-a")] == [(3, 3), (4, 4), (5, 5)]
    with pytest.raises(ValueError, match="already holds 5"):
        history.append(batch(5))


def test_waiting_on_the_history_wakes_on_a_new_batch_and_on_close() -> None:
    history = SampleHistory(3)
    history.append(batch(1))
    got: list[list[Batch]] = []
    waiter = threading.Thread(target=lambda: got.append(history.wait_after(1, timeout=5.0)))
    waiter.start()
    history.append(batch(2))
    waiter.join(5)
    assert [b.seq for b in got[0]] == [2]
    assert history.wait_after(2, timeout=0.01) == []
    closer = threading.Thread(target=lambda: got.append(history.wait_after(2, timeout=30.0)))
    closer.start()
    history.close()
    closer.join(5)
    assert not closer.is_alive() and got[1] == [] and history.closed
