"""The controller end to end on the local control plane: real API server, kube-controller-manager
(Deployments, StatefulSets, the disruption controller behind PDBs; kwok completes Job pods at once,
so Jobs are covered by the unit tests), kwok nodes, real gRPC agents on
simulated GPUs that ask fake kubelets mirroring the API server, and two `gpufleet controller` processes.

One scene, played once for the module (notice and window in seconds): workloads on three nodes whose GPUs
are idle (memory held, 0 %), busy, pulsing (8 s busy, 12 s idle) or playing a GenTD26 pod's series; the leader is killed with SIGKILL as soon as the first notice is out;
the agent of the third node stops once its pod has notice; the PDB goes once its eviction was refused.
The tests then read what happened.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpufleet.core import names
from gpufleet.core.kube.client import KubernetesAPI
from gpufleet.core.kube.errors import KubeAPIError

pytestmark = pytest.mark.cluster

NODES = ("gpu-node-00000", "gpu-node-00001", "gpu-node-00002")
ON, OFF, EVICT, LEASE_NS = "rc-on", "rc-off", "rc-evict", "rc-system"
NOTICE_S = 6.0
GENTD26 = Path(__file__).resolve().parents[2] / "bench" / "data" / "alibaba-gentd26"
#: Scripts beyond the presets: 8 s busy / 12 s idle (notice, then activity cancels it), and a GenTD26 pod.
GPUS = {"pulsing": {"phases": [{"seconds": 8, "util": 90, "memory_mib": 1000},
                               {"seconds": 12, "util": 0, "memory_mib": 1000}]},
        "gentd26": {"trace": {"utilisation": str(GENTD26 / "pod_gpu_duty_cycle_anon.csv.gz"),
                              "memory": str(GENTD26 / "pod_gpu_memory_used_bytes_anon.csv.gz"), "pod": 3,
                              "speed": 57}}}
#: GPU index -> preset, per node; the third node's agent is stopped mid-notice.
PRESETS = {NODES[0]: ["held-idle", "busy", "held-idle", "held-idle", "held-idle", "held-idle", "held-idle",
                      "held-idle"],
           NODES[1]: ["held-idle", "busy", "held-idle", "held-idle", "pulsing", "gentd26", "idle", "idle"],
           NODES[2]: ["held-idle"] * 8}
CONFIG = {
    "reclaim": {"policy": "window", "graceSeconds": 0, "noticeSeconds": NOTICE_S,
                "window": {"windowSeconds": 3}, "detection": {"staleAfterSeconds": 4, "minIdleSeconds": 0}},
    "budget": {"maxActions": 100, "maxPercent": 100, "window": "1h"},
    "samples": {"bucket": 1, "history": "10m"},
    "agents": {"staleAfter": 3, "replay": 60, "backoff": 0.2, "backoffMax": 1},
    "lease": {"name": "gpufleet-controller", "duration": 4, "renewDeadline": 3, "retry": 1},
    "passInterval": 1,
}


def pod_spec(node: str, gpu: int, annotations: dict[str, str] | None = None,
             labels: dict[str, str] | None = None, restart: str = "Always") -> dict[str, Any]:
    return {"metadata": {"labels": labels or {}, "annotations": {names.GPU_IDS: str(gpu), **(annotations or {})}},
            "spec": {"nodeName": node, "restartPolicy": restart, "terminationGracePeriodSeconds": 0,
                     "tolerations": [{"operator": "Exists"}],
                     "containers": [{"name": "main", "image": "busybox",
                                     "resources": {"limits": {names.GPU_RESOURCE: "1"}}}]}}


def deployment(name: str, node: str, gpu: int) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": pod_spec(node, gpu, labels=labels)}}


def statefulset(name: str, node: str, gpu: int) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
            "spec": {"replicas": 1, "serviceName": name, "selector": {"matchLabels": labels},
                     "template": pod_spec(node, gpu, labels=labels)}}


def bare(name: str, node: str, gpu: int, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    spec = pod_spec(node, gpu, annotations, labels={"app": name})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, **spec["metadata"]}, "spec": spec["spec"]}


def wait_for(what: str, check: Callable[[], Any], timeout: float) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


@dataclass
class Scene:
    api: KubernetesAPI
    events: list[dict[str, Any]] = field(default_factory=list)
    killed: str = ""
    blocked_seen: bool = False
    pdb_pod_alive_while_blocked: bool = False
    undo_message: str = ""
    replicas_after_undo: int = -1
    stale_notice_before_stop: bool = False
    metrics: str = ""


def _get(api: KubernetesAPI, path: str) -> dict[str, Any] | None:
    try:
        return api.get(path)
    except KubeAPIError:
        return None


def _annotations(obj: dict[str, Any] | None) -> dict[str, str]:
    return ((obj or {}).get("metadata") or {}).get("annotations") or {}


def _first_pod(api: KubernetesAPI, namespace: str, app: str) -> dict[str, Any] | None:
    items, _ = api.list(f"/api/v1/namespaces/{namespace}/pods")
    return next((p for p in items if (p["metadata"].get("labels") or {}).get("app") == app
                 or p["metadata"]["name"].startswith(app)), None)


def _start_agents(tmp: Path, sockets: dict[str, str]) -> dict[str, Any]:
    from gpufleet.autoscaler.agent.app import Agent
    from gpufleet.autoscaler.agent.config import AgentConfig
    from gpufleet.autoscaler.agent.pods import KubeletPodSource
    from gpufleet.autoscaler.gpu.backend import open_backend
    from gpufleet.autoscaler.kubelet.podresources import PodResourcesClient
    from gpufleet.core.clock import SystemClock

    agents = {}
    for node in NODES:
        script = tmp / f"{node}.yaml"
        script.write_text(yaml.safe_dump({"version": 1, "gpus": [GPUS.get(p, {"preset": p}) for p in PRESETS[node]]}))
        backend = open_backend(str(script), clock=SystemClock(), node_name=node)
        config = AgentConfig(node_name=node, listen="127.0.0.1:0", metrics_listen="127.0.0.1:0", interval_s=0.5,
                             pod_resources_socket=sockets[node], pod_refresh_s=1.0, history=120, max_streams=4)
        agent = Agent(config, backend, KubeletPodSource(PodResourcesClient(sockets[node])))
        agent.start()
        agents[node] = agent
    return agents


def _controller(kubeconfig: str, config: Path, agents: dict[str, Any], identity: str, tmp: Path) -> subprocess.Popen:
    ready = tmp / f"{identity}.json"
    endpoints = ",".join(f"127.0.0.1:{a.grpc_port}" for a in agents.values())
    with open(tmp / f"{identity}.log", "w") as log:  # the child keeps its own copy
        return subprocess.Popen(
            [sys.executable, "-m", "gpufleet.cli", "-v", "controller", "--kubeconfig", kubeconfig, "--config", str(config),
             "--agents", endpoints, "--identity", identity, "--lease-namespace", LEASE_NS,
             "--metrics-listen", "127.0.0.1:0", "--ready-file", str(ready)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture(scope="module")
def scene(local_cluster: Any) -> Iterator[Scene]:
    from kubernetes import client
    from kubernetes import config as kconfig

    from gpufleet.autoscaler.controller.undo import undo
    from gpufleet.autoscaler.kubelet.mirror import Mirror

    api = KubernetesAPI.connect(local_cluster.kubeconfig)
    tmp = Path(tempfile.mkdtemp(prefix="gpufleet-ctl-"))
    sockets = {node: str(tmp / f"{i}.sock") for i, node in enumerate(NODES)}
    core = client.CoreV1Api(kconfig.new_client_from_config(config_file=local_cluster.kubeconfig))
    mirror = Mirror(core, sockets, 8)
    mirror.start()
    stop = threading.Event()
    threading.Thread(target=mirror.refresh_until, args=(stop, 1.0), daemon=True).start()
    agents = _start_agents(tmp, sockets)
    for ns, mode in ((ON, "scale-to-zero"), (OFF, None), (EVICT, "evict"), (LEASE_NS, None)):
        api.post("/api/v1/namespaces", {"metadata": {"name": ns, "annotations": {names.RECLAIM: mode} if mode else {}}})
    a, b, c = NODES
    api.post(f"/apis/apps/v1/namespaces/{ON}/deployments", deployment("idle-dep", a, 0))
    api.post(f"/apis/apps/v1/namespaces/{ON}/deployments", deployment("busy-dep", a, 1))
    api.post(f"/apis/apps/v1/namespaces/{OFF}/deployments", deployment("off-dep", a, 2))
    api.post(f"/apis/policy/v1/namespaces/{EVICT}/poddisruptionbudgets",
             {"metadata": {"name": "keep-one"}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "bare-pdb"}}}})
    api.post(f"/api/v1/namespaces/{EVICT}/pods", bare("bare-pdb", a, 3))
    api.post(f"/api/v1/namespaces/{ON}/pods", bare("snoozed", a, 4, {names.KEEP_UNTIL: "2099-01-01T00:00:00Z"}))
    api.post(f"/api/v1/namespaces/{ON}/pods", bare("dnd", a, 5, {names.DO_NOT_DISRUPT: "true"}))
    api.post(f"/apis/apps/v1/namespaces/{ON}/statefulsets", statefulset("idle-sts", b, 0))
    api.post(f"/api/v1/namespaces/{ON}/pods", bare("stale-pod", c, 0))
    api.post(f"/api/v1/namespaces/{ON}/pods", bare("pulsing", b, 4, {names.RECLAIM: "notify"}))
    api.post(f"/api/v1/namespaces/{ON}/pods", bare("gentd26", b, 5, {names.RECLAIM: "report"}))
    cfg = tmp / "controller.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    procs = {i: _controller(local_cluster.kubeconfig, cfg, agents, i, tmp) for i in ("ctl-1", "ctl-2")}
    s = Scene(api)
    try:
        lease_path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NS}/leases/gpufleet-controller"
        wait_for("a notice on idle-dep", lambda: names.IDLE_SINCE in _annotations(_first_pod(api, ON, "idle-dep")), 60)
        holder = (_get(api, lease_path) or {}).get("spec", {}).get("holderIdentity")
        assert holder in procs, holder
        os.killpg(procs[holder].pid, signal.SIGKILL)  # mid-notice: no release, the Lease must expire
        procs[holder].wait(10)
        s.killed = holder
        survivor = next(i for i in procs if i != holder)
        stale = wait_for("a notice on stale-pod", lambda: names.IDLE_SINCE in _annotations(
            _get(api, f"/api/v1/namespaces/{ON}/pods/stale-pod")), 30)
        s.stale_notice_before_stop = bool(stale)
        agents[c].stop(grace_s=0)
        dep = f"/apis/apps/v1/namespaces/{ON}/deployments/idle-dep"
        wait_for("idle-dep at 0", lambda: ((_get(api, dep) or {}).get("spec") or {}).get("replicas") == 0, 60)
        wait_for("idle-sts at 0", lambda: ((_get(api, f"/apis/apps/v1/namespaces/{ON}/statefulsets/idle-sts")
                                            or {}).get("spec") or {}).get("replicas") == 0, 30)

        def blocked() -> bool:
            items, _ = api.list(f"/api/v1/namespaces/{EVICT}/events")
            return any(e.get("reason") == "IdleGPUEvictionBlocked" for e in items)

        s.blocked_seen = wait_for("the PDB to block the eviction", blocked, 30)
        s.pdb_pod_alive_while_blocked = _get(api, f"/api/v1/namespaces/{EVICT}/pods/bare-pdb") is not None
        api.delete(f"/apis/policy/v1/namespaces/{EVICT}/poddisruptionbudgets/keep-one")
        wait_for("bare-pdb evicted", lambda: _get(api, f"/api/v1/namespaces/{EVICT}/pods/bare-pdb") is None, 30)

        def cancelled() -> bool:
            items, _ = api.list(f"/api/v1/namespaces/{ON}/events")
            return any(e.get("reason") == "IdleGPUNoticeCancelled" for e in items)

        wait_for("activity to cancel the notice on pulsing", cancelled, 45)
        time.sleep(2 * CONFIG["passInterval"])  # a couple more passes: nothing may act twice
        ready = json.loads((tmp / f"{survivor}.json").read_text())
        import urllib.request

        s.metrics = urllib.request.urlopen(f"http://127.0.0.1:{ready['metrics_port']}/metrics", timeout=5).read().decode()
        for ns in (ON, OFF, EVICT):
            s.events.extend(api.list(f"/api/v1/namespaces/{ns}/events")[0])
        s.undo_message = undo(api, f"{ON}/Deployment/idle-dep")
        s.replicas_after_undo = ((_get(api, dep) or {}).get("spec") or {}).get("replicas", -1)
        yield s
    finally:
        stop.set()
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
        for agent in agents.values():
            agent.stop(grace_s=0)
        mirror.stop()
        for ns in (ON, OFF, EVICT, LEASE_NS):
            try:
                api.delete(f"/api/v1/namespaces/{ns}")
            except KubeAPIError:
                pass
        api.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _events(s: Scene, reason: str, name: str | None = None, kind: str | None = None) -> list[dict[str, Any]]:
    return [e for e in s.events if e.get("reason") == reason
            and (name is None or e["involvedObject"]["name"].startswith(name))
            and (kind is None or e["involvedObject"]["kind"] == kind)]


def test_only_opted_in_idle_workloads_are_acted_on(scene: Scene) -> None:
    api = scene.api
    assert ((_get(api, f"/apis/apps/v1/namespaces/{ON}/statefulsets/idle-sts") or {})["spec"]["replicas"]) == 0
    assert (_get(api, f"/apis/apps/v1/namespaces/{ON}/deployments/busy-dep") or {})["spec"]["replicas"] == 1
    assert (_get(api, f"/apis/apps/v1/namespaces/{OFF}/deployments/off-dep") or {})["spec"]["replicas"] == 1
    assert not _events(scene, "IdleGPUNotice", "busy-dep") and not _events(scene, "IdleGPUNotice", "off-dep")


def test_a_pdb_blocks_the_eviction_and_the_controller_waits(scene: Scene) -> None:
    assert scene.blocked_seen and scene.pdb_pod_alive_while_blocked
    assert _get(scene.api, f"/api/v1/namespaces/{EVICT}/pods/bare-pdb") is None
    assert len(_events(scene, "IdleGPUReclaimed", "bare-pdb", "Pod")) == 1


def test_snooze_and_do_not_disrupt_hold(scene: Scene) -> None:
    for name in ("snoozed", "dnd"):
        pod = _get(scene.api, f"/api/v1/namespaces/{ON}/pods/{name}")
        assert pod is not None and not pod["metadata"].get("deletionTimestamp")
        assert names.IDLE_SINCE not in _annotations(pod)
        assert not _events(scene, "IdleGPUNotice", name)


def test_the_leader_killed_mid_notice_leaves_one_notice_and_one_action_per_workload(scene: Scene) -> None:
    assert scene.killed
    for name in ("idle-dep", "idle-sts", "bare-pdb", "stale-pod"):
        assert len(_events(scene, "IdleGPUNotice", name)) == 1, name
    for name, kind in (("idle-dep", "Deployment"), ("idle-sts", "StatefulSet")):
        assert len(_events(scene, "IdleGPUReclaimed", name, kind)) == 1, name
    assert 'gpufleet_controller_leader 1.0' in scene.metrics


def test_an_agent_that_stops_streaming_blocks_actions_on_its_node(scene: Scene) -> None:
    assert scene.stale_notice_before_stop
    pod = _get(scene.api, f"/api/v1/namespaces/{ON}/pods/stale-pod")
    assert pod is not None and not pod["metadata"].get("deletionTimestamp")
    assert not _events(scene, "IdleGPUReclaimed", "stale-pod")
    assert 'gpufleet_reclaim_skipped_decisions_total{reason="stale"}' in scene.metrics


def test_notify_mode_gives_notice_and_activity_cancels_it_without_an_action(scene: Scene) -> None:
    pod = _get(scene.api, f"/api/v1/namespaces/{ON}/pods/pulsing")
    assert pod is not None and not pod["metadata"].get("deletionTimestamp")
    assert _events(scene, "IdleGPUNotice", "pulsing") and _events(scene, "IdleGPUNoticeCancelled", "pulsing")
    assert not _events(scene, "IdleGPUReclaimed", "pulsing")


def test_report_mode_on_a_gentd26_series_never_annotates_or_acts(scene: Scene) -> None:
    pod = _get(scene.api, f"/api/v1/namespaces/{ON}/pods/gentd26")
    assert pod is not None and not pod["metadata"].get("deletionTimestamp")
    assert names.IDLE_SINCE not in _annotations(pod)
    assert not _events(scene, "IdleGPUNotice", "gentd26") and not _events(scene, "IdleGPUReclaimed", "gentd26")


def test_undo_restores_the_replicas(scene: Scene) -> None:
    assert "scaled back to 1" in scene.undo_message
    assert scene.replicas_after_undo == 1


def test_every_action_records_its_delay_after_the_notice(scene: Scene) -> None:
    """Delays (end of notice -> action) land in a histogram; printed for the record (run with -s)."""
    buckets = [line for line in scene.metrics.splitlines() if line.startswith("gpufleet_reclaim_action_delay_seconds")]
    count = next(float(line.split()[-1]) for line in buckets if line.startswith("gpufleet_reclaim_action_delay_"
                                                                                 "seconds_count"))
    assert count >= 3  # Deployment, StatefulSet and the eviction, by the surviving replica
    print("\n".join(buckets))


SA = "system:serviceaccount:gpufleet-system:gpufleet-controller"
#: (verb, group, resource, subresource, namespace, name, allowed): what the controller does, and a few it must not.
ACCESS = [
    ("watch", "", "pods", "", "", "", True), ("patch", "", "pods", "", "ml", "", True),
    ("create", "", "pods", "eviction", "ml", "", True), ("create", "", "events", "", "ml", "", True),
    ("watch", "policy", "poddisruptionbudgets", "", "", "", True), ("watch", "", "nodes", "", "", "", True),
    ("get", "apps", "replicasets", "", "ml", "", True), ("patch", "apps", "deployments", "", "ml", "", True),
    ("update", "apps", "deployments", "scale", "ml", "", True),
    ("update", "apps", "statefulsets", "scale", "ml", "", True), ("patch", "batch", "jobs", "", "ml", "", True),
    ("update", "coordination.k8s.io", "leases", "", "gpufleet-system", "gpufleet-controller", True),
    ("list", "discovery.k8s.io", "endpointslices", "", "gpufleet-system", "", True),
    ("delete", "", "pods", "", "ml", "", False), ("update", "apps", "deployments", "", "ml", "", False),
    ("get", "", "secrets", "", "ml", "", False),
    ("update", "coordination.k8s.io", "leases", "", "gpufleet-system", "someone-else", False),
    ("list", "discovery.k8s.io", "endpointslices", "", "ml", "", False),
    ("watch", "gpufleet.io", "reclaimpolicies", "", "", "", True), ("list", "gpufleet.io", "gpubudgets", "", "", "", True),
    ("patch", "gpufleet.io", "reclaimpolicies", "status", "", "p", True),
    ("patch", "gpufleet.io", "gpubudgets", "status", "", "b", True),
    ("patch", "gpufleet.io", "reclaimpolicies", "", "", "p", False),
    ("update", "gpufleet.io", "gpubudgets", "", "", "b", False),
    ("create", "gpufleet.io", "reclaimpolicies", "", "", "", False),
    ("delete", "gpufleet.io", "gpubudgets", "", "", "b", False),
    ("watch", "gpufleet.io", "placementpolicies", "", "", "", False),
]


def test_the_controller_rbac_allows_what_it_does_and_no_more(local_cluster: Any, kustomize: Any) -> None:
    api = KubernetesAPI.connect(local_cluster.kubeconfig)
    rendered = kustomize(Path(__file__).resolve().parents[2] / "deploy" / "controller")
    paths = {"Namespace": "/api/v1/namespaces", "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
             "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
             "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
             "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
             "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"}
    for obj in rendered:
        if obj["kind"] in paths:
            try:
                api.post(paths[obj["kind"]].format(ns=obj["metadata"].get("namespace")), obj)
            except KubeAPIError as err:
                assert err.status == 409, err

    def allowed_now(verb: str, group: str, resource: str, sub: str, ns: str, name: str) -> bool:
        review = api.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", {
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": SA, "groups": ["system:serviceaccounts", "system:serviceaccounts:gpufleet-system",
                                            "system:authenticated"],
                     "resourceAttributes": {"verb": verb, "group": group, "resource": resource,
                                            "subresource": sub, "namespace": ns, "name": name}}})
        return bool(review["status"].get("allowed"))

    # the authorizer learns new roles and bindings through its own watch: wait until both bindings count
    wait_for("the RBAC objects to take effect", lambda: allowed_now(*ACCESS[0][:6]) and allowed_now(
        "update", "coordination.k8s.io", "leases", "", "gpufleet-system", "gpufleet-controller"), 20)
    wrong = [check for check in ACCESS if allowed_now(*check[:6]) is not check[6]]
    api.close()
    assert not wrong
