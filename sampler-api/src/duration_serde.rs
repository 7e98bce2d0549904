//! One spelling of durations for every config file: a number of seconds (`2.5`) or a string
//! with a unit (`"10s"`, `"500ms"`, `"1m"`, `"1h30m"`), for exporters' `serde` settings.
//!
//! ```
//! use std::time::Duration;
//! #[derive(serde::Deserialize)]
//! struct Settings {
//!     #[serde(with = "sampler_api::duration_serde")]
//!     timeout: Duration,
//! }
//! let s: Settings = serde_json::from_str(r#"{"timeout": "1m30s"}"#).unwrap();
//! assert_eq!(s.timeout, Duration::from_secs(90));
//! let s: Settings = serde_json::from_str(r#"{"timeout": 0.25}"#).unwrap();
//! assert_eq!(s.timeout, Duration::from_millis(250));
//! ```

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};

/// Reads a duration: seconds as a number, or a string of numbers with units (`ns`, `us`,
/// `ms`, `s`, `m`, `min`, `h`, `d`).
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(DurationVisitor)
}

/// Parses `"1h30m"`, `"500ms"`, `"2.5s"`: one or more numbers, each with a unit.
///
/// ```
/// use sampler_api::duration_serde::parse;
/// use std::time::Duration;
/// assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
/// assert!(parse("10").is_err());
/// assert!(parse("soon").is_err());
/// ```
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| {
                format!("invalid duration {text:?}: a number needs a unit (s, ms, m, h)")
            })?;
        if num_end == 0 {
            return Err(format!("invalid duration {text:?}: expected a number"));
        }
        let n: f64 = rest[..num_end]
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: bad number"))?;
        let after = &rest[num_end..];
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let secs = match after[..unit_end].trim() {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            u => {
                return Err(format!(
                    "invalid duration {text:?}: unknown unit {u:?} (use ns, us, ms, s, m, h, d)"
                ))
            }
        };
        total += n * secs;
        rest = &after[unit_end..];
    }
    Duration::try_from_secs_f64(total).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

struct DurationVisitor;

impl<'de> Visitor<'de> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration: seconds, or a string such as \"10s\" or \"500ms\"")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        Duration::try_from_secs_f64(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        u64::try_from(v)
            .map(Duration::from_secs)
            .map_err(|_| E::custom(format!("a duration cannot be negative, got {v}")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse(v).map_err(E::custom)
    }
}
