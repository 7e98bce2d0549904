//! Conditions: `SELECTOR OP THRESHOLD`, parsed with the byte range of every problem.

use std::fmt;
use std::ops::Range;

use sampler_api::{SeriesRef, Snapshot, Value};

/// Which reading of a series a condition looks at.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stat {
    /// A gauge's value, or a counter's total (in its unit).
    Value,
    /// A counter's increase per second since the previous harvest.
    Rate,
    /// A timing's quantile (0.5, 0.9, 0.99).
    Quantile(f64),
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
}

impl Op {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Op::Gt => a > b,
            Op::Ge => a >= b,
            Op::Lt => a < b,
            Op::Le => a <= b,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
        }
    }
}

/// What a reading is compared with.
#[derive(Clone, Debug, PartialEq)]
pub enum Threshold {
    /// A number, units (`KiB`, `MiB`, `GiB`, `TiB`, `KB`, `MB`, `GB`, `ms`, `s`) applied.
    Number(f64),
    /// `N% of NAME`: a share of another series' value (its first series in the snapshot).
    Percent(f64, String),
}

/// A parsed condition, such as `process.memory.usage > 1.5 GiB`.
///
/// ```
/// use sampler_actions::Condition;
/// let c = Condition::parse("p99(http.server.duration) >= 250ms").unwrap();
/// assert_eq!(c.name, "http.server.duration");
/// assert_eq!(c.to_string(), "p99(http.server.duration) >= 0.25");
/// assert!(Condition::parse("x > 3 parsecs").is_err());
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    /// The series name it watches.
    pub name: String,
    /// Which reading.
    pub stat: Stat,
    /// The comparison.
    pub op: Op,
    /// The other side.
    pub threshold: Threshold,
}

/// A condition that does not parse: what is wrong and the byte range in the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The problem, lower case.
    pub message: String,
    /// Where in the condition text.
    pub at: Range<usize>,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at column {}", self.message, self.at.start + 1)
    }
}

impl std::error::Error for ParseError {}

const UNITS: &[(&str, f64)] = &[
    ("KiB", 1024.0),
    ("MiB", 1024.0 * 1024.0),
    ("GiB", 1024.0 * 1024.0 * 1024.0),
    ("TiB", 1024.0 * 1024.0 * 1024.0 * 1024.0),
    ("KB", 1e3),
    ("MB", 1e6),
    ("GB", 1e9),
    ("B", 1.0),
    ("ms", 1e-3),
    ("us", 1e-6),
    ("s", 1.0),
];

fn err<T>(message: impl Into<String>, at: Range<usize>) -> Result<T, ParseError> {
    Err(ParseError {
        message: message.into(),
        at,
    })
}

struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn skip_ws(&mut self) {
        while self.s[self.i..].starts_with([' ', '\t']) {
            self.i += 1;
        }
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> (&'a str, Range<usize>) {
        let start = self.i;
        for c in self.s[self.i..].chars() {
            if !f(c) {
                break;
            }
            self.i += c.len_utf8();
        }
        (&self.s[start..self.i], start..self.i)
    }

    fn eat(&mut self, t: &str) -> bool {
        if self.s[self.i..].starts_with(t) {
            self.i += t.len();
            true
        } else {
            false
        }
    }

    fn rest_span(&self) -> Range<usize> {
        let end = self.s[self.i..]
            .find([' ', '\t'])
            .map_or(self.s.len(), |n| self.i + n);
        self.i..end.max(self.i)
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '.' || c == '_'
}

fn series_name(c: &mut Cursor<'_>) -> Result<String, ParseError> {
    let (n, span) = c.take_while(is_name_char);
    if n.is_empty() {
        return err("expected a series name", c.rest_span());
    }
    if let Err(e) = sampler_api::validate_name(n) {
        return err(format!("invalid series name {n:?}: {e}"), span);
    }
    Ok(n.to_owned())
}

impl Condition {
    /// Parses `NAME OP VALUE`, `rate(NAME) OP VALUE`, `p50|p90|p99(NAME) OP VALUE`, where
    /// VALUE is a number with an optional unit, or `N% of NAME`.
    pub fn parse(text: &str) -> Result<Condition, ParseError> {
        let mut c = Cursor { s: text, i: 0 };
        c.skip_ws();
        let (word, wspan) = c.take_while(is_name_char);
        let stat = if c.s[c.i..].starts_with('(') {
            match word {
                "rate" => Stat::Rate,
                "p50" => Stat::Quantile(0.5),
                "p90" => Stat::Quantile(0.9),
                "p99" => Stat::Quantile(0.99),
                _ => {
                    return err(
                        format!("unknown function `{word}` (use rate, p50, p90 or p99)"),
                        wspan,
                    )
                }
            }
        } else {
            c.i = wspan.start;
            Stat::Value
        };
        let name = if stat == Stat::Value {
            series_name(&mut c)?
        } else {
            c.eat("(");
            c.skip_ws();
            let n = series_name(&mut c)?;
            c.skip_ws();
            if !c.eat(")") {
                return err("expected `)`", c.rest_span());
            }
            n
        };
        c.skip_ws();
        let op = if c.eat(">=") {
            Op::Ge
        } else if c.eat("<=") {
            Op::Le
        } else if c.eat(">") {
            Op::Gt
        } else if c.eat("<") {
            Op::Lt
        } else {
            return err(
                "expected a comparison (`>`, `>=`, `<` or `<=`)",
                c.rest_span(),
            );
        };
        c.skip_ws();
        let (num, nspan) =
            c.take_while(|ch| ch.is_ascii_digit() || ch == '.' || ch == '-' || ch == '+');
        let number: f64 = match num.parse() {
            Ok(n) if f64::is_finite(n) => n,
            _ => {
                let at = if num.is_empty() { c.rest_span() } else { nspan };
                return err("expected a number", at);
            }
        };
        c.skip_ws();
        let threshold = if c.eat("%") {
            c.skip_ws();
            let (of, ospan) = c.take_while(is_name_char);
            if of != "of" {
                let at = if of.is_empty() { c.rest_span() } else { ospan };
                return err("expected `of NAME` after a percentage", at);
            }
            c.skip_ws();
            Threshold::Percent(number, series_name(&mut c)?)
        } else {
            let (unit, uspan) = c.take_while(|ch| ch.is_ascii_alphabetic());
            if unit.is_empty() {
                Threshold::Number(number)
            } else {
                match UNITS.iter().find(|(u, _)| *u == unit) {
                    Some((_, f)) => Threshold::Number(number * f),
                    None => {
                        return err(
                            format!(
                                "unknown unit `{unit}` (use {})",
                                UNITS.iter().map(|(u, _)| *u).collect::<Vec<_>>().join(", ")
                            ),
                            uspan,
                        )
                    }
                }
            }
        };
        c.skip_ws();
        if c.i < text.len() {
            return err("unexpected text after the condition", c.i..text.len());
        }
        Ok(Condition {
            name,
            stat,
            op,
            threshold,
        })
    }

    /// The reading this condition compares, for `series` (whose previous counter total, if
    /// any, was `previous` raw parts `elapsed` seconds ago). `None` when there is none yet.
    pub fn reading(&self, series: SeriesRef<'_>, previous: Option<(u64, f64)>) -> Option<f64> {
        match (series.value(), self.stat) {
            (Value::Gauge(g), Stat::Value) => Some(*g),
            (Value::Counter(c), Stat::Value) => Some(series.descriptor().counter_value(*c)),
            (Value::Counter(c), Stat::Rate) => {
                let (prev, secs) = previous?;
                if secs <= 0.0 || *c < prev {
                    return None;
                }
                Some((c - prev) as f64 / series.descriptor().divisor() as f64 / secs)
            }
            (Value::Timing(d), Stat::Quantile(q)) => d.quantile(q),
            _ => None,
        }
    }

    /// Whether `reading` meets the condition in `snapshot` (which gives `%` its base).
    pub fn holds(&self, reading: f64, snapshot: &Snapshot) -> bool {
        let limit = match &self.threshold {
            Threshold::Number(n) => *n,
            Threshold::Percent(p, of) => {
                let Some(base) = snapshot.named(of).next() else {
                    return false;
                };
                match base.value() {
                    Value::Gauge(g) => g * p / 100.0,
                    Value::Counter(c) => base.descriptor().counter_value(*c) * p / 100.0,
                    _ => return false,
                }
            }
        };
        self.op.holds(reading, limit)
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.stat {
            Stat::Value => write!(f, "{}", self.name)?,
            Stat::Rate => write!(f, "rate({})", self.name)?,
            Stat::Quantile(q) => write!(f, "p{}({})", (q * 100.0).round(), self.name)?,
        }
        write!(f, " {} ", self.op.as_str())?;
        match &self.threshold {
            Threshold::Number(n) => write!(f, "{n}"),
            Threshold::Percent(p, of) => write!(f, "{p}% of {of}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn units_and_forms() {
        let c = Condition::parse("process.memory.usage > 1.5 GiB").unwrap();
        assert_eq!(
            c.threshold,
            Threshold::Number(1.5 * 1024.0 * 1024.0 * 1024.0)
        );
        assert_eq!(c.op, Op::Gt);
        let c = Condition::parse("process.memory.usage >= 70% of system.memory.limit").unwrap();
        assert_eq!(
            c.threshold,
            Threshold::Percent(70.0, "system.memory.limit".into())
        );
        let c = Condition::parse("rate(process.cpu.time) > 0.5").unwrap();
        assert_eq!(c.stat, Stat::Rate);
        let c = Condition::parse(" p90( http.server.duration )<=20ms").unwrap();
        assert_eq!(c.stat, Stat::Quantile(0.9));
        assert_eq!(c.threshold, Threshold::Number(0.02));
    }

    #[test]
    fn errors_point_at_the_problem() {
        let e = Condition::parse("a.b > 3 parsecs").unwrap_err();
        assert!(e.message.starts_with("unknown unit `parsecs`"), "{e}");
        assert_eq!(e.at, 8..15);
        let e = Condition::parse("a.b = 3").unwrap_err();
        assert!(e.message.starts_with("expected a comparison"), "{e}");
        assert_eq!(e.at.start, 4);
        let e = Condition::parse("p42(a) > 1").unwrap_err();
        assert_eq!(e.at, 0..3);
        let e = Condition::parse("a > 5 % of").unwrap_err();
        assert_eq!(e.message, "expected a series name");
        let e = Condition::parse("a > 5 7").unwrap_err();
        assert_eq!(e.at, 6..7);
        assert!(Condition::parse("").is_err());
        assert!(Condition::parse("a > inf").is_err());
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            if let Err(e) = Condition::parse(&s) {
                prop_assert!(e.at.start <= e.at.end && e.at.end <= s.len());
            }
        }

        #[test]
        fn never_panics_near_valid(
            f in "(rate|p99|p5|)",
            p in "[()]{0,2}",
            op in "(>|>=|<|<=|=|)",
            n in "[0-9.+-]{0,5}",
            u in "( ?(GiB|KiB|%|% of x|ms|zz)|)",
        ) {
            let s = format!("{f}{p}a.b{p} {op} {n}{u}");
            if let Ok(c) = Condition::parse(&s) {
                // What parses prints back to something that parses to the same.
                prop_assert_eq!(Condition::parse(&c.to_string()).ok(), Some(c));
            }
        }
    }
}
