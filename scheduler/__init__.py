"""gpufleet scheduler: cluster model, fragmentation kernels, placement policies, simulator, extender.

Layers, bottom to top: ``kernels`` (numba, no I/O) -> ``model``/``workload``/``policies`` (pure logic)
-> ``simulator`` and ``extender`` (the edges). Nothing in this package imports ``autoscaler``.
"""
