"""bench/null_extender.py, the measuring device of `cluster_throughput.py --null-extender`, speaks the
extender contract against the real API server: every node passes, every score is 0, bind posts the
Binding with its annotation, and a malformed request gets a 400, not a crash."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest

from bench.cluster_throughput import pod
from bench.null_extender import answer, serve
from gpufleet.core.kube.client import KubernetesAPI
from gpufleet.scheduler.localcluster.components import free_port

pytestmark = pytest.mark.cluster


def post(url: str, body: object) -> tuple[int, object]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_the_null_extender_passes_every_node_scores_zero_and_binds(local_cluster, k8s_api_client):
    from kubernetes import client

    core = client.CoreV1Api(k8s_api_client)
    core.create_namespace({"metadata": {"name": "null-extender"}})
    manifest = pod(0, scheduler_name="nobody")  # no scheduler takes it: only our bind can place it
    created = core.create_namespaced_pod("null-extender", manifest)
    api = KubernetesAPI.connect(local_cluster.kubeconfig)
    port = free_port()
    server = serve("127.0.0.1", port, "/v1/", api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{port}/v1/"
    try:
        names = ["gpu-node-00000", "gpu-node-00001"]
        assert post(url + "filter", {"NodeNames": names}) == (200, {"NodeNames": names, "FailedNodes": {},
                                                                    "Error": ""})
        assert post(url + "prioritize", {"NodeNames": names}) == (200, [{"Host": n, "Score": 0} for n in names])
        status, reply = post(url + "bind", {"PodName": created.metadata.name, "PodNamespace": "null-extender",
                                            "PodUID": created.metadata.uid, "Node": "gpu-node-00001"})
        assert (status, reply) == (200, {"Error": ""})
        bound = core.read_namespaced_pod(created.metadata.name, "null-extender")
        assert bound.spec.node_name == "gpu-node-00001"
        assert bound.metadata.annotations["gpufleet.io/gpu-ids"] == "0"
        again = post(url + "bind", {"PodName": created.metadata.name, "PodNamespace": "null-extender",
                                    "PodUID": created.metadata.uid, "Node": "gpu-node-00000"})
        assert again[0] == 200 and "already" in again[1]["Error"], again
        assert answer("filter", {"NodeNames": names[::-1]}, api, scores="decide") == {
            "NodeNames": ["gpu-node-00000"], "FailedNodes": {}, "Error": ""}
        assert post(url + "bind", {"PodName": "x"})[0] == 400
        assert post(url + "nonsense", {})[0] == 400
    finally:
        server.shutdown()
        server.server_close()
        api.close()
        core.delete_namespace("null-extender")
        wait_gone(core, "null-extender")


def wait_gone(core, namespace: str, timeout_s: float = 60.0) -> None:
    """Until the namespace is deleted, so the tests after this one see the cluster as it was."""
    from kubernetes.client.exceptions import ApiException

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            core.read_namespace(namespace)
        except ApiException as err:
            if err.status == 404:
                return
            raise
        time.sleep(0.5)
    raise AssertionError(f"namespace {namespace} still there after {timeout_s:.0f} s")
