"""Prometheus next to the local cluster: the binary, a generated scrape config, the process, queries.

``gpufleet cluster up --monitoring`` runs ``prometheus`` (Debian's package, or any 2.x/3.x on PATH,
or ``$GPUFLEET_PROMETHEUS``) on 127.0.0.1 with a config written here: the extender, the simulated
agents, the controller when one runs, and the control plane's own /metrics (kube-apiserver with the
admin client certificate, kube-controller-manager and kube-scheduler on their secure ports, etcd on
its client port). Every target carries ``cluster="local"`` so the dashboards' cluster variable has a
value; agents are scraped with ``honor_labels`` because their ``pod``/``namespace`` labels name the
workload (as dcgm-exporter's do), the same as deploy/monitoring's ServiceMonitor. The rules of
deploy/monitoring/rules/ are loaded, so recording rules the dashboards use exist here too.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gpufleet.scheduler.localcluster.certs import ADMIN, Pki
from gpufleet.scheduler.localcluster.processes import ProcessSpec

NAME = "prometheus"
LOOPBACK = "127.0.0.1"
CLUSTER_LABEL = "local"
#: Short, so rate() over Grafana's $__rate_interval (4 scrapes) has points within seconds of a start.
SCRAPE_INTERVAL_S = 2.0
INSTALL_HINT = ("install Prometheus: `bash .ci/install-prometheus.sh` (Debian/Ubuntu: apt-get install prometheus), "
                "or point $GPUFLEET_PROMETHEUS at a prometheus binary")
RULES_DIR = Path("deploy/monitoring/rules")


class PrometheusError(RuntimeError):
    """Prometheus is missing, did not start, or a query failed; the message says what to do."""


def find_binary(name: str = "prometheus") -> Path:
    """``prometheus`` or ``promtool``: ``$GPUFLEET_PROMETHEUS``'s folder first, then PATH."""
    override = os.environ.get("GPUFLEET_PROMETHEUS")
    if override:
        candidate = Path(override).parent / name if name != "prometheus" else Path(override)
        if candidate.is_file():
            return candidate
    found = shutil.which(name)
    if found is None:
        raise PrometheusError(f"`{name}` not found on PATH; {INSTALL_HINT}")
    return Path(found)


@dataclass(frozen=True)
class ScrapeTarget:
    """One endpoint to scrape; ``job`` groups targets into one scrape config."""

    job: str
    address: str  # host:port
    scheme: str = "http"
    path: str = "/metrics"
    labels: Mapping[str, str] = field(default_factory=dict)
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure_skip_verify: bool = False
    honor_labels: bool = False


def control_plane_targets(ports: Mapping[str, int], pki: Pki) -> list[ScrapeTarget]:
    """kube-apiserver, kube-controller-manager, kube-scheduler and etcd of one local cluster.

    The API server verifies against the cluster CA and takes the admin certificate; the controller
    manager and the scheduler serve self-signed certificates (so no verification) and check the
    admin certificate through the API server (the scheduler also allows anonymous /metrics)."""
    admin = {"cert_file": pki.client_cert(ADMIN), "key_file": pki.client_key(ADMIN)}
    return [
        ScrapeTarget("kube-apiserver", f"{LOOPBACK}:{ports['apiserver']}", "https", ca_file=pki.ca_cert, **admin),
        ScrapeTarget("kube-controller-manager", f"{LOOPBACK}:{ports['controller_manager']}", "https",
                     insecure_skip_verify=True, **admin),
        ScrapeTarget("kube-scheduler", f"{LOOPBACK}:{ports['scheduler']}", "https", insecure_skip_verify=True,
                     **admin),
        ScrapeTarget("etcd", f"{LOOPBACK}:{ports['etcd_client']}"),
    ]


def gpufleet_targets(extender_port: int | None, agent_ports: Sequence[int],
                     controller_port: int | None = None) -> list[ScrapeTarget]:
    """The extender, the agents (honouring their workload labels) and the controller, when present."""
    targets = []
    if extender_port is not None:
        targets.append(ScrapeTarget("gpufleet-extender", f"{LOOPBACK}:{extender_port}"))
    targets += [ScrapeTarget("gpufleet-agent", f"{LOOPBACK}:{port}", honor_labels=True) for port in agent_ports]
    if controller_port is not None:
        targets.append(ScrapeTarget("gpufleet-controller", f"{LOOPBACK}:{controller_port}"))
    return targets


def scrape_config(targets: Iterable[ScrapeTarget], rule_files: Sequence[Path] = (),
                  interval_s: float = SCRAPE_INTERVAL_S, cluster: str = CLUSTER_LABEL) -> dict[str, Any]:
    """A prometheus.yml (as a dict): one scrape config per job, ``cluster`` on every target."""
    jobs: dict[str, list[ScrapeTarget]] = {}
    for target in targets:
        jobs.setdefault(target.job, []).append(target)
    interval = f"{interval_s:g}s"
    configs = []
    for job, members in jobs.items():
        first = members[0]
        entry: dict[str, Any] = {"job_name": job, "scheme": first.scheme, "metrics_path": first.path,
                                 "honor_labels": first.honor_labels,
                                 "static_configs": [{"targets": [m.address], "labels": {"cluster": cluster, **m.labels}}
                                                    for m in members]}
        tls = {k: str(v) for k, v in (("ca_file", first.ca_file), ("cert_file", first.cert_file),
                                      ("key_file", first.key_file)) if v is not None}
        if first.insecure_skip_verify:
            tls["insecure_skip_verify"] = True
        if tls:
            entry["tls_config"] = tls
        configs.append(entry)
    return {"global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
            "rule_files": [str(p) for p in rule_files], "scrape_configs": configs}


def write_config(path: Path, config: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    return path


def rule_files(repo_root: Path) -> list[Path]:
    """The plain rule files of deploy/monitoring/rules/ (PrometheusRule objects are for the Operator)."""
    return sorted((repo_root / RULES_DIR).glob("*.rules.yaml"))


def prometheus_process(binary: Path, config: Path, data_dir: Path, port: int) -> ProcessSpec:
    return ProcessSpec(NAME, [
        str(binary),
        f"--config.file={config}",
        f"--storage.tsdb.path={data_dir}",
        "--storage.tsdb.retention.time=1d",
        f"--web.listen-address={LOOPBACK}:{port}",
        "--web.enable-lifecycle",
        "--log.level=warn",
    ])


class PrometheusClient:
    """The HTTP API of one Prometheus: instant and range queries, targets, label values."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def _get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=self.timeout_s) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as err:
            detail = err.read()[:300].decode(errors="replace")
            raise PrometheusError(f"GET {path} {dict(params or {})}: HTTP {err.code}: {detail}") from err
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise PrometheusError(f"GET {self.url}{path}: {err}; is Prometheus running?") from err
        if body.get("status") != "success":
            raise PrometheusError(f"GET {path} {dict(params or {})}: {body.get('error', body)}")
        return body["data"]

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=self.timeout_s) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant vector (or scalar as one unlabelled series) of ``expr``."""
        params = {"query": expr} | ({"time": f"{at:.3f}"} if at is not None else {})
        data = self._get("/api/v1/query", params)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[dict[str, Any]]:
        data = self._get("/api/v1/query_range", {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                                  "step": f"{step_s:g}"})
        return data["result"]

    def targets(self) -> list[dict[str, Any]]:
        return self._get("/api/v1/targets", {"state": "active"})["activeTargets"]

    def series_names(self) -> set[str]:
        return set(self._get("/api/v1/label/__name__/values"))

    def wait_until_scraped(self, jobs: Iterable[str], timeout_s: float, scrapes: int = 1) -> dict[str, int]:
        """Wait until every target of ``jobs`` is up and has been scraped ``scrapes`` times after the
        first success; return up targets per job. Raises with each target's last error."""
        wanted = set(jobs)
        deadline = time.monotonic() + timeout_s
        first_up: dict[str, float] = {}
        while True:
            targets = [t for t in self.targets() if t["labels"].get("job") in wanted]
            up = {t["scrapeUrl"] for t in targets if t["health"] == "up"}
            now = time.monotonic()
            for url in up:
                first_up.setdefault(url, now)
            seen = {t["labels"]["job"] for t in targets}
            settled = all(now - first_up.get(t["scrapeUrl"], now) >= scrapes * SCRAPE_INTERVAL_S for t in targets)
            if seen == wanted and len(up) == len(targets) and settled:
                counts: dict[str, int] = {}
                for t in targets:
                    counts[t["labels"]["job"]] = counts.get(t["labels"]["job"], 0) + 1
                return counts
            if now > deadline:
                down = [f"{t['scrapeUrl']}: {t['health']} {t.get('lastError', '')}" for t in targets
                        if t["scrapeUrl"] not in up]
                missing = sorted(wanted - seen)
                raise PrometheusError(f"targets not scraped within {timeout_s:.0f} s: down {down}, "
                                      f"jobs without targets {missing}")
            time.sleep(0.5)
