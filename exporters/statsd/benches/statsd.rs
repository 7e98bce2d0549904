//! StatsD readings per second through our exporter, `cadence`'s buffered UDP sink and the
//! `statsd` crate's pipeline, for the same readings, all sending to a loopback UDP socket
//! drained by a thread; and bytes per reading on the wire.
//!
//! The readings: 500 counters (one label folded into the name, a delta each harvest) and 500
//! gauges (two labels), one harvest's worth. Ours encodes them from a snapshot (keys cached
//! by series, deltas taken from cumulative totals); the clients are handed the same keys,
//! formatted once beforehand, and the same deltas and values.
//!
//! `cargo bench -p sampler-exporter-statsd --bench statsd`

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cadence::prelude::*;
use cadence::{BufferedUdpMetricSink, StatsdClient};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sampler_api::{Descriptor, Harvester, Registry, Snapshot};
use sampler_exporter_statsd::StatsdExporter;

const SERIES: usize = 500;
const READINGS: usize = 2 * SERIES;
const PAYLOAD: usize = 1432;

static REQUESTS: Descriptor = Descriptor::counter("http.server.requests", "1", "requests");
static CONNS: Descriptor = Descriptor::gauge("db.pool.connections", "1", "connections");

/// A UDP socket on loopback and a thread reading (and counting) everything sent to it.
struct Drain {
    addr: String,
    bytes: Arc<AtomicU64>,
    datagrams: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Drain {
    fn new() -> Drain {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let addr = s.local_addr().unwrap().to_string();
        let (bytes, datagrams, stop) = Default::default();
        let d = Drain {
            addr,
            bytes,
            datagrams,
            stop,
        };
        let (b, n, stop) = (d.bytes.clone(), d.datagrams.clone(), d.stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while !stop.load(Relaxed) {
                if let Ok(k) = s.recv(&mut buf) {
                    b.fetch_add(k as u64, Relaxed);
                    n.fetch_add(1, Relaxed);
                }
            }
        });
        d
    }

    /// Bytes and datagrams received while `f` ran, once the socket went quiet.
    fn measure(&self, f: impl FnOnce()) -> (u64, u64) {
        let (b0, n0) = (self.bytes.load(Relaxed), self.datagrams.load(Relaxed));
        f();
        let mut last = (u64::MAX, u64::MAX);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = (self.bytes.load(Relaxed), self.datagrams.load(Relaxed));
            if now == last || Instant::now() > deadline {
                return (now.0 - b0, now.1 - n0);
            }
            last = now;
        }
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
    }
}

/// The readings: a registry whose every harvest has all counters moved on.
struct Readings {
    harvester: Harvester,
    counters: Vec<sampler_api::Counter>,
    _gauges: sampler_api::GaugeFamily,
    counter_keys: Vec<String>,
    gauge_keys: Vec<String>,
    gauge_values: Vec<f64>,
}

impl Readings {
    fn new() -> Readings {
        let registry = Registry::new();
        let requests = registry.counter_family(&REQUESTS, &["route"]);
        let gauges = registry.gauge_family(&CONNS, &["pool", "state"]);
        let mut counters = Vec::new();
        let (mut counter_keys, mut gauge_keys, mut gauge_values) = (vec![], vec![], vec![]);
        for i in 0..SERIES {
            let route = format!("route_{i}");
            counters.push(requests.get(&[&route]));
            counter_keys.push(format!("bench.http.server.requests.{route}"));
            let pool = format!("pool{}", i % 10);
            let state = format!("s{i}");
            let v = (i * 37 % 1000) as f64 + 0.25;
            gauges.set(&[&pool, &state], v);
            gauge_keys.push(format!("bench.db.pool.connections.{pool}.{state}"));
            gauge_values.push(v);
        }
        let harvester = Harvester::builder()
            .registry(registry)
            .self_metrics(false)
            .build();
        Readings {
            harvester,
            counters,
            _gauges: gauges,
            counter_keys,
            gauge_keys,
            gauge_values,
        }
    }

    /// Snapshots with every counter `1..=k` ahead of the one before.
    fn snapshots(&self, k: usize) -> Vec<Arc<Snapshot>> {
        (0..k)
            .map(|j| {
                for (i, c) in self.counters.iter().enumerate() {
                    c.add(1 + ((i + j) % 7) as u64);
                }
                self.harvester.harvest_now()
            })
            .collect()
    }
}

fn readings_per_second(c: &mut Criterion) {
    let drain = Drain::new();
    let readings = Readings::new();
    let snapshots = readings.snapshots(64);
    let deltas: Vec<u64> = (0..SERIES).map(|i| 1 + (i % 7) as u64).collect();

    let mut ours = StatsdExporter::builder()
        .address(&drain.addr)
        .prefix("bench")
        .max_payload(PAYLOAD)
        .build()
        .unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sink = BufferedUdpMetricSink::with_capacity(drain.addr.as_str(), sock, PAYLOAD).unwrap();
    let cadence = StatsdClient::from_sink("", sink);
    let statsd_client = statsd::Client::new(drain.addr.as_str(), "").unwrap();

    let mut next = 0usize;
    let mut ours_once = |ours: &mut StatsdExporter| {
        next = (next + 1) % snapshots.len();
        ours.send(&snapshots[next]).unwrap();
    };
    let cadence_once = |client: &StatsdClient| {
        for (k, d) in readings.counter_keys.iter().zip(&deltas) {
            let _ = client.count(k, *d as i64);
        }
        for (k, v) in readings.gauge_keys.iter().zip(&readings.gauge_values) {
            let _ = client.gauge(k, *v);
        }
        let _ = client.flush();
    };
    let statsd_once = |client: &statsd::Client| {
        let mut pipe = client.pipeline();
        pipe.set_max_udp_size(PAYLOAD);
        for (k, d) in readings.counter_keys.iter().zip(&deltas) {
            pipe.count(k, *d as f64);
        }
        for (k, v) in readings.gauge_keys.iter().zip(&readings.gauge_values) {
            pipe.gauge(k, *v);
        }
        pipe.send(client);
    };

    // Bytes on the wire for one harvest's readings. Ours first sends the series' totals (it
    // has no cursor yet); the harvest after carries deltas like the clients'.
    ours_once(&mut ours);
    let (b, n) = drain.measure(|| ours_once(&mut ours));
    eprintln!(
        "wire sampler-exporter-statsd: {b} bytes in {n} datagrams, {:.1} bytes/reading",
        b as f64 / READINGS as f64
    );
    let (b, n) = drain.measure(|| cadence_once(&cadence));
    eprintln!(
        "wire cadence BufferedUdpMetricSink: {b} bytes in {n} datagrams, {:.1} bytes/reading",
        b as f64 / READINGS as f64
    );
    let (b, n) = drain.measure(|| statsd_once(&statsd_client));
    eprintln!(
        "wire statsd Pipeline: {b} bytes in {n} datagrams, {:.1} bytes/reading",
        b as f64 / READINGS as f64
    );

    let mut g = c.benchmark_group("statsd_readings");
    g.throughput(Throughput::Elements(READINGS as u64));
    g.bench_function("sampler-exporter-statsd", |b| {
        b.iter(|| ours_once(&mut ours))
    });
    g.bench_function("cadence BufferedUdpMetricSink", |b| {
        b.iter(|| cadence_once(&cadence))
    });
    g.bench_function("statsd Pipeline", |b| {
        b.iter(|| statsd_once(&statsd_client))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = readings_per_second
}
criterion_main!(benches);
