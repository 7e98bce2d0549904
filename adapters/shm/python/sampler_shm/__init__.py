"""Publish counters, gauges and timings into a sampler shared-memory segment.

Each worker process creates its own segment (after fork) in a directory that one
``sampler run --shm DIR`` harvests. The layout is ``spec/shm.md``; this module uses only the
standard library (``mmap``, ``struct``, ``fcntl``, ``os``)::

    import sampler_shm
    seg = sampler_shm.Segment("/run/myapp/metrics")
    requests = seg.counter("http.requests", {"route": "/"})
    latency = seg.timing("http.latency")
    requests.inc()
    latency.record(0.012)           # seconds

A value is updated by one 8-byte store into the mapping (no syscall). Python has no atomic
add, so each update holds the segment's ``threading.Lock`` (uncontended in a single-threaded
worker); pass ``threads=False`` to leave it out when only one thread records. Timings are
guarded by the layout's sequence word: readers never take a torn copy, on hosts that make
stores visible in program order (x86-64).
"""

import bisect
import fcntl
import math
import mmap
import os
import struct
import sys
import threading
import time

__all__ = ["Segment", "Counter", "Gauge", "Timing", "MAGIC", "VERSION"]

MAGIC = b"SMPLSHM\0"
VERSION = 1
HEADER_SIZE = 128
SLOT = 64
RECORD_FIXED = 32
MAX_KEY = 4096
MAX_BUCKETS = 4096
INITIAL_SIZE = 64 * 1024

COUNTER, GAUGE, TIMING = 1, 2, 3

# Header and timing offsets (bytes), as in spec/shm.md.
_GENERATION = 40
_USED = 48
_T_SEQ, _T_SUM, _T_MIN, _T_MAX, _T_ZERO, _T_BUCKETS = 0, 8, 16, 24, 32, 40

if sys.byteorder != "little":  # pragma: no cover
    raise ImportError("sampler_shm writes the little-endian layout: this host is big-endian")


def _validate_name(name):
    if not 1 <= len(name.encode()) <= 255:
        raise ValueError("invalid metric name %r: must be 1 to 255 bytes" % name)
    for seg in name.split("."):
        if not seg or not ("a" <= seg[0] <= "z") or any(
            not (c.isascii() and (c.islower() or c.isdigit() or c == "_")) for c in seg
        ):
            raise ValueError(
                "invalid metric name %r: dotted segments of [a-z][a-z0-9_]*" % name
            )


def _validate_label_key(key):
    if (
        not key
        or len(key) > 128
        or key.startswith("__")
        or not (key[0] == "_" or "a" <= key[0] <= "z")
        or any(not (c.isascii() and (c.islower() or c.isdigit() or c == "_")) for c in key)
    ):
        raise ValueError("invalid label key %r: [a-z_][a-z0-9_]*, not starting with __" % key)


def _align8(n):
    return (n + 7) & ~7


class _Bounds:
    """Bucket boundaries at one scale: bucket i holds (b^i, b^(i+1)], b = 2^(2^-scale)."""

    def __init__(self, scale):
        self.scale = scale
        n = 1 << scale if scale > 0 else 1
        self.n = n
        self.bounds = [2.0 ** (j / n) for j in range(1, n)] if scale > 0 else []

    def index(self, v):
        m, e = math.frexp(v)  # v = m * 2^e, m in [0.5, 1)
        x, e = m * 2.0, e - 1  # v = x * 2^e, x in [1, 2)
        if self.scale <= 0:
            exp = e - (1 if x == 1.0 else 0)
            return exp >> (-self.scale)
        if x == 1.0:
            return e * self.n - 1
        return e * self.n + bisect.bisect_left(self.bounds, x)


class Segment:
    """This process's segment in ``directory`` (mode 0600, locked while it lives).

    Create it after fork: a child must not write into its parent's segment.
    """

    def __init__(self, directory, threads=True):
        self._lock = threading.Lock() if threads else None
        self._reg = threading.Lock()
        pid = os.getpid()
        start = time.time_ns()
        name = "%d-%d.shm" % (pid, start)
        tmp = os.path.join(directory, ".%s.tmp" % name)
        self.path = os.path.join(directory, name)
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            header = bytearray(HEADER_SIZE)
            header[0:8] = MAGIC
            struct.pack_into("<IIII", header, 8, VERSION, HEADER_SIZE, SLOT, 0)
            struct.pack_into("<QQ", header, 24, pid, start)
            os.write(fd, bytes(header))
            os.ftruncate(fd, INITIAL_SIZE)
            # Taken before the file gets its .shm name: a reader never sees it unlocked.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._maps = [mmap.mmap(fd, INITIAL_SIZE)]
            os.rename(tmp, self.path)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._size = INITIAL_SIZE
        self._used = 0
        self._generation = 0
        self._views = [self._views_of(self._maps[0])]
        self._records = {}
        self._closed = False

    @staticmethod
    def _views_of(m):
        raw = memoryview(m)
        return raw, raw.cast("Q"), raw.cast("d")

    def counter(self, name, labels=None):
        """A counter; the same name and labels give the same record."""
        return Counter(self, *self._record(COUNTER, name, labels))

    def gauge(self, name, labels=None):
        """A gauge (a float, last write wins)."""
        return Gauge(self, *self._record(GAUGE, name, labels))

    def timing(self, name, labels=None, scale=3, offset=-160, nbuckets=256):
        """A timing in seconds; by default scale 3 over (2^-20, 2^12] seconds."""
        if not (-10 <= scale <= 8 and 0 < nbuckets <= MAX_BUCKETS):
            raise ValueError("invalid timing shape: scale %d, %d buckets" % (scale, nbuckets))
        view, at = self._record(TIMING, name, labels, (scale, offset, nbuckets))
        return Timing(self, view, at, scale, offset, nbuckets)

    def _record(self, kind, name, labels, shape=None):
        if self._closed:
            raise ValueError("segment %s is closed" % self.path)
        labels = list((labels or {}).items())
        _validate_name(name)
        key = name.encode()
        seen = set()
        for k, v in labels:
            _validate_label_key(k)
            if k in seen:
                raise ValueError("label %r twice" % k)
            seen.add(k)
            if "\0" in v:
                raise ValueError("label %r value holds a NUL byte" % k)
            key += b"\0" + k.encode() + b"\0" + v.encode()
        if len(key) > MAX_KEY:
            raise ValueError("name and labels of %r take %d bytes, at most %d fit" % (name, len(key), MAX_KEY))
        with self._reg:
            for other in (COUNTER, GAUGE, TIMING):
                if other != kind and (other, key) in self._records:
                    raise ValueError("series %r is already registered as another kind" % name)
            if (kind, key) in self._records:
                m, value_at = self._records[(kind, key)]
                return self._views[m], value_at
            scale, offset, nbuckets = shape or (0, 0, 0)
            value_len = 8 if kind != TIMING else _T_BUCKETS + 8 * nbuckets
            value_start = RECORD_FIXED + _align8(len(key))
            slots = -(-(value_start + value_len) // SLOT)
            length = slots * SLOT
            at = HEADER_SIZE + self._used
            if at + length > self._size:
                size = max(at + length, 2 * self._size)
                os.ftruncate(self._fd, size)
                # Older handles keep writing through their mapping of the same pages.
                self._maps.append(mmap.mmap(self._fd, size))
                self._views.append(self._views_of(self._maps[-1]))
                self._size = size
            m = len(self._maps) - 1
            raw, words, floats = self._views[m]
            fixed = struct.pack(
                "<BbHHHIIi", kind, scale, len(name.encode()), len(key), len(labels), slots, nbuckets, offset
            )
            raw[at : at + len(fixed)] = fixed
            raw[at + RECORD_FIXED : at + RECORD_FIXED + len(key)] = key
            value_at = at + value_start
            if kind == TIMING:
                floats[(value_at + _T_MIN) // 8] = math.inf
            self._used += length
            self._generation += 1
            # Published after the record is complete (see spec/shm.md, "Publishing").
            words[_GENERATION // 8] = self._generation
            words[_USED // 8] = self._used
            self._records[(kind, key)] = (m, value_at)
            return self._views[m], value_at

    def close(self):
        """Releases the lock: the harvester folds the final values and later removes the file."""
        if not self._closed:
            self._closed = True
            for views in self._views:
                for v in views:
                    v.release()
            for m in self._maps:
                m.close()
            os.close(self._fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Counter:
    """A monotonic total; ``inc`` is one 8-byte store into the mapping."""

    __slots__ = ("_words", "_i", "_lock")

    def __init__(self, seg, view, value_at):
        self._words = view[1]
        self._i = value_at // 8
        self._lock = seg._lock

    def inc(self, n=1):
        if n < 0:
            raise ValueError("a counter only goes up: inc(%r)" % n)
        lock = self._lock
        if lock is None:
            self._words[self._i] = (self._words[self._i] + n) & 0xFFFFFFFFFFFFFFFF
        else:
            with lock:
                self._words[self._i] = (self._words[self._i] + n) & 0xFFFFFFFFFFFFFFFF

    def get(self):
        return self._words[self._i]


class Gauge:
    """A float; ``set`` is one 8-byte store."""

    __slots__ = ("_floats", "_i", "_lock")

    def __init__(self, seg, view, value_at):
        self._floats = view[2]
        self._i = value_at // 8
        self._lock = seg._lock

    def set(self, v):
        self._floats[self._i] = float(v)

    def inc(self, n=1.0):
        lock = self._lock
        if lock is None:
            self._floats[self._i] += n
        else:
            with lock:
                self._floats[self._i] += n

    def get(self):
        return self._floats[self._i]


_BOUNDS = {}


class Timing:
    """Durations in seconds, in exponential buckets, under the sequence lock."""

    __slots__ = ("_words", "_floats", "_base", "_bounds", "_offset", "_last", "_lock")

    def __init__(self, seg, view, value_at, scale, offset, nbuckets):
        self._words = view[1]
        self._floats = view[2]
        self._base = value_at // 8
        b = _BOUNDS.get(scale)
        if b is None:
            b = _BOUNDS[scale] = _Bounds(scale)
        self._bounds = b
        self._offset = offset
        self._last = offset + nbuckets - 1
        self._lock = seg._lock

    def record(self, seconds):
        v = float(seconds)
        if v != v:
            return
        if v <= 0.0:
            v = 0.0
            word = self._base + _T_ZERO // 8
        else:
            i = self._bounds.index(v)
            i = self._offset if i < self._offset else self._last if i > self._last else i
            word = self._base + _T_BUCKETS // 8 + (i - self._offset)
        lock = self._lock
        if lock is not None:
            lock.acquire()
        try:
            w, f, b = self._words, self._floats, self._base
            seq = w[b]
            w[b] = seq + 1  # odd: a write is under way
            f[b + 1] += v
            if v < f[b + 2]:
                f[b + 2] = v
            if v > f[b + 3]:
                f[b + 3] = v
            w[word] += 1
            w[b] = seq + 2  # even: at rest
        finally:
            if lock is not None:
                lock.release()

    def time(self):
        """A context manager recording the time spent in its block."""
        return _Timer(self)


class _Timer:
    __slots__ = ("_t", "_start")

    def __init__(self, t):
        self._t = t

    def __enter__(self):
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self._t.record(time.perf_counter() - self._start)
