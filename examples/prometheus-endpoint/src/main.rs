//! Serves this program's metrics to Prometheus, started in code in a few lines.
//!
//! ```text
//! cargo run -p example-prometheus-endpoint -- [ADDRESS] [SECONDS]
//! curl -s http://127.0.0.1:9464/metrics
//! ```
//!
//! ADDRESS defaults to `127.0.0.1:9464`; the program runs for SECONDS (default: until killed),
//! handling made-up requests so the endpoint has counters, gauges and timings to show.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use sampler_api::{Descriptor, Harvester, Registry};
use sampler_exporter_prometheus::PrometheusExporter;

static REQUESTS: Descriptor = Descriptor::counter("demo.requests", "1", "requests handled");
static LATENCY: Descriptor = Descriptor::timing("demo.request.duration", "s", "request latency");
static QUEUE: Descriptor = Descriptor::gauge("demo.queue.depth", "1", "requests waiting");

fn main() -> ExitCode {
    // Errors print as their messages (`Result` from `main` would print their `Debug` form).
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("example-prometheus-endpoint: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let address = args.next().unwrap_or_else(|| "127.0.0.1:9464".to_owned());
    let run_for = args
        .next()
        .map(|s| {
            s.parse::<u64>()
                .map_err(|e| format!("invalid SECONDS (second argument) {s}: {e}"))
        })
        .transpose()?
        .map(Duration::from_secs);

    // The endpoint: bind, then hand it to a harvester that encodes a snapshot every 5 s.
    let exporter = PrometheusExporter::builder().address(&address).build()?;
    eprintln!("serving metrics on {}", exporter.url());
    let harvester = Harvester::builder()
        .interval(Duration::from_secs(5))
        .harvest_at_start(true)
        .exporter(exporter)
        .start();

    // The application's own instruments, recorded as it works.
    let registry = Registry::global();
    let requests = registry.counter_family(&REQUESTS, &["route", "status"]);
    let latency = registry.timing_family(&LATENCY, &["route"]);
    let queue = registry.gauge(&QUEUE);
    let started = Instant::now();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while run_for.map_or(true, |d| started.elapsed() < d) {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let route = ["/", "/search", "/item"][(x >> 60) as usize % 3];
        let status = if (x >> 40) % 50 == 0 { "500" } else { "200" };
        let seconds = 0.002 * (1.0 + ((x >> 20) % 1000) as f64 / 50.0);
        requests.inc(&[route, status]);
        latency.record(&[route], seconds);
        queue.set(((x >> 8) % 16) as f64);
        std::thread::sleep(Duration::from_millis(10));
    }
    harvester.shutdown(Duration::from_secs(5))?;
    Ok(())
}
