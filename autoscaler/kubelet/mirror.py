"""Fake kubelets that mirror the API server, for simulated agents on kwok nodes (which have no kubelet).

One real PodResources v1 gRPC socket per node (``FakeKubelet``); every ``--interval`` seconds the pods
bound to that node are listed and each one holding GPUs is reported the way the NVIDIA device plugin
with ``--device-id-strategy=index`` would: the GPU indexes of the extender's ``gpufleet.io/gpu-ids``
annotation, else the lowest indexes no other pod holds. A GPU share (``gpufleet.io/gpu-milli``) holds
one device, shared with other shares (time-slicing). Pods that finished are left out.

    python -m gpufleet.autoscaler.kubelet.mirror --kubeconfig K --gpus 8 NODE=SOCKET [NODE=SOCKET ...]
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Sequence
from typing import Any

from gpufleet.autoscaler.kubelet.fake import FakeKubelet
from gpufleet.autoscaler.kubelet.podresources import ContainerDevices
from gpufleet.core import names
from gpufleet.core.signals import stop_on_signals

log = logging.getLogger(__name__)

GPU_RESOURCE = names.GPU_RESOURCE
GPU_MILLI_RESOURCE = names.GPU_MILLI
GPU_IDS_ANNOTATION = names.GPU_IDS
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


def _gpus_requested(container: dict[str, Any]) -> tuple[int, bool]:
    """(whole GPUs, is a share) a container asks for."""
    resources = container.get("resources") or {}
    asked = {**(resources.get("requests") or {}), **(resources.get("limits") or {})}
    try:
        whole = int(str(asked.get(GPU_RESOURCE, "0")))
        share = int(str(asked.get(GPU_MILLI_RESOURCE, "0"))) > 0
    except ValueError:
        return 0, False
    return whole, share and whole <= 1


def _annotated_ids(pod: dict[str, Any], gpus: int) -> list[int] | None:
    raw = ((pod.get("metadata") or {}).get("annotations") or {}).get(GPU_IDS_ANNOTATION)
    if not raw:
        return None
    try:
        ids = [int(part) for part in raw.split(",") if part.strip()]
    except ValueError:
        return None
    return ids if ids and all(0 <= i < gpus for i in ids) else None


def node_containers(pods: Sequence[dict[str, Any]], gpus: int) -> list[ContainerDevices]:
    """What a kubelet with ``gpus`` devices would report for ``pods`` (API objects as dicts). Pure."""
    out: list[ContainerDevices] = []
    taken: set[int] = set()
    pending: list[tuple[dict[str, Any], dict[str, Any], int]] = []
    for pod in sorted(pods, key=lambda p: (p["metadata"].get("namespace", ""), p["metadata"]["name"])):
        if (pod.get("status") or {}).get("phase") in TERMINAL_PHASES:
            continue
        for container in (pod.get("spec") or {}).get("containers") or []:
            whole, share = _gpus_requested(container)
            count = 1 if share else whole
            if count <= 0:
                continue
            ids = _annotated_ids(pod, gpus)
            if ids is None:
                pending.append((pod, container, count))
                continue
            if not share:
                taken.update(ids)
            out.append(_devices(pod, container, ids[:count]))
    for pod, container, count in pending:  # no annotation: the lowest free indexes, as a device plugin would
        free = [i for i in range(gpus) if i not in taken][:count]
        if len(free) < count:
            log.warning("not enough free GPUs to mirror pod=%s/%s", pod["metadata"].get("namespace"),
                        pod["metadata"]["name"])
            continue
        taken.update(free)
        out.append(_devices(pod, container, free))
    return out


def _devices(pod: dict[str, Any], container: dict[str, Any], ids: Sequence[int]) -> ContainerDevices:
    meta = pod["metadata"]
    return ContainerDevices(meta.get("namespace", "default"), meta["name"], container["name"], GPU_RESOURCE,
                            tuple(str(i) for i in ids))


class Mirror:
    """Fake kubelets for ``nodes`` (name -> socket), refreshed from the API server."""

    def __init__(self, core_api: Any, nodes: dict[str, str], gpus: int) -> None:
        self._api = core_api
        self._gpus = gpus
        self.kubelets = {node: FakeKubelet(path) for node, path in nodes.items()}

    def start(self) -> None:
        for node, kubelet in self.kubelets.items():
            kubelet.set_allocatable([(GPU_RESOURCE, str(i)) for i in range(self._gpus)])
            kubelet.start()
            log.info("fake kubelet node=%s socket=%s", node, kubelet.socket_path)

    def refresh(self) -> None:
        client = self._api.api_client
        for node, kubelet in self.kubelets.items():
            try:
                listed = self._api.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}",
                                                               _request_timeout=10)
            except Exception as err:  # noqa: BLE001 - keep the last answer; the API server may be restarting
                log.warning("listing pods node=%s error=%s", node, err)
                continue
            pods = [client.sanitize_for_serialization(p) for p in listed.items]
            kubelet.set_containers(node_containers(pods, self._gpus))

    def refresh_until(self, stop: threading.Event, interval_s: float) -> None:
        """Refresh every ``interval_s`` seconds until ``stop`` is set (run it on a thread of its own)."""
        while not stop.is_set():
            self.refresh()
            stop.wait(interval_s)

    def stop(self) -> None:
        for kubelet in self.kubelets.values():
            kubelet.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--gpus", type=int, default=8, help="GPUs per node (device indexes 0..N-1)")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between pod lists (default 2)")
    parser.add_argument("nodes", nargs="+", metavar="NODE=SOCKET")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    nodes = dict(item.split("=", 1) for item in args.nodes if "=" in item)
    if len(nodes) != len(args.nodes):
        print("mirror: expected NODE=SOCKET arguments", file=sys.stderr)
        return 2
    from kubernetes import client, config

    mirror = Mirror(client.CoreV1Api(config.new_client_from_config(config_file=args.kubeconfig)), nodes, args.gpus)
    mirror.start()
    stop = stop_on_signals()
    try:
        mirror.refresh_until(stop, args.interval)
    finally:
        mirror.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
