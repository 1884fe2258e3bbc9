#!/usr/bin/env bash
# Installs Prometheus (server + promtool) from Debian's `prometheus` package when either is missing.
# The monitoring tests and `gpufleet cluster up --monitoring` run the binaries directly; Debian's
# systemd unit is not used (and no systemd is needed).
set -euo pipefail
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "prometheus/promtool missing and no apt-get here: install Prometheus >= 2.42 so that" \
         "\`prometheus\` and \`promtool\` are on PATH" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "prometheus/promtool missing: run as root: apt-get install -y prometheus" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# Recommends (the node exporter) are not needed. Without systemd the package starts no service.
$SUDO apt-get install -y -q --no-install-recommends prometheus
command -v prometheus >/dev/null && command -v promtool >/dev/null
