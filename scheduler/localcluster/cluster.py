"""Bringing the local cluster up and down, in order, with progress and clear failures.

Order: certificates and kubeconfigs, etcd, kube-apiserver (/readyz), the extender if any,
kube-controller-manager, kube-scheduler and kwok, the GPU nodes (all Ready), the default service
account. A failure at any step stops whatever was started, so ``up`` leaves nothing behind either.
The state folder keeps ``cluster.json`` (ports, paths, what was asked), pid files, logs, the PKI
and etcd's data (wiped at the next ``up``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gpufleet.scheduler.localcluster import components, extender, readiness
from gpufleet.scheduler.localcluster.binaries import Binaries, find_binaries
from gpufleet.scheduler.localcluster.certs import ADMIN, CONTROLLER_MANAGER, SCHEDULER, Pki, write_pki
from gpufleet.scheduler.localcluster.kubeconfig import write_kubeconfig
from gpufleet.scheduler.localcluster.nodes import NodeSpec, openb_nodes, uniform_nodes
from gpufleet.scheduler.localcluster.processes import ProcessError, ProcessGroup

log = logging.getLogger(__name__)

STATE_FILE = "cluster.json"
#: Nodes of the uniform profile when --nodes is not given (openb takes all of its nodes).
DEFAULT_UNIFORM_NODES = 16
OPENB_NODE_LIST = Path("bench/data/alibaba-gpu-v2023/openb_node_list_gpu_node.csv")
SCHEDULER_CONFIG_TEMPLATE = Path("deploy/scheduler/kube-scheduler-config.yaml")
KWOK_CONFIG = Path("deploy/local/kwok/kwok-config.yaml")


class ClusterError(RuntimeError):
    """The local cluster could not be brought up or down; the message says what to do."""


def default_state_dir() -> Path:
    """``$GPUFLEET_STATE_DIR`` or ``$XDG_STATE_HOME/gpufleet/cluster`` (``~/.local/state/...``)."""
    override = os.environ.get("GPUFLEET_STATE_DIR")
    if override:
        return Path(override)
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "gpufleet" / "cluster"


def find_repo_root() -> Path:
    """The gpufleet checkout holding ``deploy/`` and ``bench/data/``: ``$GPUFLEET_REPO``, else the
    folder above this package (an editable install or a run from the checkout)."""
    candidates = [Path(os.environ["GPUFLEET_REPO"])] if os.environ.get("GPUFLEET_REPO") else []
    candidates.append(Path(__file__).resolve().parents[2])
    for candidate in candidates:
        if (candidate / SCHEDULER_CONFIG_TEMPLATE).is_file():
            return candidate
    raise ClusterError(
        f"cannot find {SCHEDULER_CONFIG_TEMPLATE} in {', '.join(map(str, candidates))}; run from a "
        "gpufleet checkout (pip install -e .) or set GPUFLEET_REPO to one"
    )


@dataclass(frozen=True)
class ClusterOptions:
    """What ``gpufleet cluster up`` was asked for."""

    #: Folder for pid files, logs, PKI, etcd data and cluster.json.
    state_dir: Path = field(default_factory=default_state_dir)
    #: "openb" (the trace's nodes) or "uniform" (identical A100 nodes).
    profile: str = "uniform"
    #: Node count; None: all 1,213 for openb, DEFAULT_UNIFORM_NODES for uniform.
    nodes: int | None = None
    #: GPUs per node of the uniform profile.
    gpus_per_node: int = 8
    #: Where to write the admin kubeconfig too (default: <state_dir>/kubeconfig).
    kubeconfig: Path | None = None
    #: urlPrefix of an extender already running; None: start `gpufleet extender` if it exists.
    extender_url: str | None = None
    #: False: run kube-scheduler without an extender even when one could be started.
    start_extender: bool = True
    #: More arguments for the extender `up` starts (e.g. ("--workload-mix", PATH)).
    extender_args: tuple[str, ...] = ()
    #: (client certificate, key, CA) kube-scheduler presents to an https extender (its tlsConfig).
    extender_tls: tuple[str, str, str] | None = None
    #: kube-scheduler's --feature-gates (e.g. "OpportunisticBatching=false"); "": its defaults.
    scheduler_feature_gates: str = ""
    #: Folder with the binaries (default: the build.sh cache for the pinned versions).
    bin_dir: Path | None = None
    #: The openb node list (default: bench/data/alibaba-gpu-v2023/ in the checkout).
    node_list: Path | None = None
    #: Seconds allowed for each wait (API server ready, nodes Ready).
    timeout_s: float = 300.0
    #: Also start simulated agents and Prometheus scraping every component (``monitoring``).
    monitoring: bool = False
    #: Nodes that get a simulated agent with --monitoring.
    agents: int = 2
    #: The controller's /metrics port on 127.0.0.1, scraped with --monitoring when given.
    controller_metrics_port: int | None = None
    #: Also run a Git server and Flux applying its fleet-config repository (``gpufleet.gitops.local``).
    gitops: bool = False


@dataclass(frozen=True)
class ClusterInfo:
    """What a running cluster is: written to cluster.json and returned by :meth:`LocalCluster.up`."""

    state_dir: str
    server: str
    kubeconfig: str
    ports: dict[str, int]
    profile: str
    nodes: int
    gpus: int
    extender_url: str | None
    bin_dir: str
    seconds_to_ready: float
    #: Extra arguments of the extender `up` started (restarts reuse them).
    extender_args: list[str] = field(default_factory=list)
    #: Prometheus of --monitoring (None without it) and each simulated agent's /metrics port by node.
    prometheus_url: str | None = None
    agent_metrics_ports: dict[str, int] = field(default_factory=dict)
    controller_metrics_port: int | None = None
    #: The fleet-config repository Flux applies (--gitops), else None.
    git_url: str | None = None


def read_info(state_dir: Path) -> ClusterInfo | None:
    """The cluster.json of ``state_dir``, or None if there is none."""
    try:
        return ClusterInfo(**json.loads((state_dir / STATE_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


class LocalCluster:
    """One local cluster, identified by its state folder."""

    def __init__(self, options: ClusterOptions, progress: Callable[[str], None] | None = None) -> None:
        self.options = options
        self.state_dir = options.state_dir.expanduser().resolve()
        self.processes = ProcessGroup(self.state_dir)
        self.paths = components.Paths(self.state_dir)
        self._progress = progress or (lambda message: log.info("%s", message))
        self._start = time.monotonic()

    def _say(self, message: str) -> None:
        self._progress(f"[{time.monotonic() - self._start:6.1f}s] {message}")

    # ---- up ----------------------------------------------------------------------------------

    def node_specs(self, repo_root: Path) -> list[NodeSpec]:
        options = self.options
        if options.profile == "openb":
            node_list = options.node_list or repo_root / OPENB_NODE_LIST
            if not node_list.is_file():
                raise ClusterError(f"openb node list {node_list} is missing; pass --node-list PATH")
            return openb_nodes(node_list, options.nodes)
        if options.profile == "uniform":
            count = DEFAULT_UNIFORM_NODES if options.nodes is None else options.nodes
            return uniform_nodes(count, options.gpus_per_node)
        raise ClusterError(f"unknown profile {options.profile!r}; use openb or uniform")

    def up(self) -> ClusterInfo:
        """Start everything and wait until the cluster is ready; on failure stop what started."""
        self._start = time.monotonic()
        binaries = find_binaries(self.options.bin_dir)
        if self.options.monitoring:
            from gpufleet.scheduler.localcluster.prometheus import find_binary

            find_binary("prometheus")  # fail before starting anything when it is missing
        if self.options.gitops:
            from gpufleet.gitops.flux import find_flux

            find_flux()  # likewise
        repo_root = find_repo_root()
        specs = self.node_specs(repo_root)
        running = [name for name in self.processes.names() if self.processes.running(name)]
        if running:
            raise ClusterError(f"a cluster is already running in {self.state_dir} ({', '.join(running)}); "
                               "run `gpufleet cluster down` first, or pass another --state-dir")
        self.processes.stop_all()  # clears stale pid files (and stragglers) of a crashed run
        try:
            return self._up(binaries, repo_root, specs)
        except BaseException:
            self._say("failed; stopping what was started")
            self.processes.stop_all()
            raise

    def _up(self, binaries: Binaries, repo_root: Path, specs: list[NodeSpec]) -> ClusterInfo:
        options, paths, processes = self.options, self.paths, self.processes
        self.state_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(paths.etcd_data, ignore_errors=True)
        (self.state_dir / STATE_FILE).unlink(missing_ok=True)
        wait = options.timeout_s

        names = ["etcd_client", "etcd_peer", "apiserver", "controller_manager", "scheduler", "kwok", "extender"]
        port_numbers = dict(zip(names, components.free_ports(len(names)), strict=True))
        ports = components.Ports(**{k: v for k, v in port_numbers.items() if k != "extender"})
        server = f"https://{components.LOOPBACK}:{ports.apiserver}"

        pki = write_pki(paths.pki_dir)
        write_kubeconfig(paths.admin_kubeconfig, server, pki, ADMIN)
        write_kubeconfig(paths.controller_manager_kubeconfig, server, pki, CONTROLLER_MANAGER)
        write_kubeconfig(paths.scheduler_kubeconfig, server, pki, SCHEDULER)
        kubeconfig = options.kubeconfig or self.state_dir / "kubeconfig"
        write_kubeconfig(kubeconfig, server, pki, ADMIN)
        self._say(f"certificates and kubeconfigs written to {self.state_dir}")

        processes.start(components.etcd(binaries, paths, ports))
        waited = readiness.wait_until(
            "etcd /health", readiness.http_ok(f"http://{components.LOOPBACK}:{ports.etcd_client}/health",
                                              expect=b'"health":"true"'),
            wait, check_alive=lambda: processes.check("etcd"))
        self._say(f"etcd ready ({waited:.1f} s)")

        processes.start(components.kube_apiserver(binaries, paths, ports, pki))
        context = readiness.admin_ssl_context(pki)
        waited = readiness.wait_until(
            "kube-apiserver /readyz", readiness.http_ok(f"{server}/readyz", context, b"ok"), wait,
            check_alive=lambda: processes.check("kube-apiserver"))
        self._say(f"kube-apiserver ready at {server} ({waited:.1f} s)")
        if options.gitops:  # before the extender, so its PlacementPolicy watch starts at once
            from gpufleet.gitops import local as gitops

            gitops.install_gpufleet_crds(kubeconfig, wait)

        extender_url, started_extender = self._extender(port_numbers["extender"], wait)

        processes.start(components.kube_controller_manager(binaries, paths, ports, pki))
        processes.start(components.kube_scheduler(binaries, paths, ports, repo_root / SCHEDULER_CONFIG_TEMPLATE,
                                                  extender_url, options.extender_tls,
                                                  options.scheduler_feature_gates))
        processes.start(components.kwok(binaries, paths, ports, repo_root / KWOK_CONFIG))
        insecure = readiness.insecure_ssl_context()
        for name, port in (("kube-controller-manager", ports.controller_manager),
                           ("kube-scheduler", ports.scheduler)):
            waited = readiness.wait_until(
                f"{name} /healthz", readiness.http_ok(f"https://{components.LOOPBACK}:{port}/healthz", insecure),
                wait, check_alive=lambda name=name: processes.check(name))
            self._say(f"{name} healthy ({waited:.1f} s)")

        self._create_nodes(specs, kubeconfig)
        self._wait_nodes_ready(server, context, len(specs), wait)
        readiness.wait_until("the default service account", readiness.service_account_exists(server, context),
                             wait, check_alive=self._check_all)
        watched = None
        if options.monitoring:
            from gpufleet.scheduler.localcluster import monitoring

            watched = monitoring.start(
                processes, self._say, state_dir=self.state_dir, repo_root=repo_root, specs=specs,
                agent_count=options.agents, kubeconfig=kubeconfig, ports=port_numbers, pki=pki,
                extender_port=port_numbers["extender"] if started_extender else None,
                controller_port=options.controller_metrics_port, free_ports=components.free_ports, wait_s=wait)

        git = gitops.start(processes, self.state_dir, kubeconfig, repo_root, components.free_ports(6), wait, self._say) \
            if options.gitops else None
        info = ClusterInfo(
            state_dir=str(self.state_dir), server=server, kubeconfig=str(kubeconfig),
            ports=port_numbers if started_extender else {k: v for k, v in port_numbers.items() if k != "extender"},
            profile=options.profile, nodes=len(specs), gpus=sum(s.gpus for s in specs),
            extender_url=extender_url, bin_dir=str(binaries.directory),
            seconds_to_ready=round(time.monotonic() - self._start, 1),
            extender_args=list(options.extender_args) if started_extender else [],
            prometheus_url=watched.prometheus_url if watched else None,
            agent_metrics_ports=watched.agent_metrics_ports if watched else {},
            controller_metrics_port=watched.controller_metrics_port if watched else None,
            git_url=git.git_url if git else None,
        )
        (self.state_dir / STATE_FILE).write_text(json.dumps(asdict(info), indent=2) + "\n")
        self._say(f"ready: {info.nodes} nodes, {info.gpus} GPUs; kubeconfig {kubeconfig}")
        return info

    def _check_all(self) -> None:
        for name in self.processes.names():
            self.processes.check(name)

    def _extender(self, port: int, wait: float) -> tuple[str | None, bool]:
        """The extender's urlPrefix for kube-scheduler (None: no extender), and whether we started it."""
        options = self.options
        if options.extender_url:
            self._say(f"kube-scheduler will call the extender at {options.extender_url}")
            return options.extender_url, False
        if not options.start_extender:
            self._say("no extender (--no-extender)")
            return None, False
        if not extender.extender_available():
            self._say("no extender: this gpufleet has no `extender` subcommand yet; the scheduler runs without one")
            return None, False
        self.processes.start(extender.extender_process(port, self.paths.admin_kubeconfig, options.extender_args))
        waited = readiness.wait_until(
            "the gpufleet extender /readyz", readiness.http_ok(extender.readyz_url(port)), wait,
            check_alive=lambda: self.processes.check(extender.NAME))
        url = extender.extender_url(port)
        self._say(f"gpufleet extender ready at {url} ({waited:.1f} s)")
        return url, True

    def _create_nodes(self, specs: list[NodeSpec], kubeconfig: Path) -> None:
        from kubernetes import client, config

        api_client = config.new_client_from_config(config_file=str(kubeconfig))
        api_client.configuration.connection_pool_maxsize = 16
        step = max(1, len(specs) // 10)

        def progress(done: int, total: int) -> None:
            if done % step == 0 or done == total:
                self._say(f"nodes created {done}/{total}")

        from gpufleet.scheduler.localcluster.nodes import create_nodes

        try:
            create_nodes(client.CoreV1Api(api_client), specs, progress=progress)
        finally:
            api_client.close()

    def _wait_nodes_ready(self, server: str, context, expected: int, wait: float) -> None:
        last = [-1]

        def probe() -> bool:
            ready, total = readiness.count_ready_nodes(server, context)
            if ready != last[0]:
                self._say(f"nodes Ready {ready}/{expected}")
                last[0] = ready
            return ready >= expected and total >= expected

        readiness.wait_until(f"{expected} nodes Ready", probe, wait, interval=1.0, check_alive=self._check_all)

    # ---- down and status -----------------------------------------------------------------------

    def down(self, purge: bool = False) -> list[str]:
        """Stop every process of this cluster; ``purge`` also deletes the state folder."""
        stopped = self.processes.stop_all()
        shutil.rmtree(self.paths.etcd_data, ignore_errors=True)
        (self.state_dir / STATE_FILE).unlink(missing_ok=True)
        if purge:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        return stopped

    # ---- one component at a time (benchmarks and failure tests) -------------------------------

    def _running_info(self) -> ClusterInfo:
        info = read_info(self.state_dir)
        if info is None:
            raise ClusterError(f"no running cluster in {self.state_dir}; run `gpufleet cluster up` first")
        return info

    def stop_component(self, name: str) -> None:
        """Stop one process (e.g. ``kube-scheduler`` to queue pods before a throughput run, or the
        extender to test ``ignorable``); :meth:`start_component` brings it back."""
        self._running_info()
        self.processes.stop(name)

    def start_component(self, name: str) -> None:
        """Start one stopped component again with the ports and files of the running cluster, and
        wait until it is healthy (scheduler, controller manager) or ready (extender)."""
        info = self._running_info()
        binaries = find_binaries(Path(info.bin_dir))
        port_fields = components.Ports.__dataclass_fields__
        ports = components.Ports(**{k: v for k, v in info.ports.items() if k in port_fields})
        pki = Pki(self.paths.pki_dir)
        repo_root = find_repo_root()
        specs = {
            "kube-controller-manager": lambda: components.kube_controller_manager(binaries, self.paths, ports, pki),
            "kube-scheduler": lambda: components.kube_scheduler(
                binaries, self.paths, ports, repo_root / SCHEDULER_CONFIG_TEMPLATE, info.extender_url,
                self.options.extender_tls, self.options.scheduler_feature_gates),
            "kwok": lambda: components.kwok(binaries, self.paths, ports, repo_root / KWOK_CONFIG),
            extender.NAME: lambda: extender.extender_process(info.ports["extender"], self.paths.admin_kubeconfig,
                                                             info.extender_args),
        }
        if name not in specs or (name == extender.NAME and "extender" not in info.ports):
            raise ClusterError(f"cannot restart {name!r}; restartable: {', '.join(sorted(specs))}"
                               " (the extender only when `cluster up` started it)")
        self.processes.start(specs[name]())
        health_port = {"kube-controller-manager": ports.controller_manager, "kube-scheduler": ports.scheduler}
        if name in health_port:
            probe = readiness.http_ok(f"https://{components.LOOPBACK}:{health_port[name]}/healthz",
                                      readiness.insecure_ssl_context())
        elif name == extender.NAME:
            probe = readiness.http_ok(extender.readyz_url(info.ports["extender"]))
        else:
            def probe() -> bool:
                return True
        readiness.wait_until(f"{name} after restart", probe, self.options.timeout_s,
                             check_alive=lambda: self.processes.check(name))

    def status(self) -> dict[str, dict[str, object]]:
        """Per recorded process: running or not, and resident memory in MiB."""
        result: dict[str, dict[str, object]] = {}
        for name in self.processes.names():
            result[name] = {"running": self.processes.running(name),
                            "rss_mib": self.processes.rss_mib(name)}
        return result


__all__ = ["ClusterError", "ClusterInfo", "ClusterOptions", "LocalCluster", "ProcessError", "read_info"]
