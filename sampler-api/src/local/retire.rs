//! Flat arrays a slab has outgrown, freed once no reader can still hold one.
//!
//! A thread replaces its slab's flat array by a longer one (`storage::Cells::reach`) while
//! readers on other threads (the harvest, a counter's `value`) may have loaded the old array's
//! word and be about to read a cell of it. A reader holds a [`ReadGuard`] for as long as it
//! reads cells; an outgrown array goes on a list and is freed only when no guard is held
//! (tried without waiting when an array is retired and when a guard is dropped). A reader that
//! takes its guard after the array was taken off the list loads the new word: the replacement
//! stored it before retiring the old one, and the free happens under the write lock that the
//! reader's guard then waits behind.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Mutex, RwLock, RwLockReadGuard};

use super::lock;

/// Held shared by readers; taken exclusively, without waiting, to free what was retired.
static READERS: RwLock<()> = RwLock::new(());

/// Arrays outgrown and not freed yet, with their addresses.
static RETIRED: Mutex<Vec<(usize, Box<dyn Send>)>> = Mutex::new(Vec::new());

/// Whether `RETIRED` may hold an array: set and cleared under its lock, read without it, so
/// that dropping a guard costs no lock when nothing waits (a stale `false` only delays a free
/// to the next guard or retirement).
static PENDING: AtomicBool = AtomicBool::new(false);

/// Proof that outgrown arrays are not freed: held while cells of other threads' slabs are read.
pub(crate) struct ReadGuard(Option<RwLockReadGuard<'static, ()>>);

impl ReadGuard {
    pub(super) fn new() -> Self {
        ReadGuard(Some(READERS.read().unwrap_or_else(|e| e.into_inner())))
    }
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        drop(self.0.take());
        free_retired();
    }
}

/// Puts an outgrown array (at `addr`) on the list, and frees the list if no reader holds a
/// guard.
pub(super) fn retire(addr: usize, array: Box<dyn Send>) {
    {
        let mut retired = lock(&RETIRED);
        retired.push((addr, array));
        PENDING.store(true, Relaxed);
    }
    free_retired();
}

/// Frees every retired array if no reader holds a guard; otherwise leaves them for the last
/// guard to be dropped.
fn free_retired() {
    if !PENDING.load(Relaxed) {
        return;
    }
    let Ok(_no_reader) = READERS.try_write() else {
        return;
    };
    let freed = {
        let mut retired = lock(&RETIRED);
        PENDING.store(false, Relaxed);
        std::mem::take(&mut *retired)
    };
    drop(freed);
}

/// Whether the outgrown array at `addr` waits to be freed (arrays grow on 64-bit targets).
#[cfg(all(test, target_pointer_width = "64"))]
pub(super) fn is_retired(addr: usize) -> bool {
    lock(&RETIRED).iter().any(|(a, _)| *a == addr)
}
