"""How a gpufleet service stops: SIGTERM or SIGINT sets an event its main thread waits on."""

from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger(__name__)


def stop_on_signals(signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)) -> threading.Event:
    """An event set (and logged) when one of ``signals`` arrives; call from the main thread."""
    stop = threading.Event()

    def handle(signum: int, frame: object) -> None:
        log.info("stopping on signal=%s", signal.Signals(signum).name)
        stop.set()

    for sig in signals:
        signal.signal(sig, handle)
    return stop
