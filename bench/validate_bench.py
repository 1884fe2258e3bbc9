"""How long `gpufleet validate` takes for a config repository of N manifests (goal: < 10 s for 500).

Generates a repository of N documents (namespaces with team labels, placement and reclaim policies,
budgets, price catalogs, GPU Deployments and Jobs, ConfigMaps; about 5% invalid) and times, side by
side on the same documents:

- ``gpufleet validate DIR`` end to end (its own throwaway API server: start, CRDs, dry runs, rules);
- the API-server part alone on a warm server (dry runs only), and
- ``kubectl apply --dry-run=server --validate=strict -f DIR`` on that same warm server (the baseline
  a config repo's CI would otherwise run, without the cross-object rules).

Usage: python bench/validate_bench.py [--sizes 50,200,500,1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def manifests(count: int, seed: int = 7) -> list[dict]:
    """``count`` documents of a plausible config repo; every 20th one has a mistake."""
    rng = random.Random(seed)
    teams = [f"team-{i}" for i in range(max(1, count // 25))]
    docs: list[dict] = []
    for i, team in enumerate(teams):
        docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": f"{team}-ns", "labels": {"team": team, "cost-center": f"cc-{i}", "pool": f"p{i}"}}})
        docs.append({"apiVersion": "gpufleet.io/v1alpha1", "kind": "GpuBudget", "metadata": {"name": team},
                     "spec": {"team": team, "monthlyUsd": rng.randint(1000, 90000)}})
        docs.append({"apiVersion": "gpufleet.io/v1alpha1", "kind": "PlacementPolicy", "metadata": {"name": team},
                     "spec": {"namespaceSelector": {"matchLabels": {"pool": f"p{i}"}},
                              "policy": rng.choice(["fgd", "binpack", "cost"])}})
        docs.append({"apiVersion": "gpufleet.io/v1alpha1", "kind": "ReclaimPolicy", "metadata": {"name": team},
                     "spec": {"namespaceSelector": {"matchLabels": {"pool": f"p{i}"}}, "mode": "Notify",
                              "budgets": [{"maxPods": 2, "schedule": "0 9 * * 1-5", "duration": "8h"}]}})
    n = 0
    while len(docs) < count:
        team = rng.choice(teams)
        kind = rng.choice(["Deployment", "Job", "ConfigMap", "PriceCatalog"])
        name = f"obj-{n}"
        n += 1
        if kind == "ConfigMap":
            doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": f"{team}-ns"},
                   "data": {"k": str(n)}}
        elif kind == "PriceCatalog":
            doc = {"apiVersion": "gpufleet.io/v1alpha1", "kind": "PriceCatalog", "metadata": {"name": name},
                   "spec": {"instances": [{"instanceType": f"type-{j}", "onDemandPerHour": 10.0 + j,
                                           "spotPerHour": 4.0 + j} for j in range(5)]}}
        else:
            pod = {"containers": [{"name": "main", "image": "registry.example.com/app:1",
                                   "resources": {"limits": {"nvidia.com/gpu": rng.choice([1, 2, 4])}}}]}
            if kind == "Job":
                pod["restartPolicy"] = "Never"
                spec = {"template": {"spec": pod}}
                doc = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": f"{team}-ns"},
                       "spec": spec}
            else:
                spec = {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                        "template": {"metadata": {"labels": {"app": name}}, "spec": pod}}
                doc = {"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": name, "namespace": f"{team}-ns"}, "spec": spec}
        if len(docs) % 20 == 19:  # a mistake: an unknown field
            doc.setdefault("spec", {})["replica"] = 3
        docs.append(doc)
    return docs[:count]


def write_repo(directory: Path, docs: list[dict], per_file: int = 5) -> None:
    for start in range(0, len(docs), per_file):
        (directory / f"part-{start // per_file:04d}.yaml").write_text(
            yaml.safe_dump_all(docs[start:start + per_file], sort_keys=False))


def timed(argv: list[str]) -> tuple[float, int]:
    start = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return time.monotonic() - start, done.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,200,500,1000")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from gpufleet.scheduler.localcluster.binaries import default_bin_dir
    from gpufleet.validate.apiserver import DryRunServer
    from gpufleet.validate.checker import check

    gpufleet = str(Path(sys.executable).parent / "gpufleet")
    kubectl = str(default_bin_dir() / "kubectl")
    rows = []
    with tempfile.TemporaryDirectory() as tmp, DryRunServer() as warm:
        check([REPO / "deploy/gitops/example"], server=warm)  # CRDs installed, discovery warm
        for size in [int(s) for s in args.sizes.split(",")]:
            repo = Path(tmp) / f"repo-{size}"
            repo.mkdir()
            write_repo(repo, manifests(size))
            cold, warm_api, kubectl_s = [], [], []
            findings = 0
            for _ in range(args.repeats):
                seconds, code = timed([gpufleet, "validate", str(repo)])
                assert code in (0, 1), f"gpufleet validate exited {code}"
                cold.append(seconds)
                report = check([repo], server=warm)
                findings = len(report.findings)
                warm_api.append(report.seconds)
                seconds, _ = timed([kubectl, "--kubeconfig", str(warm.kubeconfig), "apply", "--dry-run=server",
                                    "--validate=strict", "-f", str(repo)])
                kubectl_s.append(seconds)
            rows.append((size, findings, statistics.median(cold), statistics.median(warm_api),
                         statistics.median(kubectl_s)))
    print(f"{'manifests':>9} {'findings':>8} {'validate (cold) s':>18} {'warm server s':>14} "
          f"{'kubectl dry-run s':>18} {'kubectl / warm':>15}")
    for size, findings, cold_s, warm_s, kubectl_s in rows:
        print(f"{size:>9} {findings:>8} {cold_s:>18.2f} {warm_s:>14.2f} {kubectl_s:>18.2f} {kubectl_s / warm_s:>15.1f}")
    print("medians of", args.repeats, "runs; goal: validate (cold) < 10 s at 500 manifests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
