"""bench/cluster_throughput.py --kubeconfig against a cluster it did not start: its pods land only on
the kwok nodes it made, and it leaves the cluster as it found it."""

from __future__ import annotations

import pytest

from bench.cluster_throughput import pod
from bench.existing_cluster import LABEL, run_existing

pytestmark = pytest.mark.cluster


def test_a_run_on_an_existing_cluster_binds_on_its_own_nodes_and_removes_them(local_cluster, k8s_api_client):
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(k8s_api_client)
    before = {n.metadata.name for n in core.list_node().items}
    namespaces = {n.metadata.name for n in core.list_namespace().items}
    lines: list[str] = []

    run = run_existing(local_cluster.kubeconfig, 3, [pod(i) for i in range(12)], lines.append, timeout_s=120)

    assert run.bound == 12 and run.pods_per_s > 0, lines
    assert run.nodes_used and all(n.startswith(f"{run.namespace}-") for n in run.nodes_used), run.nodes_used
    assert {n.metadata.name for n in core.list_node().items} == before
    assert not core.list_node(label_selector=LABEL).items
    with pytest.raises(ApiException) as gone:
        core.read_namespace(run.namespace)
    assert gone.value.status == 404
    assert {n.metadata.name for n in core.list_namespace().items} == namespaces
