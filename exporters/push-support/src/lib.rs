//! What sampler's push exporters (Graphite, StatsD, OTLP, remote write) share when the backend
//! is away: [`Backoff`], the wait between reconnects or retries (exponential, capped, with
//! jitter so that many senders restarted together do not come back in step), and
//! [`retry_after`], the wait an HTTP receiver asks for in its `Retry-After` header.
//!
//! ```
//! use sampler_push_support::{retry_after, Backoff};
//! use std::time::{Duration, SystemTime};
//!
//! let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
//! // A failed attempt: wait 50 to 100 ms, then 100 to 200 ms, … never more than 30 s.
//! let wait = backoff.failed();
//! assert!(wait >= Duration::from_millis(50) && wait <= Duration::from_millis(100));
//! // An HTTP receiver that answered 503 with `Retry-After: 7` is obeyed instead.
//! let asked = retry_after("7", SystemTime::now());
//! assert_eq!(backoff.failed_with(asked), Duration::from_secs(7));
//! backoff.succeeded(); // the next failure starts again from 100 ms
//! ```
//!
//! The waits are computed here rather than with a backoff crate: `backoff` is unmaintained
//! (RUSTSEC-2025-0012), and `backon`'s jitter adds up to one more delay on top of the current
//! one (so a wait may reach twice the cap) and is built around async retry loops, where these
//! exporters keep their own loops on their worker threads. HTTP dates are parsed by `httpdate`.
#![deny(missing_docs)]

mod backoff;
mod retry_after;

pub use backoff::{Backoff, Jitter};
pub use retry_after::retry_after;
