"""PlacementPolicy ``workloadMix.source: ConfigMap`` without a cluster: the key is read with the
``--workload-mix`` reader, a missing ConfigMap/key or a bad pod list stalls the policy naming both
while the last good mix keeps running, an edit applies at once, and the pods of that policy (only
those) are scored against that mix."""

from __future__ import annotations

import json
import threading
import time

import pytest

from gpufleet.scheduler.extender.mixconfig import MixError, parse_mix
from gpufleet.scheduler.extender.placementconfig import PlacementPolicies
from gpufleet.scheduler.extender.pods import parse_pod
from gpufleet.scheduler.extender.scoring import Scorer
from gpufleet.scheduler.extender.wire import parse_scheduling_args
from gpufleet.scheduler.workload import DEFAULT_MIX, PodShape
from tests.extender import payloads as P
from tests.extender.conftest import make_rig
from tests.extender.test_scoring import running, state_of
from tests.gitops.test_placement_config import RecordingPatcher, obj, team, wait_calls

HEADER = "name,cpu_milli,memory_mib,num_gpu,gpu_milli\n"
#: Only 1-GPU pods: packing the most-used node strands nothing.
SINGLES = HEADER + "s1,1000,1024,1,1000\n"
#: Mostly 2-GPU pods: a node left with one free GPU strands it.
PAIRS = HEADER + "p1,1000,1024,2,1000\np2,1000,1024,2,1000\np3,1000,1024,2,1000\ns1,1000,1024,1,1000\n"
REF = {"namespace": "mixes", "name": "fgd-mix", "key": "pods.csv"}


def mix_policy(generation: int, ref: dict = REF, **spec) -> dict:
    return obj("ml", generation, team("ml", policy="fgd", workloadMix={"source": "ConfigMap", "configMap": ref},
                                      **spec))


def configmap(data: dict[str, str], name: str = "fgd-mix") -> dict:
    return {"metadata": {"name": name, "namespace": "mixes"}, "data": data}


def stalled_message(patcher: RecordingPatcher) -> str:
    conditions = {c["type"]: c for c in patcher.calls[-1][1]["status"]["conditions"]}
    assert conditions["Stalled"]["reason"] == "WorkloadMixUnavailable", conditions
    return conditions["Ready"]["message"]


def test_the_key_is_read_like_the_workload_mix_file_and_errors_name_the_configmap():
    mix = parse_mix("ConfigMap mixes/fgd-mix key pods.csv", PAIRS)
    assert mix.shapes == (PodShape(1000, 1000, 2, ()), PodShape(1000, 1000, 1, ()))
    assert mix.probs == (0.75, 0.25)
    with pytest.raises(MixError, match=r"ConfigMap mixes/fgd-mix key pods.csv:2: column num_gpu must be an integer"):
        parse_mix("ConfigMap mixes/fgd-mix key pods.csv", HEADER + "a,1000,1024,two,1000\n")
    with pytest.raises(MixError, match="missing column"):
        parse_mix("ConfigMap mixes/fgd-mix key pods.csv", "name,cpu\n")


def test_a_missing_configmap_key_or_bad_list_stalls_the_policy_and_the_last_good_mix_keeps_running():
    patcher = RecordingPatcher()
    policies = PlacementPolicies(patcher)
    policies.start()
    try:
        policies.namespaces.replace([{"metadata": {"name": "a", "labels": {"team": "ml"}}}])
        sink = policies.mixes.sink("mixes")
        sink.replace([])
        policies.apply("ADDED", mix_policy(1))
        wait_calls(patcher, 1)
        message = stalled_message(patcher)
        assert "ConfigMap mixes/fgd-mix key pods.csv" in message and "not found" in message
        assert "nothing of this object is in effect" in message
        assert policies.for_namespace("a") is None

        sink.apply("ADDED", configmap({"pods.csv": PAIRS}))  # created: the policy applies at once
        wait_calls(patcher, 2)
        assert {c["type"] for c in patcher.calls[-1][1]["status"]["conditions"]} == {"Ready"}
        assert "workload mix from ConfigMap mixes/fgd-mix key pods.csv (2 shapes)" in \
            patcher.calls[-1][1]["status"]["conditions"][0]["message"]
        pairs = policies.for_namespace("a").mix
        assert pairs == parse_mix("x", PAIRS)

        sink.apply("MODIFIED", configmap({"pods.csv": SINGLES}))  # edited: hot reload
        wait_calls(patcher, 3)
        assert policies.for_namespace("a").mix.shapes == (PodShape(1000, 1000, 1, ()),)

        sink.apply("MODIFIED", configmap({"pods.csv": HEADER + "a,1000,1024,two,1000\n"}))  # bad list
        wait_calls(patcher, 4)
        message = stalled_message(patcher)
        assert "ConfigMap mixes/fgd-mix key pods.csv" in message and "column num_gpu" in message
        assert "generation 1 (policy fgd) with its workload mix keeps running" in message
        assert policies.for_namespace("a").mix.shapes == (PodShape(1000, 1000, 1, ()),)

        sink.apply("MODIFIED", configmap({"other.csv": PAIRS}))  # the key is gone
        wait_calls(patcher, 5)
        assert "the ConfigMap has no key pods.csv" in stalled_message(patcher)
        sink.apply("MODIFIED", configmap({"other.csv": PAIRS}))  # same verdict: no status write
        sink.apply("ADDED", configmap({"pods.csv": PAIRS}, name="unrelated"))
        policies.apply("MODIFIED", mix_policy(2, {**REF, "key": "other.csv"}))  # a new generation fixes it
        wait_calls(patcher, 6)
        assert policies.for_namespace("a").generation == 2 and policies.for_namespace("a").mix == pairs

        sink.apply("DELETED", configmap({}))  # deleted: stalled, generation 2 keeps its mix
        wait_calls(patcher, 7)
        assert "ConfigMap fgd-mix not found in namespace mixes" in stalled_message(patcher)
        assert policies.for_namespace("a").mix == pairs
    finally:
        policies.stop()


def test_a_configmap_that_is_not_read_yet_stalls_naming_the_rbac_it_needs():
    policies = PlacementPolicies()
    policies.namespaces.replace([{"metadata": {"name": "a", "labels": {"team": "ml"}}}])
    policies.apply("ADDED", mix_policy(1))
    assert policies.for_namespace("a") is None
    assert "get/list/watch on configmaps in namespace mixes" in policies._verdicts["ml"].message
    policies.mixes.sink("mixes").replace([configmap({"pods.csv": SINGLES})])  # the first list arrives
    assert policies.for_namespace("a").mix == parse_mix("x", SINGLES)


class QuietConfigMaps:
    """A ListWatch whose ConfigMap lists are empty and whose watches stay open (until a timeout)."""

    def __init__(self) -> None:
        self.listed: list[str] = []

    def list(self, resource: str):
        self.listed.append(resource)
        return [], "1"

    def watch(self, resource: str, resource_version: str, timeout_s: int):
        threading.Event().wait(0.05)
        return iter(())


def test_configmaps_are_watched_only_where_a_policy_refers_to_one():
    api = QuietConfigMaps()
    policies = PlacementPolicies(api=api)
    try:
        policies.apply("ADDED", mix_policy(1))
        assert policies.mixes.watched == {"mixes"}
        policies.apply("MODIFIED", mix_policy(2, {**REF, "namespace": "other"}))  # the mix moved
        assert policies.mixes.watched == {"other"}
        policies.apply("DELETED", mix_policy(2))
        assert policies.mixes.watched == set()
        policies.apply("ADDED", mix_policy(3))  # referred to again: watched again
        assert policies.mixes.watched == {"mixes"}
        policies.replace([])  # a re-list without it
        assert policies.mixes.watched == set()
        deadline = time.monotonic() + 10
        while "/api/v1/namespaces/other/configmaps" not in api.listed and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "/api/v1/namespaces/other/configmaps" in api.listed  # it was watched for a while
    finally:
        policies.stop()


def two_nodes():
    """``three-free`` and ``two-free``: 8-GPU nodes with 3 and 2 GPUs free."""
    return state_of([P.node("three-free"), P.node("two-free")],
                    [running("a", "three-free", 5, "0,1,2,3,4"), running("b", "two-free", 6, "0,1,2,3,4,5")])


@pytest.mark.parametrize("policy", ["fgd", "fgd-strand", "cost"])
def test_the_mix_decides_the_best_node(policy):
    state, names = two_nodes(), ["three-free", "two-free"]
    pod = parse_pod(P.pod(gpus=1))
    scorer = Scorer()
    singles = scorer.rank(state, pod, policy, names, mix=parse_mix("x", SINGLES))
    pairs = scorer.rank(state, pod, policy, names, mix=parse_mix("x", PAIRS))
    assert names[singles.best] == "two-free"  # 1-GPU pods only: pack the fuller node
    assert names[pairs.best] == "three-free"  # 2-GPU pods: keep a pair free on each node
    assert scorer.mix == DEFAULT_MIX  # a policy's mix leaves the scorer's own alone


def scores_of(rig, pod) -> dict[str, int]:
    body = parse_scheduling_args(P.names_args(pod, ["three-free", "two-free"]))
    return {h["Host"]: h["Score"] for h in json.loads(rig.extender.prioritize(body))}


def test_the_pods_of_a_configmap_policy_are_scored_with_its_mix_and_other_pods_with_the_scorers():
    policies = PlacementPolicies()
    policies.namespaces.replace([{"metadata": {"name": "ml", "labels": {"team": "ml"}}}])
    policies.mixes.sink("mixes").replace([configmap({"pods.csv": SINGLES})])
    policies.apply("ADDED", mix_policy(1))

    def scores(namespace: str) -> dict[str, int]:  # on a fresh rig: a prioritize assumes its best node
        rig = make_rig([P.node("three-free"), P.node("two-free")],
                       [running("a", "three-free", 5, "0,1,2,3,4"), running("b", "two-free", 6, "0,1,2,3,4,5")],
                       namespaces=[P.namespace("ml"), P.namespace("other", placement="fgd")])
        rig.extender.scorer = Scorer(mix=parse_mix("flag", PAIRS))  # the --workload-mix flag's mix
        rig.extender.placements = policies
        body = parse_scheduling_args(P.names_args(P.pod("p-0", namespace=namespace), ["three-free", "two-free"]))
        return {h["Host"]: h["Score"] for h in json.loads(rig.extender.prioritize(body))}

    assert scores("ml")["two-free"] == 10  # the policy's ConfigMap mix: 1-GPU pods
    assert scores("other")["three-free"] == 10  # no policy: the flag's mix, 2-GPU pods
