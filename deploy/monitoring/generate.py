"""gpufleet's Grafana dashboards as code, and the PrometheusRule made from the plain rule file.

    .venv/bin/python deploy/monitoring/generate.py          # rewrite dashboards/*.json and rules/prometheusrule.yaml
    .venv/bin/python deploy/monitoring/generate.py --check  # exit 1 when a committed file differs

Needs ``grafana-foundation-sdk`` (the ``dev`` extra pins one Grafana schema build); nothing installed
imports this file, only the maintainers who change a panel run it (tests/monitoring checks the committed
JSON is what it generates). Panels query only metrics some gpufleet component or the control plane
exports (tests/monitoring checks that statically and against a real Prometheus). Every query filters
by the dashboard's variables; variables match everything when a label is absent (``allValue: .*``), so
a Prometheus without a ``cluster`` label works as well.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml
from grafana_foundation_sdk.builders import bargauge, dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import LegendDisplayMode, LegendPlacement
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

HERE = Path(__file__).resolve().parent
DASHBOARD_DIR = HERE / "dashboards"
RULES = HERE / "rules" / "gpufleet.rules.yaml"
PROMETHEUS_RULE = HERE / "rules" / "prometheusrule.yaml"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
#: Label matchers every query of a dashboard carries, by the variables it has.
CLUSTER = 'cluster=~"$cluster"'
NODE = 'hostname=~"$node"'
NAMESPACE = 'namespace=~"$namespace"'
#: The agents' own counters carry no hostname: join it from the agent's info series (value 1), which
#: also applies the node variable.
WITH_HOST = f"* on (cluster, instance) group_left (hostname) gpufleet_agent_info{{{NODE}}}"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str
    instant: bool = False


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    queries: tuple[Query, ...]
    description: str = ""
    kind: str = "timeseries"  # timeseries | stat | bargauge
    width: int = 12


def q(expr: str, legend: str, instant: bool = False) -> Query:
    return Query(" ".join(expr.split()), legend, instant)


# ---- Placement: the extender (scheduler/extender/metrics.py) and kube-scheduler ------------------

E = f"{{{CLUSTER}}}"
PLACEMENT = (
    Panel("GPU allocation", "percentunit", (
        q(f"1 - max by (cluster, modelName) (gpufleet_extender_cluster_free_gpus{E})"
          f" / max by (cluster, modelName) (gpufleet_extender_cluster_gpus{E})", "{{cluster}} {{modelName}}"),),
        "Share of GPU capacity allocated, per GPU model (shares count as fractions)."),
    Panel("Free and fragmented GPUs", "short", (
        q(f"max by (cluster, modelName) (gpufleet_extender_cluster_free_gpus{E})", "free {{modelName}}"),
        q(f"max by (cluster, modelName) (gpufleet_extender_cluster_fragmentation_gpus{E})",
          "fragmented {{modelName}}")),
        "Free GPUs, and the expected free capacity the workload mix cannot use (FGD's F), in GPUs."),
    Panel("Decisions by policy", "ops", (
        q(f"sum by (cluster, policy) (rate(gpufleet_extender_decisions_total{E}[$__rate_interval]))",
          "{{policy}}"),),
        "Prioritize answers per second by placement policy (off: pods that did not opt in)."),
    Panel("Extender latency p50 / p99 per verb", "s", (
        q(f"histogram_quantile(0.99, sum by (instance, verb, le) "
          f"(rate(gpufleet_extender_request_duration_seconds_bucket{E}[$__rate_interval])))",
          "p99 {{verb}} {{instance}}"),
        q(f"histogram_quantile(0.5, sum by (instance, verb, le) "
          f"(rate(gpufleet_extender_request_duration_seconds_bucket{E}[$__rate_interval])))",
          "p50 {{verb}} {{instance}}")),
        "Time to answer one call from kube-scheduler, per verb and extender replica."),
    Panel("Extender calls by verb and code", "reqps", (
        q(f"sum by (instance, verb, code) (rate(gpufleet_extender_requests_total{E}[$__rate_interval]))",
          "{{verb}} {{code}} {{instance}}"),)),
    Panel("Binds by result", "ops", (
        q(f"sum by (instance, result) (rate(gpufleet_extender_binds_total{E}[$__rate_interval]))",
          "{{result}} {{instance}}"),),
        "bound, already_bound (a retry) and error."),
    Panel("Assumed placements", "short", (
        q(f"gpufleet_extender_assumed_placements{E}", "assumed {{instance}}"),
        q(f"increase(gpufleet_extender_assumptions_expired_total{E}[$__rate_interval])", "expired {{instance}}")),
        "Decisions not yet confirmed by the pod watch, and those released unconfirmed."),
    Panel("Extender cache age", "s", (
        q(f"gpufleet_extender_cache_age_seconds{E}", "{{instance}}"),),
        "Seconds since the last change seen by the extender's watches."),
    Panel("Extender model size", "short", (
        q(f"gpufleet_extender_nodes{E}", "nodes {{instance}}"),
        q(f"gpufleet_extender_placements{E}", "pods {{instance}}"))),
    Panel("Kubernetes Events sent by the extender", "ops", (
        q(f"sum by (instance, outcome) (rate(gpufleet_extender_events_total{E}[$__rate_interval]))",
          "{{outcome}} {{instance}}"),)),
    Panel("Scheduling attempts by profile", "ops", (
        q(f'sum by (profile, result) (rate(scheduler_schedule_attempts_total{{{CLUSTER}, job="kube-scheduler"}}'
          f"[$__rate_interval]))", "{{profile}} {{result}}"),),
        "kube-scheduler's own count: gpufleet-scheduler is the profile that calls the extender."),
    Panel("Extenders up", "short", (
        q(f'sum by (cluster) (up{{{CLUSTER}, job="gpufleet-extender"}})', "{{cluster}}", instant=True),),
        kind="stat"),
)

# ---- Fleet: GPUs and pods (autoscaler/agent/metrics.py, DCGM names and labels) -------------------

D = f"{CLUSTER}, {NODE}"
FLEET = (
    Panel("GPU utilisation per GPU", "percent", (
        q(f"max by (cluster, hostname, gpu, modelName) (DCGM_FI_DEV_GPU_UTIL{{{D}}})",
          "{{hostname}} GPU {{gpu}}"),)),
    Panel("GPU utilisation per pod", "percent", (
        q(f'max by (namespace, pod, hostname, gpu) (DCGM_FI_DEV_GPU_UTIL{{{D}, {NAMESPACE}, pod!=""}})',
          "{{namespace}}/{{pod}} on {{hostname}} GPU {{gpu}}"),)),
    Panel("GPU memory used per GPU", "decmbytes", (
        q(f"max by (cluster, hostname, gpu) (DCGM_FI_DEV_FB_USED{{{D}}})", "{{hostname}} GPU {{gpu}}"),)),
    Panel("GPU memory used per pod", "decmbytes", (
        q(f'sum by (namespace, pod, hostname) (DCGM_FI_DEV_FB_USED{{{D}, {NAMESPACE}, pod!=""}})',
          "{{namespace}}/{{pod}} on {{hostname}}"),)),
    Panel("Idle GPUs", "short", (
        q(f"sum by (hostname) (gpufleet:gpu_held_idle:bool{{{D}, {NAMESPACE}}})", "held idle on {{hostname}}"),
        q(f"sum by (hostname) (1 - gpufleet_agent_gpu_allocated{{{D}}})", "unallocated on {{hostname}}")),
        "GPUs a pod holds below 5 % utilisation, and GPUs no pod holds (per the kubelet)."),
    Panel("Idle GPU-hours by namespace, last hour", "short", (
        q(f"sum by (namespace) (sum_over_time(cluster_namespace:gpufleet_gpus_held_idle:sum{{{CLUSTER}, "
          f"{NAMESPACE}}}[1h:10s])) / 360", "{{namespace}}", instant=True),),
        "Held-idle GPUs sampled every 10 s over the last hour, summed: GPU-hours spent idle in that hour.",
        kind="bargauge"),
    Panel("GPU power", "watt", (
        q(f"max by (cluster, hostname, gpu) (DCGM_FI_DEV_POWER_USAGE{{{D}}})", "{{hostname}} GPU {{gpu}}"),)),
    Panel("GPU temperature", "celsius", (
        q(f"max by (cluster, hostname, gpu) (DCGM_FI_DEV_GPU_TEMP{{{D}}})", "{{hostname}} GPU {{gpu}}"),)),
    Panel("GPU SM clock", "hertz", (
        q(f"max by (cluster, hostname, gpu) (DCGM_FI_DEV_SM_CLOCK{{{D}}}) * 1000000", "{{hostname}} GPU {{gpu}}"),),
        "SM clock (NVML, DCGM's MHz as Hz): near its idle floor while no kernel runs, boosted when busy; a busy "
        "GPU below its usual clock is throttled (power, heat)."),
    Panel("GPUs lost or unhealthy", "short", (
        q(f"sum by (hostname) (gpufleet_agent_gpu_lost{{{D}}})", "lost on {{hostname}}"),
        q(f"sum by (hostname) (1 - gpufleet_agent_gpu_healthy{{{D}}})", "unhealthy on {{hostname}}")),
        "GPUs that fell off the bus (NVML GpuIsLost) or whose last read failed."),
    Panel("MIG instances: memory used", "decmbytes", (
        q(f'max by (hostname, gpu, GPU_I_PROFILE, GPU_I_ID) (DCGM_FI_DEV_FB_USED{{{D}, GPU_I_PROFILE!=""}})',
          "{{hostname}} GPU {{gpu}} {{GPU_I_PROFILE}} #{{GPU_I_ID}}"),),
        "Per MIG instance (DCGM's GPU_I_PROFILE and GPU_I_ID labels); MIG devices report no utilisation."),
    Panel("Containers per GPU", "short", (
        q(f"max by (hostname, gpu) (gpufleet_agent_gpu_holders{{{D}}})", "{{hostname}} GPU {{gpu}}"),),
        "More than 1 when the GPU is shared (time-slicing)."),
    # the reclaim controller (autoscaler/controller/metrics.py): opted-in pods only
    Panel("Idle GPUs of opted-in pods", "short", (
        q(f"max by (namespace) (gpufleet_reclaim_idle_gpus{{{CLUSTER}, {NAMESPACE}}})", "{{namespace}}"),
        q(f"max by (cluster) (gpufleet_reclaim_opted_in_gpus{{{CLUSTER}}})", "opted-in GPUs {{cluster}}")),
        "GPUs of pods that opted in to reclaim (gpufleet.io/reclaim) in an idle run now, and all their GPUs."),
    Panel("Idle GPU-hours of opted-in pods by namespace, last hour", "short", (
        q(f"sum by (namespace) (increase(gpufleet_reclaim_idle_gpu_seconds_total{{{CLUSTER}, {NAMESPACE}}}[1h]))"
          " / 3600", "{{namespace}}", instant=True),), kind="bargauge"),
    Panel("Reclaim notices and actions", "short", (
        q(f"sum by (kind, result) (increase(gpufleet_reclaim_actions_total{{{CLUSTER}}}[$__rate_interval]))",
          "{{kind}} {{result}}"),),
        "Reports, notices (gpufleet.io/idle-since + Event), cancels and actions (scale-to-zero, suspend, evict)."),
    Panel("Skipped reclaim decisions by reason", "ops", (
        q(f"sum by (reason) (rate(gpufleet_reclaim_skipped_decisions_total{{{CLUSTER}}}[$__rate_interval]))",
          "{{reason}}"),),
        "Decisions that led to no action: protection (do-not-disrupt, snooze), grace, no data, budget, PDB..."),
)

# ---- Agents: the agents' own health ---------------------------------------------------------------

A = f"{{{CLUSTER}}}"
AGENTS = (
    Panel("Sampling passes", "ops", (
        q(f"rate(gpufleet_agent_sampling_passes_total{A}[$__rate_interval]) {WITH_HOST}", "{{hostname}}"),),
        "Passes over every GPU per second; should match 1 / the sampling interval."),
    Panel("Sampling pass duration p99", "s", (
        q(f"histogram_quantile(0.99, sum by (cluster, instance, le) "
          f"(rate(gpufleet_agent_sampling_pass_duration_seconds_bucket{A}[$__rate_interval]))) {WITH_HOST}",
          "{{hostname}}"),)),
    Panel("Seconds since the newest sample", "s", (
        q(f"time() - gpufleet_agent_last_sample_timestamp_seconds{A} {WITH_HOST}", "{{hostname}}"),),
        "Above a few sampling intervals the agent is stuck (alert GpufleetAgentSilent)."),
    Panel("Failed passes and NVML errors", "ops", (
        q(f"rate(gpufleet_agent_sampling_failures_total{A}[$__rate_interval]) {WITH_HOST}",
          "failed passes {{hostname}}"),
        q(f"(sum by (cluster, instance) (rate(gpufleet_agent_nvml_errors_total{A}[$__rate_interval]))"
          f" or 0 * sum by (cluster, instance) (gpufleet_agent_sampling_passes_total{A})) {WITH_HOST}",
          "NVML errors {{hostname}}")),
        "Passes that failed, and device reads that failed (0 until the first error; the split by NVML call "
        "and error class is gpufleet_agent_nvml_errors_total's operation and error labels)."),
    Panel("PodResources status", "short", (
        q(f"gpufleet_agent_pod_resources_up{A} {WITH_HOST}", "up {{hostname}}"),
        q(f"sum by (cluster, instance, outcome) "
          f"(rate(gpufleet_agent_pod_resources_refreshes_total{A}[$__rate_interval])) {WITH_HOST}",
          "asks/s {{outcome}} {{hostname}}")),
        "1 when the last ask of the kubelet's PodResources API worked."),
    Panel("Stream clients", "short", (
        q(f"gpufleet_agent_stream_clients{A} {WITH_HOST}", "clients {{hostname}}"),
        q(f"rate(gpufleet_agent_stream_batches_sent_total{A}[$__rate_interval]) {WITH_HOST}",
          "batches/s {{hostname}}")),
        "Open StreamSamples calls (the controller holds one per agent) and batches sent."),
    Panel("Agents", "short", (
        q(f'gpufleet_agent_info{{{CLUSTER}, {NODE}}}', "{{hostname}} {{version}} {{backend}} driver {{driver_version}}",
          instant=True),), "Agent version, GPU backend and driver per node.", kind="bargauge"),
    Panel("Controller: agent streams and leader", "short", (
        q(f"sum by (cluster, instance, state) (gpufleet_controller_agents{A})", "{{state}} {{instance}}"),
        q(f"gpufleet_controller_leader{A}", "leader {{instance}}")),
        "Agents the reclaim controller streams samples from, and which replica holds the leader Lease."),
    Panel("Controller: samples received and pass duration", "short", (
        q(f"sum by (instance) (rate(gpufleet_controller_agent_samples_total{A}[$__rate_interval]))",
          "GPU samples/s {{instance}}"),
        q(f"histogram_quantile(0.99, sum by (instance, le) "
          f"(rate(gpufleet_controller_pass_duration_seconds_bucket{A}[$__rate_interval])))",
          "pass p99 (s) {{instance}}"))),
    Panel("Agents scraped", "short", (
        q(f'sum by (cluster) (up{{{CLUSTER}, job="gpufleet-agent"}})', "{{cluster}}", instant=True),),
        kind="stat"),
)

# ---- Cost: the waste ledger, budgets and recommendations (autoscaler/cost/attribution.py) ----------

TEAM = 'team=~"$team"'
C = f"{CLUSTER}, {TEAM}"
COST = (
    Panel("GPU cost by kind", "currencyUSD", (
        q(f"sum by (kind) (rate(gpufleet_cost_gpu_usd_total{{{CLUSTER}}}[$__rate_interval])) * 3600", "{{kind}}"),),
        "$ per hour: unallocated (no pod holds the GPU), allocated-idle and allocated-active."),
    Panel("Waste by team, last 24 h", "currencyUSD", (
        q(f'sum by (team, kind) (increase(gpufleet_cost_team_gpu_usd_total{{{C}, kind!="allocated-active"}}[24h]))',
          "{{team}} {{kind}}", instant=True),), "Held-idle GPU $ per team (pods without a team label: "
        "unassigned).", kind="bargauge"),
    Panel("Spend vs budget, this month", "currencyUSD", (
        q(f"max by (team) (gpufleet_cost_budget_spent_usd{{{C}}})", "spent {{team}}"),
        q(f"max by (team) (gpufleet_cost_budget_forecast_usd{{{C}}})", "forecast at month end {{team}}"),
        q(f"max by (team) (gpufleet_cost_budget_usd{{{C}}})", "budget {{team}}")),
        "Spend so far, the forecast for the month's end, and the budget (teams with one)."),
    Panel("Budget thresholds reached", "short", (
        q(f"max by (team, basis, threshold) (gpufleet_cost_budget_alert{{{C}}})", "{{team}} {{basis}} {{threshold}}"),),
        "1 when spend (basis=spent) or the forecast (basis=forecast) reached 50/80/100 % of the budget."),
    Panel("Spend anomaly", "short", (
        q(f"max by (team) (gpufleet_cost_spend_anomaly{{{C}}})", "{{team}}"),),
        "1 when a team's spend rate jumped far above its recent baseline."),
    Panel("Idle and wrong-size $ by namespace, last 24 h", "currencyUSD", (
        q(f'sum by (namespace) (increase(gpufleet_cost_pod_gpu_usd_total{{{C}, {NAMESPACE}, kind="allocated-idle"}}'
          f"[24h]))", "idle {{namespace}}", instant=True),
        q(f"sum by (namespace) (increase(gpufleet_cost_pod_wrong_size_usd_total{{{C}, {NAMESPACE}}}[24h]))",
          "wrong size {{namespace}}", instant=True)), kind="bargauge"),
    Panel("GPU cost per node", "currencyUSD", (
        q(f"sum by (node) (rate(gpufleet_cost_node_gpu_usd_total{{{CLUSTER}}}[$__rate_interval])) * 3600",
          "{{node}}"),), "$ per hour of each node's GPUs, all kinds."),
    Panel("GPU price per node (OpenCost names)", "currencyUSD", (
        q(f"max by (node, instance_type) (node_gpu_hourly_cost{{{CLUSTER}}})", "{{node}} {{instance_type}}"),),
        "$ per GPU-hour the ledger charges (annotation, catalog or spot estimate)."),
    Panel("Recommendations: $ per hour now and at the recommended size", "currencyUSD", (
        q(f"max by (workload) (gpufleet_cost_recommendation_now_usd_per_hour{{{CLUSTER}}})", "now {{workload}}",
          instant=True),
        q(f"max by (workload, gpu_model, gpu_milli, instance_type, capacity_type) "
          f"(gpufleet_cost_recommendation_after_usd_per_hour{{{CLUSTER}}})",
          "after {{workload}}: {{gpu_model}} x{{gpu_milli}} on {{instance_type}} {{capacity_type}}", instant=True)),
        kind="bargauge"),
    Panel("Savings of the recommendations", "currencyUSD", (
        q(f"max by (workload) (gpufleet_cost_recommendation_now_usd_per_hour{{{CLUSTER}}}) - on (workload) "
          f"min by (workload) (gpufleet_cost_recommendation_after_usd_per_hour{{{CLUSTER}}})", "{{workload}}",
          instant=True),), "$ per hour each workload would save at its recommended size.", kind="bargauge"),
)

DASHBOARDS: dict[str, tuple[str, tuple[Panel, ...], tuple[str, ...]]] = {
    # file stem: (title, panels, variables (keys of VARIABLES))
    "gpufleet-placement": ("gpufleet / Placement", PLACEMENT, ("cluster",)),
    "gpufleet-fleet": ("gpufleet / Fleet", FLEET, ("cluster", "node", "namespace")),
    "gpufleet-agents": ("gpufleet / Agents", AGENTS, ("cluster", "node")),
    "gpufleet-cost": ("gpufleet / Cost", COST, ("cluster", "namespace@cost", "team")),
}

VARIABLES = {
    "cluster": ("Cluster", 'label_values(up{job=~"gpufleet-.*"}, cluster)'),
    "node": ("Node", f"label_values(gpufleet_agent_info{{{CLUSTER}}}, hostname)"),
    "namespace": ("Namespace", f'label_values(DCGM_FI_DEV_GPU_UTIL{{{CLUSTER}, pod!=""}}, namespace)'),
    "namespace@cost": ("Namespace", f"label_values(gpufleet_cost_pod_gpu_usd_total{{{CLUSTER}}}, namespace)"),
    "team": ("Team", f"label_values(gpufleet_cost_team_gpu_usd_total{{{CLUSTER}}}, team)"),
}


def _variable(key: str) -> dashboard.QueryVariable:
    """``key`` is a variable name, or ``name@variant`` for another query of the same variable."""
    label, query = VARIABLES[key]
    return (dashboard.QueryVariable(key.split("@")[0]).label(label).query(query).datasource(DATASOURCE)
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC)
            .multi(True).include_all(True).all_value(".*")
            .current(VariableOption(text="All", value="$__all", selected=True)))


def _panel(panel: Panel):
    if panel.kind == "stat":
        builder = stat.Panel()
    elif panel.kind == "bargauge":
        builder = bargauge.Panel()
    else:
        builder = (timeseries.Panel().fill_opacity(10).line_width(1)
                   .legend(_legend()))
    builder = (builder.title(panel.title).unit(panel.unit).datasource(DATASOURCE).height(8).span(panel.width))
    if panel.description:
        builder = builder.description(panel.description)
    for i, query in enumerate(panel.queries):
        target = (prometheus.Dataquery().expr(query.expr).legend_format(query.legend).ref_id(chr(ord("A") + i))
                  .datasource(DATASOURCE))
        builder = builder.with_target(target.instant() if query.instant else target.range())
    return builder


def _legend():
    from grafana_foundation_sdk.builders.common import VizLegendOptions

    return (VizLegendOptions().display_mode(LegendDisplayMode.TABLE).placement(LegendPlacement.BOTTOM)
            .show_legend(True))


def build(stem: str) -> dict:
    title, panels, variables = DASHBOARDS[stem]
    board = (dashboard.Dashboard(title).uid(stem).tags(["gpufleet"]).refresh("30s").time("now-1h", "now")
             .timezone("browser").editable())
    board = board.with_variable(dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"))
    for name in variables:
        board = board.with_variable(_variable(name))
    for number, panel in enumerate(panels, start=1):
        board = board.with_panel(_panel(panel).id(number))
    return json.loads(json.dumps(board.build(), cls=JSONEncoder))


def render_dashboard(stem: str) -> str:
    return json.dumps(build(stem), indent=2, sort_keys=True) + "\n"


def render_prometheus_rule() -> str:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rule = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": "gpufleet", "labels": {"app.kubernetes.io/part-of": "gpufleet"}},
            "spec": {"groups": groups}}
    header = "# Generated from gpufleet.rules.yaml by deploy/monitoring/generate.py; edit that file instead.\n"
    return header + yaml.safe_dump(rule, sort_keys=False, width=110)


def outputs() -> dict[Path, str]:
    files = {DASHBOARD_DIR / f"{stem}.json": render_dashboard(stem) for stem in DASHBOARDS}
    files[PROMETHEUS_RULE] = render_prometheus_rule()
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a committed file differs")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs().items():
        current = path.read_text() if path.is_file() else None
        if current == text:
            continue
        if args.check:
            stale.append(str(path.relative_to(HERE.parent.parent)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print("out of date (run deploy/monitoring/generate.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
