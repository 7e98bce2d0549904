//! The official decoder (Python `opentelemetry-proto`) confirms every series, sent directly and
//! through the rotel collector.

use std::collections::BTreeMap;
use std::time::Duration;

use sampler_api::{Exporter, Snapshot, Value};
use sampler_exporter_otlp::mapping::unix_nanos;
use sampler_exporter_otlp::{HistogramMode, OtlpExporter, Temporality};
use serde_json::Value as Json;

use crate::support::{PyReceiver, Rotel};
use crate::{deadline, Fixture};

/// One data point as the decoder printed it, with what it belongs to.
#[derive(Debug)]
struct Point {
    resource: BTreeMap<String, String>,
    scope: (String, String),
    metric: Json,
    kind: String,
    point: Json,
}

fn string_attrs(attrs: &Json) -> BTreeMap<String, String> {
    attrs
        .as_array()
        .map(|a| {
            a.iter()
                .map(|kv| {
                    (
                        kv["key"].as_str().unwrap().to_owned(),
                        kv["value"]["stringValue"]
                            .as_str()
                            .unwrap_or_else(|| panic!("not a string attribute: {kv}"))
                            .to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Every data point of every request, by (metric name, attributes).
fn points(requests: &[Json]) -> BTreeMap<(String, BTreeMap<String, String>), Vec<Point>> {
    let mut out: BTreeMap<_, Vec<Point>> = BTreeMap::new();
    for line in requests {
        assert_eq!(line["content_type"], "application/x-protobuf");
        for rm in line["request"]["resourceMetrics"].as_array().unwrap() {
            let resource = string_attrs(&rm["resource"]["attributes"]);
            for sm in rm["scopeMetrics"].as_array().unwrap() {
                let scope = (
                    sm["scope"]["name"].as_str().unwrap_or("").to_owned(),
                    sm["scope"]["version"].as_str().unwrap_or("").to_owned(),
                );
                for m in sm["metrics"].as_array().unwrap() {
                    let (kind, data) = ["sum", "gauge", "histogram", "exponentialHistogram"]
                        .iter()
                        .find_map(|k| m.get(*k).map(|d| (k.to_string(), d)))
                        .unwrap_or_else(|| panic!("metric of no known type: {m}"));
                    for p in data["dataPoints"].as_array().unwrap() {
                        let key = (
                            m["name"].as_str().unwrap().to_owned(),
                            string_attrs(&p["attributes"]),
                        );
                        out.entry(key).or_default().push(Point {
                            resource: resource.clone(),
                            scope: scope.clone(),
                            metric: m.clone(),
                            kind: kind.clone(),
                            point: p.clone(),
                        });
                    }
                }
            }
        }
    }
    out
}

/// A 64-bit integer field: JSON strings in the protobuf JSON mapping, absent when zero.
fn u64_field(v: &Json, name: &str) -> u64 {
    match &v[name] {
        Json::Null => 0,
        Json::String(s) => s.parse().unwrap(),
        Json::Number(n) => n.as_u64().unwrap(),
        other => panic!("{name} is {other}"),
    }
}

fn i64_field(v: &Json, name: &str) -> i64 {
    match &v[name] {
        Json::Null => 0,
        Json::String(s) => s.parse().unwrap(),
        Json::Number(n) => n.as_i64().unwrap(),
        other => panic!("{name} is {other}"),
    }
}

fn counts(v: &Json) -> Vec<u64> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|c| c.as_str().unwrap().parse().unwrap())
                .collect()
        })
        .unwrap_or_default()
}

struct Expect<'a> {
    resource: &'a [(&'a str, &'a str)],
    scope: (&'a str, &'a str),
    temporality: &'a str,
    histogram: HistogramMode,
    /// Per series (by name and labels): the start time expected, when not the series' own.
    start_override: Option<u64>,
}

/// Checks that the decoded requests hold exactly the snapshot's series, each intact.
fn confirm(snapshot: &Snapshot, requests: &[Json], want: &Expect<'_>) {
    let points = points(requests);
    let total: usize = points.values().map(Vec::len).sum();
    assert_eq!(
        total,
        snapshot.len(),
        "data points received vs series sent: {:#?}",
        points.keys().collect::<Vec<_>>()
    );
    let time = unix_nanos(snapshot.time);
    for s in snapshot.series() {
        let d = s.descriptor();
        let labels: BTreeMap<String, String> = s
            .labels()
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let key = (d.name().to_owned(), labels);
        let found = points
            .get(&key)
            .unwrap_or_else(|| panic!("series {key:?} did not arrive"));
        assert_eq!(
            found.len(),
            1,
            "series {key:?} arrived {} times",
            found.len()
        );
        let Point {
            resource,
            scope,
            metric,
            kind,
            point,
        } = &found[0];
        let ctx = format!("series {key:?}: {point}");
        for (k, v) in want.resource {
            assert_eq!(
                resource.get(*k).map(String::as_str),
                Some(*v),
                "resource {k}"
            );
        }
        assert_eq!((scope.0.as_str(), scope.1.as_str()), want.scope, "scope");
        assert_eq!(metric["unit"].as_str().unwrap_or(""), d.unit(), "{ctx}");
        assert_eq!(
            metric["description"].as_str().unwrap_or(""),
            d.description(),
            "{ctx}"
        );
        assert_eq!(u64_field(point, "timeUnixNano"), time, "{ctx}");
        // The series' own start rounded down to the millisecond (`spec/otlp.md`).
        let own = s.start_unix_nanos();
        let start = want.start_override.unwrap_or(own - own % 1_000_000);
        match s.value() {
            Value::Counter(raw) => {
                assert_eq!(kind, "sum", "{ctx}");
                assert_eq!(metric["sum"]["isMonotonic"], true, "{ctx}");
                assert_eq!(
                    metric["sum"]["aggregationTemporality"], want.temporality,
                    "{ctx}"
                );
                assert_eq!(u64_field(point, "startTimeUnixNano"), start, "{ctx}");
                if d.divisor() == 1 {
                    assert_eq!(u64_field(point, "asInt"), *raw, "{ctx}");
                } else {
                    assert_eq!(
                        point["asDouble"].as_f64(),
                        Some(d.counter_value(*raw)),
                        "{ctx}"
                    );
                }
            }
            Value::Gauge(g) => {
                assert_eq!(kind, "gauge", "{ctx}");
                assert_eq!(point["asDouble"].as_f64(), Some(*g), "{ctx}");
            }
            Value::Timing(dist) => {
                assert_eq!(u64_field(point, "startTimeUnixNano"), start, "{ctx}");
                assert_eq!(u64_field(point, "count"), dist.count(), "{ctx}");
                assert_eq!(point["sum"].as_f64(), Some(dist.sum()), "{ctx}");
                if want.start_override.is_some() {
                    // A delta after the first: min and max of the interval are unknown.
                    assert!(
                        point.get("min").is_none() && point.get("max").is_none(),
                        "{ctx}"
                    );
                } else {
                    assert_eq!(point["min"].as_f64(), Some(dist.min()), "{ctx}");
                    assert_eq!(point["max"].as_f64(), Some(dist.max()), "{ctx}");
                }
                match want.histogram {
                    HistogramMode::Exponential => {
                        assert_eq!(kind, "exponentialHistogram", "{ctx}");
                        assert_eq!(
                            metric["exponentialHistogram"]["aggregationTemporality"],
                            want.temporality
                        );
                        assert_eq!(i64_field(point, "scale"), dist.scale() as i64, "{ctx}");
                        assert_eq!(u64_field(point, "zeroCount"), dist.zero_count(), "{ctx}");
                        assert_eq!(
                            i64_field(&point["positive"], "offset"),
                            dist.offset() as i64,
                            "{ctx}"
                        );
                        assert_eq!(
                            counts(&point["positive"]["bucketCounts"]),
                            dist.bucket_counts(),
                            "{ctx}"
                        );
                    }
                    HistogramMode::Explicit => {
                        assert_eq!(kind, "histogram", "{ctx}");
                        let bounds: Vec<f64> = point["explicitBounds"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|b| b.as_f64().unwrap())
                            .collect();
                        let c = counts(&point["bucketCounts"]);
                        assert_eq!(c.len(), bounds.len() + 1, "{ctx}");
                        let mut below = 0;
                        for (i, b) in bounds.iter().enumerate() {
                            below += c[i];
                            assert_eq!(below, dist.count_at_most(*b), "{ctx} at le {b}");
                        }
                        assert_eq!(below + c[bounds.len()], dist.count(), "{ctx}");
                    }
                }
            }
            other => panic!("unexpected value {other:?}"),
        }
    }
}

fn exporter_to(url: &str) -> OtlpExporter {
    OtlpExporter::builder()
        .endpoint(url)
        .resource("service.name", "checkout")
        .resource("service.instance.id", "checkout-7")
        .resource("deployment.environment.name", "test \"quoted\" ü")
        .scope("sampler-tests", "9.9.9")
        .build()
        .expect("build exporter")
}

const RESOURCE: &[(&str, &str)] = &[
    ("service.name", "checkout"),
    ("service.instance.id", "checkout-7"),
    ("deployment.environment.name", "test \"quoted\" ü"),
];

#[test]
fn r13_official_decoder_confirms_every_series() {
    let rx = PyReceiver::start();
    let fx = Fixture::new();
    let snap = fx.harvest();
    let mut exporter = exporter_to(&rx.url());
    exporter.export(snap.clone()).unwrap();
    exporter.flush(deadline(10)).expect("flush");
    let requests = rx.wait_for(Duration::from_secs(10), |r| !r.is_empty());
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["content_encoding"], "gzip");
    confirm(
        &snap,
        &requests,
        &Expect {
            resource: RESOURCE,
            scope: ("sampler-tests", "9.9.9"),
            temporality: "AGGREGATION_TEMPORALITY_CUMULATIVE",
            histogram: HistogramMode::Exponential,
            start_override: None,
        },
    );
    exporter.shutdown(deadline(5)).unwrap();
}

#[test]
fn r13_official_decoder_confirms_delta_and_explicit_buckets() {
    let rx = PyReceiver::start();
    let fx = Fixture::new();
    let mut exporter = OtlpExporter::builder()
        .endpoint(rx.url())
        .compression(sampler_exporter_otlp::Compression::None)
        .temporality(Temporality::Delta)
        .histogram(HistogramMode::Explicit)
        .buckets([0.001, 0.004, 0.5, 1.0, 8.0])
        .resource("service.name", "delta")
        .build()
        .unwrap();
    let first = fx.harvest();
    exporter.export(first.clone()).unwrap();
    exporter.flush(deadline(10)).unwrap();
    // The second harvest adds to every counter and timing.
    fx.requests.get(&["GET", "/"]).add(5);
    fx.latency.record(&["/"], 0.003);
    fx.latency.record(&["/slow"], 0.75);
    fx.depth.set(&["mail"], 9.0);
    std::thread::sleep(Duration::from_millis(2)); // a later harvest time
    let second = fx.harvest();
    exporter.export(second.clone()).unwrap();
    exporter.flush(deadline(10)).unwrap();
    let requests = rx.wait_for(Duration::from_secs(10), |r| r.len() >= 2);
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0]["content_encoding"], "");
    let expect = Expect {
        resource: &[("service.name", "delta")],
        scope: ("sampler", env!("CARGO_PKG_VERSION")),
        temporality: "AGGREGATION_TEMPORALITY_DELTA",
        histogram: HistogramMode::Explicit,
        start_override: None,
    };
    // The first delta of a series is its whole total since its start.
    confirm(&first, &requests[..1], &expect);
    // The second is the change, starting at the first harvest. Checked against the
    // difference of the two snapshots, built here as a snapshot of deltas.
    let diff = Snapshot::from_series(
        second.time,
        second.interval,
        second.sequence,
        second.series().map(|s| {
            let prev = first.series().find(|p| p.id() == s.id()).unwrap();
            let value = match (s.value(), prev.value()) {
                (Value::Counter(a), Value::Counter(b)) => Value::Counter(a - b),
                (Value::Timing(a), Value::Timing(b)) => {
                    let d = sampler_exporter_otlp::mapping::delta_distribution(a, b).unwrap();
                    Value::Timing(Box::new(d))
                }
                (v, _) => v.clone(),
            };
            let mut s = s.to_owned();
            s.value = value;
            s
        }),
    );
    confirm(
        &diff,
        &requests[1..],
        &Expect {
            start_override: Some(unix_nanos(first.time)),
            ..expect
        },
    );
    let points = points(&requests[1..]);
    let get = |name: &str, attrs: &[(&str, &str)]| {
        let key = (
            name.to_owned(),
            attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        );
        &points[&key][0].point
    };
    let p = get("http.server.requests", &[("method", "GET"), ("route", "/")]);
    assert_eq!(u64_field(p, "asInt"), 5);
    assert_eq!(u64_field(p, "startTimeUnixNano"), unix_nanos(first.time));
    let p = get(
        "http.server.requests",
        &[("method", "POST"), ("route", "/a\"b\\c\nd")],
    );
    assert_eq!(u64_field(p, "asInt"), 0);
    let p = get("http.server.duration", &[("route", "/slow")]);
    assert_eq!(u64_field(p, "count"), 1);
    assert_eq!(counts(&p["bucketCounts"]), vec![0, 0, 0, 1, 0, 0]);
    assert_eq!(p["sum"].as_f64(), Some(0.75));
    assert!(p.get("min").is_none() && p.get("max").is_none(), "{p}");
    let p = get("http.server.duration", &[("route", "/")]);
    assert_eq!(u64_field(p, "count"), 1);
    assert_eq!(counts(&p["bucketCounts"]), vec![0, 1, 0, 0, 0, 0]);
    let p = get("queue.depth", &[("queue", "mail")]);
    assert_eq!(p["asDouble"].as_f64(), Some(9.0));
    let p = get("process.cpu.user", &[("pid", "42")]);
    assert_eq!(p["asDouble"].as_f64(), Some(0.0));
    assert_eq!(points.values().map(Vec::len).sum::<usize>(), diff.len());
    exporter.shutdown(deadline(5)).unwrap();
}

#[test]
fn r13_through_rotel_every_series_arrives_intact() {
    let rx = PyReceiver::start();
    let rotel = Rotel::start(rx.port);
    let fx = Fixture::new();
    let snap = fx.harvest();
    let mut exporter = exporter_to(&rotel.http_url());
    exporter.export(snap.clone()).unwrap();
    exporter.flush(deadline(10)).expect("flush to rotel");
    let n = snap.len();
    // rotel batches (100 ms) and may regroup: wait until every data point has arrived.
    let requests = rx.wait_for(Duration::from_secs(15), |r| {
        points(r).values().map(Vec::len).sum::<usize>() >= n
    });
    confirm(
        &snap,
        &requests,
        &Expect {
            resource: RESOURCE,
            scope: ("sampler-tests", "9.9.9"),
            temporality: "AGGREGATION_TEMPORALITY_CUMULATIVE",
            histogram: HistogramMode::Exponential,
            start_override: None,
        },
    );
    assert_eq!(
        sampler_exporter_otlp_points_sent(&exporter),
        n as u64,
        "rotel accepted every point"
    );
    exporter.shutdown(deadline(5)).unwrap();
}

#[test]
fn r13_grpc_through_rotel_every_series_arrives_intact() {
    let rx = PyReceiver::start();
    let rotel = Rotel::start(rx.port);
    let fx = Fixture::new();
    let snap = fx.harvest();
    let mut exporter = OtlpExporter::builder()
        .protocol(sampler_exporter_otlp::Protocol::Grpc)
        .endpoint(format!("http://127.0.0.1:{}", rotel.grpc_port))
        .header("x-tenant", "a")
        .resource("service.name", "checkout")
        .resource("service.instance.id", "checkout-7")
        .resource("deployment.environment.name", "test \"quoted\" ü")
        .scope("sampler-tests", "9.9.9")
        .build()
        .expect("build the grpc exporter");
    crate::support::wait_tcp(rotel.grpc_port, Duration::from_secs(10));
    exporter.export(snap.clone()).unwrap();
    exporter
        .flush(deadline(10))
        .expect("flush to rotel over grpc");
    let n = snap.len();
    let requests = rx.wait_for(Duration::from_secs(15), |r| {
        points(r).values().map(Vec::len).sum::<usize>() >= n
    });
    confirm(
        &snap,
        &requests,
        &Expect {
            resource: RESOURCE,
            scope: ("sampler-tests", "9.9.9"),
            temporality: "AGGREGATION_TEMPORALITY_CUMULATIVE",
            histogram: HistogramMode::Exponential,
            start_override: None,
        },
    );
    assert_eq!(sampler_exporter_otlp_points_sent(&exporter), n as u64);
    exporter.shutdown(deadline(5)).unwrap();
}

fn sampler_exporter_otlp_points_sent(e: &OtlpExporter) -> u64 {
    crate::self_metric(e, "sampler.exporter.otlp.points", &[("result", "sent")])
}

#[test]
fn r13_in_a_harvester_every_harvest_and_the_self_metrics_arrive() {
    let rx = PyReceiver::start();
    let fx = Fixture::new();
    let exporter = exporter_to(&rx.url());
    // A second view of the exporter's self-metrics, to see when the first request is done.
    let stats = sampler_api::Registry::new();
    let _view = stats.register_arc(Exporter::sampler(&exporter).unwrap());
    let view = sampler_api::Harvester::builder()
        .registry(stats)
        .self_metrics(false)
        .build();
    let harvester = sampler_api::Harvester::builder()
        .registry(fx.registry.clone())
        .interval(Duration::from_secs(3600))
        .harvest_at_start(true)
        .exporter(exporter)
        .start();
    // The harvest at start, then the last one at shutdown, which waits for the send.
    let until = deadline(10);
    while view
        .harvest_now()
        .find("sampler.exporter.otlp.requests", &[("result", "sent")])
        .map(|s| s.value().clone())
        != Some(Value::Counter(1))
    {
        assert!(
            std::time::Instant::now() < until,
            "the first harvest was never sent"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    harvester
        .shutdown(Duration::from_secs(5))
        .expect("shutdown sends the last harvest");
    let requests = rx.requests();
    assert_eq!(requests.len(), 2);
    let last = points(&requests[1..]);
    let names: std::collections::BTreeSet<&str> = last.keys().map(|k| k.0.as_str()).collect();
    for name in [
        "sampler.exporter.otlp.requests",
        "sampler.exporter.otlp.retries",
        "sampler.exporter.otlp.points",
        "sampler.exporter.otlp.sent",
        "sampler.exporter.otlp.queue.length",
        "sampler.exporter.otlp.encode.duration",
        "sampler.exporter.otlp.skipped",
        "http.server.requests",
    ] {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
    // By the last harvest, the first request had been sent and counted.
    let sent = &last[&(
        "sampler.exporter.otlp.requests".to_owned(),
        [("result".to_owned(), "sent".to_owned())].into(),
    )][0]
        .point;
    assert_eq!(u64_field(sent, "asInt"), 1);
}
