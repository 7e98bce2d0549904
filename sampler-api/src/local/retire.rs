//! Flat arrays a slab has outgrown, freed once no reader can still hold one.
//!
//! A thread replaces its slab's flat array by a longer one (`storage::Cells::reach`) while
//! readers on other threads (the harvest, a counter's `value`) may have loaded the old array's
//! word and be about to read a cell of it. A reader holds a [`ReadGuard`] for as long as it
//! reads cells: the guard counts it, under one lock with the list of outgrown arrays. An
//! outgrown array goes on the list and the list is freed only when the count is zero (checked
//! when an array is retired and when a guard is dropped). A reader counted after the list was
//! taken loads the new word: the replacement stored it before retiring the old array, and the
//! reader's count comes after the retirement through the lock.
//!
//! (A count under a mutex rather than a reader-writer lock: a thread may hold two guards at
//! once, and a reader-writer lock may panic or deadlock when its holder reads again.)

use std::sync::Mutex;

use super::lock;

/// Readers that hold a guard, and the arrays outgrown and not freed yet (with their addresses).
struct State {
    readers: usize,
    retired: Vec<(usize, Box<dyn Send>)>,
}

static STATE: Mutex<State> = Mutex::new(State {
    readers: 0,
    retired: Vec::new(),
});

/// Proof that outgrown arrays are not freed: held while cells of other threads' slabs are read.
pub(crate) struct ReadGuard(());

impl ReadGuard {
    pub(super) fn new() -> Self {
        lock(&STATE).readers += 1;
        ReadGuard(())
    }
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        let freed = {
            let mut state = lock(&STATE);
            state.readers -= 1;
            take_if_unread(&mut state)
        };
        drop(freed);
    }
}

/// Puts an outgrown array (at `addr`) on the list, and frees the list if no reader holds a
/// guard.
pub(super) fn retire(addr: usize, array: Box<dyn Send>) {
    let freed = {
        let mut state = lock(&STATE);
        state.retired.push((addr, array));
        take_if_unread(&mut state)
    };
    drop(freed);
}

/// The retired arrays, taken off the list, if no reader holds a guard (then none can reach
/// them: a reader counted later loads the current words); nothing otherwise.
fn take_if_unread(state: &mut State) -> Vec<(usize, Box<dyn Send>)> {
    if state.readers == 0 {
        std::mem::take(&mut state.retired)
    } else {
        Vec::new()
    }
}

/// Whether the outgrown array at `addr` waits to be freed.
#[cfg(test)]
pub(super) fn is_retired(addr: usize) -> bool {
    lock(&STATE).retired.iter().any(|(a, _)| *a == addr)
}

#[cfg(test)]
mod tests {
    use super::{is_retired, retire, ReadGuard};

    /// A thread may hold two guards at once (a reader inside a reader); an array retired
    /// meanwhile waits until the last of them is dropped.
    #[test]
    fn an_array_retired_under_nested_guards_waits_for_the_outer_one() {
        let outer = ReadGuard::new();
        let inner = ReadGuard::new();
        let array: Box<[u64]> = vec![7; 64].into_boxed_slice();
        let addr = array.as_ptr() as usize;
        retire(addr, Box::new(array));
        drop(inner);
        assert!(is_retired(addr), "freed while the outer guard was held");
        drop(outer);
    }
}
