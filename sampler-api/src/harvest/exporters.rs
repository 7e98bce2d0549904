//! Exporters joining and leaving a harvester, also while it runs (a config reload).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::bounded;

use crate::exporter::Exporter;
use crate::local::lock;

use super::collect::Core;
use super::delivery::{worker, Link, LinkStats, Msg};
use super::harvester::{HarvestHandle, Harvester, ShutdownError};

impl Core {
    /// Starts `exporter` on its own worker thread behind its own queue.
    pub(super) fn add(self: &Arc<Self>, mut exporter: Box<dyn Exporter>) -> ExporterKey {
        exporter.attach(HarvestHandle {
            core: Arc::downgrade(self),
        });
        let (tx, rx) = bounded::<Msg>(self.queue);
        let mut links = lock(&self.links);
        // Two exporters of one kind (two Prometheus endpoints) get `name`, `name-2`, …
        // in self-metrics and messages, so their series stay apart.
        let base = exporter.name().to_owned();
        let mut name = base.clone();
        let mut n = 1;
        while links.iter().any(|l| l.name == name) {
            n += 1;
            name = format!("{base}-{n}");
        }
        let key = self.next_key.fetch_add(1, Relaxed);
        let link = Arc::new(Link {
            key,
            name,
            sampler: exporter.sampler(),
            worker: Mutex::new(None),
            tx,
            rx: rx.clone(),
            stats: LinkStats::default(),
        });
        let stats_link = link.clone();
        let name = link.name.clone();
        let handle = std::thread::Builder::new()
            .name(format!("sampler-export-{name}"))
            .spawn(move || worker(exporter, rx, stats_link))
            .unwrap_or_else(|e| {
                panic!("failed to spawn the worker thread of exporter {name}: {e}")
            });
        *lock(&link.worker) = Some(handle);
        links.push(link);
        ExporterKey(key)
    }
}

impl Harvester {
    /// Adds an exporter to a built (or running) harvester: it gets every harvest from the next
    /// on, on its own worker thread. A config reload adds the exporters it did not have.
    ///
    /// ```
    /// use sampler_api::{ExportError, Exporter, Harvester, Registry, Snapshot};
    /// use std::{sync::Arc, time::{Duration, Instant}};
    /// struct Nop;
    /// impl Exporter for Nop {
    ///     fn name(&self) -> &str { "nop" }
    ///     fn export(&mut self, _: Arc<Snapshot>) -> Result<(), ExportError> { Ok(()) }
    /// }
    /// let h = Harvester::builder().registry(Registry::new()).build();
    /// let key = h.add_exporter(Box::new(Nop));
    /// let s = h.harvest_now();
    /// assert!(s.find("sampler.exporter.dropped", &[("exporter", "nop")]).is_some());
    /// h.remove_exporter(key, Instant::now() + Duration::from_secs(1))?;
    /// assert!(h.harvest_now().find("sampler.exporter.dropped", &[("exporter", "nop")]).is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn add_exporter(&self, exporter: Box<dyn Exporter>) -> ExporterKey {
        self.core.add(exporter)
    }

    /// The keys of the exporters, in the order they were added (those given to the builder
    /// first).
    pub fn exporter_keys(&self) -> Vec<ExporterKey> {
        lock(&self.core.links)
            .iter()
            .map(|l| ExporterKey(l.key))
            .collect()
    }

    /// Removes an exporter: it exports what its queue still holds, then shuts down (flush,
    /// release) before `deadline`. An exporter still busy at the deadline is left behind and
    /// named in the error; an unknown key is not an error.
    pub fn remove_exporter(
        &self,
        key: ExporterKey,
        deadline: Instant,
    ) -> Result<(), ShutdownError> {
        let link = {
            let mut links = lock(&self.core.links);
            match links.iter().position(|l| l.key == key.0) {
                Some(i) => links.remove(i),
                None => return Ok(()),
            }
        };
        let (reply, rx) = bounded(1);
        // The queue may be full: this send must not drop what is queued, so it waits for room
        // (bounded by the deadline).
        let left = deadline.saturating_duration_since(Instant::now());
        let sent = link
            .tx
            .send_timeout(Msg::Stop { deadline, reply }, left)
            .is_ok();
        let left = deadline.saturating_duration_since(Instant::now());
        let failures = match sent.then(|| rx.recv_timeout(left)) {
            Some(Ok(errors)) => errors
                .into_iter()
                .map(|e| format!("exporter {}: {e}", link.name))
                .collect(),
            _ => vec![format!(
                "exporter {}: did not finish before the deadline",
                link.name
            )],
        };
        let worker = lock(&link.worker).take();
        if let Some(w) = worker {
            if w.is_finished() {
                let _ = w.join();
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(ShutdownError { failures })
        }
    }

    /// The last error each exporter reported, by exporter name.
    pub fn exporter_errors(&self) -> Vec<(String, String)> {
        lock(&self.core.links)
            .iter()
            .filter_map(|l| {
                lock(&l.stats.last_error)
                    .clone()
                    .map(|e| (l.name.clone(), e))
            })
            .collect()
    }
}

/// Names one exporter of a harvester, to remove it later ([`Harvester::remove_exporter`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExporterKey(u64);
