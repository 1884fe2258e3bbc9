"""The policy's settings: the CRD-shaped mapping round-trips and every error is reported with its path."""

from __future__ import annotations

import pytest

from gpufleet.autoscaler.reclaim import ReclaimConfig, ReclaimConfigError


def test_defaults_match_the_issue() -> None:
    c = ReclaimConfig()
    assert (c.grace_s, c.notice_s, c.window.window_s, c.detection.threshold_percent) == (600, 900, 1800, 1.0)
    assert c.detection.max_gap_s == 300


def test_the_camel_case_mapping_round_trips() -> None:
    c = ReclaimConfig.from_dict({"graceSeconds": 300, "detection": {"thresholdPercent": 2.5},
                                 "forecast": {"confidence": 0.95}, "window": {"windowSeconds": 3600}})
    assert c.grace_s == 300 and c.detection.threshold_percent == 2.5 and c.forecast.confidence == 0.95
    assert ReclaimConfig.from_dict(c.to_dict()) == c


def test_every_error_is_reported_with_its_path() -> None:
    with pytest.raises(ReclaimConfigError) as info:
        ReclaimConfig.from_dict({"policy": "magic", "detection": {"thresholdPercent": -1, "colour": "red"},
                                 "forecast": {"confidence": 1.5}})
    text = str(info.value)
    for path in ("policy", "detection.thresholdPercent", "detection.colour", "forecast.confidence"):
        assert path in text
    assert len(info.value.errors) == 4


def test_a_group_that_is_not_a_mapping_is_an_error() -> None:
    with pytest.raises(ReclaimConfigError, match="forecast: must be a mapping"):
        ReclaimConfig.from_dict({"forecast": 3})
