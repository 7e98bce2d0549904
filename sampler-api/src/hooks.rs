//! Test-only hook points at the windows of the slot lifecycle, so that tests can stop a
//! recording thread exactly there and run a removal, harvests and new series meanwhile
//! (`lifetime_tests.rs`); and a switch that makes slot allocation fail, as when slots run out.
//!
//! Outside `cfg(test)` every hook point is an empty inline function: nothing is compiled in.

/// A window of the slot lifecycle where a thread can be stopped.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Point {
    /// A record by label values has its slot and is about to write into it.
    AfterLookup,
    /// `Handle::new` has found its entry and holds it.
    HandleAfterLookup,
    /// A timing record has loaded this thread's histogram and is about to write into it.
    TimingAfterHistLoad,
    /// A family being dropped has read a lease that names one of its slots and is about to
    /// clear it (`Board::clear_leases_of`).
    LeaseClearBeforeSwap,
    /// A reader has loaded a slab's flat-array word and is about to read a cell through it.
    ReadAfterFlatLoad,
    /// A thread growing its flat array has copied the cells into the new one and is about to
    /// make it current.
    GrowAfterCopy,
}

#[cfg(test)]
pub(crate) use imp::{clear, set, set_slots_exhausted};

/// A hook point: calls this thread's hook in tests, nothing otherwise.
#[inline(always)]
pub(crate) fn at(_p: Point) {
    #[cfg(test)]
    imp::at(_p);
}

/// Whether slot allocation fails for this thread (tests: slots have run out).
#[inline(always)]
pub(crate) fn slots_exhausted() -> bool {
    #[cfg(test)]
    return imp::EXHAUSTED.with(|e| e.get());
    #[cfg(not(test))]
    false
}

#[cfg(test)]
mod imp {
    use super::Point;
    use std::cell::{Cell, RefCell};

    type Hook = Box<dyn FnMut(Point)>;

    thread_local! {
        static HOOK: RefCell<Option<Hook>> = const { RefCell::new(None) };
        pub(super) static EXHAUSTED: Cell<bool> = const { Cell::new(false) };
    }

    pub(crate) fn at(p: Point) {
        // Taken out while it runs, so that records made by the hook itself pass straight on.
        let hook = HOOK.try_with(|h| h.borrow_mut().take()).ok().flatten();
        if let Some(mut f) = hook {
            f(p);
            let _ = HOOK.try_with(|h| {
                let mut h = h.borrow_mut();
                if h.is_none() {
                    *h = Some(f);
                }
            });
        }
    }

    /// Runs `f` at every hook point this thread passes, until [`clear`].
    pub(crate) fn set(f: impl FnMut(Point) + 'static) {
        HOOK.with(|h| *h.borrow_mut() = Some(Box::new(f)));
    }

    pub(crate) fn clear() {
        HOOK.with(|h| *h.borrow_mut() = None);
    }

    /// Makes every slot allocation by this thread fail (`true`) or work again.
    pub(crate) fn set_slots_exhausted(yes: bool) {
        EXHAUSTED.with(|e| e.set(yes));
    }
}
