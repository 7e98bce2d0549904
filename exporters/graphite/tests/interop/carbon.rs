//! Carbon-cache stores exactly the values sent, in plaintext TCP, UDP, pickle and tagged
//! modes (whisper files read back with whisper).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sampler_api::{Descriptor, Distribution, Exporter, FnSampler, Harvester, Registry};
use sampler_exporter_graphite::{GraphiteExporter, Protocol, TagStyle};

use super::support::{at, now_secs, Carbon};

static JOBS: Descriptor = Descriptor::counter("jobs.done", "1", "jobs done");
static CPU: Descriptor = Descriptor::fractional_counter("cpu.time", "s", 1000, "cpu time");
static TEMP: Descriptor = Descriptor::gauge("temp", "Cel", "temperature");
static LAT: Descriptor = Descriptor::timing("op.duration", "s", "operation time");

/// The label value: G1 makes it `a_b_c_d` in a path, G3 `a_b=c_d` as a tag value.
const ROOM: &str = "a b=c;d";

/// Sends three harvests (one second apart) through one exporter and returns what each
/// series must hold: (name as carbon files it, [(timestamp, value)]).
fn send(
    carbon: &Carbon,
    mode: &str,
    protocol: Protocol,
    tags: TagStyle,
    base: u64,
) -> Vec<(String, Vec<(u64, f64)>)> {
    let registry = Registry::new();
    let jobs = registry.counter(&JOBS);
    // A sampler writing its total, as the process adapter does (the registry's counters
    // do not carry a descriptor's divisor yet).
    let cpu = Arc::new(AtomicU64::new(0));
    let c = cpu.clone();
    let _cpu = registry.register(FnSampler::new("cpu", move |out| {
        out.counter(&CPU, &[], c.load(Relaxed))
    }));
    let temp = registry.gauge_family(&TEMP, &["room"]);
    let lat = registry.timing(&LAT);
    let h = Harvester::builder()
        .registry(registry)
        .self_metrics(false)
        .build();
    let port = match protocol {
        Protocol::Pickle => carbon.pickle_port,
        _ => carbon.line_port,
    };
    let mut exporter = GraphiteExporter::builder()
        .address(format!("127.0.0.1:{port}"))
        .protocol(protocol)
        .tags(tags)
        .prefix(format!("rtest.{mode}"))
        .percentiles([0.5, 0.9])
        .max_datagram(256) // several datagrams per harvest over UDP
        .build()
        .unwrap();

    let mut first = Distribution::new(3);
    jobs.add(5);
    cpu.fetch_add(1500, Relaxed);
    temp.set(&[ROOM], -2.5);
    for v in [0.001, 0.25, 3.0, 42.0] {
        lat.record(v);
        first.record(v);
    }
    exporter.export(at(&h.harvest_now(), base)).unwrap();
    jobs.add(7);
    cpu.fetch_add(250, Relaxed);
    temp.set(&[ROOM], 1e300);
    // A new lifetime max: the interval's min and max are then exact (spec G11).
    lat.record(100.0);
    exporter.export(at(&h.harvest_now(), base + 1)).unwrap();
    temp.set(&[ROOM], 0.1);
    exporter.export(at(&h.harvest_now(), base + 2)).unwrap();
    exporter
        .shutdown(Instant::now() + Duration::from_secs(10))
        .unwrap();

    let p = format!("rtest.{mode}");
    let temp_name = match tags {
        TagStyle::Template => format!("{p}.temp.a_b_c_d"),
        _ => format!("{p}.temp;room=a_b=c_d"),
    };
    let t = |v: &[f64]| -> Vec<(u64, f64)> {
        v.iter()
            .enumerate()
            .map(|(i, x)| (base + i as u64, *x))
            .collect()
    };
    let stat = |s: &str| format!("{p}.op.duration.{s}");
    vec![
        (format!("{p}.jobs.done"), t(&[5.0, 7.0, 0.0])),
        (format!("{p}.cpu.time"), t(&[1.5, 0.25, 0.0])),
        (temp_name, t(&[-2.5, 1e300, 0.1])),
        (stat("count"), t(&[4.0, 1.0, 0.0])),
        (stat("sum"), t(&[0.001 + 0.25 + 3.0 + 42.0, 100.0, 0.0])),
        (stat("min"), t(&[0.001, 100.0])),
        (stat("max"), t(&[42.0, 100.0])),
        (stat("mean"), t(&[(0.001 + 0.25 + 3.0 + 42.0) / 4.0, 100.0])),
        (stat("p50"), t(&[first.quantile(0.5).unwrap(), 100.0])),
        (stat("p90"), t(&[first.quantile(0.9).unwrap(), 100.0])),
    ]
}

#[test]
fn r12_carbon_stores_exactly_the_values_sent_in_every_mode() {
    let carbon = Carbon::start();
    // Within the 1 s archive (1 h), clear of the present.
    let base = now_secs() - 300;
    let mut want = Vec::new();
    for (i, (mode, protocol, tags)) in [
        ("tcp", Protocol::Plaintext, TagStyle::Template),
        ("udp", Protocol::Udp, TagStyle::Template),
        ("pickle", Protocol::Pickle, TagStyle::Template),
        ("tagged", Protocol::Plaintext, TagStyle::Tagged),
        ("tagged_udp", Protocol::Udp, TagStyle::Tagged),
        ("tagged_pickle", Protocol::Pickle, TagStyle::Tagged),
    ]
    .into_iter()
    .enumerate()
    {
        want.extend(send(&carbon, mode, protocol, tags, base + 10 * i as u64));
    }
    let counts: Vec<(String, usize)> = want.iter().map(|(n, v)| (n.clone(), v.len())).collect();
    let got = carbon.wait_points(&counts);
    for ((name, expected), got) in want.iter().zip(&got) {
        assert_eq!(got, expected, "whisper file of {name}");
    }
    assert_eq!(got.len(), 60);
}
