//! Copying another thread's live stack: a signal whose handler copies the interrupted
//! registers and stack words into one preallocated buffer, so that the watchdog thread can
//! unwind the copy at leisure.
//!
//! # Protocol
//!
//! One capture at a time (a process-wide lock held by the capturing thread). The buffer's
//! `state` moves `IDLE → ARMED` (capturing thread, with the target's thread id stored first),
//! `ARMED → WRITING` (the handler, on the target thread only, by compare-and-swap),
//! `WRITING → DONE` (the handler, after the copy, with release ordering), `DONE → IDLE` (the
//! capturing thread, after reading the copy). A capturing thread that gives up waiting moves
//! `ARMED → IDLE` by compare-and-swap, so a late signal finds `IDLE` and does nothing; if the
//! handler already won (`WRITING`) it waits for `DONE`, which comes after a bounded copy. A
//! signal from anyone else (another thread id, or no capture armed) leaves the buffer alone.
//!
//! The handler calls only `clock_gettime` (async-signal-safe; it leaves `errno` alone on
//! success), reads a constant-initialised thread-local (its thread id and stack bounds, set by
//! [`prepare_thread`] before the thread polls a request), and does atomics and a bounded word
//! copy (`memcpy` is async-signal-safe since POSIX.1-2016): no allocation, no lock, no panic.

use std::cell::{Cell, UnsafeCell};
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// Most stack bytes copied per capture (from the interrupted stack pointer up).
pub(crate) const STACK_BYTES: usize = 256 * 1024;
const WORDS: usize = STACK_BYTES / 8;

const IDLE: u32 = 0;
const ARMED: u32 = 1;
const WRITING: u32 = 2;
const DONE: u32 = 3;

struct Slot {
    state: AtomicU32,
    target: AtomicI32,
    ip: AtomicU64,
    sp: AtomicU64,
    fp: AtomicU64,
    lr: AtomicU64,
    words: AtomicUsize,
    pause_ns: AtomicU64,
    stack: UnsafeCell<[u64; WORDS]>,
}

// SAFETY: `stack` is written only by the signal handler between its `ARMED → WRITING`
// compare-and-swap and its release store of `DONE`, and read only by the capturing thread after
// an acquire load of `DONE` and before it stores `IDLE`; the state machine (see the module
// documentation) lets one side at a time near it. Every other field is atomic.
unsafe impl Sync for Slot {}

static SLOT: Slot = Slot {
    state: AtomicU32::new(IDLE),
    target: AtomicI32::new(0),
    ip: AtomicU64::new(0),
    sp: AtomicU64::new(0),
    fp: AtomicU64::new(0),
    lr: AtomicU64::new(0),
    words: AtomicUsize::new(0),
    pause_ns: AtomicU64::new(0),
    stack: UnsafeCell::new([0; WORDS]),
};

/// One capture at a time in the process.
static CAPTURING: Mutex<()> = Mutex::new(());

thread_local! {
    /// This thread's id and stack bounds `[low, high)`, set by [`prepare_thread`] before the
    /// thread may be the target of a capture. Constant-initialised with no destructor, so the
    /// handler's access is a plain thread-local load (nothing registered, nothing allocated).
    static THREAD: Cell<(i32, usize, usize)> = const { Cell::new((0, 0, 0)) };
}

/// The calling thread's id, with its stack bounds recorded for the signal handler (computed
/// once per thread).
pub(crate) fn prepare_thread() -> i32 {
    let (tid, _, _) = THREAD.get();
    if tid != 0 {
        return tid;
    }
    let tid = current_tid();
    let (low, high) = stack_bounds().unwrap_or((0, 0));
    THREAD.set((tid, low, high));
    tid
}

fn current_tid() -> i32 {
    // SAFETY: the gettid system call takes no arguments and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    tid as i32
}

/// The calling thread's stack `[low, high)` from pthread.
fn stack_bounds() -> Option<(usize, usize)> {
    let mut attr = std::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
    // SAFETY: `attr` is written by pthread_getattr_np before it is read, and destroyed once
    // after a successful call; the out pointers of pthread_attr_getstack are valid locals.
    unsafe {
        if libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let rc = libc::pthread_attr_getstack(attr.as_ptr(), &mut addr, &mut size);
        libc::pthread_attr_destroy(attr.as_mut_ptr());
        (rc == 0).then(|| (addr as usize, addr as usize + size))
    }
}

/// The signal used for captures: the fourth real-time signal from the top (libraries that
/// take a real-time signal usually count from `SIGRTMIN` up).
pub(crate) fn signal_number() -> i32 {
    libc::SIGRTMAX() - 3
}

/// Installs the handler once per process; an error when another handler holds the signal.
pub(crate) fn install() -> Result<(), String> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let signal = signal_number();
            // SAFETY: `old` and `new` are zeroed sigaction structs (a valid "empty" value),
            // fully set before use; sigaction reads `new` and writes `old` only. The handler
            // has the SA_SIGINFO signature.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(signal, std::ptr::null(), &mut old) != 0 {
                    return Err(format!(
                        "failed to read the handler of signal {signal}: {}",
                        std::io::Error::last_os_error()
                    ));
                }
                if old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN {
                    return Err(format!(
                        "signal {signal} (SIGRTMAX-3) already has a handler: the stack capture needs it"
                    ));
                }
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = on_signal as *const () as usize;
                // No SA_ONSTACK: the handler runs on the interrupted stack, below its live part.
                new.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
                libc::sigemptyset(&mut new.sa_mask);
                if libc::sigaction(signal, &new, std::ptr::null_mut()) != 0 {
                    return Err(format!(
                        "failed to install the handler of signal {signal}: {}",
                        std::io::Error::last_os_error()
                    ));
                }
            }
            Ok(())
        })
        .clone()
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out pointer; clock_gettime is async-signal-safe (POSIX).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    // Wrapping: no overflow check may panic in the signal handler.
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// The registers the unwinder starts from: (ip, sp, fp, lr); lr is 0 on x86_64.
///
/// # Safety
/// `context` is the `ucontext_t` the kernel passed to an SA_SIGINFO handler.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
unsafe fn registers(context: *mut libc::c_void) -> (u64, u64, u64, u64) {
    // SAFETY: per this function's contract `context` points to a live ucontext_t.
    let gregs = unsafe { &(*(context as *const libc::ucontext_t)).uc_mcontext.gregs };
    (
        gregs[libc::REG_RIP as usize] as u64,
        gregs[libc::REG_RSP as usize] as u64,
        gregs[libc::REG_RBP as usize] as u64,
        0,
    )
}

/// The registers the unwinder starts from: (ip, sp, fp, lr).
///
/// # Safety
/// `context` is the `ucontext_t` the kernel passed to an SA_SIGINFO handler.
#[cfg(all(target_os = "linux", target_arch = "aarch64"))]
unsafe fn registers(context: *mut libc::c_void) -> (u64, u64, u64, u64) {
    // SAFETY: per this function's contract `context` points to a live ucontext_t.
    let m = unsafe { &(*(context as *const libc::ucontext_t)).uc_mcontext };
    (m.pc, m.sp, m.regs[29], m.regs[30])
}

extern "C" fn on_signal(_signal: i32, _info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let started = monotonic_ns();
    let (tid, low, high) = THREAD.get();
    if tid == 0 || SLOT.target.load(Ordering::Acquire) != tid {
        return;
    }
    if SLOT
        .state
        .compare_exchange(ARMED, WRITING, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return;
    }
    // SAFETY: the kernel passes an SA_SIGINFO handler the interrupted ucontext_t.
    let (ip, sp, fp, lr) = unsafe { registers(context) };
    let sp_addr = sp as usize;
    // Copy only when the interrupted stack pointer is inside this thread's recorded stack
    // (not on a signal stack) and word aligned; the words from it up to the top are the live
    // part of the stack, mapped and readable.
    let words = if sp_addr >= low && sp_addr < high && sp_addr % 8 == 0 {
        ((high - sp_addr) / 8).min(WORDS)
    } else {
        0
    };
    // SAFETY: `[sp, sp + words·8)` lies in this thread's own mapped stack (checked above) and
    // this frame sits below `sp`, so the source is neither unmapped nor being written; the
    // destination is the static buffer, which this handler alone may touch while the state
    // is WRITING (module documentation). Both are 8-aligned and do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(sp_addr as *const u64, SLOT.stack.get().cast::<u64>(), words);
    }
    SLOT.ip.store(ip, Ordering::Relaxed);
    SLOT.sp.store(sp, Ordering::Relaxed);
    SLOT.fp.store(fp, Ordering::Relaxed);
    SLOT.lr.store(lr, Ordering::Relaxed);
    SLOT.words.store(words, Ordering::Relaxed);
    SLOT.pause_ns
        .store(monotonic_ns().saturating_sub(started), Ordering::Relaxed);
    SLOT.state.store(DONE, Ordering::Release);
}

/// A copy of a thread's registers and live stack.
#[derive(Debug)]
pub(crate) struct Captured {
    pub(crate) ip: u64,
    pub(crate) sp: u64,
    pub(crate) fp: u64,
    /// The link register (aarch64; 0 on x86_64).
    #[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
    pub(crate) lr: u64,
    /// Stack words from `sp` up.
    pub(crate) stack: Vec<u64>,
    /// Time spent in the handler on the target thread.
    pub(crate) pause: Duration,
    /// From sending the signal to seeing the copy done (reported by the pause test).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) round_trip: Duration,
}

impl Captured {
    /// The stack word at `address`, when the copy holds it.
    pub(crate) fn read(&self, address: u64) -> Option<u64> {
        let offset = address.checked_sub(self.sp)?;
        if offset % 8 != 0 {
            return None;
        }
        self.stack.get(usize::try_from(offset / 8).ok()?).copied()
    }
}

/// Why no stack was captured.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CaptureError {
    /// The signal could not be sent (the thread is gone).
    Send(String),
    /// No handler ran within the wait (blocked signal, or a thread not prepared).
    Timeout,
}

/// Copies the registers and stack of thread `tid` (of this process), waiting at most `wait`
/// for its handler. The thread must have called [`prepare_thread`] for a stack to be copied.
pub(crate) fn capture(tid: i32, wait: Duration) -> Result<Captured, CaptureError> {
    let _one = CAPTURING.lock().unwrap_or_else(PoisonError::into_inner);
    install().map_err(CaptureError::Send)?;
    SLOT.target.store(tid, Ordering::Release);
    SLOT.state.store(ARMED, Ordering::Release);
    let sent = Instant::now();
    // SAFETY: tgkill takes plain integers; a wrong id only makes it fail.
    let rc = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, signal_number()) };
    if rc != 0 {
        let error = std::io::Error::last_os_error();
        // Nothing was delivered: ARMED → IDLE cannot race with a handler of this capture.
        let _ = SLOT
            .state
            .compare_exchange(ARMED, IDLE, Ordering::AcqRel, Ordering::Acquire);
        return Err(CaptureError::Send(format!(
            "failed to signal thread {tid}: {error}"
        )));
    }
    loop {
        match SLOT.state.load(Ordering::Acquire) {
            DONE => break,
            // Giving up: ARMED → IDLE. If the handler won the race it is copying (WRITING),
            // and DONE follows shortly.
            ARMED
                if sent.elapsed() >= wait
                    && SLOT
                        .state
                        .compare_exchange(ARMED, IDLE, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok() =>
            {
                return Err(CaptureError::Timeout);
            }
            _ => {}
        }
        std::thread::yield_now();
    }
    let round_trip = sent.elapsed();
    let words = SLOT.words.load(Ordering::Relaxed).min(WORDS);
    let mut stack = vec![0u64; words];
    // SAFETY: the state is DONE (acquire load above), so the handler has finished writing
    // `words` words and nobody writes the buffer until this thread, holding CAPTURING, arms
    // the next capture.
    unsafe {
        std::ptr::copy_nonoverlapping(SLOT.stack.get().cast::<u64>(), stack.as_mut_ptr(), words);
    }
    let captured = Captured {
        ip: SLOT.ip.load(Ordering::Relaxed),
        sp: SLOT.sp.load(Ordering::Relaxed),
        fp: SLOT.fp.load(Ordering::Relaxed),
        lr: SLOT.lr.load(Ordering::Relaxed),
        stack,
        pause: Duration::from_nanos(SLOT.pause_ns.load(Ordering::Relaxed)),
        round_trip,
    };
    SLOT.state.store(IDLE, Ordering::Release);
    Ok(captured)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    /// A thread spinning in [`r16_spin_in_a_distinctly_named_function`] until told to stop.
    /// The slot's state, read while no capture can be armed (other tests capture too).
    fn state_between_captures() -> u32 {
        let _one = CAPTURING.lock().unwrap_or_else(PoisonError::into_inner);
        SLOT.state.load(Ordering::Acquire)
    }

    pub(crate) struct Spinner {
        pub(crate) tid: i32,
        stop: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<u64>>,
    }

    #[inline(never)]
    pub(crate) fn r16_spin_in_a_distinctly_named_function(
        running: &AtomicBool,
        stop: &AtomicBool,
    ) -> u64 {
        running.store(true, Ordering::Release);
        let mut x = 0u64;
        while !stop.load(Ordering::Relaxed) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        x
    }

    impl Spinner {
        pub(crate) fn start(prepare: bool) -> Spinner {
            let stop = Arc::new(AtomicBool::new(false));
            let (tx, rx) = std::sync::mpsc::channel();
            let flag = stop.clone();
            let running = Arc::new(AtomicBool::new(false));
            let inside = running.clone();
            let thread = std::thread::spawn(move || {
                let tid = if prepare {
                    prepare_thread()
                } else {
                    current_tid()
                };
                tx.send(tid).unwrap();
                r16_spin_in_a_distinctly_named_function(&inside, &flag)
            });
            let tid = rx.recv().unwrap();
            // Captures must find it in the spinning function, past its first instructions.
            while !running.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
            Spinner {
                tid,
                stop,
                thread: Some(thread),
            }
        }
    }

    impl Drop for Spinner {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    #[test]
    fn r16_a_capture_copies_the_live_stack_of_the_target_thread() {
        prepare_thread();
        let spinner = Spinner::start(true);
        let c = capture(spinner.tid, Duration::from_secs(5)).expect("capture");
        assert!(!c.stack.is_empty(), "no stack words copied");
        assert!(c.stack.len() <= WORDS);
        assert!(c.ip != 0 && c.sp != 0);
        // The stack pointer lies in the target's stack, not the caller's.
        let (_, low, high) = THREAD.get();
        assert!(low != 0 && high > low);
        assert!(!(low..high).contains(&(c.sp as usize)));
        assert_eq!(c.read(c.sp), c.stack.first().copied());
        assert_eq!(c.read(c.sp + 4), None, "unaligned reads are refused");
        assert_eq!(c.read(c.sp - 8), None, "below the copy");
        assert!(c.pause < Duration::from_secs(1));
        assert_eq!(state_between_captures(), IDLE);
    }

    #[test]
    fn r16_a_thread_never_prepared_gives_a_timeout_and_leaves_the_slot_idle() {
        let spinner = Spinner::start(false);
        let r = capture(spinner.tid, Duration::from_millis(100));
        assert_eq!(r.unwrap_err(), CaptureError::Timeout);
        assert_eq!(state_between_captures(), IDLE);
        // The slot still works for the next capture.
        let prepared = Spinner::start(true);
        assert!(capture(prepared.tid, Duration::from_secs(5)).is_ok());
    }

    #[test]
    fn r16_a_gone_thread_is_an_error_naming_it() {
        let tid = std::thread::spawn(prepare_thread).join().unwrap();
        // The thread has exited; its id is free (reuse within this test is very unlikely,
        // and would only make the capture time out or succeed on a new thread).
        match capture(tid, Duration::from_millis(200)) {
            Err(CaptureError::Send(message)) => {
                assert!(message.starts_with(&format!("failed to signal thread {tid}")))
            }
            Err(CaptureError::Timeout) | Ok(_) => {}
        }
        assert_eq!(state_between_captures(), IDLE);
    }

    #[test]
    fn r16_a_stray_signal_with_no_capture_armed_changes_nothing() {
        // A signal a thread sends itself is handled before tgkill returns: deterministic.
        let tid = prepare_thread();
        install().unwrap();
        let _one = CAPTURING.lock().unwrap_or_else(PoisonError::into_inner);
        SLOT.words.store(usize::MAX, Ordering::Relaxed);
        SLOT.target.store(tid, Ordering::Release);
        // SAFETY: tgkill with plain integers, to this thread.
        let rc = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, signal_number()) };
        assert_eq!(rc, 0);
        assert_eq!(
            SLOT.state.load(Ordering::Acquire),
            IDLE,
            "not armed: untouched"
        );
        assert_eq!(SLOT.words.load(Ordering::Relaxed), usize::MAX);
        // Armed for another thread: untouched too.
        SLOT.target.store(tid + 1, Ordering::Release);
        SLOT.state.store(ARMED, Ordering::Release);
        // SAFETY: as above.
        let rc = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, signal_number()) };
        assert_eq!(rc, 0);
        assert_eq!(SLOT.state.load(Ordering::Acquire), ARMED);
        assert_eq!(SLOT.words.load(Ordering::Relaxed), usize::MAX);
        // Armed for this thread: copied, DONE before tgkill returned.
        SLOT.target.store(tid, Ordering::Release);
        // SAFETY: as above.
        let rc = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, signal_number()) };
        assert_eq!(rc, 0);
        assert_eq!(SLOT.state.load(Ordering::Acquire), DONE);
        let words = SLOT.words.load(Ordering::Relaxed);
        assert!(words > 0 && words <= WORDS, "{words}");
        SLOT.state.store(IDLE, Ordering::Release);
    }
}
