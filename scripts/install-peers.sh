#!/usr/bin/env bash
# Installs, when missing, the real peers the interop tests talk to:
# - the Prometheus server and promtool (Debian package `prometheus`);
# - in ./.venv: Python's prometheus-client 0.26.0 (its text and OpenMetrics parsers; the shm
#   adapter's adapters/shm/python/bench.py also times its multiprocess mode), and
#   opentelemetry-proto, protobuf and rotel (the OTLP decoder and collector);
# - carbon-cache with whisper, and VictoriaMetrics (Debian packages);
# - Etsy StatsD 0.9.0 (npm) in ./.peers/statsd (node and npm from Debian when missing);
# - valgrind (Debian) for the memory-safety stress runs;
# - tmux (Debian) for the `sampler top` terminal tests.
# - chromium (Debian) for the live page's browser tests.
# - wrk (Debian) for the web service's overhead benchmark.
# - the i686 Rust target and gcc-multilib (Debian), for sampler-api's tests on a 32-bit target
#   (where a thread's cells live in the two-level array), when rustup is there to add it.
# Usage: bash scripts/install-peers.sh (from anywhere; apt-get needs root or sudo).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  echo "installing prometheus and promtool (Debian package prometheus)" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

# The live page's tests drive a headless Chromium over the DevTools protocol (Debian chromium).
if ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium (Debian package chromium)" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

if ! command -v valgrind >/dev/null 2>&1; then
  echo "installing valgrind (Debian package valgrind)" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends valgrind >/dev/null
fi

# The 32-bit run is an extra: where rustup cannot fetch the target (no rustup, or its server
# out of reach), test.sh says so and skips it.
if command -v rustup >/dev/null 2>&1; then
  if ! rustup target list --installed | grep -x i686-unknown-linux-gnu >/dev/null; then
    echo "adding the Rust target i686-unknown-linux-gnu" >&2
    rustup target add i686-unknown-linux-gnu >/dev/null ||
      echo "install-peers.sh: rustup could not add i686-unknown-linux-gnu" >&2
  fi
  if rustup target list --installed | grep -x i686-unknown-linux-gnu >/dev/null && [ ! -e /usr/lib32/crtn.o ]; then
    echo "installing gcc-multilib (Debian), to link for i686" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc-multilib >/dev/null
  fi
fi

if ! command -v tmux >/dev/null 2>&1; then
  echo "installing tmux (Debian package tmux)" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tmux >/dev/null
fi

# wrk (Debian) for the web service's overhead benchmark (examples/web-service/bench.sh).
if ! command -v wrk >/dev/null 2>&1; then
  echo "installing wrk (Debian package wrk)" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null
fi

py="$root/.venv/bin/python"
if ! "$py" -c "import importlib.metadata as m; assert m.version('prometheus-client') == '0.26.0'" 2>/dev/null; then
  echo "installing prometheus-client 0.26.0 into .venv" >&2
  [ -x "$py" ] || python3 -m venv "$root/.venv"
  "$root/.venv/bin/pip" install -q --disable-pip-version-check prometheus-client==0.26.0
fi

# Graphite exporter interop: carbon-cache with whisper (read back with /usr/bin/python3) and
# VictoriaMetrics' Graphite listener (Debian packages graphite-carbon, python3-whisper,
# victoria-metrics; their postinsts may try to start system services, which the tests do not use).
if ! command -v carbon-cache >/dev/null 2>&1 || ! /usr/bin/python3 -c "import whisper" 2>/dev/null \
   || ! command -v victoria-metrics >/dev/null 2>&1; then
  echo "installing graphite-carbon, python3-whisper and victoria-metrics (Debian)" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    graphite-carbon python3-whisper victoria-metrics >/dev/null
fi

# Etsy StatsD 0.9.0 (npm) in ./.peers/statsd, for the statsd exporter's interop tests; needs
# node and npm (Debian packages nodejs, npm). --omit=optional skips modern-syslog's native build.
if [ ! -f "$root/.peers/statsd/node_modules/statsd/stats.js" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "installing nodejs and npm (Debian packages)" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  fi
  echo "installing statsd 0.9.0 into .peers/statsd" >&2
  mkdir -p "$root/.peers/statsd"
  (cd "$root/.peers/statsd" && npm install --no-audit --no-fund --omit=optional --silent statsd@0.9.0)
fi

# OTLP: the official protobuf decoder (opentelemetry-proto 1.45.2, protobuf 7.36.2) and the
# rotel collector (its wheel ships the rotel-agent binary) in ./.venv.
if ! "$py" -c "import importlib.metadata as m; assert m.version('opentelemetry-proto') == '1.45.2' and m.version('protobuf') == '7.36.2' and m.version('rotel') == '0.0.1a15'" 2>/dev/null; then
  echo "installing opentelemetry-proto 1.45.2, protobuf 7.36.2 and rotel 0.0.1a15 into .venv" >&2
  [ -x "$py" ] || python3 -m venv "$root/.venv"
  "$root/.venv/bin/pip" install -q --disable-pip-version-check \
    opentelemetry-proto==1.45.2 protobuf==7.36.2 rotel==0.0.1a15
fi
