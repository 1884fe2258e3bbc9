#!/usr/bin/env bash
# Real-GPU check of the gpufleet agent. Run from the repository root on a machine with an NVIDIA GPU:
#
#   bench/gpu_check/run.sh            # writes bench/out/gpu_check/{gpu_check,footprint}.json, agent.log
#   OUT=/some/dir bench/gpu_check/run.sh
#
# Needs no network. Uses the system python3 (PYTHON=... to choose another); if a .whl/ folder of
# wheels is present (grpcio, grpcio-tools, protobuf, nvidia-ml-py, prometheus-client), installs them
# into a private target dir first so the versions match the ones the code was tested with
# (SKIP_WHEELS=1 to use what is installed).
set -u
cd "$(dirname "$0")/../.."
OUT_DIR=${OUT:-bench/out/gpu_check}
mkdir -p "$OUT_DIR"
PY=${PYTHON:-python3}

echo "== probe"
nvidia-smi -L || echo "nvidia-smi failed (no driver?)"
"$PY" -V
if [ -z "${SKIP_WHEELS:-}" ] && [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/gpufleet-site .whl/*.whl || { echo "installing carried wheels failed"; exit 2; }
  export PYTHONPATH=/tmp/gpufleet-site
fi
# gpufleet itself: built and installed from this checkout (the build step generates the gRPC modules),
# so the checks run the `gpufleet agent` entry point the DaemonSet runs.
"$PY" -m pip install -q --no-deps --no-build-isolation --no-cache-dir --upgrade --target /tmp/gpufleet-pkg . \
  || { echo "installing gpufleet from this checkout failed (needs setuptools and grpcio-tools)"; exit 2; }
export PYTHONPATH="/tmp/gpufleet-pkg${PYTHONPATH:+:$PYTHONPATH}"
export PATH="/tmp/gpufleet-pkg/bin:$PATH"
"$PY" - <<'PY'
import importlib
for name in ("grpc", "google.protobuf", "grpc_tools", "prometheus_client", "yaml", "pynvml", "torch"):
    try:
        m = importlib.import_module(name)
        print(f"  {name:18s} {getattr(m, '__version__', '?'):12s} {getattr(m, '__file__', '')}")
    except Exception as err:  # noqa: BLE001
        print(f"  {name:18s} MISSING ({err.__class__.__name__}: {err})")
PY

echo "== check"
PYTHONUNBUFFERED=1 "$PY" bench/gpu_check/check.py --out "$OUT_DIR/gpu_check.json" "$@"
status=$?
echo "== wrote $OUT_DIR/gpu_check.json (exit $status)"

echo "== footprint (RSS by stage; agent CPU and RSS at 1 Hz, no clients)"
PYTHONUNBUFFERED=1 "$PY" bench/gpu_check/footprint.py --out "$OUT_DIR/footprint.json" \
  ${FOOTPRINT_SECONDS:+--seconds "$FOOTPRINT_SECONDS"} || status=1
exit $status
