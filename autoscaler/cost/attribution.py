"""Prometheus series for the ledger and budgets, built on an injected CollectorRegistry.

gpufleet series (USD, counters since the ledger started; GPU time in seconds):

- ``gpufleet_cost_gpu_usd_total{kind}`` and ``gpufleet_cost_gpu_seconds_total{kind}``
- ``gpufleet_cost_node_gpu_usd_total{node, kind}``
- ``gpufleet_cost_pod_gpu_usd_total{namespace, pod, owner, team, kind}``
- ``gpufleet_cost_pod_wrong_size_usd_total{namespace, pod, owner, team}``
- ``gpufleet_cost_pod_gpu_seconds_total{namespace, pod, owner, team}``
- ``gpufleet_cost_team_gpu_usd_total{team, kind}`` (unlabelled pods: ``team="unassigned"``)
- budgets: ``gpufleet_cost_budget_usd{team}``, ``gpufleet_cost_budget_spent_usd{team}``,
  ``gpufleet_cost_budget_forecast_usd{team}``, ``gpufleet_cost_budget_alert{team, basis, threshold}``
  (1 when spent / forecast reached that fraction), ``gpufleet_cost_spend_anomaly{team}``.
- recommendations (when given): ``gpufleet_cost_recommendation_now_usd_per_hour{workload}`` and
  ``gpufleet_cost_recommendation_after_usd_per_hour{workload, gpu_model, gpu_milli, instance_type,
  capacity_type}``.

OpenCost-named series (its metric and label names, so its dashboards keep working):
``node_gpu_hourly_cost`` and ``node_gpu_count`` {instance, node, instance_type, region, provider_id}
(per-GPU price, as OpenCost's), ``kubecost_node_is_spot`` (same labels) and
``container_gpu_allocation{namespace, pod, container, instance, node}`` (GPUs held now; a 250-milli
share is 0.25, where OpenCost reports a whole GPU). No I/O; values are read at scrape time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from gpufleet.autoscaler.cost.budgets import BudgetConfig, alert_levels, anomaly, forecast
from gpufleet.autoscaler.cost.ledger import KINDS, LedgerSnapshot
from gpufleet.autoscaler.cost.sizing import WorkloadRecommendation

NODE_LABELS = ("instance", "node", "instance_type", "region", "provider_id")
CONTAINER_LABELS = ("namespace", "pod", "container", "instance", "node")


class CostCollector(Collector):
    """Reads a fresh snapshot (and the budget config) at every scrape; ``now`` is the injected clock."""

    def __init__(self, snapshot: Callable[[], LedgerSnapshot], now: Callable[[], float],
                 budgets: BudgetConfig | Callable[[], BudgetConfig] | None = None,
                 recommendations: Callable[[], Sequence[WorkloadRecommendation]] | None = None) -> None:
        self._snapshot = snapshot
        self._now = now
        self._budgets = budgets or BudgetConfig()
        self._recommendations = recommendations

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        budgets = self._budgets() if callable(self._budgets) else self._budgets  # a callable: read each scrape
        yield from gpufleet_series(snap)
        yield from opencost_series(snap)
        yield from budget_series(snap, budgets, self._now())
        if self._recommendations is not None:
            yield from recommendation_series(self._recommendations())


def register(registry: CollectorRegistry, snapshot: Callable[[], LedgerSnapshot], now: Callable[[], float],
             budgets: BudgetConfig | Callable[[], BudgetConfig] | None = None,
             recommendations: Callable[[], Sequence[WorkloadRecommendation]] | None = None) -> CostCollector:
    collector = CostCollector(snapshot, now, budgets, recommendations)
    registry.register(collector)
    return collector


def gpufleet_series(snap: LedgerSnapshot) -> Iterator[Metric]:
    usd = CounterMetricFamily("gpufleet_cost_gpu_usd", "GPU cost by waste kind, USD", labels=["kind"])
    seconds = CounterMetricFamily("gpufleet_cost_gpu_seconds", "GPU time by waste kind, GPU-seconds",
                                  labels=["kind"])
    for kind in KINDS:
        usd.add_metric([kind], snap.by_kind.get(kind, 0.0))
        seconds.add_metric([kind], snap.gpu_seconds.get(kind, 0.0))
    node = CounterMetricFamily("gpufleet_cost_node_gpu_usd", "GPU cost per node and kind, USD",
                               labels=["node", "kind"])
    for name, kinds in sorted(snap.by_node.items()):
        for kind in KINDS:
            node.add_metric([name, kind], kinds.get(kind, 0.0))
    pod_labels = ["namespace", "pod", "owner", "team"]
    pod = CounterMetricFamily("gpufleet_cost_pod_gpu_usd", "GPU cost per pod and kind, USD",
                              labels=pod_labels + ["kind"])
    wrong = CounterMetricFamily("gpufleet_cost_pod_wrong_size_usd",
                                "GPU cost above the cheapest GPU class that holds the pod's peak, USD",
                                labels=pod_labels)
    held = CounterMetricFamily("gpufleet_cost_pod_gpu_seconds", "GPU time held per pod, GPU-seconds",
                               labels=pod_labels)
    for _, cost in sorted(snap.pods.items()):
        values = [cost.pod.namespace, cost.pod.name, cost.pod.owner, cost.team]
        for kind, value in sorted(cost.usd.items()):
            pod.add_metric(values + [kind], value)
        wrong.add_metric(values, cost.wrong_size_usd)
        held.add_metric(values, cost.gpu_seconds)
    team = CounterMetricFamily("gpufleet_cost_team_gpu_usd", "GPU cost per team and kind, USD",
                               labels=["team", "kind"])
    for name, kinds in sorted(snap.by_team.items()):
        for kind, value in sorted(kinds.items()):
            if kind in KINDS[1:]:
                team.add_metric([name, kind], value)
    yield from (usd, seconds, node, pod, wrong, held, team)


def opencost_series(snap: LedgerSnapshot) -> Iterator[Metric]:
    price = GaugeMetricFamily("node_gpu_hourly_cost", "node_gpu_hourly_cost hourly cost for each gpu on this node",
                              labels=list(NODE_LABELS))
    count = GaugeMetricFamily("node_gpu_count", "node_gpu_count count of gpu on this node", labels=list(NODE_LABELS))
    spot = GaugeMetricFamily("kubecost_node_is_spot", "kubecost_node_is_spot Cloud provider info about node "
                             "preemptibility", labels=list(NODE_LABELS))
    for name, (node, gpu_price) in sorted(snap.node_prices.items()):
        values = [name, name, node.instance_type, node.region, node.provider_id]
        price.add_metric(values, gpu_price.usd_per_gpu_hour)
        count.add_metric(values, node.gpus)
        spot.add_metric(values, 1.0 if gpu_price.spot else 0.0)
    alloc = GaugeMetricFamily("container_gpu_allocation", "container_gpu_allocation GPU used",
                              labels=list(CONTAINER_LABELS))
    for name, holdings in sorted(snap.current.items()):
        held: dict[tuple[str, str, str], float] = defaultdict(float)
        for h in holdings:
            held[(h.pod.namespace, h.pod.name, h.pod.container)] += h.fraction
        for (namespace, pod, container), value in sorted(held.items()):
            alloc.add_metric([namespace, pod, container, name, name], value)
    yield from (price, count, spot, alloc)


def team_hourly(snap: LedgerSnapshot) -> Mapping[str, dict[float, float]]:
    out: dict[str, dict[float, float]] = defaultdict(dict)
    for (team, hour), usd in snap.hourly.items():
        out[team][hour] = out[team].get(hour, 0.0) + usd
    return out


def budget_series(snap: LedgerSnapshot, config: BudgetConfig, now: float) -> Iterator[Metric]:
    budget = GaugeMetricFamily("gpufleet_cost_budget_usd", "Monthly GPU budget, USD", labels=["team"])
    spent = GaugeMetricFamily("gpufleet_cost_budget_spent_usd", "GPU spend this month, USD", labels=["team"])
    ahead = GaugeMetricFamily("gpufleet_cost_budget_forecast_usd", "Forecast GPU spend at month end, USD",
                              labels=["team"])
    alert = GaugeMetricFamily("gpufleet_cost_budget_alert",
                              "1 when spend (basis=spent) or the forecast (basis=forecast) reached the threshold",
                              labels=["team", "basis", "threshold"])
    jump = GaugeMetricFamily("gpufleet_cost_spend_anomaly", "1 when the team's spend rate jumped far above its "
                             "recent baseline", labels=["team"])
    series = team_hourly(snap)
    for team in sorted(set(series) | {b.team for b in config.budgets}):
        hourly = series.get(team, {})
        b = config.for_team(team)
        f = forecast(hourly, now, time_zone=b.time_zone if b is not None else "UTC")  # its own month
        spent.add_metric([team], f.spent_usd)
        ahead.add_metric([team], f.month_end_usd)
        jump.add_metric([team], 1.0 if anomaly(hourly, now).flagged else 0.0)
        if b is None:
            continue
        budget.add_metric([team], b.monthly_usd)
        for basis, levels in alert_levels(f.spent_usd, f.month_end_usd, b, config.thresholds).items():
            for threshold, reached in levels.items():
                alert.add_metric([team, basis, f"{threshold:g}"], 1.0 if reached else 0.0)
    yield from (budget, spent, ahead, alert, jump)


def recommendation_series(recs: Sequence[WorkloadRecommendation]) -> Iterator[Metric]:
    labels = ["workload", "gpu_model", "gpu_milli", "instance_type", "capacity_type"]
    now = GaugeMetricFamily("gpufleet_cost_recommendation_now_usd_per_hour",
                            "What the workload costs now, USD per hour", labels=["workload"])
    after = GaugeMetricFamily("gpufleet_cost_recommendation_after_usd_per_hour",
                              "What it would cost at the recommended size, USD per hour", labels=labels)
    for r in recs:
        if r.size is None:
            continue
        if r.usd_per_hour_now is not None:
            now.add_metric([r.workload], r.usd_per_hour_now)
        after.add_metric([r.workload, r.size.gpu_model, str(r.size.gpu_milli), r.instance_type,
                          "spot" if r.spot else "on-demand"], r.usd_per_hour_after)
    yield from (now, after)
