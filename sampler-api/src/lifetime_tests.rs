//! Slot lifetimes (issue 9, S1–S4): a recording thread is stopped at a window of the slot
//! lifecycle (`hooks`) while another thread removes its series, harvests, and makes new series
//! that may reuse the slot; then the recorder goes on. Every increment must stay in its own
//! series (or be lost with it, when it raced the removal), never show up in another one.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::hooks::{self, Point};
use crate::{Counter, Descriptor, FamilyOptions, Gauge, Harvester, Registry, Timing, Value};

static A: Descriptor = Descriptor::counter("life.a", "1", "");
static B: Descriptor = Descriptor::counter("life.b", "1", "");
static GA: Descriptor = Descriptor::gauge("life.ga", "1", "");
static GB: Descriptor = Descriptor::gauge("life.gb", "1", "");
static TA: Descriptor = Descriptor::timing("life.ta", "s", "");
static TB: Descriptor = Descriptor::timing("life.tb", "s", "");

/// These tests watch freed slots being handed out again: one at a time, so that they do not
/// take each other's freed slots.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A thread stopped at a hook point.
struct Stopped<T> {
    paused: Receiver<()>,
    go: Sender<()>,
    thread: Option<JoinHandle<T>>,
}

impl<T> Stopped<T> {
    /// Waits until the thread stands at the hook point.
    fn wait(&self) {
        self.paused
            .recv_timeout(Duration::from_secs(20))
            .expect("the recording thread reached the hook point");
    }

    /// Lets the thread go on and waits for it to finish.
    fn finish(mut self) -> T {
        let _ = self.go.send(());
        match self.thread.take().unwrap().join() {
            Ok(t) => t,
            Err(e) => std::panic::resume_unwind(e),
        }
    }
}

/// Runs `f` on a new thread that stops the `nth` time (from 1) it passes `point`.
fn stop_at<T: Send + 'static>(
    point: Point,
    nth: usize,
    f: impl FnOnce() -> T + Send + 'static,
) -> Stopped<T> {
    stop_at_with(point, nth, true, f)
}

/// [`stop_at`], with the hook left in place for the thread's exit (thread-local destructors).
fn stop_at_keeping_the_hook(
    point: Point,
    nth: usize,
    f: impl FnOnce() + Send + 'static,
) -> Stopped<()> {
    stop_at_with(point, nth, false, f)
}

fn stop_at_with<T: Send + 'static>(
    point: Point,
    nth: usize,
    clear: bool,
    f: impl FnOnce() -> T + Send + 'static,
) -> Stopped<T> {
    let (paused_tx, paused) = channel();
    let (go, go_rx) = channel::<()>();
    let thread = std::thread::spawn(move || {
        let mut seen = 0;
        hooks::set(move |p| {
            if p == point {
                seen += 1;
                if seen == nth {
                    let _ = paused_tx.send(());
                    let _ = go_rx.recv();
                }
            }
        });
        let out = f();
        if clear {
            hooks::clear();
        }
        out
    });
    Stopped {
        paused,
        go,
        thread: Some(thread),
    }
}

fn harvester(registry: Registry) -> Harvester {
    Harvester::builder()
        .registry(registry)
        .self_metrics(false)
        .build()
}

fn harvest_times(h: &Harvester, n: usize) {
    for _ in 0..n {
        h.harvest_now();
    }
}

/// Label values "0" … "15".
fn values() -> Vec<String> {
    (0..16).map(|i| i.to_string()).collect()
}

/// Two families of one kind made by `make`: `a`, where the recorder records, and `b`, whose
/// series nobody records into (a stray record shows there); and a harvester of both.
fn two_families<F>(
    make: impl Fn(&Registry, &'static Descriptor) -> F,
    a: &'static Descriptor,
    b: &'static Descriptor,
) -> (F, F, Harvester) {
    let registry = Registry::new();
    let (a, b) = (make(&registry, a), make(&registry, b));
    (a, b, harvester(registry))
}

/// The race every S1 test stages: `recorder` runs on a thread that stops at its `nth` pass of
/// `point`; meanwhile `meanwhile` takes its series away (remove or expiry, then harvests, so
/// that the slot may be freed), and `make_b` makes the series that may reuse the slot. Then
/// the recorder goes on. Returns what `make_b` made, for [`assert_untouched`].
fn race<T>(
    recorder: Stopped<()>,
    meanwhile: impl FnOnce(),
    make_b: impl FnOnce() -> Vec<T>,
) -> Vec<T> {
    recorder.wait();
    meanwhile();
    let bs = make_b();
    recorder.finish();
    bs
}

/// What `meanwhile` usually does: x was removed (it must have been: the recorder holds no
/// handle), then three harvests run, after which its slot may be freed and reused.
fn removed_then_harvested(removed: bool, h: &Harvester) {
    assert!(removed, "x, which no handle holds, was not removed");
    harvest_times(h, 3);
}

/// One series of family b per label value of [`values`], made with `get`.
fn made_in_b<T>(get: impl Fn(&[&str]) -> T) -> Vec<T> {
    values().iter().map(|v| get(&[v.as_str()])).collect()
}

/// Every one of `bs` reads `empty`, or the test fails naming the series and `what` happened.
fn assert_untouched<T, V: PartialEq + std::fmt::Debug>(
    bs: &[T],
    read: impl Fn(&T) -> V,
    empty: V,
    what: &str,
) {
    for (i, b) in bs.iter().enumerate() {
        assert_eq!(read(b), empty, "series {i} of family b {what}");
    }
}

#[test]
fn s1_counter_add_by_values_never_lands_in_another_series() {
    let _serial = serial();
    // Once through the cache-filling slow path, once through a cache hit.
    for nth in [1, 2] {
        let (a, b, h) = two_families(|r, d| r.counter_family(d, &["k"]), &A, &B);
        let a2 = a.clone();
        let recorder = stop_at(Point::AfterLookup, nth, move || {
            for _ in 0..nth {
                a2.inc(&["x"]);
            }
        });
        let bs = race(
            recorder,
            || removed_then_harvested(a.remove(&["x"]), &h),
            || made_in_b(|v| b.get(v)),
        );
        assert_untouched(
            &bs,
            Counter::value,
            0,
            &format!(
                "(record {nth}), which nobody increments, holds an increment made to the \
                 removed series x of family a"
            ),
        );
    }
}

#[test]
fn s1_counter_add_by_values_never_lands_in_another_series_after_expiry() {
    let _serial = serial();
    let registry = Registry::new();
    let expiring = FamilyOptions::default().expire_after(Duration::from_nanos(1));
    let a = registry.counter_family_with(&A, &["k"], expiring);
    let b = registry.counter_family(&B, &["k"]);
    let h = harvester(registry);
    let a2 = a.clone();
    let recorder = stop_at(Point::AfterLookup, 2, move || {
        a2.inc(&["x"]);
        a2.inc(&["x"]);
    });
    let bs = race(
        recorder,
        // x does not change while the recorder stands still: it expires, then its slot may go.
        || harvest_times(&h, 5),
        || made_in_b(|v| b.get(v)),
    );
    assert_untouched(
        &bs,
        Counter::value,
        0,
        "holds an increment made to the expired series x of a",
    );
}

#[test]
fn s1_gauge_set_by_values_never_lands_in_another_series() {
    let _serial = serial();
    let (a, b, h) = two_families(|r, d| r.gauge_family(d, &["k"]), &GA, &GB);
    let a2 = a.clone();
    let recorder = stop_at(Point::AfterLookup, 2, move || {
        a2.set(&["x"], 1.0);
        a2.set(&["x"], 42.0);
    });
    let bs = race(
        recorder,
        || removed_then_harvested(a.remove(&["x"]), &h),
        || made_in_b(|v| b.get(v)),
    );
    assert_untouched(
        &bs,
        Gauge::value,
        0.0,
        "(a gauge family) holds a value set on the removed series x of a",
    );
}

#[test]
fn s1_timing_record_by_values_never_lands_in_another_series() {
    let _serial = serial();
    let (a, b, h) = two_families(|r, d| r.timing_family(d, &["k"]), &TA, &TB);
    let a2 = a.clone();
    let recorder = stop_at(Point::AfterLookup, 2, move || {
        a2.record(&["x"], 0.5);
        a2.record(&["x"], 0.5);
    });
    let bs = race(
        recorder,
        || removed_then_harvested(a.remove(&["x"]), &h),
        || made_in_b(|v| b.get(v)),
    );
    assert_untouched(
        &bs,
        |t| t.distribution().count(),
        0,
        "(a timing family) holds a record made to the removed series x of a",
    );
}

#[test]
fn s1_timing_record_never_writes_a_freed_histogram() {
    let _serial = serial();
    let (a, b, h) = two_families(|r, d| r.timing_family(d, &["k"]), &TA, &TB);
    let a2 = a.clone();
    // The first record makes this thread's histogram (slow path); the second loads it and stops
    // right before writing into it.
    let recorder = stop_at(Point::TimingAfterHistLoad, 1, move || {
        a2.record(&["x"], 0.5);
        a2.record(&["x"], 0.5);
    });
    let bs = race(
        recorder,
        || removed_then_harvested(a.remove(&["x"]), &h),
        || {
            // New series record once each on this thread: their histograms are allocated now,
            // where the allocator may put them in the memory of the one just freed.
            let bs = made_in_b(|v| b.get(v));
            for t in &bs {
                t.record(0.25);
            }
            bs
        },
    );
    assert_untouched(
        &bs,
        |t| t.distribution().count(),
        1,
        "(a timing family) was written through a freed histogram of a",
    );
}

#[test]
fn s2_a_handle_is_never_left_on_a_removed_entry() {
    let _serial = serial();
    let registry = Registry::new();
    let a = registry.counter_family(&A, &["k"]);
    let h = harvester(registry);
    let a2 = a.clone();
    // `get` stops between finding the entry and holding it.
    let rec = stop_at(Point::HandleAfterLookup, 1, move || a2.get(&["x"]));
    rec.wait();
    // Either the removal sees the handle and fails, or it wins and the handle must not end on
    // a removed entry; both are fine, as long as what follows holds.
    let _ = a.remove(&["x"]);
    harvest_times(&h, 3);
    let z = a.get(&["z"]);
    let x = rec.finish();
    x.inc();
    assert_eq!(
        z.value(),
        0,
        "an increment through the handle to x landed in series z (x's entry and slot reused)"
    );
    drop(x);
    drop(z);
    assert!(
        a.remove(&["z"]),
        "no handle to z is alive, yet z cannot be removed (its handle count was taken by x's)"
    );
}

#[test]
fn s3_the_overflow_series_never_borrows_a_slot_that_can_be_freed() {
    let _serial = serial();
    let (a, b, h) = two_families(
        |r, d| r.counter_family_with(d, &["k"], FamilyOptions::default().limit(1)),
        &A,
        &B,
    );
    a.inc(&["x"]); // x takes the family's one place
                   // No slot left anywhere for the overflow series: `y` overflows.
    hooks::set_slots_exhausted(true);
    let y = a.get(&["y"]);
    hooks::set_slots_exhausted(false);
    assert!(a.remove(&["x"]));
    harvest_times(&h, 3);
    let bs = made_in_b(|v| b.get(v));
    y.inc();
    assert_untouched(
        &bs,
        Counter::value,
        0,
        "holds an increment made to a's overflow series",
    );
}

#[test]
fn s3_overflow_records_never_land_in_another_series() {
    let _serial = serial();
    let registry = Registry::new();
    let a = registry.counter_family_with(&A, &["k"], FamilyOptions::default().limit(1));
    let h = harvester(registry);
    a.inc(&["x"]);
    hooks::set_slots_exhausted(true);
    let y = a.get(&["y"]);
    a.inc(&["w"]);
    hooks::set_slots_exhausted(false);
    y.inc();
    let snap = h.harvest_now();
    assert_eq!(
        snap.find("life.a", &[("k", "x")]).unwrap().value(),
        Value::Counter(1),
        "x holds increments made to label sets past the limit"
    );
}

#[test]
fn s4_a_reused_timing_slot_at_another_scale_is_written_in_bounds() {
    let _serial = serial();
    let registry = Registry::new();
    // a at the finest scale, b at the coarsest: a position found at a's scale lies far past
    // the end of a bucket group of b's.
    let a = registry.timing_family_with(&TA, &["k"], FamilyOptions::default().scale(8));
    let b = registry.timing_family_with(&TB, &["k"], FamilyOptions::default().scale(0));
    let h = harvester(registry);
    let a2 = a.clone();
    let (made_tx, made_rx) = channel::<Vec<Timing>>();
    let (b_tx, b_rx) = channel::<Vec<Timing>>();
    // The recorder stops after its lookup in a; meanwhile x goes, its slot is reused by b, and
    // (from inside the hook, on the recorder's own thread) b's series are recorded, so the
    // recorder's histogram of that slot is now one of b's scale.
    let rec = std::thread::spawn(move || {
        let (paused_tx, go_rx) = (made_tx, b_rx);
        let mut seen = 0;
        hooks::set(move |p| {
            if p == Point::AfterLookup {
                seen += 1;
                if seen == 2 {
                    let _ = paused_tx.send(Vec::new());
                    if let Ok(bs) = go_rx.recv() {
                        for t in &bs {
                            t.record(1e10);
                        }
                    }
                }
            }
        });
        a2.record(&["x"], 1e10);
        a2.record(&["x"], 1e10);
        hooks::clear();
    });
    made_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the recorder reached the hook point");
    assert!(a.remove(&["x"]));
    harvest_times(&h, 3);
    let bs: Vec<Timing> = values().iter().map(|v| b.get(&[v])).collect();
    b_tx.send(bs.clone()).unwrap();
    if let Err(e) = rec.join() {
        std::panic::resume_unwind(e);
    }
    for (i, t) in bs.iter().enumerate() {
        let d = t.distribution();
        assert_eq!(
            (d.count(), d.max()),
            (1, 1e10),
            "series {i} of b (scale 0) holds a record of a (scale 8)"
        );
    }
}

#[test]
fn a_removed_series_slot_is_freed_once_no_thread_can_reach_it() {
    let _serial = serial();
    let registry = Registry::new();
    let a = registry.counter_family(&A, &["k"]);
    let h = harvester(registry);
    let a2 = a.clone();
    let (tx, rx) = channel::<&'static str>();
    let (back_tx, back_rx) = channel::<()>();
    // A recorder that lives on, and looks up in the family again later.
    let rec = std::thread::spawn(move || {
        while let Ok(v) = rx.recv() {
            a2.inc(&[v]);
            back_tx.send(()).unwrap();
        }
    });
    let record = |v| {
        tx.send(v).unwrap();
        back_rx.recv().unwrap();
    };
    record("x");
    assert!(a.remove(&["x"]));
    harvest_times(&h, 3);
    assert_eq!(
        a.retired(),
        1,
        "the recorder's cache line still leases the slot"
    );
    // Its next lookup in the family sees the removal and drops the stale line's lease.
    record("x");
    h.harvest_now();
    assert_eq!(a.retired(), 0, "freed once the stale line is gone");
    // And a thread that exits gives back every lease.
    assert!(a.remove(&["x"]));
    h.harvest_now();
    assert_eq!(a.retired(), 1);
    drop(tx);
    rec.join().unwrap();
    h.harvest_now();
    assert_eq!(a.retired(), 0, "freed once the recorder has exited");
}

#[test]
fn s1_a_record_by_values_from_an_exiting_thread_is_pinned() {
    let _serial = serial();
    // A thread-local destructor records by values after the thread's lookup cache is gone:
    // its lookup is not covered by a cache line, so it pins.
    struct Late(crate::CounterFamily);
    impl Drop for Late {
        fn drop(&mut self) {
            self.0.inc(&["x"]);
            self.0.inc(&["x"]);
        }
    }
    thread_local! {
        static LATE: std::cell::RefCell<Option<Late>> = const { std::cell::RefCell::new(None) };
    }
    let (a, b, h) = two_families(|r, d| r.counter_family(d, &["k"]), &A, &B);
    let a2 = a.clone();
    // Destructors run in reverse order of registration: the hook first (lives longest), then
    // `LATE`, then the cache (made by the first lookup, so destroyed before `LATE`).
    let recorder = stop_at_keeping_the_hook(Point::AfterLookup, 2, move || {
        LATE.with(|l| *l.borrow_mut() = Some(Late(a2.clone())));
        a2.inc(&["y"]);
    });
    let bs = race(
        recorder,
        || {
            assert!(a.remove(&["x"]));
            harvest_times(&h, 3);
            assert_eq!(a.retired(), 1, "a pinned lookup is in flight");
        },
        || made_in_b(|v| b.get(v)),
    );
    assert_untouched(
        &bs,
        Counter::value,
        0,
        "holds an increment made by an exiting thread to x",
    );
    h.harvest_now();
    assert_eq!(a.retired(), 0);
}

#[test]
fn i6_a_dropped_family_leaves_no_lease_on_its_slots() {
    let _serial = serial();
    // A thread that looked x up keeps a cache line leasing x's slot; the family is then
    // dropped, which frees the slot while the thread lives on. Its line never hits again, and
    // its lease must not stay to name the series that gets the number next (whose removal it
    // would hold up for as long as the line stays in that cache).
    let registry = Registry::new();
    let a = registry.counter_family(&A, &["k"]);
    let (report, reports) = channel::<Vec<u32>>();
    let (go, go_rx) = channel::<()>();
    let a2 = a.clone();
    let thread = std::thread::spawn(move || {
        a2.inc(&["x"]);
        drop(a2);
        report
            .send(crate::instruments::leased_here(crate::Kind::Counter))
            .unwrap();
        go_rx.recv().unwrap();
        report
            .send(crate::instruments::leased_here(crate::Kind::Counter))
            .unwrap();
    });
    let before = reports.recv().unwrap();
    assert_eq!(before.len(), 1, "the thread's line for x leases its slot");
    drop(a);
    drop(registry);
    go.send(()).unwrap();
    let after = reports.recv().unwrap();
    thread.join().unwrap();
    assert_eq!(
        after,
        Vec::<u32>::new(),
        "a lease of the dropped family's slot {before:?} outlived the family"
    );
}
