//! The recorder against a real registry and harvest.

use std::sync::Arc;

use metrics::Unit;
use proptest::prelude::*;
use sampler_adapter_metrics::{sanitize_label_key, sanitize_name, MetricsRecorder};
use sampler_api::{validate_label_key, validate_name, Harvester, Registry, Snapshot, Value};

fn harvest(registry: &Registry) -> Arc<Snapshot> {
    Harvester::builder()
        .registry(registry.clone())
        .build()
        .harvest_now()
}

#[test]
fn counters_gauges_and_histograms_are_harvested() {
    let registry = Registry::new();
    let recorder = MetricsRecorder::new(registry.clone());
    metrics::with_local_recorder(&recorder, || {
        metrics::describe_counter!("app.jobs", Unit::Count, "jobs done");
        let jobs = metrics::counter!("app.jobs", "queue" => "mail");
        jobs.increment(2);
        jobs.increment(3);
        metrics::counter!("app.jobs", "queue" => "sms").increment(1);
        metrics::counter!("app.absolute").absolute(40);
        metrics::counter!("app.absolute").absolute(10); // never goes down
        let g = metrics::gauge!("app.waiting");
        g.set(10.0);
        g.increment(2.5);
        g.decrement(0.5);
        let h = metrics::histogram!("app.latency");
        for v in [0.1, 0.2, 0.4] {
            h.record(v);
        }
    });
    let s = harvest(&registry);
    let mail = s
        .find("app.jobs", &[("queue", "mail")])
        .expect("mail series");
    assert!(
        matches!(mail.value(), Value::Counter(5)),
        "{:?}",
        mail.value()
    );
    assert_eq!(mail.descriptor().unit(), "1");
    assert_eq!(mail.descriptor().description(), "jobs done");
    let sms = s.find("app.jobs", &[("queue", "sms")]).expect("sms series");
    assert!(matches!(sms.value(), Value::Counter(1)));
    let abs = s.find("app.absolute", &[]).expect("absolute");
    assert!(
        matches!(abs.value(), Value::Counter(40)),
        "{:?}",
        abs.value()
    );
    let waiting = s.find("app.waiting", &[]).expect("gauge");
    assert!(
        matches!(waiting.value(), Value::Gauge(v) if *v == 12.0),
        "{:?}",
        waiting.value()
    );
    let latency = s.find("app.latency", &[]).expect("timing");
    match latency.value() {
        Value::Timing(d) => {
            assert_eq!(d.count(), 3);
            assert!((d.sum() - 0.7).abs() < 1e-9);
            assert_eq!(d.min(), 0.1);
            assert_eq!(d.max(), 0.4);
        }
        other => panic!("expected a timing, got {other:?}"),
    }
}

#[test]
fn names_and_label_keys_are_mapped_to_the_naming_rules() {
    let registry = Registry::new();
    let recorder = MetricsRecorder::new(registry.clone());
    metrics::with_local_recorder(&recorder, || {
        metrics::counter!("HTTP-Requests_Total", "Status-Code" => "200", "status_code" => "x")
            .increment(1);
    });
    let s = harvest(&registry);
    let series = s
        .find(
            "http_requests_total",
            &[("status_code", "200"), ("status_code_2", "x")],
        )
        .expect("sanitised series");
    assert!(matches!(series.value(), Value::Counter(1)));
}

#[test]
fn labels_in_another_order_share_one_series() {
    let registry = Registry::new();
    let recorder = MetricsRecorder::new(registry.clone());
    metrics::with_local_recorder(&recorder, || {
        metrics::counter!("orders", "region" => "eu", "kind" => "new").increment(1);
        metrics::counter!("orders", "kind" => "new", "region" => "eu").increment(2);
    });
    let s = harvest(&registry);
    let orders: Vec<_> = s.named("orders").collect();
    assert_eq!(orders.len(), 1);
    assert!(
        matches!(orders[0].value(), Value::Counter(3)),
        "{:?}",
        orders[0].value()
    );
}

#[test]
fn histograms_in_milliseconds_are_recorded_in_seconds() {
    let registry = Registry::new();
    let recorder = MetricsRecorder::new(registry.clone());
    metrics::with_local_recorder(&recorder, || {
        metrics::describe_histogram!("db.query", Unit::Milliseconds, "query time");
        metrics::histogram!("db.query").record(250.0);
    });
    let s = harvest(&registry);
    let q = s.find("db.query", &[]).expect("timing");
    assert_eq!(q.descriptor().unit(), "s");
    match q.value() {
        Value::Timing(d) => assert!((d.sum() - 0.25).abs() < 1e-12, "{}", d.sum()),
        other => panic!("expected a timing, got {other:?}"),
    }
}

#[test]
fn a_handle_keeps_recording_into_the_same_series() {
    let registry = Registry::new();
    let recorder = MetricsRecorder::new(registry.clone());
    let counter = metrics::with_local_recorder(&recorder, || metrics::counter!("loop.turns"));
    for _ in 0..1000 {
        counter.increment(1);
    }
    // Registering the same key again gives the same series.
    metrics::with_local_recorder(&recorder, || metrics::counter!("loop.turns").increment(1));
    let s = harvest(&registry);
    let turns: Vec<_> = s.named("loop.turns").collect();
    assert_eq!(turns.len(), 1);
    assert!(matches!(turns[0].value(), Value::Counter(1001)));
}

#[test]
fn the_global_recorder_is_harvested() {
    let registry = Registry::new();
    MetricsRecorder::new(registry.clone())
        .install()
        .expect("first install in this test binary");
    metrics::gauge!("global.temperature", "room" => "lab").set(21.5);
    let s = harvest(&registry);
    let t = s
        .find("global.temperature", &[("room", "lab")])
        .expect("gauge");
    assert!(matches!(t.value(), Value::Gauge(v) if *v == 21.5));
}

proptest! {
    #[test]
    fn any_name_or_label_maps_to_a_valid_one(name in any::<String>(), key in any::<String>(),
                                              value in any::<String>(), n in 0u64..1000) {
        let sane = sanitize_name(&name);
        prop_assert!(validate_name(&sane).is_ok(), "{name:?} -> {sane:?}");
        let sane_key = sanitize_label_key(&key);
        prop_assert!(validate_label_key(&sane_key).is_ok(), "{key:?} -> {sane_key:?}");
        // And through the recorder: nothing panics, the series shows under the valid name.
        let registry = Registry::new();
        let recorder = MetricsRecorder::new(registry.clone());
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!(name.clone(), key.clone() => value.clone()).increment(n);
            metrics::gauge!(name.clone(), key.clone() => value.clone()).set(n as f64);
            metrics::histogram!(name.clone()).record(n as f64);
        });
        let s = harvest(&registry);
        let found = s.find(&sane, &[(sane_key.as_str(), value.as_str())]);
        prop_assert!(found.is_some(), "no series {sane:?} {sane_key:?}={value:?}");
    }

    #[test]
    fn names_of_structured_input_stay_valid(name in "[A-Za-z0-9_.:/ -]{0,300}") {
        let sane = sanitize_name(&name);
        prop_assert!(validate_name(&sane).is_ok(), "{name:?} -> {sane:?}");
    }
}
