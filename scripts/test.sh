#!/usr/bin/env bash
# The project's test command: installs the real peers the interop tests talk to (see
# scripts/install-peers.sh), then runs every test of the workspace, sampler-api's on a 32-bit
# target too (when rustup can add it), then the slot-lifetime
# stress test once more under valgrind's memcheck (bounded: SAMPLER_STRESS_SECS, default 30 s of
# load; any invalid read or write fails the run), and the counting allocator's tests (the
# global allocator of that binary, under threads recording and harvesting) the same way. Extra
# arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-peers.sh
export SAMPLER_PYTHON="$PWD/.venv/bin/python"

cargo test --workspace "$@"

# sampler-api on a 32-bit target, where a thread's cells cannot be described by one word and
# every record takes the two-level array's path (install-peers.sh adds the target with rustup).
if rustup target list --installed 2>/dev/null | grep -x i686-unknown-linux-gnu >/dev/null; then
  echo "sampler-api on i686-unknown-linux-gnu" >&2
  cargo test -p sampler-api --target i686-unknown-linux-gnu
else
  echo "test.sh: no rustup with the i686 target here: sampler-api's 32-bit run skipped" >&2
fi

# The test binary of sampler-api/tests/ (built by the run above), under memcheck.
api_tests="$(cargo test -p sampler-api --test api --no-run --message-format=json 2>/dev/null |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)"
[ -x "$api_tests" ] || { echo "test.sh: the sampler-api test binary was not found" >&2; exit 1; }
echo "valgrind: slot-lifetime stress test (${SAMPLER_STRESS_SECS:-30} s)" >&2
# --fair-sched: threads take turns fairly (without it the recorders can starve the harvests).
SAMPLER_STRESS_SECS="${SAMPLER_STRESS_SECS:-30}" valgrind --fair-sched=yes --error-exitcode=1 --leak-check=no \
  "$api_tests" stress::stress_slot_lifetimes --exact --nocapture

# The snapshot's tests (label values read in place, where the family keeps them after a series
# is removed or expires, or its family dropped), the labels' (a value behind a thin pointer), the
# family table's (values kept once, numbered, and let go) and a thread's cells' (the flat-array
# word, arrays that grow while readers hold the old ones, their retirement), the same way.
api_lib="$(cargo test -p sampler-api --lib --no-run --message-format=json 2>/dev/null |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)"
[ -x "$api_lib" ] || { echo "test.sh: the sampler-api unit test binary was not found" >&2; exit 1; }
echo "valgrind: snapshot, label, family table and thread cell tests" >&2
valgrind --error-exitcode=1 --leak-check=no "$api_lib" snapshot:: labels:: instruments::family::table:: \
  local::

# The Prometheus encoder's line writer (short copies by words into reserved room), the same way.
prom_lib="$(cargo test -p sampler-exporter-prometheus --lib --no-run --message-format=json 2>/dev/null |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)"
[ -x "$prom_lib" ] || { echo "test.sh: the prometheus exporter's unit test binary was not found" >&2; exit 1; }
echo "valgrind: prometheus line writer tests" >&2
valgrind --error-exitcode=1 --leak-check=no "$prom_lib" encode::line

# The counting allocator's tests, the allocator installed as the binary's global one.
alloc_tests="$(cargo test -p sampler-adapter-alloc --test counting --no-run --message-format=json 2>/dev/null |
  sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)"
[ -x "$alloc_tests" ] || { echo "test.sh: the sampler-adapter-alloc test binary was not found" >&2; exit 1; }
echo "valgrind: counting allocator tests" >&2
valgrind --fair-sched=yes --error-exitcode=1 --leak-check=no "$alloc_tests"
