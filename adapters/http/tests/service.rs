//! The service in-process: a response future dropped before its response, a failing service.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use proptest::prelude::*;
use sampler_adapter_http::{parse_request_start, Groups, HttpMetrics};
use sampler_api::{Harvester, Registry, Snapshot, Value};
use tower::{service_fn, Layer, Service, ServiceExt};

fn counter(s: &Snapshot, labels: &[(&str, &str)]) -> u64 {
    match s.find("http.server.requests", labels).map(|x| x.value()) {
        Some(Value::Counter(n)) => *n,
        _ => 0,
    }
}

fn active(s: &Snapshot) -> f64 {
    match s
        .find("http.server.active_requests", &[("group", "unmatched")])
        .map(|x| x.value())
    {
        Some(Value::Gauge(v)) => *v,
        other => panic!("no gauge: {other:?}"),
    }
}

#[test]
fn r16_a_future_dropped_before_its_response_counts_as_cancelled() {
    let registry = Registry::new();
    let metrics = HttpMetrics::new(&registry, Groups::new());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut svc = metrics.layer().layer(service_fn(|_req: Request<()>| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"late"))))
    }));
    let harvester = Harvester::builder().registry(registry.clone()).build();
    rt.block_on(async {
        let mut future = Box::pin(svc.ready().await.unwrap().call(Request::new(())));
        tokio::select! {
            _ = &mut future => panic!("the response came before an hour passed"),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        assert_eq!(active(&harvester.harvest_now()), 1.0);
        drop(future);
    });
    let s = harvester.harvest_now();
    assert_eq!(active(&s), 0.0);
    let labels = [
        ("group", "unmatched"),
        ("method", "GET"),
        ("status_class", "cancelled"),
    ];
    assert_eq!(counter(&s, &labels), 1);
}

#[test]
fn r16_a_failing_service_counts_as_error() {
    let registry = Registry::new();
    let metrics = HttpMetrics::new(&registry, Groups::new().default_group("web"));
    let svc = metrics.layer().layer(service_fn(|_req: Request<()>| async {
        Err::<Response<Full<Bytes>>, _>("backend down")
    }));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let request = Request::delete("/x").body(()).unwrap();
    assert!(rt.block_on(svc.oneshot(request)).is_err());
    let s = Harvester::builder()
        .registry(registry)
        .build()
        .harvest_now();
    let labels = [
        ("group", "web"),
        ("method", "DELETE"),
        ("status_class", "error"),
    ];
    assert_eq!(counter(&s, &labels), 1);
}

#[test]
fn r16_unknown_methods_fold_into_other() {
    let registry = Registry::new();
    let metrics = HttpMetrics::new(&registry, Groups::new());
    let svc = metrics.layer().layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    }));
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for method in ["PURGE", "BREW", "GET"] {
        let request = Request::builder().method(method).uri("/").body(()).unwrap();
        let response = rt.block_on(svc.clone().oneshot(request)).unwrap();
        let body = rt.block_on(response.into_body().collect()).unwrap();
        assert_eq!(body.to_bytes(), "ok");
    }
    let s = Harvester::builder()
        .registry(registry)
        .build()
        .harvest_now();
    let other = [
        ("group", "unmatched"),
        ("method", "_OTHER"),
        ("status_class", "2xx"),
    ];
    assert_eq!(counter(&s, &other), 2);
    let get = [
        ("group", "unmatched"),
        ("method", "GET"),
        ("status_class", "2xx"),
    ];
    assert_eq!(counter(&s, &get), 1);
    assert_eq!(s.named("http.server.requests").count(), 2);
}

#[test]
fn groups_match_on_segment_boundaries() {
    let groups = Groups::new()
        .prefix("/api/", "api")
        .prefix("/api/admin", "admin")
        .prefix("/", "root");
    assert_eq!(groups.group_of("/api"), "api");
    assert_eq!(groups.group_of("/api/admin"), "admin");
    assert_eq!(groups.group_of("/api/administrator"), "api");
    assert_eq!(groups.group_of("/apis"), "root");
    assert_eq!(Groups::new().group_of("/anything"), "unmatched");
}

proptest! {
    #[test]
    fn request_start_parsing_never_panics(value in any::<String>()) {
        let _ = parse_request_start(&value);
    }

    #[test]
    fn request_start_units_agree(ms in 1_000_000_000_000u64..4_000_000_000_000u64) {
        let want = Duration::from_millis(ms).as_secs_f64();
        for form in [
            format!("{}.{:03}", ms / 1000, ms % 1000),
            format!("t={ms}"),
            format!("{}", ms * 1000),
            format!("t={}", ms as u128 * 1_000_000),
        ] {
            let got = parse_request_start(&form).expect("parses").as_secs_f64();
            prop_assert!((got - want).abs() < 1e-3, "{form} -> {got}, want {want}");
        }
    }
}

/// A hook that logs every call, with the thread of each poll.
#[derive(Debug, Default)]
struct Recorder(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

struct Followed(String, std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl sampler_adapter_http::RequestHook for Recorder {
    fn start(
        &self,
        request: &sampler_adapter_http::RequestStart<'_>,
    ) -> Option<std::sync::Arc<dyn sampler_adapter_http::InFlight>> {
        let name = format!(
            "{} {} {}",
            request.group,
            request.method,
            request.uri.path()
        );
        self.0.lock().unwrap().push(format!("start {name}"));
        Some(std::sync::Arc::new(Followed(name, self.0.clone())))
    }
}

impl sampler_adapter_http::InFlight for Followed {
    fn enter(&self) {
        self.1.lock().unwrap().push("enter".into());
    }
    fn exit(&self) {
        self.1.lock().unwrap().push("exit".into());
    }
    fn end(self: std::sync::Arc<Self>, outcome: sampler_adapter_http::Outcome, _took: Duration) {
        self.1
            .lock()
            .unwrap()
            .push(format!("end {} {outcome:?}", self.0));
    }
}

#[test]
fn r16_the_hook_sees_each_poll_enclosed_and_the_end_after_the_body() {
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let registry = Registry::new();
    let metrics = HttpMetrics::new(&registry, Groups::new().prefix("/api", "api"))
        .hook(std::sync::Arc::new(Recorder(log.clone())));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut svc = metrics.layer().layer(service_fn(|_req: Request<()>| async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    }));
    rt.block_on(async {
        let request = Request::get("/api/x").body(()).unwrap();
        let response = svc.ready().await.unwrap().call(request).await.unwrap();
        assert_eq!(log.lock().unwrap().last().unwrap(), "exit");
        response.into_body().collect().await.unwrap();
    });
    let log = log.lock().unwrap().clone();
    assert_eq!(log[0], "start api GET /api/x");
    assert_eq!(log.last().unwrap(), "end api GET /api/x Status(200)");
    // Between start and end: enter/exit pairs only, never nested, one per poll (call, two
    // polls of the future around the sleep, the body's frame and its end).
    let middle = &log[1..log.len() - 1];
    assert!(middle.len() >= 6, "{log:?}");
    for pair in middle.chunks(2) {
        assert_eq!(pair, ["enter", "exit"], "{log:?}");
    }
}
