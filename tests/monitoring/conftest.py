"""Fixtures for the monitoring tests: Prometheus's binaries, a Prometheus started for a test, and a
monitored local cluster (extender, simulated agents, Prometheus) with a short workload on it.

Without ``prometheus``/``promtool`` the tests are skipped with the command to run, except in CI
(``CI=true``), where that is a failure: CI installs them first (.ci/install-prometheus.sh).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from gpufleet.scheduler.localcluster import prometheus
from gpufleet.scheduler.localcluster.cluster import ClusterInfo, ClusterOptions, LocalCluster
from gpufleet.scheduler.localcluster.processes import ProcessGroup, processes_mentioning
from gpufleet.scheduler.localcluster.readiness import wait_until

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "deploy" / "monitoring"
#: Nodes of the monitored cluster; each gets a simulated agent.
NODES = 3


def load_module(name: str) -> ModuleType:
    """deploy/monitoring/<name>.py (not installed code) as a module."""
    spec = importlib.util.spec_from_file_location(f"gpufleet_monitoring_{name}", MONITORING / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def panels() -> ModuleType:
    """deploy/monitoring/panels.py: the dashboards' queries as Grafana runs them."""
    return load_module("panels")


@pytest.fixture(scope="session")
def kubectl_binary() -> Path:
    from gpufleet.scheduler.localcluster.binaries import BUILD_HINT, default_bin_dir

    path = default_bin_dir() / "kubectl"
    if not path.is_file():
        _missing(f"kubectl missing in {path.parent}: {BUILD_HINT}")
    return path


def _missing(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def promtool() -> Path:
    try:
        return prometheus.find_binary("promtool")
    except prometheus.PrometheusError as err:
        _missing(str(err))


@pytest.fixture(scope="session")
def prometheus_binary() -> Path:
    try:
        return prometheus.find_binary("prometheus")
    except prometheus.PrometheusError as err:
        _missing(str(err))


StartPrometheus = Callable[[list[prometheus.ScrapeTarget]], prometheus.PrometheusClient]


@pytest.fixture
def start_prometheus(prometheus_binary: Path, tmp_path: Path) -> Iterator[StartPrometheus]:
    """Starts a real Prometheus on loopback scraping the given targets (with the gpufleet rules
    loaded); stopped at the end of the test."""
    group = ProcessGroup(tmp_path / "prometheus")

    def start(targets: list[prometheus.ScrapeTarget]) -> prometheus.PrometheusClient:
        from gpufleet.scheduler.localcluster.components import free_port

        port = free_port()
        config = prometheus.write_config(tmp_path / "prometheus.yml",
                                         prometheus.scrape_config(targets, prometheus.rule_files(REPO)))
        group.start(prometheus.prometheus_process(prometheus_binary, config, tmp_path / "data", port))
        client = prometheus.PrometheusClient(f"http://127.0.0.1:{port}")
        wait_until("Prometheus ready", client.ready, 60, check_alive=lambda: group.check(prometheus.NAME))
        return client

    yield start
    group.stop_all()


def gpu_pod(name: str, gpus: int = 1, placement: str | None = "fgd", milli: int | None = None,
            annotations: dict[str, str] | None = None) -> dict:
    annotations = dict(annotations or {})
    if placement:
        annotations["gpufleet.io/placement"] = placement
    limits = {"nvidia.com/gpu": str(gpus)}
    requests = {"cpu": "500m", "memory": "1Gi"}
    if milli:
        limits = {"gpufleet.io/gpu-milli": str(milli)}
        requests["gpufleet.io/gpu-milli"] = str(milli)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "annotations": annotations},
            "spec": {"schedulerName": "gpufleet-scheduler", "terminationGracePeriodSeconds": 0,
                     "automountServiceAccountToken": False,
                     "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10",
                                     "resources": {"requests": requests, "limits": limits}}]}}


#: The short workload: whole-GPU trainers (fgd and binpack), GPU shares, a pod that did not opt in to
#: placement and one that may not be disrupted; both namespaces opt in to reclaim (report, notify).
WORKLOAD = {
    "ml-train": [gpu_pod(f"trainer-{i}", 2) for i in range(4)] + [gpu_pod("packed-0", 1, "binpack")]
    + [gpu_pod(f"eval-{i}", 1) for i in range(4)],
    "ml-infer": [gpu_pod(f"infer-{i}", 1, milli=500) for i in range(3)] + [gpu_pod("plain-0", 1, None)]
    + [gpu_pod("pinned-0", 1, annotations={"karpenter.sh/do-not-disrupt": "true"})],
}
RECLAIM_MODES = {"ml-train": "report", "ml-infer": "notify"}


@pytest.fixture(scope="session")
def monitored_cluster(tmp_path_factory: pytest.TempPathFactory, prometheus_binary: Path) -> Iterator[ClusterInfo]:
    """A local cluster with --monitoring (every node has an agent), the WORKLOAD bound, and every
    target scraped a few times; yields its ClusterInfo (``prometheus_url`` set)."""
    from gpufleet.scheduler.localcluster.binaries import BUILD_HINT, default_bin_dir, missing_binaries
    from gpufleet.scheduler.localcluster.podloader import PodLoader, is_bound

    missing = missing_binaries(default_bin_dir())
    if missing:
        _missing(f"local-cluster binaries missing ({', '.join(missing)}): {BUILD_HINT}")
    state_dir = tmp_path_factory.mktemp("monitored-cluster")
    cluster = LocalCluster(ClusterOptions(state_dir=state_dir, nodes=NODES, timeout_s=180.0, monitoring=True,
                                          agents=NODES))
    info = cluster.up()
    try:
        with PodLoader(info.kubeconfig) as loader:
            for namespace, pods in WORKLOAD.items():
                loader.ensure_namespace(namespace, annotations={"gpufleet.io/reclaim": RECLAIM_MODES[namespace]})
                loader.create(namespace, pods)
            expected = sum(len(p) for p in WORKLOAD.values())
            wait_until(f"{expected} workload pods bound", lambda: sum(
                is_bound(p) for ns in WORKLOAD for p in loader.list_pods(ns)) >= expected, 90, interval=0.5)
        client = prometheus.PrometheusClient(info.prometheus_url)
        client.wait_until_scraped(["gpufleet-extender", "gpufleet-agent", "gpufleet-controller", "kube-apiserver",
                                   "kube-scheduler", "kube-controller-manager", "etcd"], timeout_s=60, scrapes=2)
        # the agents' pod refresh (2 s) and the next scrapes see the bound pods; rate() needs 2 points
        wait_until("workload pods in the agents' series", lambda: len(client.query(
            'count by (pod) (DCGM_FI_DEV_GPU_UTIL{pod!=""})')) >= expected - 1, 60, interval=1.0)
        # the controller's first notices and reports come after its window (10 s) of idle samples
        wait_until("reclaim notices or reports", lambda: bool(client.query(
            "gpufleet_reclaim_actions_total > 0")), 60, interval=1.0)
        time.sleep(4 * prometheus.SCRAPE_INTERVAL_S)
        yield info
    finally:
        cluster.down()
    leftovers = processes_mentioning(str(state_dir))
    assert not leftovers, f"processes left behind after cluster down: {leftovers}"


