"""The waste ledger live in the controller, end to end on the local control plane: real API server and
kwok nodes, real gRPC agents on simulated GPUs playing GenTD26 pods' series (one busy, one idle,
picked by rule from the file), fake kubelets mirroring the API server, and a `gpufleet controller`
process whose /metrics is read twice.

Pods with a team label, with only a namespace team label, with a cost-center label, and with none
(-> ``unassigned``); two 500-milli shares on one GPU; a spot node; and a node whose pods hold GPUs
but which has no agent (no data is not waste: it must not appear).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gpufleet.core import names
from gpufleet.core.kube.client import KubernetesAPI
from tests.cluster.test_reclaim_controller import wait_for

pytestmark = pytest.mark.cluster

ON_DEMAND, SPOT, SILENT = "gpu-node-00005", "gpu-node-00007", "gpu-node-00006"
TEAM_NS, PLAIN_NS, LEASE_NS = "cost-vision", "cost-plain", "cost-system"
GENTD26 = Path(__file__).resolve().parents[2] / "bench" / "data" / "alibaba-gentd26"
DUTY = GENTD26 / "pod_gpu_duty_cycle_anon.csv.gz"
MEMORY = GENTD26 / "pod_gpu_memory_used_bytes_anon.csv.gz"
SPEED = 57  # one GenTD26 sample a second
CONFIG = {
    "budget": {"maxActions": 0},
    "samples": {"bucket": 1, "history": "10m"},
    "agents": {"staleAfter": 3, "replay": 0, "backoff": 0.2, "backoffMax": 1},
    "lease": {"name": "gpufleet-controller-costs", "duration": 4, "renewDeadline": 3, "retry": 1},
    "passInterval": 1,
    "budgets": [{"team": "nlp", "monthlyUSD": 1000}, {"team": "unassigned", "monthlyUSD": 0.01}],
}
SCRAPE_WINDOW_S = 12.0


def gentd26_pods(samples: int = 60) -> tuple[int, int]:
    """(busy, idle) pod indexes of the GenTD26 file: highest mean duty cycle over the first ``samples``
    samples, and one never above 0 over them (what the test plays, at SPEED)."""
    from gpufleet.autoscaler.gpu.tracephases import _column

    column = _column(str(DUTY))
    stats = []
    for i, key in enumerate(sorted(column)):
        values = [v for _, v in column[key][:samples]]
        if len(values) == samples:
            stats.append((sum(values) / samples, max(values), i))
    busy = max(stats)[2]
    idle = next(i for mean, peak, i in sorted(stats) if peak == 0)
    return busy, idle


def trace(pod: int) -> dict[str, Any]:
    return {"trace": {"utilisation": str(DUTY), "memory": str(MEMORY), "pod": pod, "speed": SPEED}}


def pod(name: str, node: str, gpu: int, labels: dict[str, str] | None = None, milli: int = 0) -> dict[str, Any]:
    limits = {names.GPU_MILLI: str(milli)} if milli else {names.GPU_RESOURCE: "1"}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": labels or {}, "annotations": {names.GPU_IDS: str(gpu)}},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0, "tolerations": [{"operator": "Exists"}],
                     "containers": [{"name": "main", "image": "busybox", "resources": {"limits": limits}}]}}


#: (namespace, pod, node, GPU, labels, milli) and the team each must be charged to.
PODS = [
    (PLAIN_NS, "trainer", ON_DEMAND, 0, {"team": "nlp"}, 0, "nlp"),
    (PLAIN_NS, "notebook", ON_DEMAND, 1, {}, 0, "unassigned"),
    (TEAM_NS, "inherits", ON_DEMAND, 2, {}, 0, "vision"),
    (TEAM_NS, "share-0", ON_DEMAND, 3, {"cost-center": "cc-7"}, 500, "cc-7"),
    (TEAM_NS, "share-1", ON_DEMAND, 3, {}, 500, "vision"),
    (PLAIN_NS, "spot-trainer", SPOT, 0, {"team": "nlp"}, 0, "nlp"),
    (PLAIN_NS, "dark", SILENT, 0, {"team": "nlp"}, 0, "nlp"),
]


def scripts(busy: int, idle: int) -> dict[str, list[dict[str, Any]]]:
    """GPU index -> what it does: node 5 plays the busy and the idle pod, a busy and a held-idle GPU."""
    return {ON_DEMAND: [trace(busy), trace(idle), {"preset": "busy"}, {"preset": "held-idle"}]
            + [{"preset": "idle"}] * 4,
            SPOT: [trace(busy)] + [{"preset": "idle"}] * 7}


@dataclass
class Scrapes:
    before: dict[tuple[str, tuple[tuple[str, str], ...]], float]
    after: dict[tuple[str, tuple[tuple[str, str], ...]], float]
    nodes: dict[str, dict[str, Any]]

    def series(self, name: str, when: str = "after") -> dict[tuple[tuple[str, str], ...], float]:
        return {labels: v for (n, labels), v in getattr(self, when).items() if n == name}

    def delta(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        before = self.series(name, "before")
        return {labels: v - before.get(labels, 0.0) for labels, v in self.series(name).items()}


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def by(labels: tuple[tuple[str, str], ...], key: str) -> str:
    return dict(labels).get(key, "")


def _start_agents(tmp: Path, sockets: dict[str, str], plays: dict[str, list[dict[str, Any]]]) -> list[Any]:
    from gpufleet.autoscaler.agent.app import Agent
    from gpufleet.autoscaler.agent.config import AgentConfig
    from gpufleet.autoscaler.agent.pods import KubeletPodSource
    from gpufleet.autoscaler.gpu.backend import open_backend
    from gpufleet.autoscaler.kubelet.podresources import PodResourcesClient
    from gpufleet.core.clock import SystemClock

    agents = []
    for node, gpus in plays.items():
        script = tmp / f"{node}.yaml"
        script.write_text(yaml.safe_dump({"version": 1, "gpus": gpus}))
        backend = open_backend(str(script), clock=SystemClock(), node_name=node)
        config = AgentConfig(node_name=node, listen="127.0.0.1:0", metrics_listen="127.0.0.1:0", interval_s=0.5,
                             pod_resources_socket=sockets[node], pod_refresh_s=1.0, history=60, max_streams=4)
        agent = Agent(config, backend, KubeletPodSource(PodResourcesClient(sockets[node])))
        agent.start()
        agents.append(agent)
    return agents


def _metrics(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()




@pytest.fixture(scope="module")
def scrapes(local_cluster: Any) -> Iterator[Scrapes]:
    from kubernetes import client
    from kubernetes import config as kconfig

    from gpufleet.autoscaler.kubelet.mirror import Mirror

    api = KubernetesAPI.connect(local_cluster.kubeconfig)
    tmp = Path(tempfile.mkdtemp(prefix="gpufleet-costs-"))
    sockets = {node: str(tmp / f"{i}.sock") for i, node in enumerate((ON_DEMAND, SPOT, SILENT))}
    core = client.CoreV1Api(kconfig.new_client_from_config(config_file=local_cluster.kubeconfig))
    mirror = Mirror(core, sockets, 8)
    mirror.start()
    stop = threading.Event()
    threading.Thread(target=mirror.refresh_until, args=(stop, 1.0), daemon=True).start()
    own = {TEAM_NS, PLAIN_NS, LEASE_NS}

    def foreign_pods() -> list[str]:  # other modules' pods on these nodes would be charged here too
        return [f"{p['metadata']['namespace']}/{p['metadata']['name']} on {node}" for node in sockets
                for p in api.get(f"/api/v1/pods?fieldSelector=spec.nodeName%3D{node}")["items"]
                if p["metadata"]["namespace"] not in own]

    wait_for("no other test's pods on this test's nodes", lambda: not foreign_pods(), 60)
    api.post("/api/v1/namespaces", {"metadata": {"name": TEAM_NS, "labels": {"team": "vision"}}})
    for ns in (PLAIN_NS, LEASE_NS):
        api.post("/api/v1/namespaces", {"metadata": {"name": ns}})
    for ns, name, node, gpu, labels, milli, _ in PODS:
        api.post(f"/api/v1/namespaces/{ns}/pods", {**pod(name, node, gpu, labels, milli)})
    agents = _start_agents(tmp, sockets, scripts(*gentd26_pods()))
    cfg = tmp / "controller.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    ready = tmp / "ready.json"
    endpoints = ",".join(f"127.0.0.1:{a.grpc_port}" for a in agents)
    with open(tmp / "controller.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gpufleet.cli", "-v", "controller", "--kubeconfig", local_cluster.kubeconfig,
             "--config", str(cfg), "--agents", endpoints, "--identity", "costs", "--lease-namespace", LEASE_NS,
             "--metrics-listen", "127.0.0.1:0", "--ready-file", str(ready)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        port = wait_for("the controller ready", lambda: ready.exists() and json.loads(ready.read_text()), 30)["metrics_port"]
        expected = {name for ns, name, node, *_ in PODS if node != SILENT}

        def all_pods_charged() -> bool:
            seen = parse(_metrics(port))
            charged = {by(labels, "pod") for (n, labels), v in seen.items()
                       if n == "gpufleet_cost_pod_gpu_seconds_total" and v > 0}
            return expected <= charged

        wait_for("every agent-observed pod charged", all_pods_charged, 30)
        before = parse(_metrics(port))
        time.sleep(SCRAPE_WINDOW_S)
        after = parse(_metrics(port))
        nodes = {n: api.get(f"/api/v1/nodes/{n}") for n in (ON_DEMAND, SPOT, SILENT)}
        yield Scrapes(before, after, nodes)
    finally:
        stop.set()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        for agent in agents:
            agent.stop(grace_s=0)
        mirror.stop()
        for ns in (TEAM_NS, PLAIN_NS, LEASE_NS):
            api.delete(f"/api/v1/namespaces/{ns}")
        api.close()
        shutil.rmtree(tmp, ignore_errors=True)


def test_every_pod_is_charged_to_its_team_with_its_namespace_and_kinds(scrapes: Scrapes) -> None:
    usd = scrapes.series("gpufleet_cost_pod_gpu_usd_total")
    got = {(by(k, "namespace"), by(k, "pod")): by(k, "team") for k in usd}
    want = {(ns, name): team for ns, name, node, _, _, _, team in PODS if node != SILENT}
    assert got == want
    assert {by(k, "kind") for k in usd} == {"allocated-idle", "allocated-active"}
    teams = {by(k, "team") for k in scrapes.series("gpufleet_cost_team_gpu_usd_total")}
    assert {"nlp", "vision", "cc-7", "unassigned"} <= teams


def test_the_busy_series_is_active_and_the_idle_series_idle(scrapes: Scrapes) -> None:
    usd = scrapes.delta("gpufleet_cost_pod_gpu_usd_total")
    kinds: dict[str, dict[str, float]] = defaultdict(dict)
    for labels, value in usd.items():
        kinds[by(labels, "pod")][by(labels, "kind")] = value
    assert kinds["notebook"]["allocated-active"] == 0 and kinds["notebook"]["allocated-idle"] > 0
    assert kinds["trainer"]["allocated-active"] > 0
    assert kinds["inherits"]["allocated-active"] > 0 and kinds["inherits"]["allocated-idle"] == 0


def test_a_node_without_an_agent_is_not_charged(scrapes: Scrapes) -> None:
    for name in ("gpufleet_cost_node_gpu_usd_total", "gpufleet_cost_node_observed_seconds_total",
                 "node_gpu_hourly_cost"):
        assert SILENT not in {by(k, "node") for k in scrapes.series(name)}, name
    assert "dark" not in {by(k, "pod") for k in scrapes.series("gpufleet_cost_pod_gpu_usd_total")}


def test_the_kinds_add_up_to_each_nodes_gpu_cost_over_the_scrape_window(scrapes: Scrapes) -> None:
    from gpufleet.core.names import capacity_type
    from gpufleet.core.pricing import PriceCatalog

    price = scrapes.series("node_gpu_hourly_cost")
    count = scrapes.series("node_gpu_count")
    observed = scrapes.delta("gpufleet_cost_node_observed_seconds_total")
    node_usd = scrapes.delta("gpufleet_cost_node_gpu_usd_total")
    pod_usd = scrapes.delta("gpufleet_cost_pod_gpu_usd_total")
    pods_on = {name: node for _, name, node, *_ in PODS}
    for node in (ON_DEMAND, SPOT):
        labels = scrapes.nodes[node]["metadata"]["labels"]
        catalog = PriceCatalog.default().node_price(labels[names.INSTANCE_TYPE_LABEL],
                                                     capacity_type(labels) == names.SPOT).per_hour
        per_gpu = next(v for k, v in price.items() if by(k, "node") == node)
        gpus = next(v for k, v in count.items() if by(k, "node") == node)
        assert gpus == 8 and per_gpu == pytest.approx(catalog / 8, rel=1e-9)
        seconds = next(v for k, v in observed.items() if by(k, "node") == node)
        assert seconds > 0
        expected = per_gpu * gpus * seconds / 3600.0
        kinds = {by(k, "kind"): v for k, v in node_usd.items() if by(k, "node") == node}
        assert set(kinds) == {"unallocated", "allocated-idle", "allocated-active"}
        print(f"{node}: kinds {sum(kinds.values()):.6f} USD, price x GPUs x {seconds:.1f} s = {expected:.6f} USD, "
              f"relative difference {abs(sum(kinds.values()) / expected - 1):.2e}")
        assert sum(kinds.values()) == pytest.approx(expected, rel=0.005), (node, kinds, expected)
        held = sum(v for k, v in pod_usd.items() if pods_on[by(k, "pod")] == node)
        assert held + kinds["unallocated"] == pytest.approx(expected, rel=0.005)
        assert held == pytest.approx(kinds["allocated-idle"] + kinds["allocated-active"], rel=0.005)
    # on the on-demand node 4 GPUs are held (two 500-milli shares make one): half its cost is unallocated
    kinds = {by(k, "kind"): v for k, v in node_usd.items() if by(k, "node") == ON_DEMAND}
    assert kinds["unallocated"] == pytest.approx(sum(kinds.values()) / 2, rel=0.005)
    fleet = scrapes.delta("gpufleet_cost_gpu_usd_total")
    assert sum(fleet.values()) == pytest.approx(sum(node_usd.values()), rel=1e-9)


def test_opencost_named_series_carry_opencosts_labels(scrapes: Scrapes) -> None:
    alloc = scrapes.series("container_gpu_allocation")
    shares = {by(k, "pod"): v for k, v in alloc.items() if by(k, "pod").startswith("share-")}
    assert shares == {"share-0": 0.5, "share-1": 0.5}
    assert all({"namespace", "pod", "container", "instance", "node"} <= set(dict(k)) for k in alloc)
    spot = {by(k, "node"): v for k, v in scrapes.series("kubecost_node_is_spot").items()}
    assert spot == {ON_DEMAND: 0.0, SPOT: 1.0}


def test_team_budgets_from_the_config_file_are_exported(scrapes: Scrapes) -> None:
    budget = {by(k, "team"): v for k, v in scrapes.series("gpufleet_cost_budget_usd").items()}
    assert budget == {"nlp": 1000.0, "unassigned": 0.01}
    alerts = {(by(k, "team"), by(k, "basis"), by(k, "threshold")): v
              for k, v in scrapes.series("gpufleet_cost_budget_alert").items()}
    assert alerts[("unassigned", "forecast", "1")] == 1.0  # a cent a month is spent in seconds
    assert alerts[("nlp", "spent", "0.5")] == 0.0


def test_running_pods_with_measured_memory_get_a_recommendation_naming_a_catalog_type(scrapes: Scrapes) -> None:
    from gpufleet.autoscaler.cost.catalog import parse_catalog
    from gpufleet.core.pricing import CATALOG_FILE

    catalog = parse_catalog((Path(names.__file__).parent / "data" / CATALOG_FILE).read_text(), CATALOG_FILE)
    after = scrapes.series("gpufleet_cost_recommendation_after_usd_per_hour")
    workloads = {by(k, "workload"): k for k in after}
    assert f"{PLAIN_NS}/trainer" in workloads and f"{PLAIN_NS}/dark" not in workloads
    for labels in after:
        t = catalog.get(by(labels, "instance_type"))
        assert t is not None and t.gpu_model == by(labels, "gpu_model")
    now = {by(k, "workload"): v for k, v in scrapes.series("gpufleet_cost_recommendation_now_usd_per_hour").items()}
    assert now[f"{PLAIN_NS}/trainer"] > 0
