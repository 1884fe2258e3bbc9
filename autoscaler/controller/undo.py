"""``gpufleet reclaim undo NAMESPACE/KIND/NAME``: give a reclaimed workload back what it had.

Deployment / StatefulSet / ReplicaSet: the scale subresource back to the replica count kept in
``gpufleet.io/reclaimed-replicas``; Job: ``spec.suspend: false``. The reclaim annotations are removed in
the same step, so the controller sees a workload it never touched (its new pods start a fresh grace).
Running it twice is harmless: a workload without the annotations is left alone.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gpufleet.autoscaler.controller.owners import SCALABLE, object_path
from gpufleet.core import names
from gpufleet.core.kube.errors import KubeAPIError

_KINDS = {k.lower(): k for k in (*SCALABLE, "Job")} | {"deploy": "Deployment", "sts": "StatefulSet",
                                                        "rs": "ReplicaSet", "deployments": "Deployment",
                                                        "statefulsets": "StatefulSet", "replicasets": "ReplicaSet",
                                                        "jobs": "Job"}
_CLEARED = {names.RECLAIMED_REPLICAS: None, names.RECLAIMED_AT: None, names.RECLAIM_KEY: None,
            names.RECLAIMED_GPUS: None}


class UndoError(ValueError):
    """The target cannot be restored (bad name, not found, not reclaimed by gpufleet)."""


def parse_target(text: str) -> tuple[str, str, str]:
    parts = text.split("/")
    if len(parts) != 3 or not all(parts):
        raise UndoError(f"expected NAMESPACE/KIND/NAME (e.g. ml/Deployment/infer), got {text!r}")
    namespace, kind, name = parts
    canonical = _KINDS.get(kind.lower())
    if canonical is None:
        raise UndoError(f"kind {kind!r}: undo handles Deployment, StatefulSet, ReplicaSet and Job")
    return namespace, canonical, name


def undo(api: Any, target: str) -> str:
    """Restore ``target``; returns one line saying what was done. Raises UndoError or KubeAPIError."""
    namespace, kind, name = parse_target(target)
    path = object_path(kind, namespace, name)
    obj = api.get(path)
    if obj is None:
        raise UndoError(f"{namespace}/{kind}/{name} not found")
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    before = annotations.get(names.RECLAIMED_REPLICAS)
    if before is None:
        return f"{namespace}/{kind}/{name}: not reclaimed by gpufleet (no {names.RECLAIMED_REPLICAS}); nothing to do"
    uid = (obj.get("metadata") or {}).get("uid")
    if kind == "Job":
        api.patch(path, {"metadata": {"uid": uid, "annotations": _CLEARED}, "spec": {"suspend": False}})
        return f"{namespace}/Job/{name}: resumed (spec.suspend=false)"
    try:
        replicas = int(before)
    except ValueError:
        raise UndoError(f"{namespace}/{kind}/{name}: {names.RECLAIMED_REPLICAS}={before!r} is not a number") from None
    scale = api.get(f"{path}/scale")
    if scale is None:
        raise UndoError(f"{namespace}/{kind}/{name}: no scale subresource")
    current = int((scale.get("spec") or {}).get("replicas") or 0)
    if current == 0:
        api.put(f"{path}/scale", {"apiVersion": "autoscaling/v1", "kind": "Scale",
                                  "metadata": {"name": name, "namespace": namespace,
                                               "resourceVersion": (scale.get("metadata") or {}).get(
                                                   "resourceVersion")},
                                  "spec": {"replicas": replicas}})
    api.patch(path, {"metadata": {"uid": uid, "annotations": _CLEARED}})
    if current:
        return f"{namespace}/{kind}/{name}: already at {current} replicas; reclaim annotations removed"
    return f"{namespace}/{kind}/{name}: scaled back to {replicas} replicas"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="NAMESPACE/KIND/NAME", help="the reclaimed workload, e.g. ml/Deployment/infer")
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig file (default $KUBECONFIG or in-cluster)")


def run(args: argparse.Namespace) -> int:
    import os

    from gpufleet.core.kube.client import KubernetesAPI

    try:
        parse_target(args.target)
    except UndoError as err:
        print(f"gpufleet reclaim undo: {err}", file=sys.stderr)
        return 2
    try:
        api = KubernetesAPI.connect(args.kubeconfig or os.environ.get("KUBECONFIG") or None,
                                    user_agent="gpufleet-controller-undo")
    except KubeAPIError as err:
        print(f"gpufleet reclaim undo: {err}", file=sys.stderr)
        return 3
    try:
        print(undo(api, args.target))
    except UndoError as err:
        print(f"gpufleet reclaim undo: {err}", file=sys.stderr)
        return 2
    except KubeAPIError as err:
        print(f"gpufleet reclaim undo: {err}", file=sys.stderr)
        return 3
    finally:
        api.close()
    return 0
