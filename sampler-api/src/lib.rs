//! The stable core of **sampler**: the data model, the [`Sampler`] and [`Exporter`] traits,
//! instruments, the registry and the harvest loop.
//!
//! A library depends on this crate alone to expose its state; an application picks exporters
//! (Prometheus, Graphite, StatsD, OTLP, the console) from their own crates. This crate opens no
//! sockets, starts no async runtime and changes its API only with a spec version bump
//! (`spec/sampler-api.md`).
//!
//! # In libraries
//!
//! Either implement [`Sampler`] for a type that knows its state, and register it once:
//!
//! ```
//! use sampler_api::{register_sampler, Descriptor, Sampler, Writer};
//! use std::sync::atomic::{AtomicU64, Ordering};
//!
//! static IDLE: Descriptor = Descriptor::gauge("pool.connections.idle", "1", "idle connections");
//!
//! pub struct PoolStats { idle: AtomicU64 }
//! impl Sampler for PoolStats {
//!     fn sample(&self, out: &mut Writer<'_>) {
//!         out.gauge(&IDLE, &[("pool", "db")], self.idle.load(Ordering::Relaxed) as f64);
//!     }
//! }
//! static STATS: PoolStats = PoolStats { idle: AtomicU64::new(0) };
//! register_sampler!("db-pool", STATS); // any binary linking this crate harvests it
//! ```
//!
//! or record into instruments:
//!
//! ```
//! use sampler_api::{Descriptor, Registry};
//! static REQUESTS: Descriptor = Descriptor::counter("http.server.requests", "1", "requests");
//! static LATENCY: Descriptor = Descriptor::timing("http.server.duration", "s", "latency");
//!
//! let registry = Registry::global();
//! let requests = registry.counter_family(&REQUESTS, &["route"]);
//! let latency = registry.timing_family(&LATENCY, &["route"]);
//! let home = requests.get(&["/"]); // look up once...
//! home.inc(); // ...then each record is a thread-local store
//! latency.record(&["/"], 0.012);
//! ```
//!
//! A family made with a label key twice, or looked up with the wrong number of values, is a
//! mistake the caller can see: [`Registry::try_counter_family`] returns a [`FamilyError`] and
//! [`CounterFamily::try_get`] a [`LabelError`]. Through the infallible forms such a family is
//! never exported and such a lookup records in no series; both are counted and said once
//! through the event hook ([`set_event_hook`]).
//!
//! # In applications
//!
//! ```
//! use sampler_api::{Exporter, ExportError, Harvester, Snapshot};
//! use std::{sync::Arc, time::Duration};
//!
//! struct Print;
//! impl Exporter for Print {
//!     fn name(&self) -> &str { "print" }
//!     fn export(&mut self, s: Arc<Snapshot>) -> Result<(), ExportError> {
//!         println!("{} series", s.len());
//!         Ok(())
//!     }
//! }
//!
//! let harvester = Harvester::builder()
//!     .interval(Duration::from_secs(10))
//!     .exporter(Print)
//!     .start();
//! // ... the application runs ...
//! harvester.shutdown(Duration::from_secs(5))?; // last harvest, flushed
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Costs
//!
//! Recording through a handle is a thread-local load plus a plain load and store into a cell
//! only the recording thread writes: no hashing, no lock, no allocation after a series' first
//! record in a thread, and no cache line shared with other threads. A family lookup by label
//! values hashes them and hits a per-thread cache. The harvest thread does the summing.

#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

mod descriptor;
pub mod distribution;
#[cfg(feature = "serde")]
pub mod duration_serde;
mod event;
mod exporter;
mod family_error;
mod harvest;
mod hooks;
mod instruments;
mod labels;
mod lifecycle;
#[cfg(test)]
mod lifetime_tests;
mod local;
mod registry;
mod sampler;
mod snapshot;

pub use descriptor::{validate_label_key, validate_name, Descriptor, Kind, NameError};
pub use distribution::Distribution;
pub use event::{clear_event_hook, set_event_hook, Event};
pub use exporter::{ExportError, Exporter};
pub use family_error::{FamilyError, LabelError};
pub use harvest::{
    ExporterKey, HarvestHandle, Harvester, HarvesterBuilder, ShutdownError, DEFAULT_INTERVAL,
    DEFAULT_QUEUE,
};
pub use instruments::{
    Counter, CounterFamily, FamilyOptions, Gauge, GaugeFamily, Timing, TimingFamily, TimingGuard,
    DEFAULT_LIMIT, DEFAULT_SCALE,
};
pub use labels::{LabelKeys, Labels, LabelsRef};
pub use registry::{Registration, Registry, StaticSampler};
pub use sampler::{FnSampler, Sampler, Writer};
pub use snapshot::{Series, SeriesId, SeriesIter, SeriesRef, SeriesRun, Snapshot, Value};

#[doc(hidden)]
pub use inventory;
