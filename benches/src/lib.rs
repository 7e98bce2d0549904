//! Shared pieces of the side-by-side benchmarks: a counting global allocator, a runner that
//! times the same work on one or more threads at once, the label values every library gets
//! (and the random order in which the lookup benchmark asks for them), and, for each library,
//! a family of N labelled counters that can be harvested and exposed as Prometheus text.
//!
//! The libraries compared are this workspace's `sampler-api`, `metrics` with a `metrics-util`
//! registry, `prometheus-client`, `prometheus`, `opentelemetry_sdk`, `fastmetrics` and
//! `measured`; floors (a raw relaxed `AtomicU64`, a plain load and store, a store through a
//! handle, a thread-local histogram) bound what any of them can do in the same loop.
//! `benches/record.rs` times recording and lookups, `benches/harvest.rs` times harvests and
//! harvest + encode, the `memory` binary counts heap bytes per series, and the `report`
//! binary prints the tables of `benches/README.md`.
//!
//! ```
//! use sampler_benches::run_threads;
//! use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
//!
//! let hits = AtomicU64::new(0);
//! // Two threads add 1000 each at the same time; the result is the slower thread's time.
//! let took = run_threads(2, 1000, |n| {
//!     for _ in 0..n {
//!         hits.fetch_add(1, Relaxed);
//!     }
//! });
//! assert_eq!(hits.load(Relaxed), 2000);
//! assert!(took.as_nanos() > 0);
//! ```

#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

mod alloc;
pub mod floor;
pub mod measured_labels;
pub mod memory;
pub mod report;
pub mod series;

pub use alloc::{net_allocated, CountingAlloc};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

/// The label keys of the two-label series families (harvest and memory measurements).
pub const SERIES_KEYS: [&str; 2] = ["service", "route"];

/// The label values of series `i` of a two-label family: the same for every library.
///
/// 1000 routes per service, so any `i` below 100 million gets its own pair.
///
/// ```
/// let [service, route] = sampler_benches::series_values(12_345);
/// assert_eq!(service, "svc12");
/// assert_eq!(route, "/api/v1/items/345");
/// ```
pub fn series_values(i: usize) -> [String; 2] {
    [
        format!("svc{}", i / 1000),
        format!("/api/v1/items/{}", i % 1000),
    ]
}

/// The label keys of the three-label lookup benchmark.
pub const LOOKUP_KEYS: [&str; 3] = ["method", "route", "status"];
/// The label values of the first label set of the lookup benchmark (the only one when it
/// looks up a single set).
pub const LOOKUP_VALUES: [&str; 3] = ["GET", "/api/v1/items", "200"];
/// How many distinct label sets the lookup benchmark looks up, in random order.
pub const LOOKUP_SET_COUNTS: [usize; 3] = [1, 100, 10_000];
/// Length of the random lookup sequence (a power of two, so that an index wraps with a mask).
pub const LOOKUP_ORDER_LEN: usize = 1 << 16;

/// `n` distinct three-label value sets for [`LOOKUP_KEYS`], the first being
/// [`LOOKUP_VALUES`]; the strings are leaked, so that every library can borrow them for the
/// whole run.
///
/// ```
/// let sets = sampler_benches::lookup_sets(100);
/// assert_eq!(sets[0], sampler_benches::LOOKUP_VALUES);
/// assert_eq!(sets[13], ["POST", "/api/v1/items/13", "404"]);
/// let distinct: std::collections::HashSet<_> = sets.iter().collect();
/// assert_eq!(distinct.len(), 100);
/// ```
pub fn lookup_sets(n: usize) -> Vec<[&'static str; 3]> {
    const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];
    const STATUS: [&str; 3] = ["200", "404", "500"];
    (0..n)
        .map(|k| {
            let route: &'static str = if k == 0 {
                LOOKUP_VALUES[1]
            } else {
                Box::leak(format!("{}/{k}", LOOKUP_VALUES[1]).into_boxed_str())
            };
            [METHODS[k % 4], route, STATUS[k % 3]]
        })
        .collect()
}

/// [`LOOKUP_ORDER_LEN`] indexes below `n`, uniformly random from a fixed seed: the order in
/// which every library looks up the label sets of [`lookup_sets`].
///
/// ```
/// let order = sampler_benches::lookup_order(100);
/// assert_eq!(order.len(), sampler_benches::LOOKUP_ORDER_LEN);
/// assert!(order.iter().all(|&i| i < 100));
/// // Every set is looked up, none much more often than the others.
/// let mut hits = [0u32; 100];
/// order.iter().for_each(|&i| hits[i as usize] += 1);
/// assert!(hits.iter().all(|&h| (400..920).contains(&h)));
/// assert_eq!(sampler_benches::lookup_order(1), vec![0; sampler_benches::LOOKUP_ORDER_LEN]);
/// ```
pub fn lookup_order(n: usize) -> Vec<u32> {
    let mut state = 0xD1B5_4A32_D192_ED03u64;
    (0..LOOKUP_ORDER_LEN)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Multiply-shift maps the 64-bit draw onto [0, n) without modulo bias to speak of.
            ((u128::from(state) * n.max(1) as u128) >> 64) as u32
        })
        .collect()
}

/// 1024 timing values, log-uniform between 100 µs and 1 s (in seconds), from a fixed seed so
/// that every library records the same sequence.
///
/// ```
/// let v = sampler_benches::timing_values();
/// assert_eq!(v.len(), 1024);
/// assert!(v.iter().all(|&x| (1e-4..1.0).contains(&x)));
/// ```
pub fn timing_values() -> Vec<f64> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..1024)
        .map(|_| {
            // xorshift64: enough spread for picking histogram buckets.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            1e-4 * 10f64.powf(4.0 * u)
        })
        .collect()
}

/// Runs `work(iters)` on `threads` threads started together, and returns the time the
/// slowest thread took: with each thread doing `iters` operations, that is the wall time of
/// the parallel run, and divided by `iters` it is the time per operation per thread.
///
/// This starts the threads for this one run; a benchmark that runs many times keeps them with
/// [`with_runner`] (whose [`Runner::run`] this is).
///
/// A run only means something if its threads really ran at the same time, each on a core of
/// its own. On Linux each thread reads its run-queue wait time (`/proc/thread-self/schedstat`)
/// around its loop: a run longer than a millisecond in which a thread waited for a core for
/// more than 2 % of its time, or whose threads overlapped for less than 95 % of the slowest
/// one's time, is run again after a short pause, up to [`MAX_ATTEMPTS`] times.
/// [`parallel_stats`] counts the retries and the runs that never came out clean.
///
/// ```
/// let took = sampler_benches::run_threads(1, 10, |n| {
///     std::hint::black_box(n);
/// });
/// assert!(took < std::time::Duration::from_secs(1));
/// ```
pub fn run_threads<F>(threads: usize, iters: u64, work: F) -> Duration
where
    F: Fn(u64) + Sync,
{
    with_runner(threads, work, |runner| runner.run(iters))
}

/// Starts `threads` threads that live until `body` returns, and gives `body` a [`Runner`]
/// that has them all run `work(iters)` at once, as often as asked.
///
/// Services keep their worker threads; so does a benchmark through this: what a thread builds
/// up on its first operations (thread-local caches, per-thread cells) is paid once per
/// benchmark, in criterion's warm-up, not again in every sample. One thread is the calling
/// thread itself; more are scoped threads, each released by a barrier for every run and timing
/// its own loop (waking them is not counted).
///
/// ```
/// use sampler_benches::{with_runner, MAX_ATTEMPTS};
/// use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
///
/// let hits = AtomicU64::new(0);
/// let threads_seen = std::sync::Mutex::new(std::collections::HashSet::new());
/// with_runner(2, |n| {
///     threads_seen.lock().unwrap().insert(std::thread::current().id());
///     for _ in 0..n {
///         hits.fetch_add(1, Relaxed);
///     }
/// }, |runner| {
///     for _ in 0..3 {
///         runner.run(1000);
///     }
/// });
/// // Three runs of 2 × 1000; a run that was not clean (a thread waited for a core) is made
/// // again, so on a busy machine there may be more.
/// let hits = hits.load(Relaxed);
/// assert_eq!(hits % 2000, 0);
/// assert!((6000..=6000 * MAX_ATTEMPTS as u64).contains(&hits), "{hits}");
/// // The same two threads ran all three runs.
/// assert_eq!(threads_seen.lock().unwrap().len(), 2);
/// ```
pub fn with_runner<F, B, R>(threads: usize, work: F, body: B) -> R
where
    F: Fn(u64) + Sync,
    B: FnOnce(&mut Runner<'_>) -> R,
{
    let threads = threads.max(1);
    if threads == 1 {
        return body(&mut Runner {
            local: Some(&work),
            crew: None,
        });
    }
    let crew = Crew {
        threads,
        start: Barrier::new(threads + 1),
        done: Barrier::new(threads + 1),
        order: Mutex::new(None),
        parts: Mutex::new(Vec::with_capacity(threads)),
        panicked: AtomicBool::new(false),
    };
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| crew.serve(&work));
        }
        // Sends the threads home however `body` ends (a panic too), so that the scope can join.
        let _home = GoHome(&crew);
        body(&mut Runner {
            local: None,
            crew: Some(&crew),
        })
    })
}

/// Runs of one benchmark on the threads of [`with_runner`].
pub struct Runner<'a> {
    /// The work, when it runs on the calling thread (one thread).
    local: Option<&'a (dyn Fn(u64) + Sync)>,
    crew: Option<&'a Crew>,
}

impl std::fmt::Debug for Runner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("threads", &self.crew.map_or(1, |c| c.threads))
            .finish()
    }
}

impl Runner<'_> {
    /// Has every thread run `work(iters)` at once (again, up to [`MAX_ATTEMPTS`] times, while
    /// the run is not clean: see [`run_threads`]) and returns the slowest thread's time.
    pub fn run(&mut self, iters: u64) -> Duration {
        let mut last = Duration::ZERO;
        for attempt in 1..=MAX_ATTEMPTS {
            let run = self.run_once(iters);
            last = run.took;
            if run.clean() {
                return last;
            }
            if attempt < MAX_ATTEMPTS {
                RETRIED.fetch_add(1, Relaxed);
                // Give whatever took the core a moment to finish before trying again.
                std::thread::sleep(Duration::from_millis(10 * u64::from(attempt)));
            }
        }
        UNCLEAN.fetch_add(1, Relaxed);
        last
    }

    fn run_once(&mut self, iters: u64) -> Run {
        let parts = match (self.local, self.crew) {
            (Some(work), _) => vec![part(iters, work)],
            (None, Some(crew)) => crew.run(iters),
            (None, None) => Vec::new(),
        };
        let took = parts.iter().map(|p| p.took).max().unwrap_or_default();
        Run { took, parts }
    }
}

/// What the coordinating thread and the threads of [`with_runner`] share.
struct Crew {
    threads: usize,
    /// Every thread and the coordinator meet here before a run (and before going home)...
    start: Barrier,
    /// ... and here after it, when every thread's part is in `parts`.
    done: Barrier,
    /// `Some(iters)`: run; `None`: go home.
    order: Mutex<Option<u64>>,
    parts: Mutex<Vec<Part>>,
    panicked: AtomicBool,
}

impl Crew {
    /// A thread's life: run whenever told, until told to go home.
    fn serve<F: Fn(u64)>(&self, work: &F) {
        loop {
            self.start.wait();
            let order = *self.order.lock().unwrap_or_else(|e| e.into_inner());
            let Some(iters) = order else { return };
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| part(iters, work))) {
                Ok(p) => self.parts.lock().unwrap_or_else(|e| e.into_inner()).push(p),
                Err(_) => self.panicked.store(true, Relaxed),
            }
            self.done.wait();
        }
    }

    fn run(&self, iters: u64) -> Vec<Part> {
        *self.order.lock().unwrap_or_else(|e| e.into_inner()) = Some(iters);
        self.start.wait();
        self.done.wait();
        assert!(
            !self.panicked.load(Relaxed),
            "a benchmark thread panicked in its work"
        );
        let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(
            parts.len(),
            self.threads,
            "a benchmark thread did not report its run"
        );
        parts.drain(..).collect()
    }
}

struct GoHome<'a>(&'a Crew);

impl Drop for GoHome<'_> {
    fn drop(&mut self) {
        *self.0.order.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.0.start.wait();
    }
}

/// How many times [`run_threads`] tries to get a run whose threads all had a core.
pub const MAX_ATTEMPTS: u32 = 10;

static RETRIED: AtomicU64 = AtomicU64::new(0);
static UNCLEAN: AtomicU64 = AtomicU64::new(0);

/// `(retried, unclean)`: runs of [`run_threads`] repeated because a thread lacked a core, and
/// runs still not clean after [`MAX_ATTEMPTS`] tries (their time is kept, and is too high).
pub fn parallel_stats() -> (u64, u64) {
    (RETRIED.load(Relaxed), UNCLEAN.load(Relaxed))
}

/// Prints [`parallel_stats`] to stderr; a bench binary calls it last.
pub fn print_parallel_stats() {
    let (retried, unclean) = parallel_stats();
    eprintln!(
        "parallel runs: {retried} retried because a thread waited for a core, \
         {unclean} never clean after {MAX_ATTEMPTS} tries"
    );
}

/// One thread's part of a run.
struct Part {
    start: Instant,
    took: Duration,
    /// Nanoseconds spent waiting on a run queue during the loop, where the OS tells.
    waited: Option<u64>,
}

struct Run {
    took: Duration,
    parts: Vec<Part>,
}

impl Run {
    fn clean(&self) -> bool {
        // Short runs (criterion's first warm-up calls) cannot be judged and hardly matter.
        if self.took < Duration::from_millis(1) {
            return true;
        }
        let budget = self.took.as_nanos() as u64 / 50; // 2 %
        if self
            .parts
            .iter()
            .any(|p| p.waited.is_some_and(|w| w > budget))
        {
            return false;
        }
        let first_end = self.parts.iter().map(|p| p.start + p.took).min();
        let last_start = self.parts.iter().map(|p| p.start).max();
        match (first_end, last_start) {
            (Some(end), Some(start)) => {
                let overlap = end.saturating_duration_since(start);
                overlap.as_nanos() * 100 >= self.took.as_nanos() * 95
            }
            _ => true,
        }
    }
}

/// This thread's total run-queue wait in nanoseconds (Linux), else `None`.
fn run_queue_wait() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().nth(1)?.parse().ok()
}

fn part<F: Fn(u64) + ?Sized>(iters: u64, work: &F) -> Part {
    let w0 = run_queue_wait();
    let start = Instant::now();
    work(iters);
    let took = start.elapsed();
    let w1 = run_queue_wait();
    Part {
        start,
        took,
        waited: w0.zip(w1).map(|(a, b)| b.saturating_sub(a)),
    }
}

/// Waits until every CPU has been at least 90 % idle over a 200 ms window, for at most
/// `max_wait`; `true` when the machine is idle (or the OS does not tell, outside Linux).
///
/// Benchmarks call it before each measurement so that another process's burst of work does
/// not land inside it: two threads sharing a handle only contend when each has a core.
///
/// ```
/// let _idle = sampler_benches::wait_for_idle_cpus(std::time::Duration::ZERO);
/// ```
pub fn wait_for_idle_cpus(max_wait: Duration) -> bool {
    let deadline = Instant::now() + max_wait;
    loop {
        let Some(a) = cpu_times() else { return true };
        std::thread::sleep(Duration::from_millis(200));
        let Some(b) = cpu_times() else { return true };
        let idle = a.iter().zip(&b).all(|((ia, ta), (ib, tb))| {
            let total = tb.saturating_sub(*ta);
            total == 0 || ib.saturating_sub(*ia) * 10 >= total * 9
        });
        if idle {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
    }
}

/// `(idle, total)` jiffies of each CPU, from `/proc/stat`.
fn cpu_times() -> Option<Vec<(u64, u64)>> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpus: Vec<(u64, u64)> = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            // idle + iowait, and the sum of every field.
            (
                v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0),
                v.iter().sum(),
            )
        })
        .collect();
    (!cpus.is_empty()).then_some(cpus)
}

/// How long a benchmark waits for idle CPUs before measuring ([`wait_for_idle_cpus`]): 60 s,
/// or the seconds in `SAMPLER_BENCH_IDLE_WAIT` (set it low on a machine that is never idle,
/// where every wait would run to its end).
///
/// ```
/// assert!(sampler_benches::idle_wait() <= std::time::Duration::from_secs(3600));
/// ```
pub fn idle_wait() -> Duration {
    std::env::var("SAMPLER_BENCH_IDLE_WAIT")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::from_secs(60), |s| {
            Duration::from_secs(s.min(3600))
        })
}

/// Where criterion keeps its results for the running bench binary: `<target>/criterion`,
/// found from the binary's path (`<target>/<profile>/deps/<name>`), as the report reads them.
pub fn criterion_dir_of_exe() -> Option<std::path::PathBuf> {
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return Some(std::path::PathBuf::from(t).join("criterion"));
    }
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.join("criterion"))
}

/// The criterion settings of every benchmark here: short runs, so that the whole suite takes
/// a few minutes on two cores.
///
/// ```
/// let _c = sampler_benches::criterion();
/// ```
pub fn criterion() -> criterion::Criterion {
    criterion::Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .configure_from_args()
}

/// A value on a cache line of its own, so that a contended benchmark cell shares its line
/// with nothing else (128 bytes: adjacent-line prefetch on x86-64 pairs 64-byte lines).
///
/// ```
/// use std::sync::atomic::AtomicU64;
/// let cell = sampler_benches::Padded(AtomicU64::new(0));
/// assert_eq!(std::mem::align_of_val(&cell), 128);
/// ```
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Padded<T>(pub T);

/// `fastmetrics`' label set for the lookup benchmark: borrowed values, its cheapest key.
///
/// ```
/// let set = sampler_benches::FastLookupLabels(sampler_benches::LOOKUP_VALUES);
/// assert_eq!(set.0[1], "/api/v1/items");
/// ```
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct FastLookupLabels(pub [&'static str; 3]);

impl FastLookupLabels {
    /// One label set for each of `sets` ([`lookup_sets`]), in order.
    pub fn all(sets: &[[&'static str; 3]]) -> Vec<Self> {
        sets.iter().map(|v| FastLookupLabels(*v)).collect()
    }
}

/// `fastmetrics`' counter family keyed by [`FastLookupLabels`].
pub type FastLookupFamily =
    fastmetrics::metrics::family::Family<FastLookupLabels, fastmetrics::metrics::counter::Counter>;

impl fastmetrics::raw::LabelSetSchema for FastLookupLabels {
    fn names() -> Option<&'static [&'static str]> {
        Some(&LOOKUP_KEYS)
    }
}

impl fastmetrics::encoder::EncodeLabelSet for FastLookupLabels {
    fn encode(
        &self,
        encoder: &mut dyn fastmetrics::encoder::LabelSetEncoder,
    ) -> fastmetrics::error::Result<()> {
        for (k, v) in LOOKUP_KEYS.iter().zip(self.0) {
            encoder.encode(&(*k, v))?;
        }
        Ok(())
    }
}
