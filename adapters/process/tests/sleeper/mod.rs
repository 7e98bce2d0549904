//! `sleep` children to watch, shared by the process adapter's tests and the `sampler` command's
//! (which includes this file by path).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `sleep` child, killed and reaped on drop. The field is public so that a test can kill it
/// without reaping it, leaving a zombie.
pub struct Sleeper(pub Child);

impl Sleeper {
    /// Spawns `sleep` and waits (up to 5 s) until it is asleep: `spawn` returns as soon as the
    /// child starts its `exec`, before its command line is set and its libraries are loaded,
    /// and a harvest taken then would see a half-made process.
    pub fn start(seconds: &str) -> Self {
        let child = Command::new("sleep")
            .arg(seconds)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sleep (coreutils)");
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit(") ").next().and_then(|r| r.chars().next());
            if cmdline.starts_with(b"sleep\0") && state == Some('S') {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "sleep {pid} did not settle: {stat}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        Sleeper(child)
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Kills and reaps it, so /proc/PID goes away.
    pub fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `VmRSS` of /proc/PID/status, in bytes.
pub fn vm_rss(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024.0
}
