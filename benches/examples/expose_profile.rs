//! A driver for profilers: builds N two-label counters (as the `expose_*` benches do), then
//! harvests and encodes them to Prometheus text `ROUNDS` times (`expose`), only harvests
//! (`harvest`), or encodes one harvest again (`encode`).
//!
//! ```sh
//! cargo build --release -p sampler-benches --example expose_profile
//! valgrind --tool=callgrind target/release/examples/expose_profile 100000 3 expose
//! ```

use sampler_benches::series::{Harvest, SamplerSeries};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(12);
    let mode = args.next().unwrap_or_else(|| "expose".to_owned());
    let mut ours = SamplerSeries::new(n);
    let mut total = 0;
    let started = std::time::Instant::now();
    for _ in 0..rounds {
        total += match mode.as_str() {
            "harvest" => ours.harvest().unwrap_or(0),
            "encode" => ours.encode_last().len(),
            _ => ours.expose().map_or(0, <[u8]>::len),
        };
        ours.settle();
    }
    let each = started.elapsed() / rounds.max(1) as u32;
    println!("{mode}: {n} series, {rounds} rounds, {total} in all, {each:?} each");
}
