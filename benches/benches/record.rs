//! Recording, side by side: counter increment, gauge set, timing record, on one thread and
//! (where contention matters) on two threads sharing one handle; and a 3-label family lookup
//! and increment over 1, 100 and 10,000 label sets in random order, on one and two threads.
//! Each benchmark's time is per operation per thread.

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use criterion::measurement::WallTime;
use criterion::{criterion_group, BenchmarkGroup, Criterion};
use metrics::{Key, Level, Metadata, Recorder};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::KeyValue;
use sampler_api::{Descriptor, Registry};
use sampler_benches::floor::record_local;
use sampler_benches::measured_labels::{MeasuredLookupLabels, MeasuredLookupSet};
use sampler_benches::report::{HANDLE_FLOOR, PLAIN_FLOOR, TIMING_FLOOR};
use sampler_benches::series::{floor_cell, otel_provider, MetricsRecorder};
use sampler_benches::{
    criterion_dir_of_exe, lookup_order, lookup_sets, parallel_stats, timing_values,
    wait_for_idle_cpus, with_runner, FastLookupFamily, FastLookupLabels, LOOKUP_KEYS,
    LOOKUP_ORDER_LEN, LOOKUP_SET_COUNTS,
};

static REQUESTS: Descriptor = Descriptor::counter("bench.requests", "1", "requests");
static LEVEL: Descriptor = Descriptor::gauge("bench.level", "1", "a level");
static LATENCY: Descriptor = Descriptor::timing("bench.latency", "s", "latency");
static BY_ROUTE: Descriptor = Descriptor::counter("bench.requests.by_route", "1", "requests");
static LATE_REQUESTS: Descriptor = Descriptor::counter("bench.requests.late", "1", "requests");
static LATE_LATENCY: Descriptor = Descriptor::timing("bench.latency.late", "s", "latency");
static FILLER_COUNTERS: Descriptor = Descriptor::counter("bench.filler", "1", "requests");
static FILLER_TIMINGS: Descriptor = Descriptor::timing("bench.filler.latency", "s", "latency");

/// Series made between a thread's first record and the series a "late" row records into.
const LATE_AFTER: usize = 1000;

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
    if !wait_for_idle_cpus(sampler_benches::idle_wait()) {
        eprintln!("{id}: the machine stayed busy; measuring anyway");
    }
    let (retried0, unclean0) = parallel_stats();
    // The same threads run every sample of this benchmark, as a service keeps its workers.
    with_runner(threads, &work, |runner| {
        g.bench_function(id, |b| {
            b.iter_custom(|iters| {
                let took = runner.run(iters);
                reset();
                took
            })
        });
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

/// The counter floors: a relaxed `fetch_add`, and on one thread a plain load and store.
fn counter_floors(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, threads: usize) {
    let cell = floor_cell();
    bench(g, name, "floor_atomic", threads, |n| {
        for _ in 0..n {
            black_box(&cell.0).fetch_add(1, Relaxed);
        }
    });
    if threads == 1 {
        // What any increment that writes memory costs at least in this loop: a plain load
        // and store to one cell (not atomic as a whole, so only meaningful on one thread).
        let cell = floor_cell();
        bench(g, name, PLAIN_FLOOR, threads, |n| {
            for _ in 0..n {
                let c = black_box(&cell.0);
                c.store(c.load(Relaxed).wrapping_add(1), Relaxed);
            }
        });
    }
}

fn counter_inc(c: &mut Criterion) {
    for threads in [1, 2] {
        let name = format!("counter_inc_{threads}t");
        let mut g = c.benchmark_group(&name);

        counter_floors(&mut g, &name, threads);

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

        let fast = fastmetrics::metrics::counter::Counter::<u64>::default();
        bench(&mut g, &name, "fastmetrics", threads, |n| {
            for _ in 0..n {
                black_box(&fast).inc();
            }
        });

        let measured = measured::Counter::new();
        bench(&mut g, &name, "measured", threads, |n| {
            for _ in 0..n {
                black_box(&measured).inc();
            }
        });

        g.finish();
    }
}

/// Times `record(handle, n)` on the bench's own thread for a handle of a series made after that
/// thread's first record, as in a service whose threads start before most of its series exist:
/// on its first run the thread records once (`early`), then [`LATE_AFTER`] more series of the
/// same kind are made (`filler`, by label values), then the handle (`make`).
fn bench_late<T: Send + Sync>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    early: impl Fn() + Sync,
    filler: impl Fn(&str) + Sync,
    make: impl Fn() -> T + Sync,
    record: impl Fn(&T, u64) + Sync,
) {
    let handle = std::sync::OnceLock::new();
    bench(g, name, "sampler", 1, |n| {
        let h = handle.get_or_init(|| {
            early();
            (0..LATE_AFTER).for_each(|i| filler(&i.to_string()));
            make()
        });
        record(h, n);
    });
}

/// Options for the family of series made between a thread's first record and a late series.
fn filler_options() -> sampler_api::FamilyOptions {
    sampler_api::FamilyOptions::default().limit(LATE_AFTER + 1)
}

/// The counter increment into a series made after the recording thread's first record, against
/// the same floors as `counter_inc_1t`.
fn counter_inc_late(c: &mut Criterion) {
    let name = "counter_inc_late_1t".to_owned();
    let mut g = c.benchmark_group(&name);
    counter_floors(&mut g, &name, 1);
    let registry = Registry::new();
    let early = registry.counter(&REQUESTS);
    let filler = registry.counter_family_with(&FILLER_COUNTERS, &["n"], filler_options());
    bench_late(
        &mut g,
        &name,
        || early.inc(),
        |v| filler.inc(&[v]),
        || registry.counter(&LATE_REQUESTS),
        |ours, n| {
            for _ in 0..n {
                black_box(ours).inc();
            }
        },
    );
    g.finish();
}

/// The timing record into a series made after the recording thread's first record, against
/// the same floor as `timing_record_1t`.
fn timing_record_late(c: &mut Criterion) {
    let values = timing_values();
    let v = &values;
    let name = "timing_record_late_1t".to_owned();
    let mut g = c.benchmark_group(&name);
    timing_floor(&mut g, &name, v);
    let registry = Registry::new();
    let early = registry.timing(&LATENCY);
    let filler = registry.timing_family_with(&FILLER_TIMINGS, &["n"], filler_options());
    bench_late(
        &mut g,
        &name,
        || early.record(0.001),
        |l| filler.record(&[l], 0.001),
        || registry.timing(&LATE_LATENCY),
        |ours, n| {
            for i in 0..n {
                black_box(ours).record(v[i as usize & 1023]);
            }
        },
    );
    g.finish();
}

/// A handle shaped as ours: two words of family and slot, then the cell's address.
struct HandleFloor<'a> {
    _family: [usize; 2],
    cell: &'a std::sync::atomic::AtomicU64,
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

    // What any shareable handle pays at least: the cell's address loaded from the handle
    // (hidden by `black_box` as every library's handle is), then the store. Ours and
    // `prometheus` compile to exactly this loop.
    let handle = HandleFloor {
        _family: [0; 2],
        cell: &cell.0,
    };
    bench(&mut g, &name, HANDLE_FLOOR, 1, |n| {
        for i in 0..n {
            black_box(&handle)
                .cell
                .store(black_box(i as f64).to_bits(), Relaxed);
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

    let fast = fastmetrics::metrics::gauge::Gauge::<f64>::default();
    bench(&mut g, &name, "fastmetrics", 1, |n| {
        for i in 0..n {
            black_box(&fast).set(black_box(i as f64));
        }
    });

    let measured = measured::FloatGauge::new();
    bench(&mut g, &name, "measured", 1, |n| {
        for i in 0..n {
            black_box(&measured).set(black_box(i as f64));
        }
    });

    g.finish();
}

/// The timing floor, on one thread: a thread-local histogram with every bucket in place,
/// found with no lookup (see `sampler_benches::floor`).
fn timing_floor(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, v: &[f64]) {
    bench(g, name, TIMING_FLOOR, 1, |n| {
        for i in 0..n {
            // Hides a reference from the optimiser as the others' `black_box(&handle)`.
            black_box(&n);
            record_local(v[i as usize & 1023]);
        }
    });
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
            timing_floor(&mut g, &name, v);
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

        let fast = fastmetrics::metrics::histogram::Histogram::new(bounds.iter().copied());
        bench(&mut g, &name, "fastmetrics", threads, |n| {
            for i in 0..n {
                black_box(&fast).observe(v[i as usize & 1023]);
            }
        });

        let mut thresholds = [0.0; 16];
        thresholds.copy_from_slice(&bounds);
        let measured = measured::Histogram::<16>::with_metadata(
            measured::metric::histogram::Thresholds::with_buckets(thresholds),
        );
        bench(&mut g, &name, "measured", threads, |n| {
            for i in 0..n {
                black_box(&measured).observe(v[i as usize & 1023]);
            }
        });

        g.finish();
    }
}

/// Where each thread starts in the random order, so that two threads do not walk it in step.
static START: AtomicUsize = AtomicUsize::new(0);

/// Runs `op(set)` for `n` label sets taken from `order`, from a start that differs per call.
#[inline(always)]
fn in_order(order: &[u32], n: u64, mut op: impl FnMut(usize)) {
    let start = START.fetch_add(LOOKUP_ORDER_LEN / 2 + 4099, Relaxed);
    for i in 0..n as usize {
        op(order[(start + i) & (LOOKUP_ORDER_LEN - 1)] as usize);
    }
}

/// Label lookup + increment: `sets` distinct three-label sets, made before the measurement,
/// looked up by value in the same random order by every library (each library gets the
/// values in the form it takes them, built beforehand).
fn lookup(c: &mut Criterion) {
    for sets in LOOKUP_SET_COUNTS {
        let values = lookup_sets(sets);
        let order = lookup_order(sets);
        let order = &order[..];
        let values = &values[..];
        for threads in [1, 2] {
            let name = format!("lookup_{sets}_{threads}t");
            let mut g = c.benchmark_group(&name);

            let registry = Registry::new();
            let ours = registry.counter_family_with(
                &BY_ROUTE,
                &LOOKUP_KEYS,
                sampler_api::FamilyOptions::default().limit(sets + 1),
            );
            values.iter().for_each(|v| ours.inc(v));
            bench(&mut g, &name, "sampler", threads, |n| {
                in_order(order, n, |k| black_box(&ours).inc(black_box(&values[k])))
            });
            drop(ours);
            drop(registry);

            // What the `counter!` macro does with a key: the recorder's registry lookup, then
            // the increment (keys built beforehand, as the macro builds static ones).
            let recorder = MetricsRecorder::default();
            let keys: Vec<Key> = values
                .iter()
                .map(|v| {
                    let labels = LOOKUP_KEYS
                        .iter()
                        .zip(v)
                        .map(|(k, v)| metrics::Label::new(*k, *v))
                        .collect::<Vec<_>>();
                    Key::from_parts("bench.requests.by_route", labels)
                })
                .collect();
            keys.iter()
                .for_each(|k| recorder.register_counter(k, &META).increment(1));
            bench(&mut g, &name, "metrics", threads, |n| {
                in_order(order, n, |k| {
                    black_box(&recorder)
                        .register_counter(black_box(&keys[k]), &META)
                        .increment(1)
                })
            });
            drop(keys);
            drop(recorder);

            let pc = prometheus_client::metrics::family::Family::<
                [(&'static str, &'static str); 3],
                prometheus_client::metrics::counter::Counter,
            >::default();
            let labels: Vec<[(&'static str, &'static str); 3]> = values
                .iter()
                .map(|v| {
                    [
                        (LOOKUP_KEYS[0], v[0]),
                        (LOOKUP_KEYS[1], v[1]),
                        (LOOKUP_KEYS[2], v[2]),
                    ]
                })
                .collect();
            labels.iter().for_each(|l| {
                pc.get_or_create(l).inc();
            });
            bench(&mut g, &name, "prometheus_client", threads, |n| {
                in_order(order, n, |k| {
                    black_box(&pc).get_or_create(black_box(&labels[k])).inc();
                })
            });
            drop(labels);
            drop(pc);

            let tikv = prometheus::IntCounterVec::new(
                prometheus::Opts::new("bench_requests_by_route", "requests"),
                &LOOKUP_KEYS,
            )
            .expect("valid");
            values.iter().for_each(|v| tikv.with_label_values(v).inc());
            bench(&mut g, &name, "prometheus", threads, |n| {
                in_order(order, n, |k| {
                    black_box(&tikv)
                        .with_label_values(black_box(&values[k]))
                        .inc()
                })
            });
            drop(tikv);

            let (provider, _reader) = otel_provider(sets + 1);
            let otel = provider
                .meter("bench")
                .u64_counter("bench.requests.by_route")
                .build();
            let attrs: Vec<[KeyValue; 3]> = values
                .iter()
                .map(|v| {
                    [
                        KeyValue::new(LOOKUP_KEYS[0], v[0]),
                        KeyValue::new(LOOKUP_KEYS[1], v[1]),
                        KeyValue::new(LOOKUP_KEYS[2], v[2]),
                    ]
                })
                .collect();
            attrs.iter().for_each(|a| otel.add(1, a));
            bench(&mut g, &name, "opentelemetry", threads, |n| {
                in_order(order, n, |k| black_box(&otel).add(1, black_box(&attrs[k])))
            });
            drop(attrs);
            drop(otel);
            drop(provider);

            let fast = FastLookupFamily::default();
            let fast_labels = FastLookupLabels::all(values);
            fast_labels
                .iter()
                .for_each(|l| fast.with_or_new(l, |c| c.inc()));
            bench(&mut g, &name, "fastmetrics", threads, |n| {
                in_order(order, n, |k| {
                    black_box(&fast).with_or_new(black_box(&fast_labels[k]), |c| c.inc())
                })
            });
            drop(fast_labels);
            drop(fast);

            let measured = measured::CounterVec::with_label_set(MeasuredLookupSet::empty());
            let group = |v: &[&'static str; 3]| MeasuredLookupLabels {
                method: v[0],
                route: v[1],
                status: v[2],
            };
            values.iter().for_each(|v| measured.inc(group(v)));
            bench(&mut g, &name, "measured", threads, |n| {
                in_order(order, n, |k| {
                    black_box(&measured).inc(group(black_box(&values[k])))
                })
            });
            drop(measured);

            g.finish();
        }
    }
}

criterion_group! {
    name = record;
    config = sampler_benches::criterion();
    targets = counter_inc, counter_inc_late, gauge_set, timing_record, timing_record_late, lookup
}

fn main() {
    record();
    Criterion::default().configure_from_args().final_summary();
    sampler_benches::print_parallel_stats();
}
