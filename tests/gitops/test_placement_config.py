"""PlacementPolicies in the extender without a cluster: which policy a namespace and a pod get (pod
annotation > a policy whose podSelector selects the pod > a namespace-wide policy), Stalled objects keep
the last good generation, status is written once per change."""

from __future__ import annotations

import threading
import time

from gpufleet.scheduler.extender.placementconfig import PlacementPolicies, evaluate
from gpufleet.scheduler.extender.pods import parse_pod
from tests.extender import payloads as P
from tests.extender.conftest import eight_gpu_nodes, make_rig

#: A ConfigMap mix this extender has not read (no such ConfigMap here: Stalled).
CONFIG_MAP_MIX = {"source": "ConfigMap", "configMap": {"namespace": "a", "name": "mix", "key": "pods.csv"}}


class RecordingPatcher:
    """Records status patches; can fail the next one."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.fail_next = 0
        self.written = threading.Event()

    def patch(self, path: str, body, patch_type: str = "merge") -> dict:
        from gpufleet.core.kube.errors import KubeAPIError

        if self.fail_next:
            self.fail_next -= 1
            raise KubeAPIError("injected", 500)
        self.calls.append((path, body))
        self.written.set()
        return {}


def obj(name: str, generation: int, spec: dict, created: str = "2026-01-01T00:00:00Z") -> dict:
    return {"metadata": {"name": name, "generation": generation, "creationTimestamp": created}, "spec": spec}


def team(label: str, **extra) -> dict:
    return {"namespaceSelector": {"matchLabels": {"team": label}}, **extra}


def wait_calls(patcher: RecordingPatcher, count: int) -> None:
    deadline = time.monotonic() + 5
    while len(patcher.calls) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(patcher.calls) == count, patcher.calls


def test_a_namespace_gets_the_policy_that_selects_its_labels():
    policies = PlacementPolicies()
    policies.namespaces.replace([{"metadata": {"name": "a", "labels": {"team": "ml"}}},
                                 {"metadata": {"name": "b", "labels": {"team": "cv"}}}])
    policies.replace([obj("ml", 1, team("ml", policy="binpack")), obj("cv", 1, team("cv", policy="cost",
                                                                                    weights={"fragmentation": 2}))])
    assert policies.for_namespace("a").policy == "binpack"
    assert policies.for_namespace("b").cost_options().fragmentation_weight == 2
    assert policies.for_namespace("elsewhere") is None
    policies.namespaces.apply("MODIFIED", {"metadata": {"name": "a", "labels": {"team": "cv"}}})
    assert policies.for_namespace("a").name == "cv"


def test_of_two_policies_selecting_a_namespace_the_older_one_applies():
    policies = PlacementPolicies()
    policies.namespaces.replace([{"metadata": {"name": "a", "labels": {"team": "ml", "tier": "gpu"}}}])
    policies.replace([obj("young", 1, team("ml", policy="spread"), created="2026-02-01T00:00:00Z"),
                      obj("old", 1, {"namespaceSelector": {"matchLabels": {"tier": "gpu"}}, "policy": "fgd"})])
    assert policies.for_namespace("a").name == "old"


def test_an_object_that_cannot_be_applied_is_stalled_and_the_last_good_generation_keeps_running():
    patcher = RecordingPatcher()
    policies = PlacementPolicies(patcher)
    policies.start()
    try:
        policies.namespaces.replace([{"metadata": {"name": "a", "labels": {"team": "ml"}}}])
        policies.apply("ADDED", obj("ml", 1, team("ml", policy="spread")))
        wait_calls(patcher, 1)
        policies.apply("MODIFIED", obj("ml", 2, team("ml", policy="binpack", workloadMix=CONFIG_MAP_MIX)))
        wait_calls(patcher, 2)
        assert policies.for_namespace("a").policy == "spread"
        path, body = patcher.calls[-1]
        assert path == "/apis/gpufleet.io/v1alpha1/placementpolicies/ml/status"
        conditions = {c["type"]: c for c in body["status"]["conditions"]}
        assert conditions["Stalled"]["reason"] == "WorkloadMixUnavailable" and conditions["Ready"]["status"] == "False"
        assert body["status"]["observedGeneration"] == 2
        assert "generation 1 (policy spread) keeps running" in conditions["Ready"]["message"]
        # the status write comes back as a MODIFIED event with the same generation: nothing is written again
        policies.apply("MODIFIED", {**obj("ml", 2, team("ml", policy="binpack", workloadMix=CONFIG_MAP_MIX)),
                                    "status": body["status"]})
        patcher.fail_next = 1  # the next write fails once and is retried
        policies.apply("MODIFIED", obj("ml", 3, team("ml", policy="binpack")))
        wait_calls(patcher, 3)
        assert policies.for_namespace("a").policy == "binpack"
        assert {c["type"] for c in patcher.calls[-1][1]["status"]["conditions"]} == {"Ready"}
        policies.apply("DELETED", obj("ml", 3, team("ml")))
        assert policies.for_namespace("a") is None
    finally:
        policies.stop()


def test_evaluate_names_every_spec_error():
    verdict = evaluate(obj("x", 1, {"policy": "greedy"}))
    assert verdict.applied is None and verdict.reason == "InvalidSpec"
    assert "spec.namespaceSelector: required" in verdict.message and "spec.policy" in verdict.message


def pod_labelled(labels: dict[str, str], namespace: str = "a", annotations: dict[str, str] | None = None):
    obj = P.pod(namespace=namespace, annotations=annotations)
    obj["metadata"]["labels"] = labels
    return parse_pod(obj)


def test_a_pod_selector_policy_places_the_pods_it_selects_and_the_namespace_wide_one_the_rest():
    policies = PlacementPolicies()
    policies.namespaces.replace([{"metadata": {"name": "a", "labels": {"team": "ml"}}},
                                 {"metadata": {"name": "b", "labels": {"team": "cv"}}}])
    notebooks = {"matchLabels": {"app": "notebook"},
                 "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["prod"]},
                                      {"key": "gpu", "operator": "Exists"},
                                      {"key": "legacy", "operator": "DoesNotExist"},
                                      {"key": "size", "operator": "In", "values": ["s", "m"]}]}
    # the namespace-wide policy is the older one: a matching selector policy still wins
    policies.replace([obj("wide", 1, team("ml", policy="binpack")),
                      obj("notebooks", 1, team("ml", policy="spread", podSelector=notebooks),
                          created="2026-03-01T00:00:00Z")])
    selected = {"app": "notebook", "gpu": "1", "size": "m"}
    assert policies.for_pod("a", selected).name == "notebooks"
    assert policies.for_pod("a", {**selected, "tier": "dev"}).name == "notebooks"
    for unselected in ({**selected, "app": "trainer"}, {**selected, "tier": "prod"}, {"app": "notebook", "size": "m"},
                       {**selected, "legacy": ""}, {**selected, "size": "xl"}, {}):
        assert policies.for_pod("a", unselected).name == "wide", unselected
    assert policies.for_namespace("a").name == "wide"  # the namespace alone: namespace-wide policies only
    assert policies.for_pod("b", selected) is None  # the selector policy stays in its namespaces
    policies.apply("DELETED", obj("wide", 1, team("ml")))
    assert policies.for_pod("a", {"app": "trainer"}) is None and policies.for_namespace("a") is None
    assert policies.for_pod("a", selected).policy == "spread"


def test_of_two_selector_policies_selecting_a_pod_the_oldest_then_the_first_name_applies():
    policies = PlacementPolicies()
    policies.namespaces.replace([{"metadata": {"name": "a", "labels": {"team": "ml"}}}])
    policies.replace([obj("young", 1, team("ml", policy="spread", podSelector={"matchLabels": {"app": "nb"}}),
                          created="2026-02-01T00:00:00Z"),
                      obj("old-b", 1, team("ml", policy="binpack", podSelector={"matchExpressions": [
                          {"key": "app", "operator": "Exists"}]})),
                      obj("old-a", 1, team("ml", policy="fgd", podSelector={"matchLabels": {"gpu": "1"}}))])
    assert policies.for_pod("a", {"app": "nb"}).name == "old-b"
    assert policies.for_pod("a", {"app": "nb", "gpu": "1"}).name == "old-a"
    policies.apply("DELETED", obj("old-b", 1, team("ml")))
    assert policies.for_pod("a", {"app": "nb"}).name == "young"


def test_the_extender_places_by_annotation_then_pod_selector_policy_then_namespace_wide_policy():
    rig = make_rig(eight_gpu_nodes(2), namespaces=[P.namespace("a", placement="fgd")])
    extender = rig.extender
    policies = PlacementPolicies()
    policies.namespaces.replace([{"metadata": {"name": "a", "labels": {"team": "ml"}}}])
    policies.replace([obj("wide", 1, team("ml", policy="binpack")),
                      obj("cheap", 1, team("ml", policy="cost", podSelector={"matchLabels": {"app": "batch"}},
                                           weights={"fragmentation": 3}))])
    assert extender.policy_of(pod_labelled({"app": "batch"})) == "fgd"  # no PlacementPolicies: the namespace's
    extender.placements = policies
    batch = pod_labelled({"app": "batch"})
    assert extender.policy_of(batch) == "cost"
    assert extender.placing(batch)[1].cost_options().fragmentation_weight == 3
    assert extender.policy_of(pod_labelled({"app": "serve"})) == "binpack"
    assert extender.placing(pod_labelled({"app": "serve"}))[1].cost_options().fragmentation_weight != 3
    assert extender.policy_of(pod_labelled({"app": "batch"}, annotations={"gpufleet.io/placement": "spread"})) \
        == "spread"
    policies.apply("DELETED", obj("wide", 1, team("ml")))
    assert extender.policy_of(pod_labelled({"app": "serve"})) == "fgd"  # back to the namespace's annotation
