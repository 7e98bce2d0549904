"""A Python worker for the tests: the same series and values as examples/shm-writer.rs.

Usage: python3 py_writer.py DIR ITERATIONS [TAG]   (ITERATIONS 0: until killed)
"""
import sys

import sampler_shm

d, n = sys.argv[1], int(sys.argv[2])
tag = sys.argv[3] if len(sys.argv) > 3 else "python"
seg = sampler_shm.Segment(d)
labels = {"lang": tag}
requests = seg.counter("test.requests", labels)
nbytes = seg.counter("test.bytes")
latency = seg.timing("test.latency", labels)
busy = seg.gauge("test.busy")
print("ready", seg.path, flush=True)
i = 0
while n == 0 or i < n:
    requests.inc()
    nbytes.inc(i)
    latency.record((i % 64 + 1) / 1024.0)
    busy.set(i % 7)
    i += 1
print("done", i, flush=True)
seg.close()
