"""The synthetic cluster the extender benchmarks measure is a synced one: its verbs score and decide
(an unsynced cache would answer every pod neutrally, and the benchmarks would time the wrong path)."""

from __future__ import annotations

import json

from bench.extender_cluster import cached_extender, pod
from bench.extender_cpu import BOUND_POD, one_pod
from bench.http_servers import _bodies
from gpufleet.scheduler.extender.informer import PodSink
from gpufleet.scheduler.extender.server import verbs_of
from gpufleet.scheduler.extender.wire import parse_scheduling_args


def test_the_benchmarks_extender_is_ready_and_decides():
    extender, metrics, names = cached_extender(40, 0.3)
    assert extender.ready()
    args = {"Pod": pod("b-0", (1, 1000, "1"), policy="fgd"), "Nodes": None, "NodeNames": names}
    reply = json.loads(extender.filter(parse_scheduling_args(args)))
    assert len(reply["NodeNames"]) == 1 and metrics.decisions.labels("fgd")._value.get() == 1


def test_extender_cpu_times_a_decided_and_bound_pod_whose_watch_events_confirm_it():
    """bench/extender_cpu.py's pod goes the whole real path: decided in filter, bound, and its watch
    events (built from the captured bound pod) confirm the placement the bind made."""
    extender, metrics, _ = cached_extender(1000, 0.3)
    [(p, body)] = _bodies(1, 1000, 7)
    state = extender.state
    seconds = one_pod(verbs_of(extender, metrics), PodSink(state), state, json.loads(BOUND_POD.read_text()),
                      p, body, 0.0)
    assert all(s > 0 for s in seconds)
    placement = state.ledger.get(p["metadata"]["uid"])
    assert placement is not None and placement.bound and not placement.assumed and len(placement.gpus) == 1
    assert extender.state.ledger.assumed_count == 0 and metrics.decisions.labels("fgd")._value.get() == 1
