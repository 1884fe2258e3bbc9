"""``gpufleet device-plugin``: the node side of GPU sharing (docs/designs/014-gpu-sharing.md).

A kubelet device plugin (API v1beta1) for ``nvidia.com/gpu`` and ``gpufleet.io/gpu-milli`` that gives
each container the GPUs the extender chose for its pod (``gpufleet.io/gpu-ids``). ``assignment`` is
pure (devices, matching a pod, what the container gets); ``pods`` reads the node's pods; ``plugin``
speaks gRPC to the kubelet.
"""
