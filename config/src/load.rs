//! Reading a file into a [`Config`]: parse (keeping spans), expand environment variables in
//! string values, check every table, and collect every problem before reporting.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use sampler_api::{validate_label_key, validate_name};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::diagnostic::{did_you_mean, ConfigError, Diagnostic};
use crate::env::expand;
use crate::kinds::{adapter_kind, adapter_kinds, exporter_kind, exporter_kinds, Settings};
use crate::shape::{check_glob, Shaping};
use crate::{AdapterPlan, Config, ExporterPlan, HarvestSettings};

/// The largest config file read (a config is a few KiB; anything this large is a mistake).
pub const MAX_FILE_SIZE: u64 = 1 << 20;

const TOP: &[&str] = &["harvest", "labels", "exporter", "adapters", "action"];
const HARVEST: &[&str] = &["interval", "sampler_budget", "queue_depth", "self_metrics"];
/// The keys every `[[exporter]]` shares; the rest belong to its kind.
const SHARED: &[&str] = &[
    "kind", "name", "include", "exclude", "match", "prefix", "rename", "labels",
];
/// The longest harvest interval accepted.
const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);
const MAX_QUEUE: i64 = 1024;

pub(crate) type Table<'a> = DeTable<'a>;

pub(crate) struct Walk<'s> {
    pub(crate) source: &'s str,
    pub(crate) diagnostics: Vec<Diagnostic>,
}

impl<'s> Walk<'s> {
    pub(crate) fn error(&mut self, message: impl Into<String>, span: Range<usize>) {
        self.diagnostics.push(Diagnostic::new(message, Some(span)));
    }

    pub(crate) fn error_hint(
        &mut self,
        message: impl Into<String>,
        span: Range<usize>,
        hint: String,
    ) {
        self.diagnostics
            .push(Diagnostic::new(message, Some(span)).hint(hint));
    }

    pub(crate) fn unknown_keys(&mut self, table: &Table<'_>, known: &[&str], what: &str) {
        for (k, _) in table.iter() {
            if !known.contains(&k.get_ref().as_ref()) {
                let hint = match did_you_mean(k.get_ref(), known.iter().copied()) {
                    Some(c) => format!("did you mean `{c}`?"),
                    None => format!(
                        "the keys of {what} are {}",
                        known
                            .iter()
                            .map(|c| format!("`{c}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                };
                self.error_hint(
                    format!("unknown key `{}` in {what}", k.get_ref()),
                    k.span(),
                    hint,
                );
            }
        }
    }

    pub(crate) fn table<'v, 'a>(
        &mut self,
        v: &'v Spanned<DeValue<'a>>,
        what: &str,
    ) -> Option<&'v Table<'a>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            other => {
                self.error(
                    format!("{what} must be a table, not {}", other.type_str()),
                    v.span(),
                );
                None
            }
        }
    }

    pub(crate) fn string<'v>(
        &mut self,
        v: &'v Spanned<DeValue<'_>>,
        what: &str,
    ) -> Option<&'v str> {
        match v.get_ref() {
            DeValue::String(s) => Some(s),
            other => {
                self.error(
                    format!("{what} must be a string, not {}", other.type_str()),
                    v.span(),
                );
                None
            }
        }
    }

    fn strings(&mut self, v: &Spanned<DeValue<'_>>, what: &str) -> Vec<(String, Range<usize>)> {
        match v.get_ref() {
            DeValue::String(s) => vec![(s.to_string(), v.span())],
            DeValue::Array(a) => a
                .iter()
                .filter_map(|x| self.string(x, what).map(|s| (s.to_owned(), x.span())))
                .collect(),
            other => {
                self.error(
                    format!(
                        "{what} must be a string or a list of strings, not {}",
                        other.type_str()
                    ),
                    v.span(),
                );
                Vec::new()
            }
        }
    }

    pub(crate) fn string_map(
        &mut self,
        v: &Spanned<DeValue<'_>>,
        what: &str,
    ) -> Vec<(String, Range<usize>, String, Range<usize>)> {
        let Some(t) = self.table(v, what) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in t.iter() {
            if let Some(s) = self.string(v, &format!("the value of `{}` in {what}", k.get_ref())) {
                out.push((k.get_ref().to_string(), k.span(), s.to_owned(), v.span()));
            }
        }
        out
    }

    pub(crate) fn duration(&mut self, v: &Spanned<DeValue<'_>>, what: &str) -> Option<Duration> {
        let s = self.string(v, what)?;
        match humantime::parse_duration(s) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error_hint(
                    format!("invalid duration {s:?} for {what}: {e}"),
                    v.span(),
                    "write a number with a unit, such as \"10s\", \"500ms\" or \"1m\"".into(),
                );
                None
            }
        }
    }
}

/// Expands `${...}` in every string value, in place; errors point into the string.
fn expand_all(
    v: &mut Spanned<DeValue<'_>>,
    source: &str,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut Vec<Diagnostic>,
) {
    let span = v.span();
    match v.get_mut() {
        DeValue::String(s) => match expand(s, env) {
            Ok(x) => *s = x.into(),
            Err(e) => {
                // A basic string whose text is the value itself: point at the reference.
                let raw = source.get(span.clone()).unwrap_or("");
                let inner = raw
                    .strip_prefix('"')
                    .and_then(|r| r.strip_suffix('"'))
                    .or_else(|| raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')));
                let at = match inner {
                    Some(text) if text == s.as_ref() => {
                        span.start + 1 + e.at.start..span.start + 1 + e.at.end
                    }
                    _ => span,
                };
                out.push(Diagnostic::new(e.message, Some(at)));
            }
        },
        DeValue::Array(a) => {
            for x in a.iter_mut() {
                expand_all(x, source, env, out);
            }
        }
        DeValue::Table(t) => {
            for (_, x) in t.iter_mut() {
                expand_all(x, source, env, out);
            }
        }
        _ => {}
    }
}

pub(crate) fn parse(
    file: &str,
    source: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let fail = |diagnostics: Vec<Diagnostic>| ConfigError {
        file: file.to_owned(),
        source: source.to_owned(),
        diagnostics,
    };
    let (root, errors) = DeTable::parse_recoverable(source);
    if !errors.is_empty() {
        return Err(fail(
            errors
                .iter()
                .map(|e| {
                    Diagnostic::new(
                        format!("invalid TOML: {}", e.message().trim().trim_end_matches('.')),
                        e.span(),
                    )
                })
                .collect(),
        ));
    }
    let root_span = root.span();
    let mut root = Spanned::new(root_span, DeValue::Table(root.into_inner()));
    let mut w = Walk {
        source,
        diagnostics: Vec::new(),
    };
    expand_all(&mut root, w.source, env, &mut w.diagnostics);
    let DeValue::Table(root) = root.into_inner() else {
        unreachable!("the root was made a table above")
    };
    w.unknown_keys(&root, TOP, "the file");

    let harvest = match root.get("harvest") {
        Some(v) => harvest(&mut w, v),
        None => HarvestSettings::default(),
    };

    let mut labels = Vec::new();
    if let Some(v) = root.get("labels") {
        for (k, ks, val, _) in w.string_map(v, "[labels]") {
            if let Err(e) = validate_label_key(&k) {
                w.error(format!("{e} in [labels]"), ks);
            } else {
                labels.push((k, val));
            }
        }
    }

    let mut exporters = Vec::new();
    match root.get("exporter") {
        None => {}
        Some(v) => match v.get_ref() {
            DeValue::Array(a) => {
                for (i, t) in a.iter().enumerate() {
                    if let Some(e) = exporter(&mut w, t, i, &labels) {
                        exporters.push(e);
                    }
                }
            }
            other => w.error_hint(
                format!(
                    "`exporter` must be an array of tables, not {}",
                    other.type_str()
                ),
                v.span(),
                "write each exporter as a `[[exporter]]` table".into(),
            ),
        },
    }
    // No [[exporter]] at all: the console, as with no file (when the binary has it).
    if root.get("exporter").is_none() {
        if let Some(kind) = exporter_kind("console") {
            let s = Settings {
                what: "exporter console".to_owned(),
                value: Spanned::new(0..0, DeValue::Table(Table::new())),
                keys: BTreeMap::new(),
            };
            match (kind.plan)(&s) {
                Ok(planned) => exporters.push(ExporterPlan {
                    kind: "console".to_owned(),
                    name: "console".to_owned(),
                    shaping: Shaping::default(),
                    fingerprint: toml::Value::Array(vec![
                        toml::Value::String("console".into()),
                        s.plain(),
                    ]),
                    planned,
                    span: 0..0,
                }),
                Err(e) => w.diagnostics.push(e.0),
            }
        }
    }
    // Two exporters of one name would be told apart by a number only: say so now.
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, e) in exporters.iter().enumerate() {
        if let Some(j) = seen.insert(e.name.as_str(), i) {
            let span = e.span.clone();
            let first = &exporters[j];
            let (line, _) = crate::diagnostic::line_col(source, first.span.start);
            w.error_hint(
                format!(
                    "two exporters are named {:?} (the first at line {line})",
                    e.name
                ),
                span,
                "give each exporter of one kind its own `name`".into(),
            );
        }
    }

    let mut adapters = Vec::new();
    match root.get("adapters") {
        None => {
            // No [adapters] at all: the adapters that run by default, as with no file.
            for k in inventory::iter::<crate::kinds::AdapterKind> {
                if k.default_on && !adapters.iter().any(|a: &AdapterPlan| a.name == k.name) {
                    let value = Spanned::new(0..0, DeValue::Table(Table::new()));
                    let s = Settings {
                        what: format!("[adapters.{}]", k.name),
                        value,
                        keys: BTreeMap::new(),
                    };
                    match (k.plan)(&s) {
                        Ok(planned) => adapters.push(AdapterPlan {
                            name: k.name.to_owned(),
                            fingerprint: s.plain(),
                            planned,
                        }),
                        Err(e) => w.diagnostics.push(e.0),
                    }
                }
            }
        }
        Some(v) => {
            if let Some(t) = w.table(v, "[adapters]") {
                for (name, v) in t.iter() {
                    let Some(kind) = adapter_kind(name.get_ref()) else {
                        let kinds = adapter_kinds();
                        let hint = match did_you_mean(name.get_ref(), kinds.iter().copied()) {
                            Some(c) => format!("did you mean `{c}`?"),
                            None => format!("this binary has the adapters {}", kinds.join(", ")),
                        };
                        w.error_hint(
                            format!("unknown adapter `{}`", name.get_ref()),
                            name.span(),
                            hint,
                        );
                        continue;
                    };
                    let what = format!("[adapters.{}]", name.get_ref());
                    let Some(t) = w.table(v, &what) else { continue };
                    let s = Settings {
                        what,
                        value: v.clone(),
                        keys: t
                            .iter()
                            .map(|(k, _)| (k.get_ref().to_string(), k.span()))
                            .collect(),
                    };
                    match (kind.plan)(&s) {
                        Ok(planned) => adapters.push(AdapterPlan {
                            name: kind.name.to_owned(),
                            fingerprint: s.plain(),
                            planned,
                        }),
                        Err(e) => w.diagnostics.push(e.0),
                    }
                }
            }
        }
    }

    let actions = match root.get("action") {
        Some(v) => crate::actions::actions(&mut w, v),
        None => Vec::new(),
    };

    if !w.diagnostics.is_empty() {
        let mut d = w.diagnostics;
        d.sort_by_key(|d| d.span.as_ref().map_or(usize::MAX, |s| s.start));
        return Err(fail(d));
    }
    Ok(Config {
        file: file.to_owned(),
        harvest,
        labels,
        exporters,
        adapters,
        actions,
    })
}

fn harvest(w: &mut Walk<'_>, v: &Spanned<DeValue<'_>>) -> HarvestSettings {
    let mut h = HarvestSettings::default();
    let Some(t) = w.table(v, "[harvest]") else {
        return h;
    };
    w.unknown_keys(t, HARVEST, "[harvest]");
    if let Some(v) = t.get("interval") {
        if let Some(d) = w.duration(v, "`interval` in [harvest]") {
            if d < Duration::from_millis(1) || d > MAX_INTERVAL {
                w.error(
                    format!(
                        "`interval` in [harvest] must be between 1ms and 24h, not {}",
                        humantime::format_duration(d)
                    ),
                    v.span(),
                );
            } else {
                h.interval = d;
            }
        }
    }
    if let Some(v) = t.get("sampler_budget") {
        if let Some(d) = w.duration(v, "`sampler_budget` in [harvest]") {
            if d.is_zero() || d > MAX_INTERVAL {
                w.error(
                    "`sampler_budget` in [harvest] must be more than 0 and at most 24h",
                    v.span(),
                );
            } else {
                h.sampler_budget = Some(d);
            }
        }
    }
    if let Some(v) = t.get("queue_depth") {
        match v.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) if (1..=MAX_QUEUE).contains(&n) => h.queue_depth = n as usize,
                _ => w.error(
                    format!(
                        "`queue_depth` in [harvest] must be from 1 to {MAX_QUEUE}, not {}",
                        i.as_str()
                    ),
                    v.span(),
                ),
            },
            other => w.error(
                format!(
                    "`queue_depth` in [harvest] must be an integer, not {}",
                    other.type_str()
                ),
                v.span(),
            ),
        }
    }
    if let Some(v) = t.get("self_metrics") {
        match v.get_ref() {
            DeValue::Boolean(b) => h.self_metrics = *b,
            other => w.error(
                format!(
                    "`self_metrics` in [harvest] must be true or false, not {}",
                    other.type_str()
                ),
                v.span(),
            ),
        }
    }
    h
}

fn exporter(
    w: &mut Walk<'_>,
    v: &Spanned<DeValue<'_>>,
    index: usize,
    common: &[(String, String)],
) -> Option<ExporterPlan> {
    let t = w.table(v, "an [[exporter]]")?;
    let Some(kind_v) = t.get("kind") else {
        w.error_hint(
            format!("exporter #{} has no `kind`", index + 1),
            v.span(),
            format!("this binary has the kinds {}", exporter_kinds().join(", ")),
        );
        return None;
    };
    let kind_name = w.string(kind_v, "`kind`")?.to_owned();
    let name = match t.get("name") {
        Some(n) => w.string(n, "`name`")?.to_owned(),
        None => kind_name.clone(),
    };
    let what = if name == kind_name {
        format!("exporter {kind_name}")
    } else {
        format!("exporter {name:?} (kind {kind_name})")
    };
    let Some(kind) = exporter_kind(&kind_name) else {
        let kinds = exporter_kinds();
        let hint = match did_you_mean(&kind_name, kinds.iter().copied()) {
            Some(c) => format!("did you mean `{c}`? (this binary has {})", kinds.join(", ")),
            None => format!("this binary has the kinds {}", kinds.join(", ")),
        };
        w.error_hint(
            format!("unknown exporter kind {kind_name:?}"),
            kind_v.span(),
            hint,
        );
        return None;
    };

    // The shared pipeline keys.
    let mut shaping = Shaping::builder();
    let mut ok = true;
    for (key, add) in [("include", true), ("exclude", false)] {
        if let Some(v) = t.get(key) {
            for (g, span) in w.strings(v, &format!("`{key}` in {what}")) {
                match check_glob(&g) {
                    Ok(()) if add => shaping = shaping.include(&g),
                    Ok(()) => shaping = shaping.exclude(&g),
                    Err(e) => {
                        ok = false;
                        w.error(
                            format!("invalid glob {g:?} in `{key}` of {what}: {e}"),
                            span,
                        );
                    }
                }
            }
        }
    }
    if let Some(v) = t.get("match") {
        for (k, ks, g, gs) in w.string_map(v, &format!("`match` in {what}")) {
            if let Err(e) = validate_label_key(&k) {
                ok = false;
                w.error(format!("{e} in `match` of {what}"), ks);
            } else if let Err(e) = check_glob(&g) {
                ok = false;
                w.error(
                    format!("invalid glob {g:?} for label `{k}` in `match` of {what}: {e}"),
                    gs,
                );
            } else {
                shaping = shaping.label_match(&k, &g);
            }
        }
    }
    if let Some(v) = t.get("rename") {
        for (from, _, to, ts) in w.string_map(v, &format!("`rename` in {what}")) {
            if let Err(e) = validate_name(&to) {
                ok = false;
                w.error(format!("{e} in `rename` of {what}"), ts);
            } else {
                shaping = shaping.rename(&from, &to);
            }
        }
    }
    if let Some(v) = t.get("prefix") {
        if let Some(p) = w.string(v, &format!("`prefix` in {what}")) {
            match validate_name(p) {
                Ok(()) => shaping = shaping.prefix(p),
                Err(e) => {
                    ok = false;
                    w.error_hint(
                        format!("invalid prefix {p:?} in {what}: {e}"),
                        v.span(),
                        "a prefix is one or more dotted segments of a-z, 0-9 and _, such as \"app\"".into(),
                    );
                }
            }
        }
    }
    for (k, val) in common {
        shaping = shaping.label(k, val);
    }
    if let Some(v) = t.get("labels") {
        for (k, ks, val, _) in w.string_map(v, &format!("`labels` in {what}")) {
            if let Err(e) = validate_label_key(&k) {
                ok = false;
                w.error(format!("{e} in `labels` of {what}"), ks);
            } else {
                shaping = shaping.label(&k, &val);
            }
        }
    }

    // The kind's own settings: everything else.
    let mut own = Table::new();
    let mut keys = BTreeMap::new();
    for (k, v) in t.iter() {
        if !SHARED.contains(&k.get_ref().as_ref()) {
            keys.insert(k.get_ref().to_string(), k.span());
            own.insert(k.clone(), v.clone());
        }
    }
    let settings = Settings {
        what: what.clone(),
        value: Spanned::new(v.span(), DeValue::Table(own)),
        keys,
    };
    let planned = match (kind.plan)(&settings) {
        Ok(p) => p,
        Err(e) => {
            w.diagnostics.push(e.0);
            return None;
        }
    };
    if !ok {
        return None;
    }
    let shaping = match shaping.build() {
        Ok(s) => s,
        Err(e) => {
            w.error(format!("invalid glob in {what}: {}", e.kind()), v.span());
            return None;
        }
    };
    let fingerprint = toml::Value::Array(vec![
        toml::Value::String(kind_name.clone()),
        toml::Value::String(name.clone()),
        toml::Value::String(format!("{shaping:?}")),
        settings.plain(),
    ]);
    Some(ExporterPlan {
        kind: kind_name,
        name,
        shaping,
        planned,
        fingerprint,
        span: v.span(),
    })
}
