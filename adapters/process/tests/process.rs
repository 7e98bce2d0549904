//! Samples real processes (children started by the test) through a harvester.
#![cfg(target_os = "linux")]

mod sleeper;

use std::fs;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sampler_adapter_process::{HostSampler, ProcessSampler, Target};
use sampler_api::{Harvester, Registry, Snapshot, Value};
use sleeper::{vm_rss, Sleeper};

fn gauge(s: &Snapshot, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    match s.find(name, labels)?.value {
        Value::Gauge(v) => Some(v),
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
    let rss = gauge(&snap, "process.memory.rss", &[]).unwrap();
    assert!(rss > 0.0);
    assert!(gauge(&snap, "process.memory.peak_rss", &[]).unwrap() >= rss);
    assert!(gauge(&snap, "process.threads", &[]).unwrap() >= 1.0);
    assert!(gauge(&snap, "process.open_fds", &[]).unwrap() >= 1.0);
    let start = gauge(&snap, "process.start_time", &[]).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        start <= now + 2.0 && start > now - 3600.0,
        "{start} vs {now}"
    );
    assert!(snap.find("process.cpu.user", &[]).is_some());
    assert!(snap
        .find("process.context_switches", &[("kind", "voluntary")])
        .is_some());
    assert!(snap.find("process.up", &[("target", "self")]).is_none());
}

#[test]
fn pid_target_matches_proc_status() {
    let child = Sleeper::start("30");
    let pid = child.pid().to_string();
    let (h, events) = harvester(ProcessSampler::new(Target::Pid(child.pid())));
    let snap = h.harvest_now();
    let labels = [("pid", pid.as_str()), ("name", "sleep")];
    assert_eq!(
        gauge(&snap, "process.memory.rss", &labels),
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
    assert!(gauge(&snap, "process.memory.rss", &l1).unwrap() > 0.0);
    assert_eq!(up(&snap), Some(1.0));

    // The service stops: reported once, its series vanish.
    first.stop();
    let snap = h.harvest_now();
    assert_eq!(up(&snap), Some(0.0));
    assert!(snap.named("process.memory.rss").next().is_none());
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
    assert!(gauge(&snap, "process.memory.rss", &l2).is_some());
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
        .named("process.memory.rss")
        .map(|s| s.labels.get("pid").unwrap())
        .collect();
    pids.sort();
    let (pa, pb) = (a.pid().to_string(), b.pid().to_string());
    let mut want = vec![pa.as_str(), pb.as_str()];
    want.sort();
    assert_eq!(pids, want);
    for s in snap.named("process.memory.rss") {
        assert_eq!(s.labels.get("name"), Some("sleep"));
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
    assert!(snap.named("process.memory.rss").next().is_none());
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
    let total = gauge(&snap, "host.memory.total", &[]).unwrap();
    let avail = gauge(&snap, "host.memory.available", &[]).unwrap();
    assert!(total > 0.0 && avail > 0.0 && avail <= total);
    assert!(gauge(&snap, "host.swap.used", &[]).unwrap() >= 0.0);
    for p in ["1m", "5m", "15m"] {
        assert!(gauge(&snap, "host.load", &[("period", p)]).unwrap() >= 0.0);
    }
    let cpus = gauge(&snap, "host.cpu.count", &[]).unwrap();
    assert!(cpus >= 1.0);
}
