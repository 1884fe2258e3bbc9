"""``gpufleet demo --reclaim``: the idle-GPU reclaim controller on the local cluster, in about 1.5 minutes.

A fresh local cluster (two kwok nodes x 8 GPUs, no extender), the simulated agents of ``cluster up
--monitoring`` playing busy and idle GPUs, and ``gpufleet controller`` with its grace, window and notice
cut from minutes to seconds. Four Deployments: ``ml`` (namespace opted in to scale-to-zero) runs an idle
``notebook`` (2 replicas), an idle ``chat`` whose pods say ``notify``, and a busy ``trainer``; ``research``
(not opted in) runs an idle ``sandbox``. The demo waits for the controller, reads back what happened
(replicas, annotations, Events, the agents' utilisation), runs ``gpufleet reclaim undo`` on the notebook,
and tears everything down. :func:`run` returns the outcome; its ``failures`` list what did not go as expected.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpufleet.core import names
from gpufleet.scheduler.localcluster import agents, controller
from gpufleet.scheduler.localcluster.cluster import ClusterOptions, LocalCluster, find_repo_root
from gpufleet.scheduler.localcluster.components import free_ports
from gpufleet.scheduler.localcluster.processes import processes_mentioning

GRACE_S, WINDOW_S, NOTICE_S = 30, 30, 30
PASS_S = 2
DEMO_SETTINGS: dict[str, Any] = {
    **controller.LOCAL_SETTINGS,
    "reclaim": {**controller.LOCAL_SETTINGS["reclaim"], "graceSeconds": GRACE_S, "noticeSeconds": NOTICE_S,
                "window": {"windowSeconds": WINDOW_S}},
    "budget": {"maxActions": 10, "maxPercent": 100, "window": "1h"},  # the notebook frees half the opted-in GPUs
    "passInterval": f"{PASS_S}s",
}
ML, RESEARCH = "ml", "research"
NAMESPACES = {ML: "scale-to-zero", RESEARCH: None}
#: What each node's simulated GPUs do, by index: node 0 hosts the trainer (GPU 0), chat (1) and sandbox (2).
PRESETS = (["busy", "held-idle", "held-idle"] + ["idle"] * 5, ["held-idle"] * 8)
RECLAIMED, NOTIFIED, LEFT_ALONE = "reclaimed", "notified", "left alone"


@dataclass(frozen=True)
class Workload:
    namespace: str
    name: str
    node: int  # index of the demo's nodes
    gpu: int | None  # pinned GPU index; None: the fake kubelet gives the lowest free ones
    replicas: int
    mode: str | None  # the pod template's gpufleet.io/reclaim; None: the namespace's
    expect: str  # RECLAIMED, NOTIFIED or LEFT_ALONE

    @property
    def target(self) -> str:
        return f"{self.namespace}/Deployment/{self.name}"


WORKLOADS = (
    Workload(ML, "notebook", 1, None, 2, None, RECLAIMED),
    Workload(ML, "chat", 0, 1, 1, "notify", NOTIFIED),
    Workload(ML, "trainer", 0, 0, 1, None, LEFT_ALONE),
    Workload(RESEARCH, "sandbox", 0, 2, 1, None, LEFT_ALONE),
)
UNDO = WORKLOADS[0]


@dataclass
class Outcome:
    """One workload as read back from the API server and the agents after the controller's turn."""

    workload: Workload
    replicas: int
    reclaimed_replicas: str | None  # the annotation undo restores from
    mode: str  # the effective gpufleet.io/reclaim (pod wins over namespace)
    events: list[dict[str, Any]] = field(default_factory=list)  # on the Deployment and its pods
    utilisation: list[float] = field(default_factory=list)  # its GPUs, % (the agents' DCGM_FI_DEV_GPU_UTIL)
    idle_since: str | None = None  # a pod's gpufleet.io/idle-since
    pods: int = 0  # its pods not being deleted

    def reasons(self, reason: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("reason") == reason]

    @property
    def observed(self) -> str:
        if self.reasons("IdleGPUReclaimed") or self.replicas == 0:
            return RECLAIMED
        return NOTIFIED if self.reasons("IdleGPUNotice") else LEFT_ALONE


@dataclass
class DemoResult:
    outcomes: dict[str, Outcome] = field(default_factory=dict)  # by workload name
    undo_command: str = ""
    undo_output: str = ""
    replicas_after_undo: int = -1
    pods_after_undo: int = 0  # Ready pods of the restored workload, none of them the reclaimed ones
    leftovers: dict[int, str] = field(default_factory=dict)  # processes alive after teardown
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    report: str = ""


class Clock:
    """Elapsed seconds since the demo started, as a ``[  42.0s]`` prefix."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.start = time.monotonic()
        self._say = say

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def say(self, message: str) -> None:
        self._say(f"[{self.elapsed():6.1f}s] {message}")


def gpu_scripts(specs: list) -> list[dict]:
    """The agents' scripts: the local cluster's per-node script with the demo's presets."""
    scripts = []
    for spec, presets in zip(specs, PRESETS, strict=True):
        script = agents.gpu_script(spec)
        for gpu, preset in zip(script["gpus"], presets, strict=True):
            gpu["preset"] = preset
        scripts.append(script)
    return scripts


def deployment(w: Workload, node: str) -> dict[str, Any]:
    labels = {"app": w.name}
    annotations = {names.GPU_IDS: str(w.gpu)} if w.gpu is not None else {}
    if w.mode:
        annotations[names.RECLAIM] = w.mode
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": w.name, "labels": labels},
            "spec": {"replicas": w.replicas, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": {"nodeName": node, "tolerations": [{"operator": "Exists"}], "terminationGracePeriodSeconds": 0,
                         "containers": [{"name": "main", "image": "busybox",
                                         "resources": {"limits": {names.GPU_RESOURCE: "1"}}}]}}}}


def _deployment_path(w: Workload) -> str:
    return f"/apis/apps/v1/namespaces/{w.namespace}/deployments/{w.name}"


def _pods(api: Any, w: Workload) -> list[dict[str, Any]]:
    items, _ = api.list(f"/api/v1/namespaces/{w.namespace}/pods")
    return [p for p in items if (p["metadata"].get("labels") or {}).get("app") == w.name]


def _events(api: Any, w: Workload) -> list[dict[str, Any]]:
    """Events on the Deployment or on its pods (``NAME-...``), oldest first."""
    items, _ = api.list(f"/api/v1/namespaces/{w.namespace}/events")
    mine = [e for e in items if e.get("reason", "").startswith("IdleGPU")
            and (e["involvedObject"]["name"] == w.name or e["involvedObject"]["name"].startswith(f"{w.name}-"))]
    return sorted(mine, key=lambda e: e.get("firstTimestamp") or e.get("eventTime") or "")


def _annotations(obj: dict[str, Any] | None) -> dict[str, str]:
    return ((obj or {}).get("metadata") or {}).get("annotations") or {}


def agent_utilisation(ports: list[agents.AgentPorts]) -> dict[tuple[str, str], list[float]]:
    """(namespace, pod) -> the utilisation of each GPU it holds, from every agent's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[tuple[str, str], list[float]] = {}
    for agent in ports:
        text = urllib.request.urlopen(f"http://127.0.0.1:{agent.metrics}/metrics", timeout=5).read().decode()
        for family in text_string_to_metric_families(text):
            if family.name != "DCGM_FI_DEV_GPU_UTIL":
                continue
            for sample in family.samples:
                if sample.labels.get("pod"):
                    found.setdefault((sample.labels["namespace"], sample.labels["pod"]), []).append(sample.value)
    return found


def read_outcome(api: Any, w: Workload, utilisation: dict[tuple[str, str], list[float]]) -> Outcome:
    dep = api.get(_deployment_path(w)) or {}
    pods = _pods(api, w)
    namespace_mode = _annotations(api.get(f"/api/v1/namespaces/{w.namespace}")).get(names.RECLAIM)
    mode = w.mode or namespace_mode or "off"
    since = next((_annotations(p).get(names.IDLE_SINCE) for p in pods if names.IDLE_SINCE in _annotations(p)), None)
    return Outcome(w, int((dep.get("spec") or {}).get("replicas", -1)),
                   _annotations(dep).get(names.RECLAIMED_REPLICAS), mode, _events(api, w),
                   [u for p in pods for u in utilisation.get((w.namespace, p["metadata"]["name"]), [])], since,
                   sum(1 for p in pods if not p["metadata"].get("deletionTimestamp")))


def why_left_alone(o: Outcome) -> str:
    util = f"{max(o.utilisation):.0f}%" if o.utilisation else "no sample"
    if o.mode == "off":
        return (f"not opted in: neither namespace {o.workload.namespace} nor its pods set {names.RECLAIM} (off is the "
                f"default), so the controller never looks at it, though its GPU is at {util}")
    if o.utilisation and max(o.utilisation) > 1:
        return f"opted in ({names.RECLAIM}={o.mode}) but its GPU is busy: {util} per the agent, so no notice"
    return f"opted in ({names.RECLAIM}={o.mode}), GPU at {util}, yet no notice: unexpected"


def check(o: Outcome) -> list[str]:
    """What differs from the workload's expected outcome."""
    w, problems = o.workload, []
    if o.observed != w.expect:
        problems.append(f"{w.target}: expected {w.expect}, got {o.observed}")
    if w.expect == RECLAIMED:
        if o.replicas != 0 or o.reclaimed_replicas != str(w.replicas):
            problems.append(f"{w.target}: replicas {o.replicas}, {names.RECLAIMED_REPLICAS}={o.reclaimed_replicas} "
                            f"(expected 0 and {w.replicas})")
        on_workload = [e for e in o.reasons("IdleGPUReclaimed") if e["involvedObject"]["kind"] == "Deployment"]
        if len(on_workload) != 1:
            problems.append(f"{w.target}: {len(on_workload)} IdleGPUReclaimed Events on the Deployment (expected 1)")
        if o.pods:
            problems.append(f"{w.target}: {o.pods} pods still running after the scale to 0")
    elif o.replicas != w.replicas or o.pods != w.replicas or o.reasons("IdleGPUReclaimed"):
        problems.append(f"{w.target}: touched ({o.replicas} replicas asked, {o.pods} pods running, of {w.replicas})")
    return problems


def _replicas(n: int) -> str:
    return f"{n} replica{'' if n == 1 else 's'}"


def event_lines(events: list[dict[str, Any]]) -> list[str]:
    """One entry per reason and kind: how many, on what, and the first one's whole message, wrapped."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for e in events:
        groups.setdefault((e["reason"], e["involvedObject"]["kind"]), []).append(e)
    lines = []
    for (reason, kind), group in groups.items():
        objects = ", ".join(e["involvedObject"]["name"] for e in group)
        lines.append(f"    Event {reason} on {kind} {objects}:")
        lines.extend(textwrap.wrap(group[0].get("message", ""), 108, initial_indent=" " * 6, subsequent_indent=" " * 6))
    return lines


def format_report(result: DemoResult) -> str:
    groups = {RECLAIMED: "ACTED ON (scaled to zero)", NOTIFIED: "ONLY NOTIFIED (notice, no action)",
              LEFT_ALONE: "LEFT ALONE"}
    lines = [f"What the controller did (grace {GRACE_S} s, window {WINDOW_S} s, notice {NOTICE_S} s; "
             "the shipped defaults are 10 min grace, 30 min window, 15 min notice):"]
    for kind, title in groups.items():
        lines.append(f"\n{title}")
        for o in (o for o in result.outcomes.values() if o.observed == kind):
            w = o.workload
            if kind == RECLAIMED:
                lines.append(f"  {w.target}: {w.replicas} -> {o.replicas} replicas ({o.pods} pods left); kept "
                             f"{names.RECLAIMED_REPLICAS}={o.reclaimed_replicas} for undo")
            elif kind == NOTIFIED:
                lines.append(f"  {w.target}: still {_replicas(o.replicas)}, pod annotated {names.IDLE_SINCE}="
                             f"{o.idle_since}; {names.RECLAIM}={o.mode} on its pods, so it only gets notice")
            else:
                lines.append(f"  {w.target}: {_replicas(o.replicas)}, no Event; {why_left_alone(o)}")
            lines.extend(event_lines(o.events))
    lines.append(f"\nUNDO\n  $ {result.undo_command}\n  {result.undo_output}")
    lines.append(f"  {UNDO.name}: {result.pods_after_undo} new pods running ({result.replicas_after_undo} replicas "
                 "asked); the controller sees fresh pods, with a fresh grace")
    verdict = "as expected" if not result.failures else "NOT as expected:\n  " + "\n  ".join(result.failures)
    lines.append(f"\nResult: {verdict} (whole demo {result.seconds / 60:.1f} min)")
    return "\n".join(lines) + "\n"


def _wait(clock: Clock, what: str, done: Callable[[], str | None], timeout_s: float,
          status: Callable[[], str], every_s: float = 10.0) -> bool:
    """Poll ``done`` (a message when done) each second, saying ``status()`` when it changes or every ``every_s``."""
    end, last, last_at = time.monotonic() + timeout_s, "", 0.0
    while time.monotonic() < end:
        message = done()
        if message:
            clock.say(message)
            return True
        line = status()
        if line != last or time.monotonic() - last_at >= every_s:
            clock.say(f"{what}: {line}")
            last, last_at = line, time.monotonic()
        time.sleep(1)
    clock.say(f"{what}: gave up after {timeout_s:.0f} s ({status()})")
    return False


def _controller_phase(clock: Clock, api: Any, timeout_s: float) -> bool:
    """Wait until the notebook is at 0 and chat's notice has run out without an action."""
    notebook, chat = WORKLOADS[0], WORKLOADS[1]
    chat_noticed: list[float] = []

    def noticed() -> list[str]:
        return [w.name for w in WORKLOADS if any(e["reason"] == "IdleGPUNotice" for e in _events(api, w))]

    def status() -> str:
        dep = api.get(_deployment_path(notebook)) or {}
        seen = noticed()
        return (f"notice on {', '.join(seen) or 'none yet'}; notebook at {(dep.get('spec') or {}).get('replicas')} "
                f"replicas (grace {GRACE_S} s, idle window {WINDOW_S} s, then {NOTICE_S} s of notice)")

    def done() -> str | None:
        if chat.name in noticed() and not chat_noticed:
            chat_noticed.append(time.monotonic())
        at_zero = ((api.get(_deployment_path(notebook)) or {}).get("spec") or {}).get("replicas") == 0
        # chat's notice must run out (plus two passes) to show that notify never acts
        if at_zero and chat_noticed and time.monotonic() >= chat_noticed[0] + NOTICE_S + 2 * PASS_S:
            return "notebook scaled to 0 and chat's notice ran out without an action"
        return None

    return _wait(clock, "waiting for the controller", done, timeout_s, status)


def _undo(clock: Clock, api: Any, kubeconfig: str, result: DemoResult) -> None:
    argv = [sys.executable, "-m", "gpufleet.cli", "reclaim", "undo", UNDO.target, "--kubeconfig", kubeconfig]
    result.undo_command = f"gpufleet reclaim undo {UNDO.target}"
    clock.say(f"$ {result.undo_command}   (KUBECONFIG={kubeconfig})")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    result.undo_output = (done.stdout + done.stderr).strip()
    clock.say(result.undo_output)
    if done.returncode != 0:
        result.failures.append(f"undo exited {done.returncode}: {result.undo_output}")
        return

    def ready() -> str | None:
        dep = api.get(_deployment_path(UNDO)) or {}
        result.replicas_after_undo = int((dep.get("spec") or {}).get("replicas", -1))
        result.pods_after_undo = sum(1 for p in _pods(api, UNDO) if not p["metadata"].get("deletionTimestamp") and any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in (p.get("status") or {}).get("conditions") or []))
        if result.pods_after_undo == UNDO.replicas == result.replicas_after_undo:
            return f"{UNDO.name}: {UNDO.replicas} new pods Ready"
        return None

    if not _wait(clock, "waiting for the notebook's pods", ready, 60,
                 lambda: f"{result.replicas_after_undo} replicas asked, {result.pods_after_undo} pods Ready"):
        result.failures.append(f"{UNDO.target}: not back to {UNDO.replicas} Ready pods after undo")
    elif names.RECLAIMED_REPLICAS in _annotations(api.get(_deployment_path(UNDO))):
        result.failures.append(f"{UNDO.target}: {names.RECLAIMED_REPLICAS} still set after undo")


def run(say: Callable[[str], None], keep: bool = False, timeout_s: float = 240.0) -> DemoResult:
    """The whole demo; never raises for an outcome that differs (see ``failures``), only for setup errors
    (cluster, processes, API), after tearing down what started."""
    from gpufleet.core.kube.client import KubernetesAPI

    clock = Clock(say)
    result = DemoResult()
    state_dir = Path(tempfile.mkdtemp(prefix="gpufleet-reclaim-demo-"))
    cluster = LocalCluster(ClusterOptions(state_dir=state_dir, nodes=len(PRESETS), start_extender=False,
                                          timeout_s=180.0), progress=say)
    clock.say(f"bringing up a local cluster: {len(PRESETS)} kwok nodes x 8 GPUs, no extender ({state_dir})")
    try:
        info = cluster.up()  # stops what it started when it fails
    except BaseException:
        shutil.rmtree(state_dir, ignore_errors=True)
        raise
    api = None
    try:
        specs = cluster.node_specs(find_repo_root())
        ports = free_ports(2 * len(specs) + 1)
        agent_ports = agents.start(cluster.processes, specs, state_dir, Path(info.kubeconfig),
                                   list(zip(ports[1::2], ports[2::2], strict=True)), 60, gpu_scripts(specs))
        clock.say(f"{len(agent_ports)} simulated agents streaming (fake kubelets mirror the API server's pods): "
                  + "; ".join(f"{s.name} GPUs {', '.join(p)}" for s, p in zip(specs, PRESETS, strict=True)))
        settings = controller.write_settings(state_dir / "controller.yaml", DEMO_SETTINGS)
        controller.start(cluster.processes, ports[0], Path(info.kubeconfig),
                         [f"127.0.0.1:{a.grpc}" for a in agent_ports], settings, 60)
        clock.say(f"gpufleet controller running (settings {settings}: policy window, grace {GRACE_S} s, window "
                  f"{WINDOW_S} s, notice {NOTICE_S} s; the defaults are 10 min grace and 15 min notice)")
        api = KubernetesAPI.connect(info.kubeconfig)
        for namespace, mode in NAMESPACES.items():
            api.post("/api/v1/namespaces", {"metadata": {"name": namespace,
                                                         "annotations": {names.RECLAIM: mode} if mode else {}}})
        for w in WORKLOADS:
            api.post(f"/apis/apps/v1/namespaces/{w.namespace}/deployments", deployment(w, specs[w.node].name))
            gpu = f"GPU {w.gpu}" if w.gpu is not None else "GPUs picked by the kubelet"
            clock.say(f"created {w.target} ({_replicas(w.replicas)} on {specs[w.node].name} {gpu}: "
                      f"{PRESETS[w.node][w.gpu or 0]}; {names.RECLAIM}={w.mode or NAMESPACES[w.namespace] or 'unset'})")
        if not _controller_phase(clock, api, timeout_s):
            result.failures.append(f"the controller did not finish within {timeout_s:.0f} s; its log: "
                                   f"{cluster.processes.log_path(controller.NAME)}")
        utilisation = agent_utilisation(agent_ports)
        for w in WORKLOADS:
            outcome = read_outcome(api, w, utilisation)
            result.outcomes[w.name] = outcome
            result.failures.extend(check(outcome))
        _undo(clock, api, info.kubeconfig, result)
    finally:
        if api is not None:
            api.close()
        if keep:
            clock.say(f"left running: export KUBECONFIG={info.kubeconfig}; "
                      f"`gpufleet cluster down --state-dir {state_dir}` stops it")
        else:
            stopped = cluster.down(purge=True)
            shutil.rmtree(agents.socket_dir(state_dir), ignore_errors=True)
            result.leftovers = processes_mentioning(str(state_dir))
            clock.say(f"torn down: {len(stopped)} processes stopped, {len(result.leftovers)} left")
    if result.leftovers:
        result.failures.append(f"processes left behind: {result.leftovers}")
    result.seconds = clock.elapsed()
    result.report = format_report(result)
    return result
