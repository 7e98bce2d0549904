//! The mapping from sampler's data model to Graphite's, one function per rule of
//! `spec/graphite.md` (the rule's number is in each function's doc).
//!
//! ```
//! use sampler_exporter_graphite::mapping::{sanitize_segment, sanitize_tag_value};
//! assert_eq!(sanitize_segment("GET /a b"), "GET__a_b");
//! assert_eq!(sanitize_tag_value("~a;b c"), "_a_b_c");
//! ```

use std::borrow::Cow;
use std::fmt::Write as _;

use sampler_api::LabelsRef;

/// The most bytes a path segment keeps (a whisper file name is a segment plus `.wsp`, and
/// file systems allow 255 bytes).
pub const MAX_SEGMENT: usize = 250;

fn segment_byte_ok(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// G1, path segments: every character outside `[A-Za-z0-9_-]` becomes `_` (one per
/// character), an empty segment becomes `_`, and a segment is cut to [`MAX_SEGMENT`] bytes.
///
/// So a segment never holds the separator `.`, whitespace (which splits a plaintext line),
/// `;` (which starts tags) or glob characters (`*?[]{}`) that a Graphite query would expand.
///
/// ```
/// use sampler_exporter_graphite::mapping::sanitize_segment;
/// assert_eq!(sanitize_segment("eth0"), "eth0");
/// assert_eq!(sanitize_segment("a.b"), "a_b");
/// assert_eq!(sanitize_segment(""), "_");
/// assert_eq!(sanitize_segment("día"), "d_a");
/// ```
pub fn sanitize_segment(s: &str) -> Cow<'_, str> {
    if !s.is_empty() && s.len() <= MAX_SEGMENT && s.bytes().all(segment_byte_ok) {
        return Cow::Borrowed(s);
    }
    if s.is_empty() {
        return Cow::Borrowed("_");
    }
    let mut out = String::with_capacity(s.len().min(MAX_SEGMENT));
    for c in s.chars() {
        if out.len() >= MAX_SEGMENT {
            break;
        }
        out.push(if c.is_ascii() && segment_byte_ok(c as u8) {
            c
        } else {
            '_'
        });
    }
    Cow::Owned(out)
}

/// G2, tag keys: every character outside `[A-Za-z0-9_.:-]` becomes `_`, an empty key becomes
/// `_`, and the key `name` (Graphite's own tag for the path) becomes `name_`.
///
/// Graphite forbids `;!^=` in tag keys; whitespace would split the line.
///
/// ```
/// use sampler_exporter_graphite::mapping::sanitize_tag_key;
/// assert_eq!(sanitize_tag_key("host"), "host");
/// assert_eq!(sanitize_tag_key("name"), "name_");
/// assert_eq!(sanitize_tag_key("a=b;c"), "a_b_c");
/// ```
pub fn sanitize_tag_key(s: &str) -> Cow<'_, str> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-');
    if s == "name" {
        return Cow::Borrowed("name_");
    }
    if s.is_empty() {
        return Cow::Borrowed("_");
    }
    if s.chars().all(ok) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(s.chars().map(|c| if ok(c) { c } else { '_' }).collect())
}

/// G3, tag values: every character that is not printable ASCII (`!` to `~`), and every `;`,
/// becomes `_`; a leading `~` becomes `_` (Graphite reserves it); an empty value becomes `_`.
///
/// ```
/// use sampler_exporter_graphite::mapping::sanitize_tag_value;
/// assert_eq!(sanitize_tag_value("/api/v1?x=1"), "/api/v1?x=1");
/// assert_eq!(sanitize_tag_value("a b\nc"), "a_b_c");
/// assert_eq!(sanitize_tag_value("~re"), "_re");
/// assert_eq!(sanitize_tag_value(""), "_");
/// ```
pub fn sanitize_tag_value(s: &str) -> Cow<'_, str> {
    let ok = |c: char| c.is_ascii_graphic() && c != ';';
    if s.is_empty() {
        return Cow::Borrowed("_");
    }
    if s.chars().all(ok) && !s.starts_with('~') {
        return Cow::Borrowed(s);
    }
    let mut out: String = s.chars().map(|c| if ok(c) { c } else { '_' }).collect();
    if out.starts_with('~') {
        out.replace_range(0..1, "_");
    }
    Cow::Owned(out)
}

/// G4, the dotted name (or prefix): each segment by G1, empty segments dropped, so neither
/// a prefix `a..b` nor a leading or trailing dot makes an empty path segment.
///
/// ```
/// use sampler_exporter_graphite::mapping::push_dotted;
/// let mut s = String::new();
/// push_dotted(&mut s, ".my app..web.");
/// assert_eq!(s, "my_app.web");
/// ```
pub fn push_dotted(out: &mut String, dotted: &str) {
    for seg in dotted.split('.').filter(|s| !s.is_empty()) {
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(&sanitize_segment(seg));
    }
}

/// G5, tagged series: `;key=value` for every label, keys by G2 and values by G3, in key
/// order (the order Graphite normalises to).
///
/// ```
/// use sampler_api::Labels;
/// use sampler_exporter_graphite::mapping::tag_suffix;
/// let l = Labels::from_pairs(&[("path", "/a b"), ("method", "GET")]).unwrap();
/// assert_eq!(tag_suffix(l.view()), ";method=GET;path=/a_b");
/// ```
pub fn tag_suffix(labels: LabelsRef<'_>) -> String {
    let mut pairs: Vec<(Cow<'_, str>, Cow<'_, str>)> = labels
        .iter()
        .map(|(k, v)| (sanitize_tag_key(k), sanitize_tag_value(v)))
        .collect();
    pairs.sort();
    pairs.dedup_by(|a, b| a.0 == b.0);
    let mut out = String::new();
    for (k, v) in pairs {
        let _ = write!(out, ";{k}={v}");
    }
    out
}

/// One item of a path template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Item {
    Name,
    Tags,
    Label(String),
}

/// G6, a path template (`tags = "template"`): dot-separated items, each `name` (the metric
/// name), `tags` (the values of every label not named elsewhere in the template, in key
/// order) or a label key (that label's value, left out when the series has no such label).
/// `name` appears exactly once. Label values become segments by G1.
///
/// ```
/// use sampler_api::Labels;
/// use sampler_exporter_graphite::mapping::Template;
/// let t = Template::parse("host.name.tags")?;
/// let l = Labels::from_pairs(&[("host", "web-1"), ("method", "GET"), ("code", "200")]).unwrap();
/// let mut path = String::new();
/// t.render(&mut path, "http.server.duration", l.view());
/// assert_eq!(path, "web-1.http.server.duration.200.GET");
/// # Ok::<(), String>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    items: Vec<Item>,
}

impl Template {
    /// Parses a template, or says which item is wrong.
    pub fn parse(s: &str) -> Result<Template, String> {
        let mut items = Vec::new();
        for part in s.split('.') {
            items.push(match part {
                "name" => Item::Name,
                "tags" => Item::Tags,
                key if sampler_api::validate_label_key(key).is_ok() => Item::Label(key.to_owned()),
                other => {
                    return Err(format!(
                        "template item {other:?} is neither name, tags nor a label key"
                    ))
                }
            });
        }
        match items.iter().filter(|i| **i == Item::Name).count() {
            1 => Ok(Template { items }),
            n => Err(format!(
                "template {s:?} must hold name exactly once, holds it {n} times"
            )),
        }
    }

    /// Appends the path of one series (without prefix) to `out`.
    pub fn render(&self, out: &mut String, name: &str, labels: LabelsRef<'_>) {
        for item in &self.items {
            match item {
                Item::Name => push_dotted(out, name),
                Item::Label(k) => {
                    if let Some(v) = labels.get(k) {
                        push_segment(out, v);
                    }
                }
                Item::Tags => {
                    let mut rest: Vec<(&str, &str)> = labels
                        .iter()
                        .filter(|(k, _)| {
                            !self
                                .items
                                .iter()
                                .any(|i| matches!(i, Item::Label(l) if l == k))
                        })
                        .collect();
                    rest.sort();
                    for (_, v) in rest {
                        push_segment(out, v);
                    }
                }
            }
        }
    }
}

fn push_segment(out: &mut String, v: &str) {
    if !out.is_empty() {
        out.push('.');
    }
    out.push_str(&sanitize_segment(v));
}

/// G7, the suffix of a timing's percentile: `p` and the percent, its decimal point as `_`
/// (`0.5` → `p50`, `0.999` → `p99_9`).
///
/// ```
/// use sampler_exporter_graphite::mapping::percentile_suffix;
/// assert_eq!(percentile_suffix(0.5), "p50");
/// assert_eq!(percentile_suffix(0.999), "p99_9");
/// assert_eq!(percentile_suffix(0.0001), "p0_01");
/// ```
pub fn percentile_suffix(q: f64) -> String {
    let s = format!("{:.6}", q * 100.0);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("p{}", s.replace('.', "_"))
}

/// A value on the wire: whole counts stay integers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Num {
    /// A whole number (counter deltas and totals with divisor 1, timing counts).
    Int(u64),
    /// Anything else; must be finite.
    Float(f64),
}

/// G8, a value: an integer in decimal, a float in the shortest form that reads back to the
/// same `f64` (`dtoa`: `0.1`, `1e300`). NaN and infinities are never written (the encoder
/// skips and counts them).
///
/// ```
/// use sampler_exporter_graphite::mapping::{push_value, Num};
/// let mut v = Vec::new();
/// push_value(&mut v, Num::Float(-2.5));
/// v.push(b' ');
/// push_value(&mut v, Num::Int(18446744073709551615));
/// assert_eq!(v, b"-2.5 18446744073709551615");
/// ```
pub fn push_value(out: &mut Vec<u8>, v: Num) {
    match v {
        Num::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes()),
        Num::Float(f) => out.extend_from_slice(dtoa::Buffer::new().format_finite(f).as_bytes()),
    }
}

/// G9, a plaintext line: `path value timestamp\n`, the timestamp in whole seconds since the
/// Unix epoch. The path is `head`, then `.suffix` when there is one, then `tail` (the tags).
///
/// ```
/// use sampler_exporter_graphite::mapping::{push_line, Num};
/// let mut out = Vec::new();
/// push_line(&mut out, "app.http.duration", Some("p99"), ";method=GET", Num::Float(0.25), 1700000000);
/// assert_eq!(out, b"app.http.duration.p99;method=GET 0.25 1700000000\n");
/// ```
pub fn push_line(
    out: &mut Vec<u8>,
    head: &str,
    suffix: Option<&str>,
    tail: &str,
    value: Num,
    timestamp: u64,
) {
    out.extend_from_slice(head.as_bytes());
    if let Some(s) = suffix {
        out.push(b'.');
        out.extend_from_slice(s.as_bytes());
    }
    out.extend_from_slice(tail.as_bytes());
    out.push(b' ');
    push_value(out, value);
    out.push(b' ');
    out.extend_from_slice(itoa::Buffer::new().format(timestamp).as_bytes());
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sampler_api::Labels;

    /// Parses a line as carbon's plaintext receiver does (split on whitespace, three fields)
    /// and a tagged path as Graphite does (split on `;`, each tag on its first `=`).
    type Parsed = (String, Vec<(String, String)>, f64, u64);

    fn parse(line: &str) -> Option<Parsed> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() != 3 {
            return None;
        }
        let mut parts = fields[0].split(';');
        let path = parts.next()?.to_owned();
        let mut tags = Vec::new();
        for t in parts {
            let (k, v) = t.split_once('=')?;
            tags.push((k.to_owned(), v.to_owned()));
        }
        Some((path, tags, fields[1].parse().ok()?, fields[2].parse().ok()?))
    }

    fn labels_strategy() -> impl Strategy<Value = Vec<(String, String)>> {
        prop::collection::btree_map("[a-z_][a-z0-9_]{0,8}", any::<String>(), 0..4).prop_map(|m| {
            m.into_iter()
                .filter(|(k, _)| !k.starts_with("__"))
                .collect()
        })
    }

    proptest! {
        #[test]
        fn segments_never_hold_separators(s in any::<String>()) {
            let out = sanitize_segment(&s);
            prop_assert!(!out.is_empty() && out.len() <= MAX_SEGMENT);
            prop_assert!(out.bytes().all(segment_byte_ok));
        }

        #[test]
        fn tag_values_never_split_a_line_or_a_tag(s in any::<String>()) {
            let out = sanitize_tag_value(&s);
            prop_assert!(!out.is_empty());
            prop_assert!(!out.starts_with('~'));
            prop_assert!(out.chars().all(|c| c.is_ascii_graphic() && c != ';'));
            // Clean values pass unchanged.
            if !s.is_empty() && !s.starts_with('~') && s.chars().all(|c| c.is_ascii_graphic() && c != ';') {
                prop_assert_eq!(out.as_ref(), s.as_str());
            }
        }

        #[test]
        fn tag_keys_are_graphite_keys(s in any::<String>()) {
            let out = sanitize_tag_key(&s);
            prop_assert!(!out.is_empty() && out != "name");
            prop_assert!(!out.contains([';', '!', '^', '=']));
            prop_assert!(out.chars().all(|c| c.is_ascii_graphic()));
        }

        /// No name, label or value can make a line that a Graphite parser splits or reads
        /// differently: exactly one line, three fields, the tags as sent, the value and the
        /// timestamp back.
        #[test]
        fn no_line_can_be_split_or_misparsed(
            prefix in any::<String>(),
            name in any::<String>(),
            labels in labels_strategy(),
            value in prop_oneof![any::<f64>().prop_filter("finite", |v| v.is_finite()).prop_map(Num::Float), any::<u64>().prop_map(Num::Int)],
            ts in any::<u32>(),
            templated in any::<bool>(),
        ) {
            let pairs: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let labels = Labels::from_pairs(&pairs).unwrap();
            let mut head = String::new();
            push_dotted(&mut head, &prefix);
            let tail = if templated {
                Template::parse("name.tags").unwrap().render(&mut head, &name, labels.view());
                String::new()
            } else {
                push_dotted(&mut head, &name);
                tag_suffix(labels.view())
            };
            if head.is_empty() {
                head.push('_');
            }
            let mut out = Vec::new();
            push_line(&mut out, &head, Some("p99"), &tail, value, ts as u64);
            let text = String::from_utf8(out).unwrap();
            prop_assert_eq!(text.matches('\n').count(), 1);
            prop_assert!(text.ends_with('\n'));
            let (path, tags, v, t) = parse(text.trim_end()).expect("parses");
            prop_assert_eq!(t, ts as u64);
            let want = match value { Num::Int(i) => i as f64, Num::Float(f) => f };
            prop_assert_eq!(v, want);
            prop_assert!(!path.split('.').any(|s| s.is_empty()), "empty segment in {}", path);
            prop_assert!(path.ends_with(".p99"));
            if templated {
                prop_assert!(tags.is_empty());
            } else {
                let mut want: Vec<(String, String)> = labels
                    .iter()
                    .map(|(k, v)| (sanitize_tag_key(k).into_owned(), sanitize_tag_value(v).into_owned()))
                    .collect();
                want.sort();
                prop_assert_eq!(tags, want);
            }
        }
    }

    #[test]
    fn template_errors_name_the_item() {
        assert_eq!(
            Template::parse("tags").unwrap_err(),
            "template \"tags\" must hold name exactly once, holds it 0 times"
        );
        assert!(Template::parse("name..tags").is_err());
        let t = Template::parse("dc.name").unwrap();
        let mut p = String::new();
        t.render(
            &mut p,
            "cpu",
            Labels::from_pairs(&[("host", "h")]).unwrap().view(),
        );
        assert_eq!(p, "cpu", "an absent label is left out, an unnamed one too");
    }
}
