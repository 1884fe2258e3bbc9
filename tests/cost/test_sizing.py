"""Per-workload right-sizing: never a GPU that cannot hold the measured peak; shares; spot; requests kept."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufleet.autoscaler.cost.catalog import CatalogError, load_catalog, parse_catalog
from gpufleet.autoscaler.cost.sizing import SizingPolicy, Usage, Workload, needs, recommend_workload

PRICES = """cloud,instance_type,gpu_model,gpu_count,gpu_memory_per_gpu_mib,vcpu,memory_gib,ondemand_usd_per_hour,spot_usd_per_hour
aws,t4.small,t4,1,16384,8,32,0.75,
aws,t4.quad,t4,4,16384,48,192,3.9,1.6
aws,l4.small,l4,1,22888,8,32,1.0,
aws,l40s.small,l40s,1,46068,8,64,2.2,
aws,h100.octo,h100,8,81920,192,2048,55.0,
aws,h100.half,h100,1,40960,8,64,3.0,
aws,cpu.nogpu,l4,0,2861,2,8,0.2,
"""
CATALOG = parse_catalog(PRICES)


def workload(memory_gib, compute=0.3, num_gpu=1, milli=1000, cpu=4000, interruptible=False):
    return Workload("w", cpu, 8192, num_gpu, milli, interruptible=interruptible,
                    usage=Usage(memory_gib, compute, compute / 2, 86400.0, 1440))


@settings(max_examples=150, deadline=None)
@given(memory=st.floats(0.0, 90.0), compute=st.floats(0.0, 1.0), num_gpu=st.sampled_from([1, 2, 8]),
       headroom=st.floats(0.0, 0.5))
def test_a_recommendation_never_picks_a_gpu_that_cannot_hold_the_measured_peak(memory, compute, num_gpu, headroom):
    policy = SizingPolicy(memory_headroom=headroom, compute_headroom=headroom)
    rec = recommend_workload(workload(memory, compute, num_gpu), CATALOG, policy)
    need = memory * (1 + headroom)
    if rec.size is None:
        assert all(t.gpu_memory_gib < need or t.gpu_count < num_gpu for t in CATALOG.types)
        return
    t = CATALOG.get(rec.instance_type)
    assert t.gpu_memory_gib >= need and t.gpu_count >= rec.size.num_gpu
    assert rec.size.gpu_milli / 1000 * t.gpu_memory_gib >= need - 1e-6
    assert rec.size.gpu_milli / 1000 >= min(1.0, compute * (1 + headroom)) - 1e-9


def test_a_small_workload_gets_a_share_of_the_cheapest_gpu_that_holds_it():
    rec = recommend_workload(workload(memory_gib=4.0, compute=0.1), CATALOG)
    assert (rec.size.gpu_model, rec.size.gpu_milli) == ("t4", 290)  # 4 GiB x 1.15 / 16 GiB = 0.2875
    assert rec.patch()["metadata"]["annotations"] == {"gpufleet.io/gpu-milli": "290"}
    assert rec.usd_per_hour_after < 0.75


def test_a_workload_too_big_for_a_t4_moves_to_a_gpu_with_enough_memory():
    rec = recommend_workload(workload(memory_gib=30.0, compute=0.9), CATALOG)
    assert rec.size.gpu_model == "l40s"


def test_interruptible_workloads_are_priced_on_spot():
    rec = recommend_workload(workload(memory_gib=4.0, interruptible=True), CATALOG)
    assert rec.spot and rec.patch()["spec"]["nodeSelector"]["karpenter.sh/capacity-type"] == "spot"
    assert rec.usd_per_hour_after < recommend_workload(workload(memory_gib=4.0), CATALOG).usd_per_hour_after


def test_nothing_measured_keeps_the_request():
    w = Workload("w", 4000, 8192, 1, 500, source_gpu_gib=16.0)
    assert needs(w, SizingPolicy()) == (8.0, 0.5)
    assert recommend_workload(w, CATALOG).size.gpu_milli == 500


def test_no_gpu_holds_it_says_so():
    rec = recommend_workload(workload(memory_gib=200.0), CATALOG)
    assert rec.size is None and "no catalog GPU" in rec.reason


def test_fractional_gpu_types_are_never_recommended():
    assert all(t.gpu_count >= 1 for t in CATALOG.recommendable().types)


def test_a_bad_price_table_names_every_bad_cell(tmp_path):
    bad = tmp_path / "prices.csv"
    bad.write_text(PRICES.replace("0.75", "cheap").replace("8,32,1.0", "x,32,1.0"))
    with pytest.raises(CatalogError) as err:
        load_catalog(bad)
    assert ":2:" in str(err.value) and ":4:" in str(err.value)
    with pytest.raises(CatalogError, match="pass --prices"):
        load_catalog(tmp_path / "missing.csv")
