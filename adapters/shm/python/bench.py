"""The Python writer's increment next to prometheus_client in multiprocess mode, in one run.

Usage: .venv/bin/python adapters/shm/python/bench.py   (prometheus-client installed by
scripts/install-peers.sh)
"""
import os
import sys
import tempfile
import timeit

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)

prom_dir = tempfile.mkdtemp()
os.environ["PROMETHEUS_MULTIPROC_DIR"] = prom_dir  # before the import, as its docs say
import prometheus_client  # noqa: E402

import sampler_shm  # noqa: E402

shm_dir = tempfile.mkdtemp()
os.chmod(shm_dir, 0o700)
seg = sampler_shm.Segment(shm_dir)
seg_nolock = sampler_shm.Segment(shm_dir, threads=False)
c = seg.counter("bench.requests", {"route": "/"})
c_nolock = seg_nolock.counter("bench.requests", {"route": "/"})
t = seg.timing("bench.latency")
pc = prometheus_client.Counter("bench_requests", "requests", ["route"]).labels("/")
ph = prometheus_client.Histogram("bench_latency_seconds", "latency")

N = 1_000_000
cases = [
    ("sampler_shm Counter.inc", c.inc),
    ("sampler_shm Counter.inc (threads=False)", c_nolock.inc),
    ("prometheus_client multiprocess Counter.inc", pc.inc),
    ("sampler_shm Timing.record", lambda: t.record(0.0123)),
    ("prometheus_client multiprocess Histogram.observe", lambda: ph.observe(0.0123)),
]
print("python %s, %d calls each, best of 5" % (sys.version.split()[0], N))
for name, f in cases:
    best = min(timeit.repeat(f, number=N, repeat=5))
    print("%-50s %7.1f ns/call" % (name, best / N * 1e9))
