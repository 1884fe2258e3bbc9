"""The simulator follows the paper's protocol end to end, on a slice of the real trace."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gpufleet.cli import main
from gpufleet.scheduler.model import GPU_MILLI
from gpufleet.scheduler.simulator import SimulationConfig, discretise, inflate, simulate
from gpufleet.scheduler.trace import read_nodes, read_pods
from gpufleet.scheduler.workload import WorkloadMix

from .conftest import DATA


@pytest.fixture(scope="module")
def small_trace():
    nodes = read_nodes(DATA / "openb_node_list_gpu_node.csv")[::20]  # 61 nodes
    pods = read_pods(DATA / "openb_pod_list_default.csv")[:500]
    return nodes, pods


def test_the_typical_pod_mix_of_the_default_trace_is_the_papers():
    mix = WorkloadMix.from_pods(read_pods(DATA / "openb_pod_list_default.csv"))
    assert len(mix) == 35  # 91 shapes, the top 35 cover 95.26%
    assert mix.shapes[0][:3] == (3152, 810, 1) and mix.probs[0] == pytest.approx(0.1352, abs=1e-3)
    assert sum(mix.probs) == pytest.approx(1.0)


def test_inflation_reaches_the_target_without_passing_it(small_trace):
    nodes, pods = small_trace
    capacity = sum(n.gpus for n in nodes) * GPU_MILLI
    out = inflate(pods, capacity, 1.3, np.random.default_rng(0))
    demand = sum(p.total_gpu_milli for p in out)
    assert 1.3 * capacity - 8 * GPU_MILLI < demand <= 1.3 * capacity
    assert out[: len(pods)] != pods  # shuffled first


def test_a_trace_larger_than_the_target_is_deflated(small_trace):
    _, pods = small_trace
    out = inflate(pods, 100 * GPU_MILLI, 1.0, np.random.default_rng(0))
    assert sum(p.total_gpu_milli for p in out) <= 100 * GPU_MILLI < sum(p.total_gpu_milli for p in pods)


def test_discretise_averages_events_per_rounded_percent():
    out = discretise(np.array([0.2, 0.4, 1.2, 3.0]), np.array([0.1, 0.3, 1.0, 2.0]))
    assert out["0"] == 0.2 and out["1"] == 1.0 and out["3"] == 2.0
    assert out["2"] == pytest.approx((1.0 + 2.0) / 2)  # no event rounds to 2: neighbours within 1


@pytest.mark.parametrize("policy", ["fgd", "bestfit", "random"])
def test_simulation_is_reproducible_and_allocation_never_exceeds_arrival(small_trace, policy):
    nodes, pods = small_trace
    a = simulate(nodes, pods, SimulationConfig(policy=policy, seed=7))
    b = simulate(nodes, pods, SimulationConfig(policy=policy, seed=7))
    assert a.alloc_at == b.alloc_at and a.scheduled == b.scheduled
    # a bucket holds events rounding to k (or within k +/- 1 when empty), so allow 1.5 points
    assert all(a.alloc_at[k] <= float(k) + 1.5 for k in a.alloc_at)
    values = [a.alloc_at[k] for k in sorted(a.alloc_at, key=int)]
    assert values == sorted(values)
    assert 0 < a.scheduled < a.pods and "130" in a.alloc_at


def test_fgd_allocates_more_than_random_on_the_slice(small_trace):
    nodes, pods = small_trace
    fgd = [simulate(nodes, pods, SimulationConfig("fgd", seed=s)).alloc_at["130"] for s in (1, 2)]
    rnd = [simulate(nodes, pods, SimulationConfig("random", seed=s)).alloc_at["130"] for s in (1, 2)]
    assert min(fgd) > max(rnd)


def test_cli_prints_one_json_object_per_seed(tmp_path, capsys, small_trace):
    nodes_csv = tmp_path / "nodes.csv"
    nodes_csv.write_text("sn,cpu_milli,memory_mib,gpu,model\n" + "".join(
        f"{n.name},{n.cpu_milli},{n.memory_mib},{n.gpus},{n.gpu_model}\n" for n in small_trace[0]))
    pods_csv = tmp_path / "pods.csv"
    lines = (DATA / "openb_pod_list_default.csv").read_text().splitlines()[:301]
    pods_csv.write_text("\n".join(lines) + "\n")
    code = main(["simulate", "--pods", str(pods_csv), "--nodes", str(nodes_csv), "--policy", "fgd",
                 "--seeds", "42-43", "--json"])
    runs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0 and [r["seed"] for r in runs] == [42, 43]
    for r in runs:
        assert r["policy"] == "fgd" and r["pods"] > 300 and r["seconds"] > 0
        assert set(r["alloc_at"]) <= {str(x) for x in range(131)} and "100" in r["alloc_at"]


def test_cli_reports_bad_trace_rows_and_exits_2(tmp_path, capsys):
    pods_csv = tmp_path / "pods.csv"
    pods_csv.write_text("name,cpu_milli,memory_mib,num_gpu,gpu_milli\np0,x,1,1,1000\n")
    code = main(["simulate", "--pods", str(pods_csv), "--nodes", str(DATA / "openb_node_list_gpu_node.csv"),
                 "--policy", "fgd"])
    assert code == 2 and "pods.csv:2: column cpu_milli must be an integer" in capsys.readouterr().err


def test_a_learnt_mix_starts_from_the_default_and_follows_the_pods_placed(small_trace, monkeypatch):
    """``learn_mix_every``: the policy is built on the extender's default mix, then re-built on the mix
    learnt from the pods placed so far (CPU-only ones included), never on the trace's own mix."""
    from gpufleet.scheduler import simulator
    from gpufleet.scheduler.workload import DEFAULT_MIX

    nodes, pods = small_trace
    mixes = []
    real = simulator.make_policy
    monkeypatch.setattr(simulator, "make_policy", lambda name, mix, **kw: mixes.append(mix) or real(name, mix=mix, **kw))
    result = simulate(nodes, pods, SimulationConfig("fgd-strand", seed=3, learn_mix_every=50))
    assert mixes[0] == DEFAULT_MIX and len(mixes) > 2
    shapes = {(p.cpu_milli, p.gpu_milli, p.num_gpu) for p in pods}
    for mix in mixes[1:]:
        assert {s[:3] for s in mix.shapes} <= shapes and any(s.num_gpu == 0 for s in mix.shapes)
    assert WorkloadMix.from_pods(pods) not in mixes and result.extra["learn_mix_every"] == 50
    with pytest.raises(ValueError, match="learn_mix_every must be >= 0"):
        simulate(nodes, pods, SimulationConfig("fgd", learn_mix_every=-1))


def test_cli_refuses_a_negative_learn_mix(capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--pods", "p.csv", "--nodes", "n.csv", "--policy", "fgd", "--learn-mix", "-5"])
    assert "expected a whole number >= 0, got '-5'" in capsys.readouterr().err
