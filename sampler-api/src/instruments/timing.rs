use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{FamilyInner, FamilyOptions, Handle};
use crate::descriptor::{Descriptor, Kind};
use crate::distribution::{index_table, Distribution, IndexTable};
use crate::family_error::{FamilyError, LabelError};
use crate::local;
use crate::registry::Registry;

/// A timing handle: records durations (as seconds) or plain values into an exponential
/// histogram.
///
/// ```
/// use sampler_api::{Descriptor, Registry};
/// use std::time::Duration;
/// static LATENCY: Descriptor = Descriptor::timing("db.query.duration", "s", "query time");
/// let registry = Registry::new();
/// let latency = registry.timing(&LATENCY);
/// latency.record_duration(Duration::from_millis(12));
/// latency.record(0.030);
/// {
///     let _t = latency.start(); // records the elapsed time when dropped
/// }
/// let d = latency.distribution();
/// assert_eq!(d.count(), 3);
/// ```
#[derive(Clone)]
pub struct Timing {
    handle: Handle,
    /// The bucket boundaries of the family's scale.
    table: &'static IndexTable,
}

impl Timing {
    pub(crate) fn from_family(family: Arc<FamilyInner>, values: &[&str]) -> Self {
        let table = index_table(family.scale());
        Timing {
            handle: Handle::new(family, values),
            table,
        }
    }

    /// Records one value. NaN is ignored; values below zero count as zero.
    #[inline]
    pub fn record(&self, value: f64) {
        local::timing_record(self.handle.slot, self.table, value);
    }

    /// Records a duration, in seconds.
    #[inline]
    pub fn record_duration(&self, d: Duration) {
        self.record(d.as_secs_f64());
    }

    /// Starts a timer that records the elapsed time when dropped.
    pub fn start(&self) -> TimingGuard<'_> {
        TimingGuard {
            timing: self,
            start: Instant::now(),
        }
    }

    /// The merged distribution so far (reads every thread's histogram: not for hot paths).
    pub fn distribution(&self) -> Distribution {
        let g = local::timing_lock();
        local::Reader::new().timing(self.handle.slot, self.table.scale(), &g)
    }
}

impl fmt::Debug for Timing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timing")
            .field("handle", &self.handle)
            .field("scale", &self.table.scale())
            .finish()
    }
}

/// Records the time since [`Timing::start`] when dropped.
#[derive(Debug)]
pub struct TimingGuard<'a> {
    timing: &'a Timing,
    start: Instant,
}

impl Drop for TimingGuard<'_> {
    fn drop(&mut self) {
        self.timing.record_duration(self.start.elapsed());
    }
}

/// Timings told apart by label values.
///
/// ```
/// use sampler_api::{Descriptor, Registry};
/// static DUR: Descriptor = Descriptor::timing("http.server.duration", "s", "request time");
/// let registry = Registry::new();
/// let dur = registry.timing_family(&DUR, &["route"]);
/// dur.record(&["/"], 0.004);
/// ```
#[derive(Clone)]
pub struct TimingFamily {
    inner: Arc<FamilyInner>,
    /// The bucket boundaries of the family's scale, looked up once.
    table: &'static IndexTable,
}

impl TimingFamily {
    pub(crate) fn new(
        registry: &Registry,
        d: &Descriptor,
        keys: &[&str],
        o: FamilyOptions,
    ) -> Self {
        let inner = FamilyInner::register(registry, d, Kind::Timing, keys, o);
        let table = index_table(inner.scale());
        TimingFamily { inner, table }
    }

    pub(crate) fn try_new(
        registry: &Registry,
        d: &Descriptor,
        keys: &[&str],
        o: FamilyOptions,
    ) -> Result<Self, FamilyError> {
        let inner = FamilyInner::try_register(registry, d, Kind::Timing, keys, o)?;
        let table = index_table(inner.scale());
        Ok(TimingFamily { inner, table })
    }

    /// The handle for these label values (in key order), created on first use.
    ///
    /// Values of the wrong number give a handle that records in no series (the lookup is
    /// counted and said once; see [`LabelError`]); [`try_get`](Self::try_get) returns the error
    /// instead.
    pub fn get(&self, values: &[&str]) -> Timing {
        Timing::from_family(self.inner.clone(), values)
    }

    /// The handle for these label values (in key order), created on first use, or an error
    /// when they are not one per label key (nothing is made or counted then).
    ///
    /// ```
    /// use sampler_api::{Descriptor, Registry};
    /// static M: Descriptor = Descriptor::timing("http.server.duration", "s", "request time");
    /// let family = Registry::new().timing_family(&M, &["route"]);
    /// family.try_get(&["/"])?.record(0.004);
    /// let err = family.try_get(&[]).unwrap_err();
    /// assert_eq!(err.metric(), "http.server.duration");
    /// # Ok::<(), sampler_api::LabelError>(())
    /// ```
    pub fn try_get(&self, values: &[&str]) -> Result<Timing, LabelError> {
        self.inner.check_count(values)?;
        Ok(self.get(values))
    }

    /// Records a value into the series for these label values.
    #[inline]
    pub fn record(&self, values: &[&str], value: f64) {
        // `found` keeps the slot from being freed until the record is done.
        let found = self.inner.lookup(values);
        crate::hooks::at(crate::hooks::Point::AfterLookup);
        local::timing_record(found.slot, self.table, value);
        drop(found);
    }

    /// Records a duration (seconds) into the series for these label values.
    #[inline]
    pub fn record_duration(&self, values: &[&str], d: Duration) {
        self.record(values, d.as_secs_f64())
    }

    /// Removes a series; `false` when a handle to it is still alive (it stays).
    pub fn remove(&self, values: &[&str]) -> bool {
        self.inner.remove(values)
    }
}

impl fmt::Debug for TimingFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimingFamily")
            .field("metric", &crate::Sampler::name(&*self.inner))
            .finish()
    }
}
