//! An axum web service measured per route group, the pieces wired as an application would:
//!
//! - two route groups: `api` (fast: `/api/hello`, `/api/items/{id}`) and `reports` (slow and
//!   memory hungry: `/reports/{kib}` holds `kib` KiB for about 200 ms while it "computes");
//! - `sampler-adapter-http`'s layer: requests, latency, in-flight, utilisation, queue time
//!   per group, and per-request memory (`http.server.request.memory.*`) when the program's
//!   global allocator is `sampler_adapter_alloc::CountingAllocator` (as in `web-service`);
//! - the slow-request watchdog (`sampler-adapter-watchdog`): a request in flight longer than
//!   `--slow-after` is reported while it runs, with its stack when a thread runs it;
//! - the process adapter (RSS, CPU, threads, fds) and the Prometheus exporter on its own port.
//!
//! The `web-service` binary runs it; `--layer none` and `--layer axum-prometheus` serve the
//! same routes bare or under `axum-prometheus`'s layer, for the overhead benchmark
//! (`examples/web-service/bench.sh`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use axum::ServiceExt as _;
use clap::{Parser, ValueEnum};
use sampler_adapter_http::{Groups, HttpMetrics};
use sampler_adapter_watchdog::Watchdog;
use sampler_api::{Harvester, Registry};
use sampler_exporter_prometheus::{Buckets, PrometheusExporter};
use tower::{Service, ServiceBuilder};

/// What measures the service's requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Layer {
    /// sampler-adapter-http's layer (per-request memory too under the counting allocator).
    Sampler,
    /// No layer: the benchmark's baseline.
    None,
    /// `axum-prometheus`'s layer, its metrics on the service's own `/metrics`: for comparison.
    AxumPrometheus,
}

/// The command line of `web-service`.
#[derive(Debug, Parser)]
#[command(about = "An axum service measured per route group by sampler")]
pub struct Options {
    /// Where the service listens (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub listen: String,
    /// Where the Prometheus exporter serves `/metrics` (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub metrics: String,
    /// What measures the requests.
    #[arg(long, value_enum, default_value_t = Layer::Sampler)]
    pub layer: Layer,
    /// Runtime worker threads (default: one per CPU).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Stop after this many seconds (default: run until killed).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// The slow-request watchdog reports a request still in flight after this long, with its
    /// stack when a thread runs it (e.g. `500ms`, `2s`).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub slow_after: Duration,
    /// Where the watchdog writes one file per slow request (default: `web-service-slow` in
    /// the temporary directory).
    #[arg(long)]
    pub slow_dir: Option<std::path::PathBuf>,
    /// Run the layer without the slow-request watchdog (to measure what each costs).
    #[arg(long)]
    pub no_watchdog: bool,
}

/// The largest report, in KiB: a bigger `{kib}` is refused with 400.
pub const MAX_REPORT_KIB: usize = 256 * 1024;

/// The longest wait between a report's steps, in ms: a longer `{ms}` is refused with 400.
pub const MAX_STEP_MS: u64 = 10_000;

/// `/reports/{kib}`: builds a `kib` KiB table in four steps, awaiting 50 ms between them (the
/// task may resume on another runtime thread each time), and answers a checksum of it.
async fn report(Path(kib): Path<usize>) -> Result<String, (StatusCode, String)> {
    build_report(kib, 50).await
}

/// `/reports/{kib}/{ms}`: the same, awaiting `ms` ms between the steps (a slow report, for
/// the slow-request watchdog).
async fn slow_report(Path((kib, ms)): Path<(usize, u64)>) -> Result<String, (StatusCode, String)> {
    if ms > MAX_STEP_MS {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("wait between steps must be at most {MAX_STEP_MS} ms, not {ms}"),
        ));
    }
    build_report(kib, ms).await
}

async fn build_report(kib: usize, step_ms: u64) -> Result<String, (StatusCode, String)> {
    if kib == 0 || kib > MAX_REPORT_KIB {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("report size must be 1..={MAX_REPORT_KIB} KiB, not {kib}"),
        ));
    }
    let bytes = kib * 1024;
    let mut parts: Vec<Vec<u8>> = Vec::with_capacity(4);
    for step in 0..4 {
        let len = bytes / 4 + if step == 3 { bytes % 4 } else { 0 };
        parts.push((0..len).map(|i| (i as u8).wrapping_mul(step + 1)).collect());
        tokio::time::sleep(Duration::from_millis(step_ms)).await;
    }
    let checksum = parts.iter().flatten().fold(0u64, |sum, &b| {
        sum.wrapping_mul(31).wrapping_add(u64::from(b))
    });
    Ok(format!("report: {kib} KiB, checksum {checksum:016x}\n"))
}

/// The service's routes, without any measuring layer.
pub fn routes() -> Router {
    Router::new()
        .route("/api/hello", get(|| async { "hello\n" }))
        .route(
            "/api/items/{id}",
            get(|Path(id): Path<u64>| async move {
                format!("{{\"id\":{id},\"name\":\"item-{id}\"}}\n")
            }),
        )
        .route("/reports/{kib}", get(report))
        .route("/reports/{kib}/{ms}", get(slow_report))
}

/// The route groups: `api` and `reports` (anything else counts in `unmatched`).
/// `Groups::new().matched_route()` would make one group per route template instead.
pub fn groups() -> Groups {
    Groups::new()
        .prefix("/api", "api")
        .prefix("/reports", "reports")
}

/// Runs the service as `options` say until `options.seconds` pass (or forever).
pub fn run(options: Options) -> Result<(), Box<dyn std::error::Error>> {
    let registry = Registry::global();

    // The process adapter: this process's RSS, CPU, threads and fds, and the host's.
    let _process = sampler_adapter_process::register_defaults(registry);

    // The Prometheus exporter on its own port; each scrape harvests afresh.
    // Byte-sized buckets for the memory timings (the default ones suit seconds): every power
    // of two from 256 B to 1 GiB.
    let bytes = Buckets::Exponential {
        scale: 0,
        min: 256.0,
        max: f64::from(1u32 << 30),
    };
    let exporter = PrometheusExporter::builder()
        .address(&options.metrics)
        .harvest_on_scrape(true)
        .bucket_override("http.server.request.memory.allocated", bytes.clone())
        .bucket_override("http.server.request.memory.peak", bytes)
        .build()
        .map_err(|e| {
            format!(
                "failed to start the prometheus exporter at {}: {e}",
                options.metrics
            )
        })?;
    eprintln!("serving metrics on {}", exporter.url());
    let harvester = Harvester::builder()
        .registry(registry.clone())
        .interval(Duration::from_secs(15))
        .exporter(exporter)
        .start();

    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = options.workers {
        runtime.worker_threads(workers.max(1));
    }
    let runtime = runtime
        .enable_all()
        .build()
        .map_err(|e| format!("failed to start the tokio runtime: {e}"))?;
    // axum-prometheus spawns its upkeep task when made: inside the runtime.
    let _runtime_context = runtime.enter();

    // The slow-request watchdog: a request in flight longer than `--slow-after` is reported
    // while it still runs (on stderr, in a file of its own, counted in
    // `http.server.slow_requests{group}`), and again when it ends.
    let slow_dir = options
        .slow_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("web-service-slow"));
    let watchdog = if options.no_watchdog {
        None
    } else {
        let watchdog = Watchdog::builder(registry)
            .threshold(options.slow_after)
            .dir(&slow_dir)
            .stderr(true)
            .start()?;
        eprintln!(
            "reporting requests slower than {} in {}",
            humantime::format_duration(options.slow_after),
            slow_dir.display()
        );
        Some(watchdog)
    };

    // The measuring layer, followed by the watchdog. `metrics` must live as long as the
    // service.
    let mut metrics = HttpMetrics::new(registry, groups()).capacity(64.0);
    if let Some(watchdog) = &watchdog {
        metrics = metrics.hook(watchdog.hook());
    }
    // The layer goes around the whole router: the groups come from path prefixes, so it
    // needs no matched route, and axum then neither boxes nor clones it per route and request
    // (`Router::layer` does; it is the way when grouping by matched route).
    let measured = ServiceBuilder::new()
        .map_response(|response: Response<_>| response.map(Body::new))
        .layer(metrics.layer())
        .service(routes());

    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&options.listen)
            .await
            .map_err(|e| format!("failed to listen on {}: {e}", options.listen))?;
        let addr: SocketAddr = listener.local_addr()?;
        eprintln!("listening on http://{addr} (layer: {:?})", options.layer);
        match options.layer {
            Layer::Sampler => serve(listener, measured, options.seconds).await,
            Layer::None => serve(listener, routes(), options.seconds).await,
            Layer::AxumPrometheus => {
                let (layer, handle) = axum_prometheus::PrometheusMetricLayer::pair();
                let app = routes()
                    .route("/metrics", get(move || async move { handle.render() }))
                    .layer(layer);
                serve(listener, app, options.seconds).await
            }
        }
    })?;
    drop(metrics);
    drop(watchdog);
    harvester.shutdown(Duration::from_secs(5))?;
    Ok(())
}

/// Serves `service` on `listener`, for `seconds` when given, else until it fails.
async fn serve<S>(
    listener: tokio::net::TcpListener,
    service: S,
    seconds: Option<u64>,
) -> Result<(), Box<dyn std::error::Error>>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    let serve = axum::serve(listener, service.into_make_service());
    match seconds {
        Some(seconds) => {
            tokio::select! {
                served = serve => served?,
                () = tokio::time::sleep(Duration::from_secs(seconds)) => {}
            }
        }
        None => serve.await?,
    }
    Ok(())
}
