//! `sampler top` in a real terminal: tmux runs it in a pane of 160 x 48 on a private socket, the
//! test reads the screen with `capture-pane`, types with `send-keys`, and checks that the
//! terminal is given back (alternate screen left, cursor shown, `stty` settings as before)
//! after `q` and after SIGTERM.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::Background;

/// A tmux server of our own (`-L`), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts a session running `command` under `sh -c`, followed by lines that say whether
    /// the terminal settings came back and how the command exited.
    fn start(name: &str, command: &str) -> Tmux {
        match Command::new("tmux").arg("-V").output() {
            Ok(o) if o.status.success() => {}
            _ => panic!(
                "tmux is not installed: run `apt-get install -y tmux` (or `bash scripts/install-peers.sh`)"
            ),
        }
        let socket = format!("sampler-top-{name}-{}", std::process::id());
        let script = format!(
            "before=$(stty -g); {command}; rc=$?; after=$(stty -g); \
             if [ \"$before\" = \"$after\" ]; then echo TTY-RESTORED; else echo TTY-CHANGED; fi; \
             echo TOP-EXIT $rc; exec sleep 120"
        );
        let t = Tmux { socket };
        let out = t.tmux(&[
            "new-session",
            "-d",
            "-x",
            "160",
            "-y",
            "48",
            "sh",
            "-c",
            &script,
        ]);
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p"]).stdout).into_owned()
    }

    fn display(&self, format: &str) -> String {
        String::from_utf8_lossy(&self.tmux(&["display-message", "-p", format]).stdout)
            .trim()
            .to_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys"];
        args.extend_from_slice(keys);
        assert!(self.tmux(&args).status.success());
    }

    /// Polls the screen until `ready` holds, at most 30 s; panics with the screen otherwise.
    /// A screen counts only when a second capture 20 ms later is the same, so a capture taken
    /// while the view is half redrawn is never judged.
    fn wait(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.screen();
            if ready(&s) {
                std::thread::sleep(Duration::from_millis(20));
                if self.screen() == s {
                    return s;
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The pid of the command the pane's shell runs.
    fn child_pid(&self) -> u32 {
        let shell: u32 = self.display("#{pane_pid}").parse().expect("pane pid");
        let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children"))
            .expect("read the shell's children");
        children
            .split_whitespace()
            .next()
            .expect("the pane's shell runs the command")
            .parse()
            .unwrap()
    }

    /// Waits for the wrapper's closing lines and checks the terminal was given back.
    fn assert_restored(&self) {
        let s = self.wait("sampler top to exit", |s| s.contains("TOP-EXIT"));
        assert!(s.contains("TOP-EXIT 0"), "exit status; the screen:\n{s}");
        assert!(
            s.contains("TTY-RESTORED"),
            "stty settings; the screen:\n{s}"
        );
        assert_eq!(self.display("#{alternate_on}"), "0", "alternate screen");
        assert_eq!(self.display("#{cursor_flag}"), "1", "cursor shown");
        // The view is gone from the screen: the shell's lines are what is left.
        assert!(!s.contains("sampler top ·"), "{s}");
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

/// The harvest number in the header.
fn harvest(screen: &str) -> u64 {
    let i = screen.find("harvest ").expect("header");
    screen[i + 8..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The series table's rows: (series, value column as a number when it has one).
fn rows(screen: &str) -> Vec<(String, Option<f64>)> {
    screen
        .lines()
        .filter_map(|l| {
            let l = l.trim_matches(|c| c == '│' || c == ' ');
            let mut parts = l.splitn(2, ' ');
            let series = parts.next()?.to_owned();
            let rest = parts.next()?.trim_start();
            let kind = ["counter ", "gauge ", "timing "]
                .into_iter()
                .find(|k| rest.starts_with(k))?;
            let value = rest[kind.len()..].trim_start();
            // The value column is 14 wide: the number, its unit, `/s`.
            let value: String = value.chars().take(14).collect();
            Some((series, number(value.trim())))
        })
        .collect()
}

/// A number as `human` writes it (`23.5 GiB`, `33.3 ms/s`, `20.00 k`, `-`).
fn number(s: &str) -> Option<f64> {
    let s = s.trim_end_matches("/s");
    let mut it = s.split_whitespace();
    let n: f64 = it.next()?.parse().ok()?;
    let scale = match it.next() {
        None | Some("B") | Some("s") | Some("obs") => 1.0,
        Some("KiB") => 1024.0,
        Some("MiB") => 1024.0 * 1024.0,
        Some("GiB") => 1024.0 * 1024.0 * 1024.0,
        Some("TiB") => 1024f64.powi(4),
        Some("PiB") => 1024f64.powi(5),
        Some("k") => 1e3,
        Some("M") => 1e6,
        Some("G") => 1e9,
        Some("ms") => 1e-3,
        Some("µs") => 1e-6,
        Some(u) => panic!("unit {u:?} in {s:?}"),
    };
    Some(n * scale)
}

fn sampler_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sampler")
}

/// The view of this process's own harvest: series appear and change with each harvest; the
/// sort keys reorder the table, the filter narrows it, space pauses it, `q` ends it and gives
/// the terminal back.
#[test]
fn r17_top_under_tmux_sorts_filters_pauses_and_restores_after_q() {
    let tmux = Tmux::start("keys", &format!("{} top --interval 200ms", sampler_bin()));
    let first = tmux.wait("the series", |s| {
        s.contains("process.memory.usage") && s.contains("system.memory.usage")
    });
    assert_eq!(
        tmux.display("#{alternate_on}"),
        "1",
        "on the alternate screen"
    );
    // The screen follows the harvest.
    let n = harvest(&first);
    let later = tmux.wait("two more harvests", |s| harvest(s) >= n + 2);
    assert_ne!(first, later);
    assert!(later.contains(" processes "), "{later}");

    // By name (the default): A to Z.
    let by_name: Vec<String> = rows(&later).into_iter().map(|r| r.0).collect();
    assert!(by_name.len() > 10, "{later}");
    let mut sorted = by_name.clone();
    sorted.sort();
    assert_eq!(by_name, sorted);

    // By value: largest first, rows without a value last.
    tmux.keys(&["v"]);
    let s = tmux.wait("sort by value", |s| s.contains("sort value"));
    let by_value = rows(&s);
    assert!(s.contains("VALUE▼"), "{s}");
    let values: Vec<f64> = by_value.iter().filter_map(|r| r.1).collect();
    assert!(values.len() > 10, "{s}");
    assert!(
        values.windows(2).all(|w| w[0] >= w[1]),
        "not largest first: {values:?}\n{s}"
    );
    assert_ne!(
        by_value.iter().map(|r| &r.0).collect::<Vec<_>>(),
        by_name.iter().collect::<Vec<_>>()
    );
    tmux.keys(&["p"]);
    tmux.wait("sort by p99", |s| {
        s.contains("sort p99") && s.contains("P99▼")
    });

    // The filter narrows the list to names containing it.
    tmux.keys(&["/", "c", "p", "u", "Enter"]);
    let s = tmux.wait("the filter", |s| s.contains("filter \"cpu\""));
    let filtered = rows(&s);
    assert!(!filtered.is_empty(), "{s}");
    assert!(filtered.iter().all(|r| r.0.contains("cpu")), "{s}");
    assert!(!s.contains("process.memory.usage "), "{s}");
    tmux.keys(&["Escape"]);
    tmux.wait("the filter cleared", |s| {
        !s.contains("filter \"cpu\"") && s.contains("process.memory.usage")
    });

    // Paused: harvests go on (the header counts them) but the rows stay as they were.
    tmux.keys(&["Space"]);
    let s = tmux.wait("paused", |s| s.contains("PAUSED"));
    let table = |s: &str| -> String {
        s.lines()
            .filter(|l| l.contains("process.uptime"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let n = harvest(&s);
    let s2 = tmux.wait("harvests while paused", |s| harvest(s) >= n + 3);
    assert_eq!(table(&s), table(&s2), "paused rows changed");
    tmux.keys(&["Space"]);
    tmux.wait("unpaused and moving", |s| {
        !s.contains("PAUSED") && table(s) != table(&s2)
    });

    tmux.keys(&["q"]);
    tmux.assert_restored();
}

/// The view of a Prometheus endpoint (a `sampler run --prometheus` of its own, which serves
/// the text format as any client library does); an endpoint that goes away is said on the
/// header line; SIGTERM ends the view and gives the terminal back.
#[test]
fn r17_top_of_a_prometheus_endpoint_restores_the_terminal_after_sigterm() {
    let mut endpoint = Background::spawn(&[
        "run",
        "--interval",
        "200ms",
        "--prometheus",
        "127.0.0.1:0",
        "--output",
        "/dev/null",
    ]);
    let lines =
        endpoint
            .stderr
            .wait_until("the endpoint's address", Duration::from_secs(30), |l| {
                l.iter()
                    .any(|l| l.contains("serving prometheus metrics at "))
            });
    let url = lines
        .iter()
        .find_map(|l| l.split("serving prometheus metrics at ").nth(1))
        .unwrap()
        .trim()
        .to_owned();
    let tmux = Tmux::start(
        "url",
        &format!("{} top --url {url} --interval 200ms", sampler_bin()),
    );
    let first = tmux.wait("the endpoint's series", |s| {
        s.contains("process_memory_usage_bytes") && s.contains("process_cpu_time_seconds_total")
    });
    assert!(first.contains(&url), "{first}");
    // Its own RSS and CPU in the processes table.
    assert!(first.contains(" processes "), "{first}");
    assert!(first.contains("MiB"), "{first}");
    let n = harvest(&first);
    let later = tmux.wait("two more scrapes", |s| harvest(s) >= n + 2);
    assert_ne!(first, later);

    // The endpoint goes away: the header says so, the rows stay.
    endpoint.signal(libc::SIGTERM);
    assert!(endpoint.wait_exit(Duration::from_secs(30)).success());
    let s = tmux.wait("the failed scrape", |s| {
        s.contains(&format!("failed to scrape {url}"))
    });
    assert!(s.contains("process_memory_usage_bytes"), "{s}");

    let pid = tmux.child_pid();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "sampler");
    // SAFETY: kill(2) on the pid of the pane's command, a valid signal; no memory is touched.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) }, 0);
    tmux.assert_restored();
    // Ended (and reaped by the pane's shell), not left behind.
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
}

/// A terminal that goes away (its tmux server killed, as when a window closes) ends the view
/// too: it does not keep running with no terminal (it once read end-of-file in a loop, at most
/// of a core, and ignored SIGTERM).
#[test]
fn r17_top_ends_when_its_terminal_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let tmux = Tmux::start(
        "hangup",
        &format!(
            "{} top --shm {} --interval 200ms",
            sampler_bin(),
            dir.path().display()
        ),
    );
    tmux.wait("the view", |s| s.contains("sampler top ·"));
    let pid = tmux.child_pid();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "sampler");
    drop(tmux);
    let deadline = Instant::now() + Duration::from_secs(15);
    let alive = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| !s.split_whitespace().nth(2).is_some_and(|st| st == "Z"))
    };
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left = alive(pid);
    if left {
        // SAFETY: kill(2) on the pid of the view this test started; no memory is touched.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    }
    assert!(
        !left,
        "sampler top still ran 15 s after its terminal went away"
    );
}

/// The view of a shared-memory directory that a worker writes (here this test process, through
/// the shm adapter's writer): a counter as a rate, timings with p50 and p99, sorted by p99.
#[test]
fn r17_top_of_a_shm_directory_shows_rates_and_quantiles() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let segment = sampler_adapter_shm::Segment::create(dir.path()).unwrap();
    let done = segment.counter("jobs.done", &[("queue", "mail")]).unwrap();
    let fast = segment
        .timing("jobs.duration", &[("queue", "fast")])
        .unwrap();
    let slow = segment
        .timing("jobs.duration", &[("queue", "slow")])
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                done.add(10);
                fast.record(0.001);
                slow.record(0.5);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let tmux = Tmux::start(
        "shm",
        &format!(
            "{} top --shm {} --interval 200ms",
            sampler_bin(),
            dir.path().display()
        ),
    );
    // From the third harvest on: the first two may be a few ms apart (one at start, the next
    // at the first aligned tick), a window too short to hold a write of the worker.
    let s = tmux.wait("the worker's rate over a whole interval", |s| {
        s.contains("harvest ")
            && harvest(s) >= 3
            && s.lines()
                .any(|l| l.contains("jobs.done{queue=\"mail\"}") && l.contains("/s"))
    });
    let rate = rows(&s)
        .into_iter()
        .find(|r| r.0 == "jobs.done{queue=\"mail\"}")
        .and_then(|r| r.1)
        .unwrap();
    // 10 every 10 ms at most: up to 1000 a second, less as the sleeps run long. The rate is
    // taken over the harvests' aligned times, while each read happens a little after its
    // tick, so one 200 ms window may hold a few ms more of writes: up to half again.
    assert!((50.0..=1500.0).contains(&rate), "rate {rate}\n{s}");

    tmux.keys(&["p"]);
    let s = tmux.wait("sorted by p99", |s| {
        s.contains("sort p99")
            && s.lines()
                .any(|l| l.contains("queue=\"slow\"") && l.contains("500.0 ms"))
    });
    let order: Vec<String> = rows(&s).into_iter().map(|r| r.0).collect();
    assert_eq!(
        &order[..2],
        [
            "jobs.duration{queue=\"slow\"}",
            "jobs.duration{queue=\"fast\"}"
        ],
        "{s}"
    );
    let fast_line = s.lines().find(|l| l.contains("queue=\"fast\"")).unwrap();
    assert!(fast_line.contains("1.0 ms"), "{s}");

    tmux.keys(&["/", "j", "o", "b", "s", ".", "d", "Enter"]);
    let s = tmux.wait("the filter", |s| s.contains("filter \"jobs.d\""));
    let names: Vec<String> = rows(&s).into_iter().map(|r| r.0).collect();
    assert_eq!(
        names,
        [
            "jobs.duration{queue=\"slow\"}",
            "jobs.duration{queue=\"fast\"}",
            "jobs.done{queue=\"mail\"}"
        ],
        "{s}"
    );

    tmux.keys(&["q"]);
    tmux.assert_restored();
    stop.store(true, Ordering::Relaxed);
    worker.join().unwrap();
}

/// `--config`: the file's adapters and interval are harvested, its exporters and actions are
/// not started; what an adapter says on stderr (a watched process gone) shows on the header
/// line, never over the view.
#[test]
fn r17_top_of_a_config_file_shows_its_adapters_and_their_notices() {
    let dir = tempfile::tempdir().unwrap();
    let mut sleeper = support::Sleeper::start("120");
    let pid = sleeper.pid();
    let console = dir.path().join("console.out");
    let fired = dir.path().join("fired");
    let config = dir.path().join("sampler.toml");
    std::fs::write(
        &config,
        format!(
            "[harvest]\ninterval = \"200ms\"\n\
             [adapters.process]\npids = [{pid}]\n\
             [[exporter]]\nkind = \"console\"\noutput = \"{}\"\n\
             [[action]]\nwhen = \"process.memory.usage > 0\"\nexec = \"touch {}\"\n",
            console.display(),
            fired.display()
        ),
    )
    .unwrap();
    let tmux = Tmux::start(
        "config",
        &format!("{} top --config {}", sampler_bin(), config.display()),
    );
    let row = format!("process.memory.usage{{name=\"sleep\",pid=\"{pid}\"}}");
    let s = tmux.wait("the watched process", |s| s.contains(&row));
    // Its RSS in the processes table, under its pid and name.
    assert!(
        s.lines()
            .any(|l| l.contains(&format!("│{pid} ")) && l.contains("sleep") && l.contains("iB")),
        "{s}"
    );
    let n = harvest(&s);
    tmux.wait("harvests at the file's interval", |s| harvest(s) >= n + 3);

    sleeper.stop();
    let s = tmux.wait("the adapter's notice", |s| {
        s.lines()
            .next()
            .is_some_and(|l| l.contains(&format!("process {pid} (sleep) is gone")))
    });
    // Nothing was written over the view.
    assert!(!s.lines().any(|l| l.starts_with("sampler:")), "{s}");

    tmux.keys(&["q"]);
    tmux.assert_restored();
    assert!(!console.exists(), "the file's exporter was started");
    assert!(!fired.exists(), "the file's action was started");
}

/// Without a terminal, or with flags that cannot go together, `sampler top` says why and
/// exits non-zero, before touching the terminal.
#[test]
fn r17_top_refuses_no_terminal_and_conflicting_flags() {
    let d = support::run_to_end(&["top"]);
    assert_eq!(d.status.code(), Some(1), "{}", d.stderr);
    assert_eq!(
        d.stderr.trim(),
        "sampler: sampler top needs a terminal on standard output (for a log, use sampler run)"
    );
    assert!(d.stdout.is_empty(), "{}", d.stdout);
    let d = support::run_to_end(&[
        "top",
        "--url",
        "http://127.0.0.1:1/metrics",
        "--shm",
        "/tmp",
    ]);
    assert_eq!(d.status.code(), Some(2), "{}", d.stderr);
    assert!(d.stderr.contains("cannot be used with"), "{}", d.stderr);
    let d = support::run_to_end(&["top", "--url", "http://127.0.0.1:1/metrics", "--pid", "1"]);
    assert_eq!(d.status.code(), Some(2), "{}", d.stderr);
    let d = support::run_to_end(&["top", "--interval", "0s"]);
    assert_eq!(d.status.code(), Some(2), "{}", d.stderr);
}

/// A panic inside the view: the panic hook gives the terminal back (and standard error, so the
/// message is readable on the normal screen). The test runs itself again in tmux, in the role
/// of a view that panics.
#[test]
fn r17_a_panic_in_the_view_restores_the_terminal() {
    const ROLE: &str = "SAMPLER_TOP_TEST_PANICKING_VIEW";
    if std::env::var_os(ROLE).is_some() {
        let _screen = sampler::top::ui::Screen::enter().unwrap();
        sampler::top::ui::capture_stderr(|_| {}).unwrap();
        print!("inside the view");
        std::io::Write::flush(&mut std::io::stdout()).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        panic!("a deliberate panic inside the view");
    }
    let me = std::env::current_exe().unwrap();
    let tmux = Tmux::start(
        "panic",
        &format!(
            "{ROLE}=1 {} --exact r17_a_panic_in_the_view_restores_the_terminal --nocapture --test-threads 1",
            me.display()
        ),
    );
    let s = tmux.wait("the panic message", |s| s.contains("TOP-EXIT"));
    assert!(s.contains("a deliberate panic inside the view"), "{s}");
    assert!(s.contains("TTY-RESTORED"), "{s}");
    assert!(!s.contains("TOP-EXIT 0"), "the panic failed its run: {s}");
    assert_eq!(tmux.display("#{alternate_on}"), "0", "alternate screen");
    assert_eq!(tmux.display("#{cursor_flag}"), "1", "cursor shown");
}
