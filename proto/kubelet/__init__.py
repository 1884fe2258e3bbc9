"""The kubelet's gRPC APIs that gpufleet talks to, written from their documented messages."""
