//! A driver for profilers: looks up SETS three-label sets of one counter family in random
//! order (the sets and order of the `lookup_*` benches), N times on each of THREADS threads,
//! after a warm-up that looks each set up eight times, and prints each thread's time per
//! lookup + increment. LIBRARY is `sampler` (the default), `fastmetrics`, or `thread-map`: each
//! thread's own `std` `HashMap` from the label values to a count, which shares nothing between
//! threads (what a service can write for itself, and a control for how the 2-thread time of a
//! lookup that shares nothing moves on this machine).
//!
//! ```sh
//! cargo build --release -p sampler-benches --example lookup_profile
//! target/release/examples/lookup_profile 10000 10000000 2
//! # instructions per lookup: Ir at N = 300,000 less Ir at N = 100,000, over 200,000
//! valgrind --tool=callgrind target/release/examples/lookup_profile 100 100000 1
//! # the same lookups through fastmetrics
//! target/release/examples/lookup_profile 10000 10000000 1 fastmetrics
//! # and through each thread's own map
//! target/release/examples/lookup_profile 10000 10000000 2 thread-map
//! ```

use std::cell::RefCell;
use std::collections::HashMap;

use sampler_api::{Descriptor, FamilyOptions, Registry};
use sampler_benches::{
    lookup_order, lookup_sets, FastLookupFamily, FastLookupLabels, LOOKUP_KEYS, LOOKUP_ORDER_LEN,
};

static BY_ROUTE: Descriptor = Descriptor::counter("profile.requests", "1", "requests");

fn main() {
    let mut args = std::env::args().skip(1);
    let mut arg = |default: usize| args.next().and_then(|a| a.parse().ok()).unwrap_or(default);
    let (sets, n, threads) = (arg(100), arg(100_000), arg(1));
    let library = std::env::args().nth(4).unwrap_or_else(|| "sampler".into());
    let values = lookup_sets(sets);
    let order = lookup_order(sets);
    match library.as_str() {
        "sampler" => {
            let registry = Registry::new();
            let family = registry.counter_family_with(
                &BY_ROUTE,
                &LOOKUP_KEYS,
                FamilyOptions::default().limit(sets + 1),
            );
            run(&values, &order, n, threads, |v| family.inc(v));
        }
        "fastmetrics" => {
            let family = FastLookupFamily::default();
            let labels = FastLookupLabels::all(&values);
            run(&labels, &order, n, threads, |l| {
                family.with_or_new(l, |c| c.inc())
            });
        }
        "thread-map" => {
            type Counts = HashMap<[&'static str; 3], u64>;
            thread_local! {
                static COUNTS: RefCell<Counts> = RefCell::new(HashMap::new());
            }
            run(&values, &order, n, threads, |v| {
                COUNTS.with(|counts| *counts.borrow_mut().entry(*v).or_insert(0) += 1)
            });
        }
        other => panic!("LIBRARY is sampler, fastmetrics or thread-map, not {other:?}"),
    }
}

/// Warms up, then times `n` lookups + increments on each of `threads` threads; `values` holds
/// the label sets in the form the library takes them.
fn run<T: Sync>(values: &[T], order: &[u32], n: usize, threads: usize, inc: impl Fn(&T) + Sync) {
    let sets = values.len();
    std::thread::scope(|s| {
        for t in 0..threads {
            let inc = &inc;
            s.spawn(move || {
                for _ in 0..8 {
                    values.iter().for_each(inc);
                    order.iter().for_each(|&k| inc(&values[k as usize]));
                }
                let started = std::time::Instant::now();
                for i in 0..n {
                    let k = order[(i + t * 30_011) & (LOOKUP_ORDER_LEN - 1)] as usize;
                    inc(std::hint::black_box(&values[k]));
                }
                let each = started.elapsed().as_nanos() as f64 / n.max(1) as f64;
                println!("thread {t}: {sets} sets, {n} lookups, {each:.1} ns each");
            });
        }
    });
}
