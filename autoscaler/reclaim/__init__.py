"""Idle-GPU reclaim: idle detection, the idle-span forecast and the decision function, plus its backtest.

Pure layer: no Kubernetes, no gRPC, no clock reads (``now`` is passed in). The only I/O is in
``tracefile`` (reading trace files) and ``cli`` (the ``gpufleet reclaim`` command). The live controller
and the backtest call the same ``decide``.
"""

from .config import DetectionConfig, ForecastConfig, ReclaimConfig, ReclaimConfigError, WindowConfig
from .decision import Decision, Verdict, decide, decide_one
from .forecast import Forecast, remaining_probability
from .history import SpanHistory, SpanLog
from .idle import IdleRun, Span, current_run, idle_mask, spans
from .samples import GpuKey, Observation, Sample, Series

__all__ = [
    "Decision", "DetectionConfig", "Forecast", "ForecastConfig", "GpuKey", "IdleRun", "Observation",
    "ReclaimConfig", "ReclaimConfigError", "Sample", "Series", "Span", "SpanHistory", "SpanLog", "Verdict",
    "WindowConfig", "current_run", "decide", "decide_one", "idle_mask", "remaining_probability", "spans",
]
