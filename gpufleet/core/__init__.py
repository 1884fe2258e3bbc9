"""What every part of gpufleet shares: clock, names of annotations and labels, units, the price
catalog and the Kubernetes plumbing (API client, list+watch informer).

This layer imports no other gpufleet package, and no numpy, numba or gRPC: the agent loads it too.
"""
