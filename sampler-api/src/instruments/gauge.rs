use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use super::{FamilyInner, FamilyOptions, Handle};
use crate::descriptor::{Descriptor, Kind};
use crate::family_error::{FamilyError, LabelError};
use crate::local;
use crate::registry::Registry;

/// A gauge handle: set it, or add to it; the harvest reads the latest value.
///
/// ```
/// use sampler_api::{Descriptor, Registry};
/// static DEPTH: Descriptor = Descriptor::gauge("queue.depth", "1", "jobs waiting");
/// let registry = Registry::new();
/// let depth = registry.gauge(&DEPTH);
/// depth.set(10.0);
/// depth.add(-3.0);
/// assert_eq!(depth.value(), 7.0);
/// ```
#[derive(Clone)]
pub struct Gauge {
    handle: Handle,
    /// The gauge's cell, resolved once: cells never move or go away while a handle lives.
    cell: &'static AtomicU64,
}

impl Gauge {
    pub(crate) fn from_family(family: Arc<FamilyInner>, values: &[&str]) -> Self {
        let handle = Handle::new(family, values);
        let cell = local::gauge_cell(handle.slot);
        Gauge { handle, cell }
    }

    /// Sets the value.
    #[inline]
    pub fn set(&self, value: f64) {
        self.cell.store(value.to_bits(), Relaxed);
    }

    /// Adds `delta` (may be negative).
    #[inline]
    pub fn add(&self, delta: f64) {
        add(self.cell, delta);
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1.0)
    }

    /// Subtracts one.
    #[inline]
    pub fn dec(&self) {
        self.add(-1.0)
    }

    /// The current value.
    pub fn value(&self) -> f64 {
        f64::from_bits(self.cell.load(Relaxed))
    }
}

#[inline]
fn add(cell: &AtomicU64, delta: f64) {
    let _ = cell.fetch_update(Relaxed, Relaxed, |b| {
        Some((f64::from_bits(b) + delta).to_bits())
    });
}

impl fmt::Debug for Gauge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gauge")
            .field("handle", &self.handle)
            .finish()
    }
}

/// Gauges told apart by label values.
///
/// ```
/// use sampler_api::{Descriptor, Registry};
/// static CONNS: Descriptor = Descriptor::gauge("pool.connections", "1", "connections by state");
/// let registry = Registry::new();
/// let conns = registry.gauge_family(&CONNS, &["state"]);
/// conns.set(&["idle"], 4.0);
/// conns.get(&["busy"]).set(2.0);
/// ```
#[derive(Clone)]
pub struct GaugeFamily {
    inner: Arc<FamilyInner>,
}

impl GaugeFamily {
    pub(crate) fn new(
        registry: &Registry,
        d: &Descriptor,
        keys: &[&str],
        o: FamilyOptions,
    ) -> Self {
        GaugeFamily {
            inner: FamilyInner::register(registry, d, Kind::Gauge, keys, o),
        }
    }

    pub(crate) fn try_new(
        registry: &Registry,
        d: &Descriptor,
        keys: &[&str],
        o: FamilyOptions,
    ) -> Result<Self, FamilyError> {
        Ok(GaugeFamily {
            inner: FamilyInner::try_register(registry, d, Kind::Gauge, keys, o)?,
        })
    }

    /// The handle for these label values (in key order), created on first use.
    ///
    /// Values of the wrong number give a handle that records in no series (the lookup is
    /// counted and said once; see [`LabelError`]); [`try_get`](Self::try_get) returns the error
    /// instead.
    pub fn get(&self, values: &[&str]) -> Gauge {
        Gauge::from_family(self.inner.clone(), values)
    }

    /// The handle for these label values (in key order), created on first use, or an error
    /// when they are not one per label key (nothing is made or counted then).
    ///
    /// ```
    /// use sampler_api::{Descriptor, Registry};
    /// static M: Descriptor = Descriptor::gauge("pool.connections", "1", "connections by state");
    /// let family = Registry::new().gauge_family(&M, &["state"]);
    /// family.try_get(&["idle"])?.set(4.0);
    /// let err = family.try_get(&["idle", "extra"]).unwrap_err();
    /// assert_eq!(err.metric(), "pool.connections");
    /// # Ok::<(), sampler_api::LabelError>(())
    /// ```
    pub fn try_get(&self, values: &[&str]) -> Result<Gauge, LabelError> {
        self.inner.check_count(values)?;
        Ok(self.get(values))
    }

    /// Sets the series for these label values.
    #[inline]
    pub fn set(&self, values: &[&str], value: f64) {
        // `found` keeps the slot from being freed until the store is done.
        let found = self.inner.lookup(values);
        crate::hooks::at(crate::hooks::Point::AfterLookup);
        local::gauge_cell(found.slot).store(value.to_bits(), Relaxed);
        drop(found);
    }

    /// Adds to the series for these label values.
    #[inline]
    pub fn add(&self, values: &[&str], delta: f64) {
        let found = self.inner.lookup(values);
        crate::hooks::at(crate::hooks::Point::AfterLookup);
        add(local::gauge_cell(found.slot), delta);
        drop(found);
    }

    /// Removes a series; `false` when a handle to it is still alive (it stays).
    pub fn remove(&self, values: &[&str]) -> bool {
        self.inner.remove(values)
    }
}

impl fmt::Debug for GaugeFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GaugeFamily")
            .field("metric", &crate::Sampler::name(&*self.inner))
            .finish()
    }
}
