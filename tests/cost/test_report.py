"""gpufleet report: waste by kind and team from recorded series, top fixes, charts, bad input."""

from __future__ import annotations

import json

import pytest

from gpufleet.cli import main

PRICES = """cloud,instance_type,gpu_model,gpu_count,gpu_memory_per_gpu_mib,vcpu,memory_gib,ondemand_usd_per_hour,spot_usd_per_hour
aws,big.1,l40s,1,46068,8,64,2.0,
aws,small.1,t4,1,16384,8,32,0.5,
aws,cpu.1,l4,0,2861,2,8,0.1,
"""


@pytest.fixture
def files(tmp_path):
    duty = ["value,timestamp_anon,container_ip"]
    memory = ["timestamp_anon,value,container_ip"]
    for k in range(61):  # one hour at one sample a minute
        t = 1_700_000_000 + 60 * k
        duty += [f"{0.0},{t},idlepod00000", f"{50.0 if k % 2 else 0.0},{t},busypod00000"]
        memory += [f"{t},{2 * 2**30},idlepod00000", f"{t},{30 * 2**30},busypod00000"]
    (tmp_path / "duty.csv").write_text("\n".join(duty) + "\n")
    (tmp_path / "memory.csv").write_text("\n".join(memory) + "\n")
    (tmp_path / "prices.csv").write_text(PRICES)
    (tmp_path / "teams.csv").write_text("pod,team\nbusypod00000,vision\n")
    (tmp_path / "budgets.yaml").write_text("budgets:\n  - team: vision\n    monthlyUSD: 100\n")
    return tmp_path


def args(d, *extra):
    return ["report", "--utilisation", str(d / "duty.csv"), "--memory", str(d / "memory.csv"),
            "--prices", str(d / "prices.csv"), "--instance-type", "big.1", *extra]


def test_report_splits_cost_by_kind_and_team_and_ranks_the_fixes(files, capsys):
    assert main(args(files, "--teams", str(files / "teams.csv"), "--budgets", str(files / "budgets.yaml"),
                     "--json", "--out", str(files / "charts"))) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["total_usd"] == pytest.approx(4.0)  # two pods, one 2 $/h GPU each, one hour
    assert sum(report["by_kind"].values()) == pytest.approx(report["total_usd"])
    assert report["by_kind"]["allocated-idle"] == pytest.approx(2.0 + 1.0)  # idle pod, and the busy one half the time
    assert report["by_team"] == pytest.approx({"unassigned": 2.0, "vision": 2.0})
    assert report["top"][0]["workload"] == "gentd26/idlepod00000"  # 2 GiB fits a t4 share: the biggest saving
    assert "t4" in report["top"][0]["recommendation"]
    assert report["budgets"][0]["team"] == "vision" and report["budgets"][0]["spent_usd"] == pytest.approx(2.0)
    assert (files / "charts" / "waste_by_kind.png").stat().st_size > 0
    assert (files / "charts" / "budget.png").stat().st_size > 0


def test_report_prints_a_table(files, capsys):
    assert main(args(files)) == 0
    out = capsys.readouterr().out
    assert "allocated-idle" in out and "by team: unassigned" in out


@pytest.mark.parametrize("extra, message", [(("--instance-type", "cpu.1"), "not a GPU type"),
                                            (("--budgets", "/nonexistent.yaml"), "nonexistent")])
def test_report_bad_input_is_a_clear_error(files, capsys, extra, message):
    assert main(args(files, *extra)) == 2
    assert message in capsys.readouterr().err
