//! Links `tiny_pool`, uses it, and prints what one harvest of the global registry finds.
//! The pool's sampler is harvested without any wiring code here.

use std::time::Duration;

use sampler_api::{Harvester, Value};

fn main() {
    let pool = tiny_pool::Pool::new(3);
    let a = pool.get();
    let b = pool.get();
    std::thread::sleep(Duration::from_millis(5));
    drop(a);
    let _c = pool.get();
    let _d = pool.get();
    let _refused = pool.get(); // all three busy
    drop(b);

    let harvester = Harvester::builder().self_metrics(false).build();
    let snapshot = harvester.harvest_now();
    for s in snapshot.series() {
        let labels: Vec<String> = s.labels().iter().map(|(k, v)| format!("{k}={v}")).collect();
        let value = match s.value() {
            Value::Counter(c) => s.descriptor().counter_value(*c).to_string(),
            Value::Gauge(g) => g.to_string(),
            Value::Timing(d) => format!(
                "count={} p50={:.4}s max={:.4}s",
                d.count(),
                d.quantile(0.5).unwrap_or(0.0),
                d.max()
            ),
            other => format!("{other:?}"),
        };
        println!(
            "{:<24} {:<16} {value}",
            s.descriptor().name(),
            labels.join(",")
        );
    }
    if let Err(e) = harvester.shutdown(Duration::from_secs(1)) {
        eprintln!("{e}");
    }
}
