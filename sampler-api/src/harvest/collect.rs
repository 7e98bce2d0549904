//! One harvest: polls every sampler (stop hooks for those gone, start hooks for new ones),
//! appends the self-metrics, numbers the snapshot and queues it to every exporter.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::*};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::local::lock;
use crate::registry::{Held, Registered, Registry};
use crate::sampler::SamplerState;
use crate::snapshot::{SeriesBuf, Snapshot};

use super::delivery::{Link, Msg};
use super::sampling::{run_hook, Poll, Sampling};
use super::self_metrics;

#[derive(Default)]
pub(super) struct State {
    /// The thread samplers run on (see `Sampling`).
    pub(super) sampling: Sampling,
    /// Per sampler: its identities, and (unless it is an instrument, held weakly) the sampler
    /// itself, for its `stop` hook.
    pub(super) samplers: HashMap<u64, (SamplerState, Option<Held>)>,
    pub(super) own: SamplerState,
    pub(super) errors: HashMap<(String, &'static str), u64>,
    /// Seconds each sampler took in this harvest, summed over samplers of one name (two
    /// `gauge_fn`s of one metric), so that none is dropped as a duplicate series.
    pub(super) durations: HashMap<String, f64>,
    pub(super) harvests: u64,
    pub(super) skipped: u64,
}

pub(super) struct Core {
    pub(super) registry: Registry,
    pub(super) interval: Duration,
    pub(super) budget: Duration,
    pub(super) self_metrics: bool,
    pub(super) state: Mutex<State>,
    pub(super) sequence: AtomicU64,
    pub(super) links: Mutex<Vec<Arc<Link>>>,
    /// Snapshots each exporter's queue holds.
    pub(super) queue: usize,
    /// Numbers the exporters, also those added later.
    pub(super) next_key: AtomicU64,
}

impl Core {
    pub(super) fn harvest(&self, time: SystemTime, publish: bool) -> Arc<Snapshot> {
        self.harvest_locked(lock(&self.state), time, publish)
    }

    pub(super) fn harvest_locked(
        &self,
        mut guard: std::sync::MutexGuard<'_, State>,
        time: SystemTime,
        publish: bool,
    ) -> Arc<Snapshot> {
        let started = Instant::now();
        let state = &mut *guard;
        let mut registered = self.registry.snapshot();
        // The exporters' own samplers go through the same lifecycle (hooks, identities,
        // isolation) as registered ones, after them, under ids the registry never hands out.
        let links = lock(&self.links).clone();
        registered.extend(links.iter().filter_map(|l| {
            Some(Registered {
                id: u64::MAX - l.key,
                sampler: Held::Arc(l.sampler.clone()?),
                weak: false,
            })
        }));
        // Each family sizes its own block (`Writer::rows`).
        let mut series = SeriesBuf::default();
        state.durations.clear();

        // Stop hooks for samplers that went away.
        let live: std::collections::HashSet<u64> = registered.iter().map(|r| r.id).collect();
        let gone: Vec<u64> = state
            .samplers
            .keys()
            .filter(|id| !live.contains(id))
            .copied()
            .collect();
        for id in gone {
            if let Some((_, Some(held))) = state.samplers.remove(&id) {
                if !run_hook(&held, |s| s.stop()) {
                    *state
                        .errors
                        .entry((held.name().to_owned(), "panic"))
                        .or_default() += 1;
                }
            }
        }

        let poll = Poll {
            time,
            interval: self.interval,
            budget: self.budget,
        };
        for r in registered {
            let (sampler_state, _) = state.samplers.entry(r.id).or_insert_with(|| {
                if !run_hook(&r.sampler, |s| s.start()) {
                    *state
                        .errors
                        .entry((r.sampler.name().to_owned(), "panic"))
                        .or_default() += 1;
                }
                (
                    SamplerState::default(),
                    (!r.weak).then(|| r.sampler.clone()),
                )
            });
            state.sampling.run(
                r.id,
                r.weak,
                r.sampler,
                sampler_state,
                &mut series,
                &poll,
                &mut state.errors,
                &mut state.durations,
            );
        }
        state.harvests += 1;
        let polled = started.elapsed();
        let user_series = series.len();
        if self.self_metrics {
            self_metrics::write(
                state,
                &links,
                &mut series,
                time,
                self.interval,
                polled,
                user_series,
            );
        }
        drop(guard);

        let snapshot = Arc::new(Snapshot::new(
            time,
            self.interval,
            self.sequence.fetch_add(1, Relaxed) + 1,
            series,
        ));
        if publish {
            for l in lock(&self.links).iter() {
                l.send(Msg::Snapshot(snapshot.clone()));
            }
        }
        snapshot
    }
}
