"""The controller's Prometheus metrics, on an injected registry (``gpufleet_controller_*``, ``gpufleet_reclaim_*``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_DELAY_BUCKETS = (0.5, 1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 300, 600)
_PASS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ControllerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.leader = Gauge("gpufleet_controller_leader", "1 while this replica holds the leader Lease",
                            registry=registry)
        self.agents = Gauge("gpufleet_controller_agents", "agent endpoints, by whether a stream is connected",
                            ["state"], registry=registry)
        self.batches = Counter("gpufleet_controller_agent_batches_total", "sampling passes received from agents",
                               registry=registry)
        self.samples = Counter("gpufleet_controller_agent_samples_total", "GPU samples received from agents",
                               registry=registry)
        self.pass_seconds = Histogram("gpufleet_controller_pass_duration_seconds", "one decision pass",
                                      buckets=_PASS_BUCKETS, registry=registry)
        self.pods = Gauge("gpufleet_controller_opted_in_pods", "opted-in pods holding GPUs, by mode", ["mode"],
                          registry=registry)
        self.opted_in_gpus = Gauge("gpufleet_reclaim_opted_in_gpus", "GPUs held by opted-in pods",
                                   registry=registry)
        self.idle_gpus = Gauge("gpufleet_reclaim_idle_gpus", "GPUs of opted-in pods in an idle run now",
                               ["namespace"], registry=registry)
        self.idle_gpu_seconds = Counter("gpufleet_reclaim_idle_gpu_seconds_total",
                                        "GPU-seconds opted-in pods held idle GPUs", ["namespace"],
                                        registry=registry)
        self.reclaimed_gpu_seconds = Counter("gpufleet_reclaim_reclaimed_gpu_seconds_total",
                                             "GPU-seconds freed by actions (while the workload stays reclaimed)",
                                             ["namespace"], registry=registry)
        self.actions = Counter("gpufleet_reclaim_actions_total", "actions and notices, by kind and result",
                               ["kind", "result"], registry=registry)
        self.skipped = Counter("gpufleet_reclaim_skipped_decisions_total",
                               "decisions that did not lead to an action, by reason", ["reason"],
                               registry=registry)
        self.action_delay = Histogram("gpufleet_reclaim_action_delay_seconds",
                                      "from the end of the notice period to the action", buckets=_DELAY_BUCKETS,
                                      registry=registry)
        self.api_errors = Counter("gpufleet_controller_api_errors_total", "failed API calls, by operation",
                                  ["operation"], registry=registry)
