//! The family core shared by every instrument: label values → series, with a cardinality limit,
//! optional expiry of idle series and a per-thread lookup cache.
//!
//! A standalone instrument is a family with no label keys and one series.

use std::borrow::Cow;
use std::cell::RefCell;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hashbrown::HashTable;

use crate::descriptor::{validate_label_key, Descriptor, Kind};
use crate::labels::{LabelKeys, Labels, PackedValues};
use crate::local::{self, lock, Reader};
use crate::registry::Registry;
use crate::sampler::{Sampler, Writer};
use crate::snapshot::{Series, SeriesId, Value};

/// The default cardinality limit of a family (as in the OpenTelemetry SDK).
pub const DEFAULT_LIMIT: usize = 2000;

/// Options for a labelled family.
///
/// ```
/// use sampler_api::{Descriptor, FamilyOptions, Registry};
/// use std::time::Duration;
/// static HITS: Descriptor = Descriptor::counter("cache.hits", "1", "hits per key prefix");
/// let registry = Registry::new();
/// let hits = registry.counter_family_with(
///     &HITS,
///     &["prefix"],
///     FamilyOptions::default().limit(100).expire_after(Duration::from_secs(600)),
/// );
/// hits.inc(&["user"]);
/// ```
#[derive(Clone, Debug)]
pub struct FamilyOptions {
    pub(crate) limit: usize,
    pub(crate) expire_after: Option<Duration>,
    pub(crate) scale: i8,
}

impl Default for FamilyOptions {
    fn default() -> Self {
        FamilyOptions {
            limit: DEFAULT_LIMIT,
            expire_after: None,
            scale: crate::instruments::DEFAULT_SCALE,
        }
    }
}

impl FamilyOptions {
    /// At most `limit` label sets; lookups of further label sets fold into one overflow series
    /// labelled `overflow="true"`, counted in `sampler.family.overflow`.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit.max(1);
        self
    }

    /// Removes a label set whose value has not changed for this long and that no handle holds.
    pub fn expire_after(mut self, idle: Duration) -> Self {
        self.expire_after = Some(idle);
        self
    }

    /// The histogram scale of a timing family (0 to 8; default 3, error at most 4.33 %).
    pub fn scale(mut self, scale: i8) -> Self {
        self.scale = scale.clamp(0, crate::distribution::MAX_SCALE);
        self
    }
}

const OVERFLOW: u32 = u32::MAX;

pub(crate) struct Entry {
    /// `None` once removed (the entry number waits for reuse).
    values: Option<PackedValues>,
    slot: u32,
    handles: AtomicU32,
    id: SeriesId,
    start_nanos: u64,
}

/// What idle expiry remembers of one entry between harvests.
#[derive(Clone, Copy, Default)]
struct Idle {
    /// The series seen; another id means the entry number was reused.
    id: Option<SeriesId>,
    /// The reading seen last (a counter's total, a gauge's bits, a timing's count).
    last: u64,
    /// Harvests in a row without change.
    harvests: u32,
}

const ENTRY_CHUNK: usize = 1024;

#[derive(Default)]
struct Table {
    index: HashTable<u32>,
    /// Entries in chunks of `ENTRY_CHUNK`, so growth never copies or over-allocates much.
    chunks: Vec<Vec<Entry>>,
    free: Vec<u32>,
    live: usize,
    overflow: Option<u32>,
}

impl Table {
    fn entry(&self, e: u32) -> &Entry {
        &self.chunks[e as usize / ENTRY_CHUNK][e as usize % ENTRY_CHUNK]
    }
    fn entry_mut(&mut self, e: u32) -> &mut Entry {
        &mut self.chunks[e as usize / ENTRY_CHUNK][e as usize % ENTRY_CHUNK]
    }
    fn push(&mut self, entry: Entry) -> u32 {
        if let Some(e) = self.free.pop() {
            *self.entry_mut(e) = entry;
            return e;
        }
        if self.chunks.last().map_or(true, |c| c.len() == ENTRY_CHUNK) {
            self.chunks.push(Vec::with_capacity(ENTRY_CHUNK));
        }
        let n = (self.chunks.len() - 1) * ENTRY_CHUNK + self.chunks.last().map_or(0, |c| c.len());
        self.chunks.last_mut().expect("chunk").push(entry);
        n as u32
    }
    fn iter(&self) -> impl Iterator<Item = (u32, &Entry)> {
        self.chunks
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, e)| (i as u32, e))
    }
}

pub(crate) struct FamilyInner {
    id: u32,
    descriptor: Arc<Descriptor>,
    keys: LabelKeys,
    overflow_keys: LabelKeys,
    options: FamilyOptions,
    valid: bool,
    hasher: foldhash::fast::RandomState,
    /// Bumped whenever an entry is removed, so per-thread caches drop what they hold.
    epoch: AtomicU32,
    table: RwLock<Table>,
    overflow_hits: AtomicU64,
    /// Per entry, for idle expiry only: what the harvest saw last and for how many harvests.
    /// Only the harvest touches it, so it stays out of the entries (and their memory).
    idle: Mutex<Vec<Idle>>,
    /// Slots of removed entries, freed after two more harvests (a lookup that raced the removal
    /// still finds its slot in one piece).
    retired: Mutex<Vec<(u32, u8)>>,
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl FamilyInner {
    pub(crate) fn new(
        descriptor: &Descriptor,
        kind: Kind,
        keys: &[&str],
        options: FamilyOptions,
    ) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let valid =
            descriptor.validate().is_ok() && keys.iter().all(|k| validate_label_key(k).is_ok());
        let descriptor = Arc::new(
            Descriptor::owned(
                descriptor.name().to_owned(),
                kind,
                descriptor.unit().to_owned(),
                descriptor.description().to_owned(),
            )
            .with_divisor(descriptor.divisor()),
        );
        FamilyInner {
            id: NEXT.fetch_add(1, Relaxed),
            descriptor,
            keys: keys
                .iter()
                .map(|k| Cow::Owned(k.to_string()))
                .collect::<Vec<_>>()
                .into(),
            overflow_keys: vec![Cow::Borrowed("overflow")].into(),
            options,
            valid,
            hasher: foldhash::fast::RandomState::default(),
            epoch: AtomicU32::new(0),
            table: RwLock::new(Table::default()),
            overflow_hits: AtomicU64::new(0),
            idle: Mutex::new(Vec::new()),
            retired: Mutex::new(Vec::new()),
        }
    }

    /// A new family, registered in `registry` for as long as something holds it.
    pub(crate) fn register(
        registry: &Registry,
        descriptor: &Descriptor,
        kind: Kind,
        keys: &[&str],
        options: FamilyOptions,
    ) -> Arc<Self> {
        let inner = Arc::new(FamilyInner::new(descriptor, kind, keys, options));
        registry.register_weak(inner.clone());
        inner
    }

    pub(crate) fn kind(&self) -> Kind {
        self.descriptor.kind()
    }

    pub(crate) fn scale(&self) -> i8 {
        self.options.scale
    }

    fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|e| e.into_inner())
    }

    #[inline]
    fn hash(&self, values: &[&str]) -> u64 {
        let mut h = self.hasher.build_hasher();
        for v in values {
            h.write_usize(v.len());
            h.write(v.as_bytes());
        }
        h.finish()
    }

    fn hash_packed(&self, p: &PackedValues, n: usize) -> u64 {
        let mut h = self.hasher.build_hasher();
        for i in 0..n {
            let v = p.get(i);
            h.write_usize(v.len());
            h.write(v.as_bytes());
        }
        h.finish()
    }

    fn alloc_slot(&self) -> Option<u32> {
        match self.kind() {
            Kind::Counter => local::COUNTER_SLOTS.alloc(),
            Kind::Gauge => local::GAUGE_SLOTS.alloc(),
            Kind::Timing => local::TIMING_SLOTS.alloc(),
        }
    }

    fn free_slot(&self, slot: u32) {
        match self.kind() {
            Kind::Counter => local::free_counter_slot(slot),
            Kind::Gauge => local::free_gauge_slot(slot),
            Kind::Timing => local::free_timing_slot(slot),
        }
    }

    fn new_entry(&self, values: Option<PackedValues>, slot: u32) -> Entry {
        Entry {
            values,
            slot,
            handles: AtomicU32::new(0),
            id: SeriesId::next(),
            start_nanos: now_nanos(),
        }
    }

    /// Finds or creates the entry for `values`: `(entry, slot, overflowed)`.
    ///
    /// The per-thread cache has two ways in. The first is a hash of where the caller's strings
    /// are (pointer and length): callers usually pass the same literals or long-lived strings,
    /// so it is cheap and usually hits; it links to a line of the second way, keyed by a hash of
    /// the contents. A hit is always confirmed by comparing contents, so a reused address can
    /// never mislead the cache.
    #[inline]
    pub(crate) fn lookup(&self, values: &[&str]) -> (u32, u32, bool) {
        let epoch = self.epoch.load(Acquire);
        let where_key = where_hash(values);
        let hit = CACHE
            .try_with(|c| {
                // A lookup from inside a lookup (a global allocator that records metrics, run
                // while a cache line is replaced) finds the cache busy and takes the slow path.
                let c = c.try_borrow().ok()?;
                let w = &c.wheres[cache_index(self.id, where_key)];
                if w.family == self.id && w.key == where_key && w.epoch == epoch {
                    return c.confirm(w.link as usize, self.id, epoch, values);
                }
                None
            })
            .ok()
            .flatten();
        match hit {
            Some(hit) => self.hit(hit),
            None => self.lookup_by_content(values, where_key, epoch),
        }
    }

    #[inline(always)]
    fn hit(&self, (entry, slot): (u32, u32)) -> (u32, u32, bool) {
        let overflowed = entry == OVERFLOW;
        if overflowed {
            self.overflow_hits.fetch_add(1, Relaxed);
        }
        (entry, slot, overflowed)
    }

    fn lookup_by_content(&self, values: &[&str], where_key: u64, epoch: u32) -> (u32, u32, bool) {
        let hash = self.hash(values);
        let line = cache_index(self.id, hash);
        let hit = CACHE
            .try_with(|c| c.try_borrow().ok()?.confirm(line, self.id, epoch, values))
            .ok()
            .flatten();
        let (entry, slot, overflowed) = match hit {
            Some(hit) => self.hit(hit),
            None => self.lookup_slow(values, hash, epoch),
        };
        let _ = CACHE.try_with(|c| {
            if let Ok(mut c) = c.try_borrow_mut() {
                c.wheres[cache_index(self.id, where_key)] = WhereLine {
                    family: self.id,
                    epoch,
                    key: where_key,
                    link: line as u16,
                };
            }
        });
        (entry, slot, overflowed)
    }

    #[cold]
    fn lookup_slow(&self, values: &[&str], hash: u64, epoch: u32) -> (u32, u32, bool) {
        let found = {
            let t = self.read();
            t.index
                .find(hash, |&e| {
                    t.entry(e)
                        .values
                        .as_ref()
                        .is_some_and(|p| p.matches(values))
                })
                .map(|&e| (e, t.entry(e).slot))
        };
        let (entry, slot, packed) = match found {
            Some((e, s)) => (e, s, None),
            None => match self.insert(values, hash) {
                Some((e, s)) => (e, s, None),
                None => {
                    self.overflow_hits.fetch_add(1, Relaxed);
                    let slot = self.overflow_slot();
                    (OVERFLOW, slot, Some(PackedValues::new(values)))
                }
            },
        };
        let packed = packed.unwrap_or_else(|| {
            let t = self.read();
            if entry == OVERFLOW {
                PackedValues::new(values)
            } else {
                t.entry(entry)
                    .values
                    .clone()
                    .unwrap_or_else(|| PackedValues::new(values))
            }
        });
        let line = CacheLine {
            family: self.id,
            epoch,
            entry,
            slot,
            values: Some(packed),
        };
        // The line it replaces is dropped after the borrow ends: dropping its values may free
        // memory, and a global allocator may record metrics (see `lookup`).
        let _old = CACHE.try_with(|c| {
            let mut c = c.try_borrow_mut().ok()?;
            Some(std::mem::replace(
                &mut c.lines[cache_index(self.id, hash)],
                line,
            ))
        });
        (entry, slot, entry == OVERFLOW)
    }

    fn insert(&self, values: &[&str], hash: u64) -> Option<(u32, u32)> {
        if values.len() != self.keys.len() {
            return None;
        }
        let mut t = self.write();
        if let Some(&e) = t.index.find(hash, |&e| {
            t.entry(e)
                .values
                .as_ref()
                .is_some_and(|p| p.matches(values))
        }) {
            return Some((e, t.entry(e).slot));
        }
        if t.live >= self.options.limit {
            return None;
        }
        let slot = self.alloc_slot()?;
        let e = t.push(self.new_entry(Some(PackedValues::new(values)), slot));
        t.live += 1;
        let n = self.keys.len();
        let Table { index, chunks, .. } = &mut *t;
        index.insert_unique(hash, e, |&x| {
            let entry = &chunks[x as usize / ENTRY_CHUNK][x as usize % ENTRY_CHUNK];
            entry.values.as_ref().map_or(0, |p| self.hash_packed(p, n))
        });
        Some((e, slot))
    }

    fn overflow_slot(&self) -> u32 {
        if let Some(e) = self.read().overflow {
            return self.read().entry(e).slot;
        }
        let mut t = self.write();
        if let Some(e) = t.overflow {
            return t.entry(e).slot;
        }
        // The overflow series needs a slot of its own; with none left anywhere, fall back on
        // the family's first series so that nothing panics (the overflow count still shows it).
        let slot = match self.alloc_slot() {
            Some(s) => s,
            None => {
                return t
                    .iter()
                    .find(|(_, e)| e.values.is_some())
                    .map_or(0, |(_, e)| e.slot)
            }
        };
        let e = t.push(self.new_entry(None, slot));
        t.overflow = Some(e);
        slot
    }

    pub(crate) fn retain(&self, entry: u32) {
        if entry != OVERFLOW {
            self.read().entry(entry).handles.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn release(&self, entry: u32) {
        if entry != OVERFLOW {
            self.read().entry(entry).handles.fetch_sub(1, Release);
        }
    }

    /// Removes the series for `values`, if present; `false` when a handle still holds it.
    pub(crate) fn remove(&self, values: &[&str]) -> bool {
        let hash = self.hash(values);
        let mut t = self.write();
        let Some(&e) = t.index.find(hash, |&e| {
            t.entry(e)
                .values
                .as_ref()
                .is_some_and(|p| p.matches(values))
        }) else {
            return true;
        };
        if t.entry(e).handles.load(Acquire) > 0 {
            return false;
        }
        self.remove_entry(&mut t, e, hash);
        true
    }

    fn remove_entry(&self, t: &mut Table, e: u32, hash: u64) {
        if let Ok(found) = t.index.find_entry(hash, |&x| x == e) {
            found.remove();
        }
        let slot = t.entry(e).slot;
        t.entry_mut(e).values = None;
        t.free.push(e);
        t.live -= 1;
        self.epoch.fetch_add(1, Release);
        lock(&self.retired).push((slot, 2));
    }

    fn read_value(
        &self,
        reader: &Reader,
        slot: u32,
        timing: Option<&local::TimingGuard<'_>>,
    ) -> Value {
        match (self.kind(), timing) {
            (Kind::Counter, _) => Value::Counter(reader.counter(slot)),
            (Kind::Gauge, _) => Value::Gauge(f64::from_bits(local::gauge_cell(slot).load(Relaxed))),
            (Kind::Timing, Some(g)) => {
                Value::Timing(Box::new(reader.timing(slot, self.scale(), g)))
            }
            (Kind::Timing, None) => unreachable!("timing reads hold the timing lock"),
        }
    }

    fn value_key(v: &Value) -> u64 {
        match v {
            Value::Counter(c) => *c,
            Value::Gauge(g) => g.to_bits(),
            Value::Timing(d) => d.count(),
        }
    }
}

impl Sampler for FamilyInner {
    fn name(&self) -> &str {
        self.descriptor.name()
    }

    fn sample(&self, out: &mut Writer<'_>) {
        if !self.valid {
            out.reject();
            return;
        }
        {
            let mut retired = lock(&self.retired);
            retired.retain_mut(|(slot, left)| {
                if *left == 0 {
                    self.free_slot(*slot);
                    false
                } else {
                    *left -= 1;
                    true
                }
            });
        }
        let reader = Reader::new();
        let timing = (self.kind() == Kind::Timing).then(local::timing_lock);
        let expiry = self.options.expire_after.map(|d| {
            let interval = out.interval().max(Duration::from_millis(1));
            (d.as_nanos() / interval.as_nanos()).max(1) as u32
        });
        let mut expired = Vec::new();
        let mut idle = expiry.map(|_| lock(&self.idle));
        {
            let t = self.read();
            for (e, entry) in t.iter() {
                let is_overflow = t.overflow == Some(e);
                let Some(values) = entry.values.as_ref().or(None) else {
                    if !is_overflow {
                        continue;
                    }
                    let value = self.read_value(&reader, entry.slot, timing.as_ref());
                    out.series(Series {
                        id: entry.id,
                        descriptor: self.descriptor.clone(),
                        labels: Labels::with_keys(self.overflow_keys.clone(), &["true"]),
                        start_time: UNIX_EPOCH + Duration::from_nanos(entry.start_nanos),
                        value,
                    });
                    continue;
                };
                let value = self.read_value(&reader, entry.slot, timing.as_ref());
                if let (Some(limit), Some(idle)) = (expiry, idle.as_mut()) {
                    let key = Self::value_key(&value);
                    if idle.len() <= e as usize {
                        idle.resize(e as usize + 1, Idle::default());
                    }
                    let st = &mut idle[e as usize];
                    if st.id != Some(entry.id) || st.last != key {
                        *st = Idle {
                            id: Some(entry.id),
                            last: key,
                            harvests: 0,
                        };
                    } else {
                        st.harvests += 1;
                        if st.harvests >= limit && entry.handles.load(Acquire) == 0 {
                            expired.push(e);
                            continue;
                        }
                    }
                }
                out.series(Series {
                    id: entry.id,
                    descriptor: self.descriptor.clone(),
                    labels: Labels::from_packed(self.keys.clone(), values.clone()),
                    start_time: UNIX_EPOCH + Duration::from_nanos(entry.start_nanos),
                    value,
                });
            }
        }
        drop(timing);
        if !expired.is_empty() {
            let mut t = self.write();
            let n = self.keys.len();
            for e in expired {
                // Check again under the write lock: a handle may have been taken meanwhile.
                if t.entry(e).handles.load(Acquire) == 0 {
                    if let Some(p) = t.entry(e).values.clone() {
                        let hash = self.hash_packed(&p, n);
                        self.remove_entry(&mut t, e, hash);
                    }
                }
            }
        }
        let overflow = self.overflow_hits.load(Relaxed);
        if overflow > 0 {
            static OVERFLOW_DESC: Descriptor = Descriptor::counter(
                "sampler.family.overflow",
                "1",
                "lookups of label sets past a family's cardinality limit, folded into its overflow series",
            );
            out.counter(
                &OVERFLOW_DESC,
                &[("metric", self.descriptor.name())],
                overflow,
            );
        }
    }
}

impl Drop for FamilyInner {
    fn drop(&mut self) {
        let t = self.table.get_mut().unwrap_or_else(|e| e.into_inner());
        let slots: Vec<u32> = t
            .iter()
            .filter(|(e, entry)| entry.values.is_some() || t.overflow == Some(*e))
            .map(|(_, entry)| entry.slot)
            .collect();
        for slot in slots {
            self.free_slot(slot);
        }
        let retired = std::mem::take(self.retired.get_mut().unwrap_or_else(|e| e.into_inner()));
        for (slot, _) in retired {
            self.free_slot(slot);
        }
    }
}

/// Per-thread, direct-mapped cache of family lookups.
const CACHE_LINES: usize = 256;

/// A line keyed by the hash of the contents, owning a copy of them for confirmation.
struct CacheLine {
    family: u32,
    epoch: u32,
    entry: u32,
    slot: u32,
    values: Option<PackedValues>,
}

/// A line keyed by where the caller's strings are, linking to a content line.
#[derive(Clone, Copy)]
struct WhereLine {
    family: u32,
    epoch: u32,
    key: u64,
    link: u16,
}

struct Cache {
    lines: Box<[CacheLine]>,
    wheres: Box<[WhereLine]>,
}

impl Cache {
    /// The entry and slot of content line `i`, if it belongs to this family and epoch and holds
    /// exactly these values.
    #[inline(always)]
    fn confirm(&self, i: usize, family: u32, epoch: u32, values: &[&str]) -> Option<(u32, u32)> {
        let line = self.lines.get(i)?;
        if line.family == family && line.epoch == epoch {
            if let Some(p) = &line.values {
                if p.matches(values) {
                    return Some((line.entry, line.slot));
                }
            }
        }
        None
    }
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache {
        lines: (0..CACHE_LINES)
            .map(|_| CacheLine { family: 0, epoch: 0, entry: 0, slot: 0, values: None })
            .collect(),
        wheres: vec![WhereLine { family: 0, epoch: 0, key: 0, link: 0 }; CACHE_LINES].into(),
    });
}

/// A hash of where the strings are, not what they hold (see `FamilyInner::lookup`).
#[inline(always)]
fn where_hash(values: &[&str]) -> u64 {
    let mut h = 0x243F_6A88_85A3_08D3u64;
    for v in values {
        h = (h ^ v.as_ptr() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h = (h ^ v.len() as u64).rotate_left(23);
    }
    h.wrapping_mul(0xBF58_476D_1CE4_E5B9)
}

#[inline(always)]
fn cache_index(family: u32, hash: u64) -> usize {
    ((hash ^ (family as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) >> 56) as usize % CACHE_LINES
}
