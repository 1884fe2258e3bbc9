"""`gpufleet cluster up --gitops`: a Git server, Flux and gpufleet's CRDs in the local cluster.

Steps, after the API server is ready: install gpufleet's CRDs and Flux's, start the Git server on
loopback with a ``fleet-config`` repository seeded from ``deploy/gitops/example/``, start
source-controller and kustomize-controller, and create the GitRepository and Kustomization of
``deploy/gitops/flux/`` pointed at that repository. Each step says what failed.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from gpufleet.core.config import crd as gpufleet_crds
from gpufleet.core.kube.client import KubernetesAPI
from gpufleet.core.kube.errors import KubeAPIError
from gpufleet.gitops import flux
from gpufleet.gitops.errors import GitOpsError
from gpufleet.scheduler.localcluster.processes import ProcessGroup, ProcessSpec

log = logging.getLogger(__name__)

REPOSITORY = "fleet-config"
EXAMPLE = Path("deploy/gitops/example")
FLUX_MANIFESTS = Path("deploy/gitops/flux")
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


@dataclass(frozen=True)
class GitOpsInfo:
    git_url: str
    git_root: str
    ports: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def install_crds(api: KubernetesAPI, crds: list[dict[str, Any]], timeout_s: float) -> None:
    """Create (or leave) each CRD and wait until all are Established."""
    for body in crds:
        try:
            api.post(CRD_PATH, body)
        except KubeAPIError as err:
            if err.status != 409:
                raise GitOpsError(f"installing CRD {body['metadata']['name']}: {err}") from err
    deadline = time.monotonic() + timeout_s
    for body in crds:
        name = body["metadata"]["name"]
        while True:
            obj = api.get(f"{CRD_PATH}/{name}") or {}
            if any(c.get("type") == "Established" and c.get("status") == "True"
                   for c in (obj.get("status") or {}).get("conditions") or []):
                break
            if time.monotonic() > deadline:
                raise GitOpsError(f"CRD {name} not Established after {timeout_s:.0f} s")
            time.sleep(0.1)


def install_gpufleet_crds(kubeconfig: Path, timeout_s: float) -> None:
    """gpufleet's CRDs, generated from the typed specs (what deploy/crds/ holds)."""
    api = KubernetesAPI.connect(str(kubeconfig))
    try:
        install_crds(api, [gpufleet_crds.crd(k) for k in gpufleet_crds.KINDS], timeout_s)
    finally:
        api.close()


def git(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise GitOpsError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def seed_repository(url: str, work: Path, source: Path, message: str = "gpufleet example config") -> None:
    """Clone ``url`` into ``work``, copy ``source``'s files in, commit and push to main."""
    git("clone", "--quiet", url, str(work))
    for path in sorted(source.iterdir()):
        if path.is_file():
            (work / path.name).write_text(path.read_text())
    git("add", "-A", cwd=work)
    git("-c", "user.name=gpufleet", "-c", "user.email=gpufleet@localhost", "commit", "--quiet", "-m", message,
        cwd=work)
    git("push", "--quiet", "origin", "HEAD:main", cwd=work)


def flux_objects(repo_root: Path, url: str) -> list[dict[str, Any]]:
    """The GitRepository and Kustomization of deploy/gitops/flux/, pointed at ``url``."""
    objects = []
    for path in sorted((repo_root / FLUX_MANIFESTS).glob("*.yaml")):
        for obj in yaml.safe_load_all(path.read_text()):
            if obj and obj.get("kind") == "GitRepository":
                obj["spec"]["url"] = url
            if obj:
                objects.append(obj)
    return objects


def start(processes: ProcessGroup, state_dir: Path, kubeconfig: Path, repo_root: Path, ports: list[int],
          timeout_s: float, say: Callable[[str], None], flux_dir: Path | None = None) -> GitOpsInfo:
    """Everything above; ``ports``: 6 free loopback ports (git, storage, 2 x metrics, 2 x health)."""
    from gpufleet.scheduler.localcluster import readiness

    binaries = flux.find_flux(flux_dir)
    git_port, storage, sc_metrics, sc_health, kc_metrics, kc_health = ports
    flux_ports = flux.FluxPorts(storage, sc_metrics, sc_health, kc_metrics, kc_health)
    api = KubernetesAPI.connect(str(kubeconfig))
    try:
        crds = [gpufleet_crds.crd(k) for k in gpufleet_crds.KINDS]
        crds += [d for p in binaries.crds for d in yaml.safe_load_all(p.read_text()) if d]
        install_crds(api, crds, timeout_s)
        say(f"CRDs installed: {len(gpufleet_crds.KINDS)} gpufleet, {len(crds) - len(gpufleet_crds.KINDS)} Flux")
        try:
            api.post("/api/v1/namespaces", {"metadata": {"name": flux.NAMESPACE}})
        except KubeAPIError as err:
            if err.status != 409:
                raise GitOpsError(f"creating namespace {flux.NAMESPACE}: {err}") from err

        git_root = state_dir / "git"
        bare = git_root / f"{REPOSITORY}.git"
        if not bare.exists():
            git("init", "--quiet", "--bare", "--initial-branch=main", str(bare))
            git("-C", str(bare), "config", "http.receivepack", "true")
        processes.start(ProcessSpec("git-server", [sys.executable, "-m", "gpufleet.gitops.gitserver",
                                                   str(git_root), str(git_port)]))
        url = f"http://127.0.0.1:{git_port}/{REPOSITORY}.git"
        readiness.wait_until("the Git server", readiness.http_ok(f"{url}/info/refs?service=git-upload-pack"),
                             timeout_s, check_alive=lambda: processes.check("git-server"))
        work = state_dir / "git-seed"
        if not work.exists():
            seed_repository(url, work, repo_root / EXAMPLE)
        say(f"Git server at {url} (seeded from {EXAMPLE})")

        processes.start(flux.source_controller(binaries, state_dir, kubeconfig, flux_ports))
        processes.start(flux.kustomize_controller(binaries, state_dir, kubeconfig, flux_ports))
        for name, port in (("source-controller", sc_health), ("kustomize-controller", kc_health)):
            waited = readiness.wait_until(f"{name} /readyz", readiness.http_ok(flux.health_url(port)), timeout_s,
                                          check_alive=lambda name=name: processes.check(name))
            say(f"{name} ready ({waited:.1f} s)")
        for obj in flux_objects(repo_root, url):
            plural = {"GitRepository": "gitrepositories", "Kustomization": "kustomizations"}[obj["kind"]]
            path = f"/apis/{obj['apiVersion']}/namespaces/{flux.NAMESPACE}/{plural}"
            try:
                api.post(path, obj)
            except KubeAPIError as err:
                if err.status != 409:
                    raise GitOpsError(f"creating {obj['kind']} {obj['metadata']['name']}: {err}") from err
        say("Flux GitRepository and Kustomization gpufleet-config created")
    finally:
        api.close()
    return GitOpsInfo(url, str(git_root), {"git": git_port, "flux_storage": storage, "source_health": sc_health,
                                           "kustomize_health": kc_health})
