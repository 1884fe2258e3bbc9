"""PriceCatalog objects in the extender: their prices override the built-in table, nodes already in
the model are re-priced at once (annotated prices kept), a node's region's entry beats the every-region
one, a bad generation is Stalled and the last good one stays, deleting the object brings the built-in
prices back."""

from __future__ import annotations

import time

from gpufleet.core.clock import FakeClock
from gpufleet.core.pricing import PriceCatalog
from gpufleet.scheduler.extender.nodes import parse_node
from gpufleet.scheduler.extender.pricecatalogs import CatalogOverlay, PriceCatalogs
from gpufleet.scheduler.extender.state import ClusterState

TYPE = "p4de.24xlarge"


def node(name: str, spot: bool = False, annotated: float | None = None, region: str | None = None) -> dict:
    annotations = {"gpufleet.io/price-per-hour": str(annotated)} if annotated is not None else {}
    labels = {"node.kubernetes.io/instance-type": TYPE, "karpenter.sh/capacity-type": "spot" if spot else "on-demand"}
    if region is not None:
        labels["topology.kubernetes.io/region"] = region
    return {"metadata": {"name": name, "annotations": annotations, "labels": labels},
            "status": {"allocatable": {"cpu": "96", "memory": "1000Gi", "nvidia.com/gpu": "8"}}}


def catalog_obj(generation: int, instances: list, name: str = "negotiated") -> dict:
    return {"metadata": {"name": name, "generation": generation, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"instances": instances}}


class Patcher:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def patch(self, path: str, body, patch_type: str = "merge") -> dict:
        self.calls.append((path, body))
        return {}


def wait_calls(patcher: Patcher, count: int) -> None:
    """Status is written on a thread of its own (the newest per object)."""
    deadline = time.monotonic() + 5
    while len(patcher.calls) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(patcher.calls) == count, patcher.calls


def prices(state: ClusterState) -> dict[str, tuple[float, str]]:
    return {i.name: (i.node.price_per_hour, i.price_source) for i in state.node_infos()}


def test_a_price_catalog_reprices_the_nodes_in_the_model_and_a_bad_one_keeps_the_last_good():
    base = PriceCatalog.default()
    overlay = CatalogOverlay(base)
    state = ClusterState(clock=FakeClock(), resources=("nodes",))
    state.replace_nodes([parse_node(node("od"), overlay), parse_node(node("spot", spot=True), overlay),
                         parse_node(node("fixed", annotated=3.0), overlay)])
    built_in = prices(state)
    assert built_in["od"][1] == "catalog" and built_in["fixed"] == (3.0, "annotation")
    patcher = Patcher()
    sink = PriceCatalogs(state, overlay, patcher)
    sink.start()
    try:
        sink.replace([catalog_obj(1, [{"instanceType": TYPE, "region": "*", "onDemandPerHour": 20.0,
                                       "spotPerHour": 8.0},
                                      {"instanceType": TYPE, "region": "us-east-1", "onDemandPerHour": 19.0}])])
        assert prices(state) == {"od": (20.0, "pricecatalog"), "spot": (8.0, "pricecatalog"),
                                 "fixed": (3.0, "annotation")}
        wait_calls(patcher, 1)
        row = state.cluster.index["od"]
        assert state.cluster.price_per_hour[row] == 20.0  # the scoring arrays, not only the records
        assert parse_node(node("new"), overlay).node.price_per_hour == 20.0  # nodes that come later too
        sink.apply("MODIFIED", catalog_obj(2, [{"instanceType": TYPE, "region": "*", "onDemandPerHour": "cheap"}]))
        assert prices(state)["od"] == (20.0, "pricecatalog")
        wait_calls(patcher, 2)
        sink.apply("DELETED", catalog_obj(2, []))
        assert prices(state) == built_in
        first, second = (body["status"] for _, body in patcher.calls[:2])
        assert "1 region-specific entries in effect" in first["conditions"][0]["message"]
        assert {c["type"]: c["reason"] for c in second["conditions"]} == {"Ready": "InvalidSpec",
                                                                          "Stalled": "InvalidSpec"}
        assert "last good generation keeps running" in second["conditions"][0]["message"]
    finally:
        sink.stop()


def test_later_objects_win_and_spot_is_estimated_when_only_on_demand_is_given():
    overlay = CatalogOverlay(PriceCatalog.default())
    state = ClusterState(clock=FakeClock(), resources=("nodes",))
    sink = PriceCatalogs(state, overlay)
    older = catalog_obj(1, [{"instanceType": TYPE, "onDemandPerHour": 10.0}], name="a")
    newer = {**catalog_obj(1, [{"instanceType": TYPE, "onDemandPerHour": 12.0}], name="b")}
    newer["metadata"]["creationTimestamp"] = "2026-02-01T00:00:00Z"
    sink.replace([newer, older])
    assert overlay.node_price(TYPE, spot=False).per_hour == 12.0
    spot = overlay.node_price(TYPE, spot=True)
    assert spot.source == "pricecatalog-spot-estimate" and spot.per_hour == 12.0 * overlay.spot_ratio


def test_a_regional_entry_prices_the_nodes_of_its_region_and_the_every_region_entry_the_others():
    overlay = CatalogOverlay(PriceCatalog.default())
    state = ClusterState(clock=FakeClock(), resources=("nodes",))
    state.replace_nodes([parse_node(node("east", region="us-east-1"), overlay),
                         parse_node(node("east-spot", spot=True, region="us-east-1"), overlay),
                         parse_node(node("west", region="us-west-2"), overlay),
                         parse_node(node("unlabelled"), overlay)])
    built_in = prices(state)
    assert all(source.startswith("catalog") for _, source in built_in.values()), built_in
    sink = PriceCatalogs(state, overlay)
    sink.replace([catalog_obj(1, [{"instanceType": TYPE, "region": "*", "onDemandPerHour": 20.0, "spotPerHour": 8.0},
                                  {"instanceType": TYPE, "region": "us-east-1", "onDemandPerHour": 19.0}])])
    assert prices(state) == {"east": (19.0, "pricecatalog"), "west": (20.0, "pricecatalog"),
                             "unlabelled": (20.0, "pricecatalog"),
                             # the region's row has no spot price: the every-region spot price, not an estimate
                             "east-spot": (8.0, "pricecatalog")}
    assert parse_node(node("later", region="us-east-1"), overlay).node.price_per_hour == 19.0
    assert parse_node(node("later-west", region="us-west-2"), overlay).node.price_per_hour == 20.0

    # a newer object's every-region entry does not displace an older object's regional one
    newer = catalog_obj(1, [{"instanceType": TYPE, "onDemandPerHour": 25.0},
                            {"instanceType": TYPE, "region": "us-west-2", "onDemandPerHour": 18.0,
                             "spotPerHour": 7.0}], name="newer")
    newer["metadata"]["creationTimestamp"] = "2026-02-01T00:00:00Z"
    sink.apply("ADDED", newer)
    assert prices(state) == {"east": (19.0, "pricecatalog"), "west": (18.0, "pricecatalog"),
                             "unlabelled": (25.0, "pricecatalog"),
                             # no spot price left: estimated from the region's on-demand price
                             "east-spot": (19.0 * overlay.spot_ratio, "pricecatalog-spot-estimate")}
    sink.apply("DELETED", newer)
    sink.apply("DELETED", catalog_obj(1, []))
    assert prices(state) == built_in
