//! The thread samplers run on: a sampler's time budget, its panics, and a sampler that never
//! returns (left to its own thread and skipped until it does).

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::local::lock;
use crate::registry::Held;
use crate::sampler::{Sampler, SamplerState, Writer};
use crate::snapshot::SeriesBuf;

/// What one harvest polls with.
pub(super) struct Poll {
    pub(super) time: SystemTime,
    pub(super) interval: Duration,
    pub(super) budget: Duration,
}

/// Who settles a sampler call: the sampling thread when it finishes in time, or the harvest
/// when it gives up waiting. Exactly one of them wins the exchange from `RUNNING`.
pub(super) const RUNNING: u8 = 0;
pub(super) const FINISHED: u8 = 1;
pub(super) const ABANDONED: u8 = 2;

pub(super) struct Job {
    pub(super) id: u64,
    pub(super) claim: Arc<std::sync::atomic::AtomicU8>,
    pub(super) sampler: Held,
    pub(super) state: SamplerState,
    pub(super) out: SeriesBuf,
    pub(super) time: SystemTime,
    pub(super) interval: Duration,
}

pub(super) struct Done {
    pub(super) state: SamplerState,
    pub(super) out: SeriesBuf,
    pub(super) rejected: u64,
    pub(super) panicked: bool,
    pub(super) took: Duration,
}

/// Runs samplers on a thread of its own (the crate's own instruments excepted: they only read
/// memory), so that one that never returns holds up only itself: past twice its budget (and at least 100 ms) the harvest stops waiting, counts it
/// under `reason="hung"`, leaves that thread to it, and polls the rest on a new thread. The
/// hung sampler is skipped (and counted again) at every harvest until its call returns.
#[derive(Default)]
pub(super) struct Sampling {
    pub(super) worker: Option<(Sender<Job>, Receiver<Done>)>,
    /// Samplers whose call has not returned; their abandoned thread removes them.
    pub(super) hung: Arc<Mutex<std::collections::HashSet<u64>>>,
    /// A reused buffer for one sampler's output.
    pub(super) spare: SeriesBuf,
}

impl Sampling {
    pub(super) fn worker(&mut self) -> &(Sender<Job>, Receiver<Done>) {
        self.worker.get_or_insert_with(|| {
            let (job_tx, job_rx) = bounded::<Job>(1);
            let (done_tx, done_rx) = bounded::<Done>(1);
            let hung = self.hung.clone();
            std::thread::Builder::new()
                .name("sampler-sampling".into())
                .spawn(move || sampling_thread(job_rx, done_tx, hung))
                .unwrap_or_else(|e| panic!("failed to spawn the harvest's sampling thread: {e}"));
            (job_tx, done_rx)
        })
    }

    /// Polls one sampler: on the sampling thread, or `inline` on the calling thread for the
    /// crate's own instruments, which read memory only and cannot hang (this spares large
    /// families a hand-over of their output between threads).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run(
        &mut self,
        id: u64,
        inline: bool,
        sampler: Held,
        st: &mut SamplerState,
        series: &mut SeriesBuf,
        poll: &Poll,
        errors: &mut HashMap<(String, &'static str), u64>,
        durations: &mut HashMap<String, f64>,
    ) {
        let name = sampler.name().to_owned();
        if lock(&self.hung).contains(&id) {
            *errors.entry((name, "hung")).or_default() += 1;
            return;
        }
        let claim = Arc::new(std::sync::atomic::AtomicU8::new(RUNNING));
        let mut job = Job {
            id,
            claim: claim.clone(),
            sampler,
            state: std::mem::take(st),
            out: SeriesBuf::default(),
            time: poll.time,
            interval: poll.interval,
        };
        if inline {
            // Written straight into the snapshot's vector; a panic truncates it back.
            let before = series.len();
            job.out = std::mem::take(series);
            let (rejected, panicked, took) = sample_once(&mut job);
            *st = job.state;
            *series = job.out;
            if panicked {
                series.truncate(before);
            }
            account(name, rejected, panicked, took, poll, errors, durations);
            return;
        }
        job.out = std::mem::take(&mut self.spare);
        job.out.clear();
        let Some(done) = self.run_on_thread(job, claim, poll) else {
            self.worker = None;
            *errors.entry((name, "hung")).or_default() += 1;
            return;
        };
        *st = done.state;
        let mut out = done.out;
        if !done.panicked {
            series.append(&mut out);
        }
        self.spare = out;
        account(
            name,
            done.rejected,
            done.panicked,
            done.took,
            poll,
            errors,
            durations,
        );
    }

    pub(super) fn run_on_thread(
        &mut self,
        job: Job,
        claim: Arc<std::sync::atomic::AtomicU8>,
        poll: &Poll,
    ) -> Option<Done> {
        let id = job.id;
        let limit = (poll.budget * 2).max(Duration::from_millis(100));
        let (tx, rx) = self.worker();
        let rx = rx.clone();
        match tx.send(job) {
            Ok(()) => match rx.recv_timeout(limit) {
                Ok(done) => Some(done),
                Err(_) => {
                    // Marked before the claim, so the thread's clean-up cannot come first.
                    lock(&self.hung).insert(id);
                    if claim
                        .compare_exchange(RUNNING, ABANDONED, AcqRel, Acquire)
                        .is_ok()
                    {
                        None
                    } else {
                        // It finished just now: its result is on the way.
                        lock(&self.hung).remove(&id);
                        rx.recv().ok()
                    }
                }
            },
            Err(_) => None,
        }
    }
}

/// Runs a sampler's `start` or `stop` hook under a panic guard; `false` if it panicked.
pub(super) fn run_hook(sampler: &Held, hook: fn(&dyn Sampler)) -> bool {
    catch_unwind(AssertUnwindSafe(|| hook(sampler.get()))).is_ok()
}

/// Counts what one poll of a sampler did. A panicking sampler's partial output was dropped;
/// its identities stay, so the next good harvest continues the same series.
pub(super) fn account(
    name: String,
    rejected: u64,
    panicked: bool,
    took: Duration,
    poll: &Poll,
    errors: &mut HashMap<(String, &'static str), u64>,
    durations: &mut HashMap<String, f64>,
) {
    if panicked {
        *errors.entry((name.clone(), "panic")).or_default() += 1;
    }
    if rejected > 0 {
        *errors.entry((name.clone(), "rejected")).or_default() += rejected;
    }
    if took > poll.budget {
        *errors.entry((name.clone(), "budget")).or_default() += 1;
    }
    *durations.entry(name).or_default() += took.as_secs_f64();
}

/// Polls one sampler into the job's buffer, under a panic guard.
pub(super) fn sample_once(job: &mut Job) -> (u64, bool, Duration) {
    let t = Instant::now();
    job.state.begin();
    let mut rejected = 0;
    let r = catch_unwind(AssertUnwindSafe(|| {
        let mut w = Writer::new(&mut job.state, &mut job.out, job.time, job.interval);
        job.sampler.get().sample(&mut w);
        rejected = w.rejected();
    }));
    if r.is_ok() {
        job.state.end();
    }
    (rejected, r.is_err(), t.elapsed())
}

pub(super) fn sampling_thread(
    jobs: Receiver<Job>,
    done: Sender<Done>,
    hung: Arc<Mutex<std::collections::HashSet<u64>>>,
) {
    while let Ok(mut job) = jobs.recv() {
        let (rejected, panicked, took) = sample_once(&mut job);
        if job
            .claim
            .compare_exchange(RUNNING, FINISHED, AcqRel, Acquire)
            .is_err()
        {
            // The harvest gave up on this call and moved on: let the sampler be polled again,
            // and end this thread (a new one serves the harvest).
            lock(&hung).remove(&job.id);
            return;
        }
        let result = Done {
            state: job.state,
            out: job.out,
            rejected,
            panicked,
            took,
        };
        if done.send(result).is_err() {
            return;
        }
    }
}
