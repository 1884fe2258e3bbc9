"""GitOps plumbing: a Git server on loopback, Flux in the local cluster, recommendations as commits."""
