//! The watchdog with a real axum server on loopback and a real HTTP client (ureq): a slow
//! CPU-bound request (stack naming the slow function), a request parked on an await (route
//! and spans, no stack), their completion reports, the counter and the files.

use std::net::SocketAddr;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use sampler_adapter_http::{Groups, HttpMetrics};
use sampler_adapter_watchdog::{Event, EventKind, Outcome, Stack, Watchdog};
use sampler_api::{Harvester, Registry, Value};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

/// Busy on the CPU for `ms` milliseconds, in a function with a name found nowhere else.
#[inline(never)]
fn r16_burn_cpu_in_a_distinctly_named_function(ms: u64) -> u64 {
    let until = Instant::now() + Duration::from_millis(ms);
    let mut x = 1u64;
    while Instant::now() < until {
        for _ in 0..1000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
    x
}

/// The watchdog's log lines (level and message), kept by [`LogCapture`].
static LOG: Mutex<Vec<(tracing::Level, String)>> = Mutex::new(Vec::new());

/// Keeps the events of target `sampler_adapter_watchdog`.
struct LogCapture;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LogCapture {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "message" {
                    self.0 = format!("{v:?}");
                }
            }
        }
        if event.metadata().target() == "sampler_adapter_watchdog" {
            let mut m = Message(String::new());
            event.record(&mut m);
            LOG.lock().unwrap().push((*event.metadata().level(), m.0));
        }
    }
}

/// The logged lines that mention `request_id`.
fn logged(request_id: &str) -> Vec<(tracing::Level, String)> {
    LOG.lock()
        .unwrap()
        .iter()
        .filter(|(_, m)| m.contains(request_id))
        .cloned()
        .collect()
}

/// One process-wide subscriber with the watchdog's span layer (it holds no state of its own)
/// and a layer keeping the watchdog's log.
fn install_subscriber() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let subscriber = tracing_subscriber::registry()
            .with(sampler_adapter_watchdog::SpanLayer)
            .with(LogCapture);
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
    });
}

struct Setup {
    registry: Registry,
    events: Receiver<Event>,
    dir: tempfile::TempDir,
    _watchdog: Watchdog,
    metrics: HttpMetrics,
}

fn setup(threshold: Duration) -> Setup {
    install_subscriber();
    let registry = Registry::new();
    let dir = tempfile::tempdir().unwrap();
    let (tx, events) = std::sync::mpsc::channel::<Event>();
    let tx: Mutex<Sender<Event>> = Mutex::new(tx);
    let watchdog = Watchdog::builder(&registry)
        .threshold(threshold)
        .dir(dir.path().join("slow"))
        .on_event(move |e| {
            let _ = tx.lock().unwrap().send(e.clone());
        })
        .start()
        .expect("watchdog");
    let metrics = HttpMetrics::new(
        &registry,
        Groups::new().prefix("/cpu", "cpu").prefix("/wait", "wait"),
    )
    .hook(watchdog.hook());
    Setup {
        registry,
        events,
        dir,
        _watchdog: watchdog,
        metrics,
    }
}

struct Server {
    addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

fn serve(metrics: &HttpMetrics) -> Server {
    let app = Router::new()
        .route(
            "/cpu/burn/{ms}",
            get(|Path(ms): Path<u64>| async move {
                let x = tracing::info_span!("crunch", rows = 42_u64)
                    .in_scope(|| r16_burn_cpu_in_a_distinctly_named_function(ms));
                format!("burnt {}", x % 10)
            }),
        )
        .route(
            "/wait/sleep/{ms}",
            get(|Path(ms): Path<u64>| async move {
                tokio::time::sleep(Duration::from_millis(ms))
                    .instrument(tracing::info_span!("wait_for_backend", backend = "db"))
                    .await;
                "slept"
            }),
        )
        .route("/cpu/fast", get(|| async { "fast" }))
        .layer(metrics.layer());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move { axum::serve(listener, app).await });
    Server {
        addr,
        runtime: Some(runtime),
    }
}

/// GET on another thread (the test thread watches the events meanwhile).
fn get_in_background(
    url: String,
    request_id: &'static str,
) -> std::thread::JoinHandle<(u16, String)> {
    std::thread::spawn(move || {
        let mut response = ureq::get(&url)
            .header("X-Request-Id", request_id)
            .call()
            .unwrap_or_else(|e| panic!("failed to GET {url}: {e}"));
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap();
        (status, body)
    })
}

fn next_event(events: &Receiver<Event>) -> Event {
    events
        .recv_timeout(Duration::from_secs(20))
        .expect("an event within 20 s")
}

fn slow_count(registry: &Registry, group: &str) -> u64 {
    let s = Harvester::builder()
        .registry(registry.clone())
        .build()
        .harvest_now();
    match s
        .find("http.server.slow_requests", &[("group", group)])
        .map(|x| x.value())
    {
        Some(Value::Counter(n)) => *n,
        _ => 0,
    }
}

fn files(dir: &std::path::Path) -> Vec<(std::path::PathBuf, String)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            (path, text)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn r16_a_slow_cpu_bound_request_is_reported_with_the_stack_of_its_thread() {
    let s = setup(Duration::from_millis(300));
    let server = serve(&s.metrics);
    let started = Instant::now();
    let client = get_in_background(format!("http://{}/cpu/burn/1500", server.addr), "r16-cpu-1");

    let slow = next_event(&s.events);
    assert_eq!(slow.kind, EventKind::Slow);
    println!(
        "the slow report came {:?} after the request",
        started.elapsed()
    );
    assert_eq!(
        (
            slow.request_id.as_str(),
            slow.group.as_str(),
            slow.method.as_str(),
            slow.path.as_str()
        ),
        ("r16-cpu-1", "cpu", "GET", "/cpu/burn/1500")
    );
    // Taken while it ran: past the threshold, before the 1.5 s of work ended.
    assert!(
        slow.elapsed >= Duration::from_millis(300),
        "{:?}",
        slow.elapsed
    );
    assert!(
        slow.elapsed < Duration::from_millis(1500),
        "{:?}",
        slow.elapsed
    );
    assert!(
        slow.spans.iter().any(|x| x == "crunch{rows=42}"),
        "{:?}",
        slow.spans
    );
    let text = slow.to_string();
    match &slow.stack {
        Stack::Running { frames, pause, .. } => {
            assert!(
                frames
                    .iter()
                    .flat_map(|f| &f.symbols)
                    .any(|s| s
                        .contains("axum_watchdog::r16_burn_cpu_in_a_distinctly_named_function")),
                "{text}"
            );
            assert!(*pause < Duration::from_millis(100), "{pause:?}");
        }
        other => panic!("expected the running thread's stack, got {other:?}\n{text}"),
    }
    println!("{text}");

    let (status, body) = client.join().unwrap();
    assert_eq!((status, body.starts_with("burnt")), (200, true));
    let ended = next_event(&s.events);
    assert_eq!(ended.kind, EventKind::Ended(Outcome::Status(200)));
    assert_eq!(ended.request_id, "r16-cpu-1");
    assert!(
        ended.elapsed >= Duration::from_millis(1500),
        "{:?}",
        ended.elapsed
    );
    println!("{ended}");

    let log = logged("r16-cpu-1");
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[0].0, tracing::Level::WARN);
    assert!(log[0]
        .1
        .contains("r16_burn_cpu_in_a_distinctly_named_function"));
    assert_eq!(log[1].0, tracing::Level::INFO);
    assert!(log[1].1.contains("completed with status 200"));

    assert_eq!(slow_count(&s.registry, "cpu"), 1);
    assert_eq!(slow_count(&s.registry, "wait"), 0);
    let written = files(&s.dir.path().join("slow"));
    assert_eq!(written.len(), 1, "{written:?}");
    let (path, contents) = &written[0];
    assert_eq!(Some(path), slow.file.as_ref());
    assert!(path
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .ends_with("-r16-cpu-1.txt"));
    assert!(
        contents.contains("r16_burn_cpu_in_a_distinctly_named_function"),
        "{contents}"
    );
    assert!(
        contents.contains("completed with status 200 after 1."),
        "{contents}"
    );
}

#[test]
fn r16_a_slow_request_parked_on_an_await_is_reported_with_its_route_and_spans_and_no_stack() {
    let s = setup(Duration::from_millis(300));
    let server = serve(&s.metrics);
    // Keep the runtime's threads busy with other work meanwhile, so that a stack taken of a
    // worker by mistake would show up.
    let fast: Vec<_> = (0..3)
        .map(|_| get_in_background(format!("http://{}/cpu/fast", server.addr), "fast"))
        .collect();
    let client = get_in_background(
        format!("http://{}/wait/sleep/1200", server.addr),
        "r16-wait-1",
    );

    let slow = next_event(&s.events);
    assert_eq!(slow.kind, EventKind::Slow);
    assert_eq!(
        (
            slow.request_id.as_str(),
            slow.group.as_str(),
            slow.path.as_str()
        ),
        ("r16-wait-1", "wait", "/wait/sleep/1200")
    );
    assert!(
        slow.spans
            .iter()
            .any(|x| x == "wait_for_backend{backend=db}"),
        "{:?}",
        slow.spans
    );
    assert!(matches!(slow.stack, Stack::Parked), "{slow}");
    assert!(slow.to_string().contains("parked on an await"));
    println!("{slow}");

    assert_eq!(client.join().unwrap(), (200, "slept".to_string()));
    for f in fast {
        assert_eq!(f.join().unwrap().0, 200);
    }
    let ended = next_event(&s.events);
    assert_eq!(ended.kind, EventKind::Ended(Outcome::Status(200)));
    assert!(ended.elapsed >= Duration::from_millis(1200));
    assert_eq!(slow_count(&s.registry, "wait"), 1);
    let written = files(&s.dir.path().join("slow"));
    assert_eq!(written.len(), 1);
    assert!(written[0].1.contains("parked on an await"));
    assert!(written[0].1.contains("wait_for_backend{backend=db}"));
    // No other event: the fast requests were never slow.
    assert!(s.events.recv_timeout(Duration::from_millis(100)).is_err());
}

#[test]
fn r16_a_slow_request_cancelled_by_its_caller_is_reported_as_cancelled() {
    use tower::{Layer, Service, ServiceExt};
    let s = setup(Duration::from_millis(100));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut svc = s
        .metrics
        .layer()
        .layer(tower::service_fn(|_req: http::Request<()>| async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        }));
    let events = &s.events;
    let slow = rt.block_on(async {
        let request = http::Request::get("/wait/forever").body(()).unwrap();
        let mut future = Box::pin(svc.ready().await.unwrap().call(request));
        let slow = loop {
            tokio::select! {
                _ = &mut future => panic!("no response was expected"),
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
            if let Ok(e) = events.try_recv() {
                break e;
            }
        };
        drop(future);
        slow
    });
    assert_eq!(slow.kind, EventKind::Slow);
    assert_eq!(slow.group, "wait");
    assert_eq!(
        slow.request_id.len(),
        16,
        "a made-up id: {}",
        slow.request_id
    );
    let ended = next_event(&s.events);
    assert_eq!(ended.kind, EventKind::Ended(Outcome::Cancelled));
    assert_eq!(ended.request_id, slow.request_id);
    let written = files(&s.dir.path().join("slow"));
    assert!(
        written[0].1.contains(": cancelled after "),
        "{}",
        written[0].1
    );
}

#[test]
fn r16_a_directory_that_cannot_be_made_is_an_error_naming_it() {
    let registry = Registry::new();
    let file = tempfile::NamedTempFile::new().unwrap();
    let dir = file.path().join("below-a-file");
    let error = Watchdog::builder(&registry).dir(&dir).start().unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "failed to create the slow request directory {}:",
            dir.display()
        )),
        "{message}"
    );
}
