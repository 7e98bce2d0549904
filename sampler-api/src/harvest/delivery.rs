//! Delivery to one exporter: its bounded queue (the oldest snapshot dropped and counted when
//! full, so the harvest never waits), its worker thread, and the health that turns a run of
//! failed exports into one failing and one recovered event.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering::*};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::event::{emit, Event};
use crate::exporter::Exporter;
use crate::local::lock;
use crate::sampler::Sampler;
use crate::snapshot::Snapshot;

pub(super) enum Msg {
    Snapshot(Arc<Snapshot>),
    /// The exporter is being removed from a running harvester: export what the queue still
    /// holds, shut down, reply with what failed.
    Stop {
        deadline: Instant,
        reply: Sender<Vec<String>>,
    },
    /// The last snapshot travels with the request to shut down, so a full queue cannot push it
    /// out: the worker exports it, shuts the exporter down and replies with what failed.
    Shutdown {
        last: Arc<Snapshot>,
        deadline: Instant,
        reply: Sender<Vec<String>>,
    },
}

#[derive(Default)]
pub(super) struct LinkStats {
    pub(super) dropped: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) exported: AtomicU64,
    pub(super) last_nanos: AtomicU64,
    pub(super) last_error: Mutex<Option<String>>,
}

pub(super) struct Link {
    /// Never reused within a harvester; the exporter's own sampler is polled under it.
    pub(super) key: u64,
    pub(super) name: String,
    /// The exporter's own self-metrics.
    pub(super) sampler: Option<Arc<dyn Sampler>>,
    pub(super) worker: Mutex<Option<JoinHandle<()>>>,
    pub(super) tx: Sender<Msg>,
    /// A receiver kept by the harvest side, to drop the oldest snapshot when the queue is full.
    pub(super) rx: Receiver<Msg>,
    pub(super) stats: LinkStats,
}

impl Link {
    /// Queues `msg`, dropping the oldest snapshot while the queue is full. Never blocks.
    pub(super) fn send(&self, mut msg: Msg) {
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => return,
                Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(m)) => {
                    msg = m;
                    if let Ok(Msg::Snapshot(_)) = self.rx.try_recv() {
                        self.stats.dropped.fetch_add(1, Relaxed);
                    }
                }
            }
        }
    }
}

/// Whether an exporter is failing, and since when: what turns a run of failed exports into one
/// [`Event::ExporterFailing`] and one [`Event::ExporterRecovered`].
#[derive(Default)]
pub(super) struct Health {
    pub(super) failing: Option<Failing>,
}

pub(super) struct Failing {
    pub(super) since: Instant,
    pub(super) failed: u64,
    pub(super) dropped_before: u64,
}

impl Health {
    pub(super) fn record(&mut self, outcome: &Result<(), String>, link: &Link) {
        match (outcome, &mut self.failing) {
            (Ok(()), None) => {}
            (Ok(()), Some(f)) => {
                let dropped = link.stats.dropped.load(Relaxed) - f.dropped_before;
                emit(Event::ExporterRecovered {
                    exporter: link.name.clone(),
                    failed_for: f.since.elapsed(),
                    failed_exports: f.failed,
                    dropped,
                });
                self.failing = None;
            }
            (Err(e), None) => {
                emit(Event::ExporterFailing {
                    exporter: link.name.clone(),
                    error: e.clone(),
                });
                self.failing = Some(Failing {
                    since: Instant::now(),
                    failed: 1,
                    dropped_before: link.stats.dropped.load(Relaxed),
                });
            }
            (Err(_), Some(f)) => f.failed += 1,
        }
    }
}

pub(super) fn worker(mut exporter: Box<dyn Exporter>, rx: Receiver<Msg>, link: Arc<Link>) {
    let mut health = Health::default();
    while let Ok(msg) = rx.recv() {
        match msg {
            Msg::Snapshot(s) => {
                let outcome = export(&mut *exporter, s, &link);
                health.record(&outcome, &link);
            }
            Msg::Shutdown {
                last,
                deadline,
                reply,
            } => {
                let mut failures = Vec::new();
                if let Err(e) = export(&mut *exporter, last, &link) {
                    failures.push(format!("failed to export the last snapshot: {e}"));
                }
                match catch_unwind(AssertUnwindSafe(|| exporter.shutdown(deadline))) {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => failures.push(e.chain()),
                    Err(p) => {
                        failures.push(format!("panicked during shutdown: {}", panic_message(&*p)))
                    }
                }
                let _ = reply.send(failures);
                return;
            }
            Msg::Stop { deadline, reply } => {
                let mut failures = Vec::new();
                match catch_unwind(AssertUnwindSafe(|| exporter.shutdown(deadline))) {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => failures.push(e.chain()),
                    Err(p) => {
                        failures.push(format!("panicked during shutdown: {}", panic_message(&*p)))
                    }
                }
                let _ = reply.send(failures);
                return;
            }
        }
    }
}

/// Exports one snapshot under a panic guard and counts the outcome in the link's stats.
pub(super) fn export(
    exporter: &mut dyn Exporter,
    snapshot: Arc<Snapshot>,
    link: &Link,
) -> Result<(), String> {
    let t = Instant::now();
    let r = catch_unwind(AssertUnwindSafe(|| exporter.export(snapshot)));
    link.stats
        .last_nanos
        .store(t.elapsed().as_nanos() as u64, Relaxed);
    let error = match r {
        Ok(Ok(())) => {
            link.stats.exported.fetch_add(1, Relaxed);
            return Ok(());
        }
        Ok(Err(e)) => e.chain(),
        Err(p) => format!("panicked during export: {}", panic_message(&*p)),
    };
    link.stats.errors.fetch_add(1, Relaxed);
    *lock(&link.stats.last_error) = Some(error.clone());
    Err(error)
}

/// The text a panic was raised with, when it has one.
pub(super) fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}
