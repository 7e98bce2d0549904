//! The counting allocator's cost per call: an allocation and free of 64 bytes straight from
//! `System`, through `CountingAllocator` with no scope open, and inside an `Account` scope;
//! and the cost of opening and closing a scope (paid once per poll of a tracked future).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use sampler_adapter_alloc::{Account, CountingAllocator};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator::system();

fn alloc_free(c: &mut Criterion) {
    let layout = Layout::from_size_align(64, 8).expect("layout");
    let mut group = c.benchmark_group("alloc_free_64B");
    group.bench_function("system", |b| {
        b.iter(|| {
            // SAFETY: a non-zero-size layout; the pointer is freed with the same layout.
            unsafe {
                let p = System.alloc(black_box(layout));
                System.dealloc(black_box(p), layout);
            }
        })
    });
    group.bench_function("counting_no_scope", |b| {
        b.iter(|| {
            // SAFETY: as above, through the counting allocator.
            unsafe {
                let p = ALLOC.alloc(black_box(layout));
                ALLOC.dealloc(black_box(p), layout);
            }
        })
    });
    let account = Account::new();
    group.bench_function("counting_in_scope", |b| {
        let _scope = account.enter();
        b.iter(|| {
            // SAFETY: as above, through the counting allocator.
            unsafe {
                let p = ALLOC.alloc(black_box(layout));
                ALLOC.dealloc(black_box(p), layout);
            }
        })
    });
    group.finish();
    c.bench_function("scope_enter_exit", |b| {
        b.iter(|| drop(black_box(account.enter())))
    });
}

criterion_group!(benches, alloc_free);
criterion_main!(benches);
