use std::fmt;
use std::sync::Arc;

use super::{FamilyInner, FamilyOptions, Handle};
use crate::descriptor::{Descriptor, Kind};
use crate::family_error::{FamilyError, LabelError};
use crate::local;
use crate::registry::Registry;

/// A monotonic counter handle; clone it freely, every clone adds to the same series.
///
/// Each thread adds into a cell of its own, so many threads hitting one counter never fight
/// over a cache line; the harvest sums the cells and reads the exact total.
///
/// ```
/// use sampler_api::{Descriptor, Registry};
/// static SENT: Descriptor = Descriptor::counter("mail.sent", "1", "mails sent");
/// let registry = Registry::new();
/// let sent = registry.counter(&SENT);
/// sent.inc();
/// sent.add(2);
/// assert_eq!(sent.value(), 3);
/// ```
#[derive(Clone)]
pub struct Counter {
    handle: Handle,
}

impl Counter {
    pub(crate) fn from_family(family: Arc<FamilyInner>, values: &[&str]) -> Self {
        Counter {
            handle: Handle::new(family, values),
        }
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        local::counter_add(self.handle.slot, 1);
    }

    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        local::counter_add(self.handle.slot, n);
    }

    /// The current total over all threads (reads every thread's cell: not for hot paths).
    pub fn value(&self) -> u64 {
        local::Reader::new().counter(self.handle.slot)
    }
}

impl fmt::Debug for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Counter")
            .field("handle", &self.handle)
            .finish()
    }
}

/// Counters told apart by label values, such as `method` and `route`.
///
/// ```
/// use sampler_api::{Descriptor, Registry};
/// static REQ: Descriptor = Descriptor::counter("http.server.requests", "1", "requests");
/// let registry = Registry::new();
/// let requests = registry.counter_family(&REQ, &["method", "route"]);
/// // Look up once, keep the handle: recording through it hashes nothing.
/// let get_home = requests.get(&["GET", "/"]);
/// get_home.inc();
/// // Or look up per call (a per-thread cache makes repeats cheap).
/// requests.inc(&["POST", "/login"]);
/// ```
#[derive(Clone)]
pub struct CounterFamily {
    inner: Arc<FamilyInner>,
}

impl CounterFamily {
    pub(crate) fn new(
        registry: &Registry,
        d: &Descriptor,
        keys: &[&str],
        o: FamilyOptions,
    ) -> Self {
        CounterFamily {
            inner: FamilyInner::register(registry, d, Kind::Counter, keys, o),
        }
    }

    pub(crate) fn try_new(
        registry: &Registry,
        d: &Descriptor,
        keys: &[&str],
        o: FamilyOptions,
    ) -> Result<Self, FamilyError> {
        Ok(CounterFamily {
            inner: FamilyInner::try_register(registry, d, Kind::Counter, keys, o)?,
        })
    }

    /// The handle for these label values (in key order), created on first use.
    ///
    /// Values of the wrong number give a handle that records in no series (the lookup is
    /// counted and said once; see [`LabelError`]); [`try_get`](Self::try_get) returns the error
    /// instead.
    pub fn get(&self, values: &[&str]) -> Counter {
        Counter::from_family(self.inner.clone(), values)
    }

    /// The handle for these label values (in key order), created on first use, or an error
    /// when they are not one per label key (nothing is made or counted then).
    ///
    /// ```
    /// use sampler_api::{Descriptor, Registry};
    /// static M: Descriptor = Descriptor::counter("http.requests", "1", "requests");
    /// let family = Registry::new().counter_family(&M, &["method", "route"]);
    /// family.try_get(&["GET", "/"])?.inc();
    /// let err = family.try_get(&["GET"]).unwrap_err();
    /// assert_eq!(err.metric(), "http.requests");
    /// # Ok::<(), sampler_api::LabelError>(())
    /// ```
    pub fn try_get(&self, values: &[&str]) -> Result<Counter, LabelError> {
        self.inner.check_count(values)?;
        Ok(self.get(values))
    }

    /// Adds one to the series for these label values.
    #[inline]
    pub fn inc(&self, values: &[&str]) {
        self.add(values, 1)
    }

    /// Adds `n` to the series for these label values.
    #[inline]
    pub fn add(&self, values: &[&str], n: u64) {
        // `found` keeps the slot from being freed until the add is done.
        let found = self.inner.lookup(values);
        crate::hooks::at(crate::hooks::Point::AfterLookup);
        local::counter_add(found.slot, n);
        drop(found);
    }

    /// Removes a series; `false` when a handle to it is still alive (it stays).
    pub fn remove(&self, values: &[&str]) -> bool {
        self.inner.remove(values)
    }

    /// How many slots of removed series wait to be freed.
    #[cfg(test)]
    pub(crate) fn retired(&self) -> usize {
        self.inner.retired()
    }
}

impl fmt::Debug for CounterFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CounterFamily")
            .field("metric", &crate::Sampler::name(&*self.inner))
            .finish()
    }
}
