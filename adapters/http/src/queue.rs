//! Queue time from the `X-Request-Start` / `X-Queue-Start` header set by a front proxy.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Parses a request start header into the time since the epoch.
///
/// The value is a number of seconds, milliseconds, microseconds or nanoseconds since the
/// Unix epoch, optionally after `t=` (nginx `t=${msec}`, HAProxy, Heroku), told apart by
/// magnitude as the APM agents do: below 10^11 seconds, below 10^14 milliseconds, below 10^17
/// microseconds, else nanoseconds. A fraction is allowed. Anything else gives `None`.
///
/// ```
/// use sampler_adapter_http::parse_request_start;
/// use std::time::Duration;
/// let want = Duration::from_millis(1_700_000_000_250);
/// assert_eq!(parse_request_start("t=1700000000.250"), Some(want));
/// assert_eq!(parse_request_start("1700000000250"), Some(want));
/// assert_eq!(parse_request_start("t=1700000000250000"), Some(want));
/// assert_eq!(parse_request_start("soon"), None);
/// ```
pub fn parse_request_start(value: &str) -> Option<Duration> {
    let value = value.trim();
    let value = value.strip_prefix("t=").unwrap_or(value).trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let number: f64 = value.parse().ok()?;
    if !number.is_finite() || number <= 0.0 {
        return None;
    }
    let seconds = if number < 1e11 {
        number
    } else if number < 1e14 {
        number / 1e3
    } else if number < 1e17 {
        number / 1e6
    } else {
        number / 1e9
    };
    Duration::try_from_secs_f64(seconds).ok()
}

/// Time the request waited before reaching this service: `now()` (read only when a header
/// is there) minus the time in `value` (`X-Request-Start`, else `X-Queue-Start`),
/// `None` when the header is absent, malformed or in the future (clock skew).
pub(crate) fn queue_time(
    value: Option<&http::HeaderValue>,
    now: impl FnOnce() -> SystemTime,
) -> Option<Duration> {
    let start = parse_request_start(value?.to_str().ok()?)?;
    now().duration_since(UNIX_EPOCH).ok()?.checked_sub(start)
}
