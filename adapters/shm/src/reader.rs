//! The reader: a sampler that scans a directory of segments, validates each, and aggregates
//! them across processes.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Acquire};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use memmap2::Mmap;
use sampler_api::{Descriptor, Distribution, Kind, Sampler, Writer};

use crate::layout::{self, header, timing, Header, Invalid, Record, RecordKind, Words};
use crate::seqlock;

/// How a gauge written by several processes is reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GaugeRule {
    /// One series per process, labelled with the writer's `pid`.
    #[default]
    PerProcess,
    /// The sum over the live writers.
    Sum,
    /// The largest value.
    Max,
    /// The smallest value.
    Min,
    /// The value of the newest writer (the latest segment start time).
    Last,
}

impl std::str::FromStr for GaugeRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "pid" => GaugeRule::PerProcess,
            "sum" => GaugeRule::Sum,
            "max" => GaugeRule::Max,
            "min" => GaugeRule::Min,
            "last" => GaugeRule::Last,
            _ => {
                return Err(format!(
                    "invalid gauge rule {s:?}: expected pid, sum, max, min or last"
                ))
            }
        })
    }
}

/// The default time a dead writer's segment file stays before the reader removes it.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(60);

/// The largest count a timing record may hold.
pub const MAX_TIMING_COUNT: u64 = 1 << 48;

/// Tries of a timing's sequence lock before the reader keeps the previous copy.
const READ_TRIES: u32 = 64;

/// Something the reader reports once: a segment it skips, a directory it refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShmEvent {
    /// The directory cannot be trusted or read.
    Directory {
        /// The directory.
        dir: PathBuf,
        /// Why.
        why: String,
    },
    /// A segment file was skipped.
    Skipped {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// A dead writer's segment file could not be removed.
    Retire {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

impl std::fmt::Display for ShmEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShmEvent::Directory { dir, why } => {
                write!(f, "shm directory {} refused: {why}", dir.display())
            }
            ShmEvent::Skipped { path, why } => {
                write!(f, "shm segment {} skipped: {why}", path.display())
            }
            ShmEvent::Retire { path, why } => {
                write!(
                    f,
                    "failed to remove dead shm segment {}: {why}",
                    path.display()
                )
            }
        }
    }
}

/// What the last harvest found in the directory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Segments of live writers, read this harvest.
    pub live: usize,
    /// Segments of dead writers, folded and waiting out the grace period.
    pub dead: usize,
    /// Files skipped as invalid.
    pub skipped: usize,
    /// Dead segments removed since the reader started.
    pub retired: u64,
    /// Segments skipped since the reader started.
    pub skips: u64,
    /// Timing reads that kept the previous copy because a write was under way.
    pub busy: u64,
}

/// One value read from a record.
#[derive(Clone, Debug, PartialEq)]
pub enum Reading {
    /// A counter's total.
    Counter(u64),
    /// A gauge.
    Gauge(f64),
    /// A timing, or `None` when every try overlapped a write.
    Timing(Option<Distribution>),
}

/// Reads a record's value from a segment (atomic loads, bounds-checked; a timing through its
/// sequence lock).
///
/// A timing whose counts add up to more than [`MAX_TIMING_COUNT`] reads as `Timing(None)`.
pub fn read_value(words: Words<'_>, r: &Record) -> Option<Reading> {
    read_value_of(words, r, false)
}

/// As [`read_value`]; `dead`: the writer is gone, so a timing whose sequence word stayed odd
/// (killed mid-write) is read as its fields stand: they no longer change, and at most the one
/// observation in flight is partly there (its bucket decides the count).
fn read_value_of(words: Words<'_>, r: &Record, dead: bool) -> Option<Reading> {
    let w = |off: usize| words.u64_at(r.value_at + off);
    Some(match r.kind {
        RecordKind::Counter => Reading::Counter(w(0)?),
        RecordKind::Gauge => Reading::Gauge(f64::from_bits(w(0)?)),
        RecordKind::Timing => {
            let shape = r.shape?;
            let seq = words.cell(r.value_at + timing::SEQ)?;
            let n = shape.nbuckets as usize;
            let last = r.value_at + timing::BUCKETS + 8 * n;
            if last > words.len() {
                return None;
            }
            let fields = || {
                let sum = f64::from_bits(w(timing::SUM).unwrap_or(0));
                let min = f64::from_bits(w(timing::MIN).unwrap_or(0));
                let max = f64::from_bits(w(timing::MAX).unwrap_or(0));
                let zero = w(timing::ZERO).unwrap_or(0);
                let buckets: Vec<u64> = (0..n)
                    .map(|i| w(timing::BUCKETS + 8 * i).unwrap_or(0))
                    .collect();
                (sum, min, max, zero, buckets)
            };
            let mut copy = seqlock::read(seq, READ_TRIES, fields);
            if copy.is_none() && dead {
                copy = Some(fields());
            }
            // Counts beyond 2^48 per record (years of recording at a million a second) are a
            // corrupt file: refusing them keeps every later sum and merge clear of overflow.
            let copy = copy.filter(|(_, _, _, zero, buckets)| {
                buckets
                    .iter()
                    .try_fold(*zero, |a, &c| a.checked_add(c))
                    .is_some_and(|count| count <= MAX_TIMING_COUNT)
            });
            Reading::Timing(copy.map(|(sum, min, max, zero, buckets)| {
                let first = buckets.iter().position(|&c| c != 0);
                let (offset, buckets) = match first {
                    None => (0, Vec::new()),
                    Some(f) => {
                        let l = buckets
                            .iter()
                            .rposition(|&c| c != 0)
                            .expect("one is non-zero");
                        (shape.offset + f as i32, buckets[f..=l].to_vec())
                    }
                };
                Distribution::from_parts(shape.scale, zero, offset, buckets, sum, min, max)
            }))
        }
    })
}

/// A segment a live writer holds.
struct Seg {
    file: File,
    map: Mmap,
    ino: u64,
    header: Header,
    parsed_end: usize,
    records: Vec<SegRecord>,
}

struct SegRecord {
    record: Record,
    /// The series in the shared table (counters, timings, aggregated gauges).
    series: Option<usize>,
    /// A per-process gauge's own descriptor and labels (with `pid`).
    own: Option<(Descriptor, Vec<(String, String)>)>,
    last_counter: u64,
    last_timing: Option<Distribution>,
}

impl Seg {
    fn words(&self) -> Words<'_> {
        words_of(&self.map)
    }
}

fn words_of(map: &Mmap) -> Words<'_> {
    {
        // SAFETY: a mapping is page-aligned; its length is a multiple of 8 (checked before
        // mapping), and AtomicU64 has the layout of u64. Other processes write the bytes
        // concurrently, so they are only ever read through atomic loads.
        Words(unsafe {
            std::slice::from_raw_parts(map.as_ptr() as *const AtomicU64, map.len() / 8)
        })
    }
}

#[derive(Hash, PartialEq, Eq)]
struct SeriesKey {
    kind: RecordKind,
    name: String,
    labels: Vec<(String, String)>,
}

struct SeriesAgg {
    descriptor: Descriptor,
    labels: Vec<(String, String)>,
    base_counter: u64,
    base_timing: Option<Distribution>,
    acc_counter: u64,
    acc_timing: Option<Distribution>,
    acc_gauge: Option<(f64, u64)>,
    live: bool,
}

#[derive(Default)]
struct State {
    segments: HashMap<PathBuf, Seg>,
    dead: HashMap<PathBuf, Instant>,
    skipped: HashMap<PathBuf, u64>,
    series: Vec<SeriesAgg>,
    index: HashMap<SeriesKey, usize>,
    dir_refused: Option<String>,
    report: ScanReport,
}

type Hook = Box<dyn Fn(&ShmEvent) + Send + Sync>;

/// The harvester of a shared-memory directory: a [`Sampler`] that reads every segment in it.
///
/// Counters and timings are summed over every writer, dead ones included (a dead writer's
/// final values fold into a per-series base, so totals never go backwards); gauges follow the
/// [`GaugeRule`]. A dead writer's file is removed after the grace period, so a harvest reads
/// the live writers only.
///
/// ```
/// use sampler_adapter_shm::{Segment, ShmSampler};
/// use sampler_api::{Harvester, Registry};
/// # let dir = tempfile::tempdir()?;
/// let segment = Segment::create(dir.path())?;
/// segment.counter("jobs.done", &[])?.add(5);
/// let registry = Registry::new();
/// let _reg = registry.register(ShmSampler::new(dir.path()));
/// let snapshot = Harvester::builder().registry(registry).build().harvest_now();
/// let jobs = snapshot.find("jobs.done", &[]).unwrap();
/// assert_eq!(*jobs.value(), sampler_api::Value::Counter(5));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ShmSampler {
    dir: PathBuf,
    name: String,
    rule: GaugeRule,
    grace: Duration,
    hook: Option<Hook>,
    state: Mutex<State>,
}

impl std::fmt::Debug for ShmSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmSampler")
            .field("dir", &self.dir)
            .field("rule", &self.rule)
            .field("grace", &self.grace)
            .finish()
    }
}

static SEGMENTS: Descriptor =
    Descriptor::gauge("sampler.shm.segments", "1", "shm segments by state");
static RETIRED: Descriptor =
    Descriptor::counter("sampler.shm.retired", "1", "dead shm segments removed");
static SKIPS: Descriptor = Descriptor::counter(
    "sampler.shm.skipped",
    "1",
    "shm segments skipped as invalid",
);
static BUSY: Descriptor = Descriptor::counter(
    "sampler.shm.busy",
    "1",
    "timing reads that kept the previous copy during a write",
);

impl ShmSampler {
    /// A reader of `dir`, gauges per process, dead segments removed after a minute.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        ShmSampler {
            name: format!("shm:{}", dir.display()),
            dir,
            rule: GaugeRule::PerProcess,
            grace: DEFAULT_GRACE,
            hook: None,
            state: Mutex::new(State::default()),
        }
    }

    /// How gauges of several processes are reported.
    pub fn gauges(mut self, rule: GaugeRule) -> Self {
        self.rule = rule;
        self
    }

    /// How long a dead writer's file stays before it is removed.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Called once per skipped segment or refused directory.
    pub fn on_event(mut self, f: impl Fn(&ShmEvent) + Send + Sync + 'static) -> Self {
        self.hook = Some(Box::new(f));
        self
    }

    /// What the last harvest found.
    pub fn report(&self) -> ScanReport {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).report
    }

    fn event(&self, e: ShmEvent) {
        if let Some(h) = &self.hook {
            h(&e);
        }
    }

    /// Checks the directory: a directory, owned by this user or root, writable by no one else.
    fn check_dir(&self) -> Result<u32, String> {
        let m = std::fs::metadata(&self.dir).map_err(|e| e.to_string())?;
        if !m.is_dir() {
            return Err("not a directory".into());
        }
        if m.mode() & 0o022 != 0 {
            return Err(format!(
                "writable by group or others (mode {:o}); chmod go-w it",
                m.mode() & 0o7777
            ));
        }
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        if m.uid() != me && m.uid() != 0 {
            return Err(format!(
                "owned by uid {}, not by this user ({me}) or root",
                m.uid()
            ));
        }
        Ok(m.uid())
    }

    fn scan(&self, st: &mut State, owner: u32) {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) => {
                self.refuse(st, e.to_string());
                return;
            }
        };
        let mut seen: Vec<PathBuf> = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') || !name.ends_with(".shm") {
                continue;
            }
            seen.push(entry.path());
        }
        let now = Instant::now();
        for path in &seen {
            if let Some(&since) = st.dead.get(path) {
                if now.duration_since(since) >= self.grace {
                    match std::fs::remove_file(path) {
                        Ok(()) => {
                            st.dead.remove(path);
                            st.report.retired += 1;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            st.dead.remove(path);
                        }
                        Err(e) => {
                            // Reported once: the entry stays, with a far deadline.
                            st.dead
                                .insert(path.clone(), now + Duration::from_secs(86_400));
                            self.event(ShmEvent::Retire {
                                path: path.clone(),
                                why: e.to_string(),
                            });
                        }
                    }
                }
                continue;
            }
            if st.segments.contains_key(path) {
                continue;
            }
            if let Some(&ino) = st.skipped.get(path) {
                if std::fs::symlink_metadata(path).is_ok_and(|m| m.ino() == ino) {
                    continue;
                }
                st.skipped.remove(path);
            }
            match open_segment(path, owner) {
                Ok(seg) => {
                    st.segments.insert(path.clone(), seg);
                }
                Err((ino, why)) => {
                    st.skipped.insert(path.clone(), ino);
                    st.report.skips += 1;
                    self.event(ShmEvent::Skipped {
                        path: path.clone(),
                        why,
                    });
                }
            }
        }
        // Forget what is gone from the directory.
        st.dead.retain(|p, _| seen.contains(p));
        st.skipped.retain(|p, _| seen.contains(p));
        let gone: Vec<PathBuf> = st
            .segments
            .keys()
            .filter(|p| !seen.contains(p))
            .cloned()
            .collect();
        for path in gone {
            let seg = st.segments.remove(&path).expect("listed");
            // Removed by someone else while we had it mapped: its last values still count.
            self.fold(st, seg, false);
        }
    }

    fn refuse(&self, st: &mut State, why: String) {
        if st.dir_refused.as_deref() != Some(&why) {
            self.event(ShmEvent::Directory {
                dir: self.dir.clone(),
                why: why.clone(),
            });
            st.dir_refused = Some(why);
        }
    }

    /// Brings a live segment's records up to date; `Err` when it went bad.
    fn refresh(&self, st: &mut State, path: &Path) -> Result<(), String> {
        let State {
            segments,
            series,
            index,
            ..
        } = st;
        let seg = segments.get_mut(path).expect("present");
        let used = seg
            .words()
            .cell(header::USED)
            .map(|c| u64::from_le(c.load(Acquire)))
            .unwrap_or(0);
        let end = layout::HEADER_SIZE as u64 + used;
        if (end as usize) == seg.parsed_end {
            return Ok(());
        }
        if used % layout::SLOT as u64 != 0 || (end as usize) < seg.parsed_end {
            return Err(format!("published end moved to {used}"));
        }
        if end > seg.map.len() as u64 {
            // The writer grew its file: map it again at its new size.
            let len = seg.file.metadata().map_err(|e| e.to_string())?.len();
            if end > len || len > layout::MAX_SEGMENT || len % 8 != 0 {
                return Err(format!("{used} bytes of records in a file of {len} bytes"));
            }
            // SAFETY: see `open_segment`.
            seg.map = unsafe { Mmap::map(&seg.file) }.map_err(|e| e.to_string())?;
            if end > seg.map.len() as u64 {
                return Err("file shrank while being mapped".into());
            }
        }
        let words = seg.words();
        let mut at = seg.parsed_end;
        let mut new = Vec::new();
        while at < end as usize {
            let r = layout::parse_record(words, at, end as usize).map_err(|e| e.to_string())?;
            at = r.next;
            new.push(r);
        }
        seg.parsed_end = at;
        let pid = seg.header.pid.to_string();
        for record in new {
            let per_process =
                record.kind == RecordKind::Gauge && self.rule == GaugeRule::PerProcess;
            let (series_idx, own) = if per_process {
                let mut labels = record.labels.clone();
                labels.push(("pid".into(), pid.clone()));
                let d = Descriptor::owned(record.name.clone(), Kind::Gauge, "", "");
                (None, Some((d, labels)))
            } else {
                let key = SeriesKey {
                    kind: record.kind,
                    name: record.name.clone(),
                    labels: record.labels.clone(),
                };
                let next = series.len();
                let i = *index.entry(key).or_insert(next);
                if i == next {
                    let (kind, unit) = match record.kind {
                        RecordKind::Counter => (Kind::Counter, ""),
                        RecordKind::Gauge => (Kind::Gauge, ""),
                        RecordKind::Timing => (Kind::Timing, "s"),
                    };
                    series.push(SeriesAgg {
                        descriptor: Descriptor::owned(record.name.clone(), kind, unit, ""),
                        labels: record.labels.clone(),
                        base_counter: 0,
                        base_timing: None,
                        acc_counter: 0,
                        acc_timing: None,
                        acc_gauge: None,
                        live: false,
                    });
                }
                (Some(i), None)
            };
            seg.records.push(SegRecord {
                record,
                series: series_idx,
                own,
                last_counter: 0,
                last_timing: None,
            });
        }
        Ok(())
    }

    /// Reads every record of a segment into its series' accumulators (`fold`: into the bases,
    /// as the writer's final values).
    fn read_into(&self, st: &mut State, seg: &mut Seg, fold: bool, out: Option<&mut Writer<'_>>) {
        let words = words_of(&seg.map);
        let mut out = out;
        for rec in &mut seg.records {
            let Some(value) = read_value_of(words, &rec.record, fold) else {
                continue;
            };
            match (value, rec.series) {
                (Reading::Counter(v), Some(i)) => {
                    // A total never goes back, even if the file says so.
                    let v = v.max(rec.last_counter);
                    rec.last_counter = v;
                    let s = &mut st.series[i];
                    if fold {
                        s.base_counter = s.base_counter.wrapping_add(v);
                    } else {
                        s.acc_counter = s.acc_counter.wrapping_add(v);
                        s.live = true;
                    }
                }
                (Reading::Timing(d), Some(i)) => {
                    let d = match d {
                        Some(d) => {
                            rec.last_timing = Some(d.clone());
                            d
                        }
                        None => {
                            st.report.busy += 1;
                            match &rec.last_timing {
                                Some(d) => d.clone(),
                                None => continue,
                            }
                        }
                    };
                    let s = &mut st.series[i];
                    let slot = if fold {
                        &mut s.base_timing
                    } else {
                        s.live = true;
                        &mut s.acc_timing
                    };
                    match slot {
                        Some(acc) => acc.merge(&d),
                        None => *slot = Some(d),
                    }
                }
                (Reading::Gauge(v), Some(i)) if !fold => {
                    let s = &mut st.series[i];
                    s.live = true;
                    let start = seg.header.start_time_ns;
                    s.acc_gauge = Some(match (s.acc_gauge, self.rule) {
                        (None, _) => (v, start),
                        (Some((a, t)), GaugeRule::Sum) => (a + v, t),
                        (Some((a, t)), GaugeRule::Max) => (a.max(v), t),
                        (Some((a, t)), GaugeRule::Min) => (a.min(v), t),
                        (Some((a, t)), _) => {
                            if start >= t {
                                (v, start)
                            } else {
                                (a, t)
                            }
                        }
                    });
                }
                (Reading::Gauge(v), None) if !fold => {
                    if let (Some(out), Some((d, labels))) = (out.as_deref_mut(), &rec.own) {
                        let l: Vec<(&str, &str)> = labels
                            .iter()
                            .map(|(k, v)| (k.as_str(), v.as_str()))
                            .collect();
                        out.gauge(d, &l, v);
                    }
                }
                _ => {}
            }
        }
    }

    /// A dead (or vanished, or gone bad) writer: its last values become part of the bases.
    fn fold(&self, st: &mut State, mut seg: Seg, read_final: bool) {
        if read_final {
            self.read_into(st, &mut seg, true, None);
        } else {
            // Fold the last values read, without reading the file again.
            for rec in &seg.records {
                if let Some(i) = rec.series {
                    let s = &mut st.series[i];
                    match rec.record.kind {
                        RecordKind::Counter => {
                            s.base_counter = s.base_counter.wrapping_add(rec.last_counter)
                        }
                        RecordKind::Timing => {
                            if let Some(d) = &rec.last_timing {
                                match &mut s.base_timing {
                                    Some(b) => b.merge(d),
                                    None => s.base_timing = Some(d.clone()),
                                }
                            }
                        }
                        RecordKind::Gauge => {}
                    }
                }
            }
        }
        drop(seg);
    }
}

/// Whether the writer still holds its segment's lock.
fn writer_alive(file: &File) -> bool {
    let fd = file.as_raw_fd();
    // SAFETY: flock on our own open descriptor; it only tests and takes an advisory lock.
    if unsafe { libc::flock(fd, libc::LOCK_SH | libc::LOCK_NB) } == 0 {
        // SAFETY: as above; releases what we just took.
        unsafe { libc::flock(fd, libc::LOCK_UN) };
        false
    } else {
        true
    }
}

fn open_segment(path: &Path, owner: u32) -> Result<Seg, (u64, String)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| (0, format!("cannot open: {e}")))?;
    let m = file.metadata().map_err(|e| (0, e.to_string()))?;
    let ino = m.ino();
    let bad = |why: String| (ino, why);
    if !m.file_type().is_file() {
        return Err(bad("not a regular file".into()));
    }
    if m.mode() & 0o077 != 0 {
        return Err(bad(format!("mode {:o}, expected 0600", m.mode() & 0o7777)));
    }
    if m.uid() != owner {
        return Err(bad(format!(
            "owned by uid {}, the directory by uid {owner}",
            m.uid()
        )));
    }
    let len = m.len();
    if len < layout::HEADER_SIZE as u64 {
        return Err(bad(Invalid::Short(len).to_string()));
    }
    if len > layout::MAX_SEGMENT {
        return Err(bad(Invalid::TooLarge(len).to_string()));
    }
    if len % 8 != 0 {
        return Err(bad(format!(
            "file of {len} bytes is not whole 8-byte words"
        )));
    }
    // SAFETY: a read-only shared mapping of a regular file checked above (owner, 0600, size).
    // Writers only grow their files and write values with atomic stores; the reader only reads
    // through atomic loads, inside bounds checked against the mapping's length.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| bad(format!("cannot map: {e}")))?;
    if map.len() % 8 != 0 || map.len() < layout::HEADER_SIZE {
        return Err(bad("file changed size while being mapped".into()));
    }
    let mut seg = Seg {
        file,
        map,
        ino,
        header: Header {
            pid: 0,
            start_time_ns: 0,
            generation: 0,
            used: 0,
        },
        parsed_end: layout::HEADER_SIZE,
        records: Vec::new(),
    };
    seg.header = layout::parse_header(seg.words()).map_err(|e| bad(e.to_string()))?;
    Ok(seg)
}

impl Sampler for ShmSampler {
    fn sample(&self, out: &mut Writer<'_>) {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let st = &mut *guard;
        match self.check_dir() {
            Ok(owner) => {
                st.dir_refused = None;
                self.scan(st, owner);
            }
            Err(why) => self.refuse(st, why),
        }
        for s in &mut st.series {
            s.acc_counter = 0;
            s.acc_timing = None;
            s.acc_gauge = None;
            s.live = false;
        }
        let paths: Vec<PathBuf> = st.segments.keys().cloned().collect();
        for path in paths {
            // Liveness first: values read after the lock is seen free are final.
            let alive = writer_alive(&st.segments[&path].file);
            let refreshed = self.refresh(st, &path);
            let mut seg = st.segments.remove(&path).expect("present");
            match refreshed {
                Err(why) => {
                    let ino = seg.ino;
                    self.fold(st, seg, false);
                    st.skipped.insert(path.clone(), ino);
                    st.report.skips += 1;
                    self.event(ShmEvent::Skipped { path, why });
                }
                Ok(()) if !alive => {
                    self.fold(st, seg, true);
                    st.dead.insert(path, Instant::now());
                }
                Ok(()) => {
                    self.read_into(st, &mut seg, false, Some(out));
                    st.segments.insert(path, seg);
                }
            }
        }
        for s in &st.series {
            let l: Vec<(&str, &str)> = s
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            match s.descriptor.kind() {
                Kind::Counter => out.counter(
                    &s.descriptor,
                    &l,
                    s.base_counter.wrapping_add(s.acc_counter),
                ),
                Kind::Timing => {
                    let d = match (&s.base_timing, &s.acc_timing) {
                        (Some(b), Some(a)) => {
                            let mut d = b.clone();
                            d.merge(a);
                            d
                        }
                        (Some(d), None) | (None, Some(d)) => d.clone(),
                        (None, None) => continue,
                    };
                    out.timing(&s.descriptor, &l, d);
                }
                Kind::Gauge => {
                    if let Some((v, _)) = s.acc_gauge {
                        out.gauge(&s.descriptor, &l, v);
                    }
                }
                _ => {}
            }
        }
        st.report.live = st.segments.len();
        st.report.dead = st.dead.len();
        st.report.skipped = st.skipped.len();
        let r = st.report;
        out.gauge(&SEGMENTS, &[("state", "live")], r.live as f64);
        out.gauge(&SEGMENTS, &[("state", "dead")], r.dead as f64);
        out.gauge(&SEGMENTS, &[("state", "skipped")], r.skipped as f64);
        out.counter(&RETIRED, &[], r.retired);
        out.counter(&SKIPS, &[], r.skips);
        out.counter(&BUSY, &[], r.busy);
    }

    fn name(&self) -> &str {
        &self.name
    }
}
