"""Component command lines and the shared scheduler configuration."""

from pathlib import Path

import pytest
import yaml

from gpufleet.scheduler.localcluster import components
from gpufleet.scheduler.localcluster.binaries import Binaries

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "deploy" / "scheduler" / "kube-scheduler-config.yaml"
KWOK_CONFIG = REPO / "deploy" / "local" / "kwok" / "kwok-config.yaml"


def test_the_shared_scheduler_config_has_the_gpufleet_profile_and_extender_contract():
    config = yaml.safe_load(TEMPLATE.read_text())
    assert [p["schedulerName"] for p in config["profiles"]] == ["default-scheduler", "gpufleet-scheduler"]
    (extender,) = config["extenders"]
    assert (extender["filterVerb"], extender["prioritizeVerb"], extender["bindVerb"]) == ("filter", "prioritize", "bind")
    assert extender["nodeCacheCapable"] is True and extender["ignorable"] is True
    assert extender["managedResources"] == [{"name": "nvidia.com/gpu", "ignoredByScheduler": False},
                                            {"name": "gpufleet.io/gpu-milli", "ignoredByScheduler": False}]
    assert isinstance(extender["weight"], int) and extender["weight"] > 0


def test_local_rewrite_points_at_the_local_extender_and_kubeconfig(tmp_path):
    config = components.scheduler_config(TEMPLATE, tmp_path / "k.kubeconfig", "http://127.0.0.1:9999/")
    assert config["extenders"][0]["urlPrefix"] == "http://127.0.0.1:9999"
    assert config["clientConnection"]["kubeconfig"] == str(tmp_path / "k.kubeconfig")
    assert config["leaderElection"]["leaderElect"] is False
    assert yaml.safe_load(TEMPLATE.read_text())["leaderElection"]["leaderElect"] is True


def test_without_an_extender_the_scheduler_config_has_none(tmp_path):
    config = components.scheduler_config(TEMPLATE, tmp_path / "k", None)
    assert "extenders" not in config
    assert len(config["profiles"]) == 2


def test_a_broken_template_is_reported_with_its_path(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Something\n")
    with pytest.raises(components.ConfigFileError, match="bad.yaml"):
        components.scheduler_config(bad, tmp_path / "k", None)


def test_kwok_stages_move_nodes_to_ready_and_pods_to_running_and_done():
    documents = [doc for doc in yaml.safe_load_all(KWOK_CONFIG.read_text()) if doc]
    assert documents[0]["kind"] == "KwokConfiguration"
    names = [doc["metadata"]["name"] for doc in documents if doc["kind"] == "Stage"]
    assert names == ["node-initialize", "node-heartbeat-with-lease", "pod-ready", "pod-complete",
                     "pod-complete-after-delay", "pod-delete"]


def test_every_component_listens_on_loopback_only(tmp_path):
    binaries = Binaries(*(tmp_path / n for n in ("etcd", "a", "c", "s", "kwok")))
    paths = components.Paths(tmp_path)
    ports = components.Ports(1, 2, 3, 4, 5, 6)
    from gpufleet.scheduler.localcluster.certs import Pki

    pki = Pki(tmp_path)
    specs = [components.etcd(binaries, paths, ports), components.kube_apiserver(binaries, paths, ports, pki),
             components.kube_controller_manager(binaries, paths, ports, pki),
             components.kube_scheduler(binaries, paths, ports, TEMPLATE, None),
             components.kwok(binaries, paths, ports, KWOK_CONFIG)]
    for spec in specs:
        for arg in spec.argv:
            for word in ("0.0.0.0", "localhost"):
                assert word not in arg, (spec.name, arg)
            if "url" in arg or "address" in arg:
                assert "127.0.0.1" in arg, (spec.name, arg)


def test_kube_scheduler_gets_feature_gates_only_when_asked(tmp_path):
    binaries = Binaries(*(tmp_path / n for n in ("etcd", "a", "c", "s", "kwok")))
    paths = components.Paths(tmp_path)
    ports = components.Ports(1, 2, 3, 4, 5, 6)
    plain = components.kube_scheduler(binaries, paths, ports, TEMPLATE, None)
    assert not [a for a in plain.argv if a.startswith("--feature-gates")]
    gated = components.kube_scheduler(binaries, paths, ports, TEMPLATE, None, feature_gates="OpportunisticBatching=false")
    assert "--feature-gates=OpportunisticBatching=false" in gated.argv
