//! Recording, side by side: counter increment, gauge set, timing record and a 3-label family
//! lookup + increment, on one thread and (where contention matters) on two threads sharing
//! one handle. Each benchmark's time is per operation per thread.

use std::hint::black_box;
use std::sync::atomic::Ordering::Relaxed;

use criterion::measurement::WallTime;
use criterion::{criterion_group, BenchmarkGroup, Criterion};
use metrics::{Key, Level, Metadata, Recorder};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::KeyValue;
use sampler_api::{Descriptor, Registry};
use sampler_benches::floor::record_local;
use sampler_benches::report::{PLAIN_FLOOR, TIMING_FLOOR};
use sampler_benches::series::{floor_cell, otel_provider, MetricsRecorder};
use sampler_benches::{
    criterion_dir_of_exe, parallel_stats, run_threads, timing_values, wait_for_idle_cpus,
    LOOKUP_KEYS, LOOKUP_VALUES,
};
use std::time::Duration;

static REQUESTS: Descriptor = Descriptor::counter("bench.requests", "1", "requests");
static LEVEL: Descriptor = Descriptor::gauge("bench.level", "1", "a level");
static LATENCY: Descriptor = Descriptor::timing("bench.latency", "s", "latency");
static BY_ROUTE: Descriptor = Descriptor::counter("bench.requests.by_route", "1", "requests");

const META: Metadata<'static> = Metadata::new("bench", Level::INFO, None);

/// Times `work(iters)` on `threads` threads sharing whatever it captures.
fn bench<F>(g: &mut BenchmarkGroup<'_, WallTime>, g_name: &str, id: &str, threads: usize, work: F)
where
    F: Fn(u64) + Sync,
{
    bench_reset(g, g_name, id, threads, work, || {});
}

/// As [`bench`], calling `reset` after each timed run (outside the timing).
fn bench_reset<F, R>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    g_name: &str,
    id: &str,
    threads: usize,
    work: F,
    reset: R,
) where
    F: Fn(u64) + Sync,
    R: Fn(),
{
    if !wait_for_idle_cpus(Duration::from_secs(60)) {
        eprintln!("{id}: the machine stayed busy for 60 s; measuring anyway");
    }
    let (retried0, unclean0) = parallel_stats();
    g.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let took = run_threads(threads, iters, &work);
            reset();
            took
        })
    });
    let (retried1, unclean1) = parallel_stats();
    note_parallel(g_name, id, retried1 - retried0, unclean1 - unclean0);
}

/// Leaves `parallel.txt` beside criterion's estimates for this benchmark, so that the report
/// can flag a result some of whose runs never had a core per thread.
fn note_parallel(group: &str, id: &str, retried: u64, unclean: u64) {
    if unclean > 0 {
        eprintln!("{group}/{id}: {unclean} runs without a core per thread (time too high)");
    }
    let Some(dir) = criterion_dir_of_exe().map(|d| d.join(group).join(id)) else {
        return;
    };
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(
            dir.join("parallel.txt"),
            format!("retried {retried}\nunclean {unclean}\n"),
        );
    }
}

fn counter_inc(c: &mut Criterion) {
    for threads in [1, 2] {
        let name = format!("counter_inc_{threads}t");
        let mut g = c.benchmark_group(&name);

        let cell = floor_cell();
        bench(&mut g, &name, "floor_atomic", threads, |n| {
            for _ in 0..n {
                black_box(&cell.0).fetch_add(1, Relaxed);
            }
        });

        if threads == 1 {
            // What any increment that writes memory costs at least in this loop: a plain load
            // and store to one cell (not atomic as a whole, so only meaningful on one thread).
            let cell = floor_cell();
            bench(&mut g, &name, PLAIN_FLOOR, threads, |n| {
                for _ in 0..n {
                    let c = black_box(&cell.0);
                    c.store(c.load(Relaxed).wrapping_add(1), Relaxed);
                }
            });
        }

        let registry = Registry::new();
        let ours = registry.counter(&REQUESTS);
        bench(&mut g, &name, "sampler", threads, |n| {
            for _ in 0..n {
                black_box(&ours).inc();
            }
        });

        let recorder = MetricsRecorder::default();
        let m = recorder.register_counter(&Key::from_static_name("bench.requests"), &META);
        bench(&mut g, &name, "metrics", threads, |n| {
            for _ in 0..n {
                black_box(&m).increment(1);
            }
        });

        let pc = prometheus_client::metrics::counter::Counter::<u64>::default();
        bench(&mut g, &name, "prometheus_client", threads, |n| {
            for _ in 0..n {
                black_box(&pc).inc();
            }
        });

        let tikv = prometheus::IntCounter::new("bench_requests", "requests").expect("valid");
        bench(&mut g, &name, "prometheus", threads, |n| {
            for _ in 0..n {
                black_box(&tikv).inc();
            }
        });

        let (provider, _reader) = otel_provider(2000);
        let otel = provider
            .meter("bench")
            .u64_counter("bench.requests")
            .build();
        bench(&mut g, &name, "opentelemetry", threads, |n| {
            for _ in 0..n {
                black_box(&otel).add(1, &[]);
            }
        });

        g.finish();
    }
}

fn gauge_set(c: &mut Criterion) {
    let name = "gauge_set_1t".to_owned();
    let mut g = c.benchmark_group(&name);

    let cell = floor_cell();
    bench(&mut g, &name, "floor_atomic", 1, |n| {
        for i in 0..n {
            black_box(&cell.0).store(black_box(i as f64).to_bits(), Relaxed);
        }
    });

    let registry = Registry::new();
    let ours = registry.gauge(&LEVEL);
    bench(&mut g, &name, "sampler", 1, |n| {
        for i in 0..n {
            black_box(&ours).set(black_box(i as f64));
        }
    });

    let recorder = MetricsRecorder::default();
    let m = recorder.register_gauge(&Key::from_static_name("bench.level"), &META);
    bench(&mut g, &name, "metrics", 1, |n| {
        for i in 0..n {
            black_box(&m).set(black_box(i as f64));
        }
    });

    let pc =
        prometheus_client::metrics::gauge::Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    bench(&mut g, &name, "prometheus_client", 1, |n| {
        for i in 0..n {
            black_box(&pc).set(black_box(i as f64));
        }
    });

    let tikv = prometheus::Gauge::new("bench_level", "a level").expect("valid");
    bench(&mut g, &name, "prometheus", 1, |n| {
        for i in 0..n {
            black_box(&tikv).set(black_box(i as f64));
        }
    });

    let (provider, _reader) = otel_provider(2000);
    let otel = provider.meter("bench").f64_gauge("bench.level").build();
    bench(&mut g, &name, "opentelemetry", 1, |n| {
        for i in 0..n {
            black_box(&otel).record(black_box(i as f64), &[]);
        }
    });

    g.finish();
}

fn timing_record(c: &mut Criterion) {
    let values = timing_values();
    let v = &values;
    // 16 exponential buckets from 100 µs (to about 3.3 s) for the fixed-bucket histograms.
    let bounds: Vec<f64> = (0..16).map(|i| 1e-4 * 2f64.powi(i)).collect();
    for threads in [1, 2] {
        let name = format!("timing_record_{threads}t");
        let mut g = c.benchmark_group(&name);

        if threads == 1 {
            // The least a record can cost: a thread-local histogram with every bucket in
            // place, found with no lookup (see `sampler_benches::floor`).
            bench(&mut g, &name, TIMING_FLOOR, threads, |n| {
                for i in 0..n {
                    // Hides a reference from the optimiser as the others' `black_box(&handle)`.
                    black_box(&n);
                    record_local(v[i as usize & 1023]);
                }
            });
        }

        let registry = Registry::new();
        let ours = registry.timing(&LATENCY);
        bench(&mut g, &name, "sampler", threads, |n| {
            for i in 0..n {
                black_box(&ours).record(v[i as usize & 1023]);
            }
        });

        // An atomic bucket grows with every record until drained, as an exporter would.
        let recorder = MetricsRecorder::default();
        let key = Key::from_static_name("bench.latency");
        let m = recorder.register_histogram(&key, &META);
        let drain = || {
            if let Some(h) = recorder.registry().get_histogram(&key) {
                h.clear();
            }
        };
        bench_reset(
            &mut g,
            &name,
            "metrics",
            threads,
            |n| {
                for i in 0..n {
                    black_box(&m).record(v[i as usize & 1023]);
                }
            },
            drain,
        );

        let pc = prometheus_client::metrics::histogram::Histogram::new(bounds.iter().copied());
        bench(&mut g, &name, "prometheus_client", threads, |n| {
            for i in 0..n {
                black_box(&pc).observe(v[i as usize & 1023]);
            }
        });

        let tikv = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new("bench_latency", "latency").buckets(bounds.clone()),
        )
        .expect("valid");
        bench(&mut g, &name, "prometheus", threads, |n| {
            for i in 0..n {
                black_box(&tikv).observe(v[i as usize & 1023]);
            }
        });

        let (provider, _reader) = otel_provider(2000);
        let otel = provider
            .meter("bench")
            .f64_histogram("bench.latency")
            .with_boundaries(bounds.clone())
            .build();
        bench(&mut g, &name, "opentelemetry", threads, |n| {
            for i in 0..n {
                black_box(&otel).record(v[i as usize & 1023], &[]);
            }
        });

        g.finish();
    }
}

fn family_inc(c: &mut Criterion) {
    for threads in [1, 2] {
        let name = format!("family_inc_{threads}t");
        let mut g = c.benchmark_group(&name);

        let registry = Registry::new();
        let ours = registry.counter_family(&BY_ROUTE, &LOOKUP_KEYS);
        bench(&mut g, &name, "sampler", threads, |n| {
            for _ in 0..n {
                black_box(&ours).inc(black_box(&LOOKUP_VALUES));
            }
        });

        // The `counter!` macro with literal labels: a static key, the recorder's registry
        // lookup, then the increment.
        let recorder = MetricsRecorder::default();
        bench(&mut g, &name, "metrics", threads, |n| {
            metrics::with_local_recorder(&recorder, || {
                for _ in 0..n {
                    metrics::counter!(
                        "bench.requests.by_route",
                        "method" => "GET",
                        "route" => "/api/v1/items",
                        "status" => "200"
                    )
                    .increment(1);
                }
            })
        });

        let pc = prometheus_client::metrics::family::Family::<
            [(&'static str, &'static str); 3],
            prometheus_client::metrics::counter::Counter,
        >::default();
        let labels = [
            (LOOKUP_KEYS[0], LOOKUP_VALUES[0]),
            (LOOKUP_KEYS[1], LOOKUP_VALUES[1]),
            (LOOKUP_KEYS[2], LOOKUP_VALUES[2]),
        ];
        bench(&mut g, &name, "prometheus_client", threads, |n| {
            for _ in 0..n {
                black_box(&pc).get_or_create(black_box(&labels)).inc();
            }
        });

        let tikv = prometheus::IntCounterVec::new(
            prometheus::Opts::new("bench_requests_by_route", "requests"),
            &LOOKUP_KEYS,
        )
        .expect("valid");
        bench(&mut g, &name, "prometheus", threads, |n| {
            for _ in 0..n {
                black_box(&tikv)
                    .with_label_values(black_box(&LOOKUP_VALUES))
                    .inc();
            }
        });

        let (provider, _reader) = otel_provider(2000);
        let otel = provider
            .meter("bench")
            .u64_counter("bench.requests.by_route")
            .build();
        let attrs = [
            KeyValue::new(LOOKUP_KEYS[0], LOOKUP_VALUES[0]),
            KeyValue::new(LOOKUP_KEYS[1], LOOKUP_VALUES[1]),
            KeyValue::new(LOOKUP_KEYS[2], LOOKUP_VALUES[2]),
        ];
        bench(&mut g, &name, "opentelemetry", threads, |n| {
            for _ in 0..n {
                black_box(&otel).add(1, black_box(&attrs));
            }
        });

        g.finish();
    }
}

criterion_group! {
    name = record;
    config = sampler_benches::criterion();
    targets = counter_inc, gauge_set, timing_record, family_inc
}

fn main() {
    record();
    Criterion::default().configure_from_args().final_summary();
    sampler_benches::print_parallel_stats();
}
