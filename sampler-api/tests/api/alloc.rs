//! Recording through a handle allocates nothing (after the series' first record in a thread).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use sampler_api::{Descriptor, Registry};

/// Counts allocations made by the current thread only, so tests running in parallel on other
/// threads do not disturb the count.
struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: defers to the system allocator; the thread-local counter is a `const` initialised
// `Cell` without a destructor, so touching it never allocates or recurses.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations(f: impl FnOnce()) -> u64 {
    let before = ALLOCS.with(|c| c.get());
    f();
    ALLOCS.with(|c| c.get()) - before
}

static C: Descriptor = Descriptor::counter("alloc.counter", "1", "");
static G: Descriptor = Descriptor::gauge("alloc.gauge", "1", "");
static T: Descriptor = Descriptor::timing("alloc.timing", "s", "");
static F: Descriptor = Descriptor::counter("alloc.family", "1", "");

#[test]
fn recording_through_handles_allocates_nothing() {
    let registry = Registry::new();
    let counter = registry.counter(&C);
    let gauge = registry.gauge(&G);
    let timing = registry.timing(&T);
    let family = registry.counter_family(&F, &["method", "route", "status"]);
    let member = family.get(&["GET", "/a", "200"]);
    // First use in this thread: slabs, chunks and histogram groups are made here.
    let values = [0.0, 1e-6, 0.003, 0.25, 1.0, 42.0, 1e4];
    counter.inc();
    gauge.set(1.0);
    member.inc();
    family.inc(&["GET", "/a", "200"]);
    for v in values {
        timing.record(v);
    }
    let n = allocations(|| {
        for i in 0..10_000u64 {
            counter.inc();
            counter.add(i);
            gauge.set(i as f64);
            gauge.add(1.0);
            member.add(2);
            family.inc(&["GET", "/a", "200"]);
            timing.record(values[i as usize % values.len()]);
            timing.record_duration(std::time::Duration::from_micros(i % 500 + 1));
        }
    });
    assert_eq!(n, 0, "recording allocated {n} times");
    assert_eq!(counter.value(), 1 + 10_000 + (0..10_000u64).sum::<u64>());
}
