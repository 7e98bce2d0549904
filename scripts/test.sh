#!/usr/bin/env bash
# The project's test command: installs the real peers the interop tests talk to (see
# scripts/install-peers.sh), then runs every test of the workspace. Extra arguments go to
# `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-peers.sh
export SAMPLER_PYTHON="$PWD/.venv/bin/python"

cargo test --workspace "$@"
