//! The shm adapter's hot paths, in one run:
//! - the writer's counter increment next to a relaxed atomic add on the heap;
//! - a harvest of 100 live writers x 1,000 series;
//! - a harvest of 10 live writers before and after 1,000 writers came and went.
//!
//! `cargo bench -p sampler-adapter-shm --bench shm`

use std::hint::black_box;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use sampler_adapter_shm::{Segment, ShmSampler};
use sampler_api::{Harvester, Registry};

fn private_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    d
}

fn increment(c: &mut Criterion) {
    let dir = private_dir();
    let seg = Segment::create(dir.path()).unwrap();
    let counter = seg.counter("bench.requests", &[("route", "/")]).unwrap();
    let timing = seg.timing("bench.latency", &[]).unwrap();
    let atomic = Box::new(AtomicU64::new(0));
    let mut g = c.benchmark_group("increment");
    g.bench_function("shm counter inc", |b| b.iter(|| black_box(&counter).inc()));
    g.bench_function("relaxed atomic add", |b| {
        b.iter(|| black_box(&atomic).fetch_add(1, Relaxed))
    });
    g.bench_function("shm timing record", |b| {
        b.iter(|| black_box(&timing).record(black_box(0.0123)))
    });
    g.finish();
}

fn writers(dir: &std::path::Path, n: usize, series: usize) -> Vec<Segment> {
    let names: Vec<String> = (0..series).map(|i| format!("bench.c{i}")).collect();
    (0..n)
        .map(|_| {
            let seg = Segment::create(dir).unwrap();
            for name in &names {
                seg.counter(name, &[("worker", "w")]).unwrap().add(1);
            }
            seg
        })
        .collect()
}

fn harvester(dir: &std::path::Path) -> (Harvester, sampler_api::Registration) {
    let registry = Registry::new();
    let reg = registry.register(ShmSampler::new(dir).grace(Duration::ZERO));
    (Harvester::builder().registry(registry).build(), reg)
}

fn harvest(c: &mut Criterion) {
    let mut g = c.benchmark_group("harvest");
    g.sample_size(20);
    {
        let dir = private_dir();
        let _live = writers(dir.path(), 100, 1000);
        let (h, _reg) = harvester(dir.path());
        h.harvest_now();
        g.bench_function("100 live writers x 1000 series", |b| {
            b.iter(|| h.harvest_now())
        });
    }
    {
        let dir = private_dir();
        let _live = writers(dir.path(), 10, 1000);
        let (h, _reg) = harvester(dir.path());
        h.harvest_now();
        g.bench_function("10 live writers x 1000 series", |b| {
            b.iter(|| h.harvest_now())
        });
        for _ in 0..10 {
            let dead = writers(dir.path(), 100, 1000);
            h.harvest_now();
            drop(dead);
            h.harvest_now(); // folded
            h.harvest_now(); // retired
        }
        g.bench_function(
            "10 live writers x 1000 series, after 1000 came and went",
            |b| b.iter(|| h.harvest_now()),
        );
    }
    g.finish();
}

criterion_group!(benches, increment, harvest);
criterion_main!(benches);
