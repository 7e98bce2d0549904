//! Exponential backoff with jitter.

use std::time::{Duration, Instant};

/// How a [`Backoff`] spreads its waits below the cap.
///
/// ```
/// use sampler_push_support::{Backoff, Jitter};
/// use std::time::Duration;
/// let mut full = Backoff::new(Duration::from_secs(1), Duration::from_secs(8)).jitter(Jitter::Full);
/// assert!(full.failed() <= Duration::from_secs(1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Jitter {
    /// Uniform in `[cap / 2, cap]`: never less than half the cap, so a backend that is down
    /// is not hammered, and senders still spread out (the default).
    #[default]
    Equal,
    /// Uniform in `[0, cap]`: the widest spread, for many senders to one receiver.
    Full,
}

/// The wait before the next attempt after failures in a row: after `n` failures the cap is
/// `min(max, initial · 2^(n-1))`, and the wait is drawn below the cap as its [`Jitter`] says.
/// A success starts again from `initial`.
///
/// It can also keep the time before which no attempt should be made
/// ([`failed_at`](Self::failed_at), [`ready`](Self::ready)), for a sender that is asked to
/// send at every harvest but must not reconnect at every one.
///
/// ```
/// use sampler_push_support::Backoff;
/// use std::time::{Duration, Instant};
/// let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
/// let waits: Vec<Duration> = (0..6).map(|_| b.failed()).collect();
/// assert!(waits[0] >= Duration::from_millis(50) && waits[0] <= Duration::from_millis(100));
/// assert!(waits[3] >= Duration::from_millis(400) && waits[3] <= Duration::from_millis(800));
/// assert!(waits[5] >= Duration::from_millis(500) && waits[5] <= Duration::from_secs(1));
/// assert_eq!(b.failures(), 6);
///
/// let now = Instant::now();
/// let wait = b.failed_at(now);
/// assert!(!b.ready(now) && b.ready(now + wait));
/// b.succeeded();
/// assert!(b.ready(now));
/// assert!(b.failed() <= Duration::from_millis(100));
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    jitter: Jitter,
    failures: u32,
    /// The last [`failed_at`](Self::failed_at): when, and the wait it gave.
    waiting: Option<(Instant, Duration)>,
}

impl Backoff {
    /// A backoff whose first wait is at most `initial` and whose waits never pass `max` (taken
    /// as `initial` when smaller), with [`Jitter::Equal`].
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            jitter: Jitter::Equal,
            failures: 0,
            waiting: None,
        }
    }

    /// The same backoff with another jitter.
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The cap of the wait after `failures` failures in a row (at least one).
    fn cap(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.initial
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// Counts a failure and gives the wait before the next attempt.
    pub fn failed(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let cap = self.cap(self.failures);
        match self.jitter {
            Jitter::Equal => cap / 2 + cap.mul_f64(fastrand::f64() / 2.0).min(cap - cap / 2),
            Jitter::Full => cap.mul_f64(fastrand::f64()).min(cap),
        }
    }

    /// Counts a failure; the wait is `hint` when the backend gave one (an HTTP `Retry-After`,
    /// see [`retry_after`](crate::retry_after)), else the backoff's own.
    ///
    /// ```
    /// use sampler_push_support::Backoff;
    /// use std::time::Duration;
    /// let mut b = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
    /// assert_eq!(b.failed_with(Some(Duration::from_secs(3))), Duration::from_secs(3));
    /// assert!(b.failed_with(None) <= Duration::from_millis(20)); // the second failure
    /// ```
    pub fn failed_with(&mut self, hint: Option<Duration>) -> Duration {
        let own = self.failed();
        hint.unwrap_or(own)
    }

    /// As [`failed`](Self::failed), and no attempt is [`ready`](Self::ready) before `now`
    /// plus the wait.
    pub fn failed_at(&mut self, now: Instant) -> Duration {
        let wait = self.failed();
        self.waiting = Some((now, wait));
        wait
    }

    /// Whether an attempt may be made at `now`: no failure since the last success, or the
    /// wait of the last [`failed_at`](Self::failed_at) is over.
    pub fn ready(&self, now: Instant) -> bool {
        match self.waiting {
            Some((at, wait)) => now.saturating_duration_since(at) >= wait,
            None => true,
        }
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Forgets the failures: the next wait starts again from `initial`.
    pub fn succeeded(&mut self) {
        self.failures = 0;
        self.waiting = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// After n failures in a row the wait lies in the jitter's range below
        /// min(max, initial·2^(n-1)); a success starts again from initial.
        #[test]
        fn waits_double_up_to_the_cap_within_the_jitter(
            initial_ms in 0u64..2000,
            extra_ms in 0u64..60_000,
            failures in 1u32..80,
            full in any::<bool>(),
        ) {
            let initial = Duration::from_millis(initial_ms);
            let max = initial + Duration::from_millis(extra_ms);
            let jitter = if full { Jitter::Full } else { Jitter::Equal };
            let mut b = Backoff::new(initial, max).jitter(jitter);
            for n in 0..failures {
                let cap = initial.saturating_mul(1u32 << n.min(31)).min(max);
                let low = if full { Duration::ZERO } else { cap / 2 };
                let w = b.failed();
                prop_assert!(w <= cap && w >= low, "wait {:?} after {} failures, cap {:?}", w, n + 1, cap);
            }
            prop_assert_eq!(b.failures(), failures);
            b.succeeded();
            let w = b.failed();
            prop_assert!(w <= initial);
        }
    }

    #[test]
    fn huge_settings_and_endless_failures_never_overflow() {
        let mut b = Backoff::new(Duration::MAX / 2, Duration::MAX);
        for _ in 0..100 {
            assert!(b.failed() >= Duration::MAX / 4);
        }
        let now = Instant::now();
        b.failed_at(now);
        assert!(!b.ready(now), "a wait past the end of time is never over");
        let mut b = Backoff::new(Duration::from_millis(1), Duration::from_secs(30));
        b.failures = u32::MAX - 1;
        for _ in 0..3 {
            let w = b.failed();
            assert!(w >= Duration::from_secs(15) && w <= Duration::from_secs(30));
        }
        assert_eq!(b.failures(), u32::MAX);
    }

    #[test]
    fn a_max_below_initial_is_taken_as_initial() {
        let mut b = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        for _ in 0..5 {
            let w = b.failed();
            assert!(
                w >= Duration::from_secs(1) && w <= Duration::from_secs(2),
                "{w:?}"
            );
        }
    }

    #[test]
    fn equal_jitter_spreads_over_its_whole_range() {
        // 2,000 draws from [0.5 s, 1 s]: both quarters of the range are hit (not a constant).
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(1));
        let waits: Vec<Duration> = (0..2000).map(|_| b.failed()).collect();
        assert!(waits.iter().any(|w| *w < Duration::from_millis(625)));
        assert!(waits.iter().any(|w| *w > Duration::from_millis(875)));
    }
}
