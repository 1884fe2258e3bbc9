"""gpufleet's own gRPC contracts, one sub-package per API version."""
