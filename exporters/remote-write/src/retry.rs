//! When to try again: exponential backoff with jitter, and the receiver's `Retry-After`.

use std::time::{Duration, SystemTime};

/// Exponential backoff with "full jitter": each wait is uniform in `[0, cap]`, where the cap
/// doubles from `min` up to `max` with every failure in a row.
///
/// ```
/// use sampler_exporter_remote_write::Backoff;
/// use std::time::Duration;
/// let mut b = Backoff::new(Duration::from_millis(30), Duration::from_secs(5));
/// for _ in 0..20 {
///     assert!(b.next_wait() <= Duration::from_secs(5));
/// }
/// b.reset();
/// assert!(b.next_wait() <= Duration::from_millis(30));
/// ```
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    cap: Duration,
    seed: u64,
}

impl Backoff {
    /// Starts at `min`, never waits more than `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
            | 1;
        Backoff {
            min,
            max,
            cap: min,
            seed,
        }
    }

    /// The next wait; the one after it may be twice as long.
    pub fn next_wait(&mut self) -> Duration {
        // xorshift: jitter needs no cryptographic randomness.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let cap = self.cap;
        self.cap = (self.cap * 2).min(self.max).max(self.min);
        let nanos = cap.as_nanos().min(u64::MAX as u128) as u64;
        Duration::from_nanos(if nanos == 0 {
            0
        } else {
            self.seed % (nanos + 1)
        })
    }

    /// Back to `min` after a success.
    pub fn reset(&mut self) {
        self.cap = self.min;
    }
}

/// A `Retry-After` header's wait: delay-seconds or an HTTP date (RFC 9110 §10.2.3). A date in
/// the past waits 0; a value that is neither is ignored (`None`). Waits are capped at 10 min.
///
/// ```
/// use sampler_exporter_remote_write::retry_after;
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
/// assert_eq!(retry_after("3", now), Some(Duration::from_secs(3)));
/// assert_eq!(retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now), Some(Duration::from_secs(10)));
/// assert_eq!(retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now), Some(Duration::ZERO));
/// assert_eq!(retry_after("soon", now), None);
/// ```
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    const CAP: Duration = Duration::from_secs(600);
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(CAP));
    }
    let at = http_date(v)?;
    Some(at.duration_since(now).unwrap_or_default().min(CAP))
}

/// IMF-fixdate, the one form senders must use: `Sun, 06 Nov 1994 08:49:37 GMT`.
fn http_date(v: &str) -> Option<SystemTime> {
    let (_, rest) = v.split_once(", ")?;
    let mut parts = rest.split(' ');
    let day: u64 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':');
    let h: u64 = hms.next()?.parse().ok()?;
    let m: u64 = hms.next()?.parse().ok()?;
    let s: u64 = hms.next()?.parse().ok()?;
    if parts.next()? != "GMT" || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days.checked_mul(86_400)? + (h * 3600 + m * 60 + s) as i64;
    u64::try_from(secs)
        .ok()
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
}
