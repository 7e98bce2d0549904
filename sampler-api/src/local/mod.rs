//! Where instrument values live: per-thread slabs for counters and timings, one shared array
//! for gauges. When a slot may be written, and when its memory is reset, is the slot
//! lifecycle's business (`crate::lifecycle`); this module only keeps the memory.
//!
//! Every counter and timing series owns a *slot* number. Each recording thread owns a slab with
//! one cell per slot, in flat arrays whose start and length the thread keeps in a thread-local,
//! so a counter add is a compare and an add into the cell. A slot made after the array was
//! sized is past it: the thread's first record into it grows the array (a longer one with the
//! same values replaces it; the old one is freed once no reader can hold it). Where an array
//! cannot be described by the thread-local's word, later slots sit in lazily filled two-level
//! arrays instead. A thread adds into its own
//! cell with a plain load and store (no locked instruction, no cache line shared with another
//! thread); the harvest sums the cells of all slabs. A slab never goes away: when its thread exits it goes
//! back to a pool and the next new thread takes it over, values and all, so totals stay exact.
//! Recording that happens while a thread is being torn down (its slab already returned) goes to
//! one shared slab updated with atomic read-modify-write instead.
//!
//! - `storage`: a thread's cells of one kind: a flat array that grows, and a two-level array
//!   whose cells never move;
//! - `flat`: a thread's flat array of one kind, kept at hand as one word;
//! - `retire`: flat arrays a slab outgrew, freed once no reader can hold them;
//! - `slab`: a thread's slab, the pool, reaching this thread's own, resetting a slot in all;
//! - `record`: the counter and timing record paths;
//! - `hist`: a thread's histogram of one timing slot;
//! - `read`: totals and merged distributions over all slabs;
//! - `gauges`: the gauge cells.

use std::sync::{Mutex, MutexGuard};

mod flat;
mod gauges;
mod hist;
mod read;
mod record;
mod retire;
mod slab;
mod storage;

pub(crate) use gauges::{gauge_cell, reset_gauge};
pub(crate) use read::{timing_lock, Reader, TimingGuard};
pub(crate) use record::{counter_add, timing_record};
pub(crate) use slab::{drop_hists, zero_counter};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding one of these locks leaves consistent data behind (every
    // update under them is a single push, pop or store), so poisoning is ignored.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descriptor::Kind;
    use crate::distribution::index_table;
    use crate::lifecycle::{free_slot, slots};

    fn alloc(kind: Kind) -> u32 {
        slots(kind).alloc().unwrap()
    }

    #[test]
    fn counters_sum_across_threads_and_exits() {
        let slot = alloc(Kind::Counter);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        counter_add(slot, 1);
                    }
                });
            }
        });
        // Threads have exited; their slabs are pooled, values kept.
        assert_eq!(Reader::new().counter(slot), 40_000);
        std::thread::spawn(move || counter_add(slot, 5))
            .join()
            .unwrap();
        assert_eq!(Reader::new().counter(slot), 40_005);
        free_slot(Kind::Counter, slot);
    }

    #[test]
    fn timing_merges() {
        let slot = alloc(Kind::Timing);
        for v in [0.0, 0.5, 1.0, 2.0, 1e30] {
            timing_record(slot, index_table(3), v);
        }
        let g = timing_lock();
        let d = Reader::new().timing(slot, 3, &g);
        drop(g);
        assert_eq!(d.count(), 5);
        assert_eq!(d.zero_count(), 1);
        assert_eq!(d.max(), 1e30);
        assert_eq!(d.min(), 0.0);
        free_slot(Kind::Timing, slot);
    }

    #[test]
    fn records_from_thread_local_destructors_are_kept() {
        // A thread-local whose destructor records after this module's guard has returned the
        // thread's slab to the pool: the records go to the shared slab, none is lost.
        struct Late(u32, u32);
        impl Drop for Late {
            fn drop(&mut self) {
                counter_add(self.0, 7);
                for v in [0.25, 0.0, -1.0, f64::NAN, 1e300] {
                    timing_record(self.1, index_table(3), v);
                }
            }
        }
        thread_local! {
            static LATE: std::cell::RefCell<Option<Late>> = const { std::cell::RefCell::new(None) };
        }
        let (c, t) = (alloc(Kind::Counter), alloc(Kind::Timing));
        std::thread::spawn(move || {
            // Registered before the guard, so destroyed after it (destructors run in reverse).
            LATE.with(|l| *l.borrow_mut() = Some(Late(c, t)));
            counter_add(c, 1);
            timing_record(t, index_table(3), 0.5);
        })
        .join()
        .unwrap();
        assert_eq!(Reader::new().counter(c), 8);
        let g = timing_lock();
        let d = Reader::new().timing(t, 3, &g);
        drop(g);
        // 0.5, 0.25, 1e300 in buckets; 0.0 and -1.0 as zeros; NaN ignored.
        assert_eq!((d.count(), d.zero_count()), (5, 2));
        assert_eq!((d.min(), d.max()), (0.0, 1e300));
        assert_eq!(d.sum(), 0.75 + 1e300);
        free_slot(Kind::Counter, c);
        free_slot(Kind::Timing, t);
    }

    #[test]
    fn slots_past_the_flat_arrays_grow_them() {
        std::thread::spawn(|| {
            // The first record makes this thread's slab; then take slots until some lie past
            // its flat arrays, which were sized when it was made.
            let first = alloc(Kind::Counter);
            counter_add(first, 1);
            let (c_len, h_len) =
                slab::LOCAL.with(|l| (l.counters.get().len(), l.hists.get().len()));
            // At least one slot after `first`: a slab taken from the pool keeps the flat arrays
            // it was made with, so `first` itself may already lie past them, and its record
            // must not be counted in the slot checked below.
            let (mut counters, mut timings) =
                (vec![first, alloc(Kind::Counter)], vec![alloc(Kind::Timing)]);
            while *counters.last().unwrap() < c_len {
                counters.push(alloc(Kind::Counter));
            }
            while *timings.last().unwrap() < h_len {
                timings.push(alloc(Kind::Timing));
            }
            let (c, t) = (*counters.last().unwrap(), *timings.last().unwrap());
            counter_add(c, 3);
            counter_add(c, 4);
            timing_record(t, index_table(3), 2.0);
            timing_record(t, index_table(3), 0.0);
            // The first record past them grew the flat arrays, which now hold the slots (on a
            // platform where the word can describe them), and kept what was recorded before.
            let holds = slab::LOCAL.with(|l| (l.counters.get().holds(c), l.hists.get().holds(t)));
            if cfg!(target_pointer_width = "64") {
                assert_eq!(
                    holds,
                    (true, true),
                    "flat arrays grown past {c_len}, {h_len}"
                );
            }
            assert_eq!(Reader::new().counter(first), 1);
            assert_eq!(Reader::new().counter(c), 7);
            let g = timing_lock();
            let d = Reader::new().timing(t, 3, &g);
            drop(g);
            assert_eq!((d.count(), d.zero_count(), d.max()), (2, 1, 2.0));
            // Freed and reused, a slot past the flat array starts from zero again.
            free_slot(Kind::Counter, c);
            assert_eq!(Reader::new().counter(c), 0);
            counters.pop();
            counters
                .into_iter()
                .for_each(|s| free_slot(Kind::Counter, s));
            timings.into_iter().for_each(|s| free_slot(Kind::Timing, s));
        })
        .join()
        .unwrap();
    }
}
