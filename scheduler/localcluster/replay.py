"""A burst of pods through the real kube-scheduler, measured: queue the pods while the scheduler is
stopped (the Python client creates pods far slower than kube-scheduler binds them), start it, follow
its own /metrics until every pod is bound or found unschedulable, then read the pods back.

Progress comes from ``scheduler_schedule_attempts_total{result="scheduled"}`` (counted after the
bind), polled every ``poll_s``; the run is settled when all pods are bound, or when nothing is left
in the active and backoff queues, no binding is in flight, and bound + unschedulable covers every
pod. Latencies come from the scheduler's histograms of the same scrape.

Pods the extender's filter turned away do not stay in the unschedulable queue: kube-scheduler has
no queueing hint for an extender, so every node update (kwok's heartbeats) sends them back to the
backoff queue and on to the active queue, round and round. A run is therefore also settled when every
pod is bound or in one of the queues, nothing is binding, and no pod has been bound for ``SETTLE_S`` (longer than
kube-scheduler's 10 s maximum backoff and the extender's 30 s decision TTL, so each waiting pod has
been retried against a cluster that no longer changes: the replays only add pods).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gpufleet.core import names
from gpufleet.scheduler.localcluster import components, readiness, usage
from gpufleet.scheduler.localcluster.bindwatch import BindWatch
from gpufleet.scheduler.localcluster.cluster import ClusterInfo, LocalCluster
from gpufleet.scheduler.localcluster.podloader import PodLoader, is_bound, is_unschedulable
from gpufleet.scheduler.localcluster.progress import Progress
from gpufleet.scheduler.localcluster.scrape import Samples, ScrapeError, scrape

log = logging.getLogger(__name__)

SCHEDULER = "kube-scheduler"
#: kube-scheduler histograms reported by ``latency_percentiles``.
ATTEMPT = "scheduler_scheduling_attempt_duration_seconds"
SLI = "scheduler_pod_scheduling_sli_duration_seconds"
ALGORITHM = "scheduler_scheduling_algorithm_duration_seconds"


class ReplayError(RuntimeError):
    """The pods did not settle in time, or a component failed during the run."""


@dataclass(frozen=True)
class PodOutcome:
    """Where one pod ended up: ``node`` is empty when it was not bound."""

    name: str
    node: str
    gpu_ids: str | None
    unschedulable: bool
    annotations: dict[str, str]
    raw: dict[str, Any] = field(repr=False, compare=False)


@dataclass
class SchedulingRun:
    """One burst, from the scheduler's start to the last bind."""

    pods: int
    create_s: float
    #: Seconds from launching kube-scheduler to its /healthz answering.
    start_s: float
    #: (seconds since launch, pods bound) at every poll.
    timeline: list[tuple[float, int]]
    bound: int
    unschedulable: int
    #: Seconds from launching the scheduler to each bind the watch saw, ascending.
    bind_times: list[float]
    metrics: Samples
    cpu_s: dict[str, float]
    outcomes: list[PodOutcome] = field(default_factory=list)

    @property
    def first_bind_s(self) -> float:
        return self.bind_times[0] if self.bind_times else float("nan")

    @property
    def last_bind_s(self) -> float:
        return self.bind_times[-1] if self.bind_times else float("nan")

    @property
    def pods_per_s(self) -> float:
        """Binding rate from the first bind to the last (the scheduler's start excluded)."""
        if len(self.bind_times) < 2 or self.last_bind_s <= self.first_bind_s:
            return float("nan")
        return (len(self.bind_times) - 1) / (self.last_bind_s - self.first_bind_s)

    @property
    def pods_per_s_from_start(self) -> float:
        """Pods bound / seconds from launching the scheduler (its start and informer sync included)."""
        return self.bound / self.last_bind_s if self.bind_times and self.last_bind_s > 0 else float("nan")


def scheduler_metrics_url(info: ClusterInfo) -> str:
    return f"https://{components.LOOPBACK}:{info.ports['scheduler']}/metrics"


def extender_metrics_url(info: ClusterInfo) -> str | None:
    port = info.ports.get("extender")
    return f"http://{components.LOOPBACK}:{port}/metrics" if port else None


def scrape_scheduler(info: ClusterInfo) -> Samples:
    return scrape(scheduler_metrics_url(info), readiness.insecure_ssl_context())


#: Seconds without a bind after which pods that keep backing off count as settled (see above).
SETTLE_S = 40.0


def _retrying(samples: Samples) -> int | None:
    """Pods in the active and backoff queues when no binding is in flight, else None."""
    if samples.total("scheduler_goroutines", operation="binding"):
        return None
    return int(samples.total("scheduler_pending_pods", queue="backoff")
               + samples.total("scheduler_pending_pods", queue="active"))


def _queues(samples: Samples) -> tuple[bool, int]:
    """Whether kube-scheduler has nothing to do (active and backoff queues empty, no binding in
    flight), and how many pods wait in its unschedulable queue."""
    active = samples.total("scheduler_pending_pods", queue="active")
    backoff = samples.total("scheduler_pending_pods", queue="backoff")
    binding = samples.total("scheduler_goroutines", operation="binding")
    unschedulable = int(samples.total("scheduler_pending_pods", queue="unschedulable"))
    return active == 0 and backoff == 0 and binding == 0, unschedulable


def queue_and_schedule(cluster: LocalCluster, info: ClusterInfo, loader: PodLoader, namespace: str,
                       manifests: Sequence[dict[str, Any]], *, emit: Callable[[str], None] | None = None,
                       timeout_s: float = 600.0, poll_s: float = 0.25, collect: bool = True) -> SchedulingRun:
    """Throughput: stop kube-scheduler, create ``manifests`` in ``namespace`` (which must exist),
    start the scheduler and wait until the pods settle; with ``collect``, read the pods back.

    The order in which kube-scheduler takes pods it finds at start is not their creation order, so
    use :func:`schedule_in_order` where order matters."""
    say = emit or (lambda line: log.info("%s", line))
    cluster.stop_component(SCHEDULER)
    try:
        create_s = loader.create(namespace, manifests, progress=say)
        watch = BindWatch(loader.core, namespace).start()
    finally:
        before = usage.cpu_seconds(cluster.state_dir)
        launched = time.monotonic()
        cluster.start_component(SCHEDULER)
    start_s = time.monotonic() - launched
    say(f"kube-scheduler started ({start_s:.1f} s); scheduling {len(manifests):,} pods")
    return _follow(cluster, info, loader, namespace, watch, len(manifests), launched, before, create_s, start_s,
                   say, timeout_s, poll_s, collect)


def schedule_in_order(cluster: LocalCluster, info: ClusterInfo, loader: PodLoader, namespace: str,
                      manifests: Sequence[dict[str, Any]], *, emit: Callable[[str], None] | None = None,
                      timeout_s: float = 600.0, poll_s: float = 0.25, collect: bool = True) -> SchedulingRun:
    """Replay: create ``manifests`` one after the other while kube-scheduler runs, so its queue
    (first in, first out among equal priorities) takes them in list order, and wait until they
    settle. Times count from the first pod's creation."""
    say = emit or (lambda line: log.info("%s", line))
    watch = BindWatch(loader.core, namespace).start()
    before = usage.cpu_seconds(cluster.state_dir)
    launched = time.monotonic()
    try:
        create_s = loader.create(namespace, manifests, progress=say, ordered=True)
    except BaseException:
        watch.stop()
        raise
    return _follow(cluster, info, loader, namespace, watch, len(manifests), launched, before, create_s, 0.0,
                   say, timeout_s, poll_s, collect)


def _follow(cluster: LocalCluster, info: ClusterInfo, loader: PodLoader, namespace: str, watch: BindWatch,
            total: int, launched: float, before: dict[str, float], create_s: float, start_s: float,
            say: Callable[[str], None], timeout_s: float, poll_s: float, collect: bool) -> SchedulingRun:
    """Poll the scheduler and the bind watch until every pod is bound or waits as unschedulable."""
    try:
        meter = Progress("pods settled", total, say, every_s=2.0, started=launched)
        timeline: list[tuple[float, int]] = []
        deadline = launched + timeout_s
        while True:
            try:
                samples = scrape_scheduler(info)
            except ScrapeError as err:
                cluster.processes.check(SCHEDULER)  # raises with its log if it died
                raise ReplayError(f"scraping kube-scheduler during the run: {err}") from err
            bound = watch.count
            quiet, unschedulable = _queues(samples)
            timeline.append((time.monotonic() - launched, bound))
            meter.update(bound + unschedulable)
            if bound >= total or (quiet and bound + unschedulable >= total):
                break
            backoff = _retrying(samples)
            if backoff is not None and bound + unschedulable + backoff >= total:
                last = max(watch.times().values(), default=launched)
                if time.monotonic() - max(last, launched + create_s) >= SETTLE_S:
                    say(f"settled: {bound} bound, {unschedulable + backoff} unschedulable or being retried, "
                        f"no bind for {SETTLE_S:.0f} s")
                    unschedulable += backoff
                    break
            if time.monotonic() > deadline:
                raise ReplayError(f"{bound} of {total} pods bound and {unschedulable} unschedulable after "
                                  f"{timeout_s:.0f} s; see {cluster.processes.log_path(SCHEDULER)}")
            time.sleep(poll_s)
        cpu = usage.difference(usage.cpu_seconds(cluster.state_dir), before)
        meter.finish(bound + unschedulable)
    finally:
        watch.stop()
    times = sorted(t - launched for t in watch.times().values())
    run = SchedulingRun(pods=total, create_s=create_s, start_s=start_s, timeline=timeline, bound=len(times),
                        unschedulable=unschedulable, bind_times=times, metrics=samples, cpu_s=cpu)
    if collect:
        run.outcomes = outcomes(loader.list_pods(namespace))
    return run


def outcomes(pods: Sequence[dict[str, Any]]) -> list[PodOutcome]:
    """Each listed pod's node, ``gpufleet.io/gpu-ids`` and whether it was found unschedulable."""
    result = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        result.append(PodOutcome(name=meta.get("name", ""), node=(pod.get("spec") or {}).get("nodeName") or "",
                                 gpu_ids=annotations.get(names.GPU_IDS),
                                 unschedulable=not is_bound(pod) and is_unschedulable(pod),
                                 annotations=dict(annotations), raw=pod))
    return sorted(result, key=lambda o: o.name)


def latency_percentiles(samples: Samples, name: str, quantiles: Sequence[float] = (0.5, 0.9, 0.99),
                        **match: str) -> dict[float, float]:
    """Percentiles (seconds) of one of the scheduler's histograms."""
    from gpufleet.scheduler.localcluster.scrape import quantile

    buckets = samples.histogram(name, **match)
    return {q: quantile(q, buckets) for q in quantiles}
