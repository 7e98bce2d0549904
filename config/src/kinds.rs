//! Exporter and adapter kinds, selected by name in the file. A crate registers a kind once
//! with `inventory`; every binary that links the crate can then select it in `kind = "..."`
//! (exporters) or `[adapters.NAME]` (adapters), exactly like a built-in one.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use sampler_api::{Exporter, Sampler};
use serde::de::{DeserializeOwned, IntoDeserializer};
use toml::de::DeValue;
use toml::Spanned;

use crate::diagnostic::{did_you_mean, Diagnostic};

/// Any error a kind's `build` returns.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

type BuildExporter = dyn Fn() -> Result<Box<dyn Exporter>, BoxError> + Send + Sync;
type BuildSamplers = dyn Fn() -> Result<Vec<Arc<dyn Sampler>>, BoxError> + Send + Sync;

/// The settings of one `[[exporter]]` table (without the keys every exporter shares) or one
/// `[adapters.NAME]` table, handed to the kind to check.
pub struct Settings<'a> {
    pub(crate) what: String,
    pub(crate) value: Spanned<DeValue<'a>>,
    pub(crate) keys: BTreeMap<String, Range<usize>>,
}

impl fmt::Debug for Settings<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("what", &self.what)
            .finish()
    }
}

impl Settings<'_> {
    /// Deserialises the settings into the kind's own config type. Give the type
    /// `#[serde(deny_unknown_fields)]` so a misspelt key is an error with a suggestion.
    ///
    /// ```
    /// # use sampler_config::{Config, ExporterKind, PlannedExporter, Settings, SettingsError};
    /// #[derive(serde::Deserialize, Debug, Clone)]
    /// #[serde(deny_unknown_fields)]
    /// struct FileSettings { path: String }
    ///
    /// fn plan(s: &Settings<'_>) -> Result<PlannedExporter, SettingsError> {
    ///     let c: FileSettings = s.parse()?;
    ///     if c.path.is_empty() {
    ///         return Err(s.error("path", "path must not be empty"));
    ///     }
    ///     Ok(PlannedExporter::new(format!("{c:?}"), move || {
    ///         Err(format!("not built in this example: {}", c.path).into())
    ///     }))
    /// }
    /// sampler_config::inventory::submit! { ExporterKind::new("doc-file", plan) }
    ///
    /// let c = Config::parse("s.toml", "[[exporter]]\nkind = \"doc-file\"\npath = \"/tmp/x\"\n")?;
    /// assert_eq!(c.exporters[0].kind, "doc-file");
    /// let e = Config::parse("s.toml", "[[exporter]]\nkind = \"doc-file\"\npth = \"/tmp/x\"\n").unwrap_err();
    /// assert!(e.to_string().contains("did you mean `path`?"), "{e}");
    /// # Ok::<(), sampler_config::ConfigError>(())
    /// ```
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, SettingsError> {
        T::deserialize(self.value.clone().into_deserializer()).map_err(|e| {
            let message = match unknown_field(e.message()) {
                Some(field) => format!("unknown key `{field}` in {}", self.what),
                None => format!("{} in {}", tidy(e.message()), self.what),
            };
            let mut d = Diagnostic::new(message, e.span().or_else(|| Some(self.value.span())));
            if let Some(hint) = unknown_field_hint(e.message()) {
                d = d.hint(hint);
            }
            SettingsError(d)
        })
    }

    /// An error about one key's value, pointing at the key (or at the table when the key is
    /// absent).
    pub fn error(&self, key: &str, message: impl fmt::Display) -> SettingsError {
        let span = self
            .keys
            .get(key)
            .cloned()
            .unwrap_or_else(|| self.value.span());
        SettingsError(Diagnostic::new(
            format!("{message} in {}", self.what),
            Some(span),
        ))
    }

    /// An error from a kind's own validation, pointing at the first key of this table that
    /// the message names (`percentiles must be ...` points at `percentiles`), else the table.
    pub fn invalid(&self, message: impl fmt::Display) -> SettingsError {
        let message = message.to_string();
        let key = message
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .find(|w| self.keys.contains_key(*w))
            .unwrap_or("")
            .to_owned();
        self.error(&key, message)
    }

    /// The settings as a plain TOML value (for comparing two versions of a file).
    pub(crate) fn plain(&self) -> toml::Value {
        <toml::Value as serde::Deserialize>::deserialize(self.value.clone().into_deserializer())
            .unwrap_or(toml::Value::Boolean(false))
    }
}

/// A kind rejected its settings; made by [`Settings::parse`] and [`Settings::error`].
#[derive(Debug)]
pub struct SettingsError(pub(crate) Diagnostic);

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for SettingsError {}

/// serde's messages end with a period at times and quote with backticks; keep them as they are
/// apart from the period, which our messages never end with.
fn tidy(message: &str) -> String {
    message.trim().trim_end_matches('.').to_owned()
}

/// "unknown field `adress`, ...": `adress`.
fn unknown_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("unknown field `")?
        .split_once('`')
        .map(|(f, _)| f)
}

/// "unknown field `adress`, expected one of `address`, `path`": the closest candidate.
fn unknown_field_hint(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let candidates: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    match did_you_mean(field, candidates.iter().copied()) {
        Some(c) => Some(format!("did you mean `{c}`?")),
        None if !candidates.is_empty() => Some(format!(
            "the keys of this table are {}",
            candidates
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        None => None,
    }
}

/// An exporter that passed its checks: what it will be, and how to build it (built only when
/// the pipeline starts, so `sampler check` binds no port and opens no connection).
pub struct PlannedExporter {
    pub(crate) summary: String,
    pub(crate) build: Box<BuildExporter>,
}

impl PlannedExporter {
    /// `summary` is what `sampler check` prints for it (its settings, resolved).
    pub fn new(
        summary: impl Into<String>,
        build: impl Fn() -> Result<Box<dyn Exporter>, BoxError> + Send + Sync + 'static,
    ) -> Self {
        PlannedExporter {
            summary: summary.into(),
            build: Box::new(build),
        }
    }
}

impl fmt::Debug for PlannedExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary)
    }
}

/// An adapter that passed its checks: the samplers it will register.
pub struct PlannedAdapter {
    pub(crate) summary: String,
    pub(crate) build: Box<BuildSamplers>,
}

impl PlannedAdapter {
    /// `summary` is what `sampler check` prints for it.
    pub fn new(
        summary: impl Into<String>,
        build: impl Fn() -> Result<Vec<Arc<dyn Sampler>>, BoxError> + Send + Sync + 'static,
    ) -> Self {
        PlannedAdapter {
            summary: summary.into(),
            build: Box::new(build),
        }
    }
}

impl fmt::Debug for PlannedAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary)
    }
}

/// An exporter kind, registered with `inventory::submit!` (see [`Settings::parse`]).
#[derive(Debug)]
pub struct ExporterKind {
    pub(crate) name: &'static str,
    pub(crate) plan: fn(&Settings<'_>) -> Result<PlannedExporter, SettingsError>,
}

impl ExporterKind {
    /// A kind selected by `kind = "<name>"`; `plan` checks its settings.
    pub const fn new(
        name: &'static str,
        plan: fn(&Settings<'_>) -> Result<PlannedExporter, SettingsError>,
    ) -> Self {
        ExporterKind { name, plan }
    }
}

inventory::collect!(ExporterKind);

/// An adapter kind, switched on by an `[adapters.<name>]` table.
#[derive(Debug)]
pub struct AdapterKind {
    pub(crate) name: &'static str,
    pub(crate) plan: fn(&Settings<'_>) -> Result<PlannedAdapter, SettingsError>,
    pub(crate) default_on: bool,
}

impl AdapterKind {
    /// An adapter switched on by `[adapters.<name>]`. `default_on`: whether it runs when the
    /// file has no `[adapters]` table at all (then it gets an empty table).
    pub const fn new(
        name: &'static str,
        default_on: bool,
        plan: fn(&Settings<'_>) -> Result<PlannedAdapter, SettingsError>,
    ) -> Self {
        AdapterKind {
            name,
            plan,
            default_on,
        }
    }
}

inventory::collect!(AdapterKind);

/// The names of the exporter kinds this binary has, sorted.
pub fn exporter_kinds() -> Vec<&'static str> {
    let mut v: Vec<&str> = inventory::iter::<ExporterKind>
        .into_iter()
        .map(|k| k.name)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The names of the adapter kinds this binary has, sorted.
pub fn adapter_kinds() -> Vec<&'static str> {
    let mut v: Vec<&str> = inventory::iter::<AdapterKind>
        .into_iter()
        .map(|k| k.name)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

pub(crate) fn exporter_kind(name: &str) -> Option<&'static ExporterKind> {
    inventory::iter::<ExporterKind>
        .into_iter()
        .find(|k| k.name == name)
}

pub(crate) fn adapter_kind(name: &str) -> Option<&'static AdapterKind> {
    inventory::iter::<AdapterKind>
        .into_iter()
        .find(|k| k.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_from_serde_messages() {
        assert_eq!(
            unknown_field_hint("unknown field `adress`, expected one of `address`, `path`"),
            Some("did you mean `address`?".into())
        );
        assert_eq!(
            unknown_field_hint("unknown field `zzz`, expected `path`"),
            Some("the keys of this table are `path`".into())
        );
        assert_eq!(unknown_field_hint("invalid type"), None);
    }
}
