#!/usr/bin/env bash
# The project's test command. It installs what the interop tests talk to (the Prometheus
# server and promtool from Debian's packages, Python's prometheus_client parsers in ./.venv),
# then runs every test of the workspace. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  echo "installing prometheus and promtool (Debian package prometheus)" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

if ! .venv/bin/python -c 'import prometheus_client' >/dev/null 2>&1; then
  echo "installing prometheus-client into .venv" >&2
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check prometheus-client==0.26.0
fi
export SAMPLER_PYTHON="$PWD/.venv/bin/python"

cargo test --workspace "$@"
