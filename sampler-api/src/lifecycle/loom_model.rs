//! A loom model of the slot lifecycle: lookup (through a cache line and its lease, or pinned),
//! handles (get, clone, release), remove, expiry, harvest (reclaim), free and a family's drop,
//! with the protocol's own `Board`, `LeaseTable`, `Retired` and `Slots`.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p sampler-api --release --lib loom`.
//!
//! The family table is a small copy of `instruments::family` (a `RwLock` over entries with
//! handle counts, an epoch, entry numbers reused last-in first-out like `Table::push`); each
//! slot's memory is a `loom::cell::UnsafeCell`, written without synchronisation by the
//! recorder (as a thread writes its own cell) and reset by `free`. Loom reports any free that
//! does not happen after every write a recorder makes through the slot: a write after free, or
//! into a slot reused by another series. Each model also checks at its end that a series that
//! nobody increments holds nothing, and that handle counts add up.

use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicU32, Ordering::*};
use loom::sync::{Arc, RwLock};
use loom::thread;

use super::lease::{Board, LeaseTable, Pin};
use super::retire::Retired;
use super::slots::Slots;
use crate::descriptor::Kind;

const SLOTS: usize = 8;
/// Threads with cells of their own (as slabs): the model's main thread and two others.
const SLABS: usize = 3;
const KIND: Kind = Kind::Counter;

struct Entry {
    values: Option<&'static str>,
    slot: u32,
    handles: AtomicU32,
}

#[derive(Default)]
struct Table {
    entries: Vec<Entry>,
    free: Vec<usize>,
}

impl Table {
    fn find(&self, values: &str) -> Option<usize> {
        self.entries.iter().position(|e| e.values == Some(values))
    }
}

/// What the families of a process share: the board of leases and pins, the slot numbers and
/// the threads' cells.
struct World {
    board: Board,
    slots: Slots,
    /// Each thread's cells, by slot (the model of a slab: a thread's counter cells, or its
    /// histograms).
    memory: Vec<Vec<UnsafeCell<u64>>>,
}

impl World {
    fn new() -> &'static Self {
        Box::leak(Box::new(World {
            board: Board::new(),
            slots: Slots::new(),
            memory: (0..SLABS)
                .map(|_| (0..SLOTS).map(|_| UnsafeCell::new(0)).collect())
                .collect(),
        }))
    }

    /// `free_slot`: the slot's cells reset in every slab, its number handed out again.
    fn free(&self, slot: u32) {
        for slab in &self.memory {
            // SAFETY: loom checks that nothing else accesses the cell meanwhile.
            slab[slot as usize].with_mut(|v| unsafe { *v = 0 });
        }
        self.slots.release(slot);
    }
}

struct Family {
    table: RwLock<Table>,
    epoch: AtomicU32,
    retired: Retired,
    world: &'static World,
}

impl Family {
    fn new() -> Arc<Self> {
        Self::in_world(World::new())
    }

    /// A family of `world`, beside its other families.
    fn in_world(world: &'static World) -> Arc<Self> {
        Arc::new(Family {
            table: RwLock::new(Table::default()),
            epoch: AtomicU32::new(0),
            retired: Retired::new(),
            world,
        })
    }

    /// `Drop for FamilyInner`, once no one else holds the family: every slot it has (live
    /// entries' and retired ones) is freed, after the leases that still name them are cleared.
    fn drop_last(f: Arc<Self>) {
        let mut f = f;
        let f = loop {
            match Arc::try_unwrap(f) {
                Ok(f) => break f,
                Err(back) => {
                    f = back;
                    thread::yield_now();
                }
            }
        };
        let t = f.table.into_inner().unwrap();
        let mut slots: Vec<u32> = t
            .entries
            .iter()
            .filter(|e| e.values.is_some())
            .map(|e| e.slot)
            .chain(f.retired.take_all())
            .collect();
        slots.sort_unstable();
        slots.dedup();
        f.world.board.clear_leases_of(KIND, &slots);
        for slot in slots {
            f.world.free(slot);
        }
    }

    /// `FamilyInner::find_or_insert`: `found` runs under the lock that found the entry.
    fn find_or_insert(
        &self,
        values: &'static str,
        found: impl FnOnce(&Table, usize, u32),
    ) -> (usize, u32) {
        {
            let t = self.table.read().unwrap();
            if let Some(e) = t.find(values) {
                let slot = t.entries[e].slot;
                found(&t, e, slot);
                return (e, slot);
            }
        }
        let mut t = self.table.write().unwrap();
        if let Some(e) = t.find(values) {
            let slot = t.entries[e].slot;
            found(&t, e, slot);
            return (e, slot);
        }
        let slot = self.world.slots.alloc().expect("a slot");
        let entry = Entry {
            values: Some(values),
            slot,
            handles: AtomicU32::new(0),
        };
        let e = match t.free.pop() {
            Some(e) => {
                t.entries[e] = entry;
                e
            }
            None => {
                t.entries.push(entry);
                t.entries.len() - 1
            }
        };
        found(&t, e, slot);
        (e, slot)
    }

    /// `FamilyInner::get` (`Handle::new`): the handle is taken under the lock.
    fn get(&self, values: &'static str) -> (usize, u32) {
        self.find_or_insert(values, |t, e, _| {
            t.entries[e].handles.fetch_add(1, Relaxed);
        })
    }

    /// `FamilyInner::retain` (`Handle::clone`, from a live handle).
    fn retain(&self, e: usize) {
        self.table.read().unwrap().entries[e]
            .handles
            .fetch_add(1, Relaxed);
    }

    /// `FamilyInner::release` (`Handle::drop`).
    fn release(&self, e: usize) {
        self.table.read().unwrap().entries[e]
            .handles
            .fetch_sub(1, Release);
    }

    fn unlink(&self, t: &mut Table, e: usize) {
        t.entries[e].values = None;
        t.free.push(e);
        self.epoch.fetch_add(1, Release);
        self.retired.push(t.entries[e].slot);
    }

    /// `FamilyInner::remove`.
    fn remove(&self, values: &str) -> bool {
        let mut t = self.table.write().unwrap();
        let Some(e) = t.find(values) else {
            return true;
        };
        if t.entries[e].handles.load(Acquire) > 0 {
            return false;
        }
        self.unlink(&mut t, e);
        true
    }

    /// Idle expiry: picked under the read lock in the harvest, checked again under the write
    /// lock (`Expiry::expired`, `FamilyInner::expire`).
    fn expire(&self, values: &str) {
        let picked = {
            let t = self.table.read().unwrap();
            t.find(values)
                .filter(|&e| t.entries[e].handles.load(Acquire) == 0)
        };
        if let Some(e) = picked {
            let mut t = self.table.write().unwrap();
            if t.entries[e].handles.load(Acquire) == 0 && t.entries[e].values.is_some() {
                self.unlink(&mut t, e);
            }
        }
    }

    /// The harvest's reclaim (`FamilyInner::sample`) and `free_slot`.
    fn harvest(&self) {
        self.retired
            .reclaim(&self.world.board, KIND, |slot| self.world.free(slot));
    }

    /// A record into `slot`'s cell of thread `slab`, as the owner of a cell writes it.
    fn record(&self, slab: usize, slot: u32) {
        // SAFETY: loom checks that nothing else accesses the cell meanwhile.
        self.world.memory[slab][slot as usize].with_mut(|v| unsafe { *v += 1 });
    }

    /// `slot`'s total over every thread's cell (once the recorders are joined).
    fn read(&self, slot: u32) -> u64 {
        self.world
            .memory
            .iter()
            // SAFETY: loom checks that no write to the cell races this read.
            .map(|slab| slab[slot as usize].with(|v| unsafe { *v }))
            .sum()
    }
}

/// One thread's lookup cache with one line (`instruments::family::cache`).
struct Cache {
    line: Option<(&'static str, u32, u32)>,
    leases: &'static LeaseTable,
    board: &'static Board,
}

impl Cache {
    fn new(f: &Family) -> Self {
        Cache {
            line: None,
            leases: f.world.board.take_table(1),
            board: &f.world.board,
        }
    }

    /// `FamilyInner::lookup`: a hit when the line holds `values` at the current epoch; else
    /// the slow path, which writes the line's lease under the table's lock.
    fn lookup(&mut self, f: &Family, values: &'static str) -> u32 {
        let epoch = f.epoch.load(Acquire);
        if let Some((v, e, slot)) = self.line {
            if v == values && e == epoch {
                return slot;
            }
        }
        let leases = self.leases;
        let (_, slot) = f.find_or_insert(values, |_, _, slot| leases.set(0, KIND, slot));
        self.line = Some((values, epoch, slot));
        slot
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        self.board.give_back(self.leases);
    }
}

/// `FamilyInner::lookup` without a usable cache: pinned from before the lock.
fn lookup_pinned(f: &Family, values: &'static str) -> (u32, Pin<'static>) {
    let pin = f.world.board.pin();
    let (_, slot) = f.find_or_insert(values, |_, _, _| {});
    (slot, pin)
}

/// After the removal of `x`: a new series `z` that nobody increments (it gets x's slot when
/// x's slot was freed) must read 0 once every thread is done.
fn check_new_series_is_empty(f: &Family) {
    let (ze, zs) = f.get("z");
    let before = f.read(zs);
    assert_eq!(before, 0, "a new series starts from zero");
    f.release(ze);
}

/// Runs `f` under every interleaving loom explores (preemptions bounded by
/// `LOOM_MAX_PREEMPTIONS`, default 3) and prints how many it ran.
fn model(name: &str, f: impl Fn() + Sync + Send + 'static) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let runs = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    let started = std::time::Instant::now();
    b.check(move || {
        counted.fetch_add(1, Ordering::Relaxed);
        f()
    });
    println!(
        "{name}: {} interleavings in {:.2?}",
        runs.load(Ordering::Relaxed),
        started.elapsed()
    );
}

#[test]
fn loom_s1_cached_lookup_vs_remove_harvest_free() {
    model("loom_s1_cached_lookup_vs_remove_harvest_free", || {
        let f = Family::new();
        let f2 = f.clone();
        let r = thread::spawn(move || {
            let mut cache = Cache::new(&f2);
            // The first lookup fills the line (slow path), the second may hit it.
            for _ in 0..2 {
                let slot = cache.lookup(&f2, "x");
                f2.record(1, slot);
            }
        });
        assert!(f.remove("x"));
        f.harvest();
        f.harvest();
        let (ze, zs) = f.get("z");
        r.join().unwrap();
        f.harvest();
        assert_eq!(f.read(zs), 0, "z holds an increment made to x");
        f.release(ze);
    });
}

#[test]
fn loom_s1_pinned_lookup_vs_remove_harvest_free() {
    model("loom_s1_pinned_lookup_vs_remove_harvest_free", || {
        let f = Family::new();
        let f2 = f.clone();
        let r = thread::spawn(move || {
            let (slot, pin) = lookup_pinned(&f2, "x");
            f2.record(1, slot);
            drop(pin);
        });
        f.remove("x");
        f.harvest();
        let (ze, zs) = f.get("z");
        r.join().unwrap();
        assert_eq!(f.read(zs), 0, "z holds an increment made to x");
        f.release(ze);
        f.harvest();
        check_new_series_is_empty(&f);
    });
}

#[test]
fn loom_line_replacement_releases_the_lease_after_the_records() {
    model(
        "loom_line_replacement_releases_the_lease_after_the_records",
        || {
            let f = Family::new();
            let (x, _) = f.get("x");
            f.release(x);
            let f2 = f.clone();
            let r = thread::spawn(move || {
                let mut cache = Cache::new(&f2);
                let slot = cache.lookup(&f2, "x");
                f2.record(1, slot);
                // The line now holds y: x's lease is dropped, after x's record.
                let slot = cache.lookup(&f2, "y");
                f2.record(1, slot);
                std::mem::forget(cache); // the thread lives on, its lease on y kept
            });
            assert!(f.remove("x"));
            f.harvest();
            f.harvest();
            r.join().unwrap();
            f.harvest();
            assert_eq!(
                f.retired.take_all(),
                Vec::<u32>::new(),
                "x's slot was freed"
            );
        },
    );
}

#[test]
fn loom_s2_get_clone_release_vs_remove_harvest_free() {
    model("loom_s2_get_clone_release_vs_remove_harvest_free", || {
        let f = Family::new();
        let f2 = f.clone();
        let r = thread::spawn(move || {
            let (e, slot) = f2.get("x");
            f2.retain(e); // a clone
            f2.release(e); // the first handle dropped
            f2.record(1, slot);
            f2.release(e);
        });
        let removed = f.remove("x");
        f.harvest();
        let (ze, zs) = f.get("z");
        r.join().unwrap();
        f.harvest();
        assert_eq!(
            f.read(zs),
            0,
            "z holds an increment made through x's handle"
        );
        let t = f.table.read().unwrap();
        assert_eq!(
            t.entries[ze].handles.load(Relaxed),
            1,
            "z's handle count is its own"
        );
        if let Some(x) = t.find("x") {
            // Not removed, or removed before the handle's lookup made it again.
            assert_eq!(t.entries[x].handles.load(Relaxed), 0);
        } else {
            assert!(removed);
        }
    });
}

#[test]
fn loom_expiry_vs_get_and_record() {
    model("loom_expiry_vs_get_and_record", || {
        let f = Family::new();
        let (e, _) = f.get("x");
        f.release(e);
        let f2 = f.clone();
        let r = thread::spawn(move || {
            let (e, slot) = f2.get("x");
            f2.record(1, slot);
            f2.release(e);
        });
        f.expire("x");
        f.harvest();
        let (ze, zs) = f.get("z");
        r.join().unwrap();
        assert_eq!(
            f.read(zs),
            0,
            "z holds an increment made through x's handle"
        );
        f.release(ze);
    });
}

#[test]
fn loom_expiry_vs_cached_lookup_and_exit() {
    model("loom_expiry_vs_cached_lookup_and_exit", || {
        let f = Family::new();
        let (e, _) = f.get("x");
        f.release(e);
        let f2 = f.clone();
        let r = thread::spawn(move || {
            let mut cache = Cache::new(&f2);
            let slot = cache.lookup(&f2, "x");
            f2.record(1, slot);
            // the thread exits: its cache, and lease, go
        });
        f.expire("x");
        f.harvest();
        r.join().unwrap();
        f.harvest();
        check_new_series_is_empty(&f);
    });
}

#[test]
fn loom_two_harvests_free_each_slot_once() {
    model("loom_two_harvests_free_each_slot_once", || {
        let f = Family::new();
        let f2 = f.clone();
        let r = thread::spawn(move || {
            let mut cache = Cache::new(&f2);
            let slot = cache.lookup(&f2, "x");
            f2.record(1, slot);
        });
        let f3 = f.clone();
        let h = thread::spawn(move || f3.harvest());
        f.remove("x");
        f.harvest();
        r.join().unwrap();
        h.join().unwrap();
        f.harvest();
        // Freed at most once: two new series never share a slot.
        let (a, sa) = f.get("a");
        let (b, sb) = f.get("b");
        assert_ne!(sa, sb, "a slot was freed twice and handed out twice");
        f.release(a);
        f.release(b);
    });
}

#[test]
fn loom_by_values_and_by_handle_vs_remove_expire_harvest() {
    model(
        "loom_by_values_and_by_handle_vs_remove_expire_harvest",
        || {
            let f = Family::new();
            let (y, _) = f.get("y");
            f.release(y);
            let f2 = f.clone();
            let by_values = thread::spawn(move || {
                let mut cache = Cache::new(&f2);
                let slot = cache.lookup(&f2, "x");
                f2.record(1, slot);
                let slot = cache.lookup(&f2, "y");
                f2.record(1, slot);
            });
            let f3 = f.clone();
            let by_handle = thread::spawn(move || {
                let (e, slot) = f3.get("x");
                f3.record(2, slot);
                f3.release(e);
            });
            f.remove("x");
            f.expire("y");
            f.harvest();
            let (ze, zs) = f.get("z");
            by_values.join().unwrap();
            by_handle.join().unwrap();
            assert_eq!(f.read(zs), 0, "z holds an increment made to x or y");
            f.release(ze);
        },
    );
}

#[test]
fn loom_i6_a_dropped_family_leaves_no_lease_on_a_reused_slot() {
    model(
        "loom_i6_a_dropped_family_leaves_no_lease_on_a_reused_slot",
        || {
            let world = World::new();
            let (f, g) = (Family::in_world(world), Family::in_world(world));
            let f2 = f.clone();
            let r = thread::spawn(move || {
                let mut cache = Cache::new(&f2);
                let slot = cache.lookup(&f2, "x");
                f2.record(1, slot);
                drop(f2);
                std::mem::forget(cache); // the thread lives on, its line on x kept
            });
            Family::drop_last(f);
            r.join().unwrap();
            // A series of another family may take x's number; once removed, it is freed.
            let (z, _) = g.get("z");
            g.release(z);
            assert!(g.remove("z"));
            g.harvest();
            assert_eq!(
                g.retired.take_all(),
                Vec::<u32>::new(),
                "a lease of the dropped family held up the free of the series after it"
            );
        },
    );
}
