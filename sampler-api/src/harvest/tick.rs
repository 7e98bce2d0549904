//! The periodic loop: harvests on multiples of the interval since the Unix epoch and counts the
//! ticks a slow harvest ran past.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::local::lock;

use super::collect::Core;

/// The next multiple of `interval` since the Unix epoch strictly after `now`.
pub(super) fn next_tick(now: SystemTime, interval: Duration) -> SystemTime {
    let since = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let step = interval.as_nanos().max(1);
    let next = (since / step + 1) * step;
    UNIX_EPOCH + Duration::from_nanos(next as u64)
}

pub(super) fn run_loop(core: Arc<Core>, stop: Receiver<()>, at_start: bool) {
    if at_start {
        core.harvest(SystemTime::now(), true);
    }
    let mut tick = next_tick(SystemTime::now(), core.interval);
    loop {
        let wait = tick.duration_since(SystemTime::now()).unwrap_or_default();
        match stop.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        // The clock may wake us a hair early: never harvest before the tick.
        let now = SystemTime::now();
        if now < tick {
            continue;
        }
        core.harvest(tick, true);
        let next = next_tick(SystemTime::now(), core.interval);
        let missed = next
            .duration_since(tick)
            .unwrap_or_default()
            .as_nanos()
            .saturating_div(core.interval.as_nanos().max(1))
            .saturating_sub(1) as u64;
        if missed > 0 {
            lock(&core.state).skipped += missed;
        }
        tick = next;
    }
}
