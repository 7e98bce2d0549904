//! Mistakes with labels: a family made with a key twice is rejected, and a lookup with the
//! wrong number of label values records in no series; both are errors the caller can see.

use sampler_api::{Descriptor, Event, FamilyError, Harvester, Registry, Snapshot, Value};

fn harvest(registry: &Registry) -> std::sync::Arc<Snapshot> {
    Harvester::builder()
        .registry(registry.clone())
        .build()
        .harvest_now()
}

/// The events of this binary whose text names `metric`.
fn events_naming(metric: &str) -> Vec<Event> {
    crate::events()
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.to_string().contains(metric))
        .cloned()
        .collect()
}

fn counter(s: &Snapshot, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
    match s.find(name, labels)?.value() {
        Value::Counter(n) => Some(*n),
        _ => None,
    }
}

#[test]
fn r9_a_family_with_a_duplicate_label_key_is_never_exported_and_said_once() {
    static DUP: Descriptor = Descriptor::counter("test.r9.dup", "1", "a key twice");
    crate::events();
    let registry = Registry::new();
    let fam = registry.counter_family(&DUP, &["route", "route"]);
    fam.inc(&["/a", "/b"]);
    fam.get(&["/c", "/d"]).add(2);
    let s = harvest(&registry);
    let exported: Vec<_> = s.named("test.r9.dup").collect();
    assert!(
        exported.is_empty(),
        "a family with the label key route twice exported {} series: {:?}",
        exported.len(),
        exported.iter().map(|s| s.labels()).collect::<Vec<_>>()
    );
    assert_eq!(
        counter(
            &s,
            "sampler.sampler.errors",
            &[("sampler", "test.r9.dup"), ("reason", "rejected")]
        ),
        Some(1),
        "the rejected family is counted at each harvest"
    );
    assert_eq!(
        events_naming("test.r9.dup"),
        vec![Event::FamilyRejected {
            error: FamilyError::DuplicateKey {
                metric: "test.r9.dup".into(),
                key: "route".into(),
            }
        }]
    );
    assert_eq!(
        events_naming("test.r9.dup")[0].to_string(),
        r#"family test.r9.dup: duplicate label key "route": the family records but is never exported"#
    );
}

#[test]
fn r9_the_fallible_constructors_name_the_family_and_the_key() {
    static OK: Descriptor = Descriptor::counter("test.r9.try", "1", "");
    static G: Descriptor = Descriptor::gauge("test.r9.try_gauge", "1", "");
    static T: Descriptor = Descriptor::timing("test.r9.try_timing", "s", "");
    static BAD: Descriptor = Descriptor::counter("Test.r9", "1", "");
    crate::events();
    let registry = Registry::new();
    let dup = registry
        .try_counter_family(&OK, &["a", "b", "a"])
        .unwrap_err();
    assert_eq!(
        dup,
        FamilyError::DuplicateKey {
            metric: "test.r9.try".into(),
            key: "a".into()
        }
    );
    assert_eq!(
        dup.to_string(),
        r#"family test.r9.try: duplicate label key "a""#
    );
    let key = registry.try_gauge_family(&G, &["ok", "__x"]).unwrap_err();
    assert_eq!(key.metric(), "test.r9.try_gauge");
    assert_eq!(
        key.to_string(),
        r#"family test.r9.try_gauge: invalid label key "__x": is reserved (keys starting with __ are)"#
    );
    let name = registry.try_timing_family(&T, &["k", "k"]).unwrap_err();
    assert!(matches!(name, FamilyError::DuplicateKey { ref key, .. } if key == "k"));
    let bad = registry.try_counter_family(&BAD, &["k"]).unwrap_err();
    assert!(
        matches!(bad, FamilyError::InvalidDescriptor { .. }),
        "{bad:?}"
    );
    assert!(
        registry.is_empty(),
        "a family refused by a fallible constructor is not registered"
    );
    assert!(
        events_naming("test.r9.try").is_empty(),
        "a mistake returned to the caller is not also said on the hook"
    );
    let fam = registry.try_counter_family(&OK, &["a", "b"]).unwrap();
    fam.inc(&["x", "y"]);
    assert_eq!(
        counter(
            &harvest(&registry),
            "test.r9.try",
            &[("a", "x"), ("b", "y")]
        ),
        Some(1)
    );
}

#[test]
fn r9_a_lookup_with_the_wrong_number_of_values_records_in_no_series() {
    static C: Descriptor = Descriptor::counter("test.r9.count", "1", "");
    static G: Descriptor = Descriptor::gauge("test.r9.count_gauge", "1", "");
    static T: Descriptor = Descriptor::timing("test.r9.count_timing", "s", "");
    static OTHER: Descriptor = Descriptor::counter("test.r9.count_other", "1", "");
    crate::events();
    let registry = Registry::new();
    let c = registry.counter_family(&C, &["method", "route"]);
    let g = registry.gauge_family(&G, &["state"]);
    let t = registry.timing_family(&T, &["route"]);
    // Series nobody records into: a stray record would show in one of them.
    let other = registry.counter_family(&OTHER, &["k"]);
    let quiet: Vec<_> = (0..50).map(|i| other.get(&[&i.to_string()])).collect();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..500 {
                    c.inc(&["GET"]); // one value short
                    c.add(&["GET", "/", "extra"], 2); // one too many
                    g.set(&[], 7.0);
                    t.record(&["/", "x"], 0.5);
                }
            });
        }
    });
    c.get(&["GET"]).inc();
    c.inc(&["GET", "/"]); // right, after wrong ones: the cache is not misled
    let s = harvest(&registry);
    assert_eq!(
        s.named("test.r9.count").count(),
        1,
        "only the right label set is a series (no overflow series)"
    );
    assert_eq!(
        counter(&s, "test.r9.count", &[("method", "GET"), ("route", "/")]),
        Some(1)
    );
    assert_eq!(s.named("test.r9.count_gauge").count(), 0);
    assert_eq!(s.named("test.r9.count_timing").count(), 0);
    for q in s.named("test.r9.count_other") {
        assert_eq!(
            q.value(),
            Value::Counter(0),
            "{:?} got a stray record",
            q.labels()
        );
    }
    assert_eq!(s.named("test.r9.count_other").count(), quiet.len());
    assert!(s
        .find("sampler.family.overflow", &[("metric", "test.r9.count")])
        .is_none());
    for (metric, n) in [
        ("test.r9.count", 2 * 1000 + 1),
        ("test.r9.count_gauge", 1000),
        ("test.r9.count_timing", 1000),
    ] {
        assert_eq!(
            counter(&s, "sampler.family.label_errors", &[("metric", metric)]),
            Some(n),
            "every wrong lookup of {metric} is counted"
        );
    }
    let said = events_naming("test.r9.count ");
    assert_eq!(said.len(), 1, "said once per family: {said:?}");
    assert_eq!(
        said[0].to_string(),
        "family test.r9.count takes 2 label values (method, route), got 1: lookups with the \
         wrong number of label values record nothing (counted in sampler.family.label_errors)"
    );
    assert_eq!(events_naming("test.r9.count_gauge").len(), 1);
    assert_eq!(events_naming("test.r9.count_timing").len(), 1);
}

#[test]
fn r9_try_get_returns_the_wrong_count_and_makes_nothing() {
    static C: Descriptor = Descriptor::counter("test.r9.try_get", "1", "");
    crate::events();
    let registry = Registry::new();
    let c = registry.counter_family(&C, &["method", "route"]);
    let err = c.try_get(&["GET"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "family test.r9.try_get takes 2 label values (method, route), got 1"
    );
    assert_eq!(
        (err.metric(), err.expected(), err.got()),
        ("test.r9.try_get", 2, 1)
    );
    assert_eq!(err.keys(), ["method", "route"]);
    assert_eq!(c.try_get(&["a", "b", "c"]).unwrap_err().got(), 3);
    c.try_get(&["GET", "/"]).unwrap().add(3);
    let s = harvest(&registry);
    assert_eq!(s.named("test.r9.try_get").count(), 1);
    assert_eq!(
        counter(&s, "test.r9.try_get", &[("method", "GET"), ("route", "/")]),
        Some(3)
    );
    assert!(
        s.find(
            "sampler.family.label_errors",
            &[("metric", "test.r9.try_get")]
        )
        .is_none(),
        "an error returned to the caller is not counted as a silent one"
    );
    assert!(events_naming("test.r9.try_get").is_empty());
}
