"""The sampling loop: read every GPU each interval, refresh pod assignments, append to the history.

:meth:`Sampler.sample_once` is one pass and is what tests drive with a fake clock;
:meth:`Sampler.start` runs passes on a thread at a fixed rate (ticks do not drift with pass time).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from gpufleet.autoscaler.agent.history import Batch, SampleHistory
from gpufleet.autoscaler.agent.podmap import DeviceIndex, PodAssignments, join
from gpufleet.autoscaler.agent.pods import PodSource
from gpufleet.autoscaler.gpu.model import GpuDevice, GpuError
from gpufleet.autoscaler.gpu.reader import GpuReader
from gpufleet.core.clock import Clock

log = logging.getLogger(__name__)


class SamplerObserver(Protocol):
    """What the sampler reports (the agent's metrics implement it)."""

    def observe_pass(self, batch: Batch) -> None: ...
    def observe_pass_failure(self, error: Exception) -> None: ...
    def observe_pod_refresh(self, seconds: float, ok: bool) -> None: ...


@dataclass(frozen=True, slots=True)
class SamplerHealth:
    ok: bool
    last_pass_age_s: float | None  # None before the first pass
    last_error: str


class Sampler:
    def __init__(
        self,
        reader: GpuReader,
        devices: Sequence[GpuDevice],
        pods: PodSource,
        history: SampleHistory,
        clock: Clock,
        interval_s: float = 1.0,
        pod_refresh_s: float = 5.0,
        observer: SamplerObserver | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"sampling every {interval_s} s: the interval must be > 0")
        self._reader = reader
        self._index = DeviceIndex(devices)
        self._pods = pods
        self._history = history
        self._clock = clock
        self.interval_s = interval_s
        self._pod_refresh_s = pod_refresh_s
        self._observer = observer
        self._seq = 0
        self._assignments = PodAssignments()
        self._next_pod_refresh: float | None = None
        self._last_ok: float | None = None
        self._last_error = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def assignments(self) -> PodAssignments:
        return self._assignments

    def refresh_pods(self) -> PodAssignments:
        """Ask the pod source now and re-join; keeps the last good answer's devices if it fails."""
        started = self._clock.monotonic()
        snapshot = self._pods.snapshot()
        if snapshot.ok:
            self._assignments = join(snapshot.containers, self._index, snapshot.allocatable)
            if self._assignments.unresolved:
                log.debug("device ids matched no local device ids=%s", ",".join(self._assignments.unresolved))
        else:
            # keep who-holds-what from the last good answer, but say it is stale
            last = self._assignments
            self._assignments = PodAssignments(last.by_uuid, last.allocatable, last.unresolved, ok=False)
        if self._observer is not None:
            self._observer.observe_pod_refresh(self._clock.monotonic() - started, snapshot.ok)
        self._next_pod_refresh = self._clock.monotonic() + self._pod_refresh_s
        return self._assignments

    def sample_once(self) -> Batch:
        """One pass. Raises GpuError when the backend failed (the loop logs it and carries on)."""
        if self._next_pod_refresh is None or self._clock.monotonic() >= self._next_pod_refresh:
            self.refresh_pods()
        started = self._clock.monotonic()
        try:
            readings = self._reader.read_all()
        except GpuError as err:
            self._last_error = str(err)
            if self._observer is not None:
                self._observer.observe_pass_failure(err)
            raise
        self._seq += 1
        batch = Batch(
            seq=self._seq,
            unix_time=self._clock.now(),
            pass_seconds=self._clock.monotonic() - started,
            readings=readings,
            assignments=self._assignments,
        )
        self._history.append(batch)
        self._last_ok = self._clock.monotonic()
        self._last_error = ""
        if self._observer is not None:
            self._observer.observe_pass(batch)
        return batch

    def health(self) -> SamplerHealth:
        """Healthy while the last good pass is younger than three intervals (at least 10 s)."""
        if self._last_ok is None:
            return SamplerHealth(False, None, self._last_error or "no sampling pass yet")
        age = self._clock.monotonic() - self._last_ok
        return SamplerHealth(age <= max(3 * self.interval_s, 10.0), age, self._last_error)

    # -- the loop --------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("starting the sampler: it is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="gpufleet-sampler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        next_tick = self._clock.monotonic()
        failures = 0
        while not self._stop.is_set():
            try:
                self.sample_once()
                if failures:
                    log.info("sampling recovered after failures=%d", failures)
                failures = 0
            except GpuError as err:
                failures += 1
                if failures == 1 or failures % 60 == 0:
                    log.error("sampling pass failed failures=%d error=%s", failures, err)
            except Exception:  # a bug must not silently end sampling; health turns red instead
                failures += 1
                self._last_error = "unexpected error in sampling pass (see log)"
                log.exception("sampling pass crashed failures=%d", failures)
            next_tick += self.interval_s
            now = self._clock.monotonic()
            if next_tick < now:  # fell behind (slow pass, suspended process): skip, don't burst
                next_tick = now + self.interval_s
            self._stop.wait(next_tick - now)
