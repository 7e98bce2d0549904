#![allow(dead_code, unused_imports)] // each test binary uses its own share of the helpers
//! Helpers: the built binary, run in the background with its output collected line by line,
//! and `sleep` children to watch.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

// The process adapter's tests watch the same `sleep` children.
#[path = "../../../adapters/process/tests/sleeper/mod.rs"]
mod sleeper;
pub use sleeper::{vm_rss, Sleeper};

/// The `sampler` binary cargo built for these tests.
pub fn sampler() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sampler"))
}

/// The output of a finished `sampler` run.
pub struct Done {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `sampler ARGS` to the end, within 30 s.
pub fn run_to_end(args: &[&str]) -> Done {
    let mut bg = Background::spawn(args);
    let status = bg.wait_exit(Duration::from_secs(30));
    Done {
        status,
        stdout: bg.stdout.text(),
        stderr: bg.stderr.text(),
    }
}

/// Lines read so far from one of a child's pipes, with a way to wait for more.
#[derive(Clone, Default)]
pub struct Lines(Arc<(Mutex<SoFar>, Condvar)>);

/// The lines read so far, and whether the pipe has closed.
type SoFar = (Vec<String>, bool);

impl Lines {
    /// Reads `pipe` line by line on a thread of its own.
    pub fn collect(self, pipe: impl Read + Send + 'static) {
        std::thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let (m, cv) = &*self.0;
                        m.lock()
                            .unwrap()
                            .0
                            .push(line.trim_end_matches('\n').to_owned());
                        cv.notify_all();
                    }
                }
            }
            let (m, cv) = &*self.0;
            m.lock().unwrap().1 = true;
            cv.notify_all();
        });
    }

    /// A copy of the lines so far.
    pub fn snapshot(&self) -> Vec<String> {
        self.0 .0.lock().unwrap().0.clone()
    }

    /// Everything read so far, one line each.
    pub fn text(&self) -> String {
        let mut s = self.snapshot().join("\n");
        if !s.is_empty() {
            s.push('\n');
        }
        s
    }

    /// Waits until `ready` holds for the lines read so far, at most `timeout`; panics naming
    /// `what` (and showing the lines) when it does not.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        ready: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.0;
        let mut guard = m.lock().unwrap();
        loop {
            if ready(&guard.0) {
                return guard.0.clone();
            }
            let now = Instant::now();
            if now >= deadline || guard.1 {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; lines so far:\n{}",
                    guard.0.join("\n")
                );
            }
            guard = cv.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }
}

/// `sampler ARGS` running in the background; killed on drop if still running.
pub struct Background {
    child: Child,
    pub stdout: Lines,
    pub stderr: Lines,
    pub started: Instant,
}

impl Background {
    pub fn spawn(args: &[&str]) -> Self {
        let mut cmd = sampler();
        cmd.args(args);
        Self::spawn_command(cmd)
    }

    /// Spawns a prepared command (the `sampler` binary with limits or odd arguments).
    pub fn spawn_command(mut cmd: Command) -> Self {
        let started = Instant::now();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the sampler binary");
        let stdout = Lines::default();
        let stderr = Lines::default();
        stdout.clone().collect(child.stdout.take().unwrap());
        stderr.clone().collect(child.stderr.take().unwrap());
        Background {
            child,
            stdout,
            stderr,
            started,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a real signal (SIGINT, SIGTERM) to the process.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with a pid of our own live child and a valid signal number touches no
        // memory of ours.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({}, {sig}) failed", self.child.id());
    }

    /// Waits for the process to exit, at most `timeout`, polling its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader threads drain the pipes.
                let _ = self.stdout.wait_closed(Duration::from_secs(5));
                let _ = self.stderr.wait_closed(Duration::from_secs(5));
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "sampler did not exit within {timeout:?}; stdout:\n{}\nstderr:\n{}",
                self.stdout.text(),
                self.stderr.text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Lines {
    /// Whether the pipe has closed.
    pub fn is_closed(&self) -> bool {
        self.0 .0.lock().unwrap().1
    }

    fn wait_closed(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (m, cv) = &*self.0;
        let mut guard = m.lock().unwrap();
        while !guard.1 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            guard = cv.wait_timeout(guard, deadline - now).unwrap().0;
        }
        true
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Parses JSON lines, panicking on the first that does not parse.
pub fn parse_json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line: {e}: {l:?}")))
        .collect()
}

/// The table headers (`# harvest …`) among `lines`.
pub fn headers(lines: &[String]) -> Vec<&String> {
    lines
        .iter()
        .filter(|l| l.starts_with("# harvest "))
        .collect()
}
