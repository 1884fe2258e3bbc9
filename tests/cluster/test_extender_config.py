"""kube-scheduler v1.37 accepts the shared extender configuration, and `ignorable` holds: with the
extender unreachable, GPU pods (which the extender manages) are still filtered, scored and bound."""

from __future__ import annotations

import socket
import time

import pytest

pytestmark = pytest.mark.cluster


def _unused_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_gpu_pods_schedule_in_both_profiles_while_the_extender_is_unreachable(cluster_binaries, tmp_path):
    from kubernetes import client, config

    from gpufleet.scheduler.localcluster.cluster import ClusterOptions, LocalCluster

    url = f"http://127.0.0.1:{_unused_loopback_port()}"
    cluster = LocalCluster(ClusterOptions(state_dir=tmp_path / "state", nodes=2, extender_url=url, timeout_s=120))
    info = cluster.up()
    try:
        assert f"urlPrefix: {url}" in (tmp_path / "state" / "kube-scheduler-config.yaml").read_text()
        api_client = config.new_client_from_config(config_file=info.kubeconfig)
        core = client.CoreV1Api(api_client)
        for scheduler_name in ("default-scheduler", "gpufleet-scheduler"):
            core.create_namespaced_pod("default", {
                "metadata": {"name": scheduler_name},
                "spec": {"schedulerName": scheduler_name, "containers": [{
                    "name": "main", "image": "registry.k8s.io/pause:3.10",
                    "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
            })
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pods = core.list_namespaced_pod("default").items
            if len(pods) == 2 and all(p.status.phase == "Running" for p in pods):
                break
            time.sleep(0.25)
        assert {p.metadata.name: p.status.phase for p in core.list_namespaced_pod("default").items} == {
            "default-scheduler": "Running", "gpufleet-scheduler": "Running"}
        api_client.close()
    finally:
        cluster.down()
