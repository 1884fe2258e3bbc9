"""openb inputs (times, GPU model mapping, closest catalog type) and GenTD26 profiles."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from gpufleet.autoscaler.cost.catalog import load_catalog
from gpufleet.autoscaler.cost.openb import (
    allowed_models,
    closest_type,
    read_trace_pods,
    source_gpu_gib,
    usage_from_profile,
)
from gpufleet.autoscaler.cost.profiles import (
    GIB,
    ProfileError,
    assign,
    load_profiles,
    profile_from_series,
)
from gpufleet.scheduler.model import Node

PRICES = Path(__file__).resolve().parents[2] / "gpufleet" / "core" / "data" / "gpu-instance-prices.csv"


@pytest.mark.parametrize("spec, models, gib", [
    ((), (), 16.0), (("T4",), ("t4",), 16.0), (("V100M16", "V100M32"), ("v100",), 16.0),
    (("V100M32",), ("v100",), 32.0), (("A10", "T4"), ("a10g", "t4"), 16.0), (("G2",), (), 16.0),
    (("P100", "T4"), (), 16.0)])
def test_gpu_specs_map_to_catalog_models_and_source_memory(spec, models, gib):
    assert allowed_models(spec) == models
    assert source_gpu_gib(spec) == gib


@pytest.mark.parametrize("node, expected", [
    (Node("a", 96000, 393216, 8, "G2"), "g4dn.metal"),
    (Node("b", 96000, 393216, 4, "T4"), "g4dn.12xlarge"),
    (Node("c", 8000, 32768, 1, "V100M16"), "p3.2xlarge"),
])
def test_openb_nodes_map_to_the_closest_catalog_type(node, expected):
    catalog = load_catalog(PRICES).cloud("aws")
    assert closest_type(node, catalog).name == expected


def test_pod_lists_without_times_run_every_pod_at_once(tmp_path):
    path = tmp_path / "pods.csv"
    path.write_text("name,cpu_milli,memory_mib,num_gpu,gpu_milli\np0,1000,100,1,500\np1,2000,100,0,0\n")
    trace = read_trace_pods(path)
    assert not trace.timed and trace.arrivals.tolist() == [0.0, 0.0] and math.isinf(trace.departures[0])


def test_profile_percentiles_are_fractions_of_the_source_gpu():
    times = np.arange(100) * 60.0
    duty = np.where(np.arange(100) < 90, 0.0, 80.0)
    memory = np.full(100, 24 * GIB)
    p = profile_from_series("x", times, duty, memory, gpu_gib=48.0)
    assert (p.memory_p99, p.memory_max, p.samples, p.window_s) == (0.5, 0.5, 100, 99 * 60.0)
    assert p.duty_mean == pytest.approx(0.08) and p.duty_p99 == pytest.approx(0.8)
    usage = usage_from_profile(p, share=0.5, gpu_gib=16.0)
    assert usage.memory_p99_gib == pytest.approx(4.0) and usage.compute_p99 == pytest.approx(0.4)


def test_profiles_need_enough_samples_and_assignment_is_seeded(tmp_path):
    duty = ["value,timestamp_anon,container_ip"] + [f"1,{k},long" for k in range(80)] + ["1,0,short"]
    memory = ["timestamp_anon,value,container_ip"] + [f"{k},{GIB},long" for k in range(80)] + [f"0,{GIB},short"]
    (tmp_path / "d.csv").write_text("\n".join(duty) + "\n")
    (tmp_path / "m.csv").write_text("\n".join(memory) + "\n")
    profiles = load_profiles(tmp_path / "d.csv", tmp_path / "m.csv")
    assert [p.source for p in profiles] == ["long"]
    assert assign(5, profiles, seed=1) == assign(5, profiles, seed=1)
    with pytest.raises(ProfileError, match=">= 200 samples"):
        load_profiles(tmp_path / "d.csv", tmp_path / "m.csv", min_samples=200)
