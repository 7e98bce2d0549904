//! Graphite lines per second over loopback TCP, and bytes per reading on the wire.
//!
//! - `tcp/<mode>`: `GraphiteExporter::export` of a 10k-series snapshot (half counters, half
//!   gauges, labels `method`, `route`, `status`) over one persistent loopback connection to a
//!   sink thread that reads and discards; throughput in points (lines) per second. Modes:
//!   plaintext with tags, plaintext with a template, pickle with tags.
//! - `encode/<mode>`: the same snapshot encoded into a reused `Vec` only, so the difference is
//!   the cost of the socket.
//!
//! Before measuring it prints the bytes per reading of each mode. Counters are sent
//! cumulative, so each export carries the totals (deltas of an unchanged snapshot would all
//! be `0`, shorter than real traffic).
//!
//! Run: `cargo bench -p sampler-exporter-graphite --bench lines`.

use std::io::Read;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sampler_api::{Descriptor, Exporter, Kind, Labels, Series, SeriesId, Snapshot, Value};
use sampler_exporter_graphite::{
    CounterMode, Encoder, GraphiteConfig, GraphiteExporter, Protocol, TagStyle,
};

const N: usize = 10_000;
const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];

fn snapshot() -> Snapshot {
    let counter = Arc::new(Descriptor::owned(
        "http.server.requests",
        Kind::Counter,
        "1",
        "",
    ));
    let gauge = Arc::new(Descriptor::owned(
        "http.server.active_requests",
        Kind::Gauge,
        "1",
        "",
    ));
    let series = (0..N)
        .map(|i| {
            let j = i / 2;
            let route = format!("/api/v1/items/{}", j / 4);
            let labels = Labels::from_pairs(&[
                ("method", METHODS[j % 4]),
                ("route", &route),
                ("status", ["200", "404", "500"][j % 3]),
            ])
            .unwrap();
            let (descriptor, value) = if i % 2 == 0 {
                (
                    counter.clone(),
                    Value::Counter((i as u64).wrapping_mul(2_654_435_761) % 10_000_000),
                )
            } else {
                (gauge.clone(), Value::Gauge(i as f64 * 0.37 + 0.25))
            };
            Series::new(SeriesId::next(), descriptor, labels, UNIX_EPOCH, value)
        })
        .collect::<Vec<_>>();
    Snapshot::from_series(SystemTime::now(), Duration::from_secs(10), 1, series)
}

fn modes() -> [(&'static str, Protocol, TagStyle); 3] {
    [
        ("plaintext_tagged", Protocol::Plaintext, TagStyle::Tagged),
        (
            "plaintext_template",
            Protocol::Plaintext,
            TagStyle::Template,
        ),
        ("pickle_tagged", Protocol::Pickle, TagStyle::Tagged),
    ]
}

fn config(protocol: Protocol, tags: TagStyle, address: String) -> GraphiteConfig {
    GraphiteConfig {
        address,
        protocol,
        tags,
        prefix: "app.web01".into(),
        counters: CounterMode::Cumulative,
        ..Default::default()
    }
}

/// A sink on loopback that reads and discards; its address.
fn sink() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 16];
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

fn bench(c: &mut Criterion) {
    let snap = Arc::new(snapshot());
    for (name, protocol, tags) in modes() {
        let mut enc = Encoder::new(&config(protocol, tags, "127.0.0.1:2003".into())).unwrap();
        let mut out = Vec::new();
        let e = enc.encode(&snap, &mut out);
        println!(
            "bytes per reading, {name}: {:.1} ({} bytes, {} points)",
            out.len() as f64 / e.points as f64,
            out.len(),
            e.points
        );
    }

    let mut g = c.benchmark_group("tcp");
    g.throughput(Throughput::Elements(N as u64));
    for (name, protocol, tags) in modes() {
        let mut exporter = GraphiteExporter::builder()
            .config(config(protocol, tags, sink()))
            .on_event(|e| panic!("{e}"))
            .build()
            .unwrap();
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| exporter.export(snap.clone()).unwrap())
        });
        exporter
            .shutdown(std::time::Instant::now() + Duration::from_secs(10))
            .unwrap();
    }
    g.finish();

    let mut g = c.benchmark_group("encode");
    g.throughput(Throughput::Elements(N as u64));
    for (name, protocol, tags) in modes() {
        let mut enc = Encoder::new(&config(protocol, tags, "127.0.0.1:2003".into())).unwrap();
        let mut out = Vec::new();
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                out.clear();
                enc.encode(&snap, &mut out)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
