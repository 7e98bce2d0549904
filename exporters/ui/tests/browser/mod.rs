//! A headless Chromium driven over the Chrome DevTools Protocol on a pipe
//! (`--remote-debugging-pipe`: JSON messages ending in a NUL byte, commands on the browser's
//! fd 3, answers and events on its fd 4), so the page's tests need the browser and nothing else.
//! The browser runs in its own process group, with its own profile in a temporary folder, and
//! is killed with its group when the `Browser` drops.

#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The Debian package the tests need.
pub const INSTALL: &str = "apt-get install chromium (or bash scripts/install-peers.sh)";

/// How long one protocol call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// One headless browser with one page.
pub struct Browser {
    child: Child,
    to: File,
    from: Receiver<Value>,
    next: u64,
    session: String,
    /// Console errors, uncaught exceptions and error log entries (failed loads, policy
    /// violations) of the page, as text.
    pub errors: Vec<String>,
    _profile: tempfile::TempDir,
}

/// A pipe whose two ends are numbered 10 or more, so that putting them at 3 and 4 in the child
/// never overwrites the other.
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2 failed: {}", std::io::Error::last_os_error());
    let high = |fd: i32| {
        // SAFETY: `fd` is an open descriptor this function owns.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
        assert!(
            dup >= 10,
            "fcntl failed: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `fd` was returned by pipe2 above and is closed once, here.
        unsafe { libc::close(fd) };
        // SAFETY: `dup` is a fresh descriptor owned by nothing else.
        unsafe { OwnedFd::from_raw_fd(dup) }
    };
    (high(fds[0]), high(fds[1]))
}

impl Browser {
    /// Starts Chromium headless with an empty page; fails the test, with the install command,
    /// when it is not installed.
    pub fn launch() -> Browser {
        let exe = ["chromium", "chromium-browser", "google-chrome"]
            .into_iter()
            .find(|c| {
                Command::new(c)
                    .arg("--version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
            .unwrap_or_else(|| panic!("chromium is not installed: {INSTALL}"));
        let profile = tempfile::tempdir().expect("failed to make a browser profile folder");
        let (child_reads, we_write) = pipe();
        let (we_read, child_writes) = pipe();
        let (r, w) = (child_reads.as_raw_fd(), child_writes.as_raw_fd());
        let mut cmd = Command::new(exe);
        cmd.args([
            "--headless",
            "--remote-debugging-pipe",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            "--window-size=1200,900",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
        // SAFETY: only async-signal-safe calls (dup2) run between fork and exec; `r` and `w`
        // are open in the parent (and so in the child) until the spawn returns.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(r, 3) < 0 || libc::dup2(w, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start {exe}: {e}; {INSTALL}"));
        drop((child_reads, child_writes));
        let (tx, from) = std::sync::mpsc::channel();
        let mut reader = File::from(we_read);
        std::thread::spawn(move || {
            let mut pending = Vec::new();
            let mut buf = [0u8; 65536];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                pending.extend_from_slice(&buf[..n]);
                while let Some(end) = pending.iter().position(|b| *b == 0) {
                    let message: Vec<u8> = pending.drain(..=end).collect();
                    if let Ok(v) = serde_json::from_slice(&message[..end]) {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut b = Browser {
            child,
            to: File::from(we_write),
            from,
            next: 0,
            session: String::new(),
            errors: Vec::new(),
            _profile: profile,
        };
        let target = b.send("Target.createTarget", json!({"url": "about:blank"}), false);
        let target = target["targetId"].as_str().expect("a target id").to_owned();
        let attached = b.send(
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
            false,
        );
        b.session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
            b.call(domain, json!({}));
        }
        b
    }

    /// Calls a method of the page's session and returns its result.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, true)
    }

    fn send(&mut self, method: &str, params: Value, on_page: bool) -> Value {
        self.next += 1;
        let id = self.next;
        let mut message = json!({"id": id, "method": method, "params": params});
        if on_page {
            message["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.to
            .write_all(&bytes)
            .unwrap_or_else(|e| panic!("failed to write {method} to the browser: {e}"));
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = match self.from.recv_timeout(left) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("the browser did not answer {method} in {CALL_TIMEOUT:?}")
                }
                Err(RecvTimeoutError::Disconnected) => panic!("the browser exited during {method}"),
            };
            if m["id"].as_u64() == Some(id) {
                if let Some(e) = m.get("error") {
                    panic!("{method} failed in the browser: {e}");
                }
                return m["result"].clone();
            }
            self.note(&m);
        }
    }

    /// Keeps what an event says about errors on the page.
    fn note(&mut self, m: &Value) {
        let p = &m["params"];
        match m["method"].as_str() {
            Some("Runtime.consoleAPICalled")
                if matches!(p["type"].as_str(), Some("error" | "assert")) =>
            {
                self.errors
                    .push(format!("console.{}: {}", p["type"], p["args"]));
            }
            Some("Runtime.exceptionThrown") => {
                self.errors
                    .push(format!("exception: {}", p["exceptionDetails"]));
            }
            Some("Log.entryAdded") if p["entry"]["level"] == "error" => {
                self.errors
                    .push(format!("log: {} {}", p["entry"]["text"], p["entry"]["url"]));
            }
            _ => {}
        }
    }

    /// Takes the events that arrived since the last call.
    pub fn drain_events(&mut self) {
        while let Ok(m) = self.from.try_recv() {
            self.note(&m);
        }
    }

    /// Opens `url` in the page.
    pub fn navigate(&mut self, url: &str) {
        let r = self.call("Page.navigate", json!({"url": url}));
        assert!(r.get("errorText").is_none(), "failed to open {url}: {r}");
    }

    /// Evaluates a JavaScript expression in the page and returns its value.
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("evaluating {expression} threw: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Evaluates `expression` every 50 ms until it is true; fails after `timeout`.
    pub fn wait_for(&mut self, expression: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.eval(expression) == json!(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "still not true after {timeout:?}: {expression}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A PNG screenshot of the page, base64 as the protocol gives it.
    pub fn screenshot(&mut self) -> String {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        r["data"].as_str().expect("screenshot data").to_owned()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Asked to close, the browser ends its helpers itself; whatever is left after 5 s is
        // killed with its process group, which the browser and its helpers share.
        self.next += 1;
        let close = format!("{{\"id\":{},\"method\":\"Browser.close\"}}\0", self.next);
        if self.to.write_all(close.as_bytes()).is_ok() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let group = self.child.id() as i32;
        // SAFETY: signals the process group this value started, and nothing else.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}
