//! What a series is: its name, kind, unit and description.

use std::borrow::Cow;
use std::fmt;

/// The kind of a series, which fixes how its readings are read.
///
/// See `spec/sampler-api.md`, "Kinds".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
#[non_exhaustive]
pub enum Kind {
    /// A monotonic cumulative total (`u64`, in whole `1/divisor` parts of the unit: see
    /// [`Descriptor::divisor`]) since the series' start time.
    Counter,
    /// An instantaneous value (`f64`).
    Gauge,
    /// A cumulative distribution of observed values (usually durations in seconds).
    Timing,
}

impl Kind {
    /// The lower-case name used in the spec and in JSON output.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Timing => "timing",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Describes a metric: name, kind, unit (UCUM-style: `s`, `By`, `1`) and description.
///
/// Descriptors are built once, usually in a `static`, so recording never formats strings.
///
/// ```
/// use sampler_api::{Descriptor, Kind};
/// static REQUESTS: Descriptor = Descriptor::counter("http.server.requests", "1", "requests served");
/// assert_eq!(REQUESTS.kind(), Kind::Counter);
/// assert!(REQUESTS.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Descriptor {
    name: Cow<'static, str>,
    kind: Kind,
    unit: Cow<'static, str>,
    description: Cow<'static, str>,
    divisor: u64,
}

impl Descriptor {
    /// A descriptor from static strings; usable in a `static`.
    pub const fn new(
        name: &'static str,
        kind: Kind,
        unit: &'static str,
        description: &'static str,
    ) -> Self {
        Descriptor {
            name: Cow::Borrowed(name),
            kind,
            unit: Cow::Borrowed(unit),
            description: Cow::Borrowed(description),
            divisor: 1,
        }
    }

    /// A counter descriptor from static strings.
    pub const fn counter(
        name: &'static str,
        unit: &'static str,
        description: &'static str,
    ) -> Self {
        Self::new(name, Kind::Counter, unit, description)
    }

    /// A gauge descriptor from static strings.
    pub const fn gauge(name: &'static str, unit: &'static str, description: &'static str) -> Self {
        Self::new(name, Kind::Gauge, unit, description)
    }

    /// A timing descriptor from static strings.
    pub const fn timing(name: &'static str, unit: &'static str, description: &'static str) -> Self {
        Self::new(name, Kind::Timing, unit, description)
    }

    /// A descriptor built at run time (names read from a file, a foreign process, a config).
    ///
    /// ```
    /// use sampler_api::{Descriptor, Kind};
    /// let d = Descriptor::owned(format!("queue.{}.depth", "mail"), Kind::Gauge, "1", "");
    /// assert_eq!(d.name(), "queue.mail.depth");
    /// ```
    pub fn owned(
        name: impl Into<Cow<'static, str>>,
        kind: Kind,
        unit: impl Into<Cow<'static, str>>,
        description: impl Into<Cow<'static, str>>,
    ) -> Self {
        Descriptor {
            name: name.into(),
            kind,
            unit: unit.into(),
            description: description.into(),
            divisor: 1,
        }
    }

    /// A counter that counts whole `1/divisor` parts of its unit, so a total in a base unit
    /// keeps a fraction while the recorded value stays an exact `u64`; usable in a `static`.
    ///
    /// CPU time in seconds with microsecond precision records microseconds under unit `s`;
    /// every exporter shows `raw / divisor` in the unit (`spec/sampler-api.md`, "Counter").
    /// A divisor of 0 is taken as 1.
    ///
    /// ```
    /// use sampler_api::Descriptor;
    /// static CPU: Descriptor =
    ///     Descriptor::fractional_counter("process.cpu.time", "s", 1_000_000, "CPU time");
    /// assert_eq!(CPU.divisor(), 1_000_000);
    /// assert_eq!(CPU.counter_value(2_500_000), 2.5);
    /// ```
    pub const fn fractional_counter(
        name: &'static str,
        unit: &'static str,
        divisor: u64,
        description: &'static str,
    ) -> Self {
        let mut d = Self::new(name, Kind::Counter, unit, description);
        d.divisor = if divisor == 0 { 1 } else { divisor };
        d
    }

    /// The same descriptor with another divisor (see [`fractional_counter`]); for
    /// descriptors built at run time. A divisor of 0 is taken as 1. Gauges and timings ignore it.
    ///
    /// [`fractional_counter`]: Self::fractional_counter
    pub fn with_divisor(mut self, divisor: u64) -> Self {
        self.divisor = divisor.max(1);
        self
    }

    /// How many recorded units make one unit of [`unit`](Self::unit); 1 for most counters.
    pub fn divisor(&self) -> u64 {
        self.divisor
    }

    /// A counter's recorded total in its unit: `raw / divisor`, correctly rounded (exact for
    /// totals below 2^53 when the divisor is 1).
    ///
    /// ```
    /// use sampler_api::Descriptor;
    /// let d = Descriptor::fractional_counter("process.cpu.time", "s", 100, "");
    /// assert_eq!(d.counter_value(7), 0.07);
    /// ```
    pub fn counter_value(&self, raw: u64) -> f64 {
        if self.divisor == 1 {
            raw as f64
        } else {
            // Whole units and the remainder apart, so totals past 2^53 raw parts keep their
            // fraction as well as an f64 can.
            (raw / self.divisor) as f64 + (raw % self.divisor) as f64 / self.divisor as f64
        }
    }

    /// The dotted metric name, such as `http.server.duration`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The kind of the series.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The UCUM-style unit (`s`, `By`, `1`, or empty when unknown).
    pub fn unit(&self) -> &str {
        &self.unit
    }

    /// The human description (may be empty).
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Checks the name and unit against the naming rules of `spec/sampler-api.md`.
    ///
    /// ```
    /// use sampler_api::{Descriptor, Kind};
    /// let d = Descriptor::owned("net.rtt", Kind::Gauge, "µs", "");
    /// assert_eq!(
    ///     d.validate().unwrap_err().to_string(),
    ///     r#"invalid unit "µs" of metric "net.rtt": must be printable ASCII without quotes or backslashes"#
    /// );
    /// ```
    pub fn validate(&self) -> Result<(), NameError> {
        validate_name(&self.name)?;
        if !self
            .unit
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        {
            return Err(NameError {
                subject: format!("unit {:?} of metric {:?}", self.unit, self.name),
                why: "must be printable ASCII without quotes or backslashes",
            });
        }
        Ok(())
    }
}

/// A metric name, label key or unit that breaks the naming rules; the message names which
/// one, its value and the rule.
///
/// ```
/// use sampler_api::validate_label_key;
/// let e = validate_label_key("Route").unwrap_err();
/// assert_eq!(e.to_string(), r#"invalid label key "Route": must start with a-z or _"#);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameError {
    /// What is invalid, with its value: `metric name "Http"`.
    subject: String,
    why: &'static str,
}

impl NameError {
    fn name(name: &str, why: &'static str) -> Self {
        NameError {
            subject: format!("metric name {name:?}"),
            why,
        }
    }

    fn key(key: &str, why: &'static str) -> Self {
        NameError {
            subject: format!("label key {key:?}"),
            why,
        }
    }
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.subject, self.why)
    }
}

impl std::error::Error for NameError {}

/// Checks a metric name: dotted segments of `[a-z0-9_]`, the first starting with `a-z`, the
/// others with `a-z` or a digit (`system.cpu.load_average.1m`), 1 to 255 bytes.
///
/// ```
/// use sampler_api::validate_name;
/// assert!(validate_name("http.server.duration").is_ok());
/// assert!(validate_name("Http..duration").is_err());
/// ```
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() || name.len() > 255 {
        return Err(NameError::name(name, "must be 1 to 255 bytes long"));
    }
    for (i, segment) in name.split('.').enumerate() {
        let mut bytes = segment.bytes();
        match bytes.next() {
            Some(b'a'..=b'z') => {}
            Some(b'0'..=b'9') if i > 0 => {}
            Some(_) if i == 0 => return Err(NameError::name(name, "must start with a-z")),
            Some(_) => {
                return Err(NameError::name(
                    name,
                    "each dotted segment must start with a-z or 0-9",
                ))
            }
            None => {
                return Err(NameError::name(
                    name,
                    "has an empty segment (two dots, or a dot at an end)",
                ))
            }
        }
        if !bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_')) {
            return Err(NameError::name(
                name,
                "segments may hold only a-z, 0-9 and _",
            ));
        }
    }
    Ok(())
}

/// Checks a label key: `[a-z_][a-z0-9_]*`, 1 to 128 bytes, not starting with `__`.
///
/// ```
/// use sampler_api::validate_label_key;
/// assert!(validate_label_key("route").is_ok());
/// assert!(validate_label_key("Route").is_err());
/// ```
pub fn validate_label_key(key: &str) -> Result<(), NameError> {
    let mut bytes = key.bytes();
    match bytes.next() {
        Some(b'a'..=b'z' | b'_') => {}
        _ => return Err(NameError::key(key, "must start with a-z or _")),
    }
    if key.len() > 128 {
        return Err(NameError::key(key, "may be at most 128 bytes"));
    }
    if key.starts_with("__") {
        return Err(NameError::key(
            key,
            "is reserved (keys starting with __ are)",
        ));
    }
    if !bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_')) {
        return Err(NameError::key(key, "may hold only a-z, 0-9 and _"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "a.b", "http.server.request_duration", "x9.y_z", "a.1m"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", ".a", "a.", "a..b", "A", "9a", "a-b", "a b", "a.b.Č", "a._b", "1.a",
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        assert_eq!(
            validate_name("a..b").unwrap_err().to_string(),
            r#"invalid metric name "a..b": has an empty segment (two dots, or a dot at an end)"#
        );
    }

    #[test]
    fn label_keys() {
        assert!(validate_label_key("_x").is_ok());
        assert!(validate_label_key("__x").is_err());
        assert!(validate_label_key("x.y").is_err());
        assert!(validate_label_key("").is_err());
    }
}
