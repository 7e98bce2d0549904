//! A family's table: its entries (one per label set, plus the overflow series) in chunks that
//! never move, and the index from label values to entries.

use std::sync::atomic::AtomicU32;

use hashbrown::HashTable;

use crate::labels::PackedValues;
use crate::snapshot::SeriesId;

/// The entry number lookups give for the overflow series (which no handle count covers: it
/// lives as long as its family).
pub(crate) const OVERFLOW: u32 = u32::MAX;

pub(crate) struct Entry {
    /// `None` once removed (the entry number waits for reuse), and for the overflow series.
    pub(super) values: Option<PackedValues>,
    pub(super) slot: u32,
    /// Handles to this entry; taken and checked only under the table's lock (see `lifecycle`).
    pub(super) handles: AtomicU32,
    pub(super) id: SeriesId,
    pub(super) start_nanos: u64,
}

const ENTRY_CHUNK: usize = 1024;

#[derive(Default)]
pub(super) struct Table {
    index: HashTable<u32>,
    /// Entries in chunks of `ENTRY_CHUNK`, so growth never copies or over-allocates much.
    chunks: Vec<Vec<Entry>>,
    free: Vec<u32>,
    /// Label sets present (the overflow series aside).
    pub(super) live: usize,
    /// The overflow series' entry, once it has a slot of its own.
    pub(super) overflow: Option<u32>,
}

impl Table {
    pub(super) fn entry(&self, e: u32) -> &Entry {
        &self.chunks[e as usize / ENTRY_CHUNK][e as usize % ENTRY_CHUNK]
    }

    fn entry_mut(&mut self, e: u32) -> &mut Entry {
        &mut self.chunks[e as usize / ENTRY_CHUNK][e as usize % ENTRY_CHUNK]
    }

    /// Stores `entry` (in a free entry number if there is one) and returns its number.
    pub(super) fn push(&mut self, entry: Entry) -> u32 {
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

    pub(super) fn iter(&self) -> impl Iterator<Item = (u32, &Entry)> {
        self.chunks
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, e)| (i as u32, e))
    }

    /// The entry holding exactly `values`, whose hash is `hash`.
    pub(super) fn find(&self, hash: u64, values: &[&str]) -> Option<u32> {
        self.index
            .find(hash, |&e| {
                self.entry(e)
                    .values
                    .as_ref()
                    .is_some_and(|p| p.matches(values))
            })
            .copied()
    }

    /// Indexes entry `e` (just pushed) under `hash`; `rehash` gives the hash of other entries'
    /// values when the index grows.
    pub(super) fn link(&mut self, hash: u64, e: u32, rehash: impl Fn(&PackedValues) -> u64) {
        let Table { index, chunks, .. } = self;
        index.insert_unique(hash, e, |&x| {
            let entry = &chunks[x as usize / ENTRY_CHUNK][x as usize % ENTRY_CHUNK];
            entry.values.as_ref().map_or(0, &rehash)
        });
        self.live += 1;
    }

    /// Takes entry `e` (indexed under `hash`) out: no lookup finds it from now on, and its
    /// number may be reused. Returns its slot, which the caller retires, and its label values,
    /// which the caller keeps while snapshots may name them.
    pub(super) fn unlink(&mut self, hash: u64, e: u32) -> (u32, Option<PackedValues>) {
        if let Ok(found) = self.index.find_entry(hash, |&x| x == e) {
            found.remove();
        }
        let entry = self.entry_mut(e);
        let values = entry.values.take();
        let slot = entry.slot;
        self.free.push(e);
        self.live -= 1;
        (slot, values)
    }

    /// Takes every entry's label values out (the family is being dropped).
    pub(super) fn take_values(&mut self) -> impl Iterator<Item = PackedValues> + '_ {
        self.chunks
            .iter_mut()
            .flatten()
            .filter_map(|e| e.values.take())
    }
}
