//! The harvest loop: isolation, the drop policy, shutdown and lifetimes.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sampler_api::{
    Descriptor, ExportError, Exporter, FnSampler, Harvester, Registry, Snapshot, Value,
};

static OK: Descriptor = Descriptor::gauge("test.ok", "1", "");
static HITS: Descriptor = Descriptor::counter("test.hits", "1", "");

fn counter_of(s: &Snapshot, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
    match s.find(name, labels)?.value() {
        Value::Counter(c) => Some(*c),
        _ => None,
    }
}

/// Collects every snapshot it is given.
#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<Arc<Snapshot>>>>);

impl Exporter for Collect {
    fn name(&self) -> &str {
        "collect"
    }
    fn export(&mut self, s: Arc<Snapshot>) -> Result<(), ExportError> {
        self.0.lock().unwrap().push(s);
        Ok(())
    }
}

/// Blocks forever on its first export (a dead backend with no timeout).
struct Stuck(Arc<AtomicBool>);

impl Exporter for Stuck {
    fn name(&self) -> &str {
        "stuck"
    }
    fn export(&mut self, _: Arc<Snapshot>) -> Result<(), ExportError> {
        self.0.store(true, Ordering::SeqCst);
        loop {
            std::thread::park();
        }
    }
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    f()
}

#[test]
fn a_panicking_sampler_stops_no_other_and_is_counted() {
    let registry = Registry::new();
    let _a = registry.register(FnSampler::new("before", |out| {
        out.gauge(&OK, &[("s", "before")], 1.0)
    }));
    let _bad = registry.register(FnSampler::new("bomb", |out| {
        out.gauge(&OK, &[("s", "partial")], 1.0);
        panic!("sampler bug");
    }));
    let _b = registry.register(FnSampler::new("after", |out| {
        out.gauge(&OK, &[("s", "after")], 1.0)
    }));
    let h = Harvester::builder().registry(registry).build();
    h.harvest_now();
    let s = h.harvest_now();
    assert!(s.find("test.ok", &[("s", "before")]).is_some());
    assert!(s.find("test.ok", &[("s", "after")]).is_some());
    assert!(
        s.find("test.ok", &[("s", "partial")]).is_none(),
        "a panicking sampler's partial output is dropped"
    );
    let errors = counter_of(
        &s,
        "sampler.sampler.errors",
        &[("sampler", "bomb"), ("reason", "panic")],
    );
    assert_eq!(errors, Some(2));
}

#[test]
fn a_sampler_over_budget_is_reported_and_others_run() {
    let registry = Registry::new();
    let _slow = registry.register(FnSampler::new("slow", |_| {
        std::thread::sleep(Duration::from_millis(30))
    }));
    let _b = registry.register(FnSampler::new("fine", |out| out.gauge(&OK, &[], 1.0)));
    let h = Harvester::builder()
        .registry(registry)
        .sampler_budget(Duration::from_millis(5))
        .build();
    let s = h.harvest_now();
    assert!(s.find("test.ok", &[]).is_some());
    assert_eq!(
        counter_of(
            &s,
            "sampler.sampler.errors",
            &[("sampler", "slow"), ("reason", "budget")]
        ),
        Some(1)
    );
}

#[test]
fn a_blocked_exporter_delays_neither_harvests_nor_recording_and_drops_are_counted() {
    let registry = Registry::new();
    let hits = registry.counter(&HITS);
    let stuck = Arc::new(AtomicBool::new(false));
    let collect = Collect::default();
    let mut h = Harvester::builder()
        .registry(registry)
        .interval(Duration::from_millis(20))
        .queue_capacity(2)
        .exporter(Stuck(stuck.clone()))
        .exporter(collect.clone())
        .build();
    h.start();
    assert!(wait_until(Duration::from_secs(5), || stuck.load(Ordering::SeqCst)));
    // Recording goes on at full speed while the exporter is stuck.
    let t = Instant::now();
    for _ in 0..1_000_000 {
        hits.inc();
    }
    assert!(t.elapsed() < Duration::from_secs(2));
    // Harvests keep coming to the healthy exporter.
    let seen = collect.0.lock().unwrap().len();
    assert!(wait_until(Duration::from_secs(5), || collect
        .0
        .lock()
        .unwrap()
        .len()
        >= seen + 10));
    let last = collect.0.lock().unwrap().last().unwrap().clone();
    let dropped = counter_of(&last, "sampler.exporter.dropped", &[("exporter", "stuck")]).unwrap();
    assert!(dropped >= 5, "dropped {dropped}");
    assert_eq!(
        counter_of(
            &last,
            "sampler.exporter.dropped",
            &[("exporter", "collect")]
        ),
        Some(0)
    );
    let depth = last
        .find("sampler.exporter.queue_depth", &[("exporter", "stuck")])
        .unwrap();
    assert_eq!(
        depth.value(),
        Value::Gauge(2.0),
        "the stuck queue stays at its bound"
    );
    // Shutdown still returns by its deadline, naming the stuck exporter.
    let t = Instant::now();
    let err = h.shutdown(Duration::from_millis(300)).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(err.to_string().contains("stuck"), "{err}");
}

#[test]
fn shutdown_delivers_the_last_increments() {
    let registry = Registry::new();
    let hits = registry.counter(&HITS);
    let collect = Collect::default();
    let h = Harvester::builder()
        .registry(registry)
        .interval(Duration::from_secs(3600))
        .exporter(collect.clone())
        .start();
    for _ in 0..12_345 {
        hits.inc();
    }
    h.shutdown(Duration::from_secs(5)).unwrap();
    let all = collect.0.lock().unwrap();
    let last = all.last().expect("a final snapshot");
    assert_eq!(counter_of(last, "test.hits", &[]), Some(12_345));
}

#[test]
fn dropping_a_handle_removes_its_series() {
    let registry = Registry::new();
    let h = Harvester::builder()
        .registry(registry.clone())
        .self_metrics(false)
        .build();
    let hits = registry.counter(&HITS);
    hits.inc();
    let reg = registry.register(FnSampler::new("ok", |out| out.gauge(&OK, &[], 1.0)));
    let s = h.harvest_now();
    assert!(s.find("test.hits", &[]).is_some());
    assert!(s.find("test.ok", &[]).is_some());
    drop(hits);
    drop(reg);
    let s = h.harvest_now();
    assert!(
        s.is_empty(),
        "left behind: {:?}",
        s.series().collect::<Vec<_>>()
    );
}

#[test]
fn a_series_a_sampler_stops_writing_disappears_and_returns_as_new() {
    let registry = Registry::new();
    let on = Arc::new(AtomicUsize::new(1));
    let o = on.clone();
    let _r = registry.register(FnSampler::new("flaky", move |out| {
        if o.load(Ordering::SeqCst) == 1 {
            out.counter(&HITS, &[], 5);
        }
    }));
    let h = Harvester::builder()
        .registry(registry)
        .self_metrics(false)
        .build();
    let first = h.harvest_now().find("test.hits", &[]).unwrap().to_owned();
    on.store(0, Ordering::SeqCst);
    assert!(h.harvest_now().find("test.hits", &[]).is_none());
    on.store(1, Ordering::SeqCst);
    let again = h.harvest_now().find("test.hits", &[]).unwrap().to_owned();
    assert_ne!(first.id, again.id);
    assert!(again.start_time >= first.start_time);
}

#[test]
fn harvests_fall_on_interval_boundaries() {
    let registry = Registry::new();
    let collect = Collect::default();
    let h = Harvester::builder()
        .registry(registry)
        .interval(Duration::from_millis(50))
        .exporter(collect.clone())
        .start();
    assert!(wait_until(Duration::from_secs(5), || collect
        .0
        .lock()
        .unwrap()
        .len()
        >= 3));
    h.shutdown(Duration::from_secs(1)).unwrap();
    let all = collect.0.lock().unwrap();
    for s in all.iter().take(3) {
        let ms = s
            .time
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        assert_eq!(ms % 50_000_000, 0, "harvest time not aligned");
    }
}

#[test]
fn two_exporters_of_one_name_get_apart_self_metrics() {
    let h = Harvester::builder()
        .registry(Registry::new())
        .exporter(Collect::default())
        .exporter(Collect::default())
        .build();
    let s = h.harvest_now();
    assert!(s
        .find("sampler.exporter.dropped", &[("exporter", "collect")])
        .is_some());
    assert!(s
        .find("sampler.exporter.dropped", &[("exporter", "collect-2")])
        .is_some());
}

/// Keeps the handle it is given, to harvest on demand.
struct OnDemand(Arc<Mutex<Option<sampler_api::HarvestHandle>>>);

impl Exporter for OnDemand {
    fn name(&self) -> &str {
        "on-demand"
    }
    fn export(&mut self, _: Arc<Snapshot>) -> Result<(), ExportError> {
        Ok(())
    }
    fn attach(&mut self, handle: sampler_api::HarvestHandle) {
        *self.0.lock().unwrap() = Some(handle);
    }
}

#[test]
fn an_on_demand_harvest_can_refuse_to_wait_for_a_running_one() {
    let registry = Registry::new();
    let (enter, entered) = crossbeam_channel::bounded::<()>(1);
    let (release, released) = crossbeam_channel::bounded::<()>(1);
    let _slow = registry.register(FnSampler::new("slow", move |_| {
        let _ = enter.try_send(());
        let _ = released.recv_timeout(Duration::from_secs(5));
    }));
    let slot = Arc::new(Mutex::new(None));
    let h = Arc::new(
        Harvester::builder()
            .registry(registry)
            .exporter(OnDemand(slot.clone()))
            .build(),
    );
    let handle = slot.lock().unwrap().clone().expect("attached");
    let h2 = h.clone();
    let running = std::thread::spawn(move || h2.harvest_now());
    entered.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(handle.try_harvest().is_none(), "a harvest is running");
    // Closing the channel lets this and every later call of the slow sampler return at once.
    drop(release);
    running.join().unwrap();
    assert!(handle.try_harvest().is_some());
}

#[test]
fn a_sampler_that_never_returns_holds_up_only_itself() {
    let registry = Registry::new();
    let (release, released) = crossbeam_channel::bounded::<()>(1);
    let stuck = Arc::new(AtomicBool::new(true));
    let s2 = stuck.clone();
    let _stuck = registry.register(FnSampler::new("stuck", move |out| {
        if s2.load(Ordering::SeqCst) {
            let _ = released.recv_timeout(Duration::from_secs(30));
        }
        out.gauge(&OK, &[("s", "stuck")], 1.0);
    }));
    let _fine = registry.register(FnSampler::new("fine", |out| {
        out.gauge(&OK, &[("s", "fine")], 1.0)
    }));
    let h = Harvester::builder()
        .registry(registry)
        .sampler_budget(Duration::from_millis(20))
        .build();
    for round in 1..=2 {
        let t = Instant::now();
        let s = h.harvest_now();
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "harvest {round} waited on the stuck sampler"
        );
        assert!(s.find("test.ok", &[("s", "fine")]).is_some());
        assert!(s.find("test.ok", &[("s", "stuck")]).is_none());
        let hung = counter_of(
            &s,
            "sampler.sampler.errors",
            &[("sampler", "stuck"), ("reason", "hung")],
        );
        assert_eq!(hung, Some(round));
    }
    // Once its call returns, the sampler is polled again.
    stuck.store(false, Ordering::SeqCst);
    release.send(()).unwrap();
    assert!(wait_until(Duration::from_secs(5), || h
        .harvest_now()
        .find("test.ok", &[("s", "stuck")])
        .is_some()));
}

#[test]
fn shutdown_delivers_the_last_snapshot_even_through_a_queue_of_one() {
    for round in 0..20 {
        let registry = Registry::new();
        let hits = registry.counter(&HITS);
        let collect = Collect::default();
        let h = Harvester::builder()
            .registry(registry)
            .queue_capacity(1)
            .exporter(collect.clone())
            .build();
        hits.add(round + 1);
        h.shutdown(Duration::from_secs(5)).unwrap();
        let all = collect.0.lock().unwrap();
        let last = all.last().expect("a final snapshot");
        assert_eq!(
            counter_of(last, "test.hits", &[]),
            Some(round + 1),
            "round {round}"
        );
    }
}

/// Fails every export, naming its backend.
struct Refuse;

impl Exporter for Refuse {
    fn name(&self) -> &str {
        "refuse"
    }
    fn export(&mut self, _: Arc<Snapshot>) -> Result<(), ExportError> {
        Err(ExportError::new(
            "failed to send to backend at 127.0.0.1:9: connection refused",
        ))
    }
}

#[test]
fn a_failed_export_of_the_last_snapshot_fails_the_shutdown() {
    let h = Harvester::builder()
        .registry(Registry::new())
        .exporter(Refuse)
        .exporter(Collect::default())
        .build();
    let err = h.shutdown(Duration::from_secs(5)).unwrap_err();
    assert_eq!(err.failures.len(), 1, "{err}");
    assert!(
        err.failures[0].contains("exporter refuse")
            && err.failures[0].contains("127.0.0.1:9: connection refused"),
        "{err}"
    );
}

/// Panics in its `start` and `stop` hooks, samples fine.
struct BadHooks;

impl sampler_api::Sampler for BadHooks {
    fn name(&self) -> &str {
        "bad-hooks"
    }
    fn sample(&self, out: &mut sampler_api::Writer<'_>) {
        out.gauge(&OK, &[("s", "hooks")], 1.0);
    }
    fn start(&self) {
        panic!("start hook bug");
    }
    fn stop(&self) {
        panic!("stop hook bug");
    }
}

#[test]
fn a_panicking_start_or_stop_hook_is_counted() {
    let registry = Registry::new();
    let reg = registry.register(BadHooks);
    let h = Harvester::builder().registry(registry.clone()).build();
    let panics = |s: &Snapshot| {
        counter_of(
            s,
            "sampler.sampler.errors",
            &[("sampler", "bad-hooks"), ("reason", "panic")],
        )
    };
    let s = h.harvest_now();
    assert!(s.find("test.ok", &[("s", "hooks")]).is_some());
    assert_eq!(panics(&s), Some(1), "the start hook's panic");
    drop(reg);
    assert_eq!(panics(&h.harvest_now()), Some(2), "the stop hook's panic");
    // At shutdown, a stop hook's panic is named in the error.
    let _again = registry.register(BadHooks);
    h.harvest_now();
    let err = h.shutdown(Duration::from_secs(5)).unwrap_err();
    assert!(
        err.to_string()
            .contains("sampler bad-hooks: panicked in its stop hook"),
        "{err}"
    );
}

/// A statically registered sampler whose own name is left at the default (its type name).
struct StaticProbe;

impl sampler_api::Sampler for StaticProbe {
    fn sample(&self, out: &mut sampler_api::Writer<'_>) {
        out.gauge(&OK, &[("s", "static")], 1.0);
    }
}

static STATIC_PROBE: StaticProbe = StaticProbe;
sampler_api::register_sampler!("static-probe", STATIC_PROBE);

#[test]
fn a_static_sampler_is_reported_under_its_registration_name() {
    let h = Harvester::builder()
        .registry(Registry::global().clone())
        .build();
    let s = h.harvest_now();
    assert!(s.find("test.ok", &[("s", "static")]).is_some());
    assert!(
        s.find("sampler.sampler.duration", &[("sampler", "static-probe")])
            .is_some(),
        "durations: {:?}",
        s.named("sampler.sampler.duration")
            .map(|x| x.labels())
            .collect::<Vec<_>>()
    );
}

#[test]
fn samplers_of_one_name_report_their_summed_duration() {
    let registry = Registry::new();
    let nap = |out: &mut sampler_api::Writer<'_>| {
        std::thread::sleep(Duration::from_millis(20));
        out.gauge(&OK, &[], 1.0);
    };
    let _a = registry.register(FnSampler::new("twin", nap));
    let _b = registry.register(FnSampler::new("twin", nap));
    let h = Harvester::builder().registry(registry).build();
    let s = h.harvest_now();
    let took = s
        .find("sampler.sampler.duration", &[("sampler", "twin")])
        .map(|x| x.value().clone());
    match took {
        Some(Value::Gauge(secs)) => assert!(secs >= 0.040, "twin took {secs} s"),
        other => panic!("sampler.sampler.duration{{sampler=twin}}: {other:?}"),
    }
}

/// Fails while `down` is set.
struct Flaky(Arc<AtomicBool>);

impl Exporter for Flaky {
    fn name(&self) -> &str {
        "flaky-events"
    }
    fn export(&mut self, _: Arc<Snapshot>) -> Result<(), ExportError> {
        if self.0.load(Ordering::SeqCst) {
            Err(ExportError::new(
                "failed to connect to flaky at 127.0.0.1:9: connection refused",
            ))
        } else {
            Ok(())
        }
    }
}

#[test]
fn a_failing_exporter_is_reported_once_when_it_fails_and_once_when_it_recovers() {
    let all = crate::events();
    let mine = || -> Vec<sampler_api::Event> {
        all.lock()
            .unwrap()
            .iter()
            .filter(|e| e.to_string().contains("flaky-events"))
            .cloned()
            .collect()
    };
    let down = Arc::new(AtomicBool::new(false));
    let h = Harvester::builder()
        .registry(Registry::new())
        .queue_capacity(16)
        .exporter(Flaky(down.clone()))
        .build();
    // Each call harvests, so each is one more export of this exporter.
    let count = |name: &str| {
        let s = h.harvest_now();
        match s
            .find(name, &[("exporter", "flaky-events")])
            .map(|x| x.value())
        {
            Some(Value::Counter(n)) => *n,
            _ => 0,
        }
    };
    // Healthy first, then at least 3 failed exports, then healthy again.
    assert!(wait_until(Duration::from_secs(5), || count(
        "sampler.exporter.exported"
    ) >= 1));
    down.store(true, Ordering::SeqCst);
    assert!(wait_until(Duration::from_secs(5), || count(
        "sampler.exporter.errors"
    ) >= 3));
    down.store(false, Ordering::SeqCst);
    assert!(wait_until(Duration::from_secs(5), || {
        h.harvest_now();
        mine().len() >= 2
    }));
    h.shutdown(Duration::from_secs(5)).unwrap();
    let events = mine();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        events[0].to_string(),
        "exporter flaky-events failing: failed to connect to flaky at 127.0.0.1:9: connection refused"
    );
    match &events[1] {
        sampler_api::Event::ExporterRecovered {
            exporter,
            failed_exports,
            dropped,
            ..
        } => {
            assert_eq!(exporter, "flaky-events");
            assert!(*failed_exports >= 3, "{failed_exports}");
            assert_eq!(*dropped, 0);
        }
        other => panic!("expected a recovery, got {other:?}"),
    }
}
