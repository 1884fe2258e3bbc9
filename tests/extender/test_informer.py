"""List and watch feed the state: resourceVersions advance, 410 Gone relists, errors back off."""

from __future__ import annotations

import logging
import threading
import time

from prometheus_client import CollectorRegistry

from gpufleet.core.clock import FakeClock
from gpufleet.core.kube.errors import KubeAPIError, WatchExpired
from gpufleet.core.kube.informer import InformerConfig
from gpufleet.core.pricing import PriceCatalog
from gpufleet.scheduler.extender.informer import informers
from gpufleet.scheduler.extender.metrics import ExtenderMetrics
from gpufleet.scheduler.extender.state import ClusterState

from . import payloads as P
from .fakes import FakeKubeAPI

FAST = InformerConfig(watch_timeout_s=1, backoff_s=0.0, backoff_max_s=0.0)


def setup(api: FakeKubeAPI):
    state = ClusterState(clock=FakeClock())
    metrics = ExtenderMetrics(CollectorRegistry())
    nodes, pods, namespaces = informers(api, state, PriceCatalog.default(), metrics, FAST)
    return state, metrics, nodes, pods, namespaces


def with_version(obj, version):
    obj["metadata"]["resourceVersion"] = version
    return obj


def test_the_first_list_syncs_and_the_watch_applies_events_in_order():
    api = FakeKubeAPI()
    api.objects["nodes"] = [P.node("gpu-000"), P.node("gpu-001")]
    api.objects["pods"] = [P.pod("a", gpus=2, node_name="gpu-000", phase="Running",
                                 annotations={"gpufleet.io/gpu-ids": "0,1"})]
    api.objects["namespaces"] = [P.namespace("ml", "fgd")]
    state, metrics, nodes, pods, namespaces = setup(api)
    for informer in (nodes, pods):
        api.watch_scripts[informer.resource] = []
    nodes.step()
    pods.step()
    assert not state.synced
    namespaces.step()
    assert state.synced and state.namespace_placement("ml") == "fgd"
    assert state.cluster.gpu_free[0, :3].tolist() == [0, 0, 1000]
    api.watch_scripts["nodes"] = [("ADDED", with_version(P.node("gpu-002"), "101")),
                                  ("BOOKMARK", {"metadata": {"resourceVersion": "150"}}),
                                  ("DELETED", with_version(P.node("gpu-000"), "151"))]
    api.watch_scripts["pods"] = [("MODIFIED", with_version(P.pod("b", gpus=1, node_name="gpu-001", phase="Running",
                                                                 annotations={"gpufleet.io/gpu-ids": "7"}), "201"))]
    nodes.step()
    pods.step()
    assert nodes.resource_version == "151" and pods.resource_version == "201"
    assert set(state.cluster.index) == {"gpu-001", "gpu-002"}
    assert state.cluster.gpu_free[state.cluster.index["gpu-001"], 7] == 0
    assert ("watch", "nodes", "100") in api.calls
    assert metrics.relists.labels("nodes")._value.get() == 1


def test_410_gone_lists_again_and_other_errors_retry_from_the_same_version():
    api = FakeKubeAPI()
    api.objects["nodes"] = [P.node("gpu-000")]
    state, metrics, nodes, *_ = setup(api)
    api.watch_scripts["nodes"] = [("ADDED", with_version(P.node("gpu-001"), "120")),
                                  WatchExpired("too old resource version", 410)]
    api.fail_next("watch", KubeAPIError("connection reset"))
    runner = threading.Thread(target=nodes.run, daemon=True)
    runner.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and [c for c in api.calls if c[0] == "list"].__len__() < 2:
        time.sleep(0.01)
    nodes.stop()
    runner.join(5)
    lists = [c for c in api.calls if c == ("list", "nodes")]
    watches = [c for c in api.calls if c[0] == "watch"]
    assert len(lists) >= 2  # the start, then after 410
    assert watches[0] == ("watch", "nodes", "100") and watches[1] == ("watch", "nodes", "100")  # retry, same RV
    assert metrics.relists.labels("nodes")._value.get() >= 2
    assert set(state.cluster.index) == {"gpu-000"}  # the relist replaced what the watch had added


def test_bad_objects_from_a_watch_are_skipped_without_stopping_it():
    api = FakeKubeAPI()
    state, _, nodes, pods, _ = setup(api)
    broken = P.node("broken")
    broken["status"]["allocatable"]["cpu"] = "lots"
    api.watch_scripts["nodes"] = [("ADDED", broken), ("ADDED", P.node("fine"))]
    bad_pod = P.pod("bad")
    bad_pod["spec"]["containers"] = "oops"
    api.watch_scripts["pods"] = [("ADDED", bad_pod), ("ADDED", P.pod("ok", node_name="fine", phase="Running"))]
    nodes.step()
    pods.step()
    assert set(state.cluster.index) == {"fine"} and len(state.ledger) == 1


def synced_on_one_node(*pod_objects):
    """A fake API with node gpu-000 and these pods, and the state and pod informer after their first list."""
    api = FakeKubeAPI()
    api.objects["nodes"] = [P.node("gpu-000")]
    api.objects["pods"] = list(pod_objects)
    state, _, nodes, pods, _ = setup(api)
    nodes.step()
    pods.step()
    return api, state, pods


def test_pods_deleted_by_the_watch_give_their_gpus_back():
    running = P.pod("r", gpus=8, node_name="gpu-000", phase="Running")
    api, state, pods = synced_on_one_node(running)
    assert state.cluster.gpu_free.sum() == 0
    api.watch_scripts["pods"] = [("DELETED", running)]
    pods.step()
    assert state.cluster.gpu_free.sum() == 8000


def test_a_resource_the_server_does_not_serve_is_retried_at_the_longest_backoff(caplog):
    from gpufleet.core.kube.informer import Informer

    caplog.set_level(logging.INFO, logger="gpufleet.core.kube.informer")

    class Absent:
        calls = 0

        def list(self, resource):
            Absent.calls += 1
            raise KubeAPIError("GET /apis/gpufleet.io/v1alpha1/placementpolicies: 404 Not Found", 404)

        def watch(self, *args):
            raise AssertionError("no watch without a list")

    class Sink:
        def replace(self, objects):
            raise AssertionError

        def apply(self, kind, obj):
            raise AssertionError

    informer = Informer(Absent(), "placementpolicies", Sink(),
                        InformerConfig(watch_timeout_s=1, backoff_s=0.01, backoff_max_s=0.2, jitter=0.0))
    informer.start()
    time.sleep(0.5)
    informer.stop()
    assert 2 <= Absent.calls <= 4  # every 0.2 s, not every 0.01 s doubling
    assert len([r for r in caplog.records if "not served" in r.getMessage()]) == 1
    assert not informer.synced.is_set()


def test_a_pod_is_parsed_again_only_when_a_field_the_extender_reads_changed(monkeypatch):
    import copy

    from gpufleet.scheduler.extender import informer as extender_informer

    parsed = []
    real_parse = extender_informer.parse_pod
    monkeypatch.setattr(extender_informer, "parse_pod", lambda obj: parsed.append(obj) or real_parse(obj))
    api = FakeKubeAPI()
    api.objects["nodes"] = [P.node("gpu-000")]
    placed = P.pod("q", gpus=1, annotations={"gpufleet.io/gpu-ids": "0"})  # bound by a binder that annotates first
    api.objects["pods"] = [P.pod("p", gpus=2), placed]
    state, _, nodes, pods, _ = setup(api)
    nodes.step()
    pods.step()
    assert len(parsed) == 2
    placed = copy.deepcopy(placed)
    placed["spec"]["nodeName"] = "gpu-000"
    bound = P.pod("p", gpus=2, node_name="gpu-000", annotations={"gpufleet.io/gpu-ids": "3,5"})
    running = copy.deepcopy(bound)
    running["status"].update(phase="Running", podIP="10.0.0.7")
    ready = with_version(copy.deepcopy(running), "302")
    ready["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    moved = copy.deepcopy(ready)
    moved["metadata"]["annotations"]["gpufleet.io/gpu-ids"] = "6,7"
    resized = copy.deepcopy(moved)
    resized["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = "oops"
    api.watch_scripts["pods"] = [("MODIFIED", placed), ("MODIFIED", bound), ("MODIFIED", running),
                                 ("MODIFIED", ready), ("MODIFIED", moved), ("MODIFIED", resized)]
    pods.step()
    assert len(parsed) == 5  # the annotation (bind), the annotation again, the bad spec (rejected)
    assert state.pending_pod(bound["metadata"]["uid"]) is None
    assert state.cluster.gpu_free[0].tolist() == [0] + [1000] * 5 + [0, 0]  # q where its node came; p moved
    finished = copy.deepcopy(moved)
    finished["status"]["phase"] = "Succeeded"
    api.watch_scripts["pods"] = [("MODIFIED", resized), ("MODIFIED", finished), ("DELETED", placed)]
    pods.step()
    assert len(parsed) == 6  # the bad spec is parsed (and reported) each time; the phase is copied
    assert state.cluster.gpu_free[0].sum() == 8000
    for listed in (moved, ready):  # relists: reused (back to Running), parsed on a change
        api.objects["pods"] = [listed]
        pods.resource_version = None
        pods.step()
        assert state.cluster.gpu_free[0].sum() == 6000
    assert len(parsed) == 7 and state.cluster.gpu_free[0].tolist() == [1000] * 3 + [0, 1000, 0, 1000, 1000]


def test_a_pod_whose_owner_changed_is_parsed_again_and_leaves_or_joins_the_learnt_mix():
    import copy

    pod = P.pod("etl-0", gpus=0, node_name="gpu-000", phase="Running")
    api, state, pods = synced_on_one_node(pod)
    uid = pod["metadata"]["uid"]
    assert not state.ledger.get(uid).per_node
    adopted = copy.deepcopy(pod)
    adopted["metadata"]["ownerReferences"][0].update(kind="DaemonSet", apiVersion="apps/v1")
    api.watch_scripts["pods"] = [("MODIFIED", adopted)]
    pods.step()
    assert state.ledger.get(uid).per_node


def test_a_pod_whose_labels_changed_is_parsed_again_with_its_new_labels():
    import copy

    pending = P.pod("p", gpus=1)
    api, state, pods = synced_on_one_node(pending)
    uid = pending["metadata"]["uid"]
    assert state.pending_pod(uid).labels == pending["metadata"]["labels"]
    relabelled = copy.deepcopy(pending)
    relabelled["metadata"]["labels"] = {"app": "notebook"}
    api.watch_scripts["pods"] = [("MODIFIED", relabelled)]
    pods.step()
    assert state.pending_pod(uid).labels == {"app": "notebook"}
