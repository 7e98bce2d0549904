#!/usr/bin/env bash
# Installs what the Prometheus exporter's interop tests talk to, if missing:
# the Prometheus server and promtool (Debian package `prometheus`) and a Python venv at
# .venv with prometheus-client 0.26.0 (its text and OpenMetrics parsers).
# Usage: scripts/prometheus-peers.sh   (from anywhere; needs root for apt-get)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus
fi

py="${SAMPLER_PYTHON:-$root/.venv/bin/python}"
if ! "$py" -c "import importlib.metadata as m; assert m.version('prometheus-client') == '0.26.0'" 2>/dev/null; then
    if [ ! -x "$root/.venv/bin/python" ]; then
        python3 -m venv "$root/.venv"
    fi
    "$root/.venv/bin/pip" install -q prometheus-client==0.26.0
fi
