//! The harvest loop: polls every sampler on an interval aligned to the wall clock, builds one
//! immutable snapshot and hands it to each exporter's own worker over a bounded queue.
//!
//! Invariants (see `spec/sampler-api.md`, "Harvest"):
//! - a sampler that panics loses only its own readings for that harvest and is counted;
//! - a sampler over its time budget is reported, and the others still run; one that does not
//!   return at all is left to its own thread and skipped until it does;
//! - the harvest never waits on an exporter: when an exporter's queue is full, its oldest
//!   snapshot is dropped and counted;
//! - `shutdown` runs one last harvest and lets every exporter flush it before a deadline.
//!
//! One concern per file: `builder` (configuration), `harvester` (the public handle: start,
//! harvest on demand, shutdown), `exporters` (adding and removing exporters while running),
//! `delivery` (each exporter's bounded queue, its worker thread and its health events),
//! `collect` (one harvest: polls every sampler and publishes the snapshot), `sampling` (the
//! thread samplers run on, budgets and hung samplers), `self_metrics` (the `sampler.*`
//! series) and `tick` (the loop aligned to the wall clock).

use std::time::Duration;

mod builder;
mod collect;
mod delivery;
mod exporters;
mod harvester;
mod sampling;
mod self_metrics;
mod tick;

pub use builder::HarvesterBuilder;
pub use exporters::ExporterKey;
pub use harvester::{HarvestHandle, Harvester, ShutdownError};

/// The default harvest interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// The default number of snapshots an exporter's queue holds.
pub const DEFAULT_QUEUE: usize = 4;
