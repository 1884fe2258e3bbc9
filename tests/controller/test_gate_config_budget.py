"""Opt-in and never-touch rules, the YAML config, cron windows in time zones, and budgets."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from gpufleet.autoscaler.controller.budget import Entry, Ledger
from gpufleet.autoscaler.controller.config import BudgetConfig, ControllerConfig, ControllerConfigError
from gpufleet.autoscaler.controller.cron import CronError, CronSchedule, window_open
from gpufleet.autoscaler.controller.gate import Mode, Skip, mode_of, protection
from gpufleet.core import names

from .fakes import pod

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=ZoneInfo("UTC")).timestamp()


def ns(value: str | None) -> dict:
    return {"metadata": {"name": "ml", "annotations": {names.RECLAIM: value} if value else {}}}


@pytest.mark.parametrize(("pod_value", "ns_value", "expected"), [
    (None, None, Mode.OFF), (None, "evict", Mode.EVICT), ("notify", "evict", Mode.NOTIFY),
    ("off", "scale-to-zero", Mode.OFF), ("Scale-To-Zero", None, Mode.SCALE_TO_ZERO), ("yes-please", "evict", Mode.OFF),
])
def test_the_pod_opt_in_wins_over_the_namespace_and_unknown_values_mean_off(pod_value, ns_value, expected) -> None:
    p = pod("ml", "p", "u", annotations={names.RECLAIM: pod_value} if pod_value else {})
    assert mode_of(p, ns(ns_value)) is expected


@pytest.mark.parametrize(("namespace", "annotations", "expected"), [
    ("ml", {}, None),
    ("kube-system", {}, Skip.KUBE_SYSTEM),
    ("ml", {names.DO_NOT_DISRUPT: "true"}, Skip.DO_NOT_DISRUPT),
    ("ml", {names.KEEP_UNTIL: "2026-12-03T18:00:00Z"}, Skip.SNOOZE),
    ("ml", {names.KEEP_UNTIL: "2026-12-01T18:00:00Z"}, None),  # snooze over
    ("ml", {names.KEEP_UNTIL: "next tuesday"}, Skip.SNOOZE),  # unreadable holds
])
def test_never_touched_rules(namespace: str, annotations: dict, expected: Skip | None) -> None:
    assert protection(pod(namespace, "p", "u", annotations=annotations), NOW) is expected


def test_config_reads_camel_case_yaml_with_durations() -> None:
    config = ControllerConfig.from_dict({
        "reclaim": {"policy": "window", "graceSeconds": 5, "noticeSeconds": 10, "window": {"windowSeconds": 20}},
        "budget": {"maxActions": 3, "maxPercent": 50, "window": "30m"},
        "allowedWindows": [{"schedule": "0 22 * * 1-5", "duration": "8h", "timeZone": "Europe/Berlin"}],
        "passInterval": "1s",
    })
    assert config.reclaim.notice_s == 10 and config.budget.window_s == 1800 and config.pass_interval_s == 1
    assert config.allowed_windows[0].duration_s == 8 * 3600


def test_config_errors_are_all_reported_with_their_paths() -> None:
    with pytest.raises(ControllerConfigError) as err:
        ControllerConfig.from_dict({"budget": {"maxActionz": 1}, "reclaim": {"graceSeconds": -1},
                                    "allowedWindows": [{"schedule": "61 * * * *", "duration": "8x",
                                                        "timeZone": "Mars/Base"}]})
    text = "; ".join(err.value.errors)
    for path in ("budget.maxActionz", "reclaim.graceSeconds", "allowedWindows[0].schedule",
                 "allowedWindows[0].duration", "allowedWindows[0].timeZone"):
        assert path in text


@pytest.mark.parametrize(("local", "open_"), [
    ((2026, 12, 2, 22, 30), True),   # Wednesday night in Berlin
    ((2026, 12, 3, 5, 59), True),
    ((2026, 12, 3, 6, 0), False),    # 8 h after 22:00
    ((2026, 12, 2, 21, 59), False),
    ((2026, 12, 5, 23, 0), False),   # Saturday: no start on Saturday, Friday's window ended at 06:00
    ((2026, 7, 1, 23, 0), True),     # summer time: still 22:00 Berlin, not 22:00 UTC
])
def test_allowed_windows_follow_the_time_zone(local: tuple, open_: bool) -> None:
    zone = ZoneInfo("Europe/Berlin")
    schedules = [(CronSchedule.parse("0 22 * * 1-5"), 8 * 3600.0, zone)]
    assert window_open(schedules, datetime(*local, tzinfo=zone).timestamp()) is open_


def test_no_windows_means_always_open_and_bad_cron_is_refused() -> None:
    assert window_open([], NOW)
    with pytest.raises(CronError):
        CronSchedule.parse("* * *")


def test_budget_counts_actions_and_gpus_in_a_rolling_window() -> None:
    ledger = Ledger(BudgetConfig(max_actions=2, max_percent=25, window_s=600))
    assert ledger.allows(2, 8, NOW)[0]
    ledger.record(Entry(NOW, 2, "k1", "ml/Deployment/a"))
    ok, reason, _ = ledger.allows(1, 8, NOW + 1)  # 2 + 1 > 25% of 8
    assert (ok, reason) == (False, Skip.BUDGET)
    assert ledger.allows(1, 8, NOW + 601)[0]  # the first action left the window


def test_the_first_action_of_a_window_may_free_more_than_the_percentage() -> None:
    ledger = Ledger(BudgetConfig(max_actions=5, max_percent=10, window_s=600))
    assert ledger.allows(4, 8, NOW)[0]


def test_the_ledger_travels_as_json_and_keeps_keys_unique() -> None:
    ledger = Ledger(BudgetConfig())
    ledger.record(Entry(NOW, 1, "k1", "ml/Pod/p"))
    other = Ledger(BudgetConfig())
    other.merge_json(ledger.to_json())
    other.merge_json(ledger.to_json())
    other.merge_json("not json")
    assert [e.key for e in other.entries] == ["k1"]


def test_gpus_already_freed_in_the_window_still_count_as_opted_in() -> None:
    # 8 opted-in GPUs, 50%: after freeing 4 only 4 remain opted in, yet the budget is still 4 of 8
    ledger = Ledger(BudgetConfig(max_actions=10, max_percent=50, window_s=600))
    for i in range(4):
        assert ledger.allows(1, 8 - i, NOW)[0]
        ledger.record(Entry(NOW, 1, f"k{i}", "ml/Pod/p"))
    assert not ledger.allows(1, 4, NOW)[0]
