#!/usr/bin/env bash
# Installs, when missing, the real peers the interop tests talk to:
# - the Prometheus server and promtool (Debian package `prometheus`);
# - Python's prometheus-client 0.26.0 (its text and OpenMetrics parsers) in ./.venv;
# and valgrind (Debian package `valgrind`), which scripts/test.sh runs the slot-lifetime stress
# test under.
# Usage: bash scripts/install-peers.sh (from anywhere; apt-get needs root or sudo).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  echo "installing prometheus and promtool (Debian package prometheus)" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

if ! command -v valgrind >/dev/null 2>&1; then
  echo "installing valgrind (Debian package valgrind)" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends valgrind >/dev/null
fi

py="$root/.venv/bin/python"
if ! "$py" -c "import importlib.metadata as m; assert m.version('prometheus-client') == '0.26.0'" 2>/dev/null; then
  echo "installing prometheus-client 0.26.0 into .venv" >&2
  [ -x "$py" ] || python3 -m venv "$root/.venv"
  "$root/.venv/bin/pip" install -q --disable-pip-version-check prometheus-client==0.26.0
fi
