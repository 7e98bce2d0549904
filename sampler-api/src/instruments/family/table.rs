//! A family's table: its entries (one per label set, plus the overflow series) in chunks,
//! each entry's label values as numbers into the family's distinct values (each value kept
//! once, however many label sets use it), and the index from label values to entries. It is
//! read and written only under the family's lock.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::AtomicU32;

use foldhash::fast::RandomState;
use hashbrown::HashTable;

use crate::labels::{Text, TextPtr};
use crate::snapshot::TableLabels;

/// The entry number lookups give for the overflow series (which no handle count covers: it
/// lives as long as its family).
pub(crate) const OVERFLOW: u32 = u32::MAX;

pub(crate) struct Entry {
    pub(super) slot: u32,
    /// Handles to this entry; taken and checked only under the table's lock (see `lifecycle`).
    pub(super) handles: AtomicU32,
    /// The series' `SeriesId` and start time in one (see `SeriesId`); 0 once removed (the
    /// entry number waits for reuse).
    pub(super) born: u64,
}

const ENTRY_CHUNK: usize = 1024;

pub(super) struct Table {
    /// Label values per entry.
    width: usize,
    hasher: RandomState,
    index: HashTable<u32>,
    /// Entries in chunks of `ENTRY_CHUNK`, so growth copies and over-allocates little (only
    /// the first chunk grows, from empty).
    chunks: Vec<Vec<Entry>>,
    /// Each entry's value numbers (`width` of them), in chunks beside `chunks`.
    ids: Vec<Vec<u32>>,
    values: Values,
    free: Vec<u32>,
    /// Label sets present (the overflow series aside).
    pub(super) live: usize,
    /// The overflow series' entry, once it has a slot of its own.
    pub(super) overflow: Option<u32>,
}

/// A family's distinct label values, each kept once and numbered, with how many entries name
/// it. A value no entry names any more leaves (for the family's `Keep`, see `unlink`) and its
/// number is reused.
#[derive(Default)]
struct Values {
    index: HashTable<u32>,
    texts: Vec<Option<Text>>,
    /// Where each text is (stale for a free number), beside `texts` so that a harvest copies
    /// them all at once (`Table::labels`).
    ptrs: Vec<TextPtr>,
    refs: Vec<u32>,
    free: Vec<u32>,
}

impl Table {
    /// An empty table for label sets of `width` values, hashed with `hasher` (the family's).
    pub(super) fn new(width: usize, hasher: RandomState) -> Self {
        Table {
            width,
            hasher,
            index: HashTable::new(),
            chunks: Vec::new(),
            ids: Vec::new(),
            values: Values::default(),
            free: Vec::new(),
            live: 0,
            overflow: None,
        }
    }

    /// The hash the index keeps label values under (`FamilyInner::hash` is the same).
    pub(super) fn hash_values<'a>(
        hasher: &RandomState,
        values: impl IntoIterator<Item = &'a str>,
    ) -> u64 {
        let mut h = hasher.build_hasher();
        for v in values {
            h.write_usize(v.len());
            h.write(v.as_bytes());
        }
        h.finish()
    }

    pub(super) fn entry(&self, e: u32) -> &Entry {
        &self.chunks[e as usize / ENTRY_CHUNK][e as usize % ENTRY_CHUNK]
    }

    /// Entry `e`'s value numbers.
    #[inline]
    pub(super) fn ids(&self, e: u32) -> &[u32] {
        entry_ids(&self.ids, self.width, e)
    }

    /// Every entry's value numbers and where each numbered value is, for a snapshot's block
    /// (which keeps the values alive past the table: see `unlink` and `snapshot::keep`). The
    /// place of a free number is stale, and so are the numbers of a removed entry: no series
    /// in the block names them.
    pub(super) fn labels(&self) -> TableLabels<'_> {
        TableLabels {
            ids: &self.ids,
            texts: &self.values.ptrs,
        }
    }

    /// Entry `e`'s label values.
    fn strs(&self, e: u32) -> impl Iterator<Item = &str> {
        self.ids(e).iter().map(|&id| self.values.str(id))
    }

    /// The hash of entry `e`'s label values.
    pub(super) fn hash_entry(&self, e: u32) -> u64 {
        Self::hash_values(&self.hasher, self.strs(e))
    }

    /// Runs `f` on each label set present: its number and entry.
    #[inline]
    pub(super) fn for_each_label_set(&self, mut f: impl FnMut(u32, &Entry)) {
        let overflow = self.overflow.unwrap_or(u32::MAX);
        for (c, entries) in self.chunks.iter().enumerate() {
            for (i, entry) in entries.iter().enumerate() {
                let e = (c * ENTRY_CHUNK + i) as u32;
                if entry.born != 0 && e != overflow {
                    f(e, entry);
                }
            }
        }
    }

    /// Every entry, removed ones included.
    pub(super) fn entries(&self) -> impl Iterator<Item = (u32, &Entry)> {
        self.chunks
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, e)| (i as u32, e))
    }

    /// The label set holding exactly `values` (one per key), whose hash is `hash`.
    pub(super) fn find(&self, hash: u64, values: &[&str]) -> Option<u32> {
        self.index
            .find(hash, |&e| self.strs(e).eq(values.iter().copied()))
            .copied()
    }

    /// Stores `entry` (in a free entry number if there is one) with value numbers `ids` (none
    /// for the overflow series) and returns its number.
    fn push(&mut self, entry: Entry, ids: &[u32]) -> u32 {
        let e = match self.free.pop() {
            Some(e) => {
                let (c, i) = (e as usize / ENTRY_CHUNK, e as usize % ENTRY_CHUNK);
                self.chunks[c][i] = entry;
                e
            }
            None => {
                if self.chunks.last().map_or(true, |c| c.len() == ENTRY_CHUNK) {
                    // The first chunk grows as entries come (a family of a few series stays
                    // small); later ones are made whole.
                    let room = if self.chunks.is_empty() {
                        0
                    } else {
                        ENTRY_CHUNK
                    };
                    self.chunks.push(Vec::with_capacity(room));
                    if self.width > 0 {
                        self.ids.push(Vec::with_capacity(room * self.width));
                    }
                }
                let full = (self.chunks.len() - 1) * ENTRY_CHUNK;
                let last = self.chunks.last_mut().expect("a chunk");
                last.push(entry);
                let n = last.len();
                if let Some(ids) = self.ids.last_mut() {
                    ids.resize(n * self.width, 0);
                }
                (full + n - 1) as u32
            }
        };
        if let Some(chunk) = self.ids.get_mut(e as usize / ENTRY_CHUNK) {
            let at = e as usize % ENTRY_CHUNK * self.width;
            chunk[at..at + self.width].copy_from_slice(ids);
        }
        e
    }

    /// Stores the overflow series' entry (which names no values) and returns its number.
    pub(super) fn push_overflow(&mut self, entry: Entry) -> u32 {
        let e = self.push(entry, &vec![0; self.width]);
        self.overflow = Some(e);
        e
    }

    /// Stores `entry` as the label set `values` (one per key, not present yet), whose hash is
    /// `hash`, and returns its number.
    pub(super) fn insert(&mut self, hash: u64, values: &[&str], entry: Entry) -> u32 {
        let ids: Vec<u32> = values
            .iter()
            .map(|v| self.values.intern(&self.hasher, v))
            .collect();
        let e = self.push(entry, &ids);
        let Table {
            index,
            ids,
            values,
            hasher,
            width,
            ..
        } = self;
        index.insert_unique(hash, e, |&x| {
            let of = entry_ids(ids, *width, x);
            Self::hash_values(hasher, of.iter().map(|&id| values.str(id)))
        });
        self.live += 1;
        e
    }

    /// Takes label set `e` (indexed under `hash`) out: no lookup finds it from now on, and its
    /// number may be reused. Returns its slot, which the caller retires; each of its values
    /// that no other label set names leaves through `bury`, which keeps it while snapshots
    /// may name it.
    pub(super) fn unlink(&mut self, hash: u64, e: u32, mut bury: impl FnMut(Text)) -> u32 {
        if let Ok(found) = self.index.find_entry(hash, |&x| x == e) {
            found.remove();
        }
        let entry = &mut self.chunks[e as usize / ENTRY_CHUNK][e as usize % ENTRY_CHUNK];
        entry.born = 0;
        let slot = entry.slot;
        for &id in entry_ids(&self.ids, self.width, e) {
            if let Some(text) = self.values.release(&self.hasher, id) {
                bury(text);
            }
        }
        self.free.push(e);
        self.live -= 1;
        slot
    }

    /// Takes every value out (the family is being dropped).
    pub(super) fn take_texts(&mut self) -> impl Iterator<Item = Text> + '_ {
        self.values.index.clear();
        self.values.texts.iter_mut().filter_map(Option::take)
    }
}

/// Entry `e`'s value numbers in `ids`, the chunks of a table of label sets `width` long.
fn entry_ids(ids: &[Vec<u32>], width: usize, e: u32) -> &[u32] {
    let at = e as usize % ENTRY_CHUNK * width;
    ids.get(e as usize / ENTRY_CHUNK)
        .map_or(&[], |chunk| &chunk[at..at + width])
}

/// The value numbered `id` in `texts` (`""` for a free number).
fn text_of(texts: &[Option<Text>], id: u32) -> &str {
    texts[id as usize].as_ref().map_or("", Text::as_str)
}

impl Values {
    fn str(&self, id: u32) -> &str {
        text_of(&self.texts, id)
    }

    fn hash(hasher: &RandomState, v: &str) -> u64 {
        Table::hash_values(hasher, [v])
    }

    /// The number of `v`, made if new, named by one more entry.
    fn intern(&mut self, hasher: &RandomState, v: &str) -> u32 {
        let hash = Self::hash(hasher, v);
        let Values {
            index,
            texts,
            ptrs,
            refs,
            free,
        } = self;
        if let Some(&id) = index.find(hash, |&id| text_of(texts, id) == v) {
            refs[id as usize] += 1;
            return id;
        }
        let text = Text::new(v);
        let ptr = text.ptr();
        let id = match free.pop() {
            Some(id) => {
                (texts[id as usize], ptrs[id as usize], refs[id as usize]) = (Some(text), ptr, 1);
                id
            }
            None => {
                texts.push(Some(text));
                ptrs.push(ptr);
                refs.push(1);
                (texts.len() - 1) as u32
            }
        };
        index.insert_unique(hash, id, |&x| Self::hash(hasher, text_of(texts, x)));
        id
    }

    /// One entry fewer names value `id`: if none does any more, the value leaves (returned)
    /// and its number is free.
    fn release(&mut self, hasher: &RandomState, id: u32) -> Option<Text> {
        let refs = &mut self.refs[id as usize];
        *refs -= 1;
        if *refs > 0 {
            return None;
        }
        let hash = Self::hash(hasher, self.str(id));
        if let Ok(found) = self.index.find_entry(hash, |&x| x == id) {
            found.remove();
        }
        self.free.push(id);
        self.texts[id as usize].take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(born: u64) -> Entry {
        Entry {
            slot: born as u32,
            handles: AtomicU32::new(0),
            born,
        }
    }

    fn hash(t: &Table, values: &[&str]) -> u64 {
        Table::hash_values(&t.hasher, values.iter().copied())
    }

    /// Values are kept once however many label sets name them, leave when the last one
    /// goes, and their numbers and the entries' numbers are reused.
    #[test]
    fn values_are_kept_once_and_leave_with_their_last_label_set() {
        let mut t = Table::new(2, RandomState::default());
        let sets: Vec<[String; 2]> = (0..3000)
            .map(|i| [format!("svc{}", i % 7), format!("/route/{i}")])
            .collect();
        for (i, [a, b]) in sets.iter().enumerate() {
            let v = [a.as_str(), b.as_str()];
            assert_eq!(t.find(hash(&t, &v), &v), None);
            let e = t.insert(hash(&t, &v), &v, entry(i as u64 + 1));
            assert_eq!(e, i as u32);
        }
        assert_eq!(t.values.index.len(), 7 + 3000);
        for (i, [a, b]) in sets.iter().enumerate() {
            let v = [a.as_str(), b.as_str()];
            assert_eq!(t.find(hash(&t, &v), &v), Some(i as u32));
            assert_eq!(t.strs(i as u32).collect::<Vec<_>>(), v);
            assert_eq!(t.hash_entry(i as u32), hash(&t, &v));
        }
        // Every label set of svc3 goes: svc3 leaves with the last of them.
        let mut buried = Vec::new();
        for (i, [a, b]) in sets.iter().enumerate().filter(|(i, _)| i % 7 == 3) {
            let v = [a.as_str(), b.as_str()];
            let slot = t.unlink(hash(&t, &v), i as u32, |text| {
                buried.push(text.as_str().to_owned())
            });
            assert_eq!(slot, i as u32 + 1);
        }
        let gone = (0..sets.len()).filter(|i| i % 7 == 3).count();
        // Each route went with its label set, svc3 with the last of them (before its route).
        assert_eq!(buried.len(), gone + 1);
        assert_eq!(buried.iter().filter(|b| b.starts_with("svc")).count(), 1);
        assert_eq!(buried[buried.len() - 2], "svc3");
        assert_eq!(t.live, 3000 - gone);
        let mut sets_left = 0;
        t.for_each_label_set(|e, _| {
            assert_eq!(t.ids(e).len(), 2);
            sets_left += 1;
        });
        assert_eq!(sets_left, 3000 - gone);
        // New label sets take the free numbers, and find each other again.
        let v = ["svc3", "/again"];
        let e = t.insert(hash(&t, &v), &v, entry(9999));
        assert_eq!(e % 7, 3, "a free entry number is reused");
        assert_eq!(t.find(hash(&t, &v), &v), Some(e));
        assert_eq!(t.values.index.len(), 7 + 3000 - gone + 1);
        for (i, [a, b]) in sets.iter().enumerate().filter(|(i, _)| i % 7 != 3) {
            let v = [a.as_str(), b.as_str()];
            assert_eq!(t.find(hash(&t, &v), &v), Some(i as u32));
        }
        // The overflow series names no value and is no label set.
        let o = t.push_overflow(entry(10_000));
        t.for_each_label_set(|e, _| assert_ne!(e, o));
        assert_eq!(t.take_texts().count(), 7 + 3000 - gone + 1);
    }

    /// A family with no keys: one entry, no values.
    #[test]
    fn a_table_without_keys_holds_its_one_series() {
        let mut t = Table::new(0, RandomState::default());
        let e = t.insert(hash(&t, &[]), &[], entry(1));
        assert_eq!(t.find(hash(&t, &[]), &[]), Some(e));
        assert!(t.ids(e).is_empty());
        assert_eq!(t.unlink(hash(&t, &[]), e, |_| panic!("no values")), 1);
        assert_eq!(t.find(hash(&t, &[]), &[]), None);
    }
}
