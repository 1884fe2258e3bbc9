"""The binary cache: the versions Python expects are the ones deploy/local pins and build.sh uses."""

import re
import subprocess
from pathlib import Path

import pytest

from gpufleet.scheduler.localcluster import binaries

REPO = Path(__file__).resolve().parents[2]
LOCAL = REPO / "deploy" / "local"


@pytest.mark.parametrize(("component", "module"), [
    ("kubernetes", "k8s.io/kubernetes"),
    ("etcd", "go.etcd.io/etcd/server/v3"),
    ("kwok", "sigs.k8s.io/kwok"),
])
def test_pinned_versions_match_the_go_modules(component, module):
    gomod = (LOCAL / component / "go.mod").read_text()
    match = re.search(rf"^require {re.escape(module)} (v\S+)$", gomod, re.MULTILINE)
    assert match, f"{component}/go.mod does not require {module}"
    assert binaries.PINNED[component] == match.group(1)


def test_every_staging_module_is_replaced_by_the_matching_published_version():
    gomod = (LOCAL / "kubernetes" / "go.mod").read_text()
    k8s_minor = binaries.PINNED["kubernetes"].split(".", 1)[1]  # v1.37.2 -> 37.2
    replaced = re.findall(r"^\s+(k8s\.io/\S+) => k8s\.io/\S+ (v\S+)$", gomod, re.MULTILINE)
    assert len(replaced) >= 30
    assert {version for _, version in replaced} == {f"v0.{k8s_minor}"}


def test_build_script_and_python_agree_on_the_cache_folder(tmp_path):
    result = subprocess.run(["bash", str(LOCAL / "build.sh"), "--print-dir"], capture_output=True, text=True,
                            env={"GPUFLEET_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin"}, check=True)
    assert Path(result.stdout.strip()) == tmp_path / "bin" / binaries.version_key()


def test_missing_binaries_are_named_with_the_build_command(tmp_path):
    (tmp_path / "etcd").write_text("#!/bin/sh\n")
    (tmp_path / "etcd").chmod(0o755)
    with pytest.raises(binaries.BinariesMissingError) as err:
        binaries.find_binaries(tmp_path)
    message = str(err.value)
    assert "kube-apiserver" in message and "kwok" in message and "etcd," not in message
    assert "deploy/local/build.sh" in message


def test_bin_dir_environment_variable_overrides_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("GPUFLEET_BIN_DIR", str(tmp_path))
    assert binaries.default_bin_dir() == tmp_path
