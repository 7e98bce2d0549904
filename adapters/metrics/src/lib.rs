//! A [`metrics::Recorder`] for [`sampler_api`]: `counter!`, `gauge!` and `histogram!` from any
//! crate instrumented with the `metrics` facade are harvested and exported like native
//! samplers.
//!
//! Each metric becomes an instrument family of the registry: a `metrics` counter a counter, a
//! gauge (set, increment, decrement) a gauge, a histogram a timing (a `Distribution`). Names
//! and label keys are free-form in `metrics`; they are mapped onto the naming rules of
//! `spec/sampler-api.md` §4 by [`sanitize_name`] and [`sanitize_label_key`] (label values
//! pass unchanged). One name used with different label key sets gives one family per key set.
//! Handles are cheap: `metrics` registers a key once and records through the handle, which
//! holds the family's series directly (no lookup per record).
//!
//! Units given by `describe_*!` map to UCUM (`Unit::Bytes` → `By`, `Unit::Count` → `1`, …);
//! a histogram described in milliseconds, microseconds or nanoseconds is recorded in seconds,
//! since timings are seconds. A description given after the metric's first use does not
//! change the family already made.
//!
//! # Example
//!
//! ```
//! use sampler_adapter_metrics::MetricsRecorder;
//! use sampler_api::{Harvester, Registry, Value};
//!
//! let registry = Registry::new();
//! let recorder = MetricsRecorder::new(registry.clone());
//! // In an application: `recorder.install()?` once at start.
//! metrics::with_local_recorder(&recorder, || {
//!     metrics::counter!("jobs.done", "queue" => "mail").increment(3);
//!     metrics::gauge!("jobs.waiting").set(7.0);
//!     metrics::histogram!("jobs.duration").record(0.25);
//! });
//! let snapshot = Harvester::builder().registry(registry).build().harvest_now();
//! let done = snapshot.find("jobs.done", &[("queue", "mail")]).unwrap();
//! assert!(matches!(done.value(), Value::Counter(3)));
//! ```

#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

mod names;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SetRecorderError, SharedString, Unit,
};
use sampler_api::{CounterFamily, Descriptor, GaugeFamily, Kind, Registry, TimingFamily};

pub use names::{sanitize_label_key, sanitize_name};

/// A `metrics` recorder that records into a sampler [`Registry`].
///
/// ```
/// use sampler_adapter_metrics::MetricsRecorder;
/// use sampler_api::Registry;
/// let recorder = MetricsRecorder::new(Registry::new());
/// metrics::with_local_recorder(&recorder, || metrics::counter!("hits").increment(1));
/// ```
pub struct MetricsRecorder {
    registry: Registry,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for MetricsRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("MetricsRecorder")
            .field("families", &inner.families.len())
            .finish()
    }
}

#[derive(Default)]
struct Inner {
    /// What `describe_*` said, by sanitised name and kind.
    described: HashMap<(String, Kind), (Option<Unit>, String)>,
    /// Families by sanitised name, kind and sanitised label keys (sorted).
    families: HashMap<FamilyKey, Family>,
}

#[derive(Hash, PartialEq, Eq)]
struct FamilyKey {
    name: String,
    kind: Kind,
    keys: Vec<String>,
}

enum Family {
    Counter(CounterFamily),
    Gauge(GaugeFamily),
    Timing(TimingFamily, f64),
}

impl MetricsRecorder {
    /// A recorder whose metrics become families of `registry`.
    pub fn new(registry: Registry) -> Self {
        MetricsRecorder {
            registry,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Installs this recorder as the process-wide `metrics` recorder (once per process).
    ///
    /// ```
    /// use sampler_adapter_metrics::MetricsRecorder;
    /// use sampler_api::Registry;
    /// MetricsRecorder::new(Registry::global().clone()).install()?;
    /// metrics::counter!("started").increment(1);
    /// # Ok::<(), metrics::SetRecorderError<MetricsRecorder>>(())
    /// ```
    pub fn install(self) -> Result<(), SetRecorderError<Self>> {
        metrics::set_global_recorder(self)
    }

    fn describe(&self, kind: Kind, key: KeyName, unit: Option<Unit>, description: SharedString) {
        let name = sanitize_name(key.as_str());
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner
            .described
            .insert((name, kind), (unit, description.into_owned()));
    }

    /// The family for this key and kind, made on first use, and the label values in key order.
    fn with_family<R>(&self, kind: Kind, key: &Key, f: impl FnOnce(&Family, &[&str]) -> R) -> R {
        let name = sanitize_name(key.name());
        // Sorted by key, so call sites that give the same labels in another order share one
        // family (and one series per label set).
        let mut labels: Vec<(String, &str)> = key
            .labels()
            .map(|l| (sanitize_label_key(l.key()), l.value()))
            .collect();
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        let values: Vec<&str> = labels.iter().map(|l| l.1).collect();
        let keys = names::unique_keys(labels.into_iter().map(|l| l.0));
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let family_key = FamilyKey { name, kind, keys };
        if !inner.families.contains_key(&family_key) {
            let (unit, description) = inner
                .described
                .get(&(family_key.name.clone(), kind))
                .cloned()
                .unwrap_or((None, String::new()));
            let family = self.make_family(&family_key, unit, description);
            inner.families.insert(
                FamilyKey {
                    name: family_key.name.clone(),
                    kind,
                    keys: family_key.keys.clone(),
                },
                family,
            );
        }
        f(&inner.families[&family_key], &values)
    }

    fn make_family(&self, key: &FamilyKey, unit: Option<Unit>, description: String) -> Family {
        let keys: Vec<&str> = key.keys.iter().map(String::as_str).collect();
        let (unit, factor) = match (kind_is_timing(key.kind), unit) {
            (true, Some(Unit::Milliseconds)) => ("s", 1e-3),
            (true, Some(Unit::Microseconds)) => ("s", 1e-6),
            (true, Some(Unit::Nanoseconds)) => ("s", 1e-9),
            (_, unit) => (unit.map_or("", ucum), 1.0),
        };
        let d = Descriptor::owned(key.name.clone(), key.kind, unit, description);
        match key.kind {
            Kind::Counter => Family::Counter(self.registry.counter_family(&d, &keys)),
            Kind::Gauge => Family::Gauge(self.registry.gauge_family(&d, &keys)),
            _ => Family::Timing(self.registry.timing_family(&d, &keys), factor),
        }
    }
}

fn kind_is_timing(kind: Kind) -> bool {
    matches!(kind, Kind::Timing)
}

/// UCUM spelling of a `metrics` unit.
fn ucum(unit: Unit) -> &'static str {
    match unit {
        Unit::Count => "1",
        Unit::Percent => "%",
        Unit::Seconds => "s",
        Unit::Milliseconds => "ms",
        Unit::Microseconds => "us",
        Unit::Nanoseconds => "ns",
        Unit::Tebibytes => "TiBy",
        Unit::Gibibytes => "GiBy",
        Unit::Mebibytes => "MiBy",
        Unit::Kibibytes => "KiBy",
        Unit::Bytes => "By",
        Unit::TerabitsPerSecond => "Tbit/s",
        Unit::GigabitsPerSecond => "Gbit/s",
        Unit::MegabitsPerSecond => "Mbit/s",
        Unit::KilobitsPerSecond => "kbit/s",
        Unit::BitsPerSecond => "bit/s",
        Unit::CountPerSecond => "1/s",
    }
}

impl Recorder for MetricsRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(Kind::Counter, key, unit, description)
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(Kind::Gauge, key, unit, description)
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(Kind::Timing, key, unit, description)
    }

    fn register_counter(&self, key: &Key, _metadata: &Metadata<'_>) -> Counter {
        self.with_family(Kind::Counter, key, |family, values| match family {
            Family::Counter(f) => Counter::from_arc(Arc::new(CounterHandle(f.get(values)))),
            _ => Counter::noop(),
        })
    }

    fn register_gauge(&self, key: &Key, _metadata: &Metadata<'_>) -> Gauge {
        self.with_family(Kind::Gauge, key, |family, values| match family {
            Family::Gauge(f) => Gauge::from_arc(Arc::new(GaugeHandle(f.get(values)))),
            _ => Gauge::noop(),
        })
    }

    fn register_histogram(&self, key: &Key, _metadata: &Metadata<'_>) -> Histogram {
        self.with_family(Kind::Timing, key, |family, values| match family {
            Family::Timing(f, factor) => Histogram::from_arc(Arc::new(HistogramHandle {
                timing: f.get(values),
                factor: *factor,
            })),
            _ => Histogram::noop(),
        })
    }
}

struct CounterHandle(sampler_api::Counter);

impl CounterFn for CounterHandle {
    fn increment(&self, value: u64) {
        self.0.add(value)
    }

    fn absolute(&self, value: u64) {
        // A counter only rises: take it up to `value`, never down.
        let now = self.0.value();
        if value > now {
            self.0.add(value - now);
        }
    }
}

struct GaugeHandle(sampler_api::Gauge);

impl GaugeFn for GaugeHandle {
    fn increment(&self, value: f64) {
        self.0.add(value)
    }

    fn decrement(&self, value: f64) {
        self.0.add(-value)
    }

    fn set(&self, value: f64) {
        self.0.set(value)
    }
}

struct HistogramHandle {
    timing: sampler_api::Timing,
    factor: f64,
}

impl HistogramFn for HistogramHandle {
    fn record(&self, value: f64) {
        self.timing.record(value * self.factor)
    }
}
