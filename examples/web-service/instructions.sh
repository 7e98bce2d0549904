#!/usr/bin/env bash
# User-space instructions per request of the web service's fast route (/api/hello), per
# variant, counted by valgrind's callgrind: a figure the machine's load does not move, beside
# bench.sh's timings that it does. Each variant runs under callgrind for SECONDS (default 20)
# while wrk sends requests for the middle part of them; the count is the inclusive cost of
# hyper's connection dispatcher (everything done for the requests on their connections: the
# parse, the service, the layer, the response; not the kernel's work) divided by the
# requests wrk saw answered.
# The variants are those of variants.sh.
# Usage: bash examples/web-service/instructions.sh   (needs valgrind and wrk:
#        bash scripts/install-peers.sh)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
seconds="${SECONDS_PER_VARIANT:-20}"
for tool in valgrind callgrind_annotate wrk; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "instructions.sh: $tool is not installed: run bash scripts/install-peers.sh" >&2
    exit 1
  }
done
cargo build --release -q --manifest-path "$root/Cargo.toml" -p example-web-service --bins
bin="${CARGO_TARGET_DIR:-$root/target}/release"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# shellcheck source=examples/web-service/variants.sh
source "$root/examples/web-service/variants.sh"

base=""
printf '%-16s %10s %14s %9s\n' variant requests "instr/request" "vs none"
for v in "${variants[@]}"; do
  log="$work/server-$v.log"
  # shellcheck disable=SC2046
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
    $(command_of "$v") --listen 127.0.0.1:0 --metrics 127.0.0.1:0 --workers 1 \
    --seconds "$seconds" 2>"$log" &
  pid=$!
  url=""
  for _ in $(seq 1 600); do
    url="$(sed -n 's/^listening on \(http:[^ ]*\) .*/\1/p' "$log")"
    [ -n "$url" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.05
  done
  [ -n "$url" ] || { echo "instructions.sh: $v did not start within 30 s" >&2; exit 1; }
  requests="$(wrk -t1 -c4 -d"$((seconds / 2))s" "$url/api/hello" | awk '/requests in/ {print $1}' || true)"
  wait "$pid"
  instructions="$(callgrind_annotate --inclusive=yes "$work/cg.out" \
    | awk '/hyper::proto::h1::dispatch::Dispatcher<.*>::poll_catch/ && !found {gsub(",", "", $1); print $1; found = 1}')"
  [ -n "$requests" ] && [ "$requests" -gt 0 ] || {
    echo "instructions.sh: $v: wrk got no answer from $url (server log: $(tail -n 3 "$log"))" >&2
    exit 1
  }
  [ -n "$instructions" ] || {
    echo "instructions.sh: $v: callgrind's profile has no hyper::proto::h1::dispatch::Dispatcher::poll_catch (built without symbols, or hyper renamed it)" >&2
    exit 1
  }
  per="$((instructions / requests))"
  [ -n "$base" ] || base="$per"
  printf '%-16s %10d %14d %+8.1f%%\n' "$v" "$requests" "$per" \
    "$(python3 -c "print(100 * ($per - $base) / $base)")"
done
