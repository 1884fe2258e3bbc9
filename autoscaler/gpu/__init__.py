"""GPU readers: what one node's GPUs look like and what they are doing, behind one Protocol.

``model`` holds the plain data types (no I/O). ``nvml`` reads real GPUs through the NVML library
(``pynvml`` from the ``nvidia-ml-py`` distribution) or through anything shaped like it;
``simulated`` is such a thing: an NVML look-alike that plays utilisation scripts (``script``).
``backend`` chooses between them, never silently.

This package knows nothing about pods, gRPC or Prometheus.
"""
