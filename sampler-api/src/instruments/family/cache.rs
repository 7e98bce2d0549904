//! Lookup by label values through a per-thread, 4-way set-associative cache.
//!
//! A cache starts with 256 lines and grows (up to 32,768 lines) when it keeps missing series
//! it had already found in a family table, at once to twice the series of the largest family
//! it missed in: a thread that looks up 10,000 label sets in no order then finds each in
//! its own cache, writing no memory another thread reads. Series being created never grow it.
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

/// Lines of a new cache, and of every grown one at most. A set holds `WAYS` lines.
const MIN_LINES: usize = 256;
const MAX_LINES: usize = 32 * 1024;
const WAYS: usize = 4;

/// A slot found by label values. The slot cannot be freed while this lives: keep it until the
/// record into the slot is done.
#[must_use]
pub(crate) struct Found {
    pub(crate) slot: u32,
    _pin: Option<Pin<'static>>,
}

/// A line keyed by the hash of the contents, owning a copy of them for confirmation (a clone of
/// the entry's values: one allocation per series, whatever the number of threads).
struct CacheLine {
    family: u32,
    epoch: u32,
    entry: u32,
    slot: u32,
    values: Option<PackedValues>,
}

const EMPTY_LINE: CacheLine = CacheLine {
    family: 0,
    epoch: 0,
    entry: 0,
    slot: 0,
    values: None,
};

/// A line keyed by where the caller's strings are, linking to a content line. It needs no
/// epoch: the content line it links to is always confirmed.
#[derive(Clone, Copy)]
struct WhereLine {
    key: u64,
    family: u32,
    link: u32,
}

struct Cache {
    lines: Box<[CacheLine]>,
    wheres: Box<[WhereLine]>,
    /// Lease `i` names the slot of content line `i`.
    leases: &'static LeaseTable,
    /// Sets less one (a power of two less one), for both kinds of line.
    mask: usize,
    /// Lookups since the cache was made (or grew) that found their series in the table but not
    /// here: the cache is too small for what this thread looks up.
    misses: usize,
    /// Lines this thread's largest family would need (twice its series).
    want: usize,
    /// Which way of a full set the next line replaces.
    clock: usize,
}

impl Cache {
    fn new(lines: usize) -> Self {
        Cache {
            lines: (0..lines).map(|_| EMPTY_LINE).collect(),
            wheres: vec![
                WhereLine {
                    key: 0,
                    family: 0,
                    link: 0
                };
                lines
            ]
            .into(),
            leases: board().take_table(lines),
            mask: lines / WAYS - 1,
            misses: 0,
            want: 0,
            clock: 0,
        }
    }

    /// The first line of the set for `hash` in `family`.
    #[inline(always)]
    fn set(&self, family: u32, hash: u64) -> usize {
        (((hash ^ (family as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) >> 40) as usize & self.mask)
            * WAYS
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

    /// The content line of `family` at `epoch` holding `values`, in the set for `hash`.
    #[inline]
    fn find(
        &self,
        family: u32,
        epoch: u32,
        hash: u64,
        values: &[&str],
    ) -> Option<(usize, (u32, u32))> {
        let set = self.set(family, hash);
        (set..set + WAYS).find_map(|i| Some((i, self.confirm(i, family, epoch, values)?)))
    }

    /// Makes the where-line for `key` link to content line `link`.
    fn link(&mut self, family: u32, key: u64, link: usize) {
        let set = self.set(family, key);
        let ways = &mut self.wheres[set..set + WAYS];
        let way = ways
            .iter()
            .position(|w| w.key == key && w.family == family)
            .or_else(|| ways.iter().position(|w| w.family == 0))
            .unwrap_or_else(|| {
                self.clock = self.clock.wrapping_add(1);
                self.clock % WAYS
            });
        self.wheres[set + way] = WhereLine {
            key,
            family,
            link: link as u32,
        };
    }

    /// The content line a new series of `family` takes in the set for `hash`: a free one, else
    /// the next of the set in turn.
    fn victim(&mut self, family: u32, hash: u64) -> usize {
        let set = self.set(family, hash);
        if let Some(w) = self.lines[set..set + WAYS]
            .iter()
            .position(|l| l.family == 0)
        {
            return set + w;
        }
        self.clock = self.clock.wrapping_add(1);
        set + self.clock % WAYS
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
        // The cache is gone (the thread is exiting: lookups from here on pin; or a larger one
        // replaces it), so no line of it can hand out a slot any more.
        board().give_back(self.leases);
    }
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::new(MIN_LINES));
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
                let set = c.set(self.id, where_key);
                let w = c.wheres[set..set + WAYS]
                    .iter()
                    .find(|w| w.key == where_key && w.family == self.id)?;
                c.confirm(w.link as usize, self.id, epoch, values)
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
        let hit = CACHE
            .try_with(|c| c.try_borrow().ok()?.find(self.id, epoch, hash, values))
            .ok()
            .flatten();
        let (line, found) = match hit {
            Some((line, hit)) => (Some(line), self.hit(hit)),
            None => self.lookup_slow(values, hash, epoch),
        };
        if let Some(line) = line {
            let _ = CACHE.try_with(|c| {
                if let Ok(mut c) = c.try_borrow_mut() {
                    c.link(self.id, where_key, line);
                }
            });
        }
        found
    }

    /// Looks `values` up in the table and fills a cache line (returned with the slot); the
    /// line's lease is written while the table's lock is held (see `lifecycle`). Without a
    /// usable cache, pins. A cache that keeps missing series it had seen grows, to twice the
    /// largest family it missed in (at most `MAX_LINES`).
    #[cold]
    #[inline(never)]
    fn lookup_slow(&self, values: &[&str], hash: u64, epoch: u32) -> (Option<usize>, Found) {
        let kind = self.kind();
        let mut old = None;
        let mut old_cache = None;
        let cached = CACHE
            .try_with(|c| {
                // Held until the line is filled: a lookup from inside this one (an allocator
                // recording metrics) finds the cache busy and pins, and never sees a line
                // whose lease names another slot.
                let mut c = c.try_borrow_mut().ok()?;
                let lines = c.lines.len();
                let want = c.want.next_power_of_two().min(MAX_LINES);
                if c.misses >= lines / 2 && lines < want {
                    // The old cache's leases are given back when it is dropped, after the
                    // borrow: none of its lines hands out a slot after this.
                    let mut grown = Cache::new(want);
                    grown.want = c.want;
                    old_cache = Some(std::mem::replace(&mut *c, grown));
                }
                let c = &mut *c;
                // A line of this family from before a removal, in the set these values map to
                // (where their own stale line would be): sweep them all, so that the leases of
                // removed series go.
                let set = c.set(self.id, hash);
                if c.lines[set..set + WAYS]
                    .iter()
                    .any(|l| l.family == self.id && l.epoch != epoch)
                {
                    c.sweep(self.id, epoch);
                }
                let i = c.victim(self.id, hash);
                // Out of use before its lease changes, even if what follows panics.
                c.lines[i].family = 0;
                let leases = c.leases;
                let mut live = 0;
                let (entry, slot, packed, created) =
                    self.find_or_insert(values, hash, |t, _, slot| {
                        leases.set(i, kind, slot);
                        live = t.live;
                    });
                if !created {
                    c.misses += 1;
                    c.want = c.want.max(live.saturating_mul(2));
                }
                let line = CacheLine {
                    family: self.id,
                    epoch,
                    entry,
                    slot,
                    values: Some(packed.unwrap_or_else(|| PackedValues::new(values))),
                };
                old = Some(std::mem::replace(&mut c.lines[i], line));
                Some((i, slot))
            })
            .ok()
            .flatten();
        // The replaced line (and cache) are dropped after the borrow ends: dropping their
        // values may free memory, and a global allocator may record metrics (see `lookup`).
        drop(old);
        drop(old_cache);
        match cached {
            Some((i, slot)) => (Some(i), Found { slot, _pin: None }),
            None => {
                let pin = board().pin();
                let (_, slot, _, _) = self.find_or_insert(values, hash, |_, _, _| {});
                (
                    None,
                    Found {
                        slot,
                        _pin: Some(pin),
                    },
                )
            }
        }
    }
}
