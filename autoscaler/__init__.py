"""gpufleet autoscaler: the per-node GPU agent and the reclaim/recommendation controller.

May import ``scheduler`` (model, kernels, pricing); ``scheduler`` never imports this package.
"""
