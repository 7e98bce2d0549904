//! Which processes a [`ProcessSampler`](crate::ProcessSampler) watches, and why a target
//! resolves to none.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use regex::Regex;

use crate::procfs::{self, ReadError};

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
            Target::PidFile(path) => format!("pidfile:{}", path.display()),
            Target::Name(p) => format!("name:{}", p.as_str()),
        }
    }

    /// Finds the pids this target stands for now. `me` is excluded from name matches.
    pub(crate) fn resolve(&self, me: u32) -> Result<Vec<u32>, TargetError> {
        match self {
            Target::Current => Ok(vec![me]),
            Target::Pid(pid) => check_alive(*pid)
                .map(|()| vec![*pid])
                .map_err(|reason| TargetError::NotFound { pid: *pid, reason }),
            Target::PidFile(path) => {
                let pid = read_pid_file(path)?;
                check_alive(pid)
                    .map(|()| vec![pid])
                    .map_err(|reason| TargetError::PidFileStale {
                        path: path.clone(),
                        pid,
                        reason,
                    })
            }
            Target::Name(pattern) => {
                let pids =
                    procfs::list_pids().map_err(|source| TargetError::ListProcesses { source })?;
                let checked = pids.len();
                let mut found: Vec<u32> = pids
                    .into_iter()
                    .filter(|&pid| pid != me && pattern.matches_pid(pid))
                    .collect();
                found.sort_unstable();
                if found.is_empty() {
                    Err(TargetError::NoMatch {
                        pattern: pattern.as_str().to_owned(),
                        checked,
                    })
                } else {
                    Ok(found)
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
            Target::PidFile(path) => write!(f, "pid file {}", path.display()),
            Target::Name(p) => write!(f, "name {:?}", p.as_str()),
        }
    }
}

/// A regular expression (syntax of the `regex` crate) searched in a process's name
/// (`/proc/PID/comm`, at most 15 bytes) and in its command line (`/proc/PID/cmdline`, the
/// arguments joined by spaces). A process matches when either matches.
///
/// An unanchored pattern matches anywhere: `sleep` matches the process `sleep` and also a
/// `vim notes/sleep.txt`. Anchor it to match the name alone: `^sleep$`.
///
/// ```
/// use sampler_adapter_process::NamePattern;
/// let p = NamePattern::new("^post(gres|master)$")?;
/// assert!(p.is_match("postgres", ""));
/// assert!(p.is_match("python3", "postgres"));
/// assert!(!p.is_match("postgrex", "postgrex --port 1"));
/// assert!(NamePattern::new("(").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct NamePattern {
    regex: Regex,
}

impl NamePattern {
    /// Compiles a pattern.
    pub fn new(pattern: &str) -> Result<Self, PatternError> {
        Regex::new(pattern)
            .map(|regex| NamePattern { regex })
            .map_err(|e| PatternError {
                pattern: pattern.to_owned(),
                message: e.to_string(),
            })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        self.regex.as_str()
    }

    /// Whether a process with this name and command line matches.
    pub fn is_match(&self, name: &str, cmdline: &str) -> bool {
        self.regex.is_match(name) || self.regex.is_match(cmdline)
    }

    fn matches_pid(&self, pid: u32) -> bool {
        let dir = Path::new("/proc").join(pid.to_string());
        let Ok(comm) = fs::read_to_string(dir.join("comm")) else {
            return false;
        };
        let comm = comm.strip_suffix('\n').unwrap_or(&comm);
        if self.regex.is_match(comm) {
            return true;
        }
        fs::read(dir.join("cmdline"))
            .map(|raw| self.regex.is_match(&procfs::cmdline_text(&raw)))
            .unwrap_or(false)
    }
}

/// A name pattern that is not a valid regular expression.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid process name pattern {pattern:?}: {message}")]
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
    #[error("process {pid} (from pid file {}) not found: {reason}", path.display())]
    PidFileStale {
        /// The pid file.
        path: PathBuf,
        /// The pid it holds.
        pid: u32,
        /// Why it counts as gone.
        reason: GoneReason,
    },
    /// A pid file could not be read.
    #[error("failed to read pid file {}: {source}", path.display())]
    PidFileRead {
        /// The pid file.
        path: PathBuf,
        /// The error reading it.
        source: io::Error,
    },
    /// A pid file holds something other than a process id.
    #[error("pid file {} holds {content:?}, not a process id", path.display())]
    PidFileGarbage {
        /// The pid file.
        path: PathBuf,
        /// Its first line, trimmed (cut at 64 characters).
        content: String,
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

/// Whether `/proc/PID` is a live process. Reads its stat alone: the harvest reads the rest.
fn check_alive(pid: u32) -> Result<(), GoneReason> {
    match procfs::read_stat(pid) {
        Ok(_) => Ok(()),
        Err(ReadError::Exited) => Err(GoneReason::Exited),
        Err(ReadError::Missing) => Err(GoneReason::NoSuchProcess(pid)),
        // It exists, though we may not read all of it: it is alive.
        Err(ReadError::Unreadable) => {
            if Path::new("/proc").join(pid.to_string()).exists() {
                Ok(())
            } else {
                Err(GoneReason::NoSuchProcess(pid))
            }
        }
    }
}

/// Reads a pid file: its first line, trimmed, must be a process id (a positive integer).
fn read_pid_file(path: &Path) -> Result<u32, TargetError> {
    let raw = fs::read(path).map_err(|source| TargetError::PidFileRead {
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
        let own = fs::read_to_string("/proc/self/comm").unwrap();
        let pattern = format!("^{}$", regex::escape(own.trim()));
        match Target::name(&pattern).unwrap().resolve(me) {
            Ok(pids) => assert!(!pids.contains(&me)),
            Err(e) => assert!(matches!(e, TargetError::NoMatch { .. })),
        }
    }
}
