"""ReclaimPolicy objects drive the running reclaim controller on the local cluster: real API server with
the gpufleet CRDs, kwok nodes, real gRPC agents on simulated GPUs (held, 0 %), one `gpufleet controller`.

Two idle pods in a namespace no annotation opts in. Generation 1 of a ReclaimPolicy (mode Notify)
selects the namespace and the pod labelled tier=first: that pod gets notice, the policy Ready, both
within 5 s of the change. Generation 2 would also select tier=second but names an unknown time zone
(schema-valid, so the API server takes it): Stalled with the reason, and generation 1 keeps running
(no notice for tier=second). Generation 3 fixes it: Ready, and tier=second gets notice within 5 s.
Generation 4 switches the policy to Reclaim with a short notice: one pod is evicted (the budget allows one).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpufleet.core import names
from gpufleet.core.kube.client import KubernetesAPI
from gpufleet.core.kube.errors import KubeAPIError
from tests.cluster.test_reclaim_controller import NODES, _start_agents, pod_spec, wait_for

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
NS, LEASE_NS, POLICY = "crd-team", "crd-system", "crd-demo"
RESOURCE = "/apis/gpufleet.io/v1alpha1/reclaimpolicies"
IDLE_S = 60.0  # the policy's window (the CRD's minimum: 1m)
CONFIG = {  # --config: what the ReclaimPolicy does not carry
    "reclaim": {"policy": "window", "graceSeconds": 0, "noticeSeconds": 3600, "window": {"windowSeconds": 3},
                "detection": {"staleAfterSeconds": 4, "minIdleSeconds": 0}},
    "samples": {"bucket": 1, "history": "10m"},
    "agents": {"staleAfter": 3, "replay": 120, "backoff": 0.2, "backoffMax": 1},
    "lease": {"name": "gpufleet-controller", "duration": 4, "renewDeadline": 3, "retry": 1},
    "passInterval": 1,
}


def spec(pods: str | None, budgets: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"namespaceSelector": {"matchLabels": {"team": POLICY}}, "mode": "Notify",
                           "detection": "window", "window": "1m", "grace": "0s", "notice": "1h"}
    if pods is not None:
        out["podSelector"] = {"matchLabels": {"tier": pods}}
    if budgets is not None:
        out["budgets"] = budgets
    return out


def kubectl_apply(kubectl: Path, kubeconfig: str, *args: str) -> None:
    done = subprocess.run([str(kubectl), "--kubeconfig", kubeconfig, *args], capture_output=True, text=True,
                          timeout=90, check=False)
    assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"


def idle_since(api: KubernetesAPI, name: str) -> str | None:
    try:
        pod = api.get(f"/api/v1/namespaces/{NS}/pods/{name}") or {}
    except KubeAPIError:
        return None
    return ((pod.get("metadata") or {}).get("annotations") or {}).get(names.IDLE_SINCE)


def status_of(api: KubernetesAPI, generation: int) -> dict[str, Any] | None:
    obj = api.get(f"{RESOURCE}/{POLICY}") or {}
    status = obj.get("status") or {}
    return status if status.get("observedGeneration") == generation else None


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status.get("conditions") or []}


@pytest.fixture(scope="module")
def cluster(local_cluster: Any, kubectl: Path) -> Iterator[KubernetesAPI]:
    """CRDs installed, agents and the fake kubelets' mirror running, one controller, two idle pods."""
    from kubernetes import client
    from kubernetes import config as kconfig

    from gpufleet.autoscaler.kubelet.mirror import Mirror

    kubectl_apply(kubectl, local_cluster.kubeconfig, "apply", "-k", str(REPO / "deploy/crds"))
    kubectl_apply(kubectl, local_cluster.kubeconfig, "wait", "--for=condition=Established", "--timeout=60s",
                  "crd/reclaimpolicies.gpufleet.io", "crd/gpubudgets.gpufleet.io")
    api = KubernetesAPI.connect(local_cluster.kubeconfig)
    tmp = Path(tempfile.mkdtemp(prefix="gpufleet-crd-"))
    sockets = {node: str(tmp / f"{i}.sock") for i, node in enumerate(NODES)}
    mirror = Mirror(client.CoreV1Api(kconfig.new_client_from_config(config_file=local_cluster.kubeconfig)),
                    sockets, 8)
    mirror.start()
    stop = threading.Event()
    threading.Thread(target=mirror.refresh_until, args=(stop, 1.0), daemon=True).start()
    agents = _start_agents(tmp, sockets)
    api.post("/api/v1/namespaces", {"metadata": {"name": NS, "labels": {"team": POLICY}}})
    api.post("/api/v1/namespaces", {"metadata": {"name": LEASE_NS}})
    for tier, gpu in (("first", 6), ("second", 7)):  # held-idle GPUs of the first node
        body = pod_spec(NODES[0], gpu, labels={"tier": tier})
        api.post(f"/api/v1/namespaces/{NS}/pods", {"apiVersion": "v1", "kind": "Pod",
                                                   "metadata": {"name": tier, **body["metadata"]}, "spec": body["spec"]})
    cfg = tmp / "controller.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    endpoints = ",".join(f"127.0.0.1:{a.grpc_port}" for a in agents.values())
    with open(tmp / "controller.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gpufleet.cli", "-v", "controller", "--kubeconfig", local_cluster.kubeconfig,
             "--config", str(cfg), "--agents", endpoints, "--identity", "crd-ctl", "--lease-namespace", LEASE_NS,
             "--metrics-listen", "127.0.0.1:0", "--ready-file", str(tmp / "ready.json")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for("the controller to serve", lambda: (tmp / "ready.json").exists() or proc.poll() is not None, 60)
        assert proc.poll() is None, (tmp / "controller.log").read_text()[-3000:]
        wait_for("the controller to lead", lambda: ((api.get(
            f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NS}/leases/gpufleet-controller") or {})
            .get("spec") or {}).get("holderIdentity") == "crd-ctl", 30)
        time.sleep(IDLE_S + 5)  # the pods' GPUs idle for longer than the policy's window
        assert idle_since(api, "first") is None  # nothing opts them in yet
        yield api
    finally:
        try:
            api.delete(f"{RESOURCE}/{POLICY}")
        except KubeAPIError:
            pass
        stop.set()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(15)
        for agent in agents.values():
            agent.stop(grace_s=0)
        mirror.stop()
        print((tmp / "controller.log").read_text()[-2000:])
        api.close()


def test_a_reclaim_policy_is_applied_live_and_a_stalled_change_keeps_the_last_good_one(cluster: KubernetesAPI
                                                                                       ) -> None:
    api = cluster
    started = time.monotonic()
    api.post(RESOURCE, {"apiVersion": "gpufleet.io/v1alpha1", "kind": "ReclaimPolicy",
                        "metadata": {"name": POLICY}, "spec": spec("first")})
    wait_for("a notice on the pod the policy selects", lambda: idle_since(api, "first"), 5)
    notice_latency = time.monotonic() - started
    ready = wait_for("Ready for generation 1", lambda: status_of(api, 1), 5)
    ready_latency = time.monotonic() - started
    assert conditions(ready)["Ready"]["status"] == "True" and "Stalled" not in conditions(ready)
    assert idle_since(api, "second") is None

    obj = api.get(f"{RESOURCE}/{POLICY}")
    bad = {**obj["spec"], "podSelector": None,
           "budgets": [{"maxPods": 1, "schedule": "@daily", "duration": "1h", "timeZone": "Mars/Olympus"}]}
    started = time.monotonic()
    api.patch(f"{RESOURCE}/{POLICY}", {"spec": bad})
    stalled = wait_for("Stalled for generation 2", lambda: status_of(api, 2), 5)
    stalled_latency = time.monotonic() - started
    found = conditions(stalled)
    assert found["Stalled"]["status"] == "True" and found["Ready"]["status"] == "False"
    assert "Mars/Olympus" in found["Stalled"]["message"] and "generation 1 keeps running" in found["Stalled"]["message"]
    time.sleep(3 * CONFIG["passInterval"])  # passes with generation 2 stored: generation 1 still decides
    assert idle_since(api, "second") is None and idle_since(api, "first") is not None

    started = time.monotonic()
    api.patch(f"{RESOURCE}/{POLICY}", {"spec": {"budgets": [{"maxPods": 1}]}})
    wait_for("a notice on the pod generation 3 adds", lambda: idle_since(api, "second"), 5)
    fixed_latency = time.monotonic() - started
    ready = wait_for("Ready for generation 3", lambda: status_of(api, 3), 5)
    assert conditions(ready)["Ready"]["status"] == "True" and "Stalled" not in conditions(ready)

    # Generation 4: the policy itself says Reclaim (no annotation anywhere), with a short notice: the
    # controller acts on what the policy opted in (bare pods: the Eviction API), once per budget.
    api.patch(f"{RESOURCE}/{POLICY}", {"spec": {"mode": "Reclaim", "notice": "1s"}})
    wait_for("Ready for generation 4", lambda: status_of(api, 4), 5)
    wait_for("an eviction of a pod the policy opted in", lambda: not all(_running(api, n) for n in ("first", "second")),
             30)
    time.sleep(3 * CONFIG["passInterval"])
    assert sum(_running(api, n) for n in ("first", "second")) == 1  # the budget (maxPods 1) allows one action
    print(f"\nReclaimPolicy hot reload: notice {notice_latency:.2f} s and Ready {ready_latency:.2f} s after create; "
          f"Stalled {stalled_latency:.2f} s after a bad change; notice {fixed_latency:.2f} s after the fix")


def _running(api: KubernetesAPI, name: str) -> bool:
    pod = api.get(f"/api/v1/namespaces/{NS}/pods/{name}")
    return pod is not None and not (pod.get("metadata") or {}).get("deletionTimestamp")
