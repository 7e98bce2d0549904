//! Instruments: exact sums across threads, family bounds, expiry and quantile error.

use std::time::Duration;

use proptest::prelude::*;
use sampler_api::{Descriptor, Distribution, FamilyOptions, Harvester, Registry, Value};

static C: Descriptor = Descriptor::counter("inst.counter", "1", "");
static F: Descriptor = Descriptor::counter("inst.family", "1", "");
static T: Descriptor = Descriptor::timing("inst.timing", "s", "");

#[test]
fn increments_from_four_threads_sum_exactly() {
    let registry = Registry::new();
    let c = registry.counter(&C);
    let fam = registry.counter_family(&F, &["k"]);
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let c = c.clone();
            let fam = &fam;
            s.spawn(move || {
                for i in 0..250_000u64 {
                    c.inc();
                    fam.add(&[if i % 2 == 0 { "even" } else { "odd" }], t + 1);
                }
            });
        }
    });
    let h = Harvester::builder().registry(registry).build();
    let snap = h.harvest_now();
    assert_eq!(
        snap.find("inst.counter", &[]).unwrap().value(),
        Value::Counter(1_000_000)
    );
    let even = 125_000 * (1 + 2 + 3 + 4);
    assert_eq!(
        snap.find("inst.family", &[("k", "even")]).unwrap().value(),
        Value::Counter(even)
    );
    assert_eq!(
        snap.find("inst.family", &[("k", "odd")]).unwrap().value(),
        Value::Counter(even)
    );
}

#[test]
fn a_family_past_its_limit_stays_bounded_and_counts_the_overflow() {
    let registry = Registry::new();
    let fam = registry.counter_family_with(&F, &["user"], FamilyOptions::default().limit(10));
    for i in 0..1000 {
        fam.inc(&[&format!("user-{i}")]);
    }
    let h = Harvester::builder().registry(registry).build();
    let snap = h.harvest_now();
    let series: Vec<_> = snap.named("inst.family").collect();
    assert_eq!(series.len(), 11, "10 label sets plus the overflow series");
    let overflow = snap.find("inst.family", &[("overflow", "true")]).unwrap();
    assert_eq!(overflow.value(), Value::Counter(990));
    let total: u64 = series
        .iter()
        .map(|s| match s.value() {
            Value::Counter(c) => *c,
            _ => 0,
        })
        .sum();
    assert_eq!(total, 1000, "nothing recorded is lost");
    let counted = snap
        .find("sampler.family.overflow", &[("metric", "inst.family")])
        .unwrap();
    assert_eq!(counted.value(), Value::Counter(990));
}

#[test]
fn idle_label_sets_expire_unless_held() {
    let registry = Registry::new();
    let fam = registry.counter_family_with(
        &F,
        &["k"],
        FamilyOptions::default().expire_after(Duration::from_millis(20)),
    );
    let held = fam.get(&["held"]);
    held.inc();
    fam.inc(&["idle"]);
    let h = Harvester::builder()
        .registry(registry)
        .interval(Duration::from_millis(10))
        .self_metrics(false)
        .build();
    for _ in 0..4 {
        h.harvest_now();
    }
    let snap = h.harvest_now();
    assert!(snap.find("inst.family", &[("k", "idle")]).is_none());
    assert!(snap.find("inst.family", &[("k", "held")]).is_some());
    // Coming back after expiry starts a new series from zero.
    fam.add(&["idle"], 7);
    let snap = h.harvest_now();
    assert_eq!(
        snap.find("inst.family", &[("k", "idle")]).unwrap().value(),
        Value::Counter(7)
    );
}

#[test]
fn timings_from_many_threads_merge() {
    let registry = Registry::new();
    let t = registry.timing(&T);
    std::thread::scope(|s| {
        for k in 0..4 {
            let t = t.clone();
            s.spawn(move || {
                for i in 1..=1000 {
                    t.record(i as f64 * 0.001 * (k + 1) as f64);
                }
            });
        }
    });
    let d = t.distribution();
    assert_eq!(d.count(), 4000);
    assert_eq!(d.max(), 4.0);
    assert_eq!(d.min(), 0.001);
    let want: f64 = (1..=4).map(|k| k as f64 * 0.001 * 500_500.0).sum();
    assert!((d.sum() - want).abs() < 1e-6 * want);
}

fn exact_quantile(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    sorted[rank - 1]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn quantiles_stay_within_the_stated_bound(
        values in proptest::collection::vec(1e-6f64..1e4, 1..2000),
        scale in 0i8..=8,
    ) {
        let registry = Registry::new();
        let timing = registry.timing_family_with(&T, &[], FamilyOptions::default().scale(scale)).get(&[]);
        let mut reference = Distribution::new(scale);
        for v in &values {
            timing.record(*v);
            reference.record(*v);
        }
        let d = timing.distribution();
        // Same buckets, count, min and max; the sum only up to the order of additions.
        prop_assert_eq!(d.bucket_counts(), reference.bucket_counts());
        prop_assert_eq!(d.offset(), reference.offset());
        prop_assert_eq!((d.count(), d.min(), d.max()), (reference.count(), reference.min(), reference.max()));
        prop_assert!((d.sum() - reference.sum()).abs() <= 1e-12 * reference.sum());
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        let bound = Distribution::relative_error(scale) * (1.0 + 1e-9);
        for q in [0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0] {
            let exact = exact_quantile(&sorted, q);
            let est = d.quantile(q).unwrap();
            prop_assert!((est - exact).abs() / exact <= bound,
                "q={} exact={} est={} bound={}", q, exact, est, bound);
        }
    }
}

#[test]
fn a_reused_string_buffer_never_misleads_the_lookup_cache() {
    let registry = Registry::new();
    let fam = registry.counter_family(&F, &["user"]);
    // Same buffer, same address, same length, other contents: the cache must notice.
    let mut s = String::with_capacity(16);
    for name in ["anna", "bert", "anna", "carl"] {
        s.clear();
        s.push_str(name);
        fam.inc(&[&s]);
    }
    let snap = Harvester::builder()
        .registry(registry)
        .build()
        .harvest_now();
    let get = |v: &str| {
        snap.find("inst.family", &[("user", v)])
            .map(|s| s.value().clone())
    };
    assert_eq!(get("anna"), Some(Value::Counter(2)));
    assert_eq!(get("bert"), Some(Value::Counter(1)));
    assert_eq!(get("carl"), Some(Value::Counter(1)));
}

#[test]
fn a_fractional_counter_keeps_its_divisor_through_the_registry() {
    static CPU: Descriptor =
        Descriptor::fractional_counter("test.cpu.time", "s", 1_000_000, "cpu time");
    let registry = Registry::new();
    let cpu = registry.counter(&CPU);
    cpu.add(2_500_000);
    let s = sampler_api::Harvester::builder()
        .registry(registry)
        .self_metrics(false)
        .build()
        .harvest_now();
    let series = s.find("test.cpu.time", &[]).unwrap();
    assert_eq!(series.descriptor().divisor(), 1_000_000);
    assert_eq!(series.value(), sampler_api::Value::Counter(2_500_000));
    match series.value() {
        sampler_api::Value::Counter(raw) => {
            assert_eq!(series.descriptor().counter_value(*raw), 2.5)
        }
        _ => unreachable!(),
    }
}

#[test]
fn a_full_family_is_reported_once_on_the_event_hook() {
    static FULL: Descriptor = Descriptor::counter("test.full.family", "1", "a small family");
    let all = crate::events();
    let registry = Registry::new();
    let fam = registry.counter_family_with(&FULL, &["k"], FamilyOptions::default().limit(2));
    for v in ["a", "b", "c", "d", "e"] {
        fam.get(&[v]).inc();
    }
    let mine: Vec<sampler_api::Event> = all
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.to_string().contains("test.full.family"))
        .cloned()
        .collect();
    assert_eq!(
        mine,
        vec![sampler_api::Event::FamilyFull {
            metric: "test.full.family".into(),
            limit: 2
        }]
    );
}
