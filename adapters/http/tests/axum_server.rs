//! The layer in a real axum server on loopback, driven by a real HTTP client (ureq).

use std::io::Read;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http_body::Frame;
use sampler_adapter_http::{Groups, HttpMetrics};
use sampler_api::{Harvester, Registry, Snapshot, Value};

mod support;
use support::{serve, Server};

/// A body of `left` bytes in 64 KiB chunks, made as fast as the client reads.
struct Endless {
    left: u64,
}

impl http_body::Body for Endless {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        static CHUNK: [u8; 65536] = [b'x'; 65536];
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(CHUNK.len() as u64);
        self.left -= n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
            &CHUNK[..n as usize],
        )))))
    }
}

/// The long request's length, and when its handler started and ended, as the server saw them.
const LONG_MS: u64 = 1200;
static LONG: std::sync::Mutex<Option<(Instant, Instant)>> = std::sync::Mutex::new(None);

fn start(metrics: &HttpMetrics) -> Server {
    let app = Router::new()
        .route("/api/fast", get(|| async { "ok" }))
        .route(
            "/api/slow/{ms}",
            get(|Path(ms): Path<u64>| async move {
                let started = Instant::now();
                tokio::time::sleep(Duration::from_millis(ms)).await;
                if ms == LONG_MS {
                    *LONG.lock().unwrap() = Some((started, Instant::now()));
                }
                "done"
            }),
        )
        .route(
            "/api/missing",
            get(|| async { (StatusCode::NOT_FOUND, "nope") }),
        )
        .route(
            "/api/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "fail") }),
        )
        .route("/admin/echo", post(|body: String| async move { body }))
        .route(
            "/stream",
            get(|| async { Body::new(Endless { left: 1 << 30 }) }),
        )
        .layer(metrics.layer());
    serve(app, 2)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

fn groups() -> Groups {
    Groups::new()
        .prefix("/api", "api")
        .prefix("/admin", "admin")
}

fn counter(s: &Snapshot, name: &str, labels: &[(&str, &str)]) -> u64 {
    match s.find(name, labels).map(|series| series.value()) {
        Some(Value::Counter(n)) => *n,
        _ => 0,
    }
}

fn gauge(s: &Snapshot, name: &str, labels: &[(&str, &str)]) -> f64 {
    match s.find(name, labels).map(|series| series.value()) {
        Some(Value::Gauge(v)) => *v,
        other => panic!("no gauge {name} {labels:?}: {other:?}"),
    }
}

/// Harvests until `done` holds, for at most 5 s; returns the last snapshot.
fn harvest_until(
    harvester: &Harvester,
    what: &str,
    done: impl Fn(&Snapshot) -> bool,
) -> Arc<Snapshot> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = harvester.harvest_now();
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn r16_counts_by_group_method_and_status_class() {
    let registry = Registry::new();
    let metrics = HttpMetrics::new(&registry, groups());
    let server = start(&metrics);
    let base = format!("http://{}", server.addr);
    let agent = agent();
    for _ in 0..3 {
        let mut r = agent.get(format!("{base}/api/fast")).call().expect("fast");
        assert_eq!(r.body_mut().read_to_string().expect("body"), "ok");
    }
    for _ in 0..2 {
        let r = agent
            .get(format!("{base}/api/missing"))
            .call()
            .expect("missing");
        assert_eq!(r.status(), 404);
    }
    let r = agent.get(format!("{base}/api/fail")).call().expect("fail");
    assert_eq!(r.status(), 500);
    let mut r = agent
        .post(format!("{base}/admin/echo"))
        .send("hello")
        .expect("echo");
    assert_eq!(r.body_mut().read_to_string().expect("body"), "hello");
    let r = agent
        .get(format!("{base}/no/such/route"))
        .call()
        .expect("404");
    assert_eq!(r.status(), 404);

    let harvester = Harvester::builder().registry(registry.clone()).build();
    let s = harvest_until(&harvester, "eight requests", |s| {
        s.named("http.server.requests")
            .map(|x| match x.value() {
                Value::Counter(n) => *n,
                _ => 0,
            })
            .sum::<u64>()
            == 8
    });
    let req = "http.server.requests";
    let api = |m, c| [("group", "api"), ("method", m), ("status_class", c)];
    assert_eq!(counter(&s, req, &api("GET", "2xx")), 3);
    assert_eq!(counter(&s, req, &api("GET", "4xx")), 2);
    assert_eq!(counter(&s, req, &api("GET", "5xx")), 1);
    let admin = [
        ("group", "admin"),
        ("method", "POST"),
        ("status_class", "2xx"),
    ];
    assert_eq!(counter(&s, req, &admin), 1);
    let unmatched = [
        ("group", "unmatched"),
        ("method", "GET"),
        ("status_class", "4xx"),
    ];
    assert_eq!(counter(&s, req, &unmatched), 1);
    // Bodies: "ok" ×3, "nope" ×2, "fail" in api; "hello" both ways in admin.
    let out = "http.server.response.body.size";
    assert_eq!(counter(&s, out, &[("group", "api")]), 3 * 2 + 2 * 4 + 4);
    assert_eq!(counter(&s, out, &[("group", "admin")]), 5);
    let inb = "http.server.request.body.size";
    assert_eq!(counter(&s, inb, &[("group", "admin")]), 5);
    for group in ["api", "admin", "unmatched"] {
        let active = gauge(&s, "http.server.active_requests", &[("group", group)]);
        assert_eq!(active, 0.0, "{group}");
    }
}

#[test]
fn r16_latency_is_within_bounds() {
    let registry = Registry::new();
    let metrics = HttpMetrics::new(&registry, groups());
    let server = start(&metrics);
    let agent = agent();
    let mut client_times = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let mut r = agent
            .get(format!("http://{}/api/slow/200", server.addr))
            .call()
            .expect("slow");
        assert_eq!(r.body_mut().read_to_string().expect("body"), "done");
        client_times.push(started.elapsed().as_secs_f64());
    }
    let harvester = Harvester::builder().registry(registry.clone()).build();
    let s = harvest_until(&harvester, "three timings", |s| {
        matches!(s.find("http.server.duration", &[("group", "api")]).map(|x| x.value()),
                 Some(Value::Timing(d)) if d.count() == 3)
    });
    let Some(Value::Timing(d)) = s
        .find("http.server.duration", &[("group", "api")])
        .map(|x| x.value())
    else {
        unreachable!("checked above")
    };
    let slowest_client = client_times.iter().cloned().fold(0.0, f64::max);
    assert!(d.min() >= 0.200, "min {}", d.min());
    // The server's time is inside the client's (plus a little for the guard's drop after the
    // last byte), and far below it plus 100 ms.
    assert!(
        d.max() <= slowest_client + 0.1,
        "max {} client {slowest_client}",
        d.max()
    );
    assert!(d.max() < 0.5, "max {}", d.max());
}

#[test]
fn r16_queue_time_from_each_header_form() {
    let registry = Registry::new();
    let metrics = HttpMetrics::new(&registry, groups());
    let server = start(&metrics);
    let agent = agent();
    let url = format!("http://{}/api/fast", server.addr);
    let queued = Duration::from_millis(250);
    type Form = fn(Duration) -> String;
    let forms: [(&str, Form); 6] = [
        ("X-Request-Start", |t| format!("t={:.6}", t.as_secs_f64())),
        ("X-Request-Start", |t| format!("{:.3}", t.as_secs_f64())),
        ("X-Request-Start", |t| format!("{}", t.as_millis())),
        ("X-Request-Start", |t| format!("t={}", t.as_millis())),
        ("X-Request-Start", |t| format!("t={}", t.as_micros())),
        ("X-Queue-Start", |t| format!("{}", t.as_micros())),
    ];
    for (header, form) in forms {
        let sent = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() - queued;
        let r = agent
            .get(&url)
            .header(header, form(sent))
            .call()
            .expect("fast");
        assert_eq!(r.status(), 200);
    }
    // A malformed and a future value are not recorded.
    for bad in ["t=soon", "99999999999999999999999999"] {
        agent
            .get(&url)
            .header("X-Request-Start", bad)
            .call()
            .expect("fast");
    }
    let s = Harvester::builder()
        .registry(registry.clone())
        .build()
        .harvest_now();
    let Some(Value::Timing(d)) = s
        .find("http.server.queue_time", &[("group", "api")])
        .map(|x| x.value())
    else {
        panic!("no queue time series")
    };
    assert_eq!(d.count(), 6);
    // Millisecond forms may be up to 1 ms short; a loopback request takes well under 250 ms.
    assert!(d.min() >= 0.249, "min {}", d.min());
    assert!(d.max() < 0.5, "max {}", d.max());
}

#[test]
fn r16_utilisation_of_a_known_load() {
    let registry = Registry::new();
    let metrics = HttpMetrics::new(&registry, groups()).capacity(4.0);
    let server = start(&metrics);
    let harvester = Harvester::builder().registry(registry.clone()).build();
    let addr = server.addr;
    harvester.harvest_now(); // starts the interval
    let t0 = Instant::now();
    let clients: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                agent()
                    .get(format!("http://{addr}/api/slow/500"))
                    .call()
                    .expect("slow")
                    .body_mut()
                    .read_to_string()
                    .expect("body")
            })
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().expect("client"), "done");
    }
    std::thread::sleep(Duration::from_secs(1).saturating_sub(t0.elapsed()));
    let s = harvester.harvest_now();
    let busy = gauge(&s, "http.server.busy", &[("group", "api")]);
    assert!((busy - 1.0).abs() <= 0.1, "busy {busy}");
    let used = gauge(&s, "http.server.capacity.utilization", &[("group", "api")]);
    assert!((used - 0.25).abs() <= 0.025, "utilization {used}");
    assert_eq!(gauge(&s, "http.server.busy", &[("group", "admin")]), 0.0);
}

#[test]
fn r16_a_long_request_counts_in_each_interval_it_spans() {
    let registry = Registry::new();
    let metrics = HttpMetrics::new(&registry, groups());
    let server = start(&metrics);
    let harvester = Harvester::builder().registry(registry.clone()).build();
    let addr = server.addr;
    let client = std::thread::spawn(move || {
        agent()
            .get(format!("http://{addr}/api/slow/{LONG_MS}"))
            .call()
            .expect("slow")
            .body_mut()
            .read_to_string()
            .expect("body")
    });
    // The interval starts once the request is in flight (the server's count says so), so the
    // request covers the whole first interval however late the client connected.
    harvest_until(&harvester, "the long request to be in flight", |s| {
        gauge(s, "http.server.active_requests", &[("group", "api")]) == 1.0
    });
    let h0 = Instant::now();
    std::thread::sleep(Duration::from_millis(600));
    let h1 = Instant::now();
    let first = gauge(
        &harvester.harvest_now(),
        "http.server.busy",
        &[("group", "api")],
    );
    assert_eq!(client.join().expect("client"), "done");
    let (_, ended) = LONG.lock().unwrap().expect("the handler's times");
    std::thread::sleep(Duration::from_millis(1800).saturating_sub(h0.elapsed()));
    let h2 = Instant::now();
    let second = gauge(
        &harvester.harvest_now(),
        "http.server.busy",
        &[("group", "api")],
    );
    // Busy for the whole first interval (it ended 1.2 s after the request began, which was
    // before h0); in the second, from h1 until the request ended (about 0.6 s of 1.2 s).
    assert!(
        ended > h1,
        "the request ended before the first interval did"
    );
    let expected = (ended - h1).as_secs_f64() / (h2 - h1).as_secs_f64();
    eprintln!("first {first}, second {second} (expected {expected:.3})");
    assert!((first - 1.0).abs() <= 0.1, "first interval busy {first}");
    assert!(
        (second - expected).abs() <= 0.1,
        "second interval busy {second}, expected {expected:.3}"
    );
}

#[test]
fn r16_a_client_that_drops_mid_body_does_not_leave_in_flight_high() {
    let registry = Registry::new();
    let metrics = HttpMetrics::new(&registry, Groups::new().default_group("web"));
    let server = start(&metrics);
    let harvester = Harvester::builder().registry(registry.clone()).build();
    let mut response = agent()
        .get(format!("http://{}/stream", server.addr))
        .call()
        .expect("stream");
    let mut first = vec![0u8; 256 * 1024];
    response
        .body_mut()
        .as_reader()
        .read_exact(&mut first)
        .expect("first part of the body");
    let s = harvester.harvest_now();
    assert_eq!(
        gauge(&s, "http.server.active_requests", &[("group", "web")]),
        1.0
    );
    drop(response); // closes the connection with most of the 1 GiB unsent
    let s = harvest_until(&harvester, "the in-flight count to fall", |s| {
        gauge(s, "http.server.active_requests", &[("group", "web")]) == 0.0
    });
    let done = [("group", "web"), ("method", "GET"), ("status_class", "2xx")];
    assert_eq!(counter(&s, "http.server.requests", &done), 1);
    let sent = counter(&s, "http.server.response.body.size", &[("group", "web")]);
    assert!((256 * 1024..1 << 30).contains(&sent), "sent {sent}");
}

#[test]
fn r16_groups_by_matched_route_template() {
    let registry = Registry::new();
    let metrics = HttpMetrics::new(
        &registry,
        Groups::new().matched_route().prefix("/admin", "admin"),
    );
    let app = Router::new()
        .route(
            "/users/{id}",
            get(|Path(id): Path<u32>| async move { format!("user {id}") }),
        )
        .route("/users/{id}/posts", get(|| async { "posts" }))
        .route("/admin/keys", get(|| async { "keys" }))
        .route("/health", get(|| async { "up" }))
        .layer(metrics.layer());
    let server = serve(app, 2);
    let base = format!("http://{}", server.addr);
    let agent = agent();
    for id in 1..=3 {
        let mut r = agent
            .get(format!("{base}/users/{id}"))
            .call()
            .expect("user");
        assert_eq!(
            r.body_mut().read_to_string().expect("body"),
            format!("user {id}")
        );
    }
    let r = agent
        .post(format!("{base}/users/9"))
        .send("x")
        .expect("post");
    assert_eq!(r.status(), 405, "a matched route with another method");
    agent
        .get(format!("{base}/users/7/posts"))
        .call()
        .expect("posts");
    agent
        .get(format!("{base}/admin/keys"))
        .call()
        .expect("keys");
    agent.get(format!("{base}/health")).call().expect("health");
    for path in ["/nope", "/users", "/users/1/posts/2"] {
        let r = agent.get(format!("{base}{path}")).call().expect("404");
        assert_eq!(r.status(), 404, "{path}");
    }

    let harvester = Harvester::builder().registry(registry.clone()).build();
    let s = harvest_until(&harvester, "ten requests", |s| {
        s.named("http.server.requests")
            .map(|x| match x.value() {
                Value::Counter(n) => *n,
                _ => 0,
            })
            .sum::<u64>()
            == 10
    });
    let req = "http.server.requests";
    let cell = |g, m, c| [("group", g), ("method", m), ("status_class", c)];
    assert_eq!(counter(&s, req, &cell("/users/{id}", "GET", "2xx")), 3);
    assert_eq!(counter(&s, req, &cell("/users/{id}", "POST", "4xx")), 1);
    assert_eq!(
        counter(&s, req, &cell("/users/{id}/posts", "GET", "2xx")),
        1
    );
    assert_eq!(
        counter(&s, req, &cell("admin", "GET", "2xx")),
        1,
        "the prefix rule wins"
    );
    assert_eq!(counter(&s, req, &cell("/health", "GET", "2xx")), 1);
    assert_eq!(counter(&s, req, &cell("unmatched", "GET", "4xx")), 3);
    // Raw paths never become groups; each route group has the per-group series too.
    let mut groups: Vec<String> = s
        .named(req)
        .filter_map(|x| x.labels().get("group").map(str::to_owned))
        .collect();
    groups.sort();
    groups.dedup();
    assert_eq!(
        groups,
        [
            "/health",
            "/users/{id}",
            "/users/{id}/posts",
            "admin",
            "unmatched"
        ]
    );
    for group in ["/users/{id}", "/users/{id}/posts", "/health"] {
        assert_eq!(
            gauge(&s, "http.server.active_requests", &[("group", group)]),
            0.0
        );
        gauge(&s, "http.server.busy", &[("group", group)]);
        match s
            .find("http.server.duration", &[("group", group)])
            .map(|x| x.value())
        {
            Some(Value::Timing(d)) => assert!(d.count() >= 1, "{group}"),
            other => panic!("duration of {group}: {other:?}"),
        }
    }
    // No counting allocator in this test program: no memory series.
    assert!(s.named("http.server.request.memory.peak").next().is_none());
}
