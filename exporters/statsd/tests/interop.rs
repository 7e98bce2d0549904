//! The exporter against the real Etsy StatsD daemon (npm `statsd@0.9.0` on node, started on
//! loopback by each test), and its transports against real sockets.

mod support;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sampler_api::{Descriptor, Distribution, FnSampler, Harvester, Registry, Snapshot, Value};
use sampler_exporter_statsd::{StatsdExporter, TagStyle, Transport};
use support::Statsd;

static REQUESTS: Descriptor = Descriptor::counter("r12.requests", "1", "requests");
static HITS: Descriptor = Descriptor::counter("r12.hits", "1", "hits by route");
static CPU: Descriptor = Descriptor::fractional_counter("r12.cpu", "s", 1000, "cpu seconds");
static TEMP: Descriptor = Descriptor::gauge("r12.temp", "Cel", "temperature");
static LEVEL: Descriptor = Descriptor::gauge("r12.level", "1", "level");
static SMALL: Descriptor = Descriptor::timing("r12.small", "s", "a few timings");
static LARGE: Descriptor = Descriptor::timing("r12.large", "s", "many timings");

fn harvester(registry: &Registry) -> Harvester {
    Harvester::builder()
        .registry(registry.clone())
        .self_metrics(false)
        .build()
}

/// Deterministic latencies from 0.2 ms to about 2 s, skewed like real ones.
fn latencies(n: usize) -> Vec<f64> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            0.0002 * (10_000f64).powf(u * u)
        })
        .collect()
}

/// The nearest-rank value of rank `r` (1-based, clamped) among sorted `v`.
fn rank(v: &[f64], r: i64) -> f64 {
    v[(r.clamp(1, v.len() as i64) - 1) as usize]
}

fn counter_of(s: &Snapshot, name: &str, labels: &[(&str, &str)]) -> u64 {
    match s.find(name, labels).map(|s| s.value()) {
        Some(Value::Counter(n)) => *n,
        other => panic!("{name}{labels:?}: {other:?}"),
    }
}

fn self_metrics(exporter: &StatsdExporter) -> Arc<Snapshot> {
    let registry = Registry::new();
    let _r = registry.register_arc(sampler_api::Exporter::sampler(exporter).unwrap());
    harvester(&registry).harvest_now()
}

#[test]
fn r12_etsy_statsd_counters_gauges_and_timers_over_udp() {
    let daemon = Statsd::start(1000);
    let registry = Registry::new();
    let requests = registry.counter(&REQUESTS);
    let hits = registry.counter_family(&HITS, &["route"]);
    let cpu_raw = Arc::new(AtomicU64::new(1500));
    let c = cpu_raw.clone();
    let _cpu = registry.register(FnSampler::new("cpu", move |out| {
        out.counter(&CPU, &[], c.load(Relaxed))
    }));
    let temp = registry.gauge(&TEMP);
    let level = registry.gauge(&LEVEL);
    let small = registry.timing(&SMALL);
    let large = registry.timing(&LARGE);
    let h = harvester(&registry);
    let mut exporter = StatsdExporter::builder()
        .address(format!("127.0.0.1:{}", daemon.port))
        .prefix("app")
        .build()
        .unwrap();

    // Harvest 1: every timing, the first counter readings, a positive gauge.
    requests.add(5);
    hits.add(&["a:b|c@d#e f"], 3);
    temp.set(10.0);
    level.set(-3.25);
    let small_values = [0.0013, 0.002, 0.0021, 0.05, 0.051, 0.7, 3.3];
    for v in small_values {
        small.record(v);
    }
    let mut large_values = latencies(5000);
    for v in &large_values {
        large.record(*v);
    }
    daemon.after_flush();
    let t = Instant::now();
    exporter.send(&h.harvest_now()).unwrap();
    // Harvest 2: counter deltas, a fractional counter, the gauge turned negative.
    requests.add(7);
    cpu_raw.store(4250, Relaxed);
    temp.set(-5.0);
    exporter.send(&h.harvest_now()).unwrap();
    let sent_in = t.elapsed();

    let f = daemon.wait_for(&[
        "stats.counters.app.r12.requests.count",
        "stats.counters.app.r12.hits.a_b_c_d_e_f.count",
        "stats.counters.app.r12.cpu.count",
        "stats.gauges.app.r12.temp",
        "stats.gauges.app.r12.level",
        "stats.timers.app.r12.small.count",
        "stats.timers.app.r12.large.count",
    ]);
    eprintln!("sent 2 harvests in {sent_in:?}");

    // Counters: the deltas sum to the totals, exactly.
    assert_eq!(f.get("stats.counters.app.r12.requests.count"), 12.0);
    assert_eq!(f.get("stats.counters.app.r12.hits.a_b_c_d_e_f.count"), 3.0);
    assert_eq!(f.get("stats.counters.app.r12.cpu.count"), 4.25);
    // Gauges: the last value, negative ones too.
    assert_eq!(f.get("stats.gauges.app.r12.temp"), -5.0);
    assert_eq!(f.get("stats.gauges.app.r12.level"), -3.25);
    assert_eq!(f.get("stats.counters.statsd.bad_lines_seen.count"), 0.0);

    let err = Distribution::relative_error(3);
    let bucket_width = sampler_api::distribution::base(3) - 1.0;
    let ms = |v: f64| v * 1000.0;

    // A few observations: one line each, every statistic of the daemon exact.
    let t = |k: &str| f.get(&format!("stats.timers.app.r12.small.{k}"));
    assert_eq!(daemon.flushes_of("stats.timers.app.r12.small.count"), 1);
    let n = small_values.len() as f64;
    let sum: f64 = small_values.iter().map(|v| ms(*v)).sum();
    assert_eq!(t("count"), n);
    assert_eq!(t("lower"), ms(0.0013));
    assert_eq!(t("upper"), ms(3.3));
    assert!(
        (t("sum") - sum).abs() <= 1e-9 * sum,
        "sum {} vs {sum}",
        t("sum")
    );
    assert!((t("mean") - sum / n).abs() <= 1e-9 * sum / n);
    // Each line stays in its observation's bucket: a percentile is off by less than a bucket.
    let p90 = ms(rank(&small_values, (0.9 * n).round() as i64));
    assert!((t("upper_90") - p90).abs() <= bucket_width * p90);

    // Many observations: 100 weighted lines; count, lower and upper exact, the mean within
    // the histogram's error, percentiles within one block of ranks and one bucket.
    let t = |k: &str| f.get(&format!("stats.timers.app.r12.large.{k}"));
    assert_eq!(daemon.flushes_of("stats.timers.app.r12.large.count"), 1);
    large_values.sort_by(f64::total_cmp);
    let n = large_values.len();
    let mean = ms(large_values.iter().sum::<f64>() / n as f64);
    assert_eq!(t("count"), n as f64);
    assert_eq!(t("lower"), ms(large_values[0]));
    assert_eq!(t("upper"), ms(large_values[n - 1]));
    let mean_error = (t("mean") - mean).abs() / mean;
    assert!(mean_error <= err, "mean {} vs {mean}", t("mean"));
    let block = (n / 100) as i64;
    for (q, key) in [(0.5, "upper_50"), (0.9, "upper_90")] {
        let r = (q * n as f64).ceil() as i64;
        let lo = ms(rank(&large_values, r - block - 1)) * (1.0 - bucket_width);
        let hi = ms(rank(&large_values, r + block + 1)) * (1.0 + bucket_width);
        assert!(
            (lo..=hi).contains(&t(key)),
            "{key} {} not in {lo}..{hi}",
            t(key)
        );
    }
    eprintln!(
        "large timer: mean off by {:.2e} (stated bound {err:.4}), p50 {} vs exact {}, p90 {} vs exact {}",
        mean_error,
        t("upper_50"),
        ms(rank(&large_values, (0.5 * n as f64).ceil() as i64)),
        t("upper_90"),
        ms(rank(&large_values, (0.9 * n as f64).ceil() as i64)),
    );

    // Nothing dropped, nothing failed; every point went out in full datagrams.
    let s = self_metrics(&exporter);
    assert_eq!(
        counter_of(
            &s,
            "sampler.exporter.statsd.points.dropped",
            &[("reason", "too_large")]
        ),
        0
    );
    assert_eq!(
        counter_of(&s, "sampler.exporter.statsd.send_errors", &[]),
        0
    );
    let datagrams = counter_of(&s, "sampler.exporter.statsd.datagrams", &[]);
    let bytes = counter_of(&s, "sampler.exporter.statsd.bytes", &[]);
    assert!(bytes <= datagrams * 1432);
    eprintln!(
        "{} points in {datagrams} datagrams, {bytes} bytes",
        counter_of(&s, "sampler.exporter.statsd.points.sent", &[])
    );
}

static TAGGED: Descriptor = Descriptor::counter("r12.tagged", "1", "tagged requests");
static TGAUGE: Descriptor = Descriptor::gauge("r12.tgauge", "1", "tagged gauge");
static TTIMER: Descriptor = Descriptor::timing("r12.ttimer", "s", "tagged timing");

#[test]
fn r12_etsy_statsd_over_tcp_with_dogstatsd_tags() {
    let daemon = Statsd::start(1000);
    let registry = Registry::new();
    let tagged = registry.counter_family(&TAGGED, &["method", "code"]);
    let gauge = registry.gauge_family(&TGAUGE, &["method"]);
    let timer = registry.timing_family(&TTIMER, &["method"]);
    let h = harvester(&registry);
    let mut exporter = StatsdExporter::builder()
        .address(format!("127.0.0.1:{}", daemon.port))
        .transport(Transport::Tcp)
        .tags(TagStyle::DogStatsd)
        .build()
        .unwrap();
    tagged.add(&["get", "200"], 4);
    // A tag value with every separator: sanitised, so the line still parses.
    tagged.add(&["po,st|x#y", "5:00"], 2);
    gauge.set(&["get"], 7.0);
    for v in [0.01, 0.02, 0.5] {
        timer.record(&["get"], v);
    }
    daemon.after_flush();
    exporter.send(&h.harvest_now()).unwrap();
    tagged.add(&["get", "200"], 6);
    gauge.set(&["get"], -2.5);
    exporter.send(&h.harvest_now()).unwrap();
    let f = daemon.wait_for(&[
        "stats.counters.r12.tagged.count;method=get;code=200",
        "stats.counters.r12.tagged.count;method=po_st_x_y;code=5_00",
        "stats.gauges.r12.tgauge;method=get",
        "stats.timers.r12.ttimer.count;method=get",
    ]);
    assert_eq!(
        f.get("stats.counters.r12.tagged.count;method=get;code=200"),
        10.0
    );
    assert_eq!(
        f.get("stats.counters.r12.tagged.count;method=po_st_x_y;code=5_00"),
        2.0
    );
    assert_eq!(f.get("stats.gauges.r12.tgauge;method=get"), -2.5);
    assert_eq!(f.get("stats.timers.r12.ttimer.count;method=get"), 3.0);
    assert_eq!(f.get("stats.timers.r12.ttimer.lower;method=get"), 10.0);
    assert_eq!(f.get("stats.timers.r12.ttimer.upper;method=get"), 500.0);
    assert!((f.get("stats.timers.r12.ttimer.sum;method=get") - 530.0).abs() < 1e-9);
    assert_eq!(f.get("stats.counters.statsd.bad_lines_seen.count"), 0.0);
}

static LATE: Descriptor = Descriptor::counter("r12.late", "1", "counted before the daemon came");

#[test]
fn r12_tcp_daemon_absent_at_start_then_reconnects() {
    // A port nothing listens on (yet): the exporter reports, counts, and does not block.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let registry = Registry::new();
    let late = registry.counter(&LATE);
    let h = harvester(&registry);
    let mut exporter = StatsdExporter::builder()
        .address(format!("127.0.0.1:{port}"))
        .transport(Transport::Tcp)
        .build()
        .unwrap();
    late.add(1);
    let t = Instant::now();
    let e = exporter.send(&h.harvest_now()).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(3));
    assert!(
        e.chain()
            .starts_with(&format!("failed to send to statsd at 127.0.0.1:{port}: ")),
        "{}",
        e.chain()
    );
    let s = self_metrics(&exporter);
    assert_eq!(
        counter_of(
            &s,
            "sampler.exporter.statsd.points.dropped",
            &[("reason", "send_failed")]
        ),
        1
    );
    assert_eq!(
        counter_of(&s, "sampler.exporter.statsd.send_errors", &[]),
        1
    );

    // The daemon comes up on that port; within the backoff the exporter connects again.
    let daemon = Statsd::start_on(port, 1000);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut sent = 0u64;
    loop {
        late.add(10);
        match exporter.send(&h.harvest_now()) {
            Ok(()) => {
                sent += 10;
                break;
            }
            Err(_) => assert!(Instant::now() < deadline, "no reconnect within 10 s"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    late.add(5);
    exporter.send(&h.harvest_now()).unwrap();
    sent += 5;
    let f = daemon.wait_for(&["stats.counters.r12.late.count"]);
    // Deltas sent while the daemon was away are lost (counted); every later one arrives.
    assert_eq!(f.get("stats.counters.r12.late.count"), sent as f64);
}

#[cfg(unix)]
#[test]
fn r12_unix_datagram_socket_gets_packed_datagrams() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dsd.socket");
    let daemon = UnixDatagram::bind(&path).unwrap();
    daemon
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    static N: Descriptor = Descriptor::gauge("r12.unix", "1", "");
    let registry = Registry::new();
    let g = registry.gauge_family(&N, &["i"]);
    for i in 0..200 {
        g.set(&[&i.to_string()], -(i as f64));
    }
    let mut exporter = StatsdExporter::builder()
        .address(path.display())
        .transport(Transport::Unix)
        .max_payload(256)
        .tags(TagStyle::DogStatsd)
        .build()
        .unwrap();
    // The reader runs beside the exporter: a Unix datagram queue holds only a few datagrams.
    let reader = std::thread::spawn(move || {
        let mut datagrams = Vec::new();
        let mut buf = [0u8; 4096];
        let mut lines = 0;
        while lines < 200 + 199 {
            let n = daemon.recv(&mut buf).expect("a datagram within 10 s");
            let text = String::from_utf8(buf[..n].to_vec()).unwrap();
            lines += text.split('\n').count();
            datagrams.push(text);
        }
        datagrams
    });
    exporter.send(&harvester(&registry).harvest_now()).unwrap();
    let datagrams = reader.join().unwrap();
    let mut lines = Vec::new();
    for text in &datagrams {
        assert!(text.len() <= 256, "{} bytes", text.len());
        // A negative gauge's `0|g` and its value share a datagram.
        let l: Vec<&str> = text.split('\n').collect();
        for pair in l.windows(2) {
            if let Some(tag) = pair[0].strip_prefix("r12.unix:0|g") {
                assert!(
                    pair[1].starts_with("r12.unix:-") && pair[1].ends_with(tag),
                    "{text}"
                );
            }
        }
        assert!(!l.last().unwrap().starts_with("r12.unix:0|g"), "{text}");
        lines.extend(l.into_iter().map(str::to_owned));
    }
    assert!(lines.contains(&"r12.unix:-199.0|g|#i:199".to_owned()));
}

static MANY: Descriptor = Descriptor::counter("r12.many", "1", "");

#[test]
fn r12_points_in_equal_points_sent_plus_dropped() {
    let daemon = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let registry = Registry::new();
    let many = registry.counter_family(&MANY, &["i"]);
    for i in 0..50 {
        many.add(&[&format!("n{i}")], 1 + i);
    }
    // One line longer than a datagram: dropped and counted, the others unharmed.
    many.add(&[&"x".repeat(600)], 1);
    let mut exporter = StatsdExporter::builder()
        .address(daemon.local_addr().unwrap())
        .max_payload(512)
        .build()
        .unwrap();
    exporter.send(&harvester(&registry).harvest_now()).unwrap();
    // Loopback datagrams are queued by the time `send` returns.
    daemon.set_nonblocking(true).unwrap();
    let (mut buf, mut lines, mut datagrams) = ([0u8; 2048], Vec::new(), 0);
    while let Ok(n) = daemon.recv(&mut buf) {
        assert!(n <= 512, "{n} bytes");
        datagrams += 1;
        let text = std::str::from_utf8(&buf[..n]).unwrap();
        lines.extend(text.split('\n').map(str::to_owned));
    }
    assert_eq!(lines.len(), 50);
    for i in 0..50 {
        assert!(lines.contains(&format!("r12.many.n{i}:{}|c", 1 + i)));
    }
    let s = self_metrics(&exporter);
    assert_eq!(
        counter_of(&s, "sampler.exporter.statsd.points.sent", &[]),
        50
    );
    assert_eq!(
        counter_of(
            &s,
            "sampler.exporter.statsd.points.dropped",
            &[("reason", "too_large")]
        ),
        1
    );
    assert_eq!(
        counter_of(&s, "sampler.exporter.statsd.datagrams", &[]),
        datagrams
    );
}
