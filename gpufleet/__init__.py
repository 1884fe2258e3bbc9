"""gpufleet: fragmentation- and price-aware GPU scheduling and idle-GPU reclaim for Kubernetes.

One import package. Its subpackages live in the repository's top-level folders (setup.py maps them):
``gpufleet.core`` (gpufleet/core/: what every part shares), ``gpufleet.scheduler`` (scheduler/),
``gpufleet.autoscaler`` (autoscaler/), ``gpufleet.proto`` (proto/); ``gpufleet.cli`` is the command.
See docs/architecture.md for the layers and what each may import.
"""

__version__ = "0.1.0"
