//! Shared-memory stats for multi-process applications.
//!
//! Pre-fork servers run N worker processes; stats kept in each one's memory are stuck there.
//! Here each process publishes into its own memory-mapped *segment* file in a directory, and one
//! reader, [`ShmSampler`], harvests them all through the normal pipeline. The layout is
//! language-neutral (`spec/shm.md`); `adapters/shm/python/` is a writer for Python using only
//! the standard library.
//!
//! - **Writers** ([`Segment`]) never lock and never make a syscall to record: a counter is one
//!   relaxed atomic add into the mapping, a gauge one store, a timing a few stores under a
//!   sequence lock.
//! - **The reader** validates every segment (bounds, magic, version, sizes; no offset is
//!   trusted), sums counters and timings across processes, reports gauges per process (a `pid`
//!   label) or by a [`GaugeRule`], folds a dead writer's final values into a per-series base so
//!   totals never go backwards, and removes its file after a grace period, so a harvest costs
//!   what the live writers cost.
//!
//! ```
//! use sampler_adapter_shm::{GaugeRule, Segment, ShmSampler};
//! use sampler_api::{Harvester, Registry, Value};
//! # let dir = tempfile::tempdir()?;
//! // In each worker process, after fork:
//! let segment = Segment::create(dir.path())?;
//! let hits = segment.counter("cache.hits", &[("cache", "pages")])?;
//! hits.add(3);
//! segment.gauge("worker.busy", &[])?.set(1.0);
//!
//! // In the harvester:
//! let registry = Registry::new();
//! let _reg = registry.register(ShmSampler::new(dir.path()).gauges(GaugeRule::Sum));
//! let snapshot = Harvester::builder().registry(registry).build().harvest_now();
//! let total = snapshot.find("cache.hits", &[("cache", "pages")]).unwrap();
//! assert_eq!(*total.value(), Value::Counter(3));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Segments are little-endian; the writer and reader build on little-endian Unix hosts.

#![deny(missing_docs)]

#[cfg(not(loom))]
pub mod layout;
#[cfg(all(unix, not(loom)))]
mod reader;
mod seqlock;
#[cfg(all(unix, not(loom)))]
mod writer;

#[cfg(not(loom))]
pub use layout::{Invalid, TimingShape};
#[cfg(all(unix, not(loom)))]
pub use reader::{
    read_value, GaugeRule, Reading, ScanReport, ShmEvent, ShmSampler, DEFAULT_GRACE,
    MAX_TIMING_COUNT,
};
#[cfg(all(unix, not(loom)))]
pub use writer::{Segment, ShmCounter, ShmGauge, ShmTiming, WriteError};
