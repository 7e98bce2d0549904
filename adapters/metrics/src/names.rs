//! Mapping of the `metrics` facade's free-form names and label keys onto the naming rules of
//! `spec/sampler-api.md` §4.

use sampler_api::{validate_label_key, validate_name};

/// Longest metric name allowed (bytes).
const NAME_MAX: usize = 255;
/// Longest label key allowed (bytes).
const KEY_MAX: usize = 128;

/// Maps a free-form metric name to a valid dotted name.
///
/// ASCII letters are lowered; `.` separates segments; every other character becomes `_`;
/// leading `_` of a segment and empty segments are dropped; a name starting with a digit gets
/// `m_` before it; a name in the reserved `sampler.*` space goes under `metrics.`; an empty
/// result is `metrics.unnamed`; the result is cut to 255 bytes.
///
/// ```
/// use sampler_adapter_metrics::sanitize_name;
/// assert_eq!(sanitize_name("http_requests_total"), "http_requests_total");
/// assert_eq!(sanitize_name("HTTP.Requests-Total"), "http.requests_total");
/// assert_eq!(sanitize_name("db::pool/wait ms"), "db__pool_wait_ms");
/// assert_eq!(sanitize_name("..2xx..count"), "m_2xx.count");
/// assert_eq!(sanitize_name("sampler.harvests"), "metrics.sampler.harvests");
/// assert_eq!(sanitize_name("¿?"), "metrics.unnamed");
/// ```
pub fn sanitize_name(name: &str) -> String {
    let mut segments: Vec<String> = Vec::new();
    for raw in name.split('.') {
        let seg: String = raw.chars().map(map_char).collect();
        let seg = seg.trim_start_matches('_');
        if !seg.is_empty() {
            segments.push(seg.to_string());
        }
    }
    if segments.is_empty() {
        return "metrics.unnamed".to_string();
    }
    if segments[0].starts_with(|c: char| c.is_ascii_digit()) {
        segments[0].insert_str(0, "m_");
    }
    if segments[0] == "sampler" {
        segments.insert(0, "metrics".to_string());
    }
    let mut out = segments.join(".");
    if out.len() > NAME_MAX {
        out.truncate(NAME_MAX); // ASCII only: any byte index is a char boundary
        while out.ends_with('.') {
            out.pop();
        }
    }
    if validate_name(&out).is_err() {
        // Not reachable by the rules above; kept so a bad name can never reach a family.
        return "metrics.unnamed".to_string();
    }
    out
}

/// Maps a free-form label key to a valid key (`[a-z_][a-z0-9_]*`, not `__…`, at most 128 bytes).
///
/// ASCII letters are lowered and every other character outside `[a-z0-9_]` becomes `_`;
/// leading `_` are dropped; a key starting with a digit gets `l_` before it; an empty result
/// is `label`.
///
/// ```
/// use sampler_adapter_metrics::sanitize_label_key;
/// assert_eq!(sanitize_label_key("status"), "status");
/// assert_eq!(sanitize_label_key("HTTP-Method"), "http_method");
/// assert_eq!(sanitize_label_key("__name__"), "name__");
/// assert_eq!(sanitize_label_key("5xx"), "l_5xx");
/// assert_eq!(sanitize_label_key(""), "label");
/// ```
pub fn sanitize_label_key(key: &str) -> String {
    let mapped: String = key
        .chars()
        .map(|c| if c == '.' { '_' } else { map_char(c) })
        .collect();
    let mut out = mapped.trim_start_matches('_').to_string();
    if out.is_empty() {
        out = "label".to_string();
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "l_");
    }
    out.truncate(KEY_MAX);
    if validate_label_key(&out).is_err() {
        return "label".to_string();
    }
    out
}

/// Sanitised keys made unique: a key that repeats an earlier one gets `_2`, `_3`, … (cut so
/// the suffix fits).
pub(crate) fn unique_keys(keys: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for key in keys {
        let mut candidate = key.clone();
        let mut n = 2u32;
        while out.contains(&candidate) {
            let suffix = format!("_{n}");
            let mut base = key.clone();
            base.truncate(KEY_MAX - suffix.len());
            candidate = base + &suffix;
            n += 1;
        }
        out.push(candidate);
    }
    out
}

fn map_char(c: char) -> char {
    match c {
        'a'..='z' | '0'..='9' | '_' | '.' => c,
        'A'..='Z' => c.to_ascii_lowercase(),
        _ => '_',
    }
}
