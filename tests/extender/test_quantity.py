"""Kubernetes quantities parse exactly and round up to the model's integer units."""

from __future__ import annotations

import pytest

from gpufleet.core.quantity import QuantityError, to_count, to_mib, to_milli


@pytest.mark.parametrize(("value", "milli"), [
    ("500m", 500), ("1", 1000), ("2.5", 2500), ("0.1", 100), ("1u", 1), ("100n", 1), ("1e3", 1_000_000),
    ("1k", 1_000_000), (".5", 500), ("5.", 5000), (4, 4000), (0.25, 250), ("+1", 1000),
])
def test_cpu_quantities_become_millicores_rounded_up(value, milli):
    assert to_milli(value) == milli


@pytest.mark.parametrize(("value", "mib"), [
    ("1Gi", 1024), ("16Gi", 16384), ("1G", 954), ("512Mi", 512), ("1", 1), ("1163868216Ki", 1136591),
    ("129e6", 124), ("1.5Gi", 1536), ("0", 0),
])
def test_memory_quantities_become_mib_rounded_up(value, mib):
    assert to_mib(value) == mib


@pytest.mark.parametrize("value", [
    "", "abc", "1.2.3", "-1", "1Zi", "1e99999", "Gi", "1 Gi x", True, None, [], {}, float("nan"), "9" * 70, "1E30",
])
def test_malformed_or_hostile_quantities_are_rejected(value):
    with pytest.raises(QuantityError):
        to_count(value)


def test_gpu_counts_are_whole_numbers_rounded_up():
    assert to_count("8") == 8
    assert to_count("1500m") == 2


def test_capacities_round_down_so_a_node_never_looks_bigger_than_it_is():
    assert to_mib("1163868216Ki", up=False) == 1136590
    assert to_milli("95690m", up=False) == 95690
    assert to_count("1500m", up=False) == 1
