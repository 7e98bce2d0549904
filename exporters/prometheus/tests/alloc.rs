//! What a scrape allocates once the harvest is encoded: a counting global allocator watches the
//! whole process (the endpoint runs on its own thread) while a keep-alive client, which
//! allocates nothing itself, scrapes 200 times.
//!
//! This file holds a single test, so nothing else runs in the process while it counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sampler_api::{Descriptor, Labels, Series, SeriesId, Snapshot, Value};
use sampler_exporter_prometheus::{Format, PrometheusExporter};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers every call to the system allocator; the counters are plain atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(new as u64, Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn snapshot(n: usize) -> Snapshot {
    let d = Arc::new(Descriptor::counter("alloc.requests", "1", "requests"));
    let keys: sampler_api::LabelKeys = vec!["route".into()].into();
    let series = (0..n)
        .map(|i| {
            Series::new(
                SeriesId::next(),
                d.clone(),
                Labels::with_keys(keys.clone(), &[format!("/r/{i}").as_str()]),
                SystemTime::now(),
                Value::Counter(i as u64),
            )
        })
        .collect::<Vec<_>>();
    Snapshot::from_series(SystemTime::now(), Duration::from_secs(10), 1, series)
}

/// Reads one response into `buf` (no allocation): returns its body length.
fn read_response(stream: &mut TcpStream, buf: &mut [u8]) -> usize {
    let mut have = 0;
    loop {
        let n = stream.read(&mut buf[have..]).expect("read");
        assert!(n > 0, "connection closed");
        have += n;
        if let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
            let head = &buf[..end];
            let lower = |b: &u8| b.to_ascii_lowercase();
            let key = b"content-length:";
            let at = head
                .windows(key.len())
                .position(|w| w.iter().map(lower).eq(key.iter().copied()))
                .expect("content-length");
            let digits = head[at + key.len()..]
                .iter()
                .skip_while(|b| **b == b' ')
                .take_while(|b| b.is_ascii_digit())
                .fold(0usize, |acc, b| acc * 10 + (b - b'0') as usize);
            let total = end + 4 + digits;
            while have < total {
                let n = stream.read(&mut buf[have..total]).expect("read body");
                assert!(n > 0, "connection closed mid-body");
                have += n;
            }
            assert!(
                buf.starts_with(b"HTTP/1.1 200"),
                "{}",
                String::from_utf8_lossy(&buf[..end])
            );
            return digits;
        }
    }
}

#[test]
fn a_scrape_of_cached_bytes_allocates_near_nothing() {
    let exporter = PrometheusExporter::builder()
        .address("127.0.0.1:0")
        .build()
        .unwrap();
    exporter.publish(&snapshot(10_000));
    let text_len = exporter.exposition(Format::Text).len();
    let mut stream = TcpStream::connect(exporter.local_addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = vec![0u8; 4 << 20];
    let requests: [&[u8]; 2] = [
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain;version=0.0.4\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0\r\nAccept-Encoding: gzip\r\n\r\n",
    ];
    for req in requests {
        // Warm up: connection buffers grow, the gzip of this snapshot is made once.
        for _ in 0..20 {
            stream.write_all(req).unwrap();
            read_response(&mut stream, &mut buf);
        }
        let scrapes = 200u64;
        let (a0, b0) = (ALLOCS.load(Relaxed), BYTES.load(Relaxed));
        let mut body = 0;
        for _ in 0..scrapes {
            stream.write_all(req).unwrap();
            body = read_response(&mut stream, &mut buf);
        }
        let allocs = (ALLOCS.load(Relaxed) - a0) as f64 / scrapes as f64;
        let bytes = (BYTES.load(Relaxed) - b0) as f64 / scrapes as f64;
        let first_line =
            String::from_utf8_lossy(req.split(|b| *b == b'\r').next().unwrap_or_default())
                .into_owned();
        eprintln!(
            "per scrape ({first_line}, {} accept): {allocs:.1} allocations, {bytes:.0} bytes allocated, body {body} bytes (text {text_len})",
            if req.windows(4).any(|w| w == b"gzip") { "gzip" } else { "plain" }
        );
        assert!(body > 10_000);
        // Independent of the exposition's size: hyper's 8 KiB read buffer for the next
        // request, the request's and response's header maps, never a copy of the body.
        assert!(allocs <= 16.0, "{allocs} allocations per scrape");
        assert!(
            bytes <= 16384.0,
            "{bytes} bytes allocated per scrape for a {body}-byte body"
        );
    }
}
