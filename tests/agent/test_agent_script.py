"""The utilisation script format: presets, phases, looping, and validation that reports every error."""

from __future__ import annotations

import math

import pytest

from gpufleet.autoscaler.gpu.script import (
    BUILTIN_SCRIPT,
    PRESETS,
    ScriptError,
    builtin_scenario,
    load_scenario,
    parse_scenario,
)


def test_the_builtin_scenario_has_eight_gpus_some_busy_some_idle_and_one_lost_later() -> None:
    s = builtin_scenario()
    assert len(s.gpus) == 8
    at_10s = [g.phase_at(10.0) for g in s.gpus]
    assert at_10s[0].util_low >= 80 and at_10s[3].util_high == 0
    assert at_10s[4].util_high == 0 and at_10s[4].memory_mib > 0  # memory held while idle
    assert not s.gpus[7].phase_at(60).lost and s.gpus[7].phase_at(100).lost
    assert len(s.gpus[6].mig) == 2
    assert {p.pod for p in s.pods} >= {"trainer-0", "notebook-7f9c", "stuck-job"}


def test_the_builtin_script_text_is_the_documented_example_and_parses() -> None:
    assert "preset: busy" in BUILTIN_SCRIPT and "pods:" in BUILTIN_SCRIPT
    assert builtin_scenario().name == "builtin-8xA100"


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_expands_to_valid_phases(preset: str) -> None:
    s = parse_scenario({"gpus": [{"preset": preset, "memory_mib": 16384}]})
    assert s.gpus[0].phases
    assert all(p.memory_mib <= 16384 for p in s.gpus[0].phases)


def test_phases_loop_by_default_and_hold_the_last_phase_when_loop_is_false() -> None:
    phases = [{"seconds": 10, "util": 100}, {"seconds": 20, "util": 0}]
    looping = parse_scenario({"gpus": [{"phases": phases}]}).gpus[0]
    holding = parse_scenario({"gpus": [{"phases": phases, "loop": False}]}).gpus[0]
    assert looping.phase_at(5).util_low == 100
    assert looping.phase_at(15).util_low == 0
    assert looping.phase_at(35).util_low == 100  # 35 s = 5 s into the second round
    assert holding.phase_at(35).util_low == 0


def test_a_lost_phase_lasts_forever_even_when_looping() -> None:
    gpu = parse_scenario({"gpus": [{"phases": [{"seconds": 5, "util": 50}, {"lost": True}]}]}).gpus[0]
    assert math.isinf(gpu.phases[-1].seconds)
    assert gpu.phase_at(1e6).lost


def test_util_ranges_and_defaults_for_processes() -> None:
    gpu = parse_scenario({"gpus": [{"phases": [{"seconds": 5, "util": [20, 40], "memory_mib": 10}]}]}).gpus[0]
    assert (gpu.phases[0].util_low, gpu.phases[0].util_high, gpu.phases[0].processes) == (20, 40, 1)
    idle = parse_scenario({"gpus": [{"phases": [{"seconds": 5}]}]}).gpus[0]
    assert idle.phases[0].processes == 0


def test_validation_collects_every_error_with_its_path() -> None:
    with pytest.raises(ScriptError) as caught:
        parse_scenario({
            "version": 2,
            "gpus": [
                {"preset": "busy", "phases": []},
                {"phases": [{"seconds": -1, "util": 150, "memory_mib": 999999}]},
                {"phases": [{"lost": True}, {"seconds": 5}], "unsupported": ["warp-drive"]},
                {"mig": [{"profile": "1g.10gb", "memory_mib": 100, "memory_used_mib": 200}], "colour": "red"},
                {"sm_clock_idle_mhz": 500, "sm_clock_max_mhz": 400, "mem_clock_mhz": 0},
            ],
            "pods": [{"namespace": "ml", "pod": "p", "gpus": [9, "0/3"]}],
        })
    errors = caught.value.errors
    expected = [
        "version: must be 1",
        "gpus[0]: give either preset or phases",
        "gpus[1].phases[0].seconds: must be",
        "gpus[1].phases[0].util: must satisfy",
        "gpus[1].phases[0].memory_mib: 999999 exceeds",
        "gpus[2].phases[0].lost: a lost GPU stays lost",
        "gpus[2].unsupported: must be a list of",
        "gpus[3].mig[0].memory_used_mib: exceeds",
        "gpus[3].colour: unknown key",
        "gpus[4].sm_clock_max_mhz: must be >= sm_clock_idle_mhz",
        "gpus[4].mem_clock_mhz: must be >= 1",
    ]
    for fragment in expected:
        assert any(e.startswith(fragment) for e in errors), (fragment, errors)


def test_pod_device_references_are_checked_against_the_gpus() -> None:
    with pytest.raises(ScriptError) as caught:
        parse_scenario({"gpus": [{"preset": "idle"}], "pods": [{"namespace": "a", "pod": "b", "gpus": [1, "0/0"]}]})
    assert caught.value.errors == ["pods[0].gpus[0]: no GPU '1' (there are 1)",
                                   "pods[0].gpus[1]: GPU 0 has no MIG device '0'"]


@pytest.mark.parametrize("data", [None, [], "gpus", {"gpus": []}, {"gpus": "x"}])
def test_a_script_without_gpus_is_rejected(data: object) -> None:
    with pytest.raises(ScriptError):
        parse_scenario(data)


def test_load_scenario_reads_yaml_and_json_files_and_reports_unreadable_ones(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "a.yaml").write_text("gpus:\n  - preset: idle\n")
    (tmp_path / "b.json").write_text('{"gpus": [{"preset": "busy"}], "name": "json-one"}')
    (tmp_path / "bad.yaml").write_text("gpus: [\n")
    assert load_scenario(tmp_path / "a.yaml").name == "a"
    assert load_scenario(tmp_path / "b.json").name == "json-one"
    with pytest.raises(ScriptError, match="not YAML/JSON"):
        load_scenario(tmp_path / "bad.yaml")
    with pytest.raises(ScriptError, match="cannot read"):
        load_scenario(tmp_path / "missing.yaml")
