"""Idle-GPU reclaim: idle detection, the idle-span forecast and the decision function, plus its backtest.

Pure layer: no Kubernetes, no gRPC, no clock reads (``now`` is passed in). The only I/O is in
``tracefile`` (reading trace files) and ``cli`` (the ``gpufleet reclaim`` command). The live controller
and the backtest call the same ``decide``.
"""

from .config import DetectionConfig, ForecastConfig, ReclaimConfig, ReclaimConfigError, WindowConfig
from .decision import Decision, Verdict, decide
from .history import SpanHistory, SpanLog
from .samples import GpuKey, Observation, Sample, Series

__all__ = [
    "Decision", "DetectionConfig", "ForecastConfig", "GpuKey", "Observation", "ReclaimConfig",
    "ReclaimConfigError", "Sample", "Series", "SpanHistory", "SpanLog", "Verdict", "WindowConfig", "decide",
]
