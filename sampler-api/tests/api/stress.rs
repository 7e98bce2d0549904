//! Slot lifetimes under load: threads record by handle and by label values, make and drop
//! handles, remove and expire series, while two harvesters harvest as fast as they can. Every
//! snapshot is checked: no series holds a record made to another one.
//!
//! Bounded: `SAMPLER_STRESS_SECS` seconds (default 1, at most 60), longer only until at least
//! 20 harvests and 20 removals have run (never past 60 s; fewer fail the test: a run that did
//! not race removals against harvests proves nothing). `scripts/test.sh` runs it once under
//! valgrind's memcheck.
//!
//! How a record that landed in the wrong series shows:
//! - counters by label values in `stress.churn`: label `c{i}` always adds `weight(i)` =
//!   `1 + i << 24`, so a series' total `n · weight(i)` has `i · low == high` (low: its lowest 24
//!   bits, high: the rest); an add of another label's weight breaks that;
//! - `stress.stable`: label sets held by handles all along (never removed), incremented by
//!   handle and by label values: their totals are exact at the end;
//! - canaries (a counter, a gauge and a timing family at another scale) whose series are made,
//!   held and dropped, removed, and never recorded into: they must read zero;
//! - gauges set by label values `g{i}` to `i`, timings recorded by label values `t{i}` as
//!   `i + 1` (at scale 8, where the timing canary is at 0): a series reads its own value only.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sampler_api::{
    Counter, Descriptor, FamilyOptions, Harvester, Registry, Snapshot, Timing, Value,
};

static STABLE: Descriptor = Descriptor::counter("stress.stable", "1", "");
static CHURN: Descriptor = Descriptor::counter("stress.churn", "1", "");
static CANARY: Descriptor = Descriptor::counter("stress.canary", "1", "");
static GAUGES: Descriptor = Descriptor::gauge("stress.gauges", "1", "");
static GCANARY: Descriptor = Descriptor::gauge("stress.gcanary", "1", "");
static TIMES: Descriptor = Descriptor::timing("stress.times", "s", "");
static TCANARY: Descriptor = Descriptor::timing("stress.tcanary", "s", "");

const CHURN_LABELS: usize = 24;
const STABLE_LABELS: usize = 4;
const SHIFT: u32 = 24;

fn weight(i: usize) -> u64 {
    1 + ((i as u64 + 1) << SHIFT)
}

fn label(prefix: &str, i: usize) -> String {
    format!("{prefix}{i}")
}

fn seconds() -> f64 {
    std::env::var("SAMPLER_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(1.0)
        .clamp(0.1, 60.0)
}

/// A small, fast, per-thread random sequence.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

#[derive(Default)]
struct Counts {
    by_handle: AtomicU64,
    by_values: AtomicU64,
    handles: AtomicU64,
    removed: AtomicU64,
    refused: AtomicU64,
    harvests: AtomicU64,
    series_checked: AtomicU64,
    churn_series_seen: AtomicU64,
}

struct Families {
    stable: sampler_api::CounterFamily,
    churn: sampler_api::CounterFamily,
    canary: sampler_api::CounterFamily,
    gauges: sampler_api::GaugeFamily,
    gcanary: sampler_api::GaugeFamily,
    times: sampler_api::TimingFamily,
    tcanary: sampler_api::TimingFamily,
}

/// Checks one snapshot; returns the problems found.
fn check(snap: &Snapshot, counts: &Counts) -> Vec<String> {
    let mut bad = Vec::new();
    for s in snap.series() {
        counts.series_checked.fetch_add(1, Relaxed);
        let name = s.descriptor().name();
        let k = s.labels().get("k").unwrap_or("");
        match (name, &s.value()) {
            ("stress.churn", Value::Counter(v)) => {
                counts.churn_series_seen.fetch_add(1, Relaxed);
                let i: usize = k[1..].parse().unwrap();
                let (low, high) = (v & ((1 << SHIFT) - 1), v >> SHIFT);
                if high != (i as u64 + 1) * low {
                    bad.push(format!(
                        "{name}{{k={k}}} = {v:#x}: holds another label's adds"
                    ));
                }
            }
            ("stress.canary", Value::Counter(v)) if *v != 0 => {
                bad.push(format!("{name}{{k={k}}} = {v}, never incremented"));
            }
            ("stress.gcanary", Value::Gauge(g)) if *g != 0.0 => {
                bad.push(format!("{name}{{k={k}}} = {g}, never set"));
            }
            ("stress.tcanary", Value::Timing(d)) if d.count() != 0 => {
                bad.push(format!(
                    "{name}{{k={k}}} holds {} records, never recorded",
                    d.count()
                ));
            }
            ("stress.gauges", Value::Gauge(g)) => {
                let i: f64 = k[1..].parse().unwrap();
                if *g != 0.0 && *g != i {
                    bad.push(format!("{name}{{k={k}}} = {g}: another label's value"));
                }
            }
            ("stress.times", Value::Timing(d)) => {
                let want = k[1..].parse::<f64>().unwrap() + 1.0;
                if d.count() > 0 && (d.min() != want || d.max() != want) {
                    bad.push(format!(
                        "{name}{{k={k}}} holds values from {} to {}, only {want} was recorded",
                        d.min(),
                        d.max()
                    ));
                }
            }
            _ => {}
        }
    }
    bad
}

#[test]
fn stress_slot_lifetimes() {
    let secs = seconds();
    let registry = Registry::new();
    // Expiry after one harvest without change (the limit counts harvests: at least one).
    let expiring = FamilyOptions::default().expire_after(Duration::from_nanos(1));
    let f = Arc::new(Families {
        stable: registry.counter_family(&STABLE, &["k"]),
        churn: registry.counter_family_with(&CHURN, &["k"], expiring.clone()),
        canary: registry.counter_family_with(&CANARY, &["k"], expiring.clone()),
        gauges: registry.gauge_family_with(&GAUGES, &["k"], expiring.clone()),
        gcanary: registry.gauge_family(&GCANARY, &["k"]),
        times: registry.timing_family_with(&TIMES, &["k"], expiring.clone().scale(8)),
        tcanary: registry.timing_family_with(&TCANARY, &["k"], FamilyOptions::default().scale(0)),
    });
    let stable_labels: Vec<String> = (0..STABLE_LABELS).map(|i| label("s", i)).collect();
    let held: Vec<Counter> = stable_labels.iter().map(|l| f.stable.get(&[l])).collect();
    let stable_tally: Arc<Vec<AtomicU64>> =
        Arc::new((0..STABLE_LABELS).map(|_| AtomicU64::new(0)).collect());
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let problems = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(secs);
    let hard_limit = started + Duration::from_secs(60);

    std::thread::scope(|s| {
        // Recorders: by handle and by label values.
        for t in 0..2u64 {
            let (f, counts, stop) = (f.clone(), counts.clone(), stop.clone());
            let (held, tally) = (held.clone(), stable_tally.clone());
            s.spawn(move || {
                let churn: Vec<String> = (0..CHURN_LABELS).map(|i| label("c", i)).collect();
                let gauges: Vec<String> = (0..8).map(|i| label("g", i)).collect();
                let times: Vec<String> = (0..8).map(|i| label("t", i)).collect();
                let stable: Vec<String> = (0..STABLE_LABELS).map(|i| label("s", i)).collect();
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t + 1));
                let (mut by_handle, mut by_values, mut rounds) = (0, 0, 0u64);
                while !stop.load(Relaxed) {
                    for _ in 0..64 {
                        let i = rng.below(CHURN_LABELS);
                        f.churn.add(&[&churn[i]], weight(i));
                        let j = rng.below(STABLE_LABELS);
                        held[j].inc();
                        f.stable.inc(&[&stable[j]]);
                        tally[j].fetch_add(2, Relaxed);
                        let g = rng.below(8);
                        f.gauges.set(&[&gauges[g]], g as f64);
                        f.times.record(&[&times[g]], g as f64 + 1.0);
                        by_handle += 1;
                        by_values += 4;
                    }
                    // Lets the others run now and then (under valgrind threads take turns on
                    // one core, and harvests would be rare).
                    rounds += 1;
                    if rounds % 4 == 0 {
                        std::thread::yield_now();
                    }
                }
                counts.by_handle.fetch_add(by_handle, Relaxed);
                counts.by_values.fetch_add(by_values, Relaxed);
            });
        }
        // Handles made and dropped: to churn series (recorded through), and to canaries.
        {
            let (f, counts, stop) = (f.clone(), counts.clone(), stop.clone());
            s.spawn(move || {
                let mut rng = Rng(0xD1B5_4A32_D192_ED03);
                let (mut made, mut by_handle) = (0, 0);
                let mut kept: Vec<(Counter, Timing)> = Vec::new();
                while !stop.load(Relaxed) {
                    let i = rng.below(CHURN_LABELS);
                    let c = f.churn.get(&[&label("c", i)]);
                    c.add(weight(i));
                    c.clone().add(weight(i));
                    by_handle += 2;
                    let k = label("x", rng.below(16));
                    let canary = f.canary.get(&[&k]);
                    let gauge = f.gcanary.get(&[&k]);
                    let timing = f.tcanary.get(&[&k]);
                    made += 5;
                    drop(gauge);
                    kept.push((canary, timing));
                    if kept.len() > 4 {
                        kept.remove(rng.below(kept.len()));
                    }
                    std::thread::yield_now();
                }
                counts.handles.fetch_add(made, Relaxed);
                counts.by_handle.fetch_add(by_handle, Relaxed);
            });
        }
        // Removals.
        {
            let (f, counts, stop) = (f.clone(), counts.clone(), stop.clone());
            s.spawn(move || {
                let mut rng = Rng(0x94D0_49BB_1331_11EB);
                while !stop.load(Relaxed) {
                    let i = rng.below(CHURN_LABELS);
                    let x = label("x", rng.below(16));
                    let g = rng.below(8);
                    for ok in [
                        f.churn.remove(&[&label("c", i)]),
                        f.canary.remove(&[&x]),
                        f.gcanary.remove(&[&x]),
                        f.tcanary.remove(&[&x]),
                        f.gauges.remove(&[&label("g", g)]),
                        f.times.remove(&[&label("t", g)]),
                    ] {
                        if ok {
                            counts.removed.fetch_add(1, Relaxed);
                        } else {
                            counts.refused.fetch_add(1, Relaxed);
                        }
                    }
                    std::thread::yield_now();
                }
            });
        }
        // Two harvesters over the same registry, as fast as they can (each frees retired slots
        // and expires idle series); every snapshot is checked.
        for h in 0..2 {
            let (counts, stop, problems) = (counts.clone(), stop.clone(), problems.clone());
            let harvester = Harvester::builder()
                .registry(registry.clone())
                .interval(Duration::from_millis(1 + h))
                .self_metrics(false)
                .build();
            s.spawn(move || {
                while !stop.load(Relaxed) {
                    let snap = harvester.harvest_now();
                    counts.harvests.fetch_add(1, Relaxed);
                    let bad = check(&snap, &counts);
                    if !bad.is_empty() {
                        problems.lock().unwrap().extend(bad);
                        stop.store(true, Relaxed);
                    }
                }
            });
        }
        let enough = || counts.harvests.load(Relaxed) >= 20 && counts.removed.load(Relaxed) >= 20;
        while (Instant::now() < deadline || !enough())
            && Instant::now() < hard_limit
            && !stop.load(Relaxed)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Relaxed);
    });
    assert!(
        counts.harvests.load(Relaxed) >= 20 && counts.removed.load(Relaxed) >= 20,
        "too little happened to show anything: {} harvests, {} removals in {:.1?}",
        counts.harvests.load(Relaxed),
        counts.removed.load(Relaxed),
        started.elapsed()
    );

    let problems = problems.lock().unwrap();
    assert!(
        problems.is_empty(),
        "{} problems, the first: {:#?}",
        problems.len(),
        &problems[..problems.len().min(10)]
    );
    // The stable series were held all along: every increment is in them, exactly.
    let snap = Harvester::builder()
        .registry(registry)
        .self_metrics(false)
        .build()
        .harvest_now();
    assert!(check(&snap, &counts).is_empty());
    for (i, l) in stable_labels.iter().enumerate() {
        let want = stable_tally[i].load(Relaxed);
        assert_eq!(
            snap.find("stress.stable", &[("k", l)])
                .map(|s| s.value().clone()),
            Some(Value::Counter(want)),
            "stable series {l}"
        );
    }
    let c = |a: &AtomicU64| a.load(Relaxed);
    println!(
        "stress: {:.1} s; {} harvests, {} series checked ({} of the churned family); \
         {} records by handle, {} by label values; {} handles made; {} removals, {} refused \
         (a handle held); 0 records in another series",
        started.elapsed().as_secs_f64(),
        c(&counts.harvests),
        c(&counts.series_checked),
        c(&counts.churn_series_seen),
        c(&counts.by_handle),
        c(&counts.by_values),
        c(&counts.handles),
        c(&counts.removed),
        c(&counts.refused),
    );
}
