//! The sequence lock that guards a timing's words (`spec/shm.md`, "Consistency").
//!
//! The sequence word is even while the fields are at rest and odd while a writer changes them.
//! A writer takes it from even to odd with a compare-and-swap (so two threads of one process
//! never write at once), changes the fields, and releases it to the next even number. A reader
//! reads the word, the fields, and the word again; the copy is whole only if both reads gave
//! the same even number. Fields are atomic words, so no access is a data race, and the fences
//! make a reader that saw any store of a write also see the odd sequence of that write.
//!
//! Under `--cfg loom` this module runs on loom's atomics, and the model at the end explores
//! every interleaving of a writer and a reader (`RUSTFLAGS="--cfg loom" cargo test -p
//! sampler-adapter-shm --lib --release seqlock`).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU64};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU64};

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

fn spin() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}

/// Runs `write` with the sequence word odd; returns what it returns. Waits (spinning, no
/// syscall) while another thread of the process holds it.
#[inline]
pub(crate) fn write<T>(seq: &AtomicU64, write: impl FnOnce() -> T) -> T {
    let mut s = seq.load(Relaxed);
    loop {
        if s & 1 == 0 {
            match seq.compare_exchange_weak(s, s.wrapping_add(1), Acquire, Relaxed) {
                Ok(_) => break,
                Err(now) => s = now,
            }
        } else {
            spin();
            s = seq.load(Relaxed);
        }
    }
    // The odd sequence is ordered before every field store below.
    fence(Release);
    let out = write();
    seq.store(s.wrapping_add(2), Release);
    out
}

/// Runs `read` until it ran while no write was under way, at most `tries` times; `None` when
/// every try overlapped a write (or the sequence stayed odd: a writer died mid-write).
#[inline]
pub(crate) fn read<T>(seq: &AtomicU64, tries: u32, mut read: impl FnMut() -> T) -> Option<T> {
    for _ in 0..tries {
        let s1 = seq.load(Acquire);
        if s1 & 1 == 1 {
            spin();
            continue;
        }
        let out = read();
        // Every field load above is ordered before the second load of the sequence.
        fence(Acquire);
        let s2 = seq.load(Relaxed);
        if s1 == s2 {
            return Some(out);
        }
    }
    None
}

#[cfg(all(test, loom))]
mod loom_model {
    use super::*;
    use loom::sync::Arc;

    /// Two fields kept equal by every write: a reader that ever returns a copy must see them
    /// equal (a torn copy would show one field of one write and one of another). Two writers
    /// contend for the sequence word, as two threads of one process would.
    /// Two fields kept equal by every write: a reader that ever returns a copy must see them
    /// equal (a torn copy would show one field of one write and one of another). Two writers
    /// contend for the sequence word, as two threads of one process would.
    #[test]
    fn seqlock_reader_never_sees_a_torn_write() {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.check(|| {
            let cells = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
            let c = cells.clone();
            let reader = loom::thread::spawn(move || {
                read(&c[0], 2, || (c[1].load(Relaxed), c[2].load(Relaxed)))
            });
            let writers: Vec<_> = (0..2)
                .map(|_| {
                    let c = cells.clone();
                    loom::thread::spawn(move || {
                        write(&c[0], || {
                            let a = c[1].load(Relaxed);
                            c[1].store(a + 1, Relaxed);
                            let b = c[2].load(Relaxed);
                            c[2].store(b + 1, Relaxed);
                        });
                    })
                })
                .collect();
            if let Some((a, b)) = reader.join().unwrap() {
                assert_eq!(a, b, "torn read");
            }
            for w in writers {
                w.join().unwrap();
            }
            // Writers exclude each other: no increment is lost.
            let done = read(&cells[0], 1, || {
                (cells[1].load(Relaxed), cells[2].load(Relaxed))
            });
            assert_eq!(done, Some((2, 2)));
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Many threads write the same pair under the lock while readers check every copy; a stress
    /// companion to the loom model (it also runs under valgrind, see the crate's tests).
    #[test]
    fn seqlock_stress_no_torn_copy_no_lost_write() {
        let cells = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (c, stop) = (cells.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut seen = 0u64;
                    while !stop.load(Relaxed) {
                        if let Some((a, b)) =
                            read(&c[0], 64, || (c[1].load(Relaxed), c[2].load(Relaxed)))
                        {
                            assert_eq!(a, b, "torn read");
                            assert!(a >= seen, "went backwards");
                            seen = a;
                        }
                    }
                })
            })
            .collect();
        let writers: Vec<_> = (0..3)
            .map(|_| {
                let c = cells.clone();
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        write(&c[0], || {
                            c[1].store(c[1].load(Relaxed) + 1, Relaxed);
                            c[2].store(c[2].load(Relaxed) + 1, Relaxed);
                        });
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        stop.store(true, Relaxed);
        for r in readers {
            r.join().unwrap();
        }
        assert_eq!(cells[1].load(Relaxed), 60_000);
        assert_eq!(cells[2].load(Relaxed), 60_000);
    }
}
