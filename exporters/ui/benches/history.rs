//! What the live page costs per harvest, for 2000 series (the default `max_series`): 1000
//! counters, 500 gauges and 500 timings (each with about 30 buckets) with changing readings.
//!
//! - `record`: one harvest into the history (rates, per-interval p50/p99, 60 points kept);
//! - `data_json`: the page's JSON of the full history (made once per harvest, on request);
//! - `encode_prometheus_text`: the Prometheus exporter's text encoding of the same snapshot,
//!   the work the page's `record` is added to when the endpoint serves it at `/`.
//!
//! Run: `cargo bench -p sampler-exporter-ui --bench history`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use sampler_api::{Descriptor, Distribution, Kind, Labels, Series, SeriesId, Snapshot, Value};
use sampler_exporter_prometheus::{Encoder, EncoderConfig, Format};
use sampler_exporter_ui::History;

/// The series of one harvest, `step` harvests in: readings grow with `step`.
fn snapshot(ids: &[SeriesId], descriptors: &[Arc<Descriptor>; 3], step: u64) -> Snapshot {
    let series = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let (d, value) = match i % 4 {
                0 | 1 => (0, Value::Counter(step * (i as u64 + 1) * 10)),
                2 => (1, Value::Gauge((i as u64 + step) as f64)),
                _ => {
                    let mut dist = Distribution::new(3);
                    for k in 0..(step + 1) * 20 {
                        dist.record(1e-3 * (1.0 + (k % 30) as f64 * 0.3));
                    }
                    (2, Value::Timing(Box::new(dist)))
                }
            };
            let route = format!("/route/{i}");
            Series::new(
                *id,
                descriptors[d].clone(),
                Labels::from_pairs(&[("route", route.as_str()), ("method", "GET")]).unwrap(),
                UNIX_EPOCH,
                value,
            )
        })
        .collect::<Vec<_>>();
    Snapshot::from_series(
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + step * 10),
        Duration::from_secs(10),
        step + 1,
        series,
    )
}

fn bench(c: &mut Criterion) {
    let descriptors = [
        Arc::new(Descriptor::owned(
            "http.requests",
            Kind::Counter,
            "1",
            "requests",
        )),
        Arc::new(Descriptor::owned(
            "http.in_flight",
            Kind::Gauge,
            "1",
            "in flight",
        )),
        Arc::new(Descriptor::owned(
            "http.duration",
            Kind::Timing,
            "s",
            "latency",
        )),
    ];
    let ids: Vec<SeriesId> = (0..2000).map(|_| SeriesId::next()).collect();
    // Ten harvests, cycled, so that every recorded one is newer than the last.
    let snapshots: Vec<Snapshot> = (0..10).map(|s| snapshot(&ids, &descriptors, s)).collect();
    let mut g = c.benchmark_group("ui_2000_series");
    g.bench_function("record", |b| {
        let mut history = History::new(60, 2000);
        let mut step = 0u64;
        // The snapshot is made outside the measured time.
        b.iter_batched_ref(
            || {
                let mut s = snapshots[(step % 10) as usize].clone();
                step += 1;
                s.sequence = step;
                s.time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + step * 10);
                s
            },
            |s| history.record(black_box(s)),
            criterion::BatchSize::LargeInput,
        )
    });
    let mut full = History::new(60, 2000);
    for step in 0..60u64 {
        let mut s = snapshots[(step % 10) as usize].clone();
        s.sequence = step + 1;
        s.time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + step * 10);
        full.record(&s);
    }
    println!(
        "data.json of 2000 series x 60 points: {} bytes",
        full.to_json().len()
    );
    g.bench_function("data_json", |b| b.iter(|| black_box(full.to_json())));
    g.bench_function("encode_prometheus_text", |b| {
        let mut encoder = Encoder::new(EncoderConfig::default()).unwrap();
        let mut out = Vec::new();
        b.iter(|| {
            out.clear();
            let plan = encoder.plan(&snapshots[5]);
            encoder.encode(&plan, Format::Text, &mut out);
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
