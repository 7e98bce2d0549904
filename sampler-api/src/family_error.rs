//! What can be wrong with a family: its definition (metric name, label keys), caught when it is
//! made, and a lookup with the wrong number of label values, caught when it happens.

use std::fmt;

use crate::descriptor::NameError;

/// Why a family could not be made: returned by [`Registry::try_counter_family`] and its
/// siblings. The infallible forms ([`Registry::counter_family`], …) make the family anyway;
/// it records, but no harvest exports it (counted as `sampler.sampler.errors{reason="rejected"}`)
/// and the mistake is said once through the event hook ([`Event::FamilyRejected`]).
///
/// New kinds of mistake may be added in a minor version.
///
/// [`Registry::try_counter_family`]: crate::Registry::try_counter_family
/// [`Registry::counter_family`]: crate::Registry::counter_family
/// [`Event::FamilyRejected`]: crate::Event::FamilyRejected
///
/// ```
/// use sampler_api::{Descriptor, FamilyError, Registry};
/// static REQ: Descriptor = Descriptor::counter("http.requests", "1", "requests");
/// let err = Registry::new().try_counter_family(&REQ, &["route", "route"]).unwrap_err();
/// assert_eq!(err.to_string(), r#"family http.requests: duplicate label key "route""#);
/// assert!(matches!(err, FamilyError::DuplicateKey { ref key, .. } if key == "route"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FamilyError {
    /// The descriptor's metric name or unit breaks the naming rules (`spec/sampler-api.md` §4).
    InvalidDescriptor {
        /// The metric name as given.
        metric: String,
        /// Which rule, with the offending name or unit.
        error: NameError,
    },
    /// A label key breaks the naming rules.
    InvalidKey {
        /// The family's metric name.
        metric: String,
        /// Which rule, with the offending key.
        error: NameError,
    },
    /// A label key is given twice.
    DuplicateKey {
        /// The family's metric name.
        metric: String,
        /// The key given twice.
        key: String,
    },
}

impl FamilyError {
    /// The first mistake in a family's definition, if any: the descriptor first, then each
    /// key in order (an invalid key before a later duplicate).
    pub(crate) fn check(
        metric: &str,
        valid_descriptor: Result<(), NameError>,
        keys: &[&str],
    ) -> Option<Self> {
        if let Err(error) = valid_descriptor {
            return Some(FamilyError::InvalidDescriptor {
                metric: metric.to_owned(),
                error,
            });
        }
        for (i, key) in keys.iter().enumerate() {
            if let Err(error) = crate::descriptor::validate_label_key(key) {
                return Some(FamilyError::InvalidKey {
                    metric: metric.to_owned(),
                    error,
                });
            }
            if keys[..i].contains(key) {
                return Some(FamilyError::DuplicateKey {
                    metric: metric.to_owned(),
                    key: (*key).to_owned(),
                });
            }
        }
        None
    }

    /// The family's metric name.
    pub fn metric(&self) -> &str {
        match self {
            FamilyError::InvalidDescriptor { metric, .. }
            | FamilyError::InvalidKey { metric, .. }
            | FamilyError::DuplicateKey { metric, .. } => metric,
        }
    }
}

impl fmt::Display for FamilyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FamilyError::InvalidDescriptor { error, .. } => write!(f, "{error}"),
            FamilyError::InvalidKey { metric, error } => write!(f, "family {metric}: {error}"),
            FamilyError::DuplicateKey { metric, key } => {
                write!(f, "family {metric}: duplicate label key {key:?}")
            }
        }
    }
}

impl std::error::Error for FamilyError {}

/// A lookup gave a family the wrong number of label values: returned by
/// [`CounterFamily::try_get`](crate::CounterFamily::try_get) and its siblings. The infallible
/// forms (`get`, `inc`, `set`, `record`, …) record nothing in any series then, count the
/// lookup in `sampler.family.label_errors{metric=NAME}` and say it once per family through the
/// event hook ([`Event::WrongLabelCount`](crate::Event::WrongLabelCount)).
///
/// ```
/// use sampler_api::{Descriptor, Registry};
/// static REQ: Descriptor = Descriptor::counter("http.requests", "1", "requests");
/// let requests = Registry::new().counter_family(&REQ, &["method", "route"]);
/// let err = requests.try_get(&["GET"]).unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "family http.requests takes 2 label values (method, route), got 1"
/// );
/// assert_eq!((err.expected(), err.got()), (2, 1));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelError {
    metric: String,
    keys: Vec<String>,
    got: usize,
}

impl LabelError {
    pub(crate) fn wrong_count(metric: &str, keys: &[String], got: usize) -> Self {
        LabelError {
            metric: metric.to_owned(),
            keys: keys.to_vec(),
            got,
        }
    }

    /// The family's metric name.
    pub fn metric(&self) -> &str {
        &self.metric
    }

    /// The family's label keys, in order.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// How many label values the family takes.
    pub fn expected(&self) -> usize {
        self.keys.len()
    }

    /// How many the lookup gave.
    pub fn got(&self) -> usize {
        self.got
    }
}

impl fmt::Display for LabelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.keys.len() {
            0 => write!(
                f,
                "family {} takes no label values, got {}",
                self.metric, self.got
            ),
            n => write!(
                f,
                "family {} takes {n} label value{} ({}), got {}",
                self.metric,
                if n == 1 { "" } else { "s" },
                self.keys.join(", "),
                self.got
            ),
        }
    }
}

impl std::error::Error for LabelError {}
