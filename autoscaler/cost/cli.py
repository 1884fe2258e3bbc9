"""gpufleet recommend: the cheapest instance-type mix for a recorded workload, beside the current fleet and
Karpenter's rule.

Reads an openb pod list and node list (Alibaba cluster-trace-gpu-v2023) and the GPU price table. With
--utilisation and --memory (GenTD26 pod_gpu_duty_cycle / pod_gpu_memory_used_bytes CSVs, .gz or
plain), each pod gets the measured profile of a GenTD26 pod drawn with --seed; without them pods keep
their requests. Prices come from one cloud (--cloud, default aws); arm-only t4g is left out.

current = the given GPU nodes priced on demand, each mapped to the closest catalog type (mapping in
``gpufleet.autoscaler.cost.openb``; shown without --json); recommended = gpufleet's mix for the pods
alive at peak concurrent GPU demand; baseline = Karpenter's launch rule replayed on the requests
(peak $/h); shortfall = peak pods that fit nowhere on the recommended mix. The Karpenter NodePool patch
for the mix is printed after it (``nodepools`` in --json; one YAML file per NodePool with
--nodepool-out), to apply with ``kubectl patch nodepool NAME --type merge --patch-file FILE``. Design:
docs/designs/010-waste-and-rightsizing.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import yaml

from gpufleet.autoscaler.cost.catalog import CatalogError, load_catalog
from gpufleet.autoscaler.cost.openb import current_fleet, read_trace_pods, workloads
from gpufleet.autoscaler.cost.profiles import ProfileError, assign, load_profiles
from gpufleet.autoscaler.cost.recommend import FleetOptions, FleetRecommendation, recommend_fleet
from gpufleet.autoscaler.cost.sizing import SizingPolicy, exclude_models
from gpufleet.scheduler.trace import TraceError

log = logging.getLogger(__name__)
EXCLUDED_MODELS = ("t4g",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pods", required=True, help="openb pod list CSV")
    parser.add_argument("--nodes", required=True, help="openb node list CSV (the current fleet)")
    parser.add_argument("--prices", required=True, help="GPU instance price table CSV (gpu-instance-prices.csv)")
    parser.add_argument("--utilisation", help="GenTD26 pod_gpu_duty_cycle_anon.csv[.gz] (needs --memory)")
    parser.add_argument("--memory", help="GenTD26 pod_gpu_memory_used_bytes_anon.csv[.gz] (needs --utilisation)")
    parser.add_argument("--seed", type=int, default=0, help="which measured profile each pod gets (default 0)")
    parser.add_argument("--cloud", default="aws", help="price instance types of this cloud only (default aws)")
    parser.add_argument("--spot", action="store_true",
                        help="treat qos BE pods as gpufleet.io/interruptible and price them on spot")
    parser.add_argument("--headroom", type=float, default=0.15,
                        help="fraction added to the p99 GPU memory and activity (default 0.15)")
    parser.add_argument("--nodepool-out", metavar="DIR", type=Path,
                        help="also write each Karpenter NodePool patch to DIR/NAME.yaml (DIR is created)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


def run(args: argparse.Namespace) -> int:
    try:
        if args.nodepool_out:
            make_folder(args.nodepool_out)
        result, current, mapping = compute(args)
        files = write_nodepools(result.nodepools, args.nodepool_out) if args.nodepool_out else {}
    except (TraceError, CatalogError, ProfileError, ValueError) as err:
        print(f"gpufleet recommend: error: {err}", file=sys.stderr)
        return 2
    out = summary(result, current)
    if args.json:
        print(json.dumps(out, sort_keys=False))
        return 0
    print(f"pods {out['pods']} (peak {result.peak_pods} at once)")
    print(f"{'fleet':<14}{'$/h':>12}")
    for key in ("current", "recommended", "baseline"):
        print(f"{key:<14}{out[key + '_usd_per_hour']:>12.2f}")
    print(f"baseline mean over time: {result.baseline_mean_usd_per_hour:.2f} $/h")
    print(f"shortfall: {out['shortfall_pods']} pods")
    print("recommended mix: " + ", ".join(f"{n} x{c}" for n, c in out["node_types"].items()))
    print("current nodes mapped to: " + "; ".join(f"{k} -> {v}" for k, v in mapping.items()))
    if not result.nodepools:
        print("no NodePool patch: the recommended mix has no nodes")
    for doc in result.nodepools:
        name = doc["metadata"]["name"]
        print(f"\n# kubectl patch nodepool {name} --type merge --patch-file {files.get(name, name + '.yaml')}"
              "  (replaces the pool's requirements and weight)")
        print(nodepool_yaml(doc), end="")
    return 0


def nodepool_yaml(doc: dict) -> str:
    """A NodePool patch as YAML, in the order Kubernetes manifests are written."""
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def make_folder(folder: Path) -> None:
    """Create --nodepool-out (and its parents) before the work, so a bad path fails at once."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"--nodepool-out {folder}: cannot create this folder ({err.strerror or err})") from err


def write_nodepools(docs: tuple[dict, ...], folder: Path) -> dict[str, Path]:
    """Write each NodePool patch to ``folder/NAME.yaml``; the files by NodePool name."""
    files = {}
    for doc in docs:
        path = folder / f"{doc['metadata']['name']}.yaml"
        try:
            path.write_text(nodepool_yaml(doc))
        except OSError as err:
            raise ValueError(f"--nodepool-out {folder}: cannot write {path.name} ({err.strerror or err})") from err
        files[doc["metadata"]["name"]] = path
    return files


def compute(args: argparse.Namespace) -> tuple[FleetRecommendation, float, dict[str, str]]:
    """Load the inputs and recommend; errors name the file and what to pass."""
    if bool(args.utilisation) != bool(args.memory):
        raise ValueError("--utilisation and --memory go together: pass both GenTD26 files, or neither")
    if not 0 <= args.headroom <= 1:
        raise ValueError(f"--headroom must be within 0..1, got {args.headroom}")
    catalog = exclude_models(load_catalog(args.prices).cloud(args.cloud), EXCLUDED_MODELS)
    if not len(catalog):
        raise ValueError(f"--cloud {args.cloud}: the price table has no priced types for this cloud")
    trace = read_trace_pods(args.pods)
    profiles = None
    if args.utilisation:
        profiles = assign(len(trace.pods), load_profiles(args.utilisation, args.memory), args.seed)
    pods = workloads(trace, profiles, spot=args.spot)
    current, _, mapping = current_fleet(args.nodes, catalog)
    sizing = SizingPolicy(memory_headroom=args.headroom, compute_headroom=args.headroom)
    result = recommend_fleet(pods, trace.arrivals, trace.departures, catalog.recommendable(),
                             FleetOptions(sizing=sizing))
    return result, current, mapping


def summary(result: FleetRecommendation, current: float) -> dict:
    """The JSON the issue defines, in its order, then the Karpenter NodePool patches (``nodepools``)."""
    return {"pods": result.pods, "current_usd_per_hour": round(current, 4),
            "recommended_usd_per_hour": round(result.recommended_usd_per_hour, 4),
            "baseline_usd_per_hour": round(result.baseline_usd_per_hour, 4),
            "shortfall_pods": len(result.shortfall), "node_types": result.node_types,
            "nodepools": list(result.nodepools)}
