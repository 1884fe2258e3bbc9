"""Decision Events are rate-limited by a token bucket and posted off the scheduling path."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from gpufleet.core.clock import FakeClock
from gpufleet.core.kube.errors import KubeAPIError
from gpufleet.scheduler.extender.events import EventConfig, EventRecorder, TokenBucket
from gpufleet.scheduler.extender.metrics import ExtenderMetrics
from gpufleet.scheduler.extender.pods import parse_pod

from . import payloads as P
from .fakes import FakeKubeAPI


def test_the_bucket_allows_a_burst_then_the_rate():
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=2.0, burst=3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.advance(0.5)
    assert [bucket.take(), bucket.take()] == [True, False]
    clock.advance(100)
    assert sum(bucket.take() for _ in range(10)) == 3


def test_a_flood_of_decisions_posts_at_most_the_budget_and_counts_the_rest():
    clock = FakeClock()
    api = FakeKubeAPI()
    metrics = ExtenderMetrics(CollectorRegistry())
    recorder = EventRecorder(api, clock, metrics, EventConfig(rate_per_s=5, burst=10, per_pod_interval_s=0,
                                                              queue_size=100), instance="x")
    pods = [parse_pod(P.pod(f"p-{i}")) for i in range(1000)]
    for second in range(10):
        for pod in pods[second * 100:(second + 1) * 100]:
            recorder.offer(pod, "m")
        clock.advance(1.0)
    assert recorder.drain() == 10 + 9 * 5
    assert metrics.events.labels("dropped")._value.get() == 1000 - 55
    assert metrics.events.labels("sent")._value.get() == 55


def test_event_bodies_are_core_v1_events_on_the_pod_and_api_errors_are_counted():
    clock = FakeClock()
    api = FakeKubeAPI()
    metrics = ExtenderMetrics(CollectorRegistry())
    recorder = EventRecorder(api, clock, metrics, instance="extender-0")
    pod = parse_pod(P.pod("trainer-0", "ml"))
    recorder.offer(pod, lambda: "policy=fgd best=gpu-000")
    recorder.drain()
    api.fail_next("create_event", KubeAPIError("403 Forbidden", 403))
    recorder.offer(parse_pod(P.pod("trainer-1", "ml")), "x")
    recorder.drain()
    namespace, body = api.events[0]
    assert namespace == "ml"
    assert body["involvedObject"] == {"apiVersion": "v1", "kind": "Pod", "namespace": "ml", "name": "trainer-0",
                                      "uid": pod.uid}
    assert body["metadata"] == {"generateName": "trainer-0.", "namespace": "ml"}
    assert (body["reason"], body["type"], body["message"], body["count"]) == \
        ("GpufleetPlacement", "Normal", "policy=fgd best=gpu-000", 1)
    assert body["firstTimestamp"] == "2023-11-14T22:13:20Z" and body["reportingInstance"] == "extender-0"
    assert metrics.events.labels("failed")._value.get() == 1


def test_the_background_poster_stops_cleanly():
    api = FakeKubeAPI()
    recorder = EventRecorder(api, FakeClock(), ExtenderMetrics(CollectorRegistry()), instance="x")
    recorder.start()
    recorder.offer(parse_pod(P.pod("p")), "hello")
    recorder.stop()
    assert [body["message"] for _, body in api.events] == ["hello"]
