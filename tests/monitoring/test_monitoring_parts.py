"""The parts of `cluster up --monitoring` without a cluster: the generated Prometheus config (checked by
promtool), the fake kubelets' answer from API pods, the simulated GPU scripts, the controller settings."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from gpufleet.autoscaler.controller.config import ControllerConfig
from gpufleet.autoscaler.gpu.script import parse_scenario
from gpufleet.autoscaler.kubelet.mirror import node_containers
from gpufleet.scheduler.localcluster import agents, controller, prometheus
from gpufleet.scheduler.localcluster.certs import write_pki
from gpufleet.scheduler.localcluster.nodes import uniform_nodes

PORTS = {"etcd_client": 2379, "apiserver": 6443, "controller_manager": 10257, "scheduler": 10259}


def _config(tmp_path: Path) -> dict:
    pki = write_pki(tmp_path / "pki")
    targets = prometheus.control_plane_targets(PORTS, pki) + prometheus.gpufleet_targets(8889, [9451, 9452], 9460)
    return prometheus.scrape_config(targets, prometheus.rule_files(Path(__file__).resolve().parents[2]))


def test_the_generated_config_passes_promtool_with_the_rules(tmp_path: Path, promtool: Path) -> None:
    path = prometheus.write_config(tmp_path / "prometheus.yml", _config(tmp_path))
    result = subprocess.run([str(promtool), "check", "config", str(path)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "gpufleet.rules.yaml" in path.read_text()


def test_every_job_is_scraped_with_the_cluster_label_and_agents_keep_their_pod_labels(tmp_path: Path) -> None:
    jobs = {c["job_name"]: c for c in _config(tmp_path)["scrape_configs"]}
    assert set(jobs) == {"kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd",
                         "gpufleet-extender", "gpufleet-agent", "gpufleet-controller"}
    assert all(sc["labels"]["cluster"] == "local" for c in jobs.values() for sc in c["static_configs"])
    assert [t for sc in jobs["gpufleet-agent"]["static_configs"] for t in sc["targets"]] == \
        ["127.0.0.1:9451", "127.0.0.1:9452"]
    assert jobs["gpufleet-agent"]["honor_labels"] and not jobs["gpufleet-extender"]["honor_labels"]
    apiserver = jobs["kube-apiserver"]["tls_config"]
    assert apiserver["ca_file"].endswith("ca.crt") and apiserver["cert_file"].endswith("admin.crt")
    assert jobs["etcd"]["scheme"] == "http" and "tls_config" not in jobs["etcd"]


def _pod(name: str, gpus: str | None = None, milli: str | None = None, ids: str | None = None,
         phase: str = "Running") -> dict:
    limits = {k: v for k, v in (("nvidia.com/gpu", gpus), ("gpufleet.io/gpu-milli", milli)) if v}
    annotations = {"gpufleet.io/gpu-ids": ids} if ids else {}
    return {"metadata": {"name": name, "namespace": "ml", "annotations": annotations},
            "spec": {"containers": [{"name": "main", "resources": {"limits": limits}}]}, "status": {"phase": phase}}


def test_the_fake_kubelet_reports_the_extenders_gpu_ids_and_gives_others_free_devices() -> None:
    got = node_containers([_pod("a", "2", ids="3,4"), _pod("plain", "1"), _pod("share-1", milli="500", ids="5"),
                           _pod("share-2", milli="250", ids="5"), _pod("cpu-only"), _pod("done", "1", ids="6",
                                                                                            phase="Succeeded")], 8)
    by_pod = {c.pod: c.device_ids for c in got}
    assert by_pod == {"a": ("3", "4"), "plain": ("0",), "share-1": ("5",), "share-2": ("5",)}


def test_the_fake_kubelet_ignores_gpu_ids_outside_the_node_and_skips_pods_that_do_not_fit() -> None:
    got = node_containers([_pod("a", "1", ids="9"), _pod("b", "2"), _pod("c", "1")], 2)
    assert {c.pod: c.device_ids for c in got} == {"a": ("0",), "c": ("1",)}  # b (2 GPUs) does not fit


def test_the_simulated_gpu_scripts_are_valid_and_the_first_node_shows_mig_and_a_lost_gpu() -> None:
    spec = uniform_nodes(1, 8)[0]
    plain = parse_scenario(agents.gpu_script(spec))
    lost = parse_scenario(agents.gpu_script(spec, one_lost=True))
    assert len(plain.gpus) == 8 and plain.gpus[0].model == "NVIDIA A100-SXM4-80GB"
    assert not any(p.lost for g in plain.gpus for p in g.phases) and not any(g.mig for g in plain.gpus)
    assert len(lost.gpus) == 10 and lost.gpus[:8] == plain.gpus  # the advertised 8 are the same
    assert [m.profile for m in lost.gpus[8].mig] == ["3g.40gb", "3g.40gb"] and lost.gpus[9].phases[-1].lost


def test_the_local_controller_settings_load_and_act_within_seconds() -> None:
    config = ControllerConfig.from_dict(yaml.safe_load(yaml.safe_dump(controller.LOCAL_SETTINGS)))
    assert config.reclaim.policy == "window" and config.reclaim.window.window_s <= 10
    assert config.reclaim.detection.min_idle_s <= 10 and config.pass_interval_s <= 2


@pytest.mark.parametrize("missing", ["prometheus", "promtool"])
def test_a_missing_binary_names_the_install_command(missing: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("GPUFLEET_PROMETHEUS", raising=False)
    with pytest.raises(prometheus.PrometheusError, match="install-prometheus.sh"):
        prometheus.find_binary(missing)
