#!/usr/bin/env bash
# Overhead of the HTTP layer and of the counting allocator, with axum-prometheus beside them,
# in one run: wrk against the web service's fast route (/api/hello) served each way listed in
# variants.sh (none, layer, +watchdog, +alloc, axum-prometheus).
# ROUNDS rounds (default 5) of DURATION seconds (default 5) per variant, the variants taking
# turns within each round so that a change in the machine's load falls on all of them.
# Prints each run's requests per second and the server's CPU time per request (user + system,
# from /proc/PID/stat: on a busy machine throughput follows the other processes' load, CPU
# time per request much less), then per variant the medians, the spread (min..max) and the
# change of the medians from `none`.
# Usage: bash examples/web-service/bench.sh   (needs wrk: bash scripts/install-peers.sh)
# Knobs: ROUNDS, DURATION, CONNECTIONS (default 32), WORKERS (server threads, default 1),
#        WRK_THREADS (default 1).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
rounds="${ROUNDS:-5}"
duration="${DURATION:-5}"
connections="${CONNECTIONS:-32}"
workers="${WORKERS:-1}"
wrk_threads="${WRK_THREADS:-1}"

command -v wrk >/dev/null 2>&1 || {
  echo "bench.sh: wrk is not installed: run bash scripts/install-peers.sh (Debian package wrk)" >&2
  exit 1
}
cargo build --release -q --manifest-path "$root/Cargo.toml" -p example-web-service --bins
bin="${CARGO_TARGET_DIR:-$root/target}/release"
work="$(mktemp -d)"
server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# shellcheck source=examples/web-service/variants.sh
source "$root/examples/web-service/variants.sh"

# Starts a variant on free ports; sets server_pid and url (waits for its "listening on" line).
start() {
  local log="$work/server.log"
  : >"$log"
  # shellcheck disable=SC2046
  $(command_of "$1") --listen 127.0.0.1:0 --metrics 127.0.0.1:0 --workers "$workers" 2>"$log" &
  server_pid=$!
  for _ in $(seq 1 200); do
    url="$(sed -n 's/^listening on \(http:[^ ]*\) .*/\1/p' "$log")"
    [ -n "$url" ] && return 0
    kill -0 "$server_pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.05
  done
  echo "bench.sh: $1 did not start within 10 s" >&2
  cat "$log" >&2
  exit 1
}

ticks="$(getconf CLK_TCK)"
# The server's user + system CPU time so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$server_pid/stat"; }

stop() { kill "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null || true; server_pid=""; }

echo "wrk -t$wrk_threads -c$connections -d${duration}s $rounds rounds, server workers $workers, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq 1 "$rounds"); do
  for v in "${variants[@]}"; do
    start "$v"
    cpu0="$(cpu_ticks)"
    wrk -t"$wrk_threads" -c"$connections" -d"${duration}s" "$url/api/hello" >"$work/wrk.out"
    cpu1="$(cpu_ticks)"
    stop
    rps="$(awk '/^Requests\/sec:/ {print $2}' "$work/wrk.out")"
    requests="$(awk '/requests in/ {print $1}' "$work/wrk.out")"
    errors="$(awk '/Non-2xx|Socket errors/ {print}' "$work/wrk.out")"
    [ -z "$errors" ] || { echo "bench.sh: $v: $errors" >&2; exit 1; }
    us="$(python3 -c "print(($cpu1 - $cpu0) / $ticks * 1e6 / $requests)")"
    printf 'round %d %-16s %10.0f req/s %8.1f us CPU/request\n' "$round" "$v" "$rps" "$us"
    echo "$v $rps $us" >>"$work/results"
  done
done

python3 - "$work/results" <<'PY'
import statistics, sys
rps, cpu = {}, {}
for line in open(sys.argv[1]):
    v, r, us = line.split()
    rps.setdefault(v, []).append(float(r))
    cpu.setdefault(v, []).append(float(us))
base_rps = statistics.median(rps["none"])
base_cpu = statistics.median(cpu["none"])
print(f"{'variant':16} {'req/s median':>12} {'min..max':>18} {'vs none':>8}   {'us CPU/req':>10} {'min..max':>14} {'vs none':>8}")
for v in rps:
    r, c = rps[v], cpu[v]
    mr, mc = statistics.median(r), statistics.median(c)
    print(f"{v:16} {mr:12.0f} {min(r):8.0f}..{max(r):<8.0f} {100 * (mr - base_rps) / base_rps:+7.1f}%"
          f"   {mc:10.1f} {min(c):6.1f}..{max(c):<6.1f} {100 * (mc - base_cpu) / base_cpu:+7.1f}%")
PY
