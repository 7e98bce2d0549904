//! Samples real processes (children started by the test) through a harvester.
#![cfg(target_os = "linux")]

mod sleeper;

use std::fs;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sampler_adapter_process::{HostSampler, Naming, ProcessSampler, Target};
use sampler_api::{Harvester, Registry, Snapshot, Value};
use sleeper::{vm_rss, Sleeper};

fn gauge(s: &Snapshot, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    match s.find(name, labels)?.value() {
        Value::Gauge(v) => Some(*v),
        _ => None,
    }
}

type Events = Arc<Mutex<Vec<String>>>;

fn harvester(sampler: ProcessSampler) -> (Harvester, Events) {
    let events: Events = Arc::default();
    let sink = events.clone();
    let registry = Registry::new();
    registry
        .register(sampler.on_event(move |e| sink.lock().unwrap().push(e.to_string())))
        .keep();
    (Harvester::builder().registry(registry).build(), events)
}

fn take(events: &Events) -> Vec<String> {
    std::mem::take(&mut *events.lock().unwrap())
}

#[test]
fn current_process_unlabelled() {
    let registry = Registry::new();
    let _r = registry.register(ProcessSampler::current());
    let snap = Harvester::builder()
        .registry(registry)
        .build()
        .harvest_now();
    let rss = gauge(&snap, "process.memory.usage", &[]).unwrap();
    assert!(rss > 0.0);
    assert!(gauge(&snap, "process.memory.peak_usage", &[]).unwrap() >= rss);
    assert!(gauge(&snap, "process.thread.count", &[]).unwrap() >= 1.0);
    assert!(gauge(&snap, "process.unix.file_descriptor.count", &[]).unwrap() >= 1.0);
    assert!(gauge(&snap, "process.unix.file_descriptor.limit", &[]).unwrap() >= 1.0);
    let uptime = gauge(&snap, "process.uptime", &[]).unwrap();
    assert!((0.0..3600.0).contains(&uptime), "{uptime}");
    for mode in ["user", "system"] {
        let cpu = snap
            .find("process.cpu.time", &[("cpu_mode", mode)])
            .unwrap();
        assert_eq!(
            (cpu.descriptor().unit(), cpu.descriptor().divisor()),
            ("s", 1_000_000)
        );
    }
    assert!(snap
        .find(
            "process.context_switches",
            &[("process_context_switch_type", "voluntary")]
        )
        .is_some());
    assert!(snap.find("process.up", &[("target", "self")]).is_none());
    // Every series explains itself.
    assert!(snap
        .series()
        .all(|s| !s.descriptor().description().is_empty()));
}

/// Fields of `/proc/PID/stat` (1-based, as proc(5) numbers them), after the command name.
fn stat_field(pid: u32, n: usize) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    rest.split(' ').nth(n - 3).unwrap().parse().unwrap()
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

fn counter_seconds(s: &Snapshot, name: &str, labels: &[(&str, &str)]) -> f64 {
    let series = s.find(name, labels).unwrap();
    match series.value() {
        Value::Counter(raw) => series.descriptor().counter_value(*raw),
        other => panic!("{name} is not a counter: {other:?}"),
    }
}

#[test]
fn r11_prometheus_names_carry_what_proc_says() {
    // Some CPU time to see, in user mode.
    let spin = std::time::Instant::now();
    let mut x = 0u64;
    while spin.elapsed() < Duration::from_millis(60) {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
    }
    let me = std::process::id();
    let ticks = clock_ticks();
    let before = (stat_field(me, 14) + stat_field(me, 15)) as f64 / ticks;
    let registry = Registry::new();
    let _r = registry.register(ProcessSampler::current().naming(Naming::Prometheus));
    let snap = Harvester::builder()
        .registry(registry)
        .build()
        .harvest_now();
    let after = (stat_field(me, 14) + stat_field(me, 15)) as f64 / ticks;
    let cpu = counter_seconds(&snap, "process.cpu.seconds", &[]);
    assert!(cpu > 0.0);
    assert!(
        cpu >= before - 1e-9 && cpu <= after + 1e-9,
        "{before} <= {cpu} <= {after}"
    );

    // A sleeping child's readings hold still, so they are compared exactly.
    let child = Sleeper::start("30");
    let pid = child.pid();
    let registry = Registry::new();
    let _r = registry.register(ProcessSampler::new(Target::Pid(pid)).naming(Naming::Prometheus));
    let snap = Harvester::builder()
        .registry(registry)
        .build()
        .harvest_now();
    let p = pid.to_string();
    let l = [("pid", p.as_str()), ("name", "sleep")];
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = |key: &str| -> f64 {
        let line = status.lines().find(|x| x.starts_with(key)).unwrap();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<f64>()
            .unwrap()
            * 1024.0
    };
    assert_eq!(
        gauge(&snap, "process.resident_memory", &l),
        Some(kb("VmRSS:"))
    );
    assert_eq!(
        gauge(&snap, "process.virtual_memory", &l),
        Some(kb("VmSize:"))
    );
    assert_eq!(
        gauge(&snap, "process.resident_memory.max", &l),
        Some(kb("VmHWM:"))
    );
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count() as f64;
    assert_eq!(gauge(&snap, "process.open_fds", &l), Some(fds));
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let soft: f64 = limits
        .lines()
        .find_map(|x| x.strip_prefix("Max open files"))
        .and_then(|x| x.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(gauge(&snap, "process.max_fds", &l), Some(soft));
    let btime: f64 = fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .find_map(|x| x.strip_prefix("btime "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let start = btime + stat_field(pid, 22) as f64 / ticks;
    assert_eq!(gauge(&snap, "process.start_time", &l), Some(start));
    let cpu = (stat_field(pid, 14) + stat_field(pid, 15)) as f64 / ticks;
    let got = counter_seconds(&snap, "process.cpu.seconds", &l);
    assert!((got - cpu).abs() <= 1.0 / ticks, "{got} vs {cpu}");
    assert!(gauge(&snap, "process.threads", &l).unwrap() >= 1.0);
    assert!(snap
        .find(
            "process.context_switches",
            &[("pid", &p), ("name", "sleep"), ("type", "voluntary")]
        )
        .is_some());
    assert!(snap
        .series()
        .all(|s| !s.descriptor().description().is_empty()));
}

#[test]
fn pid_target_matches_proc_status() {
    let child = Sleeper::start("30");
    let pid = child.pid().to_string();
    let (h, events) = harvester(ProcessSampler::new(Target::Pid(child.pid())));
    let snap = h.harvest_now();
    let labels = [("pid", pid.as_str()), ("name", "sleep")];
    assert_eq!(
        gauge(&snap, "process.memory.usage", &labels),
        Some(vm_rss(child.pid()))
    );
    assert_eq!(
        gauge(&snap, "process.up", &[("target", &format!("pid:{pid}"))]),
        Some(1.0)
    );
    assert!(take(&events).is_empty());
}

#[test]
fn missing_pid_reported_once() {
    let (h, events) = harvester(ProcessSampler::new(Target::Pid(u32::MAX)));
    let snap = h.harvest_now();
    let spec = format!("pid:{}", u32::MAX);
    assert_eq!(gauge(&snap, "process.up", &[("target", &spec)]), Some(0.0));
    assert_eq!(
        take(&events),
        vec![format!(
            "process {0} not found: no such process (/proc/{0} does not exist)",
            u32::MAX
        )]
    );
    h.harvest_now();
    assert!(take(&events).is_empty(), "reported twice");
}

#[test]
fn pid_file_followed_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("svc.pid");
    let mut first = Sleeper::start("30");
    fs::write(&path, format!("{}\n", first.pid())).unwrap();
    let (h, events) = harvester(ProcessSampler::new(Target::PidFile(path.clone())));
    let file = path.display().to_string();
    let spec = format!("pidfile:{file}");
    let up = |s: &Snapshot| gauge(s, "process.up", &[("target", &spec)]);

    let snap = h.harvest_now();
    let pid1 = first.pid().to_string();
    let l1 = [
        ("pid", pid1.as_str()),
        ("name", "sleep"),
        ("pidfile", &file),
    ];
    assert!(gauge(&snap, "process.memory.usage", &l1).unwrap() > 0.0);
    assert_eq!(up(&snap), Some(1.0));

    // The service stops: reported once, its series vanish.
    first.stop();
    let snap = h.harvest_now();
    assert_eq!(up(&snap), Some(0.0));
    assert!(snap.named("process.memory.usage").next().is_none());
    assert_eq!(
        take(&events),
        vec![format!(
            "pid file {file}: process {pid1} (sleep) is gone: no such process (/proc/{pid1} does not exist)"
        )]
    );
    h.harvest_now();
    assert!(take(&events).is_empty(), "reported twice");

    // It restarts and rewrites its pid file: picked up again.
    let second = Sleeper::start("30");
    fs::write(&path, format!("{}\n", second.pid())).unwrap();
    let snap = h.harvest_now();
    let pid2 = second.pid().to_string();
    let l2 = [
        ("pid", pid2.as_str()),
        ("name", "sleep"),
        ("pidfile", &file),
    ];
    assert!(gauge(&snap, "process.memory.usage", &l2).is_some());
    assert_eq!(up(&snap), Some(1.0));
    assert_eq!(
        take(&events),
        vec![format!("pid file {file}: process {pid2} (sleep) found")]
    );
}

#[test]
fn name_target_matches_every_process() {
    // A duration no other test uses, so the pattern matches only these two children.
    let a = Sleeper::start("31.4159");
    let b = Sleeper::start("31.4159");
    let (h, events) = harvester(ProcessSampler::new(
        Target::name(r"^sleep 31\.4159$").unwrap(),
    ));
    let snap = h.harvest_now();
    let mut pids: Vec<&str> = snap
        .named("process.memory.usage")
        .map(|s| s.labels().get("pid").unwrap())
        .collect();
    pids.sort();
    let (pa, pb) = (a.pid().to_string(), b.pid().to_string());
    let mut want = vec![pa.as_str(), pb.as_str()];
    want.sort();
    assert_eq!(pids, want);
    for s in snap.named("process.memory.usage") {
        assert_eq!(s.labels().get("name"), Some("sleep"));
    }
    assert!(take(&events).is_empty());
    drop(a);
    h.harvest_now();
    let ev = take(&events);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert!(
        ev[0].starts_with(&format!(
            "name \"^sleep 31\\\\.4159$\": process {pa} (sleep) is gone"
        )),
        "{ev:?}"
    );
}

#[test]
fn zombie_counts_as_gone() {
    let mut child = Sleeper::start("30");
    let pid = child.pid();
    let (h, events) = harvester(ProcessSampler::new(Target::Pid(pid)));
    h.harvest_now();
    // Killed but not reaped: a zombie until `wait`.
    child.0.kill().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap()
        .contains(") Z ")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "child never became a zombie"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let snap = h.harvest_now();
    assert!(snap.named("process.memory.usage").next().is_none());
    assert_eq!(
        take(&events),
        vec![format!(
            "pid {pid}: process {pid} (sleep) is gone: it has exited (a zombie not yet reaped)"
        )]
    );
    child.stop();
}

#[test]
fn host_series() {
    let registry = Registry::new();
    let _r = registry.register(HostSampler::new());
    let snap = Harvester::builder()
        .registry(registry)
        .build()
        .harvest_now();
    let total = gauge(&snap, "system.memory.limit", &[]).unwrap();
    let avail = gauge(&snap, "system.linux.memory.available", &[]).unwrap();
    assert!(total > 0.0 && avail > 0.0 && avail <= total);
    let state = |s| gauge(&snap, "system.memory.usage", &[("system_memory_state", s)]).unwrap();
    assert_eq!(state("used"), total - avail);
    for s in ["free", "buffers", "cached"] {
        assert!(state(s) >= 0.0 && state(s) <= total, "{s}");
    }
    let paging = |s| gauge(&snap, "system.paging.usage", &[("system_paging_state", s)]).unwrap();
    assert!(paging("used") >= 0.0 && paging("free") >= 0.0);
    for p in ["1m", "5m", "15m"] {
        let name = format!("system.cpu.load_average.{p}");
        assert!(gauge(&snap, &name, &[]).unwrap() >= 0.0);
    }
    let cpus = gauge(&snap, "system.cpu.logical.count", &[]).unwrap();
    assert!(cpus >= 1.0);
    assert!(snap
        .series()
        .all(|s| !s.descriptor().description().is_empty()));
}
