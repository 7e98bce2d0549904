//! The endpoint over real HTTP on loopback: negotiation, gzip, the other paths, slow
//! harvests, harvest-on-scrape, self-metrics and shutdown.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sampler_api::{Descriptor, Harvester, Registry, Sampler, Writer};

use super::*;

// The HTTP helpers of the interop tests serve these tests too.
#[path = "../tests/support/mod.rs"]
mod support;
use support::{get, gunzip};

static G: Descriptor = Descriptor::gauge("slow.value", "1", "a value read slowly");

/// A sampler that reports `value` and, when a gate is set, blocks in `sample` until released.
struct Slow {
    value: AtomicU64,
    gate: Mutex<Option<(Sender<()>, Receiver<()>)>>,
}

impl Slow {
    fn new() -> Arc<Self> {
        Arc::new(Slow {
            value: AtomicU64::new(1),
            gate: Mutex::new(None),
        })
    }

    /// Makes the next `sample` block; returns (entered, release).
    fn close(&self) -> (Receiver<()>, Sender<()>) {
        let (entered_tx, entered_rx) = channel();
        let (release_tx, release_rx) = channel();
        *self.gate.lock().unwrap() = Some((entered_tx, release_rx));
        (entered_rx, release_tx)
    }
}

impl Sampler for Slow {
    fn sample(&self, out: &mut Writer<'_>) {
        out.gauge(&G, &[], self.value.load(Ordering::SeqCst) as f64);
        let gate = self.gate.lock().unwrap().take();
        if let Some((entered, release)) = gate {
            let _ = entered.send(());
            let _ = release.recv_timeout(Duration::from_secs(30));
        }
    }
    fn name(&self) -> &str {
        "slow"
    }
}

fn text(url: &str) -> String {
    let r = get(url, &[("Accept", "text/plain;version=0.0.4")]);
    assert_eq!(r.status, 200);
    String::from_utf8(r.body).unwrap()
}

#[track_caller]
fn wait_for(url: &str, needle: &str) -> String {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let body = text(url);
        if body.contains(needle) {
            return body;
        }
        assert!(
            Instant::now() < until,
            "{needle:?} never appeared; last body:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn local() -> PrometheusExporterBuilder {
    PrometheusExporter::builder().address("127.0.0.1:0")
}

fn snapshot_with(value: f64) -> Snapshot {
    let registry = Registry::new();
    let _r = registry.register(sampler_api::FnSampler::new("f", move |w| {
        w.gauge(&G, &[("path", "/a\"b")], value)
    }));
    let h = Harvester::builder()
        .registry(registry)
        .self_metrics(false)
        .build();
    let s = h.harvest_now();
    (*s).clone()
}

#[test]
fn formats_follow_accept_and_gzip_follows_accept_encoding() {
    let e = local().native_histograms(true).build().unwrap();
    e.publish(&snapshot_with(2.5));
    let url = e.url();
    let prom_native = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    for (accept, format) in [
        (
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
            Format::OpenMetrics,
        ),
        ("text/plain;version=0.0.4", Format::Text),
        ("*/*", Format::Text),
        (prom_native, Format::Protobuf),
    ] {
        let plain = get(&url, &[("Accept", accept)]);
        assert_eq!(plain.status, 200);
        assert_eq!(plain.content_type, format.content_type(), "{accept}");
        assert_eq!(plain.content_encoding, "");
        assert_eq!(plain.body, e.exposition(format).to_vec());
        let zipped = get(&url, &[("Accept", accept), ("Accept-Encoding", "gzip")]);
        assert_eq!(zipped.content_type, format.content_type());
        assert_eq!(gunzip(&zipped.body), plain.body, "{accept}");
    }
    let om = String::from_utf8(e.exposition(Format::OpenMetrics).to_vec()).unwrap();
    assert_eq!(
        om,
        "# HELP slow_value a value read slowly\n# TYPE slow_value gauge\nslow_value{path=\"/a\\\"b\"} 2.5\n# EOF\n"
    );
    // Without native histograms, a protobuf-first Accept gets OpenMetrics.
    let e2 = local().build().unwrap();
    let r = get(&e2.url(), &[("Accept", prom_native)]);
    assert_eq!(r.content_type, Format::OpenMetrics.content_type());
    assert_eq!(r.body, b"# EOF\n");
}

#[test]
fn landing_page_health_readiness_and_errors() {
    let e = local().path("/custom/metrics").ui(false).build().unwrap();
    let base = format!("http://{}", e.local_addr());
    let page = get(&format!("{base}/"), &[]);
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"));
    let html = String::from_utf8(page.body).unwrap();
    assert!(html.contains("<a href=\"/custom/metrics\">"), "{html}");
    assert!(html.contains("<a href=\"/-/healthy\">"));
    assert_eq!(get(&format!("{base}/-/healthy"), &[]).status, 200);
    assert_eq!(get(&format!("{base}/-/ready"), &[]).status, 503);
    assert_eq!(get(&format!("{base}/metrics"), &[]).status, 404);
    e.publish(&snapshot_with(1.0));
    assert_eq!(get(&format!("{base}/-/ready"), &[]).status, 200);
    assert_eq!(get(&format!("{base}/custom/metrics?x=1"), &[]).status, 200);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let r = agent
        .post(format!("{base}/custom/metrics"))
        .send("x")
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.headers().get("allow").unwrap(), "GET, HEAD");
}

/// With `ui` on (the default) `/` is the live page, fed by every snapshot published; its
/// data links to the metrics path, and the page's paths cannot be the metrics path.
#[test]
fn r17_the_live_page_is_mounted_at_the_root() {
    let e = local().path("/custom/metrics").build().unwrap();
    let base = format!("http://{}", e.local_addr());
    let page = get(&format!("{base}/"), &[]);
    assert_eq!(
        (page.status, page.content_type.as_str()),
        (200, "text/html; charset=utf-8")
    );
    let html = String::from_utf8(page.body).unwrap();
    assert!(
        html.contains("<script src=\"/ui/app.js\"></script>"),
        "{html}"
    );
    assert_eq!(get(&format!("{base}/ui/app.js"), &[]).status, 200);
    assert_eq!(get(&format!("{base}/ui/style.css"), &[]).status, 200);
    assert_eq!(get(&format!("{base}/ui/nothing"), &[]).status, 404);
    e.publish(&snapshot_with(1.0));
    let data = get(&format!("{base}/ui/data.json"), &[]);
    assert_eq!(data.content_type, "application/json");
    let data: serde_json::Value = serde_json::from_slice(&data.body).unwrap();
    assert_eq!(
        data["links"][0],
        serde_json::json!(["Metrics", "/custom/metrics"])
    );
    let series = &data["series"][0];
    assert_eq!(series["labels"], serde_json::json!([["path", "/a\"b"]]));
    assert_eq!(series["points"][0][1], 1.0);
    // The metrics and health paths are still served beside the page.
    assert_eq!(get(&format!("{base}/custom/metrics"), &[]).status, 200);
    assert_eq!(get(&format!("{base}/-/healthy"), &[]).status, 200);

    let err = local().path("/ui/metrics").build().unwrap_err().to_string();
    assert!(err.contains("taken by the live page"), "{err}");
    let plain = local().path("/ui/metrics").ui(false).build().unwrap();
    let base = format!("http://{}", plain.local_addr());
    assert_eq!(get(&format!("{base}/ui/data.json"), &[]).status, 404);
}

/// The page's history costs nothing until someone asks for the page: snapshots published
/// before are not kept, those after are.
#[test]
fn r17_the_live_page_keeps_history_only_once_viewed() {
    let e = local().build().unwrap();
    let base = format!("http://{}", e.local_addr());
    e.publish(&snapshot_with(1.0));
    let data = get(&format!("{base}/ui/data.json"), &[]);
    let data: serde_json::Value = serde_json::from_slice(&data.body).unwrap();
    assert_eq!(data["series"], serde_json::json!([]), "{data}");
    e.publish(&snapshot_with(2.0));
    let data = get(&format!("{base}/ui/data.json"), &[]);
    let data: serde_json::Value = serde_json::from_slice(&data.body).unwrap();
    assert_eq!(data["series"][0]["points"][0][1], 2.0, "{data}");
}

#[test]
fn bad_settings_and_busy_ports_are_reported_with_the_address() {
    let first = local().build().unwrap();
    let addr = first.local_addr().to_string();
    let err = PrometheusExporter::builder()
        .address(&addr)
        .build()
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("failed to bind prometheus endpoint at {addr}: ")),
        "{msg}"
    );
    let err = local().path("metrics").build().unwrap_err().to_string();
    assert!(err.contains("path must start with /"), "{err}");
    let err = local().path("/-/healthy").build().unwrap_err().to_string();
    assert!(err.contains("taken"), "{err}");
    let err = local()
        .quantiles(vec![1.5])
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("quantiles"), "{err}");
    let err = local()
        .bucket_override("x", Buckets::Explicit(vec![2.0, 1.0]))
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("buckets for x"), "{err}");
    let err = PrometheusExporter::builder()
        .address("not an address")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("not an address"), "{err}");
}

#[test]
fn a_scrape_during_a_slow_harvest_gets_the_previous_snapshot_at_once() {
    let slow = Slow::new();
    let registry = Registry::new();
    let _reg = registry.register_arc(slow.clone());
    let exporter = local().build().unwrap();
    let url = exporter.url();
    let harvester = Arc::new(
        Harvester::builder()
            .registry(registry)
            .self_metrics(false)
            .exporter(exporter)
            .build(),
    );
    harvester.harvest_now();
    wait_for(&url, "slow_value 1.0\n");

    slow.value.store(2, Ordering::SeqCst);
    let (entered, release) = slow.close();
    let h = harvester.clone();
    let harvesting = std::thread::spawn(move || {
        h.harvest_now();
    });
    entered.recv_timeout(Duration::from_secs(10)).unwrap();
    let started = Instant::now();
    let body = text(&url);
    let took = started.elapsed();
    // The harvest is still blocked (it waits for `release`), so this is the old snapshot.
    assert!(body.contains("slow_value 1.0\n"), "{body}");
    assert!(!harvesting.is_finished());
    assert!(
        took < Duration::from_secs(1),
        "scrape took {took:?} during a slow harvest"
    );
    eprintln!("scrape during a blocked harvest answered in {took:?}");
    release.send(()).unwrap();
    harvesting.join().unwrap();
    wait_for(&url, "slow_value 2.0\n");
}

#[test]
fn harvest_on_scrape_serves_a_fresh_harvest_and_falls_back_when_it_is_slow() {
    let slow = Slow::new();
    let registry = Registry::new();
    let _reg = registry.register_arc(slow.clone());
    let exporter = local()
        .harvest_on_scrape(true)
        .harvest_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let url = exporter.url();
    // No periodic harvest: only scrapes harvest.
    let harvester = Harvester::builder()
        .registry(registry)
        .exporter(exporter)
        .build();
    slow.value.store(5, Ordering::SeqCst);
    assert!(text(&url).contains("slow_value 5.0\n"));
    slow.value.store(7, Ordering::SeqCst);
    let body = text(&url);
    assert!(body.contains("slow_value 7.0\n"), "{body}");
    assert!(
        body.contains("sampler_exporter_prometheus_scrape_harvests_total "),
        "{body}"
    );

    // A scrape whose harvest is slow waits at most the timeout, then gets the latest snapshot.
    slow.value.store(9, Ordering::SeqCst);
    let (entered, release) = slow.close();
    let started = Instant::now();
    let body = text(&url);
    let took = started.elapsed();
    entered.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(body.contains("slow_value 7.0\n"), "{body}");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // The scraper's own timeout caps the wait.
    let started = Instant::now();
    let r = get(&url, &[("X-Prometheus-Scrape-Timeout-Seconds", "0.05")]);
    assert_eq!(r.status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    release.send(()).unwrap();
    wait_for(&url, "slow_value 9.0\n");
    harvester.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn self_metrics_count_scrapes_and_shutdown_stops_the_endpoint() {
    let registry = Registry::new();
    let exporter = local().build().unwrap();
    let url = exporter.url();
    let addr = exporter.local_addr();
    let harvester = Harvester::builder()
        .registry(registry)
        .exporter(exporter)
        .build();
    harvester.harvest_now();
    wait_for(&url, "sampler_exporter_prometheus_encode_duration_seconds ");
    get(&url, &[("Accept", "application/openmetrics-text")]);
    harvester.harvest_now();
    let body = wait_for(
        &url,
        "sampler_exporter_prometheus_scrapes_total{format=\"openmetrics\"} 1\n",
    );
    assert!(
        body.contains("sampler_exporter_prometheus_name_collisions 0.0\n"),
        "{body}"
    );
    assert!(body.contains("sampler_exporter_prometheus_exposition_size_bytes{format=\"text\"} "));
    assert!(body.contains("sampler_exporter_exported_total{exporter=\"prometheus\"} "));
    harvester.shutdown(Duration::from_secs(5)).unwrap();
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
}

#[test]
fn collisions_are_logged_once_and_counted() {
    let e = local().build().unwrap();
    let a = Arc::new(Descriptor::gauge("x.y_z", "1", ""));
    let b = Arc::new(Descriptor::gauge("x_y.z", "1", ""));
    let mk = |d: &Arc<Descriptor>, v| {
        sampler_api::Series::new(
            sampler_api::SeriesId::next(),
            d.clone(),
            sampler_api::Labels::empty(),
            std::time::SystemTime::now(),
            sampler_api::Value::Gauge(v),
        )
    };
    let snapshot = Snapshot::from_series(
        std::time::SystemTime::now(),
        Duration::ZERO,
        1,
        vec![mk(&a, 1.0), mk(&b, 2.0)],
    );
    e.publish(&snapshot);
    assert_eq!(e.shared.stats.collisions.load(Relaxed), 1);
    assert_eq!(lock(&e.shared.encoder).reported.len(), 1);
    let body = String::from_utf8(e.exposition(Format::Text).to_vec()).unwrap();
    assert_eq!(body, "# HELP x_y_z x.y_z\n# TYPE x_y_z gauge\nx_y_z 1.0\n");
}

#[test]
fn gzip_is_made_ahead_only_for_variants_being_scraped() {
    let e = local().build().unwrap();
    let om = [
        ("Accept", "application/openmetrics-text"),
        ("Accept-Encoding", "gzip"),
    ];
    let publish = |seq: u64| {
        let mut s = snapshot_with(seq as f64);
        s.sequence = seq;
        e.publish(&s);
    };
    publish(1);
    assert!(e.shared.current().gzipped(Format::OpenMetrics).is_none());
    get(&e.url(), &om); // made on demand
    assert!(e.shared.current().gzipped(Format::OpenMetrics).is_some());
    for seq in 2..=3 {
        publish(seq);
        let now = e.shared.current();
        assert!(now.gzipped(Format::OpenMetrics).is_some(), "harvest {seq}");
        assert!(now.gzipped(Format::Text).is_none());
        assert_eq!(
            gunzip(&get(&e.url(), &om).body),
            now.body(Format::OpenMetrics).to_vec()
        );
    }
    publish(4); // harvest 3 was scraped with gzip, so harvest 4 is compressed ahead
    assert!(e.shared.current().gzipped(Format::OpenMetrics).is_some());
    publish(5); // no scrape since harvest 4: not made ahead
    assert!(e.shared.current().gzipped(Format::OpenMetrics).is_none());
    publish(3); // an older harvest never replaces a newer one
    assert_eq!(e.shared.current().sequence, 5);
}

#[test]
fn past_max_connections_a_connection_gets_503_at_once_and_places_free_up() {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    let exporter = local().max_connections(2).build().unwrap();
    exporter.publish(&snapshot_with(1.0));
    let addr = exporter.local_addr();
    let url = exporter.url();
    // Two idle clients take both places (hyper waits for their request).
    let idle: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let refused = poll_until(Duration::from_secs(5), || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.starts_with("HTTP/1.1 503").then_some(out)
    });
    assert!(
        refused.ends_with("too many connections: the endpoint serves at most 2 at once\n"),
        "{refused}"
    );
    assert!(refused.contains("retry-after: 1\r\n"), "{refused}");
    // The refusal is counted in the self-metrics.
    let snap = {
        let registry = Registry::new();
        let _r = registry.register_arc(exporter.sampler().unwrap());
        Harvester::builder()
            .registry(registry)
            .self_metrics(false)
            .build()
            .harvest_now()
    };
    match snap
        .find("sampler.exporter.prometheus.connections.refused", &[])
        .map(|s| s.value())
    {
        Some(sampler_api::Value::Counter(n)) => assert!(*n >= 1, "{n}"),
        other => panic!("no refused counter: {other:?}"),
    }
    // The idle clients leave: scrapes are served again.
    drop(idle);
    let body = poll_until(Duration::from_secs(5), || {
        let r = get(&url, &[("Accept", "text/plain;version=0.0.4")]);
        (r.status == 200).then_some(r.body)
    });
    assert!(String::from_utf8(body).unwrap().contains("slow_value"));
}

#[test]
fn a_bind_error_names_its_cause_once_in_an_error_chain() {
    let first = local().build().unwrap();
    let addr = first.local_addr().to_string();
    let err = PrometheusExporter::builder()
        .address(&addr)
        .build()
        .unwrap_err();
    let chain = anyhow_like_chain(&err);
    assert_eq!(
        chain.matches("Address already in use").count(),
        1,
        "{chain}"
    );
    assert!(local().max_connections(0).build().is_err());
}

/// An error and its sources joined by `: `, as `anyhow`'s `{:#}` prints them.
fn anyhow_like_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut next = e.source();
    while let Some(c) = next {
        s.push_str(": ");
        s.push_str(&c.to_string());
        next = c.source();
    }
    s
}

/// Calls `f` every 20 ms until it gives a value, at most `timeout`.
fn poll_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
