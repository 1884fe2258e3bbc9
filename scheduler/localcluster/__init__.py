"""The local dev cluster: a real control plane (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler) and kwok's fake GPU nodes, all on loopback, started by ``gpufleet cluster up``.

This is an edge layer: it starts and stops processes, writes certificates and config files, and
talks to the API server. It holds no placement logic and nothing below it imports it. The binaries
come from ``deploy/local/build.sh`` (a cache outside the repository, keyed by version).

Modules: ``binaries`` (where the build is), ``certs`` and ``kubeconfig`` (PKI), ``components`` (command
lines, config files), ``processes`` (start/stop, pid files), ``nodes`` (GPU node profiles), ``readiness``
(waits), ``extender`` (the seam to ``gpufleet extender``), ``cluster`` (the order of it all), ``cli``.
Nothing is imported here, so ``gpufleet --help`` stays fast.
"""
