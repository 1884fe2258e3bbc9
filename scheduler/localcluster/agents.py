"""Simulated GPU agents for the local cluster (``cluster up --monitoring``).

kwok nodes have neither GPUs nor a kubelet, so each of the first few nodes gets a real
``gpufleet agent --simulate SCRIPT`` process (simulated NVML, one GPU per device the node
advertises, a fixed mix of busy, bursty, idle and held-idle GPUs) that asks a fake kubelet which pods
hold which GPU. One ``gpufleet.autoscaler.kubelet.mirror`` process serves those kubelets, answering
from the pods the API server has bound to each node, so the agents' ``pod``/``namespace`` labels name
the cluster's real pods. Started as commands, so this package imports nothing from ``autoscaler``.
"""

from __future__ import annotations

import hashlib
import re
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from gpufleet.scheduler.localcluster import readiness
from gpufleet.scheduler.localcluster.nodes import NodeSpec
from gpufleet.scheduler.localcluster.processes import ProcessGroup, ProcessSpec

MIRROR_NAME = "gpufleet-kubelets"
AGENT_PREFIX = "gpufleet-agent-"
#: Nodes that get an agent when --agents is not given.
DEFAULT_AGENTS = 2
#: Per GPU index (cycled): what the simulated device does, independent of who holds it. Mostly idle,
#: as the fleets the reclaim controller is for are (so a short run sees idle pods wherever they land).
PRESET_CYCLE = ("busy", "held-idle", "bursty", "idle", "held-idle", "idle", "busy", "held-idle")
SAMPLE_INTERVAL_S = 1.0
POD_REFRESH_S = 2.0


@dataclass(frozen=True)
class AgentPorts:
    node: str
    grpc: int
    metrics: int


def agent_name(node: str) -> str:
    return f"{AGENT_PREFIX}{node}"


def socket_dir(state_dir: Path) -> Path:
    """A short folder for the unix sockets (107-byte path limit), one per state folder."""
    digest = hashlib.sha256(str(state_dir).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"gpufleet-kubelets-{digest}"


#: The first agent's last GPU works for this long, then falls off the bus (NVML errors, a lost GPU).
LOST_AFTER_S = 20


def gpu_script(spec: NodeSpec, one_lost: bool = False) -> dict:
    """The simulation script of ``spec``'s GPUs (NVML model name from the product label); with
    ``one_lost`` two unadvertised GPUs follow: one in MIG mode and one that falls off the bus after
    LOST_AFTER_S, so MIG and health panels have something to show whatever the placements."""
    model = spec.gpu_product.replace("-", " ", 1)
    size = re.search(r"(\d+)GB", spec.gpu_product)
    memory_mib = int(size.group(1)) * 1024 if size else 81920
    gpus = [{"model": model, "memory_mib": memory_mib, "preset": PRESET_CYCLE[i % len(PRESET_CYCLE)]}
            for i in range(spec.gpus)]
    if one_lost and gpus:
        # two more devices than the node advertises (so no pod is placed on them): one in MIG mode,
        # two halves with one in use, and one that falls off the bus
        half = memory_mib // 2
        gpus.append({"model": model, "memory_mib": memory_mib, "preset": "idle", "mig": [
            {"profile": f"3g.{half // 1024}gb", "memory_mib": half, "memory_used_mib": half // 4},
            {"profile": f"3g.{half // 1024}gb", "memory_mib": half, "memory_used_mib": 0}]})
        gpus.append({"model": model, "memory_mib": memory_mib, "loop": False,
                     "phases": [{"seconds": LOST_AFTER_S, "util": [40, 60], "memory_mib": memory_mib // 4},
                                {"lost": True}]})
    return {"version": 1, "name": f"gpufleet local cluster node {spec.name}", "seed": 0, "gpus": gpus}


def agent_nodes(specs: Sequence[NodeSpec], count: int) -> list[NodeSpec]:
    """The first ``count`` nodes with GPUs."""
    return [s for s in specs if s.gpus > 0][:max(0, count)]


def mirror_process(kubeconfig: Path, sockets: dict[str, Path], gpus: int) -> ProcessSpec:
    return ProcessSpec(MIRROR_NAME, [
        sys.executable, "-m", "gpufleet.autoscaler.kubelet.mirror", "--kubeconfig", str(kubeconfig),
        "--gpus", str(gpus), "--interval", f"{POD_REFRESH_S:g}",
        *(f"{node}={path}" for node, path in sockets.items()),
    ])


def agent_process(spec: NodeSpec, ports: AgentPorts, script: Path, socket: Path) -> ProcessSpec:
    return ProcessSpec(agent_name(spec.name), [
        sys.executable, "-m", "gpufleet.cli", "agent", "--simulate", str(script), "--node-name", spec.name,
        "--listen", f"127.0.0.1:{ports.grpc}", "--metrics-listen", f"127.0.0.1:{ports.metrics}",
        "--interval", f"{SAMPLE_INTERVAL_S:g}", "--pod-refresh", f"{POD_REFRESH_S:g}",
        "--pod-resources-socket", str(socket),
    ])


def plan(specs: Sequence[NodeSpec], state_dir: Path, kubeconfig: Path, ports: Sequence[tuple[int, int]],
         scripts: Sequence[dict] | None = None) -> tuple[list[ProcessSpec], list[AgentPorts]]:
    """Scripts written under ``state_dir/agents``; the processes to start (mirror first) and the
    ports of each agent. ``ports`` holds one (gRPC, metrics) pair per node of ``specs``; ``scripts``
    one simulation script per node (default :func:`gpu_script`, the first node with a lost GPU)."""
    folder = state_dir / "agents"
    folder.mkdir(parents=True, exist_ok=True)
    sockets_at = socket_dir(state_dir)
    sockets_at.mkdir(parents=True, exist_ok=True)
    sockets = {s.name: sockets_at / f"{i}.sock" for i, s in enumerate(specs)}
    for path in sockets.values():
        path.unlink(missing_ok=True)
    processes = [mirror_process(kubeconfig, sockets, max((s.gpus for s in specs), default=0))]
    agent_ports = []
    for i, (spec, (grpc_port, metrics_port)) in enumerate(zip(specs, ports, strict=True)):
        script = folder / f"{spec.name}.yaml"
        content = scripts[i] if scripts is not None else gpu_script(spec, one_lost=i == 0)
        script.write_text(yaml.safe_dump(content, sort_keys=False))
        agent = AgentPorts(spec.name, grpc_port, metrics_port)
        agent_ports.append(agent)
        processes.append(agent_process(spec, agent, script, sockets[spec.name]))
    return processes, agent_ports


def start(processes: ProcessGroup, specs: Sequence[NodeSpec], state_dir: Path, kubeconfig: Path,
          ports: Sequence[tuple[int, int]], wait_s: float,
          scripts: Sequence[dict] | None = None) -> list[AgentPorts]:
    """Start the fake kubelets and one agent per node of ``specs`` (see :func:`plan`), and wait
    until every agent's /healthz answers; returns the agents' ports."""
    to_start, agent_ports = plan(specs, state_dir, kubeconfig, ports, scripts)
    for spec in to_start:
        processes.start(spec)
    for agent in agent_ports:
        name = agent_name(agent.node)
        readiness.wait_until(f"{name} /healthz", readiness.http_ok(f"http://127.0.0.1:{agent.metrics}/healthz"),
                             wait_s, check_alive=lambda name=name: processes.check(name))
    return agent_ports
