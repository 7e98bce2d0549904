//! Signals and commands: one command per rule at a time, killed after its timeout.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Sends `sig` to `pid`.
pub(crate) fn signal(pid: i32, sig: i32) -> Result<(), std::io::Error> {
    #[cfg(unix)]
    {
        // SAFETY: kill(2) takes plain integers and touches no memory of ours.
        let r = unsafe { libc::kill(pid, sig) };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (pid, sig);
        Err(std::io::Error::other("signals need a Unix system"))
    }
}

struct Running {
    child: Child,
    started: Instant,
    timeout: Duration,
}

pub(crate) struct Runner {
    names: Vec<String>,
    running: Vec<Option<Running>>,
}

impl Runner {
    pub(crate) fn new(names: Vec<String>) -> Runner {
        let running = names.iter().map(|_| None).collect();
        Runner { names, running }
    }

    /// Starts `cmd` for rule `i`, unless its previous command still runs.
    pub(crate) fn start(
        &mut self,
        i: usize,
        cmd: &str,
        env: Vec<(String, String)>,
        timeout: Duration,
    ) -> Result<u32, String> {
        if let Some(r) = &self.running[i] {
            return Err(format!(
                "not run: the previous command (pid {}) still runs",
                r.child.id()
            ));
        }
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(cmd)
            .envs(env)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("failed to run command {cmd:?}: {e}"))?;
        let pid = child.id();
        self.running[i] = Some(Running {
            child,
            started: Instant::now(),
            timeout,
        });
        Ok(pid)
    }

    /// Collects finished commands and kills those past their timeout: (rule, problem) for each
    /// that failed.
    pub(crate) fn reap(&mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (i, slot) in self.running.iter_mut().enumerate() {
            let Some(r) = slot else { continue };
            match r.child.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() {
                        out.push((
                            self.names[i].clone(),
                            format!("command (pid {}) failed: {status}", r.child.id()),
                        ));
                    }
                    *slot = None;
                }
                Ok(None) if r.started.elapsed() >= r.timeout => {
                    let _ = r.child.kill();
                    let _ = r.child.wait();
                    out.push((
                        self.names[i].clone(),
                        format!(
                            "command (pid {}) killed after its timeout of {}",
                            r.child.id(),
                            humantime::format_duration(r.timeout)
                        ),
                    ));
                    *slot = None;
                }
                Ok(None) => {}
                Err(e) => {
                    out.push((
                        self.names[i].clone(),
                        format!("failed to wait for command (pid {}): {e}", r.child.id()),
                    ));
                    *slot = None;
                }
            }
        }
        out
    }

    /// Waits for running commands until `deadline`, then kills the rest.
    pub(crate) fn finish(&mut self, deadline: Instant) -> Vec<(String, String)> {
        let mut out = Vec::new();
        loop {
            out.extend(self.reap());
            if self.running.iter().all(Option::is_none) {
                return out;
            }
            if Instant::now() >= deadline {
                for (i, slot) in self.running.iter_mut().enumerate() {
                    if let Some(mut r) = slot.take() {
                        let _ = r.child.kill();
                        let _ = r.child.wait();
                        out.push((
                            self.names[i].clone(),
                            format!("command (pid {}) killed at shutdown", r.child.id()),
                        ));
                    }
                }
                return out;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
