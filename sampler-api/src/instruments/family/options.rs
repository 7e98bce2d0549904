//! The options of a labelled family.

use std::time::Duration;

/// The default cardinality limit of a family (as in the OpenTelemetry SDK).
pub const DEFAULT_LIMIT: usize = 2000;

/// Options for a labelled family.
///
/// ```
/// use sampler_api::{Descriptor, FamilyOptions, Registry};
/// use std::time::Duration;
/// static HITS: Descriptor = Descriptor::counter("cache.hits", "1", "hits per key prefix");
/// let registry = Registry::new();
/// let hits = registry.counter_family_with(
///     &HITS,
///     &["prefix"],
///     FamilyOptions::default().limit(100).expire_after(Duration::from_secs(600)),
/// );
/// hits.inc(&["user"]);
/// ```
#[derive(Clone, Debug)]
pub struct FamilyOptions {
    pub(crate) limit: usize,
    pub(crate) expire_after: Option<Duration>,
    pub(crate) scale: i8,
}

impl Default for FamilyOptions {
    fn default() -> Self {
        FamilyOptions {
            limit: DEFAULT_LIMIT,
            expire_after: None,
            scale: crate::instruments::DEFAULT_SCALE,
        }
    }
}

impl FamilyOptions {
    /// At most `limit` label sets; lookups of further label sets fold into one overflow series
    /// labelled `overflow="true"`, counted in `sampler.family.overflow`.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit.max(1);
        self
    }

    /// Removes a label set whose value has not changed for this long and that no handle holds.
    pub fn expire_after(mut self, idle: Duration) -> Self {
        self.expire_after = Some(idle);
        self
    }

    /// The histogram scale of a timing family (0 to 8; default 3, error at most 4.33 %).
    pub fn scale(mut self, scale: i8) -> Self {
        self.scale = scale.clamp(0, crate::distribution::MAX_SCALE);
        self
    }
}
