//! Per-request memory: the counting allocator installed in this test program, the layer in a
//! real axum server on loopback (a multi-thread runtime), a real HTTP client (ureq).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use sampler_adapter_alloc::CountingAllocator;
use sampler_adapter_http::{Groups, HttpMetrics};
use sampler_api::{Distribution, Harvester, Registry, Snapshot, Value};

mod support;
use support::{serve, Server};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator::system();

/// The hungry route keeps this many chunks of `CHUNK` bytes alive until it answers.
const STEPS: usize = 8;
const CHUNK: usize = 256 * 1024;

/// Allocates `STEPS` chunks, one per poll, and between them waits to be woken from another
/// thread while the worker it ran on is kept busy, so it resumes on another worker. Answers
/// the number of distinct threads it ran on.
async fn hungry() -> String {
    let mut kept: Vec<Vec<u8>> = Vec::with_capacity(STEPS);
    let mut threads = HashSet::new();
    for step in 0..STEPS {
        threads.insert(std::thread::current().id());
        kept.push(vec![step as u8; CHUNK]);
        if step + 1 == STEPS {
            break;
        }
        // The blocker lands in this worker's LIFO slot (which other workers cannot steal)
        // and runs as soon as this task yields, keeping this worker busy; the wake-up comes
        // from a plain thread, so it goes to the shared queue and another worker takes it.
        tokio::spawn(async { std::thread::sleep(Duration::from_millis(30)) });
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(3));
            let _ = tx.send(());
        });
        rx.await.expect("waker thread");
    }
    let sum: u64 = kept.iter().map(|c| u64::from(c[0])).sum();
    format!("{} {sum}", threads.len())
}

fn start(metrics: &HttpMetrics) -> Server {
    let app = Router::new()
        .route("/fast", get(|| async { "ok" }))
        .route("/reports/hungry", get(hungry))
        .layer(metrics.layer());
    serve(app, 4)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

fn timing<'a>(s: &'a Snapshot, name: &str, group: &str) -> Option<&'a Distribution> {
    match s.find(name, &[("group", group)]).map(|x| x.value()) {
        Some(Value::Timing(d)) => Some(d),
        _ => None,
    }
}

/// Harvests until `done` holds, for at most 10 s; returns the last snapshot.
fn harvest_until(
    harvester: &Harvester,
    what: &str,
    done: impl Fn(&Snapshot) -> bool,
) -> Arc<Snapshot> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = harvester.harvest_now();
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

const ALLOCATED: &str = "http.server.request.memory.allocated";
const PEAK: &str = "http.server.request.memory.peak";

#[test]
fn r16_memory_singles_out_the_hungry_route_across_thread_migrations() {
    let registry = Registry::new();
    let groups = Groups::new()
        .prefix("/fast", "fast")
        .prefix("/reports", "reports");
    let metrics = HttpMetrics::new(&registry, groups);
    let server = start(&metrics);
    let addr = server.addr;
    const HUNGRY: usize = 3;
    const FAST: usize = 40;

    // Fast requests run beside the hungry ones, on the same workers.
    let fast = std::thread::spawn(move || {
        let agent = agent();
        for _ in 0..FAST {
            let mut r = agent
                .get(format!("http://{addr}/fast"))
                .call()
                .expect("fast");
            assert_eq!(r.body_mut().read_to_string().expect("body"), "ok");
        }
    });
    let agent = agent();
    let mut migrated = 0;
    for _ in 0..HUNGRY {
        let mut r = agent
            .get(format!("http://{addr}/reports/hungry"))
            .call()
            .expect("hungry");
        let body = r.body_mut().read_to_string().expect("body");
        let threads: usize = body
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("answer");
        assert_eq!(body, format!("{threads} 28"));
        if threads > 1 {
            migrated += 1;
        }
    }
    fast.join().expect("fast client");
    assert!(
        migrated == HUNGRY,
        "each hungry request must resume on another worker thread; {migrated} of {HUNGRY} did"
    );

    let harvester = Harvester::builder().registry(registry.clone()).build();
    let s = harvest_until(&harvester, "every request's memory", |s| {
        timing(s, PEAK, "reports").is_some_and(|d| d.count() == HUNGRY as u64)
            && timing(s, PEAK, "fast").is_some_and(|d| d.count() == FAST as u64)
    });
    let held = (STEPS * CHUNK) as f64;
    let hungry_peak = timing(&s, PEAK, "reports").expect("reports peak");
    let hungry_allocated = timing(&s, ALLOCATED, "reports").expect("reports allocated");
    let fast_peak = timing(&s, PEAK, "fast").expect("fast peak");
    let fast_allocated = timing(&s, ALLOCATED, "fast").expect("fast allocated");
    eprintln!(
        "peak per request: reports {:.0}..{:.0} B, fast {:.0}..{:.0} B; allocated: reports {:.0}..{:.0} B, fast {:.0}..{:.0} B",
        hungry_peak.min(), hungry_peak.max(), fast_peak.min(), fast_peak.max(),
        hungry_allocated.min(), hungry_allocated.max(), fast_allocated.min(), fast_allocated.max()
    );
    // Every chunk counted, including those allocated after the task moved to another thread
    // (timings keep values to within their stated relative error: 1/8 of a power of two
    // at scale 3, so compare with a 10 % margin).
    assert!(
        hungry_peak.min() >= held * 0.9,
        "hungry peak {}",
        hungry_peak.min()
    );
    assert!(
        hungry_allocated.min() >= held * 0.9,
        "hungry allocated {}",
        hungry_allocated.min()
    );
    // ...and not much more: the chunks are what it holds.
    assert!(
        hungry_peak.max() <= held * 1.25,
        "hungry peak {}",
        hungry_peak.max()
    );
    // The fast route's requests, served on the same threads meanwhile, got none of it.
    assert!(
        fast_peak.max() < 64.0 * 1024.0,
        "fast peak {}",
        fast_peak.max()
    );
    assert!(
        fast_allocated.max() < 64.0 * 1024.0,
        "fast allocated {}",
        fast_allocated.max()
    );
    assert!(
        fast_peak.min() > 0.0,
        "a fast request allocates something (its response)"
    );
}

#[test]
fn r16_memory_series_only_when_counted() {
    let registry = Registry::new();
    let metrics =
        HttpMetrics::new(&registry, Groups::new().default_group("web")).count_memory(false);
    let server = start(&metrics);
    let r = agent()
        .get(format!("http://{}/fast", server.addr))
        .call()
        .expect("fast");
    assert_eq!(r.status(), 200);
    let harvester = Harvester::builder().registry(registry.clone()).build();
    let s = harvest_until(&harvester, "the request", |s| {
        timing(s, "http.server.duration", "web").is_some_and(|d| d.count() == 1)
    });
    assert!(s.named(PEAK).next().is_none());
    assert!(s.named(ALLOCATED).next().is_none());
}
