//! The encoders against `prometheus-client`: for the same series, both text formats must come
//! out byte-for-byte equal (where `prometheus-client` follows the formats), plus the rules
//! `prometheus-client` has no counterpart for (collisions, summaries, `_created`, protobuf).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry as PcRegistry, Unit};
use proptest::prelude::*;
use sampler_api::{Descriptor, Distribution, Kind, Labels, Series, SeriesId, Snapshot, Value};

use super::*;

fn series(d: &Arc<Descriptor>, labels: &[(&str, &str)], value: Value) -> Series {
    Series::new(
        SeriesId::next(),
        d.clone(),
        Labels::from_pairs(labels).unwrap(),
        UNIX_EPOCH + Duration::from_millis(1_700_000_000_250),
        value,
    )
}

fn snapshot(series: Vec<Series>) -> Snapshot {
    Snapshot::from_series(SystemTime::now(), Duration::from_secs(10), 1, series)
}

fn dist(scale: i8, values: &[f64]) -> Value {
    let mut d = Distribution::new(scale);
    for v in values {
        d.record(*v);
    }
    Value::Timing(Box::new(d))
}

/// A snapshot exercising every kind, units, empty descriptions, label-less series, escapes,
/// non-ASCII text and families interleaved by the samplers. `full` adds what
/// `prometheus-client`'s OpenMetrics encoder gets wrong: non-finite values (it writes `inf`)
/// and HELP text that needs escaping (it escapes nothing).
fn fixture(full: bool) -> Snapshot {
    let req = Arc::new(Descriptor::counter(
        "http.server.requests",
        "1",
        "requests served",
    ));
    let bytes = Arc::new(Descriptor::counter("net.rx", "By", "bytes received"));
    let temp = Arc::new(Descriptor::gauge("room.temperature", "Cel", ""));
    let load = Arc::new(if full {
        Descriptor::gauge("system.load", "1", "load \\ average\nper \"core\"")
    } else {
        Descriptor::gauge("system.load", "1", "load average per core")
    });
    let lat = Arc::new(Descriptor::timing(
        "http.server.duration",
        "s",
        "request latency",
    ));
    let size = Arc::new(Descriptor::timing(
        "http.response.size",
        "By",
        "response size",
    ));
    let mut v = vec![
        series(
            &req,
            &[("method", "GET"), ("route", "/a\"b\\c\nd")],
            Value::Counter(12345),
        ),
        series(&temp, &[], Value::Gauge(21.5)),
        series(
            &req,
            &[("method", "POST"), ("route", "/ünïcødé/日本")],
            Value::Counter(0),
        ),
        series(&bytes, &[], Value::Counter(u64::MAX)),
        series(&load, &[("cpu", "")], Value::Gauge(-0.000123)),
        series(
            &lat,
            &[("route", "/")],
            dist(3, &[0.0, 0.001, 0.002, 0.004, 0.05, 0.3, 0.3, 2.0, 100.0]),
        ),
        series(&lat, &[("route", "/empty")], dist(3, &[])),
        series(&size, &[], dist(0, &[10.0, 600.0, 1e6])),
        series(&load, &[("cpu", "1")], Value::Gauge(1e21)),
        series(&load, &[("cpu", "2")], Value::Gauge(123456789.0)),
    ];
    if full {
        v.push(series(&load, &[("cpu", "nan")], Value::Gauge(f64::NAN)));
        v.push(series(
            &load,
            &[("cpu", "inf")],
            Value::Gauge(f64::INFINITY),
        ));
        v.push(series(
            &load,
            &[("cpu", "-inf")],
            Value::Gauge(f64::NEG_INFINITY),
        ));
    }
    snapshot(v)
}

/// The same series written through `prometheus-client`'s encoders, grouped and named
/// independently of the encoder under test (only the naming rules are shared).
#[derive(Debug)]
struct Reference {
    snapshot: Arc<Snapshot>,
    bounds: Vec<f64>,
}

impl Collector for Reference {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Families in order of first appearance, each with all its series.
        let mut families: Vec<(&Descriptor, Vec<SeriesRef<'_>>)> = Vec::new();
        for s in self.snapshot.series() {
            let d = &**s.descriptor();
            match families
                .iter_mut()
                .find(|(f, _)| f.name() == d.name() && f.kind() == d.kind() && f.unit() == d.unit())
            {
                Some((_, v)) => v.push(s),
                None => families.push((d, vec![s])),
            }
        }
        for (d, members) in families {
            let mapping::Family {
                name: full, unit, ..
            } = mapping::family(d.name(), d.kind(), d.unit());
            let (base, unit) = if unit.is_empty() {
                (full.as_str(), None)
            } else {
                (
                    &full[..full.len() - unit.len() - 1],
                    Some(Unit::Other(unit.clone())),
                )
            };
            let help = if d.description().is_empty() {
                d.name()
            } else {
                d.description()
            };
            let ty = match d.kind() {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
                Kind::Timing => MetricType::Histogram,
                other => panic!("no reference encoding for {other}"),
            };
            let mut m = encoder.encode_descriptor(base, help, unit.as_ref(), ty)?;
            for s in members {
                let labels: Vec<(String, String)> = s
                    .labels()
                    .iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect();
                let mut e = m.encode_family(&labels)?;
                match s.value() {
                    Value::Counter(v) => e.encode_counter::<NoLabelSet, u64, f64>(v, None)?,
                    Value::Gauge(v) => e.encode_gauge(v)?,
                    Value::Timing(dist) => {
                        // prometheus-client takes per-bucket counts and adds them up itself.
                        let mut buckets = Vec::new();
                        let mut prev = 0;
                        for b in &self.bounds {
                            let c = dist.count_at_most(*b);
                            buckets.push((*b, c - prev));
                            prev = c;
                        }
                        buckets.push((f64::INFINITY, dist.count() - prev));
                        e.encode_histogram::<NoLabelSet>(dist.sum(), dist.count(), &buckets, None)?
                    }
                    other => panic!("no reference encoding for {other:?}"),
                }
            }
        }
        Ok(())
    }
}

fn reference(snapshot: &Snapshot, bounds: Vec<f64>) -> (String, String) {
    let mut registry = PcRegistry::default();
    registry.register_collector(Box::new(Reference {
        snapshot: Arc::new(snapshot.clone()),
        bounds,
    }));
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
    let mut om = String::new();
    prometheus_client::encoding::text::encode(&mut om, &registry).unwrap();
    (text, om)
}

fn ours(config: &EncoderConfig, snapshot: &Snapshot, format: Format) -> String {
    let mut enc = Encoder::new(config).unwrap();
    let plan = enc.plan(snapshot);
    let mut out = Vec::new();
    enc.encode(&plan, format, &mut out);
    String::from_utf8(out).unwrap()
}

fn no_created() -> EncoderConfig {
    EncoderConfig {
        openmetrics_created: false,
        ..Default::default()
    }
}

#[track_caller]
fn assert_same(ours: &str, theirs: &str) {
    if ours != theirs {
        for (i, (a, b)) in ours.lines().zip(theirs.lines()).enumerate() {
            assert_eq!(a, b, "first difference at line {}", i + 1);
        }
        assert_eq!(
            ours.lines().count(),
            theirs.lines().count(),
            "line counts differ"
        );
        assert_eq!(ours, theirs);
    }
}

#[test]
fn text_format_is_byte_equal_to_prometheus_client() {
    let s = fixture(true);
    let bounds = Buckets::default().bounds().unwrap();
    let (text, _) = reference(&s, bounds);
    assert_same(&ours(&no_created(), &s, Format::Text), &text);
    // `_created` belongs to OpenMetrics only.
    assert_same(&ours(&EncoderConfig::default(), &s, Format::Text), &text);
}

#[test]
fn openmetrics_is_byte_equal_to_prometheus_client() {
    let s = fixture(false);
    let (_, om) = reference(&s, Buckets::default().bounds().unwrap());
    assert_same(&ours(&no_created(), &s, Format::OpenMetrics), &om);
}

#[test]
fn openmetrics_created_lines_are_the_only_addition() {
    let s = fixture(false);
    let (_, om) = reference(&s, Buckets::default().bounds().unwrap());
    let with = ours(&EncoderConfig::default(), &s, Format::OpenMetrics);
    let created: Vec<&str> = with.lines().filter(|l| l.contains("_created")).collect();
    // One per counter and timing series.
    assert_eq!(created.len(), 6, "{with}");
    assert!(
        created.iter().all(|l| l.ends_with(" 1700000000.25")),
        "{created:?}"
    );
    let without: Vec<&str> = with.lines().filter(|l| !l.contains("_created")).collect();
    assert_same(&(without.join("\n") + "\n"), &om);
}

#[test]
fn created_follows_each_series_start_time() {
    let req = Arc::new(Descriptor::counter("jobs.done", "1", "jobs"));
    let at = |ms: u64, route: &str| {
        let mut s = series(&req, &[("route", route)], Value::Counter(1));
        s.start_time = UNIX_EPOCH + Duration::from_millis(ms);
        s
    };
    let s = snapshot(vec![
        at(1_700_000_000_250, "a"),
        at(1_700_000_000_250, "b"),
        at(1_700_000_001_000, "c"),
        at(1_700_000_000_250, "d"),
    ]);
    let om = ours(&EncoderConfig::default(), &s, Format::OpenMetrics);
    let created: Vec<&str> = om.lines().filter(|l| l.contains("_created")).collect();
    assert_eq!(
        created,
        [
            "jobs_done_created{route=\"a\"} 1700000000.25",
            "jobs_done_created{route=\"b\"} 1700000000.25",
            "jobs_done_created{route=\"c\"} 1700000001.0",
            "jobs_done_created{route=\"d\"} 1700000000.25",
        ],
        "{om}"
    );
}

#[test]
fn explicit_and_finer_buckets_match_too() {
    let s = fixture(true);
    for b in [
        Buckets::Explicit(vec![0.0, 0.001, 0.0025, 0.3, 1.0, 99.0, 1e5]),
        Buckets::Exponential {
            scale: 2,
            min: 1e-3,
            max: 2e3,
        },
        Buckets::Exponential {
            scale: 5,
            min: 0.2,
            max: 0.5,
        },
    ] {
        let config = EncoderConfig {
            buckets: b.clone(),
            openmetrics_created: false,
            ..Default::default()
        };
        let (text, _) = reference(&s, b.bounds().unwrap());
        assert_same(&ours(&config, &s, Format::Text), &text);
    }
    let s = fixture(false);
    let b = Buckets::Explicit(vec![0.0005, 0.3, 700.0]);
    let config = EncoderConfig {
        buckets: b.clone(),
        openmetrics_created: false,
        ..Default::default()
    };
    let (_, om) = reference(&s, b.bounds().unwrap());
    assert_same(&ours(&config, &s, Format::OpenMetrics), &om);
}

#[test]
fn openmetrics_spells_non_finite_values_as_the_format_says() {
    let s = fixture(true);
    let om = ours(&EncoderConfig::default(), &s, Format::OpenMetrics);
    assert!(om.contains("system_load{cpu=\"nan\"} NaN\n"));
    assert!(om.contains("system_load{cpu=\"inf\"} +Inf\n"));
    assert!(om.contains("system_load{cpu=\"-inf\"} -Inf\n"));
    assert!(
        om.contains("# HELP system_load load \\\\ average\\nper \\\"core\\\"\n"),
        "{om}"
    );
    assert!(om.ends_with("# EOF\n"));
}

#[test]
fn help_type_and_unit_once_per_family_even_when_interleaved() {
    let s = fixture(true);
    let om = ours(&EncoderConfig::default(), &s, Format::OpenMetrics);
    for family in [
        "http_server_requests",
        "system_load",
        "http_server_duration_seconds",
        "room_temperature_celsius",
    ] {
        assert_eq!(
            om.matches(&format!("# TYPE {family} ")).count(),
            1,
            "{family}"
        );
        assert_eq!(
            om.matches(&format!("# HELP {family} ")).count(),
            1,
            "{family}"
        );
    }
    assert!(om.contains("# UNIT http_server_duration_seconds seconds\n"));
    assert!(om.contains("# UNIT net_rx_bytes bytes\n"));
    assert!(!om.contains("# UNIT http_server_requests"));
    // An empty description falls back to the dotted name.
    assert!(om.contains("# HELP room_temperature_celsius room.temperature\n"));
}

#[test]
fn cumulative_counts_equal_count_at_most() {
    let mut values = Vec::new();
    let mut x = 1e-5;
    while x < 1e4 {
        values.push(x);
        x *= 1.07;
    }
    for scale in [-3i8, 0, 1, 3, 5, 8] {
        let Value::Timing(d) = dist(scale, &values) else {
            unreachable!()
        };
        for b in [
            Buckets::default(),
            Buckets::Exponential {
                scale: 3,
                min: 1e-4,
                max: 1e3,
            },
            Buckets::Explicit(vec![0.0, 1e-4, 0.00123, 0.5, 1.0, 3.3, 5e3, 9e3]),
        ] {
            let set = BucketSet::new(&b).unwrap();
            let mut cum = Vec::new();
            set.cumulative(&d, &mut cum);
            let want: Vec<u64> = set.bounds.iter().map(|v| d.count_at_most(*v)).collect();
            assert_eq!(cum, want, "scale {scale}, {b:?}");
        }
    }
}

#[test]
fn colliding_names_keep_the_first_family_and_report_the_other() {
    let a = Arc::new(Descriptor::counter("jobs", "1", "jobs done"));
    let b = Arc::new(Descriptor::gauge("jobs.created", "1", "a gauge"));
    let c = Arc::new(Descriptor::gauge("x_y.z", "1", ""));
    let d = Arc::new(Descriptor::gauge("x.y_z", "1", ""));
    let t = Arc::new(Descriptor::timing("lat", "", ""));
    let e = Arc::new(Descriptor::counter("lat.count", "1", ""));
    // A gauge named like another kind's samples is renamed rather than left out.
    let g = Arc::new(Descriptor::gauge("jobs.total", "1", ""));
    let s = snapshot(vec![
        series(&a, &[], Value::Counter(1)),
        series(&b, &[], Value::Gauge(2.0)),
        series(&c, &[], Value::Gauge(3.0)),
        series(&d, &[("x", "1")], Value::Gauge(4.0)),
        series(&d, &[("x", "2")], Value::Gauge(5.0)),
        series(&t, &[], dist(3, &[1.0])),
        series(&e, &[], Value::Counter(6)),
        series(&g, &[], Value::Gauge(7.0)),
    ]);
    let enc = Encoder::new(EncoderConfig::default()).unwrap();
    let plan = enc.plan(&s);
    let got: Vec<(&str, &str, u64)> = plan
        .collisions
        .iter()
        .map(|c| (c.name.as_str(), c.dropped.as_str(), c.series))
        .collect();
    assert_eq!(
        got,
        vec![
            ("jobs_created", "jobs.created (gauge)", 1),
            ("x_y_z", "x.y_z (gauge)", 2),
            ("lat_count", "lat.count (counter)", 1),
        ]
    );
    assert_eq!(plan.dropped_series(), 4);
    assert_eq!(plan.series(), 4);
    let text = ours(&EncoderConfig::default(), &s, Format::Text);
    assert!(
        text.contains("jobs_total 1\n") && !text.contains(" 2.0\n") && text.contains("x_y_z 3.0\n")
    );
    assert!(text.contains("jobs_total_value 7.0\n"), "{text}");
    assert!(!text.contains("x_y_z{"), "{text}");
}

#[test]
fn summaries_when_asked_for() {
    let lat = Arc::new(Descriptor::timing("rpc.duration", "s", "rpc latency"));
    let values: Vec<f64> = (1..=1000).map(|i| i as f64 / 1000.0).collect();
    let s = snapshot(vec![
        series(&lat, &[("quantile", "x"), ("m", "get")], dist(5, &values)),
        series(&lat, &[("m", "none")], dist(5, &[])),
    ]);
    let config = EncoderConfig {
        timings: TimingMode::Summary,
        quantiles: vec![0.5, 0.99],
        ..Default::default()
    };
    let text = ours(&config, &s, Format::Text);
    assert!(
        text.contains("# TYPE rpc_duration_seconds summary\n"),
        "{text}"
    );
    let p99 = text
        .lines()
        .find(|l| {
            l.starts_with(
                "rpc_duration_seconds{exported_quantile=\"x\",m=\"get\",quantile=\"0.99\"} ",
            )
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .expect("p99 line");
    assert!(
        (p99 - 0.99).abs() / 0.99 <= Distribution::relative_error(5),
        "{p99}"
    );
    assert!(text.contains("rpc_duration_seconds{m=\"none\",quantile=\"0.5\"} NaN\n"));
    assert!(text.contains("rpc_duration_seconds_count{m=\"none\"} 0\n"));
    let om = ours(&config, &s, Format::OpenMetrics);
    assert!(
        om.contains("rpc_duration_seconds_created{m=\"none\"} 1700000000.25\n"),
        "{om}"
    );
}

#[test]
fn a_user_label_named_le_is_renamed_on_histograms() {
    let lat = Arc::new(Descriptor::timing("q.wait", "s", "wait"));
    let s = snapshot(vec![series(&lat, &[("le", "x")], dist(3, &[0.1]))]);
    let text = ours(&EncoderConfig::default(), &s, Format::Text);
    assert!(
        text.contains("q_wait_seconds_bucket{exported_le=\"x\",le=\"+Inf\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("q_wait_seconds_count{exported_le=\"x\"} 1\n"));
}

#[cfg(feature = "protobuf")]
#[test]
fn protobuf_reads_back_with_native_buckets() {
    use prost::Message;
    let s = fixture(true);
    let config = EncoderConfig {
        native_histograms: true,
        ..Default::default()
    };
    let out = {
        let mut enc = Encoder::new(&config).unwrap();
        let plan = enc.plan(&s);
        let mut out = Vec::new();
        enc.encode(&plan, Format::Protobuf, &mut out);
        out
    };
    let mut buf = out.as_slice();
    let mut families = Vec::new();
    while !buf.is_empty() {
        families.push(crate::proto::MetricFamily::decode_length_delimited(&mut buf).unwrap());
    }
    let names: Vec<&str> = families
        .iter()
        .map(|f| f.name.as_deref().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "http_server_requests_total",
            "room_temperature_celsius",
            "net_rx_bytes_total",
            "system_load",
            "http_server_duration_seconds",
            "http_response_size_bytes"
        ]
    );
    let req = &families[0].metric[0];
    assert_eq!(req.counter.as_ref().unwrap().value, Some(12345.0));
    assert_eq!(req.label[1].value.as_deref(), Some("/a\"b\\c\nd"));
    let h = families[4].metric[0].histogram.as_ref().unwrap();
    assert_eq!(h.sample_count, Some(9));
    assert_eq!(h.schema, Some(3));
    assert_eq!(h.zero_count, Some(1));
    assert_eq!(h.zero_threshold, Some(f64::MIN_POSITIVE));
    let total: i64 = {
        let mut c = 0i64;
        h.positive_delta
            .iter()
            .map(|d| {
                c += d;
                c
            })
            .sum()
    };
    assert_eq!(total, 8);
    assert_eq!(h.bucket.len(), 17);
    assert_eq!(h.bucket.last().unwrap().cumulative_count, Some(8));
    let empty = families[4].metric[1].histogram.as_ref().unwrap();
    assert_eq!(empty.sample_count, Some(0));
    assert!(empty.positive_span.is_empty());
}

fn arb_value(kind: Kind) -> BoxedStrategy<Value> {
    match kind {
        Kind::Counter => any::<u64>().prop_map(Value::Counter).boxed(),
        Kind::Gauge => prop_oneof![any::<f64>(), -1e6..1e6f64, Just(0.0)]
            .prop_map(Value::Gauge)
            .boxed(),
        Kind::Timing => (0i8..=8, prop::collection::vec(0.0..1e4f64, 0..40))
            .prop_map(|(s, v)| dist(s, &v))
            .boxed(),
        other => panic!("no strategy for {other}"),
    }
}

fn arb_snapshot() -> impl Strategy<Value = Snapshot> {
    let descriptors = vec![
        Arc::new(Descriptor::counter("p.c", "1", "a counter")),
        Arc::new(Descriptor::counter("p.bytes", "By", "")),
        Arc::new(Descriptor::gauge("p.g", "s", "a gauge")),
        Arc::new(Descriptor::timing("p.t", "s", "a timing")),
    ];
    prop::collection::vec(
        (
            0usize..4,
            "\\PC{0,12}|[\\\\\"\n é]{0,6}",
            // A timing's own `le` label is renamed (prometheus-client would write it twice).
            "[a-z]{1,3}".prop_filter("le is reserved", |k| k != "le"),
        ),
        0..30,
    )
    .prop_flat_map(move |items| {
        let descriptors = descriptors.clone();
        let values: Vec<_> = items
            .iter()
            .map(|(d, _, _)| arb_value(descriptors[*d].kind()))
            .collect();
        (Just(items), values).prop_map(move |(items, values)| {
            let mut seen = std::collections::HashSet::new();
            let series = items
                .into_iter()
                .zip(values)
                .filter(|((d, v, k), _)| seen.insert((*d, v.clone(), k.clone())))
                .map(|((d, v, k), value)| {
                    series(&descriptors[d], &[(k.as_str(), v.as_str())], value)
                })
                .collect();
            snapshot(series)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_snapshot_encodes_like_prometheus_client(s in arb_snapshot()) {
        let (text, om) = reference(&s, Buckets::default().bounds().unwrap());
        prop_assert_eq!(ours(&no_created(), &s, Format::Text), text);
        let finite = s.series().all(|x| !matches!(*x.value(), Value::Gauge(v) if !v.is_finite()));
        if finite {
            prop_assert_eq!(ours(&no_created(), &s, Format::OpenMetrics), om);
        }
    }
}

/// Counters with a divisor, units converted to base units, a gauge named like a count.
fn r11_snapshot() -> Snapshot {
    let cpu = Arc::new(Descriptor::fractional_counter(
        "process.cpu.time",
        "s",
        1_000_000,
        "cpu time",
    ));
    let rtt = Arc::new(Descriptor::gauge("net.rtt", "ms", "round trip"));
    let rx = Arc::new(Descriptor::counter("net.rx", "KiBy", "received"));
    let wait = Arc::new(Descriptor::timing("queue.wait", "ms", "queue wait"));
    let threads = Arc::new(Descriptor::gauge(
        "process.thread.count",
        "{thread}",
        "threads",
    ));
    snapshot(vec![
        series(&cpu, &[("cpu_mode", "user")], Value::Counter(2_510_000)),
        series(&rtt, &[("le", "x")], Value::Gauge(1500.0)),
        series(&rx, &[], Value::Counter(3)),
        series(&wait, &[], dist(3, &[2.0, 2.0, 4.0, 1000.0])),
        series(&threads, &[], Value::Gauge(4.0)),
    ])
}

#[test]
fn r11_divisors_and_converted_units_in_the_text_formats() {
    let s = r11_snapshot();
    let text = ours(&no_created(), &s, Format::Text);
    for line in [
        "# TYPE process_cpu_time_seconds_total counter\n",
        "process_cpu_time_seconds_total{cpu_mode=\"user\"} 2.51\n",
        // A label Prometheus keeps for histogram buckets is renamed on every kind.
        "net_rtt_seconds{exported_le=\"x\"} 1.5\n",
        "net_rx_bytes_total 3072.0\n",
        "queue_wait_seconds_bucket{le=\"0.001953125\"} 0\n",
        "queue_wait_seconds_bucket{le=\"0.00390625\"} 2\n",
        "queue_wait_seconds_bucket{le=\"+Inf\"} 4\n",
        "queue_wait_seconds_sum 1.008\n",
        "# TYPE process_thread_count_value gauge\n",
    ] {
        assert!(text.contains(line), "{line} not in:\n{text}");
    }
    let om = ours(&no_created(), &s, Format::OpenMetrics);
    for line in [
        "# UNIT process_cpu_time_seconds seconds\n",
        "process_cpu_time_seconds_total{cpu_mode=\"user\"} 2.51\n",
        "# UNIT net_rtt_seconds seconds\n",
        "net_rx_bytes_total 3072.0\n",
        "queue_wait_seconds_sum 1.008\n",
    ] {
        assert!(om.contains(line), "{line} not in:\n{om}");
    }
    let summary = EncoderConfig {
        timings: TimingMode::Summary,
        quantiles: vec![1.0],
        ..no_created()
    };
    let text = ours(&summary, &s, Format::Text);
    assert!(
        text.contains("queue_wait_seconds{quantile=\"1\"} 1.0\n"),
        "{text}"
    );
}

#[cfg(feature = "protobuf")]
#[test]
fn r11_divisors_and_converted_units_in_protobuf() {
    use prost::Message;
    let s = r11_snapshot();
    let config = EncoderConfig {
        native_histograms: true,
        ..Default::default()
    };
    let mut enc = Encoder::new(&config).unwrap();
    let plan = enc.plan(&s);
    let mut out = Vec::new();
    enc.encode(&plan, Format::Protobuf, &mut out);
    let mut buf = out.as_slice();
    let mut families = Vec::new();
    while !buf.is_empty() {
        families.push(crate::proto::MetricFamily::decode_length_delimited(&mut buf).unwrap());
    }
    let value = |name: &str| {
        let f = families
            .iter()
            .find(|f| f.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing"));
        let m = &f.metric[0];
        m.counter
            .as_ref()
            .and_then(|c| c.value)
            .or(m.gauge.as_ref().and_then(|g| g.value))
    };
    assert_eq!(value("process_cpu_time_seconds_total"), Some(2.51));
    assert_eq!(value("net_rtt_seconds"), Some(1.5));
    assert_eq!(value("net_rx_bytes_total"), Some(3072.0));
    let h = families
        .iter()
        .find(|f| f.name.as_deref() == Some("queue_wait_seconds"))
        .unwrap()
        .metric[0]
        .histogram
        .clone()
        .unwrap();
    assert_eq!(h.sample_sum, Some(1.008));
    // Native buckets cannot be scaled from milliseconds: classic buckets alone.
    assert_eq!(h.schema, None);
    assert_eq!(
        h.bucket
            .iter()
            .find(|b| b.upper_bound == Some(0.00390625))
            .and_then(|b| b.cumulative_count),
        Some(2)
    );
}

#[cfg(not(feature = "protobuf"))]
#[test]
fn without_protobuf_native_histograms_are_refused() {
    let config = EncoderConfig {
        native_histograms: true,
        ..Default::default()
    };
    assert_eq!(
        Encoder::new(config).unwrap_err(),
        "native histograms need the protobuf feature of sampler-exporter-prometheus"
    );
}

/// One encoder kept across snapshots whose series come, go, change place and change labels
/// (and whose label texts outgrow the compaction slack) writes, in every text format, what a
/// new encoder writes for the same snapshot.
#[test]
fn a_kept_encoder_writes_what_a_new_one_writes_as_series_come_and_go() {
    let req = Arc::new(Descriptor::counter("http.requests", "1", "requests"));
    let temp = Arc::new(Descriptor::gauge("room.temperature", "Cel", ""));
    let lat = Arc::new(Descriptor::timing("http.duration", "s", "latency"));
    let long = "x".repeat(2_000);
    // (id, label value) per series; each round keeps some, drops some, adds some in the middle.
    let mut live: Vec<(SeriesId, String)> = Vec::new();
    let mut kept = Encoder::new(EncoderConfig::default()).unwrap();
    let mut summaries = Encoder::new(EncoderConfig {
        timings: TimingMode::Summary,
        ..Default::default()
    })
    .unwrap();
    for round in 0..60usize {
        live.retain(|(id, _)| id.get() % 3 != round as u64 % 3);
        let at = live.len() / 2;
        for k in 0..(round % 5 + 1) {
            let value = format!("/r{round}/{k}/{long}\"\\\n");
            live.insert(at.min(live.len()), (SeriesId::next(), value));
        }
        let mut series = Vec::new();
        for (n, (id, route)) in live.iter().enumerate() {
            let labels = Labels::from_pairs(&[("route", route), ("le", "x")]).unwrap();
            let (descriptor, value) = match n % 3 {
                0 => (&req, Value::Counter(n as u64)),
                1 => (&temp, Value::Gauge(n as f64 / 4.0)),
                _ => (&lat, dist(3, &[0.001 * n as f64, 0.5])),
            };
            series.push(Series::new(
                *id,
                descriptor.clone(),
                labels,
                UNIX_EPOCH + Duration::from_millis(1_700_000_000_250 + n as u64),
                value,
            ));
        }
        // A series without labels at the front, on odd rounds only.
        if round % 2 == 1 {
            series.insert(0, series_unlabelled(&temp));
        }
        let snap = snapshot(series);
        for (enc, config) in [
            (&mut kept, EncoderConfig::default()),
            (
                &mut summaries,
                EncoderConfig {
                    timings: TimingMode::Summary,
                    ..Default::default()
                },
            ),
        ] {
            let plan = enc.plan(&snap);
            for format in [Format::Text, Format::OpenMetrics] {
                let mut out = Vec::new();
                enc.encode(&plan, format, &mut out);
                assert_same(
                    &String::from_utf8(out).unwrap(),
                    &ours(&config, &snap, format),
                );
            }
        }
        let texts = &kept.labels;
        assert!(
            texts.text.len() <= 2 * texts.live + LabelTexts::SLACK + 3 * (long.len() + 64) * 5,
            "round {round}: {} bytes of label text kept for {} named",
            texts.text.len(),
            texts.live
        );
    }
}

fn series_unlabelled(d: &Arc<Descriptor>) -> Series {
    series(d, &[], Value::Gauge(1.0))
}

/// Series coming and going in one family (or in a sampler before it) leave the kept label
/// texts of the families after it alone: only the new series' labels are rendered.
#[test]
fn a_family_keeps_its_label_texts_when_another_changes() {
    let before = Arc::new(Descriptor::gauge("queue.depth", "1", "jobs"));
    let after = Arc::new(Descriptor::counter("http.requests", "1", "requests"));
    let stable: Vec<Series> = (0..100)
        .map(|k| {
            let route = format!("/api/{k}");
            series(&after, &[("route", &route)], Value::Counter(k))
        })
        .collect();
    let mut enc = Encoder::new(EncoderConfig::default()).unwrap();
    let mut kept_bytes = 0;
    for round in 0..10usize {
        let mut v: Vec<Series> = Vec::new();
        let mut fresh = 0;
        for k in 0..(round % 4) {
            let queue = format!("r{round}-{k}");
            fresh += "queue=\"".len() + queue.len() + "\"".len();
            v.push(series(&before, &[("queue", &queue)], Value::Gauge(1.0)));
        }
        v.extend(stable.iter().cloned());
        let snap = snapshot(v);
        let plan = enc.plan(&snap);
        let mut out = Vec::new();
        enc.encode(&plan, Format::Text, &mut out);
        assert_same(
            &String::from_utf8(out).unwrap(),
            &ours(&EncoderConfig::default(), &snap, Format::Text),
        );
        let grown = enc.labels.text.len() - kept_bytes;
        if round > 0 {
            assert_eq!(grown, fresh, "round {round}: label text rendered again");
        }
        kept_bytes = enc.labels.text.len();
    }
}
