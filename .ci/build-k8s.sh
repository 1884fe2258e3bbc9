#!/usr/bin/env bash
# CI hook: build the local cluster's binaries (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, etcd, kwok) from deploy/local/, or reuse them from the cache keyed by version
# (${GPUFLEET_CACHE:-$HOME/.cache/gpufleet}/bin/<versions>/). .ci/run calls this before pytest, so
# the tests marked `cluster` find them; with CI=true a missing binary fails those tests.
# First build: about 9-11 min on 2 cores (empty Go caches, downloads included); later runs: 1 s.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
start=$SECONDS
bash "$root/deploy/local/build.sh"
bin_dir="$(bash "$root/deploy/local/build.sh" --print-dir)"

# A binary that does not start fails here, not in the middle of the tests.
for binary in kube-apiserver kube-controller-manager kube-scheduler; do
  "$bin_dir/$binary" --version >/dev/null
done
"$bin_dir/etcd" --version >/dev/null
"$bin_dir/kwok" --version >/dev/null
"$bin_dir/kubectl" version --client >/dev/null
echo "build-k8s: binaries ready in $bin_dir ($((SECONDS - start)) s)"
