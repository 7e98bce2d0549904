//! Leases: which slots the lines of each thread's lookup cache name, and lookups in flight
//! that no cache line covers. A retired slot is freed only when neither can reach it.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use super::sync::{lock, AtomicU64, AtomicUsize, Mutex};
use crate::descriptor::Kind;

/// What a lease holds: the slot's kind (1 to 3) in the high half, its number in the low half;
/// 0 for none.
fn tag(kind: Kind, slot: u32) -> u64 {
    (kind_code(kind) << 32) | slot as u64
}

/// The slot a lease holding `v` names, if it is one of the kind with code `code`: `tag` read
/// back.
fn slot_of(v: u64, code: u64) -> Option<u32> {
    (v >> 32 == code).then_some(v as u32)
}

fn kind_code(kind: Kind) -> u64 {
    match kind {
        Kind::Counter => 1,
        Kind::Gauge => 2,
        Kind::Timing => 3,
    }
}

/// One thread's leases, one per line of its lookup cache. Only the thread that owns the table
/// writes it; harvests read it.
pub(crate) struct LeaseTable {
    lines: Box<[AtomicU64]>,
}

impl LeaseTable {
    fn new(lines: usize) -> Self {
        LeaseTable {
            lines: (0..lines).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Line `line` now names `slot` of `kind`, and no longer what it named before.
    ///
    /// The caller must hold the lock of the family table it found `slot` in (read or write),
    /// so that a removal, which unlinks under the write lock before it retires the slot, comes
    /// after this store and sees it. Release: every record through the line's previous slot
    /// happens before a harvest that sees this store and frees that slot.
    #[inline]
    pub(crate) fn set(&self, line: usize, kind: Kind, slot: u32) {
        self.lines[line].store(tag(kind, slot), Release);
    }

    /// Line `line` names nothing (its records are done).
    #[inline]
    pub(crate) fn clear(&self, line: usize) {
        self.lines[line].store(0, Release);
    }

    /// The slots of the kind with code `code` this table's leases name (Acquire: the records
    /// through a lease's previous slot happen before a reader that sees it rewritten).
    fn names(&self, code: u64) -> impl Iterator<Item = u32> + '_ {
        self.lines
            .iter()
            .filter_map(move |l| slot_of(l.load(Acquire), code))
    }

    /// The slots of `kind` this table's leases name.
    #[cfg(test)]
    pub(crate) fn named(&self, kind: Kind) -> Vec<u32> {
        self.names(kind_code(kind)).collect()
    }

    fn clear_all(&self) {
        for l in self.lines.iter() {
            l.store(0, Release);
        }
    }
}

/// A lookup by label values that no cache line covers (its thread's cache is busy or gone),
/// counted in flight from before it takes the family's lock until after its record.
#[must_use]
pub(crate) struct Pin<'a>(&'a Board);

impl Drop for Pin<'_> {
    fn drop(&mut self) {
        // Release: the record made under this pin happens before a harvest that sees the count
        // this leaves (or a later one) and frees a slot.
        self.0.in_flight.fetch_sub(1, Release);
    }
}

struct Tables {
    all: Vec<&'static LeaseTable>,
    free: Vec<&'static LeaseTable>,
}

/// Every lease table, and the count of uncached lookups in flight.
pub(crate) struct Board {
    tables: Mutex<Tables>,
    in_flight: AtomicUsize,
}

impl Board {
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        Board {
            tables: Mutex::new(Tables {
                all: Vec::new(),
                free: Vec::new(),
            }),
            in_flight: AtomicUsize::new(0),
        }
    }

    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        Board {
            tables: Mutex::new(Tables {
                all: Vec::new(),
                free: Vec::new(),
            }),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// A table of `lines` leases for a thread's new cache: one given back by an exited thread,
    /// or a new one. Tables are never freed: a harvest may read any of them at any time.
    pub(crate) fn take_table(&self, lines: usize) -> &'static LeaseTable {
        let mut t = lock(&self.tables);
        if let Some(i) = t.free.iter().position(|l| l.lines.len() == lines) {
            return t.free.swap_remove(i);
        }
        let table: &'static LeaseTable = Box::leak(Box::new(LeaseTable::new(lines)));
        t.all.push(table);
        table
    }

    /// Gives back the table of a cache that is gone, its leases dropped.
    pub(crate) fn give_back(&self, table: &'static LeaseTable) {
        table.clear_all();
        lock(&self.tables).free.push(table);
    }

    /// Counts an uncached lookup in flight until the pin drops; taken before the family lock.
    ///
    /// Relaxed: the increment is ordered before a removal that follows the lookup's lock
    /// section by that lock (unlock, then the remover's lock), which is all it needs.
    pub(crate) fn pin(&self) -> Pin<'_> {
        self.in_flight.fetch_add(1, Relaxed);
        Pin(self)
    }

    /// Clears every lease that names one of `slots` (sorted) of `kind`: the slots of a family
    /// being dropped, whose cache lines no lookup can hit again (family ids are not reused).
    /// Left alone, such a lease would outlive the slot's free and name the series that gets
    /// the number next, whose own retirement it would then hold up for as long as that line
    /// stays in its thread's cache.
    ///
    /// A lease is cleared only if it still names such a slot (compare and swap): its thread
    /// may be writing that entry for another line at the same moment, and no thread can be
    /// writing a lease that names a slot of a family being dropped.
    pub(crate) fn clear_leases_of(&self, kind: Kind, slots: &[u32]) {
        let code = kind_code(kind);
        let tables = lock(&self.tables).all.clone();
        for t in tables {
            for l in t.lines.iter() {
                let v = l.load(Relaxed);
                if slot_of(v, code).is_some_and(|slot| slots.binary_search(&slot).is_ok()) {
                    crate::hooks::at(crate::hooks::Point::LeaseClearBeforeSwap);
                    let _ = l.compare_exchange(v, 0, Release, Relaxed);
                }
            }
        }
    }

    /// The slots of `kind` some lease names, sorted; `None` while an uncached lookup is in
    /// flight (it may hold any slot). Called after the slots asked about were retired.
    pub(crate) fn leased(&self, kind: Kind) -> Option<Vec<u32>> {
        if self.in_flight.load(Acquire) != 0 {
            return None;
        }
        let code = kind_code(kind);
        let tables = lock(&self.tables).all.clone();
        let mut leased: Vec<u32> = tables.iter().flat_map(|t| t.names(code)).collect();
        leased.sort_unstable();
        leased.dedup();
        Some(leased)
    }
}

#[cfg(not(loom))]
static BOARD: Board = Board::new();

#[cfg(loom)]
loom::lazy_static! {
    static ref BOARD: Board = Board::new();
}

/// The process's board.
pub(crate) fn board() -> &'static Board {
    &BOARD
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{Board, Kind};
    use crate::hooks::{self, Point};

    /// Clearing a dropped family's leases leaves every other lease alone, and one rewritten
    /// between the clear's read and its write (by the table's thread, for a line that now
    /// holds another series) too. Loom cannot check this race: it lets the compare-and-swap
    /// read a value older than a store ordered before it (tokio-rs/loom#282), so the window is
    /// staged here through the hook point between the read and the swap.
    #[test]
    fn clearing_a_dropped_familys_leases_leaves_newer_ones() {
        let board: &'static Board = Box::leak(Box::new(Board::new()));
        let t = board.take_table(3);
        t.set(0, Kind::Counter, 5); // the dropped family's: cleared
        t.set(1, Kind::Counter, 6); // another family's: left
        t.set(2, Kind::Timing, 5); // slot 5 of another kind: left
        board.clear_leases_of(Kind::Counter, &[5]);
        assert_eq!(t.named(Kind::Counter), vec![6]);
        assert_eq!(t.named(Kind::Timing), vec![5]);

        // Line 0 names slot 5 again; its thread gives the line to slot 7 of a live family just
        // after the clear read it.
        t.set(0, Kind::Counter, 5);
        hooks::set(move |p| {
            if p == Point::LeaseClearBeforeSwap {
                t.set(0, Kind::Counter, 7);
            }
        });
        board.clear_leases_of(Kind::Counter, &[5]);
        hooks::clear();
        let mut named = t.named(Kind::Counter);
        named.sort_unstable();
        assert_eq!(
            named,
            vec![6, 7],
            "the lease rewritten meanwhile was cleared"
        );
    }
}
