//! Remote write against the real receivers (Prometheus 2.42, VictoriaMetrics), and against a
//! loopback receiver that misbehaves on purpose.

#[path = "../../prometheus/tests/support/mod.rs"]
mod support;

// VictoriaMetrics on loopback, as the Graphite exporter's tests start it.
#[path = "../../graphite/tests/interop/support.rs"]
#[allow(dead_code)]
mod graphite_support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use sampler_api::{Descriptor, Exporter, Harvester, Registry};
use sampler_exporter_remote_write::proto::WriteRequest;
use sampler_exporter_remote_write::RemoteWriteExporter;
use serde_json::Value as Json;
use support::{free_port, poll, PrometheusServer};

static REQUESTS: Descriptor = Descriptor::counter("rwtest.requests", "1", "requests served");
static DEPTH: Descriptor = Descriptor::gauge("rwtest.depth", "1", "queue depth");
static LATENCY: Descriptor = Descriptor::timing("rwtest.latency", "s", "latency");
static CPU: Descriptor = Descriptor::fractional_counter("rwtest.cpu", "s", 1000, "cpu time");

/// Label values a naive encoder would break.
const HOSTILE: &[&str] = &[
    "plain",
    "quo\"te",
    "back\\slash",
    "new\nline",
    "naïve ☃ 日本",
];

struct Recorded {
    registry: Registry,
    _handles: Vec<Box<dyn std::any::Any>>,
}

/// A registry with one series of each kind, hostile label values among them.
fn recorded() -> Recorded {
    let registry = Registry::new();
    let req = registry.counter_family(&REQUESTS, &["path"]);
    for (i, v) in HOSTILE.iter().enumerate() {
        req.get(&[v]).add(10 + i as u64);
    }
    let depth = registry.gauge(&DEPTH);
    depth.set(-2.5);
    let lat = registry.timing(&LATENCY);
    for v in [0.1, 0.2, 0.4, 3.0] {
        lat.record(v);
    }
    let cpu = registry.counter(&CPU);
    cpu.add(1234);
    Recorded {
        registry,
        _handles: vec![Box::new(req), Box::new(depth), Box::new(lat), Box::new(cpu)],
    }
}

/// Harvests once through `exporter` and shuts down (which sends and flushes).
fn push_once(r: &Recorded, exporter: RemoteWriteExporter) {
    let h = Harvester::builder()
        .registry(r.registry.clone())
        .self_metrics(false)
        .exporter(exporter)
        .build();
    h.shutdown(Duration::from_secs(20))
        .expect("the harvest was sent");
}

fn expected() -> Vec<(String, BTreeMap<String, String>, f64)> {
    let l = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain([
                ("job".into(), "rw".into()),
                ("instance".into(), "i1".into()),
            ])
            .collect()
    };
    let mut v = Vec::new();
    for (i, p) in HOSTILE.iter().enumerate() {
        v.push((
            "rwtest_requests_total".to_owned(),
            l(&[("path", p)]),
            10.0 + i as f64,
        ));
    }
    v.push(("rwtest_depth".into(), l(&[]), -2.5));
    v.push(("rwtest_cpu_seconds_total".into(), l(&[]), 1.234));
    v.push(("rwtest_latency_seconds_count".into(), l(&[]), 4.0));
    v.push(("rwtest_latency_seconds_sum".into(), l(&[]), 3.7));
    v.push((
        "rwtest_latency_seconds_bucket".into(),
        l(&[("le", "0.25")]),
        2.0,
    ));
    v.push((
        "rwtest_latency_seconds_bucket".into(),
        l(&[("le", "0.5")]),
        3.0,
    ));
    v.push((
        "rwtest_latency_seconds_bucket".into(),
        l(&[("le", "+Inf")]),
        4.0,
    ));
    v
}

fn exporter_to(url: &str) -> RemoteWriteExporter {
    let mut c = sampler_exporter_remote_write::RemoteWriteConfig {
        url: url.to_owned(),
        job: "rw".into(),
        instance: "i1".into(),
        ..Default::default()
    };
    c.buckets = sampler_exporter_prometheus::Buckets::Explicit(vec![0.25, 0.5]);
    RemoteWriteExporter::from_config(c).expect("valid settings")
}

/// `(name, labels without __name__, value)` of a query API result element.
fn parse_result(v: &Json) -> (String, BTreeMap<String, String>, f64) {
    let mut labels: BTreeMap<String, String> = v["metric"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    let name = labels.remove("__name__").unwrap();
    let value = v["value"][1].as_str().unwrap().parse().unwrap();
    (name, labels, value)
}

#[test]
fn r13_prometheus_receives_every_series_with_labels_intact() {
    let prom = PrometheusServer::start_with(&[], &["--web.enable-remote-write-receiver"]);
    let r = recorded();
    push_once(&r, exporter_to(&format!("{}/api/v1/write", prom.url)));
    for (name, labels, value) in expected() {
        let selector: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap()))
            .collect();
        let expr = format!("{name}{{{}}}", selector.join(","));
        let got = prom.query_until(&expr);
        assert_eq!(got.len(), 1, "{expr}: {got:?}");
        let (n, l, v) = parse_result(&got[0]);
        assert_eq!((n.as_str(), &l), (name.as_str(), &labels), "{expr}");
        assert!((v - value).abs() < 1e-9, "{expr}: {v} != {value}");
    }
}

#[test]
fn r13_victoria_metrics_receives_every_series_with_labels_intact() {
    let vm = graphite_support::Victoria::start();
    let url = format!("http://127.0.0.1:{}", vm.http);
    let r = recorded();
    push_once(&r, exporter_to(&format!("{url}/api/v1/write")));
    let want = expected();
    let got = poll(
        Duration::from_secs(20),
        "every series in victoria-metrics",
        || {
            support::get(&format!("{url}/internal/force_flush"), &[]);
            let body = support::get_query(
                &format!("{url}/api/v1/query"),
                &[],
                &[("query", "{__name__=~\"rwtest_.*\"}")],
            )
            .body;
            let v: Json = serde_json::from_slice(&body).ok()?;
            let r = v["data"]["result"].as_array()?.clone();
            (r.len() >= want.len()).then_some(r)
        },
    );
    let mut got: Vec<_> = got.iter().map(parse_result).collect();
    got.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let mut want = want;
    want.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    assert_eq!(got.len(), want.len(), "{got:?}");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!((&g.0, &g.1), (&w.0, &w.1));
        assert!((g.2 - w.2).abs() < 1e-9, "{g:?} != {w:?}");
    }
}

/// What a scripted receiver does with each request, in turn (the last repeats).
#[derive(Clone, Copy, Debug)]
enum Answer {
    Ok,
    Status(u16, Option<&'static str>),
    /// Reads the request and never answers.
    Silent,
}

/// A loopback remote write receiver that answers as scripted and keeps what it got.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<(u16, WriteRequest, Instant)>>>,
}

impl Receiver {
    fn start(script: Vec<Answer>) -> Receiver {
        Self::on(TcpListener::bind("127.0.0.1:0").unwrap(), script)
    }

    fn on(listener: TcpListener, script: Vec<Answer>) -> Receiver {
        let url = format!("http://{}/api/v1/write", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let log = got.clone();
        std::thread::spawn(move || {
            for (n, conn) in listener.incoming().enumerate() {
                let Ok(conn) = conn else { return };
                let answer = script[n.min(script.len() - 1)];
                let log = log.clone();
                std::thread::spawn(move || serve(conn, answer, &log));
            }
        });
        Receiver { url, got }
    }

    fn accepted(&self) -> Vec<WriteRequest> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(s, _, _)| *s == 200)
            .map(|(_, w, _)| w.clone())
            .collect()
    }
}

fn serve(conn: TcpStream, answer: Answer, log: &Mutex<Vec<(u16, WriteRequest, Instant)>>) {
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let mut w = conn;
    // One request per connection is enough: answer with `Connection: close`.
    let mut len = 0;
    let mut encoding = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            match k.to_ascii_lowercase().as_str() {
                "content-length" => len = v.trim().parse().unwrap(),
                "content-encoding" => encoding = v.trim().to_owned(),
                _ => {}
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    assert_eq!(encoding, "snappy");
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&body)
        .expect("snappy");
    let req = WriteRequest::decode(&raw[..]).expect("a WriteRequest");
    let status = match answer {
        Answer::Ok => 200,
        Answer::Status(s, _) => s,
        Answer::Silent => 0,
    };
    log.lock().unwrap().push((status, req, Instant::now()));
    match answer {
        Answer::Silent => std::thread::sleep(Duration::from_secs(60)),
        Answer::Ok => {
            let _ =
                w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
        Answer::Status(s, retry) => {
            let extra = retry.map_or(String::new(), |r| format!("Retry-After: {r}\r\n"));
            let _ = write!(
                w,
                "HTTP/1.1 {s} No\r\n{extra}Content-Length: 4\r\nConnection: close\r\n\r\nnope"
            );
        }
    }
}

/// The `sampler.exporter.remote_write.*` counters of an exporter.
fn stats(e: &RemoteWriteExporter) -> BTreeMap<String, f64> {
    let s = e.sampler().unwrap();
    let registry = Registry::new();
    let _reg = registry.register_arc(s);
    let snap = Harvester::builder()
        .registry(registry)
        .self_metrics(false)
        .build()
        .harvest_now();
    snap.series()
        .map(|s| {
            let label = s
                .labels()
                .get("reason")
                .map_or(String::new(), |r| format!("{{{r}}}"));
            let v = match s.value() {
                sampler_api::Value::Counter(c) => *c as f64,
                sampler_api::Value::Gauge(g) => *g,
                _ => f64::NAN,
            };
            (
                format!(
                    "{}{label}",
                    s.descriptor().name().rsplit('.').next().unwrap()
                ),
                v,
            )
        })
        .collect()
}

fn one_snapshot(r: &Recorded) -> Arc<sampler_api::Snapshot> {
    Harvester::builder()
        .registry(r.registry.clone())
        .self_metrics(false)
        .build()
        .harvest_now()
}

#[test]
fn r13_a_503_with_retry_after_is_retried_after_it_and_the_data_arrives_once() {
    let rx = Receiver::start(vec![Answer::Status(503, Some("1")), Answer::Ok]);
    let r = recorded();
    let mut e = exporter_to(&rx.url);
    let started = Instant::now();
    let s = one_snapshot(&r);
    // Half an interval of 10 s is room enough to wait the second out within this export.
    e.export(s).expect("sent after the retry");
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![503, 200]);
    assert!(
        got[1].2.duration_since(got[0].2) >= Duration::from_millis(950),
        "Retry-After honoured"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let accepted = rx.accepted();
    let samples: usize = accepted
        .iter()
        .map(sampler_exporter_remote_write::samples)
        .sum();
    assert_eq!(samples, expected().len(), "every sample once");
    let st = stats(&e);
    assert_eq!(st["samples_sent"], samples as f64);
    assert_eq!(st["retries"], 1.0);
    assert_eq!(st["samples_buffered"], 0.0);
}

#[test]
fn r13_a_400_is_dropped_and_counted_and_never_retried() {
    let rx = Receiver::start(vec![Answer::Status(400, None)]);
    let r = recorded();
    let mut e = exporter_to(&rx.url);
    let err = e.export(one_snapshot(&r)).unwrap_err();
    assert!(err.to_string().contains("answered 400"), "{err}");
    // Later harvests are not held back by it, and it is not sent again.
    let _ = e.export(one_snapshot(&r));
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "one request per harvest, no retries");
    let st = stats(&e);
    assert_eq!(
        st["samples_dropped{rejected}"],
        2.0 * expected().len() as f64
    );
    assert_eq!(st["retries"], 0.0);
    assert_eq!(st["samples_buffered"], 0.0);
}

#[test]
fn r13_an_absent_receiver_gets_every_buffered_harvest_in_order_when_it_comes_back() {
    let port = free_port();
    let r = recorded();
    let mut e = exporter_to(&format!("http://127.0.0.1:{port}/api/v1/write"));
    let mut times = Vec::new();
    for _ in 0..5 {
        let s = one_snapshot(&r);
        times.push(s.time);
        assert!(e.export(s).is_err(), "nobody listens yet");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(e.buffered_samples(), 5 * expected().len());
    let rx = Receiver::on(
        TcpListener::bind(("127.0.0.1", port)).unwrap(),
        vec![Answer::Ok],
    );
    let s = one_snapshot(&r);
    times.push(s.time);
    // The backoff may still be running: flushing waits it out.
    e.flush(Instant::now() + Duration::from_secs(15))
        .expect("all sent");
    let accepted = rx.accepted();
    let stamps: Vec<i64> = accepted
        .iter()
        .map(|w| w.timeseries[0].samples[0].timestamp)
        .collect();
    let want: Vec<i64> = times
        .iter()
        .map(|t| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64)
        .collect();
    assert_eq!(stamps, want[..5].to_vec(), "in order, none lost");
    assert_eq!(stats(&e)["samples_dropped{buffer_full}"], 0.0);
    drop(s);
}

#[test]
fn r13_past_the_bound_the_oldest_samples_are_dropped_and_counted() {
    let port = free_port();
    let r = recorded();
    let per = expected().len();
    let mut c = sampler_exporter_remote_write::RemoteWriteConfig {
        url: format!("http://127.0.0.1:{port}/api/v1/write"),
        max_buffered_samples: 2 * per,
        max_samples_per_send: per,
        ..Default::default()
    };
    c.buckets = sampler_exporter_prometheus::Buckets::Explicit(vec![0.25, 0.5]);
    let mut e = RemoteWriteExporter::from_config(c).unwrap();
    for _ in 0..5 {
        let _ = e.export(one_snapshot(&r));
    }
    assert_eq!(e.buffered_samples(), 2 * per);
    assert_eq!(stats(&e)["samples_dropped{buffer_full}"], (3 * per) as f64);
}

#[test]
fn r13_shutdown_with_a_black_holed_receiver_keeps_its_deadline() {
    let rx = Receiver::start(vec![Answer::Silent]);
    let r = recorded();
    let h = Harvester::builder()
        .registry(r.registry.clone())
        .self_metrics(false)
        .exporter(exporter_to(&rx.url))
        .build();
    let started = Instant::now();
    let err = h.shutdown(Duration::from_secs(2)).unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(3500), "took {took:?}");
    assert!(err.to_string().contains("remote-write"), "{err}");
}

static NATIVE: Descriptor = Descriptor::timing("rwnative.latency", "s", "latency");

/// What Prometheus 2.42's `histogram_quantile` computes from a native histogram: the bucket
/// where the rank falls, linear interpolation within it (the zero bucket reaches from 0).
fn prometheus_quantile(q: f64, d: &sampler_api::Distribution) -> f64 {
    let rank = q * d.count() as f64;
    let mut buckets = vec![(0.0, 0.0, d.zero_count())];
    buckets.extend(d.buckets());
    let mut count = 0.0;
    for (lo, hi, c) in buckets {
        count += c as f64;
        if c > 0 && count >= rank {
            let r = rank - (count - c as f64);
            return lo + (hi - lo) * (r / c as f64);
        }
    }
    f64::NAN
}

fn one_value(prom: &PrometheusServer, expr: &str) -> f64 {
    let got = prom.query_until(expr);
    assert_eq!(got.len(), 1, "{expr}: {got:?}");
    support::sample_value(&got[0])
}

#[test]
fn r13_prometheus_native_histograms_answer_count_sum_and_quantiles_as_sent() {
    let prom = PrometheusServer::start_with(
        &[],
        &[
            "--web.enable-remote-write-receiver",
            "--enable-feature=native-histograms",
        ],
    );
    let registry = Registry::new();
    let fam = registry.timing_family(&NATIVE, &["case"]);
    // Interpolated within a bucket; zero values in the zero bucket.
    let interp = fam.get(&["interp"]);
    for v in [0.0, 0.1, 0.2, 0.4, 3.0, 0.0021, 17.5] {
        interp.record(v);
    }
    // The median ends exactly at the bucket that closes at 1.0.
    let exact = fam.get(&["exact \"quoted\" ☃"]);
    for v in [1.0, 1.0, 3.0, 3.0] {
        exact.record(v);
    }
    let snapshot = Harvester::builder()
        .registry(registry.clone())
        .self_metrics(false)
        .build()
        .harvest_now();
    let mut c = sampler_exporter_remote_write::RemoteWriteConfig {
        url: format!("{}/api/v1/write", prom.url),
        job: "rwn".into(),
        instance: "i1".into(),
        timings: sampler_exporter_remote_write::TimingMode::Both,
        ..Default::default()
    };
    c.buckets = sampler_exporter_prometheus::Buckets::Explicit(vec![0.25, 0.5]);
    let mut e = RemoteWriteExporter::from_config(c).unwrap();
    e.export(snapshot.clone()).expect("prometheus accepts them");
    for (case, quote) in [("interp", "interp"), ("exact", "exact \\\"quoted\\\" ☃")] {
        let labels = if case == "interp" {
            vec![("case", "interp")]
        } else {
            vec![("case", "exact \"quoted\" ☃")]
        };
        let d = match snapshot.find("rwnative.latency", &labels).unwrap().value() {
            sampler_api::Value::Timing(d) => d.clone(),
            v => panic!("{v:?}"),
        };
        let sel = format!("rwnative_latency_seconds{{case=\"{quote}\",job=\"rwn\"}}");
        let count = one_value(&prom, &format!("histogram_count({sel})"));
        assert_eq!(count, d.count() as f64, "{case}");
        let sum = one_value(&prom, &format!("histogram_sum({sel})"));
        assert_eq!(sum, d.sum(), "{case}");
        for q in [0.5, 0.9, 0.99] {
            let got = one_value(&prom, &format!("histogram_quantile({q}, {sel})"));
            let want = prometheus_quantile(q, &d);
            // Bucket bounds are powers of 2^(2^-scale), computed by each side in floating
            // point: equal to the last bits.
            assert!(
                (got - want).abs() <= 1e-12 * want.abs(),
                "{case} q={q}: prometheus {got}, sent buckets give {want}"
            );
        }
        // Classic series of the same timing live next to it (`timings = "both"`).
        let classic = one_value(
            &prom,
            &format!("rwnative_latency_seconds_count{{case=\"{quote}\"}}"),
        );
        assert_eq!(classic, d.count() as f64);
    }
    let median = one_value(
        &prom,
        "histogram_quantile(0.5, rwnative_latency_seconds{case=~\"exact.*\"})",
    );
    assert_eq!(median, 1.0, "ends exactly at the bucket bound 1.0");
    drop((interp, exact));
}

static STALE: Descriptor = Descriptor::counter("rwstale.requests", "1", "requests");

/// Values a query at `t` (Unix seconds) returns, by the `k` label.
fn query_at(prom: &PrometheusServer, expr: &str, t: f64) -> BTreeMap<String, f64> {
    let r = support::get_query(
        &format!("{}/api/v1/query", prom.url),
        &[],
        &[("query", expr), ("time", &format!("{t:.3}"))],
    );
    let v: Json = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["status"], "success", "{v}");
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["metric"]["k"].as_str().unwrap().to_owned(),
                support::sample_value(s),
            )
        })
        .collect()
}

#[test]
fn r13_prometheus_stops_returning_a_series_at_its_stale_marker() {
    let prom = PrometheusServer::start_with(&[], &["--web.enable-remote-write-receiver"]);
    let registry = Registry::new();
    let fam = registry.counter_family(&STALE, &["k"]);
    fam.get(&["keep"]).add(1);
    fam.get(&["gone"]).add(2);
    let h = Harvester::builder()
        .registry(registry.clone())
        .self_metrics(false)
        .build();
    let url = format!("{}/api/v1/write", prom.url);
    let exporter = |job: &str, markers: bool| {
        RemoteWriteExporter::from_config(sampler_exporter_remote_write::RemoteWriteConfig {
            url: url.clone(),
            job: job.into(),
            staleness_markers: markers,
            ..Default::default()
        })
        .unwrap()
    };
    let (mut with, mut without) = (exporter("on", true), exporter("off", false));
    let t0 = std::time::SystemTime::now() - Duration::from_secs(3);
    let at = |s: Arc<sampler_api::Snapshot>, t: std::time::SystemTime| {
        let mut s = (*s).clone();
        s.time = t;
        Arc::new(s)
    };
    let first = at(h.harvest_now(), t0);
    with.export(first.clone()).unwrap();
    without.export(first).unwrap();
    // The series goes away (removed; a process gone is the same to the exporter).
    assert!(fam.remove(&["gone"]));
    let second = at(h.harvest_now(), t0 + Duration::from_secs(1));
    with.export(second.clone()).unwrap();
    without.export(second).unwrap();
    let secs = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let before = secs(t0) + 0.5;
    let after = secs(t0) + 1.5;
    for job in ["on", "off"] {
        let expr = format!("rwstale_requests_total{{job=\"{job}\"}}");
        poll(Duration::from_secs(20), "both series before", || {
            (query_at(&prom, &expr, before).len() == 2).then_some(())
        });
    }
    let on = query_at(&prom, "rwstale_requests_total{job=\"on\"}", after);
    assert_eq!(
        on,
        BTreeMap::from([("keep".to_owned(), 1.0)]),
        "gone at once"
    );
    // Without the marker Prometheus goes on returning the last value for 5 minutes.
    let off = query_at(&prom, "rwstale_requests_total{job=\"off\"}", after);
    assert_eq!(
        off,
        BTreeMap::from([("gone".to_owned(), 2.0), ("keep".to_owned(), 1.0)])
    );
}

/// VictoriaMetrics (1.79, the packaged one) answers a native histogram with 204 and keeps
/// nothing of it; with `timings = "both"` the classic series of the same timing arrive.
#[test]
fn r13_victoria_metrics_drops_native_histograms_and_keeps_the_classic_series_of_both() {
    let vm = graphite_support::Victoria::start();
    let url = format!("http://127.0.0.1:{}", vm.http);
    let registry = Registry::new();
    let fam = registry.timing_family(&NATIVE, &["case"]);
    let t = fam.get(&["vm"]);
    for v in [0.1, 0.2, 3.0] {
        t.record(v);
    }
    let snapshot = Harvester::builder()
        .registry(registry.clone())
        .self_metrics(false)
        .build()
        .harvest_now();
    let mode = |timings| sampler_exporter_remote_write::RemoteWriteConfig {
        url: format!("{url}/api/v1/write"),
        timings,
        buckets: sampler_exporter_prometheus::Buckets::Explicit(vec![0.25]),
        ..Default::default()
    };
    use sampler_exporter_remote_write::TimingMode;
    let mut native = RemoteWriteExporter::from_config(mode(TimingMode::Native)).unwrap();
    native
        .export(snapshot.clone())
        .expect("accepted with a 2xx");
    assert_eq!(stats(&native)["samples_sent"], 1.0);
    let mut both = RemoteWriteExporter::from_config(mode(TimingMode::Both)).unwrap();
    both.export(snapshot).expect("accepted with a 2xx");
    let query = |q: &str| -> Vec<Json> {
        support::get(&format!("{url}/internal/force_flush"), &[]);
        let body = support::get_query(&format!("{url}/api/v1/query"), &[], &[("query", q)]).body;
        let v: Json = serde_json::from_slice(&body).unwrap();
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    };
    // _bucket{le="0.25"}, _bucket{le="+Inf"}, _sum, _count: the float samples only.
    let classic = poll(Duration::from_secs(20), "classic series in vm", || {
        let r = query("{__name__=~\"rwnative_latency_seconds.*\"}");
        (r.len() >= 4).then_some(r)
    });
    let names: std::collections::BTreeSet<String> = classic
        .iter()
        .map(|r| r["metric"]["__name__"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "rwnative_latency_seconds_bucket",
            "rwnative_latency_seconds_count",
            "rwnative_latency_seconds_sum"
        ]
    );
    let count = classic
        .iter()
        .find(|r| r["metric"]["__name__"] == "rwnative_latency_seconds_count")
        .unwrap();
    assert_eq!(support::sample_value(count), 3.0);
    drop(t);
}
