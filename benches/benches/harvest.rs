//! Harvesting N labelled counters, side by side: each library collects every series of a
//! family of 10k and 100k two-label counters the way it does for export (`harvest_*`), and
//! goes from the recorded counters to Prometheus text bytes, what a scrape waits for
//! (`expose_*`). See `sampler_benches::series` for what each library's harvest and
//! exposition are.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use sampler_benches::series::{Library, SamplerSeries};

/// The id of our encoding alone (a snapshot harvested once, encoded again each time).
const ENCODE_ONLY: &str = "sampler_encode_only";

fn harvest(c: &mut Criterion) {
    for (n, name) in [(10_000, "harvest_10k"), (100_000, "harvest_100k")] {
        let mut g = c.benchmark_group(name);
        g.sample_size(10);
        g.measurement_time(Duration::from_secs(3));
        for lib in Library::ALL {
            let mut family = lib.build(n);
            // Libraries that can only encode are timed in the exposition groups.
            let Some(seen) = family.harvest() else {
                continue;
            };
            assert_eq!(seen, n, "{} harvested {seen} of {n} series", lib.name());
            // Another process's burst of work would land inside the measurement.
            let _ = sampler_benches::wait_for_idle_cpus(sampler_benches::idle_wait());
            g.bench_function(lib.name(), |b| b.iter(|| black_box(family.harvest())));
        }
        g.finish();
    }
}

/// Sample lines (not comments, not blank) in a text exposition.
fn samples(text: &[u8]) -> usize {
    text.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty() && l[0] != b'#')
        .count()
}

fn expose(c: &mut Criterion) {
    for (n, name) in [(10_000, "expose_10k"), (100_000, "expose_100k")] {
        let mut g = c.benchmark_group(name);
        g.sample_size(10);
        g.measurement_time(Duration::from_secs(3));
        for lib in Library::ALL {
            let mut family = lib.build_exposed(n);
            let Some(text) = family.expose() else {
                continue;
            };
            assert_eq!(samples(text), n, "{} exposed a wrong count", lib.name());
            family.settle();
            let _ = sampler_benches::wait_for_idle_cpus(sampler_benches::idle_wait());
            // What a scrape waits for: `settle` (ours: dropping the snapshot, which the
            // exporter does after answering) is left out of the time.
            g.bench_function(lib.name(), |b| {
                b.iter_custom(|iters| {
                    let mut took = Duration::ZERO;
                    for _ in 0..iters {
                        let started = Instant::now();
                        black_box(family.expose().map(<[u8]>::len));
                        took += started.elapsed();
                        family.settle();
                    }
                    took
                })
            });
        }
        let mut ours = SamplerSeries::new(n);
        assert_eq!(samples(ours.encode_last()), n);
        let _ = sampler_benches::wait_for_idle_cpus(sampler_benches::idle_wait());
        g.bench_function(ENCODE_ONLY, |b| {
            b.iter(|| black_box(ours.encode_last().len()))
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = sampler_benches::criterion();
    targets = harvest, expose
}
criterion_main!(benches);
