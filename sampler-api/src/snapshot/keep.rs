//! How a snapshot borrows its families' label values instead of copying them.
//!
//! A family's harvest names each series' label values where the family table keeps them
//! (each distinct value once, as a `Text`): the block copies the table's value numbers and
//! the address of each numbered `Text`, not the values themselves, and holds an `Arc<Keep>`.
//! The values must then stay where they are for as long as any snapshot that names them
//! lives. The protocol:
//!
//! - **K1.** A family has one current `Keep` (its `Keeper`). A harvest of the family takes
//!   the current one for its block (`Keeper::for_harvest`); if something was buried in it
//!   since it was made, the harvest first makes a new current one and links the old one to it
//!   (`next`), so the old one keeps the new one alive.
//! - **K2.** Values leave a family table only by being buried in the current `Keep`: when
//!   the last series that names one is removed or expires (`FamilyInner::unlink`, under the
//!   table's write lock) and, for every value left, when the family is dropped.
//! - **K3.** A `Keep` frees what it holds only when it is dropped, that is when no snapshot
//!   (block) holds it and no older `Keep` links to it.
//!
//! Why a block's addresses stay valid: a block of harvest H names values that were in the
//! table at H (the harvest reads the table under its read lock, so no removal runs during
//! it). Each of them is still in the table, or was buried (K2) after H in the `Keep` current
//! at the time, which is the one harvest H took or one made later, linked from it (K1). The
//! block holds the one H took, so every value it names is alive (K3). Two harvests of one
//! family at once (two harvesters) both hold the read lock, so neither buries; the swap in
//! K1 is under the keeper's lock, so each links the one before it. (The block's copy also
//! holds the numbers of removed entries and the stale addresses of free numbers; no row names
//! them, so nothing reads them.)
//!
//! The cost: a family with no removals makes no `Keep` after its first; one with removals
//! makes at most one per harvest, and removed values live until the snapshots from before
//! their removal are gone. `tests` removes, expires and drops families while older snapshots
//! are read, and the slot-lifetime stress test (run under memcheck by `scripts/test.sh`) reads
//! every label of every snapshot while series are removed and expire.

use std::sync::{Arc, Mutex, OnceLock};

use crate::labels::Text;
use crate::local::lock;

/// Label values taken out of a family table, kept while a snapshot may name them (K3).
#[derive(Default)]
pub(crate) struct Keep {
    buried: Mutex<Vec<Text>>,
    /// The family's next `Keep`, made after this one had something buried (K1).
    next: OnceLock<Arc<Keep>>,
}

impl Drop for Keep {
    fn drop(&mut self) {
        // A chain of `Keep`s (an old snapshot held through many harvests with removals) is
        // dropped in a loop, not by recursion.
        let mut next = self.next.take();
        while let Some(k) = next {
            next = match Arc::try_unwrap(k) {
                Ok(mut k) => k.next.take(),
                Err(_) => None,
            };
        }
    }
}

/// A family's current `Keep`.
pub(crate) struct Keeper {
    current: Mutex<Arc<Keep>>,
}

impl Default for Keeper {
    fn default() -> Self {
        Keeper {
            current: Mutex::new(Arc::new(Keep::default())),
        }
    }
}

impl Keeper {
    /// The `Keep` a harvest's block holds (K1).
    pub(crate) fn for_harvest(&self) -> Arc<Keep> {
        let mut current = lock(&self.current);
        if !lock(&current.buried).is_empty() {
            let next = Arc::new(Keep::default());
            let _ = current.next.set(next.clone());
            *current = next;
        }
        current.clone()
    }

    /// Keeps `text`, just taken out of the family table, in the current `Keep` (K2).
    pub(crate) fn bury(&self, text: Text) {
        let current = lock(&self.current);
        lock(&current.buried).push(text);
    }

    /// How many values the current `Keep` holds: for tests.
    #[cfg(test)]
    pub(crate) fn buried_now(&self) -> usize {
        lock(&lock(&self.current).buried).len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{Descriptor, FamilyOptions, Harvester, Registry, Snapshot};

    static C: Descriptor = Descriptor::counter("keep.c", "1", "");

    fn labels_of(s: &Snapshot) -> Vec<String> {
        s.series()
            .map(|x| x.labels().iter().map(|(k, v)| format!("{k}={v}")).collect())
            .collect()
    }

    /// A snapshot reads the labels of series removed after it, of series removed after later
    /// snapshots that are gone, and of a family dropped after it (memcheck sees any read of
    /// freed memory: `scripts/test.sh` runs these tests under it).
    #[test]
    fn an_older_snapshot_reads_labels_removed_and_dropped_after_it() {
        let registry = Registry::new();
        let h = Harvester::builder()
            .registry(registry.clone())
            .self_metrics(false)
            .build();
        let f = registry.counter_family(&C, &["k"]);
        let names: Vec<String> = (0..50).map(|i| format!("value number {i}")).collect();
        for n in &names {
            f.inc(&[n]);
        }
        let first = h.harvest_now();
        let want = labels_of(&first);
        assert_eq!(want.len(), 50);
        for (i, n) in names.iter().enumerate() {
            assert!(f.remove(&[n]));
            if i % 7 == 0 {
                // Later snapshots come and go while values are buried.
                drop(h.harvest_now());
            }
            f.inc(&[&format!("new {i}")]);
        }
        let middle = h.harvest_now();
        assert_eq!(middle.len(), 50);
        drop(f);
        drop(h);
        drop(registry);
        assert_eq!(labels_of(&first), want);
        assert!(labels_of(&middle).iter().all(|l| l.starts_with("k=new ")));
    }

    /// The same for series that expire.
    #[test]
    fn an_older_snapshot_reads_labels_of_series_that_expired_since() {
        let registry = Registry::new();
        let h = Harvester::builder()
            .registry(registry.clone())
            .self_metrics(false)
            .interval(Duration::from_secs(1))
            .build();
        let f = registry.counter_family_with(
            &C,
            &["k"],
            FamilyOptions::default().expire_after(Duration::from_secs(1)),
        );
        f.inc(&["goes idle, then expires"]);
        let first = h.harvest_now();
        let mut expired = false;
        for _ in 0..10 {
            if h.harvest_now().is_empty() {
                expired = true;
                break;
            }
        }
        assert!(expired, "the idle series never expired");
        drop(h.harvest_now());
        assert_eq!(labels_of(&first), ["k=goes idle, then expires"]);
    }

    /// A new `Keep` only once something was buried in the current one; the old one links
    /// to it, and a long chain is dropped without recursion.
    #[test]
    fn keeps_are_made_when_needed_and_chained() {
        let keeper = Keeper::default();
        let a = keeper.for_harvest();
        assert!(
            Arc::ptr_eq(&a, &keeper.for_harvest()),
            "nothing buried: the same"
        );
        keeper.bury(Text::new("x"));
        assert_eq!(keeper.buried_now(), 1);
        let b = keeper.for_harvest();
        assert!(!Arc::ptr_eq(&a, &b));
        assert!(Arc::ptr_eq(a.next.get().expect("linked"), &b));
        assert_eq!(keeper.buried_now(), 0);
        for i in 0..100_000 {
            keeper.bury(Text::new(&i.to_string()));
            drop(keeper.for_harvest());
        }
        drop(keeper);
        drop(b);
        drop(a); // the head of a chain of 100,001
    }
}
