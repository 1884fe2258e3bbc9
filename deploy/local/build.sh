#!/usr/bin/env bash
# Build the local dev cluster's binaries from Go modules: kube-apiserver, kube-controller-manager,
# kube-scheduler and kubectl (k8s.io/kubernetes), etcd (go.etcd.io/etcd/server/v3) and kwok (sigs.k8s.io/kwok).
#
# The versions are pinned by the go.mod files next to this script (one module per component,
# because each pins its own k8s.io/* and etcd library versions). Binaries go to a cache outside
# the repository, keyed by those versions, so only the first build pays:
#
#   ${GPUFLEET_CACHE:-$HOME/.cache/gpufleet}/bin/k8s-<v>_etcd-<v>_kwok-<v>/
#
# Flux's source-controller and kustomize-controller (deploy/local/flux/go.mod, for
# `gpufleet cluster up --gitops`) and their CRDs go to a folder of their own, bin/flux-sc-<v>_kc-<v>/,
# so the control plane's key does not change; about 5 min more on 2 cores the first time.
#
# Usage: deploy/local/build.sh [--print-dir] [--force] [--no-flux]
#   --print-dir  print the binary directory for the pinned versions and exit (builds nothing)
#   --force      rebuild even when the binaries are already there
#   --no-flux    skip Flux (also: GPUFLEET_SKIP_FLUX=1)
# Environment: GPUFLEET_CACHE (cache root), GO_BUILD_PARALLEL (go build -p, default 2),
#              GO_BUILD_NICE (nice level, default 10).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${GPUFLEET_CACHE:-$HOME/.cache/gpufleet}"
parallel="${GO_BUILD_PARALLEL:-2}"
nice_level="${GO_BUILD_NICE:-10}"

print_dir=0
force=0
flux=1
[[ "${GPUFLEET_SKIP_FLUX:-0}" == 1 ]] && flux=0
for arg in "$@"; do
  case "$arg" in
    --print-dir) print_dir=1 ;;
    --force) force=1 ;;
    --no-flux) flux=0 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

# The version a go.mod requires for a module: "require MOD vX" or a line "MOD vX" in a block.
pinned() {
  local gomod="$1" module="$2" version
  version="$(awk -v m="$module" '($1 == m && $2 ~ /^v/) {print $2; exit} ($1 == "require" && $2 == m) {print $3; exit}' "$gomod")"
  if [[ -z "$version" ]]; then
    echo "build.sh: $gomod does not require $module; restore it from git" >&2
    exit 1
  fi
  echo "$version"
}

k8s_version="$(pinned "$here/kubernetes/go.mod" k8s.io/kubernetes)"
etcd_version="$(pinned "$here/etcd/go.mod" go.etcd.io/etcd/server/v3)"
kwok_version="$(pinned "$here/kwok/go.mod" sigs.k8s.io/kwok)"
key="k8s-${k8s_version}_etcd-${etcd_version}_kwok-${kwok_version}"
bin_dir="$cache_root/bin/$key"

if [[ "$print_dir" == 1 ]]; then
  echo "$bin_dir"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "build.sh: the go command is missing; install Go >= 1.26 (Debian: apt-get install golang-go, or the go toolchain from go.dev)" >&2
  exit 1
fi

# component directory, then its main packages (binary names: see binary_name).
components=(
  "etcd go.etcd.io/etcd/server/v3"
  "kwok sigs.k8s.io/kwok/cmd/kwok"
  "kubernetes k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl"
)

binary_name() {
  case "$1" in
    go.etcd.io/etcd/server/v3) echo etcd ;;
    *) basename "$1" ;;
  esac
}

mkdir -p "$bin_dir"
# One build at a time per cache folder (CI and a developer may share a machine).
exec 9>"$bin_dir/.lock"
if ! flock -n 9; then
  echo "build.sh: another build.sh is running for $bin_dir; waiting for it"
  flock 9
fi
rm -rf "$bin_dir"/.build.*  # leftovers of an interrupted build
echo "build.sh: binaries for $key in $bin_dir"
total_start=$SECONDS
built_any=0
for entry in "${components[@]}"; do
  read -r component packages <<<"$entry"
  missing=()
  for pkg in $packages; do
    name="$(binary_name "$pkg")"
    if [[ "$force" == 1 || ! -x "$bin_dir/$name" ]]; then
      missing+=("$pkg")
    else
      echo "build.sh: $name already built, skipping"
    fi
  done
  [[ ${#missing[@]} -eq 0 ]] && continue

  built_any=1
  tmp="$(mktemp -d "$bin_dir/.build.XXXXXX")"
  names="$(for p in "${missing[@]}"; do binary_name "$p"; done | tr '\n' ' ')"
  echo "build.sh: building ${names}from $here/$component (go build -p $parallel, nice $nice_level; on 2 cores a first build takes about 1 min for etcd, 1-2 for kwok, 7-9 for kubernetes)"
  start=$SECONDS
  for pkg in "${missing[@]}"; do
    name="$(binary_name "$pkg")"
    # One go build per binary (-o FILE): the build cache shares the packages they have in common.
    if ! (cd "$here/$component" && CGO_ENABLED=0 nice -n "$nice_level" \
          go build -p "$parallel" -buildvcs=false -trimpath -ldflags="-s -w" -o "$tmp/$name" "$pkg"); then
      rm -rf "$tmp"
      echo "build.sh: building $name ($pkg) failed; see the go output above. The pinned versions are in $here/$component/go.mod" >&2
      exit 1
    fi
    mv -f "$tmp/$name" "$bin_dir/$name"
  done
  rmdir "$tmp"
  echo "build.sh: built ${names}in $((SECONDS - start)) s"
done

cat > "$bin_dir/VERSIONS" <<EOF
kubernetes=$k8s_version
etcd=$etcd_version
kwok=$kwok_version
go=$(go env GOVERSION)
EOF
if [[ "$built_any" == 1 ]]; then
  echo "build.sh: done in $((SECONDS - total_start)) s: $bin_dir"
else
  echo "build.sh: all binaries present: $bin_dir"
fi

# ---- Flux (for `gpufleet cluster up --gitops`) -------------------------------------------------
[[ "$flux" == 1 ]] || exit 0
sc_version="$(pinned "$here/flux/go.mod" github.com/fluxcd/source-controller)"
kc_version="$(pinned "$here/flux/go.mod" github.com/fluxcd/kustomize-controller)"
flux_dir="$cache_root/bin/flux-sc-${sc_version}_kc-${kc_version}"
mkdir -p "$flux_dir/crds"
exec 8>"$flux_dir/.lock"
flock 8
rm -rf "$flux_dir"/.build.*
for pkg in github.com/fluxcd/source-controller github.com/fluxcd/kustomize-controller; do
  name="$(basename "$pkg")"
  if [[ "$force" != 1 && -x "$flux_dir/$name" ]]; then
    echo "build.sh: $name already built, skipping"
    continue
  fi
  tmp="$(mktemp -d "$flux_dir/.build.XXXXXX")"
  echo "build.sh: building $name from $here/flux (about 3 min each on 2 cores the first time)"
  start=$SECONDS
  if ! (cd "$here/flux" && CGO_ENABLED=0 nice -n "$nice_level" \
        go build -p "$parallel" -buildvcs=false -trimpath -ldflags="-s -w" -o "$tmp/$name" "$pkg"); then
    rm -rf "$tmp"
    echo "build.sh: building $name failed; see the go output above. The pinned versions are in $here/flux/go.mod" >&2
    exit 1
  fi
  mv -f "$tmp/$name" "$flux_dir/$name"
  rmdir "$tmp"
  echo "build.sh: built $name in $((SECONDS - start)) s"
done
# Flux's CRDs, from the same module versions.
for pkg in github.com/fluxcd/source-controller github.com/fluxcd/kustomize-controller; do
  src="$(cd "$here/flux" && go list -m -f '{{.Dir}}' "$pkg")/config/crd/bases"
  cp -f "$src"/*.yaml "$flux_dir/crds/"
done
echo "build.sh: Flux ready in $flux_dir"
