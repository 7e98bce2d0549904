//! Harvesting N labelled counters, side by side: each library collects every series of a
//! family of 10k and 100k two-label counters the way it does for export (see
//! `sampler_benches::series` for what each library's harvest is).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use sampler_benches::series::Library;

fn harvest(c: &mut Criterion) {
    for (n, name) in [(10_000, "harvest_10k"), (100_000, "harvest_100k")] {
        let mut g = c.benchmark_group(name);
        g.sample_size(10);
        g.measurement_time(Duration::from_secs(3));
        for lib in Library::ALL {
            let mut family = lib.build(n);
            let seen = family.harvest();
            assert_eq!(seen, n, "{} harvested {seen} of {n} series", lib.name());
            // Another process's burst of work would land inside the measurement.
            let _ = sampler_benches::wait_for_idle_cpus(Duration::from_secs(60));
            g.bench_function(lib.name(), |b| b.iter(|| black_box(family.harvest())));
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = sampler_benches::criterion();
    targets = harvest
}
criterion_main!(benches);
