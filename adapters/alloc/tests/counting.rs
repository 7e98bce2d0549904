//! The counting allocator installed as this test program's global allocator.

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::Duration;

use sampler_adapter_alloc::{is_counting, Account, CountingAllocator, Tracked};
use sampler_api::{Descriptor, Harvester, Registry, Value};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator::system();

#[test]
fn r16_installed_allocator_is_detected() {
    assert!(is_counting());
}

#[test]
fn r16_counts_exact_sizes_and_peak() {
    let account = Account::new();
    {
        let _scope = account.enter();
        let a: Vec<u8> = black_box(Vec::with_capacity(10_000));
        let b: Vec<u8> = black_box(Vec::with_capacity(5_000));
        drop(a);
        let c: Vec<u8> = black_box(Vec::with_capacity(1_000));
        drop((b, c));
    }
    assert_eq!(account.allocated(), 16_000);
    assert_eq!(account.peak(), 15_000);
    assert_eq!(account.live(), 0);

    // A realloc frees the old size and allocates the new one.
    let grown = Account::new();
    let v = {
        let _scope = grown.enter();
        let mut v: Vec<u8> = Vec::with_capacity(100);
        v.reserve_exact(400); // capacity 100 -> 400: realloc(100 -> 400)
        black_box(v)
    };
    assert_eq!(v.capacity(), 400);
    assert_eq!(grown.allocated(), 500);
    assert_eq!(grown.peak(), 400);
    assert_eq!(grown.live(), 400, "the vector is still alive here");
    drop(v);
}

#[test]
fn r16_frees_of_outside_memory_do_not_underflow() {
    let outside: Vec<u8> = black_box(vec![7u8; 50_000]);
    let account = Account::new();
    {
        let _scope = account.enter();
        drop(outside); // freed here, allocated elsewhere
        let mine: Vec<u8> = black_box(Vec::with_capacity(300));
        drop(mine);
    }
    assert_eq!(account.live(), 0);
    assert_eq!(account.allocated(), 300);
    assert_eq!(account.peak(), 300);
}

#[test]
fn r16_inner_scope_pauses_the_outer_one() {
    let outer = Account::new();
    let inner = Account::new();
    let kept;
    {
        let _o = outer.enter();
        let a: Vec<u8> = black_box(Vec::with_capacity(1_000));
        {
            let _i = inner.enter();
            kept = black_box(Vec::<u8>::with_capacity(2_000));
        }
        let b: Vec<u8> = black_box(Vec::with_capacity(3_000));
        drop((a, b));
    }
    assert_eq!(outer.allocated(), 4_000);
    assert_eq!(outer.peak(), 4_000);
    assert_eq!(inner.allocated(), 2_000);
    assert_eq!(inner.live(), 2_000);
    drop(kept);
}

/// A future that allocates `sizes[i]` bytes (and keeps them) at its i-th poll, noting the
/// thread of each poll.
struct Steps {
    sizes: Vec<usize>,
    next: usize,
    kept: Vec<Vec<u8>>,
    threads: Vec<thread::ThreadId>,
}

impl Future for Steps {
    type Output = (Vec<thread::ThreadId>, usize);
    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let size = this.sizes[this.next];
        this.kept.push(black_box(Vec::with_capacity(size)));
        this.threads.push(thread::current().id());
        this.next += 1;
        if this.next < this.sizes.len() {
            Poll::Pending
        } else {
            let total = this.kept.iter().map(Vec::capacity).sum();
            this.kept.clear();
            Poll::Ready((std::mem::take(&mut this.threads), total))
        }
    }
}

#[test]
fn r16_tracked_future_is_counted_across_threads() {
    // The future is polled once on each of four threads; between polls each thread also
    // allocates on its own, which must not count.
    let account = Arc::new(Account::new());
    let sizes = vec![4_096, 8_192, 16_384, 32_768];
    let steps = Steps {
        threads: Vec::with_capacity(sizes.len()),
        kept: Vec::with_capacity(sizes.len()),
        sizes: sizes.clone(),
        next: 0,
    };
    let mut future = Box::pin(Tracked::new(steps, account.clone()));
    let mut output = None;
    for _ in 0..sizes.len() {
        let (tx, rx) = mpsc::channel();
        thread::scope(|s| {
            s.spawn(|| {
                let noise: Vec<u8> = black_box(vec![1u8; 1 << 20]);
                let mut cx = Context::from_waker(Waker::noop());
                if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                    tx.send(out).expect("send");
                }
                drop(noise);
            });
        });
        output = rx.try_recv().ok().or(output);
    }
    let (threads, total) = output.expect("the future completed");
    let mut distinct = threads.clone();
    distinct.sort_by_key(|t| format!("{t:?}"));
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "polled on four threads: {threads:?}");
    assert_eq!(total, 61_440);
    // Exactly what the future allocated: the four vectors (the thread noise is not counted).
    assert_eq!(account.allocated(), 61_440);
    assert_eq!(account.peak(), 61_440);
    assert_eq!(account.live(), 0);
}

static RECORDS: Descriptor = Descriptor::timing("alloc.test.size", "By", "sizes recorded");
static OPS: Descriptor = Descriptor::counter("alloc.test.ops", "1", "operations");

#[test]
fn r16_recording_while_allocating_never_recurses() {
    // Eight threads allocate heavily inside scopes and record into sampler instruments from
    // inside those scopes (a thread's first record allocates its slab, new label values
    // allocate series) while a harvester reads them: no recursion, no deadlock, nothing lost.
    const THREADS: usize = 8;
    const ROUNDS: usize = 2_000;
    let registry = Registry::new();
    let harvester = Harvester::builder().registry(registry.clone()).build();
    let sizes = registry.timing_family(&RECORDS, &["thread"]);
    let ops = registry.counter_family(&OPS, &["thread", "slot"]);
    let (done_tx, done_rx) = mpsc::channel();
    let mut handles = Vec::new();
    for t in 0..THREADS {
        let sizes = sizes.clone();
        let ops = ops.clone();
        let done = done_tx.clone();
        handles.push(thread::spawn(move || {
            let account = Account::new();
            let label = t.to_string();
            let mut expected = 0u64;
            {
                let _scope = account.enter();
                for round in 0..ROUNDS {
                    let size = 1 + (round * 37 + t * 101) % 8_192;
                    let block: Vec<u8> = black_box(Vec::with_capacity(size));
                    expected += size as u64;
                    sizes.record(&[&label], block.capacity() as f64);
                    let slot = (round % 64).to_string();
                    ops.inc(&[&label, &slot]);
                    drop(block);
                }
            }
            done.send(()).expect("send");
            (account.allocated(), account.peak(), expected)
        }));
    }
    drop(done_tx);
    // Harvest while they run, until all have finished (bounded: a deadlock fails the test).
    let mut finished = 0;
    let mut harvests = 0;
    while finished < THREADS {
        match done_rx.recv_timeout(Duration::from_millis(5)) {
            Ok(()) => finished += 1,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                harvests += 1;
                assert!(harvests < 12_000, "threads still running after 60 s");
                drop(harvester.harvest_now());
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("a recording thread died"),
        }
    }
    for handle in handles {
        let (allocated, peak, expected) = handle.join().expect("thread");
        assert!(
            allocated >= expected,
            "allocated {allocated} < the {expected} bytes of the blocks"
        );
        assert!(peak >= 8_000, "peak {peak} below the largest block");
    }
    let snapshot = harvester.harvest_now();
    for t in 0..THREADS {
        let label = t.to_string();
        match snapshot
            .find("alloc.test.size", &[("thread", &label)])
            .map(|s| s.value())
        {
            Some(Value::Timing(d)) => assert_eq!(d.count(), ROUNDS as u64),
            other => panic!("timing of thread {t}: {other:?}"),
        }
    }
}
