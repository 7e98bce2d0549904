//! Events a person should hear about once: an exporter that starts failing and when it
//! recovers, a family that runs out of label sets, a family made or looked up wrongly. The
//! application chooses where they go by setting one process-wide hook (as
//! `std::panic::set_hook` does for panics); the `sampler` command prints them on stderr.
//! Without a hook they are only counted in self-metrics.

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::family_error::{FamilyError, LabelError};

/// Something that changed state and deserves one line to a person, never one per attempt.
///
/// New kinds of event may be added in a minor version.
///
/// ```
/// use sampler_api::Event;
/// use std::time::Duration;
/// let e = Event::ExporterRecovered {
///     exporter: "graphite".into(),
///     failed_for: Duration::from_millis(12_300),
///     failed_exports: 4,
///     dropped: 1,
/// };
/// assert_eq!(
///     e.to_string(),
///     "exporter graphite recovered after 12.3 s (4 exports failed, 1 snapshot dropped from its queue)"
/// );
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// An exporter's export failed after it had succeeded (or at its first export); later
    /// failures are silent until it recovers.
    ExporterFailing {
        /// The exporter's name, as in the `exporter` label of self-metrics.
        exporter: String,
        /// What failed, where and why, with every cause.
        error: String,
    },
    /// An exporter exported again after failing.
    ExporterRecovered {
        /// The exporter's name.
        exporter: String,
        /// From the first failed export to this success.
        failed_for: Duration,
        /// Exports that failed meanwhile.
        failed_exports: u64,
        /// Snapshots dropped from the exporter's queue meanwhile (the exporter's own buffer
        /// reports its drops in its self-metrics).
        dropped: u64,
    },
    /// A family made its last allowed label set; further new label sets fold into its overflow
    /// series (`spec/sampler-api.md`, "Families").
    FamilyFull {
        /// The family's metric name.
        metric: String,
        /// How many label sets it holds at most.
        limit: usize,
    },
    /// A family was made with a mistake in its definition (a metric name or label key that
    /// breaks the naming rules, a label key given twice) through an infallible constructor
    /// such as [`Registry::counter_family`](crate::Registry::counter_family): it records, but
    /// no harvest exports it. Said once per family made.
    FamilyRejected {
        /// What is wrong, naming the family and the key.
        error: FamilyError,
    },
    /// A family was looked up with the wrong number of label values through an infallible
    /// form (`get`, `inc`, `set`, `record`, …): such lookups record in no series and are
    /// counted in `sampler.family.label_errors`. Said once per family.
    WrongLabelCount {
        /// The family, its keys and how many values the lookup gave.
        error: LabelError,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::ExporterFailing { exporter, error } => {
                write!(f, "exporter {exporter} failing: {error}")
            }
            Event::ExporterRecovered {
                exporter,
                failed_for,
                failed_exports,
                dropped,
            } => {
                let s = |n: u64| if n == 1 { "" } else { "s" };
                write!(
                    f,
                    "exporter {exporter} recovered after {:.1} s ({failed_exports} export{} failed, \
                     {dropped} snapshot{} dropped from its queue)",
                    failed_for.as_secs_f64(),
                    s(*failed_exports),
                    s(*dropped),
                )
            }
            Event::FamilyFull { metric, limit } => write!(
                f,
                "metric {metric} reached its limit of {limit} label sets: new label sets now \
                 fold into one overflow series"
            ),
            Event::FamilyRejected { error } => {
                write!(f, "{error}: the family records but is never exported")
            }
            Event::WrongLabelCount { error } => write!(
                f,
                "{error}: lookups with the wrong number of label values record nothing \
                 (counted in sampler.family.label_errors)"
            ),
        }
    }
}

type Hook = Arc<dyn Fn(&Event) + Send + Sync>;

static HOOK: RwLock<Option<Hook>> = RwLock::new(None);

/// Sets the process-wide hook that receives every [`Event`], replacing the previous one.
///
/// The hook runs on whichever thread noticed the change (an exporter's worker, a recording
/// thread making a family's last series), so it should be quick: print a line, or hand the
/// event to a channel.
///
/// ```
/// use sampler_api::{set_event_hook, Event};
/// set_event_hook(|e: &Event| eprintln!("sampler: {e}"));
/// ```
pub fn set_event_hook(hook: impl Fn(&Event) + Send + Sync + 'static) {
    *HOOK.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(hook));
}

/// Removes the event hook; events are then only counted.
pub fn clear_event_hook() {
    *HOOK.write().unwrap_or_else(|p| p.into_inner()) = None;
}

/// Hands `event` to the hook, if one is set. A panicking hook is contained.
pub(crate) fn emit(event: Event) {
    let hook = HOOK.read().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(hook) = hook {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(&event)));
    }
}
