"""Backpressure: with too many binds waiting on the API server, filter holds kube-scheduler's next pod
(bounded, well inside its timeout) and lets it go as soon as a bind finishes."""

from __future__ import annotations

import json
import threading
import time

from gpufleet.scheduler.extender.service import BindBacklog
from gpufleet.scheduler.extender.wire import parse_scheduling_args

from . import payloads as P
from .conftest import eight_gpu_nodes, make_rig


def hold(backlog: BindBacklog, release: threading.Event) -> threading.Thread:
    """A bind in flight until ``release`` is set."""
    entered = threading.Event()

    def bind() -> None:
        with backlog.binding():
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=bind, daemon=True)
    thread.start()
    assert entered.wait(5)
    return thread


def test_no_wait_at_or_under_the_limit():
    backlog = BindBacklog(limit=1, max_wait_s=5)
    release = threading.Event()
    hold(backlog, release)
    assert backlog.wait() == 0.0
    release.set()


def test_filter_waits_until_a_bind_finishes_then_goes_on():
    backlog = BindBacklog(limit=1, max_wait_s=5)
    first, second = threading.Event(), threading.Event()
    threads = [hold(backlog, first), hold(backlog, second)]
    threading.Timer(0.2, first.set).start()
    waited = backlog.wait()
    assert 0.15 <= waited < 2.0, waited
    assert backlog.in_flight == 1
    second.set()
    for t in threads:
        t.join(5)
    assert backlog.in_flight == 0


def test_the_wait_is_bounded_when_binds_never_finish():
    backlog = BindBacklog(limit=1, max_wait_s=0.2)
    release = threading.Event()
    hold(backlog, release), hold(backlog, release)
    started = time.monotonic()
    assert 0.15 <= backlog.wait() < 1.0
    assert time.monotonic() - started < 1.0
    release.set()


def test_the_extender_filter_is_held_and_counts_the_time():
    rig = make_rig(eight_gpu_nodes(2))
    rig.extender.backlog = BindBacklog(limit=1, max_wait_s=0.2)
    release = threading.Event()
    hold(rig.extender.backlog, release), hold(rig.extender.backlog, release)
    pod = P.pod("p", gpus=1, annotations={"gpufleet.io/placement": "fgd"})
    reply = json.loads(rig.extender.filter(parse_scheduling_args(P.names_args(pod, ["gpu-000", "gpu-001"]))))
    release.set()
    assert len(reply["NodeNames"]) == 1  # answered after the wait, as usual
    assert rig.metrics.backpressure._value.get() >= 0.15
