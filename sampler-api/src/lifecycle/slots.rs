//! Slot numbers: handed out, taken back, and the sink that is never either.

use super::sync::{lock, Mutex};
use crate::descriptor::Kind;

/// Cells per chunk of a slab's two-level arrays (see `local::storage`).
pub(crate) const CHUNK: usize = 1024;
/// Chunks per directory: 1024 × 1024 = 1,048,576 slots of each kind.
pub(crate) const DIR: usize = 1024;
/// Slots of each kind a process can hold at once (the sink included).
pub(crate) const MAX_SLOTS: u32 = (CHUNK * DIR) as u32;

/// The sink: slot 0 of each kind, never handed out, freed or read. An overflow series that
/// finds no slot left records here, so that it never borrows a slot another series owns.
pub(crate) const SINK: u32 = 0;

/// Hands out slot numbers of one kind and takes them back.
pub(crate) struct Slots {
    /// One more than the highest slot ever handed out, and the slots given back.
    inner: Mutex<(u32, Vec<u32>)>,
}

impl Slots {
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        Slots {
            inner: Mutex::new((SINK + 1, Vec::new())),
        }
    }

    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        Slots {
            inner: Mutex::new((SINK + 1, Vec::new())),
        }
    }

    /// One more than the highest slot ever handed out.
    pub(crate) fn high_water(&self) -> u32 {
        lock(&self.inner).0
    }

    /// A free slot, or `None` when all are taken.
    pub(crate) fn alloc(&self) -> Option<u32> {
        if crate::hooks::slots_exhausted() {
            return None;
        }
        let mut g = lock(&self.inner);
        if let Some(s) = g.1.pop() {
            return Some(s);
        }
        if g.0 >= MAX_SLOTS {
            return None;
        }
        g.0 += 1;
        Some(g.0 - 1)
    }

    /// Takes `slot` back; only [`super::free_slot`] calls this, once nothing can reach it.
    pub(super) fn release(&self, slot: u32) {
        debug_assert_ne!(slot, SINK, "the sink is never freed");
        lock(&self.inner).1.push(slot);
    }
}

#[cfg(not(loom))]
static COUNTER_SLOTS: Slots = Slots::new();
#[cfg(not(loom))]
static GAUGE_SLOTS: Slots = Slots::new();
#[cfg(not(loom))]
static TIMING_SLOTS: Slots = Slots::new();

#[cfg(loom)]
loom::lazy_static! {
    static ref COUNTER_SLOTS: Slots = Slots::new();
    static ref GAUGE_SLOTS: Slots = Slots::new();
    static ref TIMING_SLOTS: Slots = Slots::new();
}

/// The allocator of slots of `kind`.
pub(crate) fn slots(kind: Kind) -> &'static Slots {
    match kind {
        Kind::Counter => &COUNTER_SLOTS,
        Kind::Gauge => &GAUGE_SLOTS,
        Kind::Timing => &TIMING_SLOTS,
    }
}
