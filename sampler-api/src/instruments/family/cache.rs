//! Lookup by label values through a per-thread, direct-mapped cache.
//!
//! The cache has two ways in. The first is a hash of where the caller's strings are (pointer
//! and length): callers usually pass the same literals or long-lived strings, so it is cheap
//! and usually hits; it links to a line of the second way, keyed by a hash of the contents. A
//! hit is always confirmed by comparing contents, so a reused address can never mislead the
//! cache.
//!
//! Each content line holds a slot, and the thread's lease table names that slot for as long
//! as the line holds it (`lifecycle`): a removed series' slot is not freed while a line of any
//! thread may still hand it out. A lookup that cannot use its thread's cache (busy: a lookup
//! from inside a lookup; gone: the thread is exiting) pins instead.

use std::cell::RefCell;
use std::sync::atomic::Ordering::Acquire;

use super::table::OVERFLOW;
use super::FamilyInner;
use crate::labels::PackedValues;
use crate::lifecycle::{board, LeaseTable, Pin, SINK};

const CACHE_LINES: usize = 256;

/// A slot found by label values. The slot cannot be freed while this lives: keep it until the
/// record into the slot is done.
#[must_use]
pub(crate) struct Found {
    pub(crate) slot: u32,
    _pin: Option<Pin<'static>>,
}

/// A line keyed by the hash of the contents, owning a copy of them for confirmation.
struct CacheLine {
    family: u32,
    epoch: u32,
    entry: u32,
    slot: u32,
    values: Option<PackedValues>,
}

/// A line keyed by where the caller's strings are, linking to a content line.
#[derive(Clone, Copy)]
struct WhereLine {
    family: u32,
    epoch: u32,
    key: u64,
    link: u16,
}

struct Cache {
    lines: Box<[CacheLine]>,
    wheres: Box<[WhereLine]>,
    /// Lease `i` names the slot of content line `i`.
    leases: &'static LeaseTable,
}

impl Cache {
    fn new() -> Self {
        Cache {
            lines: (0..CACHE_LINES)
                .map(|_| CacheLine {
                    family: 0,
                    epoch: 0,
                    entry: 0,
                    slot: 0,
                    values: None,
                })
                .collect(),
            wheres: vec![
                WhereLine {
                    family: 0,
                    epoch: 0,
                    key: 0,
                    link: 0
                };
                CACHE_LINES
            ]
            .into(),
            leases: board().take_table(CACHE_LINES),
        }
    }

    /// The entry and slot of content line `i`, if it belongs to this family and epoch and holds
    /// exactly these values.
    #[inline(always)]
    fn confirm(&self, i: usize, family: u32, epoch: u32, values: &[&str]) -> Option<(u32, u32)> {
        let line = self.lines.get(i)?;
        if line.family == family && line.epoch == epoch {
            if let Some(p) = &line.values {
                if p.matches(values) {
                    return Some((line.entry, line.slot));
                }
            }
        }
        None
    }

    /// Drops the lines of `family` from before `epoch` (which no lookup can hit any more) and
    /// their leases, so that the slots of removed series can be freed.
    fn sweep(&mut self, family: u32, epoch: u32) {
        for (i, line) in self.lines.iter_mut().enumerate() {
            if line.family == family && line.epoch != epoch {
                line.family = 0;
                self.leases.clear(i);
            }
        }
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        // The thread is exiting and its cache is gone (lookups from here on pin instead), so
        // no line can hand out a slot any more.
        board().give_back(self.leases);
    }
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::new());
}

/// A hash of where the strings are, not what they hold (see the module docs).
#[inline(always)]
fn where_hash(values: &[&str]) -> u64 {
    let mut h = 0x243F_6A88_85A3_08D3u64;
    for v in values {
        h = (h ^ v.as_ptr() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h = (h ^ v.len() as u64).rotate_left(23);
    }
    h.wrapping_mul(0xBF58_476D_1CE4_E5B9)
}

#[inline(always)]
fn cache_index(family: u32, hash: u64) -> usize {
    ((hash ^ (family as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) >> 56) as usize % CACHE_LINES
}

impl FamilyInner {
    /// Finds or creates the series for `values` and returns its slot, reachable while the
    /// result lives.
    #[inline]
    pub(crate) fn lookup(&self, values: &[&str]) -> Found {
        let epoch = self.epoch.load(Acquire);
        let where_key = where_hash(values);
        let hit = CACHE
            .try_with(|c| {
                // A lookup from inside a lookup (a global allocator that records metrics, run
                // while a cache line is replaced) finds the cache busy and takes the slow path.
                let c = c.try_borrow().ok()?;
                let w = &c.wheres[cache_index(self.id, where_key)];
                if w.family == self.id && w.key == where_key && w.epoch == epoch {
                    return c.confirm(w.link as usize, self.id, epoch, values);
                }
                None
            })
            .ok()
            .flatten();
        match hit {
            Some(hit) => self.hit(hit),
            None => self.lookup_by_content(values, where_key, epoch),
        }
    }

    #[inline(always)]
    fn hit(&self, (entry, slot): (u32, u32)) -> Found {
        if entry == OVERFLOW {
            self.count_overflow();
        }
        Found { slot, _pin: None }
    }

    fn lookup_by_content(&self, values: &[&str], where_key: u64, epoch: u32) -> Found {
        if values.len() != self.keys.len() {
            // Never cached: each such lookup is counted, and records into the sink.
            self.wrong_count(values.len());
            return Found {
                slot: SINK,
                _pin: None,
            };
        }
        let hash = self.hash(values);
        let line = cache_index(self.id, hash);
        let hit = CACHE
            .try_with(|c| c.try_borrow().ok()?.confirm(line, self.id, epoch, values))
            .ok()
            .flatten();
        let found = match hit {
            Some(hit) => self.hit(hit),
            None => self.lookup_slow(values, hash, epoch),
        };
        let _ = CACHE.try_with(|c| {
            if let Ok(mut c) = c.try_borrow_mut() {
                c.wheres[cache_index(self.id, where_key)] = WhereLine {
                    family: self.id,
                    epoch,
                    key: where_key,
                    link: line as u16,
                };
            }
        });
        found
    }

    /// Looks `values` up in the table and fills the cache line; the line's lease is written
    /// while the table's lock is held (see `lifecycle`). Without a usable cache, pins.
    #[cold]
    #[inline(never)]
    fn lookup_slow(&self, values: &[&str], hash: u64, epoch: u32) -> Found {
        let i = cache_index(self.id, hash);
        let kind = self.kind();
        let mut old = None;
        let cached = CACHE
            .try_with(|c| {
                // Held until the line is filled: a lookup from inside this one (an allocator
                // recording metrics) finds the cache busy and pins, and never sees a line
                // whose lease names another slot.
                let mut c = c.try_borrow_mut().ok()?;
                let c = &mut *c;
                if c.lines[i].family == self.id && c.lines[i].epoch != epoch {
                    c.sweep(self.id, epoch);
                }
                // Out of use before its lease changes, even if what follows panics.
                c.lines[i].family = 0;
                let leases = c.leases;
                let (entry, slot, packed) =
                    self.find_or_insert(values, hash, |_, _, slot| leases.set(i, kind, slot));
                let line = CacheLine {
                    family: self.id,
                    epoch,
                    entry,
                    slot,
                    values: Some(packed.unwrap_or_else(|| PackedValues::new(values))),
                };
                old = Some(std::mem::replace(&mut c.lines[i], line));
                Some(slot)
            })
            .ok()
            .flatten();
        // The replaced line is dropped after the borrow ends: dropping its values may free
        // memory, and a global allocator may record metrics (see `lookup`).
        drop(old);
        match cached {
            Some(slot) => Found { slot, _pin: None },
            None => {
                let pin = board().pin();
                let (_, slot, _) = self.find_or_insert(values, hash, |_, _, _| {});
                Found {
                    slot,
                    _pin: Some(pin),
                }
            }
        }
    }
}
