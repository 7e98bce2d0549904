//! The slot lifecycle, in one place: how a series' slot is handed out, reached by recorders,
//! retired when the series goes, and freed once no recorder can reach it (ARCHITECTURE.md,
//! "Slot lifetimes", has the protocol and its invariants).
//!
//! A recorder reaches a slot in one of three ways, each of which the lifecycle can see:
//! - a **handle**, which holds its entry's handle count, taken under the family table's lock;
//!   a removal or expiry (under the write lock) never takes a held entry;
//! - a **lease**: the line of its thread's lookup cache that holds the slot names it in the
//!   thread's lease table, written while the family table's lock was held;
//! - a **pin**: a lookup by label values that no cache line covers counts itself in flight from
//!   before it takes the family table's lock until after its record.
//!
//! Removing a series (or expiring it) unlinks its entry under the write lock and then
//! [retires](Retired::push) its slot; a family's harvest [frees](Retired::reclaim) the retired
//! slots that no lease names while no pin is in flight: only then are the slot's cells reset
//! (a timing's histograms dropped) and its number handed out again.

mod lease;
mod retire;
mod slots;
pub(crate) mod sync;

#[cfg(all(test, loom))]
mod loom_model;

pub(crate) use lease::{board, LeaseTable, Pin};
pub(crate) use retire::Retired;
pub(crate) use slots::{slots, Slots, CHUNK, DIR, SINK};

use crate::descriptor::Kind;
use crate::local;

/// Frees `slot` of `kind`: resets its memory in every thread's slab and hands its number out
/// again. Only for a slot nothing can reach: retired and unleased with no pin in flight
/// ([`Retired::reclaim`]), or owned by a family being dropped. The sink is never freed.
pub(crate) fn free_slot(kind: Kind, slot: u32) {
    if slot == SINK {
        return;
    }
    match kind {
        Kind::Counter => local::zero_counter(slot),
        Kind::Gauge => local::reset_gauge(slot),
        Kind::Timing => local::drop_hists(slot),
    }
    slots(kind).release(slot);
}
