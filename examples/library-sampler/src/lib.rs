//! `tiny_pool`: a small connection pool that reports its own state through `sampler-api`.
//!
//! The pool depends on `sampler-api` alone and chooses no backend. Its statistics are one
//! `static` sampler registered with one line (`register_sampler!`), so every binary that links
//! this crate harvests them with no wiring code, and a request timing recorded per checkout.
//!
//! ```
//! let pool = tiny_pool::Pool::new(4);
//! let conn = pool.get().expect("a free connection");
//! drop(conn); // back to the pool
//! ```

#![deny(missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use sampler_api::{register_sampler, Descriptor, Registry, Sampler, Timing, Writer};

static SIZE: Descriptor =
    Descriptor::gauge("pool.connections.max", "1", "connections the pool may hold");
static IDLE: Descriptor = Descriptor::gauge(
    "pool.connections.idle",
    "1",
    "connections waiting to be used",
);
static BUSY: Descriptor =
    Descriptor::gauge("pool.connections.busy", "1", "connections checked out");
static CHECKOUTS: Descriptor = Descriptor::counter("pool.checkouts", "1", "connections handed out");
static EXHAUSTED: Descriptor = Descriptor::counter(
    "pool.exhausted",
    "1",
    "checkouts refused because every connection was busy",
);
static HELD: Descriptor = Descriptor::timing(
    "pool.connection.held",
    "s",
    "time a connection stays checked out",
);

/// Totals of every pool in the process, read at harvest time.
struct PoolStats {
    max: AtomicU64,
    busy: AtomicU64,
    checkouts: AtomicU64,
    exhausted: AtomicU64,
}

static STATS: PoolStats = PoolStats {
    max: AtomicU64::new(0),
    busy: AtomicU64::new(0),
    checkouts: AtomicU64::new(0),
    exhausted: AtomicU64::new(0),
};

impl Sampler for PoolStats {
    fn name(&self) -> &str {
        "tiny_pool"
    }

    fn sample(&self, out: &mut Writer<'_>) {
        // The pool knows its state best: it is read when asked, not pushed on every change.
        let (max, busy) = (self.max.load(Relaxed), self.busy.load(Relaxed));
        let labels = [("pool", "default")];
        out.gauge(&SIZE, &labels, max as f64);
        out.gauge(&BUSY, &labels, busy as f64);
        out.gauge(&IDLE, &labels, max.saturating_sub(busy) as f64);
        out.counter(&CHECKOUTS, &labels, self.checkouts.load(Relaxed));
        out.counter(&EXHAUSTED, &labels, self.exhausted.load(Relaxed));
    }
}

register_sampler!("tiny_pool", STATS);

fn held_timing() -> &'static Timing {
    static HELD_TIMING: OnceLock<Timing> = OnceLock::new();
    HELD_TIMING.get_or_init(|| Registry::global().timing(&HELD))
}

/// A fixed-size pool of (pretend) connections.
#[derive(Debug)]
pub struct Pool {
    free: Mutex<Vec<u32>>,
}

/// A checked-out connection; dropping it returns it to the pool.
#[derive(Debug)]
pub struct Conn<'a> {
    pool: &'a Pool,
    id: u32,
    since: Instant,
}

impl Pool {
    /// A pool of `size` connections.
    pub fn new(size: u32) -> Self {
        STATS.max.fetch_add(size as u64, Relaxed);
        Pool {
            free: Mutex::new((0..size).collect()),
        }
    }

    /// Checks out a connection, or `None` when all are busy.
    pub fn get(&self) -> Option<Conn<'_>> {
        let id = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match id {
            Some(id) => {
                STATS.busy.fetch_add(1, Relaxed);
                STATS.checkouts.fetch_add(1, Relaxed);
                Some(Conn {
                    pool: self,
                    id,
                    since: Instant::now(),
                })
            }
            None => {
                STATS.exhausted.fetch_add(1, Relaxed);
                None
            }
        }
    }
}

impl Conn<'_> {
    /// The connection's number.
    pub fn id(&self) -> u32 {
        self.id
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        held_timing().record_duration(self.since.elapsed());
        STATS.busy.fetch_sub(1, Relaxed);
        self.pool
            .free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.id);
    }
}
