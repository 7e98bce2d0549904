//! The exporter against real peers and scripted faults, all on loopback:
//! - `interop`: the Python receiver decoding with the official `opentelemetry-proto` package,
//!   directly and through the rotel collector, confirms every series;
//! - `faults`: a Rust receiver answering 503 with Retry-After, 400, partial success, being
//!   absent, or never answering.

mod faults;
mod grpc;
mod interop;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sampler_api::{Descriptor, Harvester, Registry, Sampler, Snapshot, Writer};
use sampler_exporter_otlp::OtlpExporter;

static REQUESTS: Descriptor = Descriptor::counter("http.server.requests", "1", "requests served");
static LATENCY: Descriptor = Descriptor::timing("http.server.duration", "s", "time to answer");
static DEPTH: Descriptor = Descriptor::gauge("queue.depth", "1", "jobs waiting");
static CPU: Descriptor =
    Descriptor::fractional_counter("process.cpu.user", "s", 1_000_000, "user CPU time");

/// Writes a counter with a divisor, as adapters do.
struct CpuSampler(u64);

impl Sampler for CpuSampler {
    fn sample(&self, out: &mut Writer<'_>) {
        out.counter(&CPU, &[("pid", "42")], self.0);
    }
    fn name(&self) -> &str {
        "cpu"
    }
}

/// A registry holding one of each kind, with awkward label values.
#[allow(missing_debug_implementations)]
pub struct Fixture {
    pub registry: Registry,
    pub requests: sampler_api::CounterFamily,
    pub latency: sampler_api::TimingFamily,
    pub depth: sampler_api::GaugeFamily,
    harvester: Harvester,
    _cpu: sampler_api::Registration,
}

impl Fixture {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Fixture {
        let registry = Registry::new();
        let requests = registry.counter_family(&REQUESTS, &["method", "route"]);
        requests.get(&["GET", "/"]).add(7);
        requests.get(&["POST", "/a\"b\\c\nd"]).add(3);
        requests.get(&["GET", "/naïve/日本"]).add(1);
        let latency = registry.timing_family(&LATENCY, &["route"]);
        for v in [0.0, 0.0004, 0.003, 0.003, 0.02, 0.5, 1.0, 7.0] {
            latency.record(&["/"], v);
        }
        latency.record(&["/slow"], 12.5);
        let depth = registry.gauge_family(&DEPTH, &["queue"]);
        depth.set(&["mail"], 4.0);
        depth.set(&["jobs"], -2.5);
        let cpu = registry.register(CpuSampler(2_345_678));
        // One harvester for every harvest: series written by samplers keep their ids.
        let harvester = Harvester::builder()
            .registry(registry.clone())
            .self_metrics(false)
            .build();
        Fixture {
            harvester,
            registry,
            requests,
            latency,
            depth,
            _cpu: cpu,
        }
    }

    pub fn harvest(&self) -> Arc<Snapshot> {
        self.harvester.harvest_now()
    }
}

/// The value of a self-metric of an exporter.
pub fn self_metric(exporter: &OtlpExporter, name: &str, labels: &[(&str, &str)]) -> u64 {
    let r = Registry::new();
    let sampler = sampler_api::Exporter::sampler(exporter).expect("self-metrics");
    let _reg = r.register_arc(sampler);
    let snap = Harvester::builder()
        .registry(r)
        .self_metrics(false)
        .build()
        .harvest_now();
    match snap.find(name, labels).map(|s| s.value()) {
        Some(sampler_api::Value::Counter(n)) => *n,
        Some(sampler_api::Value::Gauge(g)) => *g as u64,
        other => panic!("no self-metric {name} {labels:?}: {other:?}"),
    }
}

pub fn deadline(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}
