//! The writer: one segment file per process, handles that record into it with one atomic
//! operation and no syscall.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::{Relaxed, Release};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use memmap2::MmapMut;

use crate::layout::{self, header, timing, RecordKind, TimingShape, HEADER_SIZE, SLOT};
use crate::seqlock::{self, AtomicU64};

/// Why a segment or a record could not be made.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A file operation failed.
    #[error("failed to {what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A name or label the layout cannot hold or the naming rules refuse.
    #[error("invalid series {name:?}: {why}")]
    Invalid {
        /// The metric name.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// The same name and labels were registered as another kind.
    #[error("series {0:?} is already registered as another kind")]
    KindClash(String),
}

const INITIAL_SIZE: usize = 64 * 1024;

struct Map {
    // Kept alive for as long as any handle points into it: a grown file is mapped again, and
    // old handles go on writing through their old mapping of the same shared pages.
    map: MmapMut,
}

struct State {
    maps: Vec<Map>,
    used: usize,
    generation: u64,
    by_key: HashMap<(RecordKind, Vec<u8>), (usize, usize)>,
}

struct Inner {
    file: File,
    path: PathBuf,
    state: Mutex<State>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the file releases the lock: the reader folds the segment's final values.
        // SAFETY: flock on our own open descriptor; it only changes the advisory lock.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// A process's segment: the file it publishes into. Make one per process after any `fork`
/// (a child must not write into its parent's segment); handles keep it alive.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// use sampler_adapter_shm::Segment;
/// let segment = Segment::create(dir.path())?;
/// let requests = segment.counter("http.requests", &[("route", "/")])?;
/// requests.inc();
/// let latency = segment.timing("http.latency", &[])?;
/// latency.record(0.012);
/// segment.gauge("http.in_flight", &[])?.set(3.0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Segment {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("path", &self.inner.path)
            .finish()
    }
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> WriteError {
    let path = path.to_owned();
    move |source| WriteError::Io { what, path, source }
}

impl Segment {
    /// Creates this process's segment in `dir` (mode 0600), locks it for as long as the
    /// segment lives, and only then gives it its `.shm` name, so a reader never sees an
    /// unlocked live segment.
    pub fn create(dir: impl AsRef<Path>) -> Result<Segment, WriteError> {
        let dir = dir.as_ref();
        let pid = std::process::id();
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let name = format!("{pid}-{start}.shm");
        let tmp = dir.join(format!(".{name}.tmp"));
        let path = dir.join(&name);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        file.write_all(&layout::encode_header(pid as u64, start))
            .map_err(io("write", &tmp))?;
        file.set_len(INITIAL_SIZE as u64)
            .map_err(io("size", &tmp))?;
        // SAFETY: flock on the descriptor we just opened; it only takes an advisory lock.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(io("lock", &tmp)(std::io::Error::last_os_error()));
        }
        let map = map_file(&file, &tmp)?;
        std::fs::rename(&tmp, &path).map_err(io("rename", &tmp))?;
        Ok(Segment {
            inner: Arc::new(Inner {
                file,
                path,
                state: Mutex::new(State {
                    maps: vec![Map { map }],
                    used: 0,
                    generation: 0,
                    by_key: HashMap::new(),
                }),
            }),
        })
    }

    /// The segment's file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// A counter; the same name and labels give the same record.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> Result<ShmCounter, WriteError> {
        let cell = self.record(RecordKind::Counter, name, labels, None)?;
        Ok(ShmCounter {
            cell,
            _segment: self.inner.clone(),
        })
    }

    /// A gauge (an `f64`, last write wins).
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Result<ShmGauge, WriteError> {
        let cell = self.record(RecordKind::Gauge, name, labels, None)?;
        Ok(ShmGauge {
            cell,
            _segment: self.inner.clone(),
        })
    }

    /// A timing in seconds, at scale 3 over about 1 µs to 68 min (values outside count in the
    /// edge buckets; count, sum, min and max stay exact).
    pub fn timing(&self, name: &str, labels: &[(&str, &str)]) -> Result<ShmTiming, WriteError> {
        self.timing_with(name, labels, TimingShape::default())
    }

    /// A timing with its own bucket window.
    pub fn timing_with(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        shape: TimingShape,
    ) -> Result<ShmTiming, WriteError> {
        if !(sampler_api::distribution::MIN_SCALE..=sampler_api::distribution::MAX_SCALE)
            .contains(&shape.scale)
            || shape.nbuckets == 0
            || shape.nbuckets > layout::MAX_BUCKETS
            || shape.offset.checked_add(shape.nbuckets as i32).is_none()
        {
            return Err(WriteError::Invalid {
                name: name.into(),
                why: format!("bad timing shape {shape:?}"),
            });
        }
        let cell = self.record(RecordKind::Timing, name, labels, Some(shape))?;
        // Prime min and max so the first record needs no special case.
        let t = ShmTiming {
            base: cell,
            shape,
            _segment: self.inner.clone(),
        };
        Ok(t)
    }

    fn record(
        &self,
        kind: RecordKind,
        name: &str,
        labels: &[(&str, &str)],
        shape: Option<TimingShape>,
    ) -> Result<*const AtomicU64, WriteError> {
        let invalid = |why: String| WriteError::Invalid {
            name: name.into(),
            why,
        };
        sampler_api::validate_name(name).map_err(|e| invalid(e.to_string()))?;
        for (i, (k, v)) in labels.iter().enumerate() {
            sampler_api::validate_label_key(k).map_err(|e| invalid(format!("label {k:?}: {e}")))?;
            if v.contains('\0') {
                return Err(invalid(format!("label {k:?} value holds a NUL byte")));
            }
            if labels[..i].iter().any(|(seen, _)| seen == k) {
                return Err(invalid(format!("label {k:?} twice")));
            }
        }
        let key = layout::encode_key(name, labels);
        if key.len() > layout::MAX_KEY {
            return Err(invalid(format!(
                "name and labels take {} bytes, at most {} fit",
                key.len(),
                layout::MAX_KEY
            )));
        }
        let mut st = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        for other in [RecordKind::Counter, RecordKind::Gauge, RecordKind::Timing] {
            if other != kind && st.by_key.contains_key(&(other, key.clone())) {
                return Err(WriteError::KindClash(name.into()));
            }
        }
        if let Some(&(m, at)) = st.by_key.get(&(kind, key.clone())) {
            return Ok(value_ptr(&st.maps[m].map, at, key.len()));
        }
        let slots = layout::slots_for(kind, key.len(), shape.map_or(0, |s| s.nbuckets));
        let len = slots * SLOT;
        let at = HEADER_SIZE + st.used;
        if at + len > st.maps.last().expect("one map").map.len() {
            let want = (at + len).max(2 * st.maps.last().expect("one map").map.len());
            let path = &self.inner.path;
            self.inner
                .file
                .set_len(want as u64)
                .map_err(io("grow", path))?;
            let map = map_file(&self.inner.file, path)?;
            st.maps.push(Map { map });
        }
        let m = st.maps.len() - 1;
        let base = st.maps[m].map.as_ptr() as *mut u8;
        let fixed = layout::encode_fixed(kind, name.len(), key.len(), labels.len(), slots, shape);
        // SAFETY: `at + len` is within the newest mapping (grown above); the bytes past `used`
        // belong to no published record, so no reader reads them and no handle writes them.
        unsafe {
            std::ptr::copy_nonoverlapping(fixed.as_ptr(), base.add(at), fixed.len());
            std::ptr::copy_nonoverlapping(
                key.as_ptr(),
                base.add(at + layout::record::KEY),
                key.len(),
            );
        }
        let value = value_ptr(&st.maps[m].map, at, key.len());
        if kind == RecordKind::Timing {
            // SAFETY: the value lies within the record just laid out in the mapping, 8-aligned.
            unsafe {
                (*value.byte_add(timing::MIN)).store(f64::INFINITY.to_bits(), Relaxed);
                (*value.byte_add(timing::MAX)).store(0f64.to_bits(), Relaxed);
            }
        }
        st.used += len;
        st.generation += 1;
        let words = header_words(&st.maps[m].map);
        // Publish: the record is complete before `used` covers it (release; readers acquire).
        words[header::GENERATION / 8].store(st.generation.to_le(), Release);
        words[header::USED / 8].store((st.used as u64).to_le(), Release);
        st.by_key.insert((kind, key), (m, at));
        Ok(value)
    }
}

fn map_file(file: &File, path: &Path) -> Result<MmapMut, WriteError> {
    // SAFETY: the file is this process's own segment, created 0600 in a directory the user
    // controls; it is never truncated while mapped (it only grows), and every access to the
    // shared bytes goes through atomics, as other processes read them concurrently.
    unsafe { MmapMut::map_mut(file) }.map_err(io("map", path))
}

fn header_words(map: &MmapMut) -> &[AtomicU64] {
    // SAFETY: the mapping is page-aligned and at least HEADER_SIZE bytes long; AtomicU64 has
    // the size and alignment of u64, and the shared bytes are only accessed atomically.
    unsafe { std::slice::from_raw_parts(map.as_ptr() as *const AtomicU64, HEADER_SIZE / 8) }
}

fn value_ptr(map: &MmapMut, at: usize, key_len: usize) -> *const AtomicU64 {
    // SAFETY: `at` is a record inside the mapping, and its value starts 8-aligned inside it.
    unsafe { map.as_ptr().add(at + layout::value_start(key_len)) as *const AtomicU64 }
}

/// A counter in a segment: [`inc`](ShmCounter::inc) is one relaxed atomic add into the
/// mapping.
pub struct ShmCounter {
    cell: *const AtomicU64,
    _segment: Arc<Inner>,
}

// SAFETY: the cell is an atomic word in a mapping the `Arc` keeps alive; atomics are shared
// between threads by design.
unsafe impl Send for ShmCounter {}
// SAFETY: as above; every access is atomic.
unsafe impl Sync for ShmCounter {}

impl std::fmt::Debug for ShmCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmCounter")
            .field("value", &self.get())
            .finish()
    }
}

impl ShmCounter {
    #[inline]
    fn cell(&self) -> &AtomicU64 {
        // SAFETY: the pointer is into a mapping kept alive by `_segment`, 8-aligned.
        unsafe { &*self.cell }
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n` (wrapping at 2^64).
    #[inline]
    pub fn add(&self, n: u64) {
        // Little-endian layout: on a little-endian host the add is the plain atomic add.
        #[cfg(target_endian = "little")]
        self.cell().fetch_add(n, Relaxed);
        #[cfg(target_endian = "big")]
        {
            let _ = self.cell().fetch_update(Relaxed, Relaxed, |v| {
                Some(u64::from_le(v).wrapping_add(n).to_le())
            });
        }
    }

    /// The total so far.
    pub fn get(&self) -> u64 {
        u64::from_le(self.cell().load(Relaxed))
    }
}

/// A gauge in a segment: one store.
pub struct ShmGauge {
    cell: *const AtomicU64,
    _segment: Arc<Inner>,
}

// SAFETY: as for `ShmCounter`.
unsafe impl Send for ShmGauge {}
// SAFETY: as for `ShmCounter`.
unsafe impl Sync for ShmGauge {}

impl std::fmt::Debug for ShmGauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmGauge")
            .field("value", &self.get())
            .finish()
    }
}

impl ShmGauge {
    fn cell(&self) -> &AtomicU64 {
        // SAFETY: the pointer is into a mapping kept alive by `_segment`, 8-aligned.
        unsafe { &*self.cell }
    }

    /// Sets the value.
    #[inline]
    pub fn set(&self, v: f64) {
        self.cell().store(v.to_bits().to_le(), Relaxed);
    }

    /// The value.
    pub fn get(&self) -> f64 {
        f64::from_bits(u64::from_le(self.cell().load(Relaxed)))
    }
}

/// A timing in a segment: [`record`](ShmTiming::record) updates its words under the
/// sequence lock (no syscall; threads of one process take turns by compare-and-swap).
pub struct ShmTiming {
    base: *const AtomicU64,
    shape: TimingShape,
    _segment: Arc<Inner>,
}

// SAFETY: as for `ShmCounter`; multi-word updates are serialised by the sequence word.
unsafe impl Send for ShmTiming {}
// SAFETY: as above.
unsafe impl Sync for ShmTiming {}

impl std::fmt::Debug for ShmTiming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmTiming")
            .field("shape", &self.shape)
            .finish()
    }
}

impl ShmTiming {
    #[inline]
    fn word(&self, byte: usize) -> &AtomicU64 {
        // SAFETY: `byte` is a field of this timing's value, inside its record in a mapping kept
        // alive by `_segment` (the record was sized for `shape.nbuckets`).
        unsafe { &*self.base.byte_add(byte) }
    }

    /// Records a duration in seconds (NaN is ignored, below zero counts as zero).
    #[inline]
    pub fn record(&self, seconds: f64) {
        if seconds.is_nan() {
            return;
        }
        let v = seconds.max(0.0);
        let bucket = if v == 0.0 {
            None
        } else {
            let i = sampler_api::distribution::bucket_index(v, self.shape.scale);
            let last = self.shape.offset + self.shape.nbuckets as i32 - 1;
            Some((i.clamp(self.shape.offset, last) - self.shape.offset) as usize)
        };
        let f = |w: &AtomicU64| f64::from_bits(u64::from_le(w.load(Relaxed)));
        let put = |w: &AtomicU64, x: f64| w.store(x.to_bits().to_le(), Relaxed);
        let add = |w: &AtomicU64| w.store((u64::from_le(w.load(Relaxed)) + 1).to_le(), Relaxed);
        seqlock::write(self.word(timing::SEQ), || {
            let (sum, min, max) = (
                self.word(timing::SUM),
                self.word(timing::MIN),
                self.word(timing::MAX),
            );
            put(sum, f(sum) + v);
            if v < f(min) {
                put(min, v);
            }
            if v > f(max) {
                put(max, v);
            }
            match bucket {
                None => add(self.word(timing::ZERO)),
                Some(b) => add(self.word(timing::BUCKETS + 8 * b)),
            }
        });
    }

    /// Times `f` and records its duration.
    pub fn time<T>(&self, f: impl FnOnce() -> T) -> T {
        let start = std::time::Instant::now();
        let out = f();
        self.record(start.elapsed().as_secs_f64());
        out
    }
}
