"""``gpufleet demo --reclaim`` end to end, through the command: its own local cluster, simulated agents and
controller; the outcome the demo read back from the API server and the agents, the undo, the teardown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gpufleet import cli
from gpufleet.scheduler.localcluster import reclaimdemo

pytestmark = pytest.mark.cluster


def test_the_reclaim_demo_scales_only_the_opted_in_idle_workload_to_zero_and_undo_restores_it(
        cluster_binaries: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    results: list[reclaimdemo.DemoResult] = []
    real_run = reclaimdemo.run

    def keep_result(*args: Any, **kwargs: Any) -> reclaimdemo.DemoResult:
        results.append(real_run(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(reclaimdemo, "run", keep_result)  # the real demo; the test keeps what it returns
    code = cli.main(["demo", "--reclaim", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    (result,) = results
    out = result.outcomes
    assert code == 0, result.report

    notebook = out["notebook"]
    assert notebook.replicas == 0 and notebook.reclaimed_replicas == "2"
    assert notebook.pods == 0 and len(notebook.reasons("IdleGPUNotice")) == 2  # one notice per pod
    kinds = sorted(e["involvedObject"]["kind"] for e in notebook.reasons("IdleGPUReclaimed"))
    assert kinds == ["Deployment", "Pod", "Pod"]  # one action, on the workload, told to each pod too
    chat = out["chat"]
    assert chat.replicas == 1 and chat.idle_since and chat.reasons("IdleGPUNotice")
    assert not chat.reasons("IdleGPUReclaimed")
    for name in ("trainer", "sandbox"):
        assert out[name].replicas == 1 and not out[name].events, name
    # left alone for the right reasons: the trainer's GPU is busy, the sandbox's idle but not opted in
    assert min(out["trainer"].utilisation) > 50 and out["trainer"].mode == "scale-to-zero"
    assert max(out["sandbox"].utilisation) == 0 and out["sandbox"].mode == "off"

    assert "scaled back to 2 replicas" in result.undo_output and result.replicas_after_undo == 2
    assert not result.leftovers and not result.failures
    assert "] waiting for the controller: notice on" in printed  # progress lines carry the elapsed time
    assert (tmp_path / "reclaim-report.txt").read_text() == result.report
    assert "ml/Deployment/notebook: 2 -> 0 replicas" in result.report
