//! Idle expiry: a label set whose reading has not changed for the expiry time and that no
//! handle holds is removed.

use std::sync::atomic::Ordering::Acquire;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::table::Entry;
use super::FamilyInner;
use crate::local::lock;
use crate::snapshot::Value;

/// What idle expiry remembers of one entry between harvests.
#[derive(Clone, Copy, Default)]
pub(super) struct Idle {
    /// The series seen (its `Entry::born`; 0: none); another means the entry number was
    /// reused.
    born: u64,
    /// The reading seen last (a counter's total, a gauge's bits, a timing's count).
    last: u64,
    /// Harvests in a row without change.
    harvests: u32,
}

/// One harvest's expiry pass.
pub(super) struct Expiry<'a> {
    /// Harvests without change after which a series goes.
    limit: u32,
    idle: MutexGuard<'a, Vec<Idle>>,
}

impl<'a> Expiry<'a> {
    pub(super) fn new(idle: &'a Mutex<Vec<Idle>>, after: Duration, interval: Duration) -> Self {
        let interval = interval.max(Duration::from_millis(1));
        Expiry {
            limit: (after.as_nanos() / interval.as_nanos()).max(1) as u32,
            idle: lock(idle),
        }
    }

    /// Whether entry `e`, read as `value` in this harvest, has been idle long enough and no
    /// handle holds it (checked again under the write lock before it goes).
    pub(super) fn expired(&mut self, e: u32, entry: &Entry, value: &Value) -> bool {
        let key = value_key(value);
        if self.idle.len() <= e as usize {
            self.idle.resize(e as usize + 1, Idle::default());
        }
        let st = &mut self.idle[e as usize];
        if st.born != entry.born || st.last != key {
            *st = Idle {
                born: entry.born,
                last: key,
                harvests: 0,
            };
            return false;
        }
        st.harvests += 1;
        st.harvests >= self.limit && entry.handles.load(Acquire) == 0
    }
}

fn value_key(v: &Value) -> u64 {
    match v {
        Value::Counter(c) => *c,
        Value::Gauge(g) => g.to_bits(),
        Value::Timing(d) => d.count(),
    }
}

impl FamilyInner {
    /// Removes the `expired` series (entry number and `born`) that are still there and that
    /// still no handle holds.
    pub(super) fn expire(&self, expired: Vec<(u32, u64)>) {
        let mut t = self.write();
        for (e, born) in expired {
            // Check again under the write lock: a handle may have been taken meanwhile, or
            // the series removed (and its entry number reused by another).
            let entry = t.entry(e);
            if entry.born == born && entry.handles.load(Acquire) == 0 {
                let hash = t.hash_entry(e);
                self.unlink(&mut t, e, hash);
            }
        }
    }
}
