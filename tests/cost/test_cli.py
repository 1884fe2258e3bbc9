"""gpufleet recommend: the JSON shape on a small trace, and clear errors for bad input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from gpufleet.cli import main

PRICES = Path(__file__).resolve().parents[2] / "gpufleet" / "core" / "data" / "gpu-instance-prices.csv"
KEYS = ["pods", "current_usd_per_hour", "recommended_usd_per_hour", "baseline_usd_per_hour", "shortfall_pods",
        "node_types"]


@pytest.fixture
def trace(tmp_path):
    pods = ["name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,"
            "scheduled_time"]
    for i in range(24):
        num, milli = (1, 1000) if i % 3 else (1, 400)
        if i == 5:
            num, milli = 0, 0
        pods.append(f"p{i},{4000 + 1000 * (i % 4)},8192,{num},{milli},{'T4' if i == 7 else ''},"
                    f"{'BE' if i % 2 else 'LS'},Running,{i * 10},{i * 10 + 100},{i * 10}")
    (tmp_path / "pods.csv").write_text("\n".join(pods) + "\n")
    (tmp_path / "nodes.csv").write_text("sn,cpu_milli,memory_mib,gpu,model\n"
                                        + "".join(f"n{i},96000,393216,8,G2\n" for i in range(3))
                                        + "t0,104000,524288,2,T4\n")
    duty = ["value,timestamp_anon,container_ip"]
    memory = ["timestamp_anon,value,container_ip"]
    for pod, (d, m) in {"aa": (20.0, 8e9), "bb": (60.0, 30e9), "cc": (0.0, 12e9)}.items():
        for k in range(100):
            duty.append(f"{d * (k % 2)},{1000 + 60 * k},{pod}")
            memory.append(f"{1000 + 60 * k},{m},{pod}")
    (tmp_path / "duty.csv.gz").write_bytes(gzip.compress(("\n".join(duty) + "\n").encode()))
    (tmp_path / "memory.csv").write_text("\n".join(memory) + "\n")
    return tmp_path


def args(d: Path, *extra: str) -> list[str]:
    return ["recommend", "--pods", str(d / "pods.csv"), "--nodes", str(d / "nodes.csv"), "--prices", str(PRICES),
            *extra]


def test_json_has_exactly_the_issues_keys_and_sane_numbers(trace, capsys):
    assert main(args(trace, "--utilisation", str(trace / "duty.csv.gz"), "--memory", str(trace / "memory.csv"),
                     "--seed", "3", "--json")) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == KEYS
    assert out["pods"] == 24 and out["shortfall_pods"] == 0
    assert 0 < out["recommended_usd_per_hour"] <= out["current_usd_per_hour"]
    assert out["baseline_usd_per_hour"] > 0
    assert all(isinstance(k, str) and n >= 1 for k, n in out["node_types"].items())


def test_the_same_seed_gives_the_same_answer_and_requests_only_works(trace, capsys):
    runs = []
    for extra in (("--seed", "1"), ("--seed", "1"), ()):
        profiles = ("--utilisation", str(trace / "duty.csv.gz"), "--memory", str(trace / "memory.csv")) if extra \
            else ()
        assert main(args(trace, *profiles, *extra, "--json")) == 0
        runs.append(json.loads(capsys.readouterr().out))
    assert runs[0] == runs[1]
    assert list(runs[2]) == KEYS


def test_the_table_output_shows_the_mapping(trace, capsys):
    assert main(args(trace)) == 0
    out = capsys.readouterr().out
    assert "recommended" in out and "8xG2 96cpu 384GiB -> " in out


@pytest.mark.parametrize("mutate, message", [
    (lambda d: ["--utilisation", str(d / "duty.csv.gz")], "go together"),
    (lambda d: ["--utilisation", str(d / "nope.csv"), "--memory", str(d / "memory.csv")], "reading profile series"),
    (lambda d: ["--cloud", "moon"], "no priced types"),
    (lambda d: ["--headroom", "3"], "--headroom"),
    (lambda d: ["--prices", str(d / "none.csv")], "error: reading price table"),
])
def test_bad_input_is_a_clear_error_not_a_crash(trace, capsys, mutate, message):
    assert main(args(trace, *mutate(trace))) == 2
    assert message in capsys.readouterr().err


def test_a_bad_pod_row_names_the_file_and_line(trace, capsys):
    (trace / "pods.csv").write_text((trace / "pods.csv").read_text().replace("p3,7000", "p3,lots"))
    assert main(args(trace)) == 2
    assert "pods.csv:5" in capsys.readouterr().err
