//! The exporter against the real peers: the Prometheus server (scraping OpenMetrics and, with
//! native histograms, protobuf), `promtool check metrics`, and the Python `prometheus_client`
//! text and OpenMetrics parsers.
//!
//! Needs: the Debian package `prometheus` (server and promtool) and a Python with
//! `prometheus-client==0.26.0` at `$SAMPLER_PYTHON` or `.venv/bin/python` in the workspace.

/// Headless Chromium over the DevTools protocol, shared with the live page's own tests.
#[cfg(feature = "ui")]
#[path = "../../ui/tests/browser/mod.rs"]
mod browser;
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use sampler_api::distribution::{bucket_index, bucket_lower_bound};
use sampler_api::{
    Descriptor, Distribution, FnSampler, Harvester, Kind, Registry, Snapshot, Value,
};
use sampler_exporter_prometheus::{mapping, Buckets, PrometheusExporter, TimingMode};
use support::*;

const NASTY: &str = "quote\" backslash\\ newline\n tab\t non-ASCII: žluťoučký kůň 日本語 ✓";

static REQUESTS: Descriptor = Descriptor::counter("interop.requests", "1", "requests served");
static TEMPERATURE: Descriptor =
    Descriptor::gauge("interop.temperature", "Cel", "room temperature");
static LATENCY: Descriptor = Descriptor::timing("interop.latency", "s", "request latency");

/// 10 000 latencies spread log-uniformly over 1 ms .. 4 s (a fixed linear congruential
/// sequence, so every run sees the same data).
fn latencies() -> Vec<f64> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..10_000)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            1e-3 * (4000f64).powf(u)
        })
        .collect()
}

/// The nearest-rank quantile of `values`.
fn true_quantile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// Waits until the exporter serves a harvest.
fn wait_ready(exporter_url: &str) {
    let ready = exporter_url.replace("/metrics", "/-/ready");
    poll(
        Duration::from_secs(10),
        "the exporter's first encoded harvest",
        || (get(&ready, &[]).status == 200).then_some(()),
    );
}

#[test]
fn prometheus_server_reads_exact_values_labels_and_histograms() {
    let registry = Registry::new();
    // Instruments stay registered while their handles live.
    let requests = registry.counter_family(&REQUESTS, &["route"]);
    requests.add(&[NASTY], 12345);
    requests.add(&["carriage\rreturn"], 7);
    let temperature = registry.gauge(&TEMPERATURE);
    temperature.set(-12.625);
    let latency = registry.timing(&LATENCY);
    let values = latencies();
    for v in &values {
        latency.record(*v);
    }

    let classic = PrometheusExporter::builder()
        .address("127.0.0.1:0")
        .build()
        .unwrap();
    let native = PrometheusExporter::builder()
        .address("127.0.0.1:0")
        .native_histograms(true)
        .build()
        .unwrap();
    let (classic_addr, native_addr) = (classic.local_addr(), native.local_addr());
    let (classic_url, native_url) = (classic.url(), native.url());
    // One harvester per endpoint, each harvested once: the endpoints serve that harvest to
    // every scrape.
    let h1 = Harvester::builder()
        .registry(registry.clone())
        .exporter(classic)
        .build();
    let h2 = Harvester::builder()
        .registry(registry.clone())
        .exporter(native)
        .build();
    h1.harvest_now();
    h2.harvest_now();
    wait_ready(&classic_url);
    wait_ready(&native_url);

    let prom = PrometheusServer::start(&[
        ("classic", classic_addr, "/metrics"),
        ("native", native_addr, "/metrics"),
    ]);
    // A few scrapes of each target.
    for job in ["classic", "native"] {
        prom.query_until(&format!(
            "count_over_time(interop_requests_total{{job=\"{job}\"}}[1m]) >= 3"
        ));
    }
    let context = || format!("targets: {}\nlog:\n{}", prom.targets(), prom.log());

    for job in ["classic", "native"] {
        let r = prom.query(&format!("interop_requests_total{{job=\"{job}\"}}"));
        assert_eq!(r.len(), 2, "{r:?}\n{}", context());
        let nasty = r
            .iter()
            .find(|x| x["value"][1] == "12345")
            .expect("the 12345 series");
        assert_eq!(
            nasty["metric"]["route"], NASTY,
            "{job}: the label value came back changed"
        );
        let cr = r
            .iter()
            .find(|x| x["value"][1] == "7")
            .expect("the 7 series");
        assert_eq!(cr["metric"]["route"], "carriage\rreturn", "{job}");
        let r = prom.query(&format!("interop_temperature_celsius{{job=\"{job}\"}}"));
        assert_eq!(sample_value(&r[0]), -12.625, "{job}");
    }
    // OpenMetrics was scraped from the classic endpoint: its `_created` samples are there.
    let created = prom.query("interop_requests_created{job=\"classic\"}");
    assert_eq!(created.len(), 2, "{}", context());

    // Classic buckets: histogram_quantile lands in the bucket that holds the true p99.
    let p99 = true_quantile(&values, 0.99);
    let r = prom.query("histogram_quantile(0.99, interop_latency_seconds_bucket{job=\"classic\"})");
    let est = sample_value(&r[0]);
    let bounds = Buckets::default().bounds().unwrap();
    let hi_i = bounds
        .iter()
        .position(|b| *b >= p99)
        .expect("p99 below the last bound");
    let (lo, hi) = (if hi_i == 0 { 0.0 } else { bounds[hi_i - 1] }, bounds[hi_i]);
    assert!(lo < p99 && p99 <= hi);
    assert!(
        lo <= est && est <= hi,
        "classic p99 {est} outside the bucket ({lo}, {hi}] of the true {p99}"
    );
    eprintln!("classic: true p99 {p99:.6}, histogram_quantile {est:.6}, bucket ({lo}, {hi}]");

    // Native histograms, read from the protobuf exposition.
    let raw = prom.query("interop_latency_seconds{job=\"native\"}");
    assert!(
        raw[0].get("histogram").is_some(),
        "not a native histogram: {raw:?}\n{}",
        context()
    );
    let count = prom.query("histogram_count(interop_latency_seconds{job=\"native\"})");
    assert_eq!(sample_value(&count[0]), 10_000.0);
    let sum = prom.query("histogram_sum(interop_latency_seconds{job=\"native\"})");
    let exact_sum = latency.distribution().sum();
    assert!((sample_value(&sum[0]) - exact_sum).abs() <= exact_sum * 1e-12);
    let r = prom.query("histogram_quantile(0.99, interop_latency_seconds{job=\"native\"})");
    let est = sample_value(&r[0]);
    let scale = latency.distribution().scale();
    let i = bucket_index(p99, scale);
    let (lo, hi) = (
        bucket_lower_bound(i, scale),
        bucket_lower_bound(i + 1, scale),
    );
    assert!(
        lo <= est && est <= hi,
        "native p99 {est} outside the bucket ({lo}, {hi}] of the true {p99}"
    );
    eprintln!("native: true p99 {p99:.6}, histogram_quantile {est:.6}, bucket ({lo:.6}, {hi:.6}]");
    drop(prom);
    h1.shutdown(Duration::from_secs(5)).unwrap();
    h2.shutdown(Duration::from_secs(5)).unwrap();
}

/// Series of every kind with awkward values, plus the harvester's own.
fn awkward_registry() -> Registry {
    let registry = Registry::new();
    let counter = Descriptor::counter("rt.events", "1", "events \"seen\" \\ so far\nby kind");
    let bytes = Descriptor::counter("rt.rx", "By", "bytes received");
    let gauge = Descriptor::gauge("rt.level", "1", "");
    let timing = Descriptor::timing("rt.wait", "s", "queue wait");
    let values = latencies();
    registry
        .register(FnSampler::new("awkward", move |w| {
            // No carriage return: Python's parsers split lines on it (the Prometheus server test
            // sends one).
            for (i, v) in [NASTY, "", "a,b=c}{", "#", "\\\\\"\"\n\n", "}\"\\"]
                .iter()
                .enumerate()
            {
                w.counter(
                    &counter,
                    &[("kind", v), ("n", &i.to_string())],
                    i as u64 * 1000,
                );
            }
            w.counter(&bytes, &[], u64::MAX);
            w.counter(&bytes, &[("big", "2^53")], 1 << 53);
            for (name, v) in [
                ("nan", f64::NAN),
                ("inf", f64::INFINITY),
                ("-inf", f64::NEG_INFINITY),
                ("tenth", 0.1),
                ("neg", -1.5e-7),
                ("tiny", 5e-324),
                ("huge", f64::MAX),
                ("zero", 0.0),
            ] {
                w.gauge(&gauge, &[("v", name)], v);
            }
            let mut d = Distribution::new(3);
            for v in &values {
                d.record(*v);
            }
            d.record(0.0);
            d.record(100.0);
            w.timing(&timing, &[("queue", NASTY)], d);
            w.timing(&timing, &[("queue", "empty")], Distribution::new(3));
        }))
        .keep();
    registry
}

type Key = (String, BTreeMap<String, String>);

/// What the parsers should return for `snapshot`, built from the snapshot's own readings
/// (cumulative bucket counts from `Distribution::count_at_most`, quantiles from
/// `Distribution::quantile`). `le` and `quantile` label values are normalised to numbers.
fn expected(
    s: &Snapshot,
    openmetrics: bool,
    timings: TimingMode,
    bounds: &[f64],
    quantiles: &[f64],
) -> Vec<(Key, f64)> {
    let mut out = Vec::new();
    for x in s.series() {
        let d = x.descriptor();
        let f = mapping::family(d.name(), d.kind(), d.unit()).name;
        let labels: BTreeMap<String, String> = x
            .labels()
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let with = |k: &str, v: f64| {
            let mut l = labels.clone();
            l.insert(k.to_owned(), format!("{v:e}"));
            l
        };
        // `_created` is written as the exact decimal of the start time.
        let since = x.start_time().duration_since(UNIX_EPOCH).unwrap();
        let created: f64 = format!("{}.{:09}", since.as_secs(), since.subsec_nanos())
            .parse()
            .unwrap();
        match x.value() {
            Value::Counter(v) => {
                out.push(((format!("{f}_total"), labels.clone()), *v as f64));
                if openmetrics {
                    out.push(((format!("{f}_created"), labels.clone()), created));
                }
            }
            Value::Gauge(v) => out.push(((f.clone(), labels.clone()), *v)),
            Value::Timing(dist) => {
                match timings {
                    TimingMode::Histogram => {
                        for b in bounds {
                            out.push((
                                (format!("{f}_bucket"), with("le", *b)),
                                dist.count_at_most(*b) as f64,
                            ));
                        }
                        out.push((
                            (format!("{f}_bucket"), with("le", f64::INFINITY)),
                            dist.count() as f64,
                        ));
                    }
                    TimingMode::Summary => {
                        for q in quantiles {
                            let v = dist.quantile(*q).unwrap_or(f64::NAN);
                            out.push(((f.clone(), with("quantile", *q)), v));
                        }
                    }
                }
                out.push(((format!("{f}_sum"), labels.clone()), dist.sum()));
                out.push(((format!("{f}_count"), labels.clone()), dist.count() as f64));
                if openmetrics {
                    out.push(((format!("{f}_created"), labels.clone()), created));
                }
            }
            other => panic!("no expected samples for {other:?}"),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn parsed(families: &[Family]) -> Vec<(Key, f64)> {
    let mut out: Vec<(Key, f64)> = families
        .iter()
        .flat_map(|f| f.samples.iter())
        .map(|s| {
            let mut labels = s.labels.clone();
            for k in ["le", "quantile"] {
                if let Some(v) = labels.get_mut(k) {
                    *v = format!("{:e}", v.parse::<f64>().expect("numeric le/quantile"));
                }
            }
            ((s.name.clone(), labels), s.value)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[track_caller]
fn assert_same_samples(got: &[(Key, f64)], want: &[(Key, f64)], what: &str) {
    let names = |v: &[(Key, f64)]| v.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(got), names(want), "{what}: the series differ");
    for (g, w) in got.iter().zip(want) {
        let same = g.1 == w.1 || (g.1.is_nan() && w.1.is_nan());
        assert!(
            same,
            "{what}: {:?} came back as {} instead of {}",
            g.0, g.1, w.1
        );
    }
}

#[test]
fn python_parsers_read_back_every_series_and_label_value() {
    for timings in [TimingMode::Histogram, TimingMode::Summary] {
        let quantiles = vec![0.5, 0.9, 0.99, 0.999];
        let exporter = PrometheusExporter::builder()
            .address("127.0.0.1:0")
            .timings(timings)
            .quantiles(quantiles.clone())
            .build()
            .unwrap();
        let url = exporter.url();
        let harvester = Harvester::builder()
            .registry(awkward_registry())
            .exporter(exporter)
            .build();
        let snapshot = harvester.harvest_now();
        wait_ready(&url);
        let text = get(&url, &[("Accept", "text/plain; version=0.0.4")]);
        assert!(text.content_type.starts_with("text/plain; version=0.0.4"));
        let om = get(
            &url,
            &[
                ("Accept", "application/openmetrics-text; version=1.0.0"),
                ("Accept-Encoding", "gzip"),
            ],
        );
        assert!(om
            .content_type
            .starts_with("application/openmetrics-text; version=1.0.0"));
        assert_eq!(om.content_encoding, "gzip");
        let om_body = gunzip(&om.body);
        let bounds = Buckets::default().bounds().unwrap();

        let from_text = python_parse("text", &text.body);
        assert_same_samples(
            &parsed(&from_text),
            &expected(&snapshot, false, timings, &bounds, &quantiles),
            &format!("text format, {timings:?}"),
        );
        let from_om = python_parse("openmetrics", &om_body);
        assert_same_samples(
            &parsed(&from_om),
            &expected(&snapshot, true, timings, &bounds, &quantiles),
            &format!("OpenMetrics, {timings:?}"),
        );

        // Family metadata: type, unit and the escaped help text.
        for (families, om) in [(&from_text, false), (&from_om, true)] {
            let events = families
                .iter()
                .find(|f| f.name == "rt_events")
                .expect("rt_events");
            assert_eq!(events.kind, "counter");
            assert_eq!(events.help, "events \"seen\" \\ so far\nby kind");
            let wait = families
                .iter()
                .find(|f| f.name == "rt_wait_seconds")
                .expect("rt_wait_seconds");
            let kind = if timings == TimingMode::Histogram {
                "histogram"
            } else {
                "summary"
            };
            assert_eq!(wait.kind, kind);
            assert_eq!(wait.unit, if om { "seconds" } else { "" });
            let rx = families
                .iter()
                .find(|f| f.name == "rt_rx_bytes")
                .expect("rt_rx_bytes");
            assert_eq!(rx.unit, if om { "bytes" } else { "" });
            let level = families
                .iter()
                .find(|f| f.name == "rt_level")
                .expect("rt_level");
            assert_eq!(
                (level.kind.as_str(), level.help.as_str()),
                ("gauge", "rt.level")
            );
        }
        let n = snapshot.len();
        assert!(n > 20, "{n}");
        assert!(snapshot
            .series()
            .any(|s| s.descriptor().kind() == Kind::Timing));
        harvester.shutdown(Duration::from_secs(5)).unwrap();
    }
}

#[test]
fn promtool_check_metrics_prints_nothing() {
    for (timings, buckets) in [
        (TimingMode::Histogram, Buckets::default()),
        (
            TimingMode::Histogram,
            Buckets::Explicit(vec![0.005, 0.01, 0.1, 1.0, 10.0]),
        ),
        (TimingMode::Summary, Buckets::default()),
    ] {
        let registry = Registry::new();
        let requests = registry.counter_family(&REQUESTS, &["route"]);
        requests.add(&[NASTY], 3);
        let temperature = registry.gauge(&TEMPERATURE);
        temperature.set(f64::NAN);
        let t = registry.timing_family(&LATENCY, &["route"]);
        for v in latencies().iter().take(500) {
            t.record(&["/a"], *v);
        }
        t.get(&["/never"]);
        let exporter = PrometheusExporter::builder()
            .address("127.0.0.1:0")
            .timings(timings)
            .buckets(buckets)
            .build()
            .unwrap();
        let url = exporter.url();
        // The harvester's self-metrics are in the exposition too.
        let harvester = Harvester::builder()
            .registry(registry)
            .exporter(exporter)
            .build();
        harvester.harvest_now();
        wait_ready(&url);
        harvester.harvest_now(); // a second time, so the exporter's self-metrics are filled in
        let body = poll(Duration::from_secs(10), "the second harvest", || {
            let r = get(&url, &[("Accept", "text/plain;version=0.0.4")]);
            let s = String::from_utf8(r.body.clone()).unwrap();
            s.contains("sampler_harvest_count_total 2\n")
                .then_some(r.body)
        });
        let (ok, printed) = promtool_check(&body);
        assert!(
            ok && printed.is_empty(),
            "promtool check metrics ({timings:?}) said:\n{printed}"
        );
        harvester.shutdown(Duration::from_secs(5)).unwrap();
    }
}

/// Every unit of the mapping table (`spec/prometheus.md` §1) and names promtool would flag
/// as they are: abbreviated or non-base units, metric types, suffixes of other kinds' samples.
const UNITS: &[&str] = &[
    "",
    "1",
    "s",
    "ms",
    "us",
    "ns",
    "min",
    "h",
    "d",
    "By",
    "KiBy",
    "MiBy",
    "GiBy",
    "TiBy",
    "KBy",
    "MBy",
    "GBy",
    "TBy",
    "bit",
    "%",
    "Cel",
    "K",
    "Hz",
    "m",
    "g",
    "J",
    "V",
    "A",
    "W",
    "By/s",
    "bit/s",
    "1/s",
    "{packet}/s",
    "{request}",
    "KiBy/ms",
    "kb",
    "Mbit",
    "sec",
];
const AWKWARD_NAMES: &[&str] = &[
    "host.cpu.count",
    "process.thread.count",
    "queue.sum",
    "queue.bucket",
    "jobs.total",
    "disk.read.kb",
    "rtt.ms",
    "uptime.minutes",
    "cache.kilobytes",
    "link.bits",
    "temp.fahrenheit",
    "temp.millicelsius",
    "queue.gauge",
    "queue.counter.histogram",
    "a.b.c",
    "x.s",
    "system.cpu.load_average.1m",
    "process.cpu.user.microseconds",
];

#[test]
fn r11_promtool_accepts_every_kind_and_unit() {
    let registry = Registry::new();
    let mut descriptors = Vec::new();
    for (i, unit) in UNITS.iter().enumerate() {
        let name = |kind: &str| format!("unit{i}.{kind}");
        descriptors.push(Descriptor::owned(
            name("events"),
            Kind::Counter,
            *unit,
            "a counter",
        ));
        descriptors.push(
            Descriptor::owned(name("fraction"), Kind::Counter, *unit, "counts hundredths")
                .with_divisor(100),
        );
        descriptors.push(Descriptor::owned(
            name("level"),
            Kind::Gauge,
            *unit,
            "a gauge",
        ));
        descriptors.push(Descriptor::owned(
            name("wait"),
            Kind::Timing,
            *unit,
            "a timing",
        ));
    }
    for (i, name) in AWKWARD_NAMES.iter().enumerate() {
        let unit = UNITS[i % UNITS.len()];
        for kind in [Kind::Counter, Kind::Gauge, Kind::Timing] {
            let dotted = format!("{name}.k{}", kind.as_str().len());
            descriptors.push(Descriptor::owned(*name, kind, unit, "an awkward name"));
            descriptors.push(Descriptor::owned(dotted, kind, unit, ""));
        }
    }
    for d in &descriptors {
        assert!(d.validate().is_ok(), "{}: {:?}", d.name(), d.validate());
    }
    registry
        .register(FnSampler::new("every-unit", move |w| {
            for d in &descriptors {
                // Labels Prometheus keeps for histogram buckets and summary quantiles, on
                // every kind.
                let labels = [("le", "x"), ("quantile", "y")];
                match d.kind() {
                    Kind::Counter => w.counter(d, &labels, 12_345),
                    Kind::Gauge => w.gauge(d, &labels, 2.5),
                    _ => {
                        let mut t = Distribution::new(3);
                        for v in [0.5, 3.0, 250.0] {
                            t.record(v);
                        }
                        w.timing(d, &labels, t);
                    }
                }
            }
        }))
        .keep();
    for timings in [TimingMode::Histogram, TimingMode::Summary] {
        let exporter = PrometheusExporter::builder()
            .address("127.0.0.1:0")
            .timings(timings)
            .build()
            .unwrap();
        let url = exporter.url();
        let harvester = Harvester::builder()
            .registry(registry.clone())
            .exporter(exporter)
            .build();
        harvester.harvest_now();
        wait_ready(&url);
        let body = get(&url, &[("Accept", "text/plain;version=0.0.4")]).body;
        let text = String::from_utf8(body.clone()).unwrap();
        // Every family of the unit table made it (none left out as a collision).
        let families = text
            .lines()
            .filter(|l| l.starts_with("# TYPE unit"))
            .count();
        assert_eq!(families, 4 * UNITS.len(), "{text}");
        assert!(
            text.contains(
                "unit3_level_seconds{exported_le=\"x\",exported_quantile=\"y\"} 0.0025\n"
            ),
            "{text}"
        );
        assert!(text
            .contains("unit1_fraction_total{exported_le=\"x\",exported_quantile=\"y\"} 123.45\n"));
        let (ok, printed) = promtool_check(&body);
        assert!(
            ok && printed.is_empty(),
            "promtool check metrics ({timings:?}) said:\n{printed}\non:\n{text}"
        );
        harvester.shutdown(Duration::from_secs(5)).unwrap();
    }
}

#[test]
fn the_snapshot_shape_is_what_the_tests_assume() {
    // Guards the helpers above: a harvest of the awkward registry holds every kind.
    let h = Harvester::builder()
        .registry(awkward_registry())
        .self_metrics(false)
        .build();
    let s = h.harvest_now();
    let kinds: Vec<Kind> = s.series().map(|x| x.descriptor().kind()).collect();
    for k in [Kind::Counter, Kind::Gauge, Kind::Timing] {
        assert!(kinds.contains(&k));
    }
    let arc: Arc<Snapshot> = s;
    assert_eq!(arc.len(), 6 + 2 + 8 + 2);
}

/// The live page at the endpoint's root, in a real browser: it shows the harvested series
/// beside a link to the metrics, with no error on the page.
#[cfg(feature = "ui")]
#[test]
fn r17_the_endpoint_root_is_the_live_page_in_a_browser() {
    let registry = Registry::new();
    let requests = registry.counter(&REQUESTS);
    let latency = registry.timing(&LATENCY);
    let exporter = PrometheusExporter::builder()
        .address("127.0.0.1:0")
        .build()
        .unwrap();
    let root = format!("http://{}/", exporter.local_addr());
    let harvester = Harvester::builder()
        .registry(registry)
        .interval(Duration::from_millis(200))
        .harvest_at_start(true)
        .exporter(exporter)
        .start();
    let mut b = browser::Browser::launch();
    b.navigate(&root);
    let names = "[...document.querySelectorAll('.series .name')].map(n => n.textContent)";
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        requests.add(7);
        latency.record(0.02);
        let shown = b.eval(names);
        let has = |n: &str| shown.as_array().is_some_and(|a| a.iter().any(|x| x == n));
        let timing_drawn = b.eval(
            "[...document.querySelectorAll('.series')].some(c => c.querySelector('.name').textContent === 'interop.latency' && /p99 [0-9.]+ ms/.test(c.querySelector('.value').textContent))",
        );
        if has("interop.requests") && has("interop.latency") && timing_drawn == true {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the page did not show the series: {shown}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        b.eval("[...document.querySelectorAll('#links a')].map(a => [a.textContent, a.getAttribute('href')])"),
        serde_json::json!([["Metrics", "/metrics"], ["Health", "/-/healthy"]])
    );
    b.drain_events();
    assert!(b.errors.is_empty(), "errors on the page: {:#?}", b.errors);
    drop(b);
    harvester.shutdown(Duration::from_secs(5)).unwrap();
}
