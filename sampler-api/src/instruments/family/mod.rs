//! The family core shared by every instrument: label values → series, with a cardinality limit,
//! optional expiry of idle series and a per-thread lookup cache. A standalone instrument is a
//! family with no label keys and one series.
//!
//! - `options`: what a family can be asked for;
//! - `table`: the entries and their index;
//! - this file: finding and creating entries, handles, removal;
//! - `cache`: lookup by label values through the per-thread cache;
//! - `overflow`: the overflow series past the cardinality limit;
//! - `expiry`: which idle series go;
//! - `sample`: a family's harvest;
//! - `wrong_count`: lookups with the wrong number of label values, which record nowhere.
//!
//! When a removed series' slot is freed is the slot lifecycle's business (`crate::lifecycle`).

mod cache;
mod expiry;
mod options;
mod overflow;
mod sample;
mod table;
mod wrong_count;

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::*};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

#[cfg(test)]
pub(crate) use cache::leased_here;
pub use options::{FamilyOptions, DEFAULT_LIMIT};
use table::{Entry, Table, OVERFLOW};
use wrong_count::WRONG_COUNT;

use crate::descriptor::{Descriptor, Kind};
use crate::event::{emit, Event};
use crate::family_error::{FamilyError, LabelError};
use crate::labels::{LabelKeys, Labels};
use crate::lifecycle::{board, free_slot, slots, Retired, SINK};
use crate::registry::Registry;
use crate::snapshot::{Keeper, SeriesId};

pub(crate) struct FamilyInner {
    id: u32,
    descriptor: Arc<Descriptor>,
    keys: LabelKeys,
    /// The overflow series' labels (`overflow="true"`), made once.
    overflow_labels: Labels,
    options: FamilyOptions,
    valid: bool,
    /// The hash of label values, here for lookups outside the table's lock; the table keeps a
    /// copy for what it hashes under the lock (`Table::hash_values` is the one function).
    hasher: foldhash::fast::RandomState,
    /// Bumped whenever an entry is removed, so per-thread caches drop what they hold.
    epoch: AtomicU32,
    table: RwLock<Table>,
    overflow_hits: AtomicU64,
    /// Lookups with the wrong number of label values (recorded nowhere), and whether that was
    /// said on the event hook (once per family).
    wrong_counts: AtomicU64,
    wrong_count_said: AtomicBool,
    /// Per entry, for idle expiry only: what the harvest saw last and for how many harvests.
    /// Only the harvest touches it, so it stays out of the entries (and their memory).
    idle: Mutex<Vec<expiry::Idle>>,
    /// Slots of removed entries, freed once nothing can reach them.
    retired: Retired,
    /// Where removed entries' label values go while snapshots may name them.
    keeper: Keeper,
}

/// Whether an entry number names a label set's entry (which handles count), not the overflow
/// series or a lookup with the wrong number of values.
fn is_series(entry: u32) -> bool {
    entry != OVERFLOW && entry != WRONG_COUNT
}

impl FamilyInner {
    /// A family, and the first mistake in its definition if it has one (it is then made all
    /// the same: it records, and its harvest rejects it).
    fn new(
        descriptor: &Descriptor,
        kind: Kind,
        keys: &[&str],
        options: FamilyOptions,
    ) -> (Self, Option<FamilyError>) {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let problem = FamilyError::check(descriptor.name(), descriptor.validate(), keys);
        let valid = problem.is_none();
        let descriptor = Arc::new(
            Descriptor::owned(
                descriptor.name().to_owned(),
                kind,
                descriptor.unit().to_owned(),
                descriptor.description().to_owned(),
            )
            .with_divisor(descriptor.divisor()),
        );
        let hasher = foldhash::fast::RandomState::default();
        let family = FamilyInner {
            id: NEXT.fetch_add(1, Relaxed),
            descriptor,
            keys: keys
                .iter()
                .map(|k| Cow::Owned(k.to_string()))
                .collect::<Vec<_>>()
                .into(),
            overflow_labels: Labels::with_keys(vec![Cow::Borrowed("overflow")].into(), &["true"]),
            options,
            valid,
            epoch: AtomicU32::new(0),
            table: RwLock::new(Table::new(keys.len(), hasher)),
            hasher,
            overflow_hits: AtomicU64::new(0),
            wrong_counts: AtomicU64::new(0),
            wrong_count_said: AtomicBool::new(false),
            idle: Mutex::new(Vec::new()),
            retired: Retired::new(),
            keeper: Keeper::default(),
        };
        (family, problem)
    }

    /// A new family, registered in `registry` for as long as something holds it. A family
    /// whose definition is wrong is made and registered all the same (its harvest rejects it,
    /// counted); the mistake is said once on the event hook.
    pub(crate) fn register(
        registry: &Registry,
        descriptor: &Descriptor,
        kind: Kind,
        keys: &[&str],
        options: FamilyOptions,
    ) -> Arc<Self> {
        let (family, problem) = FamilyInner::new(descriptor, kind, keys, options);
        if let Some(error) = problem {
            emit(Event::FamilyRejected { error });
        }
        let inner = Arc::new(family);
        registry.register_weak(inner.clone());
        inner
    }

    /// As [`register`](Self::register), but a family whose definition is wrong is neither
    /// made nor registered: the mistake is returned.
    pub(crate) fn try_register(
        registry: &Registry,
        descriptor: &Descriptor,
        kind: Kind,
        keys: &[&str],
        options: FamilyOptions,
    ) -> Result<Arc<Self>, FamilyError> {
        let (family, problem) = FamilyInner::new(descriptor, kind, keys, options);
        if let Some(error) = problem {
            return Err(error);
        }
        let inner = Arc::new(family);
        registry.register_weak(inner.clone());
        Ok(inner)
    }

    /// `Err` when `values` are not one per label key: what `try_get` returns.
    pub(crate) fn check_count(&self, values: &[&str]) -> Result<(), LabelError> {
        if values.len() == self.keys.len() {
            return Ok(());
        }
        Err(self.count_error(values.len()))
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
        Table::hash_values(&self.hasher, values.iter().copied())
    }

    fn new_entry(&self, slot: u32) -> Entry {
        Entry {
            slot,
            handles: AtomicU32::new(0),
            born: SeriesId::next().get(),
        }
    }

    /// Finds or creates the entry for `values` (whose hash is `hash`): `(entry, slot,
    /// created)`. Values of the wrong count find no entry: `WRONG_COUNT` and the sink, which
    /// no harvest reads.
    /// `found` runs while the table's lock is still held when the entry is a label set's (so
    /// that no removal can come between the lookup and what `found` does: take a handle, or a
    /// lease); for the overflow series and the wrong count, after.
    fn find_or_insert(
        &self,
        values: &[&str],
        hash: u64,
        found: impl FnOnce(&Table, u32, u32),
    ) -> (u32, u32, bool) {
        if values.len() != self.keys.len() {
            self.wrong_count(values.len());
            found(&self.read(), WRONG_COUNT, SINK);
            return (WRONG_COUNT, SINK, false);
        }
        {
            let t = self.read();
            if let Some(e) = t.find(hash, values) {
                let slot = t.entry(e).slot;
                found(&t, e, slot);
                return (e, slot, false);
            }
        }
        {
            let mut t = self.write();
            if let Some(e) = t.find(hash, values) {
                let slot = t.entry(e).slot;
                found(&t, e, slot);
                return (e, slot, false);
            }
            if t.live < self.options.limit {
                if let Some(slot) = slots(self.kind()).alloc() {
                    let e = t.insert(hash, values, self.new_entry(slot));
                    found(&t, e, slot);
                    return (e, slot, true);
                }
            }
        }
        self.count_overflow();
        let slot = self.overflow_slot();
        found(&self.read(), OVERFLOW, slot);
        (OVERFLOW, slot, false)
    }

    fn count_overflow(&self) {
        self.overflow_hits.fetch_add(1, Relaxed);
    }

    /// The entry and slot of `values`, made if new, with a handle taken on it (under the
    /// table's lock, so no removal comes between): for `Handle::new`.
    pub(crate) fn get(&self, values: &[&str]) -> (u32, u32) {
        let hash = self.hash(values);
        let (entry, slot, _) = self.find_or_insert(values, hash, |t, e, _| {
            if is_series(e) {
                t.entry(e).handles.fetch_add(1, Relaxed);
            }
        });
        (entry, slot)
    }

    /// Another handle to `entry`, which a live handle holds already.
    pub(crate) fn retain(&self, entry: u32) {
        if is_series(entry) {
            self.read().entry(entry).handles.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn release(&self, entry: u32) {
        if is_series(entry) {
            self.read().entry(entry).handles.fetch_sub(1, Release);
        }
    }

    /// Removes the series for `values`, if present; `false` when a handle still holds it.
    pub(crate) fn remove(&self, values: &[&str]) -> bool {
        let hash = self.hash(values);
        let mut t = self.write();
        let Some(e) = t.find(hash, values) else {
            return true;
        };
        if t.entry(e).handles.load(Acquire) > 0 {
            return false;
        }
        self.unlink(&mut t, e, hash);
        true
    }

    /// Takes entry `e` out of the table (write-locked: `t`) and retires its slot.
    fn unlink(&self, t: &mut Table, e: u32, hash: u64) {
        let slot = t.unlink(hash, e, |text| self.keeper.bury(text));
        self.epoch.fetch_add(1, Release);
        self.retired.push(slot);
    }
}

#[cfg(test)]
impl FamilyInner {
    pub(crate) fn retired(&self) -> usize {
        self.retired.len()
    }
}

impl Drop for FamilyInner {
    fn drop(&mut self) {
        // Nothing can record into a family being dropped (a recorder holds it), and cache lines
        // naming it are never hit again (family ids are not reused): every slot is freed now.
        let kind = self.kind();
        let t = self.table.get_mut().unwrap_or_else(|e| e.into_inner());
        // Live label sets and the overflow series (removed entries' slots were retired).
        let mut slots: Vec<u32> = t
            .entries()
            .filter(|(_, entry)| entry.born != 0)
            .map(|(_, entry)| entry.slot)
            .chain(self.retired.take_all())
            .collect();
        // Snapshots may outlive the family: its label values go where they can keep them.
        for text in t.take_texts() {
            self.keeper.bury(text);
        }
        // Lines of other threads' caches may still lease these slots; they never hit again,
        // and their leases must not name the series that take these numbers next.
        slots.sort_unstable();
        slots.dedup();
        slots.retain(|&s| s != SINK);
        board().clear_leases_of(kind, &slots);
        for slot in slots {
            free_slot(kind, slot);
        }
    }
}
