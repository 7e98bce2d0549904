//! Fault tests over loopback TCP: a backend absent at start, killed mid-run and restarted
//! (our sink, and real carbon), one that accepts but never reads, and a buffer that fills.
//!
//! In each run through a `Harvester`, the tests check that recording keeps going, that the
//! harvest keeps its schedule, that the buffer stays within its bound, that after recovery
//! every harvest arrives whole and in order, and that the operator got exactly one line when
//! it failed and one when it recovered.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sampler_api::{
    Descriptor, ExportError, Exporter, FnSampler, Harvester, Registration, Registry, Snapshot,
    Value,
};
use sampler_exporter_graphite::{Event, GraphiteExporter};

use super::support::{at, now_secs, poll, Carbon, Sink};

static LOAD: Descriptor = Descriptor::gauge("fault.load", "1", "the harvest's number");
static RECORDED: Descriptor = Descriptor::counter("fault.recorded", "1", "records made");

const INTERVAL: Duration = Duration::from_millis(200);

/// Keeps every snapshot it is given: the harvest's schedule as a second exporter sees it.
struct Capture(Arc<Mutex<Vec<Arc<Snapshot>>>>);

impl Exporter for Capture {
    fn name(&self) -> &str {
        "capture"
    }
    fn export(&mut self, s: Arc<Snapshot>) -> Result<(), ExportError> {
        self.0.lock().unwrap().push(s);
        Ok(())
    }
}

/// A harvester every `INTERVAL` with the Graphite exporter, a capture exporter, a sampler
/// writing `series` gauges holding the harvest's number, and a thread recording into a
/// counter as fast as it can.
struct Run {
    harvester: Option<Harvester>,
    events: Arc<Mutex<Vec<Event>>>,
    captured: Arc<Mutex<Vec<Arc<Snapshot>>>>,
    harvests: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    recorder: Option<JoinHandle<()>>,
    _reg: Registration,
    bound: usize,
    series: usize,
}

impl Run {
    fn start(port: u16, bound: usize, series: usize) -> Run {
        let registry = Registry::new();
        let events = Arc::new(Mutex::new(Vec::new()));
        let ev = events.clone();
        let exporter = GraphiteExporter::builder()
            .address(format!("127.0.0.1:{port}"))
            .buffer(bound)
            .connect_timeout(Duration::from_millis(300))
            .write_timeout(Duration::from_millis(300))
            .backoff(Duration::from_millis(50), Duration::from_millis(400))
            .on_event(move |e| ev.lock().unwrap().push(e.clone()))
            .build()
            .unwrap();
        let harvests = Arc::new(AtomicU64::new(0));
        let h = harvests.clone();
        let reg = registry.register(FnSampler::new("load", move |out| {
            let n = h.fetch_add(1, SeqCst) + 1;
            for i in 0..series {
                out.gauge(&LOAD, &[("i", &i.to_string())], n as f64);
            }
        }));
        let recorded = registry.counter(&RECORDED);
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let recorder = std::thread::spawn(move || {
            while !st.load(SeqCst) {
                for _ in 0..1000 {
                    recorded.inc();
                }
                std::thread::yield_now();
            }
        });
        let captured = Arc::new(Mutex::new(Vec::new()));
        let harvester = Harvester::builder()
            .registry(registry)
            .interval(INTERVAL)
            .exporter(exporter)
            .exporter(Capture(captured.clone()))
            .start();
        Run {
            harvester: Some(harvester),
            events,
            captured,
            harvests,
            stop,
            recorder: Some(recorder),
            _reg: reg,
            bound,
            series,
        }
    }

    fn captured(&self) -> usize {
        self.captured.lock().unwrap().len()
    }

    /// Waits for `n` more harvests.
    fn wait_harvests(&self, n: usize) {
        let until = self.captured() + n;
        poll(Duration::from_secs(30), "harvests", || {
            (self.captured() >= until).then_some(())
        });
    }

    fn wait_event(&self, n: usize) {
        poll(Duration::from_secs(30), "an exporter event", || {
            (self.events.lock().unwrap().len() >= n).then_some(())
        });
    }

    /// Shuts the harvester down (the last harvest and the buffer go out) and checks the
    /// run: schedule, recording, buffer bound and the two events. Returns the number of
    /// harvests made.
    fn finish(mut self, failing: &str) -> u64 {
        self.harvester
            .take()
            .unwrap()
            .shutdown(Duration::from_secs(10))
            .unwrap();
        self.stop.store(true, SeqCst);
        self.recorder.take().unwrap().join().unwrap();
        let snaps = self.captured.lock().unwrap().clone();
        assert!(snaps.len() >= 8, "only {} harvests", snaps.len());
        // The schedule: every harvest reached the capture exporter, one per tick.
        for (i, s) in snaps.iter().enumerate() {
            assert_eq!(s.sequence, i as u64 + 1, "harvest sequence");
        }
        let loop_snaps = &snaps[..snaps.len() - 1]; // the last is shutdown's, at the actual time
        for w in loop_snaps.windows(2) {
            assert_eq!(
                w[1].time.duration_since(w[0].time).unwrap(),
                INTERVAL,
                "harvests {} and {} are not one interval apart",
                w[0].sequence,
                w[1].sequence
            );
        }
        let counter = |s: &Snapshot, name: &str, labels: &[(&str, &str)]| match s
            .find(name, labels)
            .map(|x| x.value())
        {
            Some(Value::Counter(n)) => *n,
            other => panic!("{name} {labels:?}: {other:?}"),
        };
        let last = snaps.last().unwrap();
        assert_eq!(counter(last, "sampler.harvest.skipped", &[]), 0);
        // Recording never waited: the recorder's total grew between any two harvests of the
        // loop (shutdown's harvest may follow the last one within microseconds).
        for w in loop_snaps.windows(2) {
            assert!(
                counter(&w[1], "fault.recorded", &[]) > counter(&w[0], "fault.recorded", &[]),
                "recording stalled between harvests {} and {}",
                w[0].sequence,
                w[1].sequence
            );
        }
        // The buffer stayed within its bound, and nothing was dropped from it.
        for s in &snaps {
            match s
                .find("sampler.exporter.graphite.buffered", &[])
                .map(|x| x.value())
            {
                Some(Value::Gauge(b)) => assert!(*b <= self.bound as f64, "buffered {b} bytes"),
                other => panic!("buffered: {other:?}"),
            }
        }
        assert_eq!(
            counter(
                last,
                "sampler.exporter.graphite.dropped",
                &[("reason", "buffer_full")]
            ),
            0
        );
        // One line when it failed, one when it recovered.
        let events = self.events.lock().unwrap().clone();
        assert_eq!(events.len(), 2, "events: {events:?}");
        match &events[0] {
            Event::Failing { error, .. } => {
                assert!(
                    error.contains(failing),
                    "{error:?} does not say {failing:?}"
                )
            }
            e => panic!("first event {e:?}"),
        }
        assert!(
            matches!(&events[1], Event::Recovered { dropped: 0, .. }),
            "{:?}",
            events[1]
        );
        self.harvests.load(SeqCst)
    }
}

/// Checks that harvests 1..=last arrived, each whole (every series), first arrivals in
/// order. A harvest may arrive twice: one in flight when the connection broke is sent again
/// (Graphite keeps the last value of a path and second, so it stores the same point).
fn assert_delivered(lines: &[String], last: u64, series: usize) {
    let mut order = Vec::new();
    let mut seen: BTreeSet<u64> = BTreeSet::new();
    let mut per: std::collections::BTreeMap<u64, BTreeSet<String>> = Default::default();
    for l in lines.iter().filter(|l| l.starts_with("fault.load;")) {
        let f: Vec<&str> = l.split(' ').collect();
        assert_eq!(f.len(), 3, "line {l:?}");
        let n: f64 = f[1].parse().unwrap();
        let n = n as u64;
        per.entry(n).or_default().insert(f[0].to_owned());
        if seen.insert(n) {
            order.push(n);
        }
    }
    let want: Vec<u64> = (1..=last).collect();
    assert_eq!(order, want, "harvests in order of first arrival");
    for (n, paths) in per {
        assert_eq!(paths.len(), series, "harvest {n} arrived incomplete");
    }
}

#[test]
fn r12_backend_absent_at_start() {
    let mut sink = Sink::unbound();
    let run = Run::start(sink.port, 1 << 20, 20);
    run.wait_event(1);
    run.wait_harvests(5);
    sink.listen(true);
    run.wait_event(2);
    run.wait_harvests(2);
    let series = run.series;
    let last = run.finish(&format!(
        "failed to connect to graphite at 127.0.0.1:{}",
        sink.port
    ));
    sink.kill();
    assert_delivered(&sink.lines(), last, series);
}

#[test]
fn r12_backend_killed_mid_run_and_restarted() {
    let mut sink = Sink::unbound();
    sink.listen(true);
    let run = Run::start(sink.port, 1 << 20, 20);
    poll(
        Duration::from_secs(30),
        "three harvests at the sink",
        || {
            (sink
                .lines()
                .iter()
                .any(|l| l.starts_with("fault.load;") && l.contains(" 3.0 ")))
            .then_some(())
        },
    );
    sink.kill();
    run.wait_event(1);
    run.wait_harvests(5);
    sink.listen(true);
    run.wait_event(2);
    run.wait_harvests(2);
    let series = run.series;
    let last = run.finish(&format!(
        "lost the connection to graphite at 127.0.0.1:{}",
        sink.port
    ));
    sink.kill();
    assert_delivered(&sink.lines(), last, series);
}

#[test]
fn r12_backend_that_accepts_but_never_reads() {
    let mut sink = Sink::unbound();
    sink.listen(false);
    // About 100 kB a harvest, so the system's socket buffers fill within a few harvests.
    let run = Run::start(sink.port, 16 << 20, 2000);
    run.wait_event(1);
    run.wait_harvests(3);
    sink.drain_held();
    sink.listen(true);
    run.wait_event(2);
    run.wait_harvests(2);
    let series = run.series;
    let last = run.finish(&format!(
        "failed to write to graphite at 127.0.0.1:{}: the backend took no data",
        sink.port
    ));
    sink.kill();
    assert_delivered(&sink.lines(), last, series);
}

#[test]
fn r12_shutdown_keeps_its_deadline_when_the_backend_never_reads() {
    let mut sink = Sink::unbound();
    sink.listen(false);
    let registry = Registry::new();
    let _reg = registry.register(FnSampler::new("load", |out| {
        for i in 0..20_000 {
            out.gauge(&LOAD, &[("i", &i.to_string())], 1.0);
        }
    }));
    let h = Harvester::builder()
        .registry(registry)
        .self_metrics(false)
        .build();
    let mut exporter = GraphiteExporter::builder()
        .address(format!("127.0.0.1:{}", sink.port))
        .buffer(64 << 20)
        .write_timeout(Duration::from_secs(30)) // longer than the deadline: the deadline wins
        .on_event(|_| {})
        .build()
        .unwrap();
    let snap = h.harvest_now();
    // Fill the system's buffers: each export writes until its own deadline of an interval.
    let mut k = 0;
    while exporter.buffered_harvests() < 3 {
        let _ = exporter.export(at(&snap, now_secs() + k));
        k += 1;
        assert!(k < 100, "the backend never filled up");
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs(1);
    let err = exporter.shutdown(deadline).unwrap_err();
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "shutdown took {took:?} with a 1 s deadline"
    );
    assert!(
        err.to_string()
            .contains(&format!("graphite at 127.0.0.1:{}", sink.port)),
        "{err}"
    );
    sink.drain_held();
}

#[test]
fn r12_a_full_buffer_drops_the_oldest_harvests_and_counts_them() {
    let mut sink = Sink::unbound();
    let registry = Registry::new();
    let n = Arc::new(AtomicU64::new(0));
    let nn = n.clone();
    let _reg = registry.register(FnSampler::new("load", move |out| {
        let k = nn.load(SeqCst) as f64;
        for i in 0..10 {
            out.gauge(&LOAD, &[("i", &i.to_string())], k);
        }
    }));
    let h = Harvester::builder()
        .registry(registry)
        .self_metrics(false)
        .build();
    let probe = h.harvest_now();
    let mut one = Vec::new();
    sampler_exporter_graphite::Encoder::new(&Default::default())
        .unwrap()
        .encode(&at(&probe, 1_700_000_000), &mut one);
    // Room for three harvests (lines of one harvest all have the same length here).
    let bound = one.len() * 3 + one.len() / 2;
    let mut exporter = GraphiteExporter::builder()
        .address(format!("127.0.0.1:{}", sink.port))
        .buffer(bound)
        .backoff(Duration::from_millis(1), Duration::from_millis(2))
        .on_event(|_| {})
        .build()
        .unwrap();
    let stats = Registry::new();
    let _s = stats.register_arc(exporter.sampler().unwrap());
    let base = 1_700_000_000;
    for k in 1..=7u64 {
        n.store(k, SeqCst);
        assert!(exporter.export(at(&h.harvest_now(), base + k)).is_err());
        assert!(exporter.buffered() <= bound);
    }
    sink.listen(true);
    exporter
        .shutdown(Instant::now() + Duration::from_secs(10))
        .unwrap();
    sink.kill();
    let got: Vec<u64> = {
        let mut v: Vec<u64> = sink
            .lines()
            .iter()
            .map(|l| l.split(' ').nth(1).unwrap().parse::<f64>().unwrap() as u64)
            .collect();
        v.dedup();
        v
    };
    assert_eq!(got, vec![5, 6, 7], "the newest three harvests, in order");
    let s = Harvester::builder()
        .registry(stats)
        .self_metrics(false)
        .build()
        .harvest_now();
    let c = |name: &str, l: &[(&str, &str)]| match s.find(name, l).map(|x| x.value()) {
        Some(Value::Counter(n)) => *n,
        other => panic!("{name}: {other:?}"),
    };
    // Points in = points sent + points dropped.
    assert_eq!(
        c(
            "sampler.exporter.graphite.dropped",
            &[("reason", "buffer_full")]
        ),
        40
    );
    assert_eq!(c("sampler.exporter.graphite.sent", &[]), 30);
}

#[test]
fn r12_carbon_restarted_mid_run_gets_every_buffered_interval() {
    let mut carbon = Carbon::start();
    let registry = Registry::new();
    let g = registry.gauge(&LOAD);
    let h = Harvester::builder()
        .registry(registry)
        .self_metrics(false)
        .build();
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = events.clone();
    let mut exporter = GraphiteExporter::builder()
        .address(format!("127.0.0.1:{}", carbon.line_port))
        .prefix("rtest.restart")
        .backoff(Duration::from_millis(1), Duration::from_millis(2))
        .on_event(move |e| ev.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let name = "rtest.restart.fault.load".to_owned();
    let base = now_secs() - 200;
    let mut send = |k: u64| {
        g.set(k as f64);
        exporter.export(at(&h.harvest_now(), base + k))
    };
    for k in 1..=3 {
        send(k).unwrap();
    }
    carbon.wait_points(&[(name.clone(), 3)]);
    carbon.stop();
    for k in 4..=6 {
        assert!(send(k).is_err(), "harvest {k} went out with carbon stopped");
    }
    carbon.restart();
    for k in 7..=8 {
        send(k).unwrap();
    }
    exporter
        .shutdown(Instant::now() + Duration::from_secs(10))
        .unwrap();
    let got = carbon.wait_points(&[(name.clone(), 8)]);
    let want: Vec<(u64, f64)> = (1..=8).map(|k| (base + k, k as f64)).collect();
    assert_eq!(got[0], want);
    let events = events.lock().unwrap().clone();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(matches!(events[0], Event::Failing { .. }));
    assert!(matches!(events[1], Event::Recovered { dropped: 0, .. }));
}
