"""The synthetic cluster the extender benchmarks measure is a synced one: its verbs score and decide
(an unsynced cache would answer every pod neutrally, and the benchmarks would time the wrong path)."""

from __future__ import annotations

import json

from bench.extender_cluster import cached_extender, pod
from gpufleet.scheduler.extender.wire import parse_scheduling_args


def test_the_benchmarks_extender_is_ready_and_decides():
    extender, metrics, names = cached_extender(40, 0.3)
    assert extender.ready()
    args = {"Pod": pod("b-0", (1, 1000, "1"), policy="fgd"), "Nodes": None, "NodeNames": names}
    reply = json.loads(extender.filter(parse_scheduling_args(args)))
    assert len(reply["NodeNames"]) == 1 and metrics.decisions.labels("fgd")._value.get() == 1
