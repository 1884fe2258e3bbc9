"""Agent endpoints from the agent Service's EndpointSlices, and the store's view of a sample batch."""

from __future__ import annotations

from gpufleet.autoscaler.controller.agents import discover
from gpufleet.autoscaler.controller.config import SamplesConfig
from gpufleet.autoscaler.controller.store import Reading, SampleStore
from gpufleet.core import names

from .fakes import FakeAPI


def endpoint_slice(name: str, service: str, addresses: list[tuple[str, bool | None]], port: int = 9450) -> dict:
    return {"metadata": {"name": name, "namespace": "gpufleet-system",
                         "labels": {names.SERVICE_NAME_LABEL: service}},
            "ports": [{"name": "grpc", "port": port}, {"name": "metrics", "port": 9451}],
            "endpoints": [{"addresses": [a], **({"conditions": {"ready": r}} if r is not None else {})}
                          for a, r in addresses]}


def test_ready_endpoints_of_the_agent_service_are_found_on_the_grpc_port() -> None:
    api = FakeAPI()
    base = "/apis/discovery.k8s.io/v1/namespaces/gpufleet-system/endpointslices"
    api.add(f"{base}/a", endpoint_slice("a", "gpufleet-agent", [("10.0.0.1", True), ("10.0.0.2", False),
                                                                 ("fd00::3", None)]))
    api.add(f"{base}/b", endpoint_slice("b", "something-else", [("10.0.0.9", True)]))
    assert discover(api, "gpufleet-system", "gpufleet-agent") == ["10.0.0.1:9450", "[fd00::3]:9450"]


def reading(util: float | None, mem: float = 0.0) -> Reading:
    return Reading("GPU-a", util, mem, None, 1, (("ml", "p"),))


def test_samples_fold_into_buckets_keeping_the_busiest_utilisation() -> None:
    store = SampleStore(SamplesConfig(bucket_s=10, history_s=100))
    for t, u in ((0, 0), (3, 50), (6, 0), (12, 0)):
        store.ingest("n", 1000.0 + t, 1000.0 + t, [reading(u)])
    series = store.series(("ml", "p"), "GPU-a")
    assert list(series.utilisation_percent) == [50.0, 0.0]  # a 3-s burst is never lost


def test_a_reading_without_utilisation_is_not_stored_and_the_ring_keeps_its_history_length() -> None:
    store = SampleStore(SamplesConfig(bucket_s=1, history_s=5))
    store.ingest("n", 1.0, 1.0, [reading(None)])
    assert len(store.series(("ml", "p"), "GPU-a")) == 0
    for t in range(2, 30):
        store.ingest("n", float(t), float(t), [reading(0)])
    series = store.series(("ml", "p"), "GPU-a")
    assert len(series) == 6 and series.timestamps[-1] == 29.0
    assert list(series.timestamps) == sorted(series.timestamps)


def test_replayed_batches_fill_the_buffers_but_do_not_make_a_node_fresh() -> None:
    store = SampleStore(SamplesConfig(bucket_s=1, history_s=60))
    store.ingest("n", 5.0, 100.0, [reading(0)], live=False)
    assert store.node("n") is None and len(store.series(("ml", "p"), "GPU-a")) == 1


def test_a_ring_grows_then_wraps_keeping_the_newest_buckets_in_order() -> None:
    store = SampleStore(SamplesConfig(bucket_s=1, history_s=199))  # 200 buckets: grows 64 -> 128 -> 200
    for t in range(500):
        store.ingest("n", float(t), float(t), [reading(t % 3)])
    series = store.series(("ml", "p"), "GPU-a")
    assert list(series.timestamps) == [float(t) for t in range(300, 500)]
    assert list(series.utilisation_percent[:3]) == [0.0, 1.0, 2.0]
