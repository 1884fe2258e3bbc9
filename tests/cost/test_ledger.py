"""The waste ledger: kinds add up to the node's GPU cost, shares and MIG slices, spot pricing, wrong size."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufleet.autoscaler.cost.catalog import parse_catalog
from gpufleet.autoscaler.cost.ledger import (
    ALLOCATED_ACTIVE,
    ALLOCATED_IDLE,
    KINDS,
    UNALLOCATED,
    UNASSIGNED,
    Holding,
    Ledger,
    NodeRef,
    PodRef,
    mig_fraction,
    node_gpu_price,
)
from gpufleet.autoscaler.cost.sizing import needed_rate
from gpufleet.core.pricing import PriceCatalog

PRICES = """cloud,instance_type,gpu_model,gpu_count,gpu_memory_per_gpu_mib,vcpu,memory_gib,ondemand_usd_per_hour,spot_usd_per_hour
aws,small.1,t4,1,16384,4,16,1.0,0.4
aws,big.4,a100,4,81920,48,384,40.0,
aws,other.1,l4,1,24576,8,32,2.0,1.0
"""
HOUR = 3600.0
T0 = 1_780_000_000.0


def catalog() -> PriceCatalog:
    return PriceCatalog.from_csv_text(PRICES)


def node(name="n1", itype="big.4", gpus=4, spot=False, annotations=None) -> NodeRef:
    labels = {"node.kubernetes.io/instance-type": itype}
    if spot:
        labels["karpenter.sh/capacity-type"] = "spot"
    return NodeRef(name, gpus, labels=labels, annotations=annotations or {})


def pod(name, team=None, namespace="ml") -> PodRef:
    return PodRef(name, namespace, owner=f"Deployment/{name}", labels=(("team", team),) if team else ())


def test_four_pods_of_250_milli_for_an_hour_are_exactly_one_gpu_hour():
    ledger = Ledger(catalog())
    holdings = [Holding(pod(f"p{i}"), gpu=0, fraction=0.25, activity=0.5) for i in range(4)]
    ledger.add_sample(node(), T0, HOUR, holdings)
    snap = ledger.snapshot()
    assert sum(p.gpu_seconds for p in snap.pods.values()) == pytest.approx(HOUR, rel=0, abs=1e-9)
    assert sum(p.total_usd for p in snap.pods.values()) == pytest.approx(10.0)  # one GPU of a 40 $/h 4-GPU node
    assert snap.by_kind[UNALLOCATED] == pytest.approx(30.0)
    assert snap.gpu_seconds[ALLOCATED_ACTIVE] == pytest.approx(HOUR)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 1000), st.floats(0, 1), st.integers(1, 900)),
                min_size=1, max_size=30))
def test_kinds_add_up_to_the_nodes_gpu_cost(samples):
    ledger = Ledger(catalog(), needed_rate(parse_catalog(PRICES)))
    start = T0
    for k, (gpu, milli, activity, seconds) in enumerate(samples):
        holdings = [Holding(pod(f"p{k % 5}", team="a" if k % 2 else None), gpu, milli / 1000, activity,
                            memory_bytes=milli * 2**24),
                    Holding(pod(f"q{k % 3}"), (gpu + 1) % 4, 0.6, activity / 2, memory_bytes=2**33),
                    Holding(pod(f"r{k % 3}"), (gpu + 1) % 4, 0.7, 0.0)]  # over-committed GPU: scaled down
        ledger.add_sample(node(), start, seconds, holdings)
        start += seconds
    snap = ledger.snapshot()
    expected = 40.0 * (start - T0) / HOUR
    assert snap.total_usd == pytest.approx(expected, rel=0.005, abs=1e-9)
    assert sum(snap.by_node["n1"].values()) == pytest.approx(expected, rel=0.005, abs=1e-9)
    allocated = snap.by_kind[ALLOCATED_IDLE] + snap.by_kind[ALLOCATED_ACTIVE]
    assert sum(p.needed_usd + p.wrong_size_usd for p in snap.pods.values()) == pytest.approx(allocated, abs=1e-9)
    assert all(p.wrong_size_usd >= -1e-12 for p in snap.pods.values())
    assert sum(sum(v.values()) for v in snap.by_team.values()) == pytest.approx(allocated, abs=1e-9)


def test_idle_and_active_holdings_split_by_measured_activity():
    ledger = Ledger(catalog())
    ledger.add_sample(node(), T0, HOUR, [Holding(pod("busy"), 0, 1.0, 0.4), Holding(pod("idle"), 1, 1.0, 0.0)])
    snap = ledger.snapshot()
    assert snap.by_kind == pytest.approx({UNALLOCATED: 20.0, ALLOCATED_IDLE: 10.0, ALLOCATED_ACTIVE: 10.0})
    assert snap.pods["ml/idle"].usd[ALLOCATED_IDLE] == pytest.approx(10.0)


@pytest.mark.parametrize("spot, per_gpu_hour, source", [(False, 1.0, "catalog"), (True, 0.4, "catalog")])
def test_spot_and_on_demand_nodes_are_priced_from_their_capacity_type(spot, per_gpu_hour, source):
    price = node_gpu_price(node(itype="small.1", gpus=1, spot=spot), catalog())
    assert (price.usd_per_gpu_hour, price.spot, price.source) == (per_gpu_hour, spot, source)


def test_a_spot_node_without_a_spot_price_gets_the_catalog_estimate():
    price = node_gpu_price(node(spot=True), catalog())
    assert price.source == "catalog-spot-estimate"
    assert 0 < price.usd_per_gpu_hour < 10.0


def test_the_price_annotation_overrides_the_catalog_and_a_bad_one_is_ignored():
    assert node_gpu_price(node(annotations={"gpufleet.io/price-per-hour": "8"}), catalog()).usd_per_gpu_hour == 2.0
    assert node_gpu_price(node(annotations={"gpufleet.io/price-per-hour": "cheap"}), catalog()).usd_per_gpu_hour \
        == 10.0


def test_an_unknown_instance_type_costs_nothing_and_says_so():
    price = node_gpu_price(node(itype="mystery.1"), catalog())
    assert (price.usd_per_gpu_hour, price.source) == (0.0, "unknown")


@pytest.mark.parametrize("profile, model, fraction", [("1g.10gb", "a100", 1 / 7), ("3g.40gb", "h100", 3 / 7),
                                                      ("7g.80gb", "a100", 1.0), ("2g.12gb", "a30", 0.5)])
def test_mig_slices_hold_their_fraction(profile, model, fraction):
    assert mig_fraction(profile, model) == pytest.approx(fraction)


def test_a_bad_mig_profile_is_refused_with_the_expected_form():
    with pytest.raises(ValueError, match="<slices>g"):
        mig_fraction("big", "a100")


def test_mig_pods_are_charged_their_slice_and_the_rest_stays_unallocated():
    ledger = Ledger(catalog())
    slices = [Holding(pod(f"m{i}"), 0, mig_fraction("1g.10gb", "a100"), 0.3) for i in range(3)]
    ledger.add_sample(node(gpus=4), T0, HOUR, slices)
    snap = ledger.snapshot()
    assert snap.pods["ml/m0"].total_usd == pytest.approx(10.0 / 7)
    assert snap.by_kind[UNALLOCATED] == pytest.approx(30.0 + 10.0 * 4 / 7)


def test_a_pod_with_small_peak_memory_on_a_big_gpu_is_mostly_wrong_size():
    ledger = Ledger(catalog(), needed_rate(parse_catalog(PRICES)))
    ledger.add_sample(node(), T0, HOUR, [Holding(pod("tiny"), 0, 1.0, 0.05, memory_bytes=4 * 2**30)])
    cost = ledger.snapshot().pods["ml/tiny"]
    # 4 GiB + 15% fits a 16 GiB t4 at 1 $/h: a 0.2875 share of it is what the pod needed
    assert cost.needed_usd == pytest.approx(max(4 * 1.15 / 16, 0.05 * 1.15) * 1.0)
    assert cost.wrong_size_usd == pytest.approx(10.0 - cost.needed_usd)


def test_unlabelled_pods_go_to_unassigned_and_labelled_ones_to_their_team():
    ledger = Ledger(catalog())
    ledger.add_sample(node(), T0, HOUR, [Holding(pod("a", team="vision"), 0, 1.0, 0.5),
                                         Holding(PodRef("b", "ml", labels=(("cost-center", "cc7"),)), 1, 0.5, 0.5),
                                         Holding(pod("c"), 2, 0.5, 0.5)])
    snap = ledger.snapshot()
    assert set(snap.by_team) == {"vision", "cc7", UNASSIGNED}
    assert sum(snap.by_team[UNASSIGNED].values()) == pytest.approx(5.0)
    assert math.isclose(snap.total_usd, 40.0)
    assert set(KINDS) == set(snap.by_kind)
