//! Encoding 10k and 100k series, side by side, in one run:
//!
//! - `ours/*`: this crate's encoder (plan + encode) on a snapshot;
//! - `prometheus_client/*`: `prometheus-client` encoding the same series from its own registry
//!   (`Family<Vec<(String, String)>, Counter | Gauge>`);
//! - `metrics_exporter_prometheus`: `metrics-exporter-prometheus` rendering the same series;
//! - `bare_loop`: the floor: one `name{labels} value` line per series with `itoa`/`dtoa`, no
//!   grouping, escaping or metadata;
//! - `scrape_cached`: what a scrape costs once encoded (cloning the cached bytes).
//!
//! Before measuring, each size checks that ours and `prometheus-client` wrote the same lines.
//!
//! Run: `cargo bench -p sampler-exporter-prometheus --bench encode`.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use metrics::Recorder as _;
use prometheus_client::metrics::counter::Counter as PcCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge as PcGauge;
use prometheus_client::metrics::histogram::Histogram as PcHistogram;
use prometheus_client::registry::{Registry as PcRegistry, Unit as PcUnit};
use sampler_api::{Descriptor, Distribution, Labels, Series, SeriesId, Snapshot, Value};
use sampler_exporter_prometheus::{Buckets, Encoder, EncoderConfig, Format};

const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];
const SERIES_PER_FAMILY: usize = 1000;

/// One series as every encoder gets it.
struct Row {
    family: usize,
    labels: [String; 3],
    counter: u64,
    gauge: f64,
}

/// `n` series in `n / 1000` families, half counters and half gauges, each with the labels
/// `method`, `route` and `status`.
fn rows(n: usize) -> Vec<Row> {
    (0..n)
        .map(|i| {
            let family = i / SERIES_PER_FAMILY;
            let j = i % SERIES_PER_FAMILY;
            Row {
                family,
                labels: [
                    METHODS[j % 4].to_owned(),
                    format!("/api/v1/items/{}", j / 4),
                    ["200", "404", "500"][j % 3].to_owned(),
                ],
                counter: (i as u64).wrapping_mul(2_654_435_761) % 10_000_000,
                gauge: (i as f64) * 0.37 + 0.25,
            }
        })
        .collect()
}

fn family_name(f: usize) -> String {
    if f % 2 == 0 {
        format!("app.requests{f}")
    } else {
        format!("app.inflight{f}")
    }
}

fn snapshot(rows: &[Row]) -> Snapshot {
    let families = rows.last().map_or(0, |r| r.family + 1);
    let descriptors: Vec<Arc<Descriptor>> = (0..families)
        .map(|f| {
            let kind = if f % 2 == 0 {
                sampler_api::Kind::Counter
            } else {
                sampler_api::Kind::Gauge
            };
            Arc::new(Descriptor::owned(
                family_name(f),
                kind,
                "1",
                "synthetic series.",
            ))
        })
        .collect();
    let keys: sampler_api::LabelKeys =
        vec!["method".into(), "route".into(), "status".into()].into();
    let start = SystemTime::now();
    let series = rows
        .iter()
        .map(|r| {
            let d = &descriptors[r.family];
            let values = [
                r.labels[0].as_str(),
                r.labels[1].as_str(),
                r.labels[2].as_str(),
            ];
            Series::new(
                SeriesId::next(),
                d.clone(),
                Labels::with_keys(keys.clone(), &values),
                start,
                if r.family % 2 == 0 {
                    Value::Counter(r.counter)
                } else {
                    Value::Gauge(r.gauge)
                },
            )
        })
        .collect::<Vec<_>>();
    Snapshot::from_series(start, Duration::from_secs(10), 1, series)
}

type LabelSet = Vec<(String, String)>;

fn pc_registry(rows: &[Row]) -> PcRegistry {
    let families = rows.last().map_or(0, |r| r.family + 1);
    let mut registry = PcRegistry::default();
    let mut counters = Vec::new();
    let mut gauges = Vec::new();
    for f in 0..families {
        let name = family_name(f).replace('.', "_");
        if f % 2 == 0 {
            let fam = Family::<LabelSet, PcCounter>::default();
            registry.register(name, "synthetic series", fam.clone());
            counters.push(fam);
            gauges.push(Family::default());
        } else {
            let fam = Family::<LabelSet, PcGauge<f64, AtomicU64>>::default();
            registry.register(name, "synthetic series", fam.clone());
            gauges.push(fam);
            counters.push(Family::default());
        }
    }
    for r in rows {
        let labels = vec![
            ("method".to_owned(), r.labels[0].clone()),
            ("route".to_owned(), r.labels[1].clone()),
            ("status".to_owned(), r.labels[2].clone()),
        ];
        if r.family % 2 == 0 {
            counters[r.family].get_or_create(&labels).inc_by(r.counter);
        } else {
            gauges[r.family].get_or_create(&labels).set(r.gauge);
        }
    }
    registry
}

fn mep_recorder(rows: &[Row]) -> metrics_exporter_prometheus::PrometheusRecorder {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let meta = metrics::Metadata::new("bench", metrics::Level::INFO, None);
    let families = rows.last().map_or(0, |r| r.family + 1);
    for f in 0..families {
        let name = family_name(f).replace('.', "_");
        if f % 2 == 0 {
            recorder.describe_counter(name.into(), None, "synthetic series".into());
        } else {
            recorder.describe_gauge(name.into(), None, "synthetic series".into());
        }
    }
    for r in rows {
        let labels = vec![
            metrics::Label::new("method", r.labels[0].clone()),
            metrics::Label::new("route", r.labels[1].clone()),
            metrics::Label::new("status", r.labels[2].clone()),
        ];
        let key = metrics::Key::from_parts(family_name(r.family).replace('.', "_"), labels);
        if r.family % 2 == 0 {
            recorder.register_counter(&key, &meta).absolute(r.counter);
        } else {
            recorder.register_gauge(&key, &meta).set(r.gauge);
        }
    }
    recorder
}

/// The floor: one line per series, numbers formatted, nothing else.
fn bare_loop(rows: &[Row], names: &[String], out: &mut Vec<u8>) {
    out.clear();
    let mut i = itoa::Buffer::new();
    let mut d = dtoa::Buffer::new();
    for r in rows {
        out.extend_from_slice(names[r.family].as_bytes());
        out.extend_from_slice(b"{method=\"");
        out.extend_from_slice(r.labels[0].as_bytes());
        out.extend_from_slice(b"\",route=\"");
        out.extend_from_slice(r.labels[1].as_bytes());
        out.extend_from_slice(b"\",status=\"");
        out.extend_from_slice(r.labels[2].as_bytes());
        out.extend_from_slice(b"\"} ");
        if r.family % 2 == 0 {
            out.extend_from_slice(i.format(r.counter).as_bytes());
        } else {
            out.extend_from_slice(d.format(r.gauge).as_bytes());
        }
        out.push(b'\n');
    }
}

fn sorted_lines(s: &str) -> Vec<&str> {
    let mut v: Vec<&str> = s.lines().collect();
    v.sort_unstable();
    v
}

fn encode_series(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_millis(500));
    for n in [10_000usize, 100_000] {
        let rows = rows(n);
        let snap = snapshot(&rows);
        let config = EncoderConfig::default();
        let mut encoder = Encoder::new(&config).expect("default config");
        let pc = pc_registry(&rows);
        let mep = mep_recorder(&rows);
        let mep_handle = mep.handle();

        // Same series, same lines (prometheus-client orders series by hash, so compare sorted).
        let mut ours_text = Vec::new();
        let plan = encoder.plan(&snap);
        encoder.encode(&plan, Format::Text, &mut ours_text);
        drop(plan);
        let ours_text = String::from_utf8(ours_text).expect("utf-8");
        let mut theirs = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut theirs, &pc).expect("encode");
        assert_eq!(
            sorted_lines(&ours_text),
            sorted_lines(&theirs),
            "ours and prometheus-client differ"
        );
        let rendered = mep_handle.render();
        assert_eq!(
            rendered
                .lines()
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .count(),
            n
        );

        group.throughput(Throughput::Elements(n as u64));
        let mut buf = Vec::new();
        group.bench_with_input(BenchmarkId::new("ours_text", n), &snap, |b, s| {
            b.iter(|| {
                buf.clear();
                let plan = encoder.plan(s);
                encoder.encode(&plan, Format::Text, &mut buf);
                black_box(buf.len())
            })
        });
        group.bench_with_input(BenchmarkId::new("ours_openmetrics", n), &snap, |b, s| {
            b.iter(|| {
                buf.clear();
                let plan = encoder.plan(s);
                encoder.encode(&plan, Format::OpenMetrics, &mut buf);
                black_box(buf.len())
            })
        });
        // Without `_created` lines: the same bytes prometheus-client writes.
        let mut plain = Encoder::new(EncoderConfig {
            openmetrics_created: false,
            ..Default::default()
        })
        .expect("config");
        group.bench_with_input(
            BenchmarkId::new("ours_openmetrics_no_created", n),
            &snap,
            |b, s| {
                b.iter(|| {
                    buf.clear();
                    let plan = plain.plan(s);
                    plain.encode(&plan, Format::OpenMetrics, &mut buf);
                    black_box(buf.len())
                })
            },
        );
        group.bench_with_input(BenchmarkId::new("ours_both_formats", n), &snap, |b, s| {
            b.iter(|| {
                let plan = encoder.plan(s);
                let mut t = Vec::new();
                encoder.encode(&plan, Format::Text, &mut t);
                let mut o = Vec::new();
                encoder.encode(&plan, Format::OpenMetrics, &mut o);
                black_box((t.len(), o.len()))
            })
        });
        group.bench_with_input(
            BenchmarkId::new("prometheus_client_text", n),
            &pc,
            |b, r| {
                b.iter(|| {
                    let mut s = String::new();
                    prometheus_client::encoding::prometheus_text::encode(&mut s, r)
                        .expect("encode");
                    black_box(s.len())
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("prometheus_client_openmetrics", n),
            &pc,
            |b, r| {
                b.iter(|| {
                    let mut s = String::new();
                    prometheus_client::encoding::text::encode(&mut s, r).expect("encode");
                    black_box(s.len())
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("metrics_exporter_prometheus", n),
            &mep_handle,
            |b, h| b.iter(|| black_box(h.render().len())),
        );
        let names: Vec<String> = (0..=rows.last().map_or(0, |r| r.family))
            .map(|f| {
                let base = family_name(f).replace('.', "_");
                if f % 2 == 0 {
                    format!("{base}_total")
                } else {
                    base
                }
            })
            .collect();
        group.bench_with_input(BenchmarkId::new("bare_loop", n), &rows, |b, r| {
            b.iter(|| {
                bare_loop(r, &names, &mut buf);
                black_box(buf.len())
            })
        });
        // Walking every label of the snapshot (what any encoder must do at least).
        group.bench_with_input(BenchmarkId::new("labels_walk", n), &snap, |b, s| {
            b.iter(|| {
                let mut total = 0usize;
                for x in s.series() {
                    for (k, v) in x.labels().iter() {
                        total += k.len() + v.len();
                    }
                }
                black_box(total)
            })
        });
        let cached = bytes::Bytes::from(ours_text.into_bytes());
        group.bench_with_input(BenchmarkId::new("scrape_cached", n), &cached, |b, c| {
            b.iter(|| black_box(c.clone()))
        });
    }
    group.finish();
}

fn encode_histograms(c: &mut Criterion) {
    let mut group = c.benchmark_group("histograms");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_millis(500));
    let n = 10_000usize;
    let keys: sampler_api::LabelKeys = vec!["route".into()].into();
    let d = Arc::new(Descriptor::timing("app.latency", "s", "request latency."));
    fn histogram() -> PcHistogram {
        PcHistogram::new(Buckets::default().bounds().expect("bounds"))
    }
    let family =
        Family::<LabelSet, PcHistogram, fn() -> PcHistogram>::new_with_constructor(histogram);
    let mut pc = PcRegistry::default();
    pc.register_with_unit(
        "app_latency",
        "request latency",
        PcUnit::Seconds,
        family.clone(),
    );
    let mut series = Vec::with_capacity(n);
    for i in 0..n {
        let route = format!("/r/{i}");
        let mut dist = Distribution::new(3);
        let h = family.get_or_create(&vec![("route".to_owned(), route.clone())]);
        for k in 0..20 {
            let v = 0.001 * (1.0 + ((i * 7 + k * 13) % 1000) as f64);
            dist.record(v);
            h.observe(v);
        }
        series.push(Series::new(
            SeriesId::next(),
            d.clone(),
            Labels::with_keys(keys.clone(), &[route.as_str()]),
            SystemTime::now(),
            Value::Timing(Box::new(dist)),
        ));
    }
    let snap = Snapshot::from_series(SystemTime::now(), Duration::from_secs(10), 1, series);
    let mut encoder = Encoder::new(EncoderConfig::default()).expect("config");
    group.throughput(Throughput::Elements(n as u64));
    let mut buf = Vec::new();
    group.bench_function(BenchmarkId::new("ours_text", n), |b| {
        b.iter(|| {
            buf.clear();
            let plan = encoder.plan(&snap);
            encoder.encode(&plan, Format::Text, &mut buf);
            black_box(buf.len())
        })
    });
    group.bench_function(BenchmarkId::new("prometheus_client_text", n), |b| {
        b.iter(|| {
            let mut s = String::new();
            prometheus_client::encoding::prometheus_text::encode(&mut s, &pc).expect("encode");
            black_box(s.len())
        })
    });
    let native = EncoderConfig {
        native_histograms: true,
        ..Default::default()
    };
    let mut native_encoder = Encoder::new(&native).expect("config");
    group.bench_function(BenchmarkId::new("ours_protobuf_native", n), |b| {
        b.iter(|| {
            buf.clear();
            let plan = native_encoder.plan(&snap);
            native_encoder.encode(&plan, Format::Protobuf, &mut buf);
            black_box(buf.len())
        })
    });
    group.finish();
}

criterion_group!(benches, encode_series, encode_histograms);
criterion_main!(benches);
