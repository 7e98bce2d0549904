//! The `Retry-After` header (RFC 9110 §10.2.3).

use std::time::{Duration, SystemTime};

/// The wait a `Retry-After` header value asks for, as seen at `now`: delay-seconds (`"120"`)
/// or an HTTP date (`"Sun, 06 Nov 1994 08:49:37 GMT"`, and the two obsolete forms RFC 9110
/// still asks receivers to accept). A date in the past asks for no wait; anything else
/// (`"soon"`, `"-1"`, `"1.5"`, empty) is `None`, and the caller falls back on its backoff.
///
/// The wait is as asked, however long: a caller bounds it by what it can hold (its buffer,
/// its shutdown deadline).
///
/// ```
/// use sampler_push_support::retry_after;
/// use std::time::{Duration, UNIX_EPOCH};
/// let now = UNIX_EPOCH + Duration::from_secs(784_111_770); // Sun, 06 Nov 1994 08:49:30 GMT
/// assert_eq!(retry_after("7", now), Some(Duration::from_secs(7)));
/// assert_eq!(retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now), Some(Duration::from_secs(7)));
/// assert_eq!(retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now), Some(Duration::ZERO));
/// assert_eq!(retry_after("soon", now), None);
/// ```
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits: delay-seconds; more than u64 holds is as good as forever.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    /// Sun, 06 Nov 1994 08:49:30 GMT.
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(784_111_770)
    }

    #[test]
    fn delay_seconds() {
        assert_eq!(retry_after("0", now()), Some(Duration::ZERO));
        assert_eq!(retry_after(" 120 ", now()), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("99999999999999999999999", now()),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn http_dates_in_all_three_forms() {
        let seven = Some(Duration::from_secs(7));
        assert_eq!(retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now()), seven);
        assert_eq!(retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now()), seven);
        assert_eq!(retry_after("Sun Nov  6 08:49:37 1994", now()), seven);
    }

    #[test]
    fn a_date_in_the_past_asks_for_no_wait() {
        assert_eq!(
            retry_after("Thu, 01 Jan 1970 00:00:00 GMT", now()),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn anything_else_is_none() {
        for v in [
            "",
            " ",
            "soon",
            "-1",
            "+5",
            "1.5",
            "5s",
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 32 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(retry_after(v, now()), None, "{v:?}");
        }
    }
}
