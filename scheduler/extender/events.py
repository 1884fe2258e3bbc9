"""Kubernetes Events on pods explaining placement decisions, at a rate that cannot flood the API.

The verb only builds a message and offers it (no API call in the scheduling path); a token bucket
(``rate_per_s``, ``burst``) and a per-pod interval decide whether it is kept, and one background
thread posts kept events through the ``EventPoster`` seam. Whatever does not fit is dropped and counted.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from gpufleet.core.clock import Clock
from gpufleet.core.kube.errors import KubeAPIError
from gpufleet.scheduler.extender.metrics import ExtenderMetrics
from gpufleet.scheduler.extender.pods import PodInfo
from gpufleet.scheduler.extender.scoring import NodeParts, Ranking

log = logging.getLogger(__name__)

REASON = "GpufleetPlacement"
COMPONENT = "gpufleet-extender"
MAX_MESSAGE = 1024


class EventPoster(Protocol):
    def create_event(self, namespace: str, body: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class EventConfig:
    """``rate_per_s`` events per second on average (default 2), bursts up to ``burst`` (default 10);
    at most one per pod every ``per_pod_interval_s`` (s, default 60); ``queue_size`` events wait to
    be posted at most (default 256)."""

    rate_per_s: float = 2.0
    burst: int = 10
    per_pod_interval_s: float = 60.0
    queue_size: int = 256


class TokenBucket:
    def __init__(self, rate_per_s: float, burst: int, clock: Clock) -> None:
        self._rate = rate_per_s
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._at = clock.monotonic()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = self._clock.monotonic()
            self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
            self._at = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False


def fmt_parts(p: NodeParts) -> str:
    bits = [f"{p.node}={p.score}"]
    if p.fragmentation_delta_gpus is not None:
        bits.append(f"frag {p.fragmentation_delta_gpus:+.2f} GPU")
    if p.price_per_gpu_hour is not None:
        bits.append(f"${p.price_per_gpu_hour:.2f}/GPU-h")
    if p.spot:
        bits.append("spot")
    return " ".join(bits)


def decision_message(ranking: Ranking, node: str) -> str:
    top = "; ".join(fmt_parts(p) for p in ranking.top)
    gpus = ",".join(str(g) for g in ranking.best_gpus) or "-"
    return f"policy={ranking.policy} best={node} gpus={gpus} top: {top}"[:MAX_MESSAGE]


def event_body(pod: PodInfo, message: str, when: float, instance: str) -> dict[str, Any]:
    stamp = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{pod.name}.", "namespace": pod.namespace},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": pod.namespace, "name": pod.name,
                           "uid": pod.uid},
        "reason": REASON,
        "message": message,
        "type": "Normal",
        "action": "Scored",
        "source": {"component": COMPONENT},
        "reportingComponent": f"gpufleet.io/{COMPONENT}",
        "reportingInstance": instance[:128],
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


class EventRecorder:
    def __init__(self, poster: EventPoster, clock: Clock, metrics: ExtenderMetrics,
                 config: EventConfig = EventConfig(), instance: str | None = None) -> None:
        self._poster = poster
        self._clock = clock
        self._metrics = metrics
        self._config = config
        self._bucket = TokenBucket(config.rate_per_s, config.burst, clock)
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=config.queue_size)
        self._last: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self._instance = instance or socket.gethostname()
        self._thread: threading.Thread | None = None

    def offer(self, pod: PodInfo, message: str | Callable[[], str]) -> bool:
        """Queue an Event for ``pod`` if the per-pod interval and the bucket allow; never blocks.
        ``message`` may be a function, called only when the event is kept."""
        now = self._clock.monotonic()
        with self._lock:
            last = self._last.get(pod.uid)
            if last is not None and now - last < self._config.per_pod_interval_s:
                return False
            if not self._bucket.take():
                self._metrics.events.labels("dropped").inc()
                return False
            self._last[pod.uid] = now
            self._last.move_to_end(pod.uid)
            while len(self._last) > 10_000:
                self._last.popitem(last=False)
        text = message() if callable(message) else message
        try:
            self._queue.put_nowait(event_body(pod, text, self._clock.now(), self._instance))
        except queue.Full:
            self._metrics.events.labels("dropped").inc()
            return False
        return True

    def decision(self, pod: PodInfo, ranking: Ranking, node: str) -> bool:
        return self.offer(pod, lambda: decision_message(ranking, node))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="gpufleet-events", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def drain(self) -> int:
        """Post everything queued on the caller's thread (tests, shutdown); returns how many."""
        count = 0
        while True:
            try:
                body = self._queue.get_nowait()
            except queue.Empty:
                return count
            if body is not None:
                self._post(body)
                count += 1

    def _run(self) -> None:
        while True:
            body = self._queue.get()
            if body is None:
                return
            self._post(body)

    def _post(self, body: dict[str, Any]) -> None:
        try:
            self._poster.create_event(body["metadata"]["namespace"], body)
            self._metrics.events.labels("sent").inc()
        except KubeAPIError as err:
            self._metrics.events.labels("failed").inc()
            log.debug("event not posted pod=%s: %s", body["involvedObject"]["name"], err)
