"""The GPU node agent: samples every GPU of its node, joins GPUs to pods, serves gRPC and /metrics.

Layers inside: ``podmap``, ``history`` and ``wire`` are pure (no I/O); ``sampler`` drives a
GPU reader and a pod source on a clock; ``service`` (gRPC), ``web`` (HTTP) and ``metrics`` are
the edges; ``app`` wires them together and ``cli`` is ``gpufleet agent``.
"""
