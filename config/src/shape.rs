//! The pipeline shaping every exporter shares: which series it gets (name globs, label
//! matches), under which names (prefix, renames) and with which extra labels.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use globset::{Glob, GlobMatcher, GlobSet, GlobSetBuilder};
use sampler_api::{
    Descriptor, ExportError, Exporter, HarvestHandle, Labels, Sampler, Series, Snapshot,
};

/// How one exporter's view of each snapshot is shaped. The default passes everything as it is.
///
/// ```
/// use sampler_config::Shaping;
/// let s = Shaping::builder()
///     .include("http.*")
///     .exclude("http.debug.*")
///     .label_match("route", "/api/*")
///     .prefix("app")
///     .label("region", "eu")
///     .build()?;
/// assert!(s.wants("http.server.requests", &[("route", "/api/users")]));
/// assert!(!s.wants("http.server.requests", &[("route", "/health")]));
/// assert!(!s.wants("http.debug.hits", &[("route", "/api/x")]));
/// assert!(!s.wants("db.queries", &[]));
/// assert_eq!(s.name("http.server.requests"), "app.http.server.requests");
/// # Ok::<(), globset::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct Shaping {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
    matches: Vec<(String, GlobMatcher)>,
    prefix: Option<String>,
    rename: HashMap<String, String>,
    labels: Vec<(String, String)>,
    /// For `sampler check`: the rules as written.
    pub(crate) text: Vec<String>,
}

impl fmt::Debug for Shaping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.text).finish()
    }
}

/// Builds a [`Shaping`].
#[derive(Debug, Default)]
pub struct ShapingBuilder {
    include: Vec<String>,
    exclude: Vec<String>,
    matches: Vec<(String, String)>,
    inner: Shaping,
}

impl Shaping {
    /// A builder with nothing set.
    pub fn builder() -> ShapingBuilder {
        ShapingBuilder::default()
    }

    /// Whether this shaping changes nothing.
    pub fn is_identity(&self) -> bool {
        self.text.is_empty()
    }

    /// Whether a series of this name and labels passes the filters.
    pub fn wants(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.wants_with(name, |k| {
            labels.iter().find(|(key, _)| *key == k).map(|(_, v)| *v)
        })
    }

    fn wants_with<'a>(&self, name: &str, label: impl Fn(&str) -> Option<&'a str>) -> bool {
        if let Some(inc) = &self.include {
            if !inc.is_match(name) {
                return false;
            }
        }
        if let Some(exc) = &self.exclude {
            if exc.is_match(name) {
                return false;
            }
        }
        self.matches
            .iter()
            .all(|(k, m)| label(k).is_some_and(|v| m.is_match(v)))
    }

    /// The name a series of `name` is exported under: renamed, then prefixed.
    pub fn name(&self, name: &str) -> String {
        let base = self.rename.get(name).map_or(name, String::as_str);
        match &self.prefix {
            Some(p) => format!("{p}.{base}"),
            None => base.to_owned(),
        }
    }
}

impl ShapingBuilder {
    /// Exports only series whose name matches one of the include globs (when any is given).
    pub fn include(mut self, glob: &str) -> Self {
        self.inner.text.push(format!("include {glob}"));
        self.include.push(glob.to_owned());
        self
    }

    /// Leaves out series whose name matches the glob.
    pub fn exclude(mut self, glob: &str) -> Self {
        self.inner.text.push(format!("exclude {glob}"));
        self.exclude.push(glob.to_owned());
        self
    }

    /// Exports only series that have label `key` with a value matching the glob.
    pub fn label_match(mut self, key: &str, glob: &str) -> Self {
        self.inner.text.push(format!("match {key}={glob}"));
        self.matches.push((key.to_owned(), glob.to_owned()));
        self
    }

    /// Puts `prefix.` before every name (after renames).
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.inner.text.push(format!("prefix {prefix}"));
        self.inner.prefix = Some(prefix.to_owned());
        self
    }

    /// Exports the series named `from` as `to` (before the prefix).
    pub fn rename(mut self, from: &str, to: &str) -> Self {
        self.inner.text.push(format!("rename {from} -> {to}"));
        self.inner.rename.insert(from.to_owned(), to.to_owned());
        self
    }

    /// Adds a label to every series that does not have that key already (a series' own
    /// label wins, as with Prometheus' external labels).
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.inner.text.push(format!("label {key}={value}"));
        self.inner.labels.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The shaping, or the first glob that does not compile.
    pub fn build(mut self) -> Result<Shaping, globset::Error> {
        let set = |globs: &[String]| -> Result<Option<GlobSet>, globset::Error> {
            if globs.is_empty() {
                return Ok(None);
            }
            let mut b = GlobSetBuilder::new();
            for g in globs {
                b.add(Glob::new(g)?);
            }
            b.build().map(Some)
        };
        self.inner.include = set(&self.include)?;
        self.inner.exclude = set(&self.exclude)?;
        for (k, g) in &self.matches {
            let m = Glob::new(g)?.compile_matcher();
            self.inner.matches.push((k.clone(), m));
        }
        Ok(self.inner)
    }
}

/// Checks one glob of `include`, `exclude` or `match`: the reason it does not compile.
pub fn check_glob(glob: &str) -> Result<(), String> {
    Glob::new(glob)
        .map(|_| ())
        .map_err(|e| e.kind().to_string())
}

/// An exporter behind its shaping: it sees only the series the shaping lets through, renamed
/// and labelled; the series keep their ids, so delta cursors still work.
pub struct Shaped {
    name: String,
    inner: Box<dyn Exporter>,
    shaping: Shaping,
    /// Renamed descriptors, made once per descriptor and reused every harvest.
    descriptors: HashMap<usize, (Arc<Descriptor>, Arc<Descriptor>)>,
}

impl fmt::Debug for Shaped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shaped")
            .field("name", &self.name)
            .field("shaping", &self.shaping)
            .finish()
    }
}

impl Shaped {
    /// Wraps `inner`; `name` replaces its name in self-metrics and messages.
    pub fn new(name: String, inner: Box<dyn Exporter>, shaping: Shaping) -> Self {
        Shaped {
            name,
            inner,
            shaping,
            descriptors: HashMap::new(),
        }
    }

    fn shape(&mut self, snapshot: &Snapshot) -> Snapshot {
        // Renamed descriptors seen in this snapshot move over; the rest are forgotten, so
        // descriptors made at run time cannot grow the map.
        let mut old = std::mem::take(&mut self.descriptors);
        let series = snapshot.series().filter_map(|s| {
            let l = s.labels();
            if !self.shaping.wants_with(s.descriptor().name(), |k| l.get(k)) {
                return None;
            }
            let descriptor = self.descriptor(s.descriptor(), &mut old);
            let labels = if self.shaping.labels.iter().all(|(k, _)| l.get(k).is_some()) {
                l.to_owned()
            } else {
                let mut pairs: Vec<(&str, &str)> = l.iter().collect();
                for (k, v) in &self.shaping.labels {
                    if l.get(k).is_none() {
                        pairs.push((k, v));
                    }
                }
                // Keys were checked when the file was read.
                Labels::from_pairs(&pairs).unwrap_or_else(|_| l.to_owned())
            };
            Some(Series::new(
                s.id(),
                descriptor,
                labels,
                s.start_time(),
                s.value().clone(),
            ))
        });
        Snapshot::from_series(snapshot.time, snapshot.interval, snapshot.sequence, series)
    }

    fn descriptor(
        &mut self,
        d: &Arc<Descriptor>,
        old: &mut HashMap<usize, (Arc<Descriptor>, Arc<Descriptor>)>,
    ) -> Arc<Descriptor> {
        let key = Arc::as_ptr(d) as usize;
        if let Some((orig, renamed)) = self.descriptors.get(&key) {
            if Arc::ptr_eq(orig, d) {
                return renamed.clone();
            }
        }
        // The Arc held beside the copy keeps the address from being reused meanwhile.
        if let Some((orig, renamed)) = old.remove(&key) {
            if Arc::ptr_eq(&orig, d) {
                self.descriptors.insert(key, (orig, renamed.clone()));
                return renamed;
            }
        }
        let name = self.shaping.name(d.name());
        if name == d.name() {
            return d.clone();
        }
        let renamed = Arc::new(
            Descriptor::owned(
                name,
                d.kind(),
                d.unit().to_owned(),
                d.description().to_owned(),
            )
            .with_divisor(d.divisor()),
        );
        self.descriptors.insert(key, (d.clone(), renamed.clone()));
        renamed
    }
}

impl Exporter for Shaped {
    fn name(&self) -> &str {
        &self.name
    }

    fn export(&mut self, snapshot: Arc<Snapshot>) -> Result<(), ExportError> {
        if self.shaping.is_identity() {
            return self.inner.export(snapshot);
        }
        let shaped = Arc::new(self.shape(&snapshot));
        self.inner.export(shaped)
    }

    fn flush(&mut self, deadline: Instant) -> Result<(), ExportError> {
        self.inner.flush(deadline)
    }

    fn shutdown(&mut self, deadline: Instant) -> Result<(), ExportError> {
        self.inner.shutdown(deadline)
    }

    fn sampler(&self) -> Option<Arc<dyn Sampler>> {
        self.inner.sampler()
    }

    /// An on-demand harvest (Prometheus' `harvest_on_scrape`) would bypass the shaping, so a
    /// shaped exporter is not given the handle: it serves the periodic harvests.
    fn attach(&mut self, handle: HarvestHandle) {
        if self.shaping.is_identity() {
            self.inner.attach(handle)
        }
    }
}
