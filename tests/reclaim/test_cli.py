"""gpufleet reclaim backtest: one JSON object of the documented shape; clear errors and exit 2 on bad files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from gpufleet.cli import main

KEYS = {"actions", "premature_actions", "useful_gpu_hours", "reclaimed_gpu_hours"}


def write_trace(path: Path, pods: dict[str, list[float]], gz: bool = False) -> Path:
    lines = ["value,timestamp_anon,container_ip"]
    for pod, values in pods.items():
        lines += [f"{v},{1662858720.0 + 57.0 * i},{pod}" for i, v in enumerate(values)]
    text = "\n".join(lines) + "\n"
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["reclaim", "backtest", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_has_the_documented_shape_and_the_baseline_s_numbers(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    # pod a: idle 40 samples (38 min), busy; pod b: always busy
    trace = write_trace(tmp_path / "u.csv.gz", {"a": [0.0] * 40 + [60.0] * 3, "b": [70.0] * 43}, gz=True)
    code, out, err = run_cli(capsys, "--utilisation", str(trace), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert set(report) == {"pods", "idle_gpu_hours", "policy", "baseline"}
    assert report["pods"] == 2
    assert report["idle_gpu_hours"] == pytest.approx(40 * 57 / 3600, abs=1e-3)
    for name in ("policy", "baseline"):
        assert set(report[name]) >= KEYS
    base = report["baseline"]
    assert (base["actions"], base["premature_actions"]) == (1, 1)  # acts at 32*57 s, busy again at 40*57 s
    assert base["reclaimed_gpu_hours"] == pytest.approx(8 * 57 / 3600, abs=1e-3)
    assert base["useful_gpu_hours"] == 0
    assert report["policy"]["actions"] == 0  # no evidence that idle spans last: the forecast waits


def test_window_and_threshold_options_change_the_baseline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = write_trace(tmp_path / "u.csv", {"a": [0.5] * 15 + [60.0]})
    _, out, _ = run_cli(capsys, "--utilisation", str(trace), "--json", "--window", "10m")
    assert json.loads(out)["baseline"]["actions"] == 1
    _, out, _ = run_cli(capsys, "--utilisation", str(trace), "--json", "--window", "10m", "--threshold", "0.1")
    assert json.loads(out)["baseline"]["actions"] == 0


def test_the_memory_file_is_read_by_header_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    util = write_trace(tmp_path / "u.csv", {"a": [0.0] * 40})
    memory = tmp_path / "m.csv"
    memory.write_text("timestamp_anon,value,container_ip\n"
                      + "".join(f"{1662858720.0 + 57.0 * i},{2e10},a\n" for i in range(40)))
    code, out, err = run_cli(capsys, "--utilisation", str(util), "--memory", str(memory), "--json")
    assert code == 0, err
    assert json.loads(out)["baseline"]["actions"] == 1


def test_without_json_a_table_is_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = write_trace(tmp_path / "u.csv", {"a": [0.0] * 40 + [60.0]})
    code, out, _ = run_cli(capsys, "--utilisation", str(trace))
    assert code == 0
    assert "gpu-pruner (window 30m)" in out and "premature" in out


@pytest.mark.parametrize("content, expected", [
    ("value,timestamp_anon,container_ip\n0,1,a\nabc,2,a\n", ":3: value 'abc' is not a number"),
    ("value,timestamp_anon,container_ip\n0,1,a\n0,2\n", ":3: 2 fields, the header has 3"),
    ("value,timestamp_anon,container_ip\n0,soon,a\n", ":2: timestamp_anon 'soon' is not a number"),
    ("value,time,container_ip\n0,1,a\n", ":1: header 'value,time,container_ip' lacks column(s) timestamp_anon"),
    ("", ":1: empty file"),
    ("value,timestamp_anon,container_ip\n", "no samples after the header"),
    ("value,timestamp_anon,container_ip\n-3,1,a\n", ":2: value -3 is negative"),
    ("value,timestamp_anon,container_ip\n0,1,a\ninf,2,a\n", ":3: value 'inf' must be finite"),
])
def test_bad_files_exit_2_naming_file_line_and_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       content: str, expected: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    code, out, err = run_cli(capsys, "--utilisation", str(path), "--json")
    assert code == 2
    assert out == ""
    assert str(path) in err and expected in err


def test_a_missing_file_and_a_broken_gzip_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "--utilisation", str(tmp_path / "nope.csv"))
    assert code == 2 and "cannot read" in err
    broken = tmp_path / "u.csv.gz"
    broken.write_bytes(b"\x1f\x8b" + b"not gzip at all")
    code, _, err = run_cli(capsys, "--utilisation", str(broken))
    assert code == 2 and "cannot read as (gzipped) CSV" in err


def test_a_bad_duration_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = write_trace(tmp_path / "u.csv", {"a": [0.0] * 3})
    with pytest.raises(SystemExit) as info:
        main(["reclaim", "backtest", "--utilisation", str(trace), "--window", "half an hour"])
    assert info.value.code == 2
    assert "expected a duration like 30m" in capsys.readouterr().err


def test_missing_values_are_no_data_and_duplicates_keep_the_busiest(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    lines = ["value,timestamp_anon,container_ip"] + [f"0,{60.0 * i},a" for i in range(40)]
    lines[11] = "nan,600.0,a"  # sample 10 missing: the gap is 120 s, the run goes on
    lines += ["70,1200.0,a"]  # a duplicate of sample 20 that says busy: the run restarts after it
    path = tmp_path / "u.csv"
    path.write_text("\n".join(lines) + "\n")
    code, out, err = run_cli(capsys, "--utilisation", str(path), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["baseline"]["actions"] == 0  # idle from 1260 s to 2340 s only: 18 min
