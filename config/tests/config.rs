//! The config file as a user meets it: every error class names the key, its line and column;
//! exporters selected by kind, custom kinds included, get exactly the series their filters
//! let through; and no input makes the loader panic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use sampler_api::{Descriptor, ExportError, Exporter, Harvester, Registry, Snapshot, Value};
use sampler_config::{
    inventory, Config, ConfigError, ExporterKind, PlannedExporter, Settings, SettingsError,
};

/// What each `test-sink` exporter received, by its `id` setting.
fn sinks() -> &'static Mutex<HashMap<String, Vec<Arc<Snapshot>>>> {
    static SINKS: OnceLock<Mutex<HashMap<String, Vec<Arc<Snapshot>>>>> = OnceLock::new();
    SINKS.get_or_init(Default::default)
}

#[derive(serde::Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
struct SinkSettings {
    id: String,
    #[serde(default)]
    limit: Option<u32>,
}

struct Sink(String);

impl Exporter for Sink {
    fn name(&self) -> &str {
        "test-sink"
    }
    fn export(&mut self, s: Arc<Snapshot>) -> Result<(), ExportError> {
        sinks()
            .lock()
            .unwrap()
            .entry(self.0.clone())
            .or_default()
            .push(s);
        Ok(())
    }
}

fn sink(s: &Settings<'_>) -> Result<PlannedExporter, SettingsError> {
    let c: SinkSettings = s.parse()?;
    if c.limit == Some(0) {
        return Err(s.error("limit", "invalid limit 0: must be at least 1"));
    }
    Ok(PlannedExporter::new(format!("{c:?}"), move || {
        Ok(Box::new(Sink(c.id.clone())) as Box<dyn Exporter>)
    }))
}

// A custom kind, registered exactly as a crate of its own would register it.
inventory::submit! { ExporterKind::new("test-sink", sink) }

fn env(name: &str) -> Option<String> {
    match name {
        "REGION" => Some("eu-west".into()),
        "PORT" => Some("9100".into()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse_with_env("sampler.toml", text, &env)
}

fn errors(text: &str) -> ConfigError {
    match parse(text) {
        Ok(c) => panic!("expected errors, got {c:?}"),
        Err(e) => e,
    }
}

/// The one diagnostic's message, line and column.
fn only(text: &str) -> (String, usize, usize, Option<String>) {
    let e = errors(text);
    assert_eq!(e.diagnostics.len(), 1, "{e}");
    let d = &e.diagnostics[0];
    let (line, col) = e.line_col(d.span.clone().expect("a span").start);
    (d.message.clone(), line, col, d.hint.clone())
}

#[test]
fn r14_unknown_keys_name_the_key_line_column_and_the_closest_key() {
    let (m, l, c, h) = only("[harvest]\ninterval = \"1s\"\n  intervl = \"2s\"\n");
    assert_eq!(m, "unknown key `intervl` in [harvest]");
    assert_eq!((l, c), (3, 3));
    assert_eq!(h.as_deref(), Some("did you mean `interval`?"));

    let (m, l, c, h) = only("[[exporter]]\nkind = \"test-sink\"\nid = \"a\"\nlimt = 3\n");
    assert_eq!(m, "unknown key `limt` in exporter test-sink");
    assert_eq!((l, c), (4, 1));
    assert_eq!(h.as_deref(), Some("did you mean `limit`?"));

    let (m, l, c, h) = only("[harvset]\n");
    assert_eq!(m, "unknown key `harvset` in the file");
    assert_eq!((l, c), (1, 2));
    assert_eq!(h.as_deref(), Some("did you mean `harvest`?"));
}

#[test]
fn r14_wrong_types_and_bad_values_point_at_the_value() {
    let (m, l, c, _) = only("[harvest]\ninterval = 10\n");
    assert_eq!(m, "`interval` in [harvest] must be a string, not integer");
    assert_eq!((l, c), (2, 12));

    let (m, l, c, h) = only("[harvest]\ninterval = \"10 parsecs\"\n");
    assert!(
        m.starts_with("invalid duration \"10 parsecs\" for `interval` in [harvest]"),
        "{m}"
    );
    assert_eq!((l, c), (2, 12));
    assert!(h.unwrap().contains("\"10s\""));

    let (m, _, _, _) = only("[harvest]\ninterval = \"900y\"\n");
    assert_eq!(
        m,
        "`interval` in [harvest] must be between 1ms and 24h, not 900years"
    );

    let (m, l, c, _) = only("[harvest]\nqueue_depth = 100000\n");
    assert_eq!(
        m,
        "`queue_depth` in [harvest] must be from 1 to 1024, not 100000"
    );
    assert_eq!((l, c), (2, 15));

    let (m, l, c, _) = only("[[exporter]]\nkind = \"test-sink\"\nid = 7\n");
    assert_eq!(
        m,
        "invalid type: integer `7`, expected a string in exporter test-sink"
    );
    assert_eq!((l, c), (3, 6));

    let (m, l, c, _) = only("[[exporter]]\nkind = \"test-sink\"\nid = \"a\"\nlimit = 0\n");
    assert_eq!(
        m,
        "invalid limit 0: must be at least 1 in exporter test-sink"
    );
    assert_eq!((l, c), (4, 1));

    let (m, l, c, _) =
        only("[[exporter]]\nkind = \"test-sink\"\nid = \"a\"\ninclude = [\"http.{a,b\"]\n");
    assert!(
        m.starts_with("invalid glob \"http.{a,b\" in `include` of exporter test-sink"),
        "{m}"
    );
    assert_eq!((l, c), (4, 12));

    let (m, _, _, _) =
        only("[[exporter]]\nkind = \"test-sink\"\nid = \"a\"\nprefix = \"My-App\"\n");
    assert!(
        m.starts_with("invalid prefix \"My-App\" in exporter test-sink"),
        "{m}"
    );

    let (m, _, _, _) =
        only("[[exporter]]\nkind = \"test-sink\"\nid = \"a\"\nlabels = { Region = \"x\" }\n");
    assert!(m.starts_with("invalid label key \"Region\""), "{m}");
}

#[test]
fn r14_an_unknown_kind_lists_the_kinds_this_binary_has() {
    let (m, l, c, h) = only("[[exporter]]\nkind = \"test-snik\"\n");
    assert_eq!(m, "unknown exporter kind \"test-snik\"");
    assert_eq!((l, c), (2, 8));
    let h = h.unwrap();
    assert!(h.starts_with("did you mean `test-sink`?"), "{h}");
    assert!(h.contains("test-sink"), "{h}");

    let (m, _, _, h) = only("[[exporter]]\nkind = \"zzz\"\n");
    assert_eq!(m, "unknown exporter kind \"zzz\"");
    assert_eq!(
        h.unwrap(),
        format!(
            "this binary has the kinds {}",
            sampler_config::exporter_kinds().join(", ")
        )
    );

    let (m, _, _, _) = only("[[exporter]]\nname = \"x\"\n");
    assert_eq!(m, "exporter #1 has no `kind`");

    let (m, _, _, _) = only("[adapters.nope]\n");
    assert_eq!(m, "unknown adapter `nope`");
}

#[test]
fn r14_environment_variables_expand_in_string_values_only() {
    let c = parse(
        "# a comment with ${NOT_SET} is left alone\n\
         [labels]\n\
         region = \"${REGION}\"\n\
         zone = \"${ZONE:-a}\"\n\
         price = \"$$5 and $x\"\n\
         [[exporter]]\n\
         kind = \"test-sink\"\n\
         id = \"port-${PORT}\"\n",
    )
    .unwrap();
    // Tables are read in key order.
    assert_eq!(
        c.labels,
        vec![
            ("price".to_owned(), "$5 and $x".to_owned()),
            ("region".to_owned(), "eu-west".to_owned()),
            ("zone".to_owned(), "a".to_owned()),
        ]
    );
    assert!(format!("{:?}", c.exporters[0]).contains("port-9100"));

    let (m, l, c, _) = only("[labels]\nhost = \"node-${HOSTNAME_UNSET}\"\n");
    assert_eq!(
        m,
        "environment variable HOSTNAME_UNSET is not set (use `${HOSTNAME_UNSET:-default}` for a default)"
    );
    // The column of `${`, not of the string.
    assert_eq!((l, c), (2, 14));

    let (m, _, _, _) = only("[labels]\nt = \"${TOKEN:?set TOKEN in the service unit}\"\n");
    assert_eq!(
        m,
        "environment variable TOKEN is not set: set TOKEN in the service unit"
    );
}

#[test]
fn r14_every_error_of_a_file_comes_at_once_in_file_order() {
    let e = errors(
        "[harvest]\n\
         intervl = \"1s\"\n\
         queue_depth = 0\n\
         [[exporter]]\n\
         kind = \"nope\"\n\
         [[exporter]]\n\
         kind = \"test-sink\"\n\
         id = \"${UNSET}\"\n",
    );
    let lines: Vec<usize> = e
        .diagnostics
        .iter()
        .map(|d| e.line_col(d.span.clone().unwrap().start).0)
        .collect();
    assert_eq!(lines, vec![2, 3, 5, 8], "{e}");
    let text = e.to_string();
    assert_eq!(text.matches("error: ").count(), 4, "{text}");
    assert!(text.contains(" --> sampler.toml:5:8\n"), "{text}");
}

#[test]
fn r14_syntax_errors_have_a_line_and_column() {
    let e = errors("[harvest\ninterval = \"1s\"\n");
    let d = &e.diagnostics[0];
    assert!(d.message.starts_with("invalid TOML: "), "{}", d.message);
    assert_eq!(e.line_col(d.span.clone().unwrap().start).0, 1);
    let text = e.to_string();
    assert!(text.contains("sampler.toml:1:"), "{text}");
    assert!(text.contains("^"), "{text}");
}

/// A series as a test compares it: name, labels, value.
type Row = (String, Vec<(String, String)>, Value);

#[test]
fn r14_two_exporters_of_one_kind_get_the_names_and_series_their_filters_choose() {
    static HTTP: Descriptor = Descriptor::counter("http.requests", "1", "requests");
    static DB: Descriptor = Descriptor::counter("db.queries", "1", "queries");
    let c = parse(
        r#"
[labels]
region = "${REGION}"

[[exporter]]
kind = "test-sink"
name = "http-only"
id = "route-http"
include = ["http.*"]
match = { route = "/api/*" }
prefix = "web"

[[exporter]]
kind = "test-sink"
name = "db-renamed"
id = "route-db"
include = ["db.*"]
rename = { "db.queries" = "database.statements" }
labels = { team = "data" }

[[exporter]]
kind = "test-sink"
name = "everything-but-self"
id = "route-all"
exclude = ["sampler.*"]
"#,
    )
    .unwrap();
    assert_eq!(c.exporters.len(), 3);
    let registry = Registry::new();
    let http = registry.counter_family(&HTTP, &["route"]);
    let db = registry.counter(&DB);
    http.get(&["/api/users"]).add(3);
    http.get(&["/health"]).add(5);
    db.add(7);
    let mut b = Harvester::builder().registry(registry.clone());
    for e in &c.exporters {
        b = b.boxed_exporter(e.build().unwrap());
    }
    let h = b.build();
    let all = h.harvest_now();
    // The harvester names each exporter by its configured name.
    for name in ["http-only", "db-renamed", "everything-but-self"] {
        assert!(
            all.find("sampler.exporter.dropped", &[("exporter", name)])
                .is_some(),
            "{name}"
        );
    }
    h.shutdown(Duration::from_secs(5)).unwrap();
    let got = sinks().lock().unwrap();
    let series = |id: &str| -> Vec<Row> {
        got[id][0]
            .series()
            .map(|s| {
                (
                    s.descriptor().name().to_owned(),
                    s.labels()
                        .iter()
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect(),
                    s.value().clone(),
                )
            })
            .collect()
    };
    let l = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        series("route-http"),
        vec![(
            "web.http.requests".to_owned(),
            l(&[("route", "/api/users"), ("region", "eu-west")]),
            Value::Counter(3)
        )]
    );
    assert_eq!(
        series("route-db"),
        vec![(
            "database.statements".to_owned(),
            l(&[("region", "eu-west"), ("team", "data")]),
            Value::Counter(7)
        )]
    );
    let all = series("route-all");
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(all.iter().all(|(n, _, _)| !n.starts_with("sampler.")));
}

#[test]
fn r14_two_exporters_of_one_name_are_an_error() {
    let e = errors(
        "[[exporter]]\nkind = \"test-sink\"\nid = \"a\"\n[[exporter]]\nkind = \"test-sink\"\nid = \"b\"\n",
    );
    assert_eq!(
        e.diagnostics[0].message,
        "two exporters are named \"test-sink\" (the first at line 1)"
    );
}

#[test]
fn r14_a_file_is_read_only_when_it_is_a_regular_file_of_bounded_size() {
    let dir = std::env::temp_dir().join(format!("sampler-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let big = dir.join("big.toml");
    std::fs::write(
        &big,
        vec![b'#'; (sampler_config::MAX_FILE_SIZE + 1) as usize],
    )
    .unwrap();
    let e = Config::load(&big).unwrap_err();
    assert!(
        e.to_string()
            .contains("more than the 1048576 a config file may have"),
        "{e}"
    );
    let e = Config::load(&dir).unwrap_err();
    assert!(e.to_string().contains("not a regular file"), "{e}");
    let e = Config::load(&dir.join("absent.toml")).unwrap_err();
    assert!(e.to_string().contains("failed to read config file"), "{e}");
    let fifo = dir.join("fifo.toml");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path we own.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } == 0 {
        let started = std::time::Instant::now();
        let e = Config::load(&fifo).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A valid file to mutate.
const SEED: &str = r#"
[harvest]
interval = "10s"
sampler_budget = "250ms"
queue_depth = 8
self_metrics = true

[labels]
env = "${DEPLOY:-dev}"

[[exporter]]
kind = "test-sink"
name = "a"
id = "fuzz"
include = ["http.*", "db.*"]
exclude = ["http.debug.*"]
match = { route = "/api/*" }
prefix = "app"
rename = { "db.queries" = "db.statements" }
labels = { team = "web" }

[adapters]
"#;

/// Small, deterministic random numbers (no dependency, the same inputs every run).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&str] = &[
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "=",
    "\"",
    "'",
    "\"\"\"",
    ",",
    "\n",
    "#",
    "${",
    "}",
    "$$",
    "${X:-",
    "${X:?",
    ".",
    "-",
    "1e999",
    "nan",
    "-0",
    "0x",
    "true",
    "1979-05-27T07:32:00Z",
    "kind",
    "exporter",
    "harvest",
    "adapters",
    "labels",
    "interval",
    "\u{0}",
    "\u{7f}",
    "é",
    "\\u0000",
    "\\",
    "[[exporter]]\nkind = \"test-sink\"\nid = \"z\"\n",
    "[adapters.x]",
    "include = [\"[\"]",
    "queue_depth = -1",
    "interval = \"0s\"",
];

#[test]
fn r14_no_generated_or_mutated_file_makes_the_loader_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut ran = 0u64;
    let mut accepted = 0u64;
    for _ in 0..100_000 {
        let mut text = SEED.as_bytes().to_vec();
        for _ in 0..1 + rng.below(6) {
            let at = rng.below(text.len() + 1);
            match rng.below(4) {
                0 => {
                    let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                    text.splice(at..at, t.iter().copied());
                }
                1 if at < text.len() => {
                    let end = (at + 1 + rng.below(12)).min(text.len());
                    text.drain(at..end);
                }
                2 if at < text.len() => text[at] = rng.next() as u8,
                _ => {
                    // Splice a random run of the seed elsewhere.
                    let from = rng.below(SEED.len());
                    let to = (from + rng.below(40)).min(SEED.len());
                    text.splice(at..at, SEED.as_bytes()[from..to].iter().copied());
                }
            }
        }
        // The loader takes text: invalid UTF-8 is refused before it (as `Config::load` does).
        let text = String::from_utf8_lossy(&text);
        ran += 1;
        match parse(&text) {
            Ok(_) => accepted += 1,
            Err(e) => {
                assert!(!e.diagnostics.is_empty());
                // Rendering must not panic either, whatever the spans.
                let _ = e.to_string();
            }
        }
    }
    println!(
        "loader fuzz: {ran} inputs, {accepted} accepted, {} rejected",
        ran - accepted
    );
    assert_eq!(ran, 100_000);
    assert!(accepted > 0 && accepted < ran, "{accepted}");
}
