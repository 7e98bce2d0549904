//! A worker process writing into a shm directory, for the tests and as an example:
//!
//! ```text
//! cargo run -p sampler-adapter-shm --example shm-writer -- DIR ITERATIONS [TAG]
//! ```
//!
//! It records ITERATIONS times (ITERATIONS 0: until killed) into `test.requests{lang=rust}`
//! (one per iteration, plus `test.bytes` by the iteration number) and `test.latency{lang=rust}`
//! (value `(i % 64 + 1) / 1024` seconds), sets `test.busy`, prints `ready` once its segment
//! exists and `done` when it has written everything, then exits (releasing the segment).

use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or("usage: shm-writer DIR ITERATIONS [TAG]")?;
    let n: u64 = args.next().ok_or("missing ITERATIONS")?.parse()?;
    let tag = args.next().unwrap_or_else(|| "rust".into());
    let segment = sampler_adapter_shm::Segment::create(&dir)?;
    let labels = [("lang", tag.as_str())];
    let requests = segment.counter("test.requests", &labels)?;
    let bytes = segment.counter("test.bytes", &[])?;
    let latency = segment.timing("test.latency", &labels)?;
    let busy = segment.gauge("test.busy", &[])?;
    println!("ready {}", segment.path().display());
    std::io::stdout().flush()?;
    let mut i = 0u64;
    while n == 0 || i < n {
        requests.inc();
        bytes.add(i);
        latency.record((i % 64 + 1) as f64 / 1024.0);
        busy.set((i % 7) as f64);
        i += 1;
    }
    println!("done {i}");
    Ok(())
}
