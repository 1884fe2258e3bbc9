"""gpufleet recommend: the JSON shape on a small trace, the Karpenter NodePool patch (text, JSON, files),
and clear errors for bad input."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
import yaml

from gpufleet.cli import main

PRICES = Path(__file__).resolve().parents[2] / "gpufleet" / "core" / "data" / "gpu-instance-prices.csv"
KEYS = ["pods", "current_usd_per_hour", "recommended_usd_per_hour", "baseline_usd_per_hour", "shortfall_pods",
        "node_types", "nodepools"]
# Karpenter NodePool v1 (karpenter.sh_nodepools.yaml): requirement key pattern, operators, capacity types.
LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                       r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")  # at most 63 characters
DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
OPERATORS = {"In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"}
CAPACITY_TYPES = {"spot", "on-demand", "reserved"}


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


def nodepool_problems(doc: dict) -> list[str]:
    """What Karpenter's NodePool v1 schema would refuse in this merge patch (the fields it sets)."""
    problems = []
    if doc.get("apiVersion") != "karpenter.sh/v1" or doc.get("kind") != "NodePool":
        problems.append(f"apiVersion/kind {doc.get('apiVersion')}/{doc.get('kind')}")
    if not DNS_NAME.match(str(doc.get("metadata", {}).get("name", ""))):
        problems.append("metadata.name is not a DNS subdomain")
    spec = doc.get("spec", {})
    if "weight" in spec and not (isinstance(spec["weight"], int) and 1 <= spec["weight"] <= 100):
        problems.append(f"spec.weight {spec['weight']!r} not in 1..100")
    requirements = spec.get("template", {}).get("spec", {}).get("requirements")
    if not isinstance(requirements, list) or not requirements:
        return problems + ["spec.template.spec.requirements is not a non-empty list"]
    for i, r in enumerate(requirements):
        where = f"requirements[{i}]"
        if set(r) - {"key", "operator", "values", "minValues"}:
            problems.append(f"{where}: unknown fields {sorted(set(r) - {'key', 'operator', 'values', 'minValues'})}")
        if not LABEL_KEY.match(str(r.get("key", ""))) or r.get("key") == "kubernetes.io/hostname":
            problems.append(f"{where}.key {r.get('key')!r}")
        if r.get("operator") not in OPERATORS:
            problems.append(f"{where}.operator {r.get('operator')!r}")
        values = r.get("values", [])
        if not isinstance(values, list) or not all(isinstance(v, str) and len(v) <= 63 and LABEL_VALUE.match(v)
                                                   for v in values):
            problems.append(f"{where}.values is not a list of label values")
        elif r.get("operator") == "In" and not values:
            problems.append(f"{where}: operator In needs values")
        if r.get("key") == "karpenter.sh/capacity-type" and not set(values) <= CAPACITY_TYPES:
            problems.append(f"{where}: capacity types {values}")
    return problems


def requirement(doc: dict, key: str) -> list[str]:
    [found] = [r for r in doc["spec"]["template"]["spec"]["requirements"] if r["key"] == key]
    assert found["operator"] == "In"
    return found["values"]


def mix_types(node_types: dict[str, int]) -> list[str]:
    return sorted({k.partition(":")[0] for k in node_types})


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
    [pool] = out["nodepools"]
    assert nodepool_problems(pool) == []
    assert requirement(pool, "node.kubernetes.io/instance-type") == mix_types(out["node_types"])


def test_the_same_seed_gives_the_same_answer_and_requests_only_works(trace, capsys):
    runs = []
    for extra in (("--seed", "1"), ("--seed", "1"), ()):
        profiles = ("--utilisation", str(trace / "duty.csv.gz"), "--memory", str(trace / "memory.csv")) if extra \
            else ()
        assert main(args(trace, *profiles, *extra, "--json")) == 0
        runs.append(json.loads(capsys.readouterr().out))
    assert runs[0] == runs[1]
    assert list(runs[2]) == KEYS


def test_the_table_output_shows_the_mapping_and_the_nodepool_patch(trace, capsys):
    assert main(args(trace, "--spot")) == 0
    out = capsys.readouterr().out
    assert "recommended" in out and "8xG2 96cpu 384GiB -> " in out
    before, _, patch = out.partition("\n# kubectl patch nodepool gpufleet-recommended --type merge --patch-file ")
    assert patch and "recommended mix: " in before, out
    pool = yaml.safe_load(patch.partition("\n")[2])
    assert nodepool_problems(pool) == []
    assert main(args(trace, "--spot", "--json")) == 0
    out = json.loads(capsys.readouterr().out)
    assert [pool] == out["nodepools"]
    assert requirement(pool, "karpenter.sh/capacity-type") == sorted(
        {"spot" if k.endswith(":spot") else "on-demand" for k in out["node_types"]})


def test_nodepool_out_writes_one_yaml_per_nodepool_with_the_mix(trace, capsys):
    folder = trace / "out" / "pools"
    assert main(args(trace, "--nodepool-out", str(folder), "--json")) == 0
    out = json.loads(capsys.readouterr().out)
    assert [p.name for p in folder.iterdir()] == ["gpufleet-recommended.yaml"]
    pool = yaml.safe_load((folder / "gpufleet-recommended.yaml").read_text())
    assert nodepool_problems(pool) == [] and pool == out["nodepools"][0]
    assert requirement(pool, "node.kubernetes.io/instance-type") == mix_types(out["node_types"])
    assert main(args(trace, "--nodepool-out", str(folder))) == 0
    assert f"--patch-file {folder / 'gpufleet-recommended.yaml'}" in capsys.readouterr().out


@pytest.mark.parametrize("bad", [
    {"apiVersion": "karpenter.sh/v1beta1"},
    {"metadata": {"name": "Not_A_Name"}},
    {"spec": {"weight": 101, "template": {"spec": {"requirements": [
        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["g6.xlarge"]}]}}}},
    {"spec": {"template": {"spec": {"requirements": [
        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": []}]}}}},
    {"spec": {"template": {"spec": {"requirements": [
        {"key": "karpenter.sh/capacity-type", "operator": "Within", "values": ["cheap"]}]}}}},
    {"spec": {"template": {"spec": {"requirements": [
        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["g6.xlarge:spot"]}]}}}},
])
def test_the_nodepool_shape_check_refuses_what_karpenter_refuses(bad):
    good = {"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": "gpufleet-recommended"},
            "spec": {"template": {"spec": {"requirements": [
                {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]}]}}}}
    assert nodepool_problems(good) == []
    assert nodepool_problems({**good, **bad}) != []


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


def test_a_nodepool_out_that_cannot_be_a_folder_is_a_clear_error(trace, capsys):
    assert main(args(trace, "--nodepool-out", str(trace / "pods.csv" / "pools"))) == 2
    err = capsys.readouterr().err
    assert f"error: --nodepool-out {trace / 'pods.csv' / 'pools'}: cannot create this folder" in err
    assert "Traceback" not in err


def test_a_bad_pod_row_names_the_file_and_line(trace, capsys):
    (trace / "pods.csv").write_text((trace / "pods.csv").read_text().replace("p3,7000", "p3,lots"))
    assert main(args(trace)) == 2
    assert "pods.csv:5" in capsys.readouterr().err
