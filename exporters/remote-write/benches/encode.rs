//! What a harvest costs on the way to a remote write receiver: encode + snappy of a 10,000
//! series snapshot, and the bytes per sample on the wire.
//!
//! Two workloads: `counters_gauges` (5,000 counters and 5,000 gauges), and `service` (a web
//! service's look: 4,000 request counters, 4,000 gauges, 2,000 latency timings of 200
//! recorded values each), with the timings written as classic histograms (the default 17
//! boundaries, powers of two from 2^-10 to 2^6, plus `_sum` and `_count`) and as native
//! histograms.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use prost::Message;
use sampler_api::{Descriptor, FamilyOptions, Harvester, Registry, Snapshot};
use sampler_exporter_prometheus::Buckets;
use sampler_exporter_remote_write::{samples, Encoder, TimingMode};

static REQUESTS: Descriptor = Descriptor::counter("http.server.requests", "1", "requests");
static INFLIGHT: Descriptor = Descriptor::gauge("http.server.inflight", "1", "in flight");
static LATENCY: Descriptor = Descriptor::timing("http.server.duration", "s", "latency");

struct Workload {
    snapshot: Arc<Snapshot>,
    _handles: Vec<Box<dyn std::any::Any>>,
}

/// `counters` counters and as many gauges, and `timings` timings of 200 values each, from
/// 1 ms to 2 s, spread evenly in log scale (each route its own spread).
fn workload(counters: usize, timings: usize) -> Workload {
    let registry = Registry::new();
    // Room for every series (a family keeps 2,000 by default, then folds into an overflow
    // series).
    let room = || FamilyOptions::default().limit(10_000);
    let keys = ["route", "status"];
    let requests = registry.counter_family_with(&REQUESTS, &keys, room());
    let inflight = registry.gauge_family_with(&INFLIGHT, &keys, room());
    let latency = registry.timing_family_with(&LATENCY, &keys, room());
    let mut handles: Vec<Box<dyn std::any::Any>> = Vec::new();
    for i in 0..counters {
        let route = format!("/api/v1/resource/{i}");
        let h = requests.get(&[&route, "200"]);
        h.add(i as u64);
        let g = inflight.get(&[&route, "200"]);
        g.set(i as f64 / 7.0);
        handles.push(Box::new((h, g)));
    }
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for i in 0..timings {
        let route = format!("/api/v1/resource/{i}");
        let t = latency.get(&[&route, "200"]);
        for _ in 0..200 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let u = (seed >> 11) as f64 / (1u64 << 53) as f64;
            t.record(0.001 * 2000f64.powf(u));
        }
        handles.push(Box::new(t));
    }
    let snapshot = Harvester::builder()
        .registry(registry)
        .self_metrics(false)
        .build()
        .harvest_now();
    Workload {
        snapshot,
        _handles: handles,
    }
}

fn encoder(timings: TimingMode) -> Encoder {
    let mut extra = BTreeMap::new();
    extra.insert("job".to_owned(), "bench".to_owned());
    extra.insert("instance".to_owned(), "host-1:9100".to_owned());
    let bounds = Buckets::default().bounds().unwrap();
    Encoder::new(timings, bounds, extra, 2000, true)
}

fn encode_and_compress(encoder: &mut Encoder, snapshot: &Snapshot) -> (usize, usize, usize) {
    let requests = encoder.encode(snapshot);
    let n: usize = requests.iter().map(samples).sum();
    let bytes = requests
        .iter()
        .map(|r| {
            snap::raw::Encoder::new()
                .compress_vec(&r.encode_to_vec())
                .unwrap()
                .len()
        })
        .sum();
    (n, requests.len(), bytes)
}

fn bench(c: &mut Criterion) {
    let plain = workload(5000, 0);
    let service = workload(4000, 2000);
    let cases = [
        ("counters_gauges", &plain, TimingMode::Classic),
        ("service_classic", &service, TimingMode::Classic),
        ("service_native", &service, TimingMode::Native),
    ];
    let mut g = c.benchmark_group("remote_write_10k");
    g.measurement_time(Duration::from_secs(5)).sample_size(20);
    for (name, w, mode) in cases {
        let mut e = encoder(mode);
        let series = w.snapshot.len();
        assert_eq!(series, 10_000, "{name}: every series in the snapshot");
        let (n, reqs, bytes) = encode_and_compress(&mut e, &w.snapshot);
        println!(
            "remote write {name}, {series} series: {n} samples in {reqs} requests, {bytes} bytes compressed, {:.1} bytes per sample, {:.1} bytes per series",
            bytes as f64 / n as f64,
            bytes as f64 / series as f64,
        );
        g.bench_function(name, |b| {
            b.iter(|| encode_and_compress(&mut e, &w.snapshot))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
