//! What the exporter does when the receiver refuses, throttles, is away or never answers.

use std::time::{Duration, Instant};

use prost::Message;
use sampler_api::{Exporter, Snapshot};
use sampler_exporter_otlp::proto::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
};
use sampler_exporter_otlp::proto::metrics::v1::{metric::Data, number_data_point};
use sampler_exporter_otlp::{OtlpExporter, OtlpExporterBuilder, RetryConfig};

use crate::support::{free_port, Events, FakeReceiver, Reply, Seen};
use crate::{deadline, self_metric, Fixture};

/// Fast retries, so tests take milliseconds per attempt.
fn quick_retry() -> RetryConfig {
    RetryConfig {
        enabled: true,
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
        max_elapsed: Duration::from_secs(60),
    }
}

fn builder(url: &str, events: &Events) -> OtlpExporterBuilder {
    OtlpExporter::builder()
        .endpoint(url)
        .retry(quick_retry())
        .resource("service.name", "faults")
        .on_event(events.handler())
}

fn stat(e: &OtlpExporter, name: &str, result: &str) -> u64 {
    self_metric(e, name, &[("result", result)])
}

/// The value of the `queue.depth{queue=mail}` gauge carried in a request: each test sets it to
/// tell harvests apart.
fn marker(seen: &Seen) -> f64 {
    for rm in &seen.request.resource_metrics {
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                if let (true, Some(Data::Gauge(g))) = (m.name == "queue.depth", &m.data) {
                    for p in &g.data_points {
                        if p.attributes.iter().any(|a| a.key == "queue")
                            && format!("{:?}", p.attributes).contains("mail")
                        {
                            if let Some(number_data_point::Value::AsDouble(v)) = p.value {
                                return v;
                            }
                        }
                    }
                }
            }
        }
    }
    panic!("no marker in request")
}

fn harvest_marked(fx: &Fixture, n: f64) -> std::sync::Arc<Snapshot> {
    fx.depth.set(&["mail"], n);
    fx.harvest()
}

#[test]
fn r13_503_with_retry_after_then_200_arrives_once() {
    let rx = FakeReceiver::start(vec![Reply::Status(
        503,
        vec![("Retry-After".into(), "1".into())],
        b"busy".to_vec(),
    )]);
    let events = Events::default();
    let mut exporter = builder(&rx.url(), &events).build().unwrap();
    let fx = Fixture::new();
    let snap = harvest_marked(&fx, 1.0);
    exporter.export(snap.clone()).unwrap();
    exporter.flush(deadline(10)).expect("flush");
    let seen = rx.seen();
    assert_eq!(seen.len(), 2, "one 503, one retry");
    assert_eq!((seen[0].status, seen[1].status), (503, 200));
    // The same bytes, sent again after the second the receiver asked for (our own backoff
    // would have retried after 25 to 75 ms).
    assert_eq!(seen[0].wire, seen[1].wire);
    let waited = seen[1].at - seen[0].at;
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}"
    );
    assert_eq!(seen[1].header("content-encoding"), Some("gzip"));
    assert_eq!(
        seen[1].header("content-type"),
        Some("application/x-protobuf")
    );
    // Accepted exactly once, with every series.
    let points: usize = seen[1].request.resource_metrics[0].scope_metrics[0]
        .metrics
        .iter()
        .map(|m| match &m.data {
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Gauge(g)) => g.data_points.len(),
            Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(points, snap.len());
    assert_eq!(stat(&exporter, "sampler.exporter.otlp.requests", "sent"), 1);
    assert_eq!(
        self_metric(&exporter, "sampler.exporter.otlp.retries", &[]),
        1
    );
    assert_eq!(
        stat(&exporter, "sampler.exporter.otlp.points", "dropped"),
        0
    );
    let lines = events.lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!("otlp export to {} is failing: ", rx.url()))
            && lines[0].contains("HTTP 503"),
        "{lines:?}"
    );
    assert_eq!(
        lines[1],
        format!(
            "otlp export to {} recovered after 1 failed attempts",
            rx.url()
        )
    );
    exporter.shutdown(deadline(5)).unwrap();
}

#[test]
fn r13_retry_after_as_an_http_date_is_honoured() {
    let at = std::time::SystemTime::now() + Duration::from_secs(2);
    let rx = FakeReceiver::start(vec![Reply::Status(
        429,
        vec![("Retry-After".into(), httpdate::fmt_http_date(at))],
        Vec::new(),
    )]);
    let events = Events::default();
    let mut exporter = builder(&rx.url(), &events).build().unwrap();
    let fx = Fixture::new();
    exporter.export(fx.harvest()).unwrap();
    exporter.flush(deadline(10)).unwrap();
    let seen = rx.seen();
    assert_eq!(seen.len(), 2);
    // The date has whole seconds: at least 1 s from the first attempt.
    assert!(seen[1].at - seen[0].at >= Duration::from_millis(950));
    assert_eq!(seen[1].status, 200);
}

#[test]
fn r13_400_and_500_are_dropped_and_counted_never_retried() {
    let rx = FakeReceiver::start(vec![
        Reply::Status(400, Vec::new(), b"bad data".to_vec()),
        Reply::status(500),
    ]);
    let events = Events::default();
    let mut exporter = builder(&rx.url(), &events).build().unwrap();
    let fx = Fixture::new();
    let n = fx.harvest().len() as u64;
    exporter.export(harvest_marked(&fx, 1.0)).unwrap();
    exporter.export(harvest_marked(&fx, 2.0)).unwrap();
    exporter.flush(deadline(10)).unwrap();
    // The sender is idle: whatever it was going to send has been sent.
    let seen = rx.seen();
    assert_eq!(seen.len(), 2, "one attempt each, no retry");
    assert_eq!((marker(&seen[0]), marker(&seen[1])), (1.0, 2.0));
    assert_eq!(
        stat(&exporter, "sampler.exporter.otlp.requests", "failed"),
        2
    );
    assert_eq!(
        stat(&exporter, "sampler.exporter.otlp.points", "dropped"),
        2 * n
    );
    assert_eq!(
        self_metric(&exporter, "sampler.exporter.otlp.retries", &[]),
        0
    );
    // One line when it starts failing, not one per failure; one when it recovers.
    assert_eq!(events.lines().len(), 1, "{:?}", events.lines());
    assert!(events.lines()[0].contains("HTTP 400"));
    exporter.export(harvest_marked(&fx, 3.0)).unwrap();
    exporter.flush(deadline(10)).unwrap();
    assert_eq!(rx.seen().len(), 3);
    assert_eq!(
        events.lines()[1],
        format!(
            "otlp export to {} recovered after 2 failed attempts",
            rx.url()
        )
    );
}

#[test]
fn r13_partial_success_is_counted_and_not_retried() {
    let body = ExportMetricsServiceResponse {
        partial_success: Some(ExportMetricsPartialSuccess {
            rejected_data_points: 2,
            error_message: "2 points had no unit".into(),
        }),
    }
    .encode_to_vec();
    let rx = FakeReceiver::start(vec![Reply::Status(200, Vec::new(), body)]);
    let events = Events::default();
    let mut exporter = builder(&rx.url(), &events).build().unwrap();
    let fx = Fixture::new();
    let snap = fx.harvest();
    exporter.export(snap.clone()).unwrap();
    exporter.flush(deadline(10)).unwrap();
    assert_eq!(rx.seen().len(), 1);
    assert_eq!(
        stat(&exporter, "sampler.exporter.otlp.points", "rejected"),
        2
    );
    assert_eq!(
        stat(&exporter, "sampler.exporter.otlp.points", "sent"),
        snap.len() as u64 - 2
    );
    assert_eq!(
        events.lines(),
        vec![format!(
            "otlp receiver at {} rejected 2 data points: 2 points had no unit",
            rx.url()
        )]
    );
}

/// How long the receiver stays away (the issue asks for 30 s).
const AWAY: Duration = Duration::from_secs(30);

#[test]
fn r13_receiver_away_then_back_gets_every_buffered_harvest_in_order() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/v1/metrics");
    let events = Events::default();
    let mut exporter = builder(&url, &events)
        .retry(RetryConfig {
            max: Duration::from_secs(1),
            ..quick_retry()
        })
        .build()
        .unwrap();
    let fx = Fixture::new();
    let began = Instant::now();
    // Six harvests while nothing listens.
    for i in 1..=6 {
        exporter.export(harvest_marked(&fx, i as f64)).unwrap();
        std::thread::sleep(AWAY / 6);
    }
    assert!(began.elapsed() >= AWAY);
    assert_eq!(exporter.queued(), 6, "every harvest waits");
    assert_eq!(events.lines().len(), 1, "{:?}", events.lines());
    assert!(
        events.lines()[0].contains("is failing"),
        "{:?}",
        events.lines()
    );
    let rx = FakeReceiver::start_on(port, Vec::new());
    exporter.export(harvest_marked(&fx, 7.0)).unwrap();
    exporter
        .flush(deadline(20))
        .expect("flush after the receiver came back");
    let seen = rx.seen();
    let markers: Vec<f64> = seen.iter().map(marker).collect();
    assert_eq!(markers, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
    assert_eq!(stat(&exporter, "sampler.exporter.otlp.requests", "sent"), 7);
    assert_eq!(
        stat(&exporter, "sampler.exporter.otlp.points", "dropped"),
        0
    );
    assert_eq!(events.lines().len(), 2);
    assert!(
        events.lines()[1].contains("recovered after"),
        "{:?}",
        events.lines()
    );
}

#[test]
fn r13_a_full_queue_drops_the_oldest_and_counts_it() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/v1/metrics");
    let events = Events::default();
    let mut exporter = builder(&url, &events).queue_size(2).build().unwrap();
    let fx = Fixture::new();
    let n = fx.harvest().len() as u64;
    let mut errors = 0;
    for i in 1..=6 {
        if exporter.export(harvest_marked(&fx, i as f64)).is_err() {
            errors += 1;
        }
        // The first is taken by the sender (and retried) before the next comes.
        if i == 1 {
            let until = deadline(5);
            while exporter.queued() != 1 || events.lines().is_empty() {
                assert!(Instant::now() < until, "the sender never tried");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    // In flight: 1; waiting: 5 and 6; dropped: 2, 3 and 4.
    assert_eq!(errors, 3);
    assert_eq!(
        stat(&exporter, "sampler.exporter.otlp.requests", "dropped"),
        3
    );
    assert_eq!(
        stat(&exporter, "sampler.exporter.otlp.points", "dropped"),
        3 * n
    );
    let rx = FakeReceiver::start_on(port, Vec::new());
    exporter.flush(deadline(10)).unwrap();
    let markers: Vec<f64> = rx.seen().iter().map(marker).collect();
    assert_eq!(markers, vec![1.0, 5.0, 6.0]);
}

#[test]
fn r13_shutdown_with_the_receiver_black_holed_keeps_its_deadline() {
    let rx = FakeReceiver::start(Vec::new());
    rx.set_default(Reply::BlackHole);
    let events = Events::default();
    let mut exporter = builder(&rx.url(), &events)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let fx = Fixture::new();
    for i in 1..=3 {
        exporter.export(harvest_marked(&fx, i as f64)).unwrap();
    }
    rx.wait_for(1, Duration::from_secs(5));
    let started = Instant::now();
    let result = exporter.shutdown(started + Duration::from_secs(1));
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1300),
        "shutdown took {took:?} for a 1 s deadline"
    );
    let err = result.expect_err("nothing could be sent").to_string();
    assert!(
        err.starts_with(&format!("otlp shutdown for {}: deadline passed", rx.url())),
        "{err}"
    );
    // The black hole got the first request only: the rest waited behind it.
    assert_eq!(rx.seen().len(), 1);
}

#[test]
fn r13_a_large_harvest_is_split_under_max_request_size() {
    let rx = FakeReceiver::start(Vec::new());
    let events = Events::default();
    let limit = 32 * 1024;
    let mut exporter = builder(&rx.url(), &events)
        .max_request_size(limit)
        .build()
        .unwrap();
    let fx = Fixture::new();
    for i in 0..5000 {
        fx.requests
            .get(&["GET", format!("/item/{i}").as_str()])
            .add(i);
    }
    let snap = fx.harvest();
    exporter.export(snap.clone()).unwrap();
    exporter.flush(deadline(20)).unwrap();
    let seen = rx.seen();
    let total: usize = seen.iter().map(|s| s.body.len()).sum();
    assert!(total > 3 * limit, "{total} bytes in all");
    assert!(
        seen.len() >= total.div_ceil(limit),
        "{} requests",
        seen.len()
    );
    assert!(
        seen.iter().all(|s| s.body.len() <= limit),
        "sizes {:?}",
        seen.iter().map(|s| s.body.len()).collect::<Vec<_>>()
    );
    let points: usize = seen
        .iter()
        .flat_map(|s| &s.request.resource_metrics[0].scope_metrics[0].metrics)
        .map(|m| match &m.data {
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Gauge(g)) => g.data_points.len(),
            Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(points, snap.len());
    assert_eq!(
        stat(&exporter, "sampler.exporter.otlp.points", "sent"),
        snap.len() as u64
    );
}

#[test]
fn r13_grpc_shutdown_with_the_receiver_black_holed_keeps_its_deadline() {
    // Accepts connections and never says a word (not even the HTTP/2 handshake).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let h = held.clone();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            h.lock().unwrap().push(s);
        }
    });
    let events = Events::default();
    let mut exporter = builder(&format!("http://127.0.0.1:{port}"), &events)
        .protocol(sampler_exporter_otlp::Protocol::Grpc)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let fx = Fixture::new();
    exporter.export(harvest_marked(&fx, 1.0)).unwrap();
    let until = deadline(5);
    while held.lock().unwrap().is_empty() {
        assert!(Instant::now() < until, "the exporter never connected");
        std::thread::sleep(Duration::from_millis(5));
    }
    let started = Instant::now();
    let result = exporter.shutdown(started + Duration::from_secs(1));
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1300), "shutdown took {took:?}");
    assert!(result.is_err());
}

#[test]
fn r13_a_retry_after_past_the_retry_budget_gives_the_request_up_at_once() {
    let rx = FakeReceiver::start(vec![Reply::Status(
        503,
        vec![("Retry-After".into(), "99999999999999".into())],
        Vec::new(),
    )]);
    let events = Events::default();
    let mut exporter = builder(&rx.url(), &events).build().unwrap();
    let fx = Fixture::new();
    exporter.export(harvest_marked(&fx, 1.0)).unwrap();
    exporter.flush(deadline(5)).expect("given up, not waiting");
    assert_eq!(rx.seen().len(), 1);
    assert_eq!(
        stat(&exporter, "sampler.exporter.otlp.requests", "expired"),
        1
    );
    // The next harvest goes through as usual.
    exporter.export(harvest_marked(&fx, 2.0)).unwrap();
    exporter.flush(deadline(5)).unwrap();
    assert_eq!(rx.seen().len(), 2);
    assert_eq!(stat(&exporter, "sampler.exporter.otlp.requests", "sent"), 1);
}
