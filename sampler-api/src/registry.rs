//! The registry: which samplers a harvest polls.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crate::descriptor::Descriptor;
use crate::family_error::FamilyError;
use crate::instruments::{
    Counter, CounterFamily, FamilyOptions, Gauge, GaugeFamily, Timing, TimingFamily,
};
use crate::local::lock;
use crate::sampler::{FnSampler, Sampler, Writer};

/// A sampler registered statically, with [`register_sampler!`](crate::register_sampler):
/// every binary that links the declaring crate harvests it through [`Registry::global`].
#[derive(Clone, Copy)]
pub struct StaticSampler {
    name: &'static str,
    sampler: &'static dyn Sampler,
}

impl StaticSampler {
    /// Pairs a name with a sampler that lives for the whole program.
    pub const fn new(name: &'static str, sampler: &'static dyn Sampler) -> Self {
        StaticSampler { name, sampler }
    }

    /// The name given at registration; self-metrics and reports name the sampler by it (the
    /// `sampler` label of `sampler.sampler.*`), in place of [`Sampler::name`].
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl std::fmt::Debug for StaticSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticSampler")
            .field("name", &self.name)
            .finish()
    }
}

inventory::collect!(StaticSampler);

/// Registers a `static` sampler in one line; any binary linking this crate harvests it.
///
/// The name given here stands for the sampler in self-metrics and reports (the `sampler`
/// label of `sampler.sampler.*`).
///
/// ```
/// use sampler_api::{register_sampler, Descriptor, Sampler, Writer};
/// static OPEN: Descriptor = Descriptor::gauge("files.open", "1", "open files");
/// struct Files;
/// impl Sampler for Files {
///     fn sample(&self, out: &mut Writer<'_>) { out.gauge(&OPEN, &[], 3.0) }
/// }
/// static FILES: Files = Files;
/// register_sampler!("files", FILES);
/// ```
#[macro_export]
macro_rules! register_sampler {
    ($name:expr, $sampler:path) => {
        $crate::inventory::submit! {
            $crate::StaticSampler::new($name, &$sampler)
        }
    };
}

enum Source {
    Strong(Arc<dyn Sampler>),
    Weak(Weak<dyn Sampler>),
    Static(&'static StaticSampler),
}

struct Entry {
    id: u64,
    source: Source,
}

struct Inner {
    entries: Mutex<Vec<Entry>>,
    next: AtomicU64,
}

/// The set of samplers a harvester polls. Cloning shares it.
///
/// Instruments made through a registry stay registered while any handle to them lives; other
/// samplers stay while their [`Registration`] lives.
///
/// ```
/// use sampler_api::{Descriptor, Registry};
/// static UP: Descriptor = Descriptor::gauge("app.up", "1", "1 while running");
/// let registry = Registry::new();
/// let up = registry.gauge(&UP);
/// up.set(1.0);
/// assert_eq!(registry.len(), 1);
/// drop(up);
/// assert_eq!(registry.len(), 0);
/// ```
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("samplers", &self.len())
            .finish()
    }
}

/// A snapshot of one registered sampler, as the harvest sees it.
pub(crate) struct Registered {
    pub(crate) id: u64,
    pub(crate) sampler: Held,
    /// Held weakly by the registry (an instrument): the harvest must not keep it alive.
    pub(crate) weak: bool,
}

#[derive(Clone)]
pub(crate) enum Held {
    Arc(Arc<dyn Sampler>),
    Static(&'static StaticSampler),
}

impl Held {
    pub(crate) fn get(&self) -> &dyn Sampler {
        match self {
            Held::Arc(a) => &**a,
            Held::Static(s) => s.sampler,
        }
    }

    /// The name self-metrics and reports use: a static sampler's registration name, else the
    /// sampler's own.
    pub(crate) fn name(&self) -> &str {
        match self {
            Held::Arc(a) => a.name(),
            Held::Static(s) => s.name,
        }
    }
}

impl Registry {
    /// An empty registry (statically registered samplers are in [`Registry::global`] only).
    pub fn new() -> Self {
        Registry {
            inner: Arc::new(Inner {
                entries: Mutex::new(Vec::new()),
                next: AtomicU64::new(1),
            }),
        }
    }

    /// The process-wide registry, holding every sampler registered with
    /// [`register_sampler!`](crate::register_sampler) plus whatever is added to it.
    pub fn global() -> &'static Registry {
        static GLOBAL: OnceLock<Registry> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            let r = Registry::new();
            for s in inventory::iter::<StaticSampler> {
                r.push(Source::Static(s));
            }
            r
        })
    }

    fn push(&self, source: Source) -> u64 {
        let id = self.inner.next.fetch_add(1, Relaxed);
        lock(&self.inner.entries).push(Entry { id, source });
        id
    }

    /// Registers a sampler until the returned [`Registration`] is dropped.
    pub fn register(&self, sampler: impl Sampler + 'static) -> Registration {
        self.register_arc(Arc::new(sampler))
    }

    /// Registers a shared sampler until the returned [`Registration`] is dropped.
    pub fn register_arc(&self, sampler: Arc<dyn Sampler>) -> Registration {
        let id = self.push(Source::Strong(sampler));
        Registration {
            registry: Arc::downgrade(&self.inner),
            id,
        }
    }

    /// Registers a sampler for as long as something else holds it.
    pub(crate) fn register_weak(&self, sampler: Arc<dyn Sampler>) {
        self.push(Source::Weak(Arc::downgrade(&sampler)));
    }

    /// How many samplers are registered and alive.
    pub fn len(&self) -> usize {
        self.snapshot().len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The live samplers, dropping entries whose instruments are gone.
    pub(crate) fn snapshot(&self) -> Vec<Registered> {
        let mut entries = lock(&self.inner.entries);
        let mut out = Vec::with_capacity(entries.len());
        entries.retain(|e| {
            let (held, weak) = match &e.source {
                Source::Strong(a) => (Held::Arc(a.clone()), false),
                Source::Static(s) => (Held::Static(s), false),
                Source::Weak(w) => match w.upgrade() {
                    Some(a) => (Held::Arc(a), true),
                    None => return false,
                },
            };
            out.push(Registered {
                id: e.id,
                sampler: held,
                weak,
            });
            true
        });
        out
    }

    /// A counter with no labels, registered while a handle lives: keep the handle (in a
    /// struct or a `static`), since dropping the last one removes the series.
    #[must_use = "the series lives while a handle does: dropping it at once removes the series"]
    pub fn counter(&self, descriptor: &Descriptor) -> Counter {
        self.counter_family(descriptor, &[]).get(&[])
    }

    /// A gauge with no labels, registered while a handle lives.
    #[must_use = "the series lives while a handle does: dropping it at once removes the series"]
    pub fn gauge(&self, descriptor: &Descriptor) -> Gauge {
        self.gauge_family(descriptor, &[]).get(&[])
    }

    /// A timing with no labels, registered while a handle lives.
    #[must_use = "the series lives while a handle does: dropping it at once removes the series"]
    pub fn timing(&self, descriptor: &Descriptor) -> Timing {
        self.timing_family(descriptor, &[]).get(&[])
    }

    /// A gauge computed by `f` at each harvest, registered until the [`Registration`] drops.
    ///
    /// ```
    /// use sampler_api::{Descriptor, Registry};
    /// static UPTIME: Descriptor = Descriptor::gauge("app.uptime", "s", "seconds since start");
    /// let registry = Registry::new();
    /// let started = std::time::Instant::now();
    /// let _reg = registry.gauge_fn(&UPTIME, &[], move || started.elapsed().as_secs_f64());
    /// ```
    pub fn gauge_fn(
        &self,
        descriptor: &'static Descriptor,
        labels: &[(&str, &str)],
        f: impl Fn() -> f64 + Send + Sync + 'static,
    ) -> Registration {
        let labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.register(FnSampler::new(
            descriptor.name(),
            move |out: &mut Writer<'_>| {
                let pairs: Vec<(&str, &str)> = labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                out.gauge(descriptor, &pairs, f());
            },
        ))
    }

    /// A counter family with label `keys` and default options.
    ///
    /// A family whose metric name, unit or label keys break the naming rules, or that names a
    /// key twice, is made all the same: it records, no harvest exports it (counted in
    /// `sampler.sampler.errors{reason="rejected"}`), and the mistake is said once on the
    /// event hook ([`Event::FamilyRejected`](crate::Event::FamilyRejected)). Use
    /// [`try_counter_family`](Self::try_counter_family) to get the mistake as an error.
    #[must_use = "the series lives while a handle does: dropping it at once removes the series"]
    pub fn counter_family(&self, descriptor: &Descriptor, keys: &[&str]) -> CounterFamily {
        CounterFamily::new(self, descriptor, keys, FamilyOptions::default())
    }

    /// A counter family with label `keys` and the given options.
    pub fn counter_family_with(
        &self,
        d: &Descriptor,
        keys: &[&str],
        o: FamilyOptions,
    ) -> CounterFamily {
        CounterFamily::new(self, d, keys, o)
    }

    /// A gauge family with label `keys` and default options.
    #[must_use = "the series lives while a handle does: dropping it at once removes the series"]
    pub fn gauge_family(&self, descriptor: &Descriptor, keys: &[&str]) -> GaugeFamily {
        GaugeFamily::new(self, descriptor, keys, FamilyOptions::default())
    }

    /// A gauge family with label `keys` and the given options.
    pub fn gauge_family_with(
        &self,
        d: &Descriptor,
        keys: &[&str],
        o: FamilyOptions,
    ) -> GaugeFamily {
        GaugeFamily::new(self, d, keys, o)
    }

    /// A timing family with label `keys` and default options.
    #[must_use = "the series lives while a handle does: dropping it at once removes the series"]
    pub fn timing_family(&self, descriptor: &Descriptor, keys: &[&str]) -> TimingFamily {
        TimingFamily::new(self, descriptor, keys, FamilyOptions::default())
    }

    /// A timing family with label `keys` and the given options.
    pub fn timing_family_with(
        &self,
        d: &Descriptor,
        keys: &[&str],
        o: FamilyOptions,
    ) -> TimingFamily {
        TimingFamily::new(self, d, keys, o)
    }

    /// A counter family with label `keys` and default options, or why it cannot be made: a
    /// metric name, unit or label key that breaks the naming rules, or a key given twice.
    /// [`counter_family`](Self::counter_family) makes such a family anyway, records into it
    /// and never exports it (the mistake said once on the event hook).
    ///
    /// ```
    /// use sampler_api::{Descriptor, Registry};
    /// static REQ: Descriptor = Descriptor::counter("http.requests", "1", "requests");
    /// let registry = Registry::new();
    /// let requests = registry.try_counter_family(&REQ, &["method", "route"])?;
    /// requests.inc(&["GET", "/"]);
    /// let err = registry.try_counter_family(&REQ, &["route", "Method"]).unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     r#"family http.requests: invalid label key "Method": must start with a-z or _"#
    /// );
    /// # Ok::<(), sampler_api::FamilyError>(())
    /// ```
    pub fn try_counter_family(
        &self,
        descriptor: &Descriptor,
        keys: &[&str],
    ) -> Result<CounterFamily, FamilyError> {
        CounterFamily::try_new(self, descriptor, keys, FamilyOptions::default())
    }

    /// As [`try_counter_family`](Self::try_counter_family), with the given options.
    pub fn try_counter_family_with(
        &self,
        d: &Descriptor,
        keys: &[&str],
        o: FamilyOptions,
    ) -> Result<CounterFamily, FamilyError> {
        CounterFamily::try_new(self, d, keys, o)
    }

    /// A gauge family with label `keys` and default options, or why it cannot be made (see
    /// [`try_counter_family`](Self::try_counter_family)).
    ///
    /// ```
    /// use sampler_api::{Descriptor, FamilyError, Registry};
    /// static CONNS: Descriptor = Descriptor::gauge("pool.connections", "1", "by state");
    /// let err = Registry::new().try_gauge_family(&CONNS, &["state", "state"]).unwrap_err();
    /// assert!(matches!(err, FamilyError::DuplicateKey { .. }));
    /// ```
    pub fn try_gauge_family(
        &self,
        descriptor: &Descriptor,
        keys: &[&str],
    ) -> Result<GaugeFamily, FamilyError> {
        GaugeFamily::try_new(self, descriptor, keys, FamilyOptions::default())
    }

    /// As [`try_gauge_family`](Self::try_gauge_family), with the given options.
    pub fn try_gauge_family_with(
        &self,
        d: &Descriptor,
        keys: &[&str],
        o: FamilyOptions,
    ) -> Result<GaugeFamily, FamilyError> {
        GaugeFamily::try_new(self, d, keys, o)
    }

    /// A timing family with label `keys` and default options, or why it cannot be made (see
    /// [`try_counter_family`](Self::try_counter_family)).
    ///
    /// ```
    /// use sampler_api::{Descriptor, Registry};
    /// static DUR: Descriptor = Descriptor::timing("Http.duration", "s", "request time");
    /// let err = Registry::new().try_timing_family(&DUR, &["route"]).unwrap_err();
    /// assert_eq!(err.to_string(), r#"invalid metric name "Http.duration": must start with a-z"#);
    /// ```
    pub fn try_timing_family(
        &self,
        descriptor: &Descriptor,
        keys: &[&str],
    ) -> Result<TimingFamily, FamilyError> {
        TimingFamily::try_new(self, descriptor, keys, FamilyOptions::default())
    }

    /// As [`try_timing_family`](Self::try_timing_family), with the given options.
    pub fn try_timing_family_with(
        &self,
        d: &Descriptor,
        keys: &[&str],
        o: FamilyOptions,
    ) -> Result<TimingFamily, FamilyError> {
        TimingFamily::try_new(self, d, keys, o)
    }
}

/// Keeps a sampler registered; dropping it unregisters the sampler, whose series then
/// disappear from the next snapshot.
///
/// ```
/// use sampler_api::{Descriptor, FnSampler, Harvester, Registry};
/// static DEPTH: Descriptor = Descriptor::gauge("queue.depth", "1", "jobs waiting");
/// let registry = Registry::new();
/// let harvester = Harvester::builder().registry(registry.clone()).build();
/// let reg = registry.register(FnSampler::new("queue", |out| out.gauge(&DEPTH, &[], 4.0)));
/// assert!(harvester.harvest_now().find("queue.depth", &[]).is_some());
/// drop(reg);
/// assert!(harvester.harvest_now().find("queue.depth", &[]).is_none());
/// ```
#[must_use = "dropping a Registration unregisters the sampler at once"]
#[derive(Debug)]
pub struct Registration {
    registry: Weak<Inner>,
    id: u64,
}

impl Registration {
    /// Keeps the sampler registered for the rest of the program.
    pub fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(inner) = self.registry.upgrade() {
            lock(&inner.entries).retain(|e| e.id != self.id);
        }
    }
}
