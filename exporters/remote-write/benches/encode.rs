//! What a harvest costs on the way to a remote write receiver: encode + snappy of a 10,000
//! series snapshot, and the bytes per sample on the wire.

use std::collections::BTreeMap;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use prost::Message;
use sampler_api::{Descriptor, Harvester, Registry};
use sampler_exporter_remote_write::{samples, Encoder, TimingMode};

static REQUESTS: Descriptor = Descriptor::counter("http.server.requests", "1", "requests");
static INFLIGHT: Descriptor = Descriptor::gauge("http.server.inflight", "1", "in flight");

fn bench(c: &mut Criterion) {
    let registry = Registry::new();
    let requests = registry.counter_family(&REQUESTS, &["route", "status"]);
    let inflight = registry.gauge_family(&INFLIGHT, &["route", "status"]);
    let mut handles = Vec::new();
    for i in 0..5000 {
        let route = format!("/api/v1/resource/{i}");
        let h = requests.get(&[&route, "200"]);
        h.add(i as u64);
        let g = inflight.get(&[&route, "200"]);
        g.set(i as f64 / 7.0);
        handles.push((h, g));
    }
    let snapshot = Harvester::builder()
        .registry(registry)
        .self_metrics(false)
        .build()
        .harvest_now();
    let mut extra = BTreeMap::new();
    extra.insert("job".to_owned(), "bench".to_owned());
    extra.insert("instance".to_owned(), "host-1:9100".to_owned());
    let encoder = Encoder::new(TimingMode::Classic, vec![], extra, 2000, true);
    let requests = encoder.encode(&snapshot);
    let n: usize = requests.iter().map(samples).sum();
    let bytes: usize = requests
        .iter()
        .map(|r| {
            snap::raw::Encoder::new()
                .compress_vec(&r.encode_to_vec())
                .unwrap()
                .len()
        })
        .sum();
    println!(
        "remote write, 10k series: {n} samples in {} requests, {bytes} bytes compressed, {:.1} bytes per sample",
        requests.len(),
        bytes as f64 / n as f64
    );
    let mut g = c.benchmark_group("remote_write_10k");
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("encode_and_compress", |b| {
        b.iter(|| {
            let mut total = 0;
            for r in encoder.encode(&snapshot) {
                total += snap::raw::Encoder::new()
                    .compress_vec(&r.encode_to_vec())
                    .unwrap()
                    .len();
            }
            total
        })
    });
    g.finish();
    drop(handles);
}

criterion_group!(benches, bench);
criterion_main!(benches);
