//! Which processes a [`ProcessSampler`](crate::ProcessSampler) watches, and why a target
//! resolves to none.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use regex::bytes::{Regex, RegexBuilder};

use crate::procfs::{self, ReadError};

/// The most read of a pid file: its first line is all that counts.
pub const PID_FILE_LIMIT: usize = 4096;
/// The most read of a process's command line when matching a [`NamePattern`] (the kernel allows
/// megabytes): a pattern sees its first 64 KiB.
const CMDLINE_LIMIT: usize = 64 * 1024;

/// One thing to watch, as an operator points a process monitor at a service.
///
/// ```
/// use sampler_adapter_process::Target;
/// let t = Target::name("^nginx$")?;
/// assert_eq!(t.spec(), "name:^nginx$");
/// assert_eq!(Target::Pid(42).to_string(), "pid 42");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub enum Target {
    /// The process doing the sampling (in-app use). Its series carry no `pid`/`name` labels.
    Current,
    /// One process by id.
    Pid(u32),
    /// The process whose id a pid file holds, read again at every harvest, so a service that
    /// restarts and rewrites its pid file is followed.
    PidFile(PathBuf),
    /// Every process whose name or command line matches a pattern (see [`NamePattern`]).
    Name(NamePattern),
}

impl Target {
    /// A name target from a regular expression (see [`NamePattern`]).
    pub fn name(pattern: &str) -> Result<Target, PatternError> {
        NamePattern::new(pattern).map(Target::Name)
    }

    /// A short form of the target, used as the `target` label of `process.up`:
    /// `self`, `pid:42`, `pidfile:/run/app.pid`, `name:^nginx$`.
    pub fn spec(&self) -> String {
        match self {
            Target::Current => "self".to_owned(),
            Target::Pid(pid) => format!("pid:{pid}"),
            Target::PidFile(path) => format!("pidfile:{}", Shown(&path.display().to_string())),
            Target::Name(p) => format!("name:{}", p.as_str()),
        }
    }

    /// Finds the pids this target stands for now. `me` is excluded from name matches.
    pub(crate) fn resolve(&self, me: u32) -> Result<Vec<u32>, TargetError> {
        match self {
            Target::Current => Ok(vec![me]),
            Target::Pid(pid) => check_alive(*pid)
                .map(|()| vec![*pid])
                .map_err(|e| e.into_error(*pid, None)),
            Target::PidFile(path) => {
                let pid = read_pid_file(path)?;
                check_alive(pid)
                    .map(|()| vec![pid])
                    .map_err(|e| e.into_error(pid, Some(path)))
            }
            Target::Name(pattern) => {
                let pids =
                    procfs::list_pids().map_err(|source| TargetError::ListProcesses { source })?;
                let checked = pids.len();
                let mut found = Vec::new();
                let mut failed: Option<(usize, io::Error)> = None;
                for pid in pids.into_iter().filter(|&pid| pid != me) {
                    match pattern.matches_pid(pid) {
                        Ok(true) => found.push(pid),
                        Ok(false) => {}
                        Err(e) => {
                            let n = failed.as_ref().map_or(0, |f| f.0);
                            failed = Some((n + 1, e));
                        }
                    }
                }
                found.sort_unstable();
                match (found.is_empty(), failed) {
                    (false, _) => Ok(found),
                    (true, Some((count, source))) => Err(TargetError::NamesUnreadable {
                        pattern: pattern.as_str().to_owned(),
                        count,
                        source,
                    }),
                    (true, None) => Err(TargetError::NoMatch {
                        pattern: pattern.as_str().to_owned(),
                        checked,
                    }),
                }
            }
        }
    }
}

impl fmt::Display for Target {
    /// The target in words: `self`, `pid 42`, `pid file /run/app.pid`, `name "^nginx$"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Current => f.write_str("self"),
            Target::Pid(pid) => write!(f, "pid {pid}"),
            Target::PidFile(path) => write!(f, "pid file {}", Shown(&path.display().to_string())),
            Target::Name(p) => write!(f, "name {:?}", p.as_str()),
        }
    }
}

/// A regular expression (syntax of the `regex` crate) searched in a process's name
/// (`/proc/PID/comm`, at most 15 bytes) and in its command line (`/proc/PID/cmdline`, the
/// arguments joined by spaces, its first 64 KiB). A process matches when either matches.
///
/// Names and command lines are matched as the bytes they are, UTF-8 or not: `^caf` matches a
/// process named `caf\xe9` (Latin-1), and `(?-u:\xe9)` matches that byte itself.
///
/// An unanchored pattern matches anywhere: `sleep` matches the process `sleep` and also a
/// `vim notes/sleep.txt`. Anchor it to match the name alone: `^sleep$`. A pattern is at most
/// [`NamePattern::MAX_LEN`] bytes, and its compiled form is bounded too, so matching stays
/// quick whatever is asked for.
///
/// ```
/// use sampler_adapter_process::NamePattern;
/// let p = NamePattern::new("^post(gres|master)$")?;
/// assert!(p.is_match("postgres", ""));
/// assert!(p.is_match("python3", "postgres"));
/// assert!(!p.is_match("postgrex", "postgrex --port 1"));
/// assert!(p.is_match_bytes(b"postgres", b""));
/// assert!(NamePattern::new("(").is_err());
/// assert!(NamePattern::new(&"a".repeat(5000)).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct NamePattern {
    regex: Regex,
}

impl NamePattern {
    /// The longest pattern accepted, in bytes: a process name is at most 15 bytes, and a
    /// longer pattern is a mistake (and would slow every harvest).
    pub const MAX_LEN: usize = 1024;

    /// Compiles a pattern.
    pub fn new(pattern: &str) -> Result<Self, PatternError> {
        let error = |message: String| PatternError {
            pattern: pattern.chars().take(64).collect(),
            message,
        };
        if pattern.len() > Self::MAX_LEN {
            return Err(error(format!(
                "{} bytes long, more than the {} allowed",
                pattern.len(),
                Self::MAX_LEN
            )));
        }
        RegexBuilder::new(pattern)
            // Bounds the compiled program (and so the time per match) whatever the pattern:
            // `\w{1000}` is refused rather than slowing every harvest.
            .size_limit(1 << 20)
            .dfa_size_limit(1 << 20)
            .build()
            .map(|regex| NamePattern { regex })
            .map_err(|e| error(e.to_string()))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        self.regex.as_str()
    }

    /// Whether a process with this name and command line matches.
    pub fn is_match(&self, name: &str, cmdline: &str) -> bool {
        self.is_match_bytes(name.as_bytes(), cmdline.as_bytes())
    }

    /// Whether a process with this name and command line, as raw bytes, matches.
    pub fn is_match_bytes(&self, name: &[u8], cmdline: &[u8]) -> bool {
        self.regex.is_match(name) || self.regex.is_match(cmdline)
    }

    /// Whether process `pid` matches; an error when its name could not be read though it is
    /// there (a process that exits meanwhile does not match).
    fn matches_pid(&self, pid: u32) -> io::Result<bool> {
        let dir = Path::new("/proc").join(pid.to_string());
        let path = dir.join("comm");
        let comm = match procfs::read_proc(&path, 64) {
            Ok(c) => c,
            Err(e) if gone(&e) => return Ok(false),
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("failed to read {}: {e}", path.display()),
                ))
            }
        };
        let comm = comm.strip_suffix(b"\n").unwrap_or(&comm);
        if self.regex.is_match(comm) {
            return Ok(true);
        }
        Ok(procfs::read_proc(&dir.join("cmdline"), CMDLINE_LIMIT)
            .map(|raw| self.regex.is_match(&procfs::cmdline_bytes(&raw)))
            .unwrap_or(false))
    }
}

/// Whether a read error says the process is not there (any more).
fn gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(3)
}

/// Text shown to a person, with control characters (newline, escape, …) written as escapes, so
/// a hostile process name or path can neither split a line nor reach the terminal.
///
/// ```
/// use sampler_adapter_process::Shown;
/// assert_eq!(Shown("a\nb\u{1b}[31m").to_string(), "a\\nb\\u{1b}[31m");
/// assert_eq!(Shown("café (1)").to_string(), "café (1)");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Shown<'a>(pub &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        for c in self.0.chars() {
            if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
                for e in c.escape_debug() {
                    f.write_char(e)?;
                }
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// A name pattern that is not a valid regular expression.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid process name pattern {pattern:?}: {message}")]
// The pattern is cut at 64 characters: a refused 40 KB pattern is not printed whole.
pub struct PatternError {
    pattern: String,
    message: String,
}

/// Why a process counts as gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoneReason {
    /// `/proc/PID` does not exist.
    NoSuchProcess(u32),
    /// The process has exited and waits for its parent to reap it (a zombie).
    Exited,
}

impl fmt::Display for GoneReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GoneReason::NoSuchProcess(pid) => {
                write!(f, "no such process (/proc/{pid} does not exist)")
            }
            GoneReason::Exited => f.write_str("it has exited (a zombie not yet reaped)"),
        }
    }
}

/// Why a target resolves to no process.
///
/// ```
/// use sampler_adapter_process::{ProcessSampler, Target};
/// let s = ProcessSampler::new(Target::Pid(999_999_999));
/// let errors = s.check();
/// assert_eq!(
///     errors[0].to_string(),
///     "process 999999999 not found: no such process (/proc/999999999 does not exist)"
/// );
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// A pid target's process is not there.
    #[error("process {pid} not found: {reason}")]
    NotFound {
        /// The pid asked for.
        pid: u32,
        /// Why it counts as gone.
        reason: GoneReason,
    },
    /// A pid file names a process that is not there.
    #[error("process {pid} (from pid file {}) not found: {reason}", Shown(&path.display().to_string()))]
    PidFileStale {
        /// The pid file.
        path: PathBuf,
        /// The pid it holds.
        pid: u32,
        /// Why it counts as gone.
        reason: GoneReason,
    },
    /// A pid file could not be read.
    #[error("failed to read pid file {}: {source}", Shown(&path.display().to_string()))]
    PidFileRead {
        /// The pid file.
        path: PathBuf,
        /// The error reading it.
        source: io::Error,
    },
    /// A pid file holds something other than a process id.
    #[error("pid file {} holds {content:?}, not a process id", Shown(&path.display().to_string()))]
    PidFileGarbage {
        /// The pid file.
        path: PathBuf,
        /// Its first line, trimmed (cut at 64 characters).
        content: String,
    },
    /// A process is there but could not be read (out of file descriptors, no permission): it
    /// is neither reported as gone nor as up.
    #[error("failed to read process {pid}: {source}")]
    Unreadable {
        /// The process id.
        pid: u32,
        /// The error, naming the file.
        source: io::Error,
    },
    /// As [`Unreadable`](TargetError::Unreadable), for a process a pid file names.
    #[error("failed to read process {pid} (from pid file {}): {source}", Shown(&path.display().to_string()))]
    PidFileUnreadable {
        /// The pid file.
        path: PathBuf,
        /// The pid it holds.
        pid: u32,
        /// The error, naming the file.
        source: io::Error,
    },
    /// No process matched a name pattern, and some processes' names could not be read.
    #[error(
        "failed to read the names of {count} processes for name pattern {pattern:?}: {source}"
    )]
    NamesUnreadable {
        /// The pattern.
        pattern: String,
        /// How many names could not be read.
        count: usize,
        /// The last error, naming the file.
        source: io::Error,
    },
    /// No process matches a name pattern.
    #[error("no process matches name pattern {pattern:?} (searched the names and command lines of {checked} processes)")]
    NoMatch {
        /// The pattern.
        pattern: String,
        /// How many processes were looked at.
        checked: usize,
    },
    /// `/proc` could not be listed.
    #[error("failed to list processes in /proc: {source}")]
    ListProcesses {
        /// The error listing it.
        source: io::Error,
    },
    /// This platform has no `/proc` in the Linux format.
    #[error("process metrics need Linux /proc, which {os} does not have: no process series will be reported")]
    Unsupported {
        /// The operating system (`std::env::consts::OS`).
        os: &'static str,
    },
}

impl TargetError {
    /// Whether the error says only that the target could not be read, not that its process is
    /// gone: its `process.up` is then left out rather than set to 0, and its processes are not
    /// reported gone.
    ///
    /// ```
    /// use sampler_adapter_process::{ProcessSampler, Target};
    /// let errors = ProcessSampler::new(Target::Pid(999_999_999)).check();
    /// assert!(!errors[0].is_unknown()); // not there: known to be gone
    /// ```
    pub fn is_unknown(&self) -> bool {
        match self {
            TargetError::Unreadable { .. }
            | TargetError::PidFileUnreadable { .. }
            | TargetError::NamesUnreadable { .. }
            | TargetError::ListProcesses { .. } => true,
            // A pid file that is not there says the service is down; one that cannot be
            // read (out of descriptors, no permission) says nothing.
            TargetError::PidFileRead { source, .. } => source.kind() != io::ErrorKind::NotFound,
            _ => false,
        }
    }
}

/// Why a process could not be confirmed alive.
pub(crate) enum NotAlive {
    Gone(GoneReason),
    Unreadable(io::Error),
}

impl NotAlive {
    pub(crate) fn into_error(self, pid: u32, pidfile: Option<&Path>) -> TargetError {
        match (self, pidfile) {
            (NotAlive::Gone(reason), None) => TargetError::NotFound { pid, reason },
            (NotAlive::Gone(reason), Some(path)) => TargetError::PidFileStale {
                path: path.to_owned(),
                pid,
                reason,
            },
            (NotAlive::Unreadable(source), None) => TargetError::Unreadable { pid, source },
            (NotAlive::Unreadable(source), Some(path)) => TargetError::PidFileUnreadable {
                path: path.to_owned(),
                pid,
                source,
            },
        }
    }
}

/// Whether `/proc/PID` is a live process. Reads its stat alone: the harvest reads the rest.
pub(crate) fn check_alive(pid: u32) -> Result<(), NotAlive> {
    match procfs::read_stat(pid) {
        Ok(_) => Ok(()),
        Err(ReadError::Exited) => Err(NotAlive::Gone(GoneReason::Exited)),
        Err(ReadError::Missing) => Err(NotAlive::Gone(GoneReason::NoSuchProcess(pid))),
        // Its stat could not be read: whether it is there is told by a stat of /proc/PID,
        // which needs no descriptor.
        Err(ReadError::Unreadable(e)) => match procfs::exists(pid) {
            Some(false) => Err(NotAlive::Gone(GoneReason::NoSuchProcess(pid))),
            _ => Err(NotAlive::Unreadable(e)),
        },
    }
}

/// Reads a pid file: its first line, trimmed, must be a process id (a positive integer). Reads
/// at most [`PID_FILE_LIMIT`] bytes, without blocking, and refuses anything but a regular file.
fn read_pid_file(path: &Path) -> Result<u32, TargetError> {
    let raw =
        procfs::read_bounded(path, PID_FILE_LIMIT).map_err(|source| TargetError::PidFileRead {
            path: path.to_owned(),
            source,
        })?;
    let text = String::from_utf8_lossy(&raw);
    let first = text.lines().next().unwrap_or("").trim();
    match first.parse::<u32>() {
        Ok(pid) if pid > 0 => Ok(pid),
        _ => Err(TargetError::PidFileGarbage {
            path: path.to_owned(),
            content: first.chars().take(64).collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_contents() {
        use std::fs;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pid");
        for (content, want) in [
            ("1234\n", Some(1234)),
            ("  77  \nignored\n", Some(77)),
            ("garbage\n", None),
            ("", None),
            ("0\n", None),
            ("-5\n", None),
            ("99999999999999\n", None),
        ] {
            fs::write(&path, content).unwrap();
            assert_eq!(read_pid_file(&path).ok(), want, "{content:?}");
        }
        fs::write(&path, "garbage\n").unwrap();
        let e = read_pid_file(&path).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "pid file {} holds \"garbage\", not a process id",
                path.display()
            )
        );
        fs::write(&path, [0xff, 0xfe, b'\n']).unwrap();
        assert!(read_pid_file(&path).is_err());
        let missing = dir.path().join("none.pid");
        let e = read_pid_file(&missing).unwrap_err().to_string();
        assert!(e.starts_with(&format!("failed to read pid file {}: ", missing.display())));
    }

    #[test]
    fn out_of_descriptors_is_unknown_not_gone() {
        let emfile = || io::Error::from_raw_os_error(24);
        let e = NotAlive::Unreadable(emfile()).into_error(42, None);
        assert!(e.is_unknown());
        assert_eq!(
            e.to_string(),
            "failed to read process 42: Too many open files (os error 24)"
        );
        let e = NotAlive::Unreadable(emfile()).into_error(42, Some(Path::new("/run/a.pid")));
        assert!(e.is_unknown());
        let e = TargetError::PidFileRead {
            path: "/run/a.pid".into(),
            source: emfile(),
        };
        assert!(
            e.is_unknown(),
            "a pid file that cannot be opened says nothing"
        );
        let e = TargetError::PidFileRead {
            path: "/run/a.pid".into(),
            source: io::Error::from(io::ErrorKind::NotFound),
        };
        assert!(
            !e.is_unknown(),
            "a pid file that is not there says the service is down"
        );
        let gone = NotAlive::Gone(GoneReason::NoSuchProcess(42)).into_error(42, None);
        assert!(!gone.is_unknown());
    }

    #[test]
    fn shown_escapes_control_characters() {
        assert_eq!(
            Shown("a\nb\r\t\u{1b}[31m\u{7f}é").to_string(),
            "a\\nb\\r\\t\\u{1b}[31m\\u{7f}é"
        );
        let p = Target::PidFile("/run/a\nb.pid".into());
        assert_eq!(p.to_string(), "pid file /run/a\\nb.pid");
    }

    #[test]
    fn spec_and_words() {
        let p = Target::PidFile("/run/a.pid".into());
        assert_eq!(p.spec(), "pidfile:/run/a.pid");
        assert_eq!(p.to_string(), "pid file /run/a.pid");
        assert_eq!(Target::Current.spec(), "self");
        assert_eq!(Target::name("a b").unwrap().to_string(), "name \"a b\"");
        let e = Target::name("(").unwrap_err().to_string();
        assert!(e.starts_with("invalid process name pattern \"(\": "), "{e}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn resolve_self_and_missing() {
        let me = std::process::id();
        assert_eq!(Target::Current.resolve(me).unwrap(), vec![me]);
        assert_eq!(Target::Pid(me).resolve(me).unwrap(), vec![me]);
        let e = Target::Pid(u32::MAX).resolve(me).unwrap_err();
        assert!(matches!(e, TargetError::NotFound { .. }));
        // A name target never matches the sampling process itself.
        let own = std::fs::read_to_string("/proc/self/comm").unwrap();
        let pattern = format!("^{}$", regex::escape(own.trim()));
        match Target::name(&pattern).unwrap().resolve(me) {
            Ok(pids) => assert!(!pids.contains(&me)),
            Err(e) => assert!(matches!(e, TargetError::NoMatch { .. })),
        }
    }
}
