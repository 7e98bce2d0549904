//! Retired slots: those of removed series, waiting until nothing can reach them.

use super::lease::Board;
use super::sync::{lock, Mutex};
use crate::descriptor::Kind;

/// The retired slots of one family.
pub(crate) struct Retired {
    slots: Mutex<Vec<u32>>,
}

impl Retired {
    pub(crate) fn new() -> Self {
        Retired {
            slots: Mutex::new(Vec::new()),
        }
    }

    /// Retires `slot`, whose series was just unlinked from its family's table (under the table's
    /// write lock: no lookup finds it any more, and no handle holds it).
    pub(crate) fn push(&self, slot: u32) {
        lock(&self.slots).push(slot);
    }

    /// Frees (with `free`) every retired slot that no lease names, while no uncached lookup
    /// is in flight; the others wait for a later call. Returns how many were freed.
    ///
    /// `free` runs after the retired list's lock is let go: freeing takes other locks (the
    /// timing lock, which a harvest holds while it waits for a family's table, whose writer
    /// may be retiring a slot).
    pub(crate) fn reclaim(&self, board: &Board, kind: Kind, free: impl FnMut(u32)) -> usize {
        let freeable: Vec<u32> = {
            let mut retired = lock(&self.slots);
            if retired.is_empty() {
                return 0;
            }
            let Some(leased) = board.leased(kind) else {
                return 0;
            };
            let (keep, free): (Vec<u32>, Vec<u32>) = retired
                .iter()
                .partition(|s| leased.binary_search(s).is_ok());
            *retired = keep;
            free
        };
        let n = freeable.len();
        freeable.into_iter().for_each(free);
        n
    }

    /// Every retired slot, for a family being dropped (nothing can record into it any more).
    pub(crate) fn take_all(&self) -> Vec<u32> {
        std::mem::take(&mut *lock(&self.slots))
    }

    /// How many slots wait.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.slots).len()
    }
}
