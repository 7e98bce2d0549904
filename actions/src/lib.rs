//! Threshold actions: rules evaluated on every harvest against any series, which signal the
//! process a series is about, run a command, or only log (`spec/actions.md`).
//!
//! The [`Engine`] is an [`Exporter`]: it gets every snapshot on its own worker thread, so the
//! harvest itself is untouched. Each rule tracks every series it matches apart (a pool of
//! workers is one rule), fires after `for_harvests` harvests in a row above, then waits out a
//! cool-down; every firing is logged as one line and counted as `sampler.action.fired{rule}`.
//!
//! ```
//! use std::sync::Arc;
//! use sampler_actions::{Action, Engine, Rule};
//! use sampler_api::{Descriptor, Exporter, Harvester, Registry};
//!
//! static DEPTH: Descriptor = Descriptor::gauge("queue.depth", "1", "jobs waiting");
//! let registry = Registry::new();
//! let depth = registry.gauge(&DEPTH);
//! let rule = Rule::new("deep", "queue.depth > 100", Action::Log).unwrap().for_harvests(2);
//! let mut engine = Engine::new(vec![rule]);
//! let h = Harvester::builder().registry(registry).build();
//! depth.set(500.0);
//! engine.export(h.harvest_now()).unwrap();
//! assert_eq!(engine.fired("deep"), 0);
//! engine.export(h.harvest_now()).unwrap();
//! assert_eq!(engine.fired("deep"), 1);
//! ```
#![deny(missing_docs)]

mod condition;
mod run;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sampler_api::{Descriptor, ExportError, Exporter, Sampler, SeriesRef, Snapshot, Value, Writer};

pub use condition::{Condition, Op, ParseError, Stat, Threshold};

/// The longest a command may run before it is killed, unless a rule says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a rule does when it fires.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Send this signal (its number and name) to the process in the series' `pid` label.
    Signal(i32, String),
    /// Run this command with `/bin/sh -c`, the series in its environment.
    Command(String),
    /// Only log the firing.
    Log,
}

impl Action {
    /// The signal of this name (`SIGUSR1`, `USR1`, `TERM`, …), or `None`.
    ///
    /// ```
    /// use sampler_actions::Action;
    /// assert!(matches!(Action::signal("usr1"), Some(Action::Signal(_, n)) if n == "SIGUSR1"));
    /// assert!(Action::signal("SIGFOO").is_none());
    /// ```
    pub fn signal(name: &str) -> Option<Action> {
        let upper = name.to_ascii_uppercase();
        let short = upper.strip_prefix("SIG").unwrap_or(&upper);
        let n = SIGNALS.iter().find(|(s, _)| *s == short)?.1;
        Some(Action::Signal(n, format!("SIG{short}")))
    }

    /// The signal names [`Action::signal`] knows.
    pub fn signal_names() -> impl Iterator<Item = &'static str> {
        SIGNALS.iter().map(|(s, _)| *s)
    }
}

#[cfg(unix)]
const SIGNALS: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("KILL", libc::SIGKILL),
    ("TERM", libc::SIGTERM),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("ABRT", libc::SIGABRT),
    ("ALRM", libc::SIGALRM),
    ("WINCH", libc::SIGWINCH),
];
#[cfg(not(unix))]
const SIGNALS: &[(&str, i32)] = &[];

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Signal(_, n) => write!(f, "signal {n}"),
            Action::Command(c) => write!(f, "exec {c:?}"),
            Action::Log => f.write_str("log"),
        }
    }
}

/// How long a series waits after a firing before it can fire again.
///
/// ```
/// use std::time::Duration;
/// use sampler_actions::Cooldown;
/// assert_eq!(Cooldown::parse("30s"), Ok(Cooldown::Time(Duration::from_secs(30))));
/// assert_eq!(Cooldown::parse("3 harvests"), Ok(Cooldown::Harvests(3)));
/// assert_eq!(Cooldown::parse("1 harvest"), Ok(Cooldown::Harvests(1)));
/// assert_eq!(Cooldown::Harvests(3).to_string(), "3 harvests");
/// assert!(Cooldown::parse("soon").is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cooldown {
    /// Harvest time since the firing.
    Time(Duration),
    /// Harvests since the firing, by the snapshots' sequence numbers (a harvest whose
    /// snapshot the engine never got still counts).
    Harvests(u32),
}

impl Default for Cooldown {
    fn default() -> Self {
        Cooldown::Time(Duration::ZERO)
    }
}

impl Cooldown {
    /// Parses `"N harvests"` (or `"1 harvest"`) or a duration (`"30s"`, `"5m"`); the error is
    /// lower case and names the text.
    pub fn parse(s: &str) -> Result<Cooldown, String> {
        let t = s.trim();
        for unit in ["harvests", "harvest"] {
            if let Some(n) = t.strip_suffix(unit) {
                return match n.trim().parse::<u32>() {
                    Ok(n) => Ok(Cooldown::Harvests(n)),
                    Err(_) => Err(format!(
                        "invalid cooldown {s:?}: expected a whole number of harvests (\"3 harvests\")"
                    )),
                };
            }
        }
        humantime::parse_duration(t)
            .map(Cooldown::Time)
            .map_err(|e| format!("invalid cooldown {s:?}: {e}"))
    }

    /// Whether it is none at all.
    pub fn is_zero(&self) -> bool {
        matches!(self, Cooldown::Time(d) if d.is_zero()) || *self == Cooldown::Harvests(0)
    }

    /// Whether a series that fired at harvest time `at` (sequence `seq`) is still cooling
    /// down at the harvest `now`.
    fn cooling(&self, at: SystemTime, seq: u64, now: &Snapshot) -> bool {
        match *self {
            Cooldown::Time(d) => now.time.duration_since(at).unwrap_or(Duration::ZERO) < d,
            Cooldown::Harvests(n) => now.sequence.saturating_sub(seq) < u64::from(n),
        }
    }
}

impl fmt::Display for Cooldown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cooldown::Time(d) => write!(f, "{}", humantime::format_duration(*d)),
            Cooldown::Harvests(1) => f.write_str("1 harvest"),
            Cooldown::Harvests(n) => write!(f, "{n} harvests"),
        }
    }
}

/// One rule: a condition over series of one name, optional label matches, how many harvests
/// in a row, a cool-down, an optional recover condition, and an action.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// Its name: the `rule` label of `sampler.action.fired`.
    pub name: String,
    /// When it is above.
    pub condition: Condition,
    /// Label values a series must have (exact).
    pub labels: Vec<(String, String)>,
    /// Harvests in a row above before it fires (at least 1).
    pub for_harvests: u32,
    /// After a firing, none again for this series for this long (harvest time) or this many
    /// harvests.
    pub cooldown: Cooldown,
    /// When set, after a firing the series must meet this before it can fire again.
    pub recover: Option<Condition>,
    /// What to do.
    pub action: Action,
    /// How long a command may run before it is killed.
    pub timeout: Duration,
}

impl Rule {
    /// A rule firing on the first harvest above, with no cool-down.
    ///
    /// ```
    /// use sampler_actions::{Action, Rule};
    /// let r = Rule::new("big", "process.memory.usage > 1 GiB", Action::Log).unwrap();
    /// assert_eq!(r.for_harvests, 1);
    /// ```
    pub fn new(name: &str, condition: &str, action: Action) -> Result<Rule, ParseError> {
        Ok(Rule {
            name: name.to_owned(),
            condition: Condition::parse(condition)?,
            labels: Vec::new(),
            for_harvests: 1,
            cooldown: Cooldown::default(),
            recover: None,
            action,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Sets how many harvests in a row (at least 1).
    pub fn for_harvests(mut self, n: u32) -> Rule {
        self.for_harvests = n.max(1);
        self
    }

    /// Sets the cool-down as a duration of harvest time.
    pub fn cooldown(mut self, d: Duration) -> Rule {
        self.cooldown = Cooldown::Time(d);
        self
    }

    /// Sets the cool-down as a number of harvests: after a firing at harvest `k`, the series
    /// can fire again at harvest `k + n` at the earliest.
    ///
    /// ```
    /// use sampler_actions::{Action, Cooldown, Rule};
    /// let r = Rule::new("big", "a.b > 1", Action::Log).unwrap().cooldown_harvests(3);
    /// assert_eq!(r.cooldown, Cooldown::Harvests(3));
    /// assert!(r.describe().contains(", cooldown 3 harvests"));
    /// ```
    pub fn cooldown_harvests(mut self, n: u32) -> Rule {
        self.cooldown = Cooldown::Harvests(n);
        self
    }

    /// Adds a label a series must carry.
    pub fn label(mut self, key: &str, value: &str) -> Rule {
        self.labels.push((key.to_owned(), value.to_owned()));
        self
    }

    /// One line for `sampler check`.
    ///
    /// ```
    /// use sampler_actions::{Action, Rule};
    /// let r = Rule::new("big", "a.b > 1KiB", Action::Log).unwrap();
    /// assert_eq!(r.describe(), "action big: when a.b > 1024 for 1 harvest, log");
    /// ```
    pub fn describe(&self) -> String {
        let mut s = format!("action {}: when {}", self.name, self.condition);
        for (k, v) in &self.labels {
            s.push_str(&format!(" {{{k}={v:?}}}"));
        }
        s.push_str(&format!(
            " for {} harvest{}",
            self.for_harvests,
            if self.for_harvests == 1 { "" } else { "s" }
        ));
        if !self.cooldown.is_zero() {
            s.push_str(&format!(", cooldown {}", self.cooldown));
        }
        if let Some(r) = &self.recover {
            s.push_str(&format!(", recover when {r}"));
        }
        s.push_str(&format!(", {}", self.action));
        if matches!(self.action, Action::Command(_)) {
            s.push_str(&format!(
                " (timeout {})",
                humantime::format_duration(self.timeout)
            ));
        }
        s
    }

    fn matches(&self, s: SeriesRef<'_>) -> bool {
        s.descriptor().name() == self.condition.name
            && self
                .labels
                .iter()
                .all(|(k, v)| s.labels().get(k) == Some(v.as_str()))
    }
}

#[derive(Default)]
struct Track {
    above: u32,
    /// The harvest time and sequence number of the last firing.
    last_fired: Option<(SystemTime, u64)>,
    /// Fired and the recover condition not yet met.
    latched: bool,
    previous: Option<(u64, SystemTime)>,
    seen: u64,
}

static FIRED: Descriptor = Descriptor::counter("sampler.action.fired", "{firing}", "rule firings");
static FAILED: Descriptor = Descriptor::counter(
    "sampler.action.failed",
    "{failure}",
    "firings whose signal or command failed",
);

#[derive(Default)]
struct Counts {
    fired: HashMap<String, u64>,
    failed: HashMap<String, u64>,
}

struct Stats(Arc<Mutex<Counts>>);

impl Sampler for Stats {
    fn sample(&self, out: &mut Writer<'_>) {
        let c = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for (rule, n) in &c.fired {
            out.counter(&FIRED, &[("rule", rule)], *n);
        }
        for (rule, n) in &c.failed {
            out.counter(&FAILED, &[("rule", rule)], *n);
        }
    }

    fn name(&self) -> &str {
        "actions"
    }
}

/// Evaluates rules on every snapshot it is given; see the crate documentation.
pub struct Engine {
    rules: Vec<Rule>,
    tracks: Vec<HashMap<String, Track>>,
    counts: Arc<Mutex<Counts>>,
    runner: run::Runner,
    log: Box<dyn Fn(&str) + Send>,
    round: u64,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("rules", &self.rules)
            .finish()
    }
}

impl Engine {
    /// An engine for `rules`, logging to standard error.
    pub fn new(rules: Vec<Rule>) -> Engine {
        let n = rules.len();
        let names = rules.iter().map(|r| r.name.clone()).collect();
        Engine {
            rules,
            tracks: (0..n).map(|_| HashMap::new()).collect(),
            counts: Arc::new(Mutex::new(Counts::default())),
            runner: run::Runner::new(names),
            log: Box::new(|line| eprintln!("sampler: {line}")),
            round: 0,
        }
    }

    /// Sends each log line to `log` instead of standard error.
    pub fn log_to(mut self, log: impl Fn(&str) + Send + 'static) -> Engine {
        self.log = Box::new(log);
        self
    }

    /// The rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// How many times the rule named `rule` fired.
    pub fn fired(&self, rule: &str) -> u64 {
        let c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.fired.get(rule).copied().unwrap_or(0)
    }

    fn evaluate(&mut self, snap: &Snapshot) {
        self.round += 1;
        let round = self.round;
        if round == 1 {
            self.warn_unknown(snap);
        }
        for reap in self.runner.reap() {
            self.report_failure(&reap.0, &reap.1);
        }
        for i in 0..self.rules.len() {
            let rule = self.rules[i].clone();
            for s in snap.series().filter(|s| rule.matches(*s)) {
                let key = series_key(s);
                let track = self.tracks[i].entry(key.clone()).or_default();
                track.seen = round;
                let previous = match (s.value(), track.previous) {
                    (Value::Counter(_), Some((raw, at))) => snap
                        .time
                        .duration_since(at)
                        .ok()
                        .map(|d| (raw, d.as_secs_f64())),
                    _ => None,
                };
                if let Value::Counter(c) = s.value() {
                    track.previous = Some((*c, snap.time));
                }
                let reading = rule.condition.reading(s, previous);
                let above = reading.is_some_and(|r| rule.condition.holds(r, snap));
                if track.latched {
                    let recovered = match &rule.recover {
                        Some(rc) => rc.reading(s, previous).is_some_and(|r| rc.holds(r, snap)),
                        None => false,
                    };
                    if recovered {
                        track.latched = false;
                        track.above = 0;
                        let line = format!("action {} recovered for {key}", rule.name);
                        (self.log)(&line);
                        continue;
                    }
                }
                if !above {
                    track.above = 0;
                    continue;
                }
                track.above = track.above.saturating_add(1);
                let cooling = track
                    .last_fired
                    .is_some_and(|(t, seq)| rule.cooldown.cooling(t, seq, snap));
                if track.above < rule.for_harvests || cooling || track.latched {
                    continue;
                }
                track.last_fired = Some((snap.time, snap.sequence));
                track.latched = rule.recover.is_some();
                let value = reading.unwrap_or(f64::NAN);
                self.fire(i, s, &key, value, snap);
            }
            // Series gone from the harvest are forgotten.
            self.tracks[i].retain(|_, t| t.seen == round);
        }
    }

    fn fire(&mut self, i: usize, s: SeriesRef<'_>, key: &str, value: f64, snap: &Snapshot) {
        let rule = &self.rules[i];
        {
            let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            *c.fired.entry(rule.name.clone()).or_default() += 1;
        }
        let outcome: Result<String, String> = match &rule.action {
            Action::Log => Ok(String::new()),
            Action::Signal(sig, signame) => match s.labels().get("pid") {
                None => Err("the series has no `pid` label".to_owned()),
                Some(p) => match p.parse::<i32>() {
                    Ok(pid) if pid > 0 => run::signal(pid, *sig)
                        .map(|()| format!(", sent {signame} to pid {pid}"))
                        .map_err(|e| format!("failed to send {signame} to pid {pid}: {e}")),
                    _ => Err(format!("invalid pid label {p:?}")),
                },
            },
            Action::Command(cmd) => {
                let mut env = vec![
                    ("SAMPLER_RULE".to_owned(), rule.name.clone()),
                    ("SAMPLER_NAME".to_owned(), s.descriptor().name().to_owned()),
                    ("SAMPLER_VALUE".to_owned(), value.to_string()),
                ];
                for (k, v) in s.labels().iter() {
                    env.push((
                        format!("SAMPLER_LABEL_{}", k.to_ascii_uppercase()),
                        v.into(),
                    ));
                }
                self.runner
                    .start(i, cmd, env, rule.timeout)
                    .map(|pid| format!(", started command (pid {pid})"))
            }
        };
        let rule = &self.rules[i];
        // The harvest's own time, the clock a time cool-down is measured on.
        let head = format!(
            "action {} fired for {key}: {} is {value} at harvest {} ({})",
            rule.name,
            rule.condition,
            snap.sequence,
            humantime::format_rfc3339_millis(snap.time)
        );
        match outcome {
            Ok(tail) => (self.log)(&format!("{head}{tail}")),
            Err(e) => {
                (self.log)(&format!("{head}, {e}"));
                let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
                *c.failed.entry(rule.name.clone()).or_default() += 1;
            }
        }
    }

    /// On the first harvest: a rule naming a series the harvest does not have is likely a typo.
    fn warn_unknown(&self, snap: &Snapshot) {
        for rule in &self.rules {
            let mut names = vec![rule.condition.name.as_str()];
            if let Threshold::Percent(_, of) = &rule.condition.threshold {
                names.push(of);
            }
            if let Some(Condition { name, .. }) = &rule.recover {
                names.push(name);
            }
            for name in names {
                if snap.named(name).next().is_some() {
                    continue;
                }
                let near = nearest(name, snap.series().map(|s| s.descriptor().name()));
                let hint = if near.is_empty() {
                    String::new()
                } else {
                    format!(" (nearest: {})", near.join(", "))
                };
                (self.log)(&format!(
                    "warning: action {} watches {name}, which the first harvest does not have{hint}",
                    rule.name
                ));
            }
        }
    }

    fn report_failure(&mut self, rule: &str, message: &str) {
        (self.log)(&format!("action {rule}: {message}"));
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *c.failed.entry(rule.to_owned()).or_default() += 1;
    }
}

/// Up to three names closest to `name` by edit distance.
fn nearest<'a>(name: &str, names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut all: Vec<(usize, &str)> = names.map(|n| (distance(name, n), n)).collect();
    all.sort();
    all.dedup_by(|a, b| a.1 == b.1);
    all.into_iter()
        .filter(|(d, _)| *d <= name.len().max(3) / 2)
        .take(3)
        .map(|(_, n)| n)
        .collect()
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = (up + 1).min(row[j] + 1).min(diag + usize::from(ca != *cb));
            diag = up;
        }
    }
    row[b.len()]
}

fn series_key(s: SeriesRef<'_>) -> String {
    let mut k = s.descriptor().name().to_owned();
    if !s.labels().is_empty() {
        let l: Vec<String> = s
            .labels()
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        k.push('{');
        k.push_str(&l.join(","));
        k.push('}');
    }
    k
}

impl Exporter for Engine {
    fn name(&self) -> &str {
        "actions"
    }

    fn export(&mut self, snapshot: Arc<Snapshot>) -> Result<(), ExportError> {
        self.evaluate(&snapshot);
        Ok(())
    }

    fn shutdown(&mut self, deadline: std::time::Instant) -> Result<(), ExportError> {
        for (rule, msg) in self.runner.finish(deadline) {
            self.report_failure(&rule, &msg);
        }
        Ok(())
    }

    fn sampler(&self) -> Option<Arc<dyn Sampler>> {
        Some(Arc::new(Stats(self.counts.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sampler_api::{Harvester, Registry};

    static MEM: Descriptor = Descriptor::gauge("worker.memory", "By", "memory");
    static REQS: Descriptor = Descriptor::counter("worker.requests", "1", "requests");

    #[test]
    fn fired_is_counted_by_the_engines_own_sampler() {
        let registry = Registry::new();
        let mem = registry.gauge(&MEM);
        mem.set(2048.0);
        let rule = Rule::new("big", "worker.memory > 1 KiB", Action::Log).unwrap();
        let engine = Engine::new(vec![rule]).log_to(|_| {});
        let h = Harvester::builder()
            .registry(registry)
            .boxed_exporter(Box::new(engine))
            .build();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let snap = h.harvest_now();
            if let Some(s) = snap.find("sampler.action.fired", &[("rule", "big")]) {
                assert!(matches!(s.value(), Value::Counter(n) if *n >= 1));
                break;
            }
            assert!(std::time::Instant::now() < deadline, "never counted");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A cool-down of 3 harvests: fired at harvest k, not again at k+1 and k+2, again at k+3
    /// when still above; and the harvests the engine never saw (a snapshot dropped from its
    /// queue) count too, by sequence number.
    #[test]
    fn r17_cooldown_in_harvests() {
        let registry = Registry::new();
        let mem = registry.gauge(&MEM);
        mem.set(2048.0);
        let rule = Rule::new("big", "worker.memory > 1 KiB", Action::Log)
            .unwrap()
            .cooldown_harvests(3);
        let mut engine = Engine::new(vec![rule]).log_to(|_| {});
        let h = Harvester::builder().registry(registry).build();
        let mut fired_at = Vec::new();
        for _ in 0..8 {
            let snap = h.harvest_now();
            let before = engine.fired("big");
            engine.export(snap.clone()).unwrap();
            if engine.fired("big") > before {
                fired_at.push(snap.sequence);
            }
        }
        let first = fired_at[0];
        assert_eq!(fired_at, vec![first, first + 3, first + 6]);
        // Two harvests the engine does not get: the third one it gets is past the cool-down.
        let _ = h.harvest_now();
        let _ = h.harvest_now();
        let snap = h.harvest_now();
        let before = engine.fired("big");
        engine.export(snap).unwrap();
        assert_eq!(engine.fired("big"), before + 1);
    }

    #[test]
    fn each_series_apart_with_recover_and_rate() {
        let registry = Registry::new();
        let mem = registry.gauge_family(&MEM, &["w"]);
        let a = |v: f64| mem.set(&["a"], v);
        let b = |v: f64| mem.set(&["b"], v);
        let reqs = registry.counter(&REQS);
        let mut rule = Rule::new("big", "worker.memory > 100", Action::Log)
            .unwrap()
            .for_harvests(2);
        rule.recover = Some(Condition::parse("worker.memory < 50").unwrap());
        let rate = Rule::new("busy", "rate(worker.requests) > 0", Action::Log).unwrap();
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let l2 = lines.clone();
        let mut e =
            Engine::new(vec![rule, rate]).log_to(move |l| l2.lock().unwrap().push(l.into()));
        let h = Harvester::builder().registry(registry).build();
        a(200.0);
        b(10.0);
        e.export(h.harvest_now()).unwrap();
        assert_eq!(e.fired("big"), 0);
        assert_eq!(e.fired("busy"), 0, "no rate before a second harvest");
        b(200.0);
        reqs.add(5);
        e.export(h.harvest_now()).unwrap();
        assert_eq!(e.fired("big"), 1, "a fired; b only once above");
        assert_eq!(e.fired("busy"), 1);
        e.export(h.harvest_now()).unwrap();
        assert_eq!(e.fired("big"), 2, "b fired; a is latched until it recovers");
        a(75.0);
        e.export(h.harvest_now()).unwrap();
        a(200.0);
        e.export(h.harvest_now()).unwrap();
        e.export(h.harvest_now()).unwrap();
        assert_eq!(e.fired("big"), 2, "75 is not a recovery");
        a(10.0);
        e.export(h.harvest_now()).unwrap();
        a(200.0);
        e.export(h.harvest_now()).unwrap();
        e.export(h.harvest_now()).unwrap();
        assert_eq!(e.fired("big"), 3, "recovered, then 2 harvests above");
        let lines = lines.lock().unwrap();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("action big recovered for worker.memory{w=\"a\"}")),
            "{lines:?}"
        );
    }

    #[test]
    fn a_rule_naming_an_absent_series_is_a_warning_with_the_nearest_names() {
        let registry = Registry::new();
        let mem = registry.gauge(&MEM);
        mem.set(1.0);
        let rule = Rule::new("typo", "worker.memroy > 1", Action::Log).unwrap();
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let l2 = lines.clone();
        let mut e = Engine::new(vec![rule]).log_to(move |l| l2.lock().unwrap().push(l.into()));
        let h = Harvester::builder().registry(registry).build();
        e.export(h.harvest_now()).unwrap();
        e.export(h.harvest_now()).unwrap();
        let lines = lines.lock().unwrap();
        assert_eq!(
            lines.as_slice(),
            ["warning: action typo watches worker.memroy, which the first harvest does not have (nearest: worker.memory)"]
        );
    }

    #[test]
    fn a_hanging_command_is_killed_after_its_timeout_and_not_queued() {
        let registry = Registry::new();
        let a = registry.gauge(&MEM);
        a.set(200.0);
        let mut rule = Rule::new(
            "hang",
            "worker.memory > 100",
            Action::Command("sleep 30".into()),
        )
        .unwrap();
        rule.timeout = Duration::from_millis(200);
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let l2 = lines.clone();
        let mut e = Engine::new(vec![rule]).log_to(move |l| l2.lock().unwrap().push(l.into()));
        let h = Harvester::builder().registry(registry).build();
        e.export(h.harvest_now()).unwrap();
        e.export(h.harvest_now()).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        e.export(h.harvest_now()).unwrap();
        let lines = lines.lock().unwrap();
        assert!(lines[0].contains("started command"), "{lines:?}");
        assert!(
            lines[1].contains("not run: the previous command"),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("killed after its timeout of 200ms")),
            "{lines:?}"
        );
        assert!(
            lines.last().unwrap().contains("started command"),
            "{lines:?}"
        );
        drop(lines);
        e.shutdown(std::time::Instant::now()).unwrap();
    }

    #[test]
    fn a_command_gets_the_series_in_its_environment() {
        let dir = std::env::temp_dir().join(format!("sampler-actions-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("env");
        let registry = Registry::new();
        let mem = registry.gauge_family(&MEM, &["pool"]);
        mem.set(&["web"], 200.0);
        let cmd = format!(
            "echo \"$SAMPLER_NAME $SAMPLER_VALUE $SAMPLER_LABEL_POOL\" > {}",
            out.display()
        );
        let rule = Rule::new("env", "worker.memory > 100", Action::Command(cmd)).unwrap();
        let mut e = Engine::new(vec![rule]).log_to(|_| {});
        let h = Harvester::builder().registry(registry).build();
        e.export(h.harvest_now()).unwrap();
        e.shutdown(std::time::Instant::now() + Duration::from_secs(10))
            .unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(text.trim(), "worker.memory 200 web");
    }
}
