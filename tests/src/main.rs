//! The `sampler` command as the end-to-end suite runs it: the whole command, plus the `csv`
//! exporter kind of `examples/custom-exporter`, plus a library sampler reporting fixed values
//! (so every backend can be asked for exactly the same numbers).

use example_custom_exporter as _;
use sampler_api::{register_sampler, Descriptor, Distribution, Sampler, Writer};

static REQUESTS: Descriptor = Descriptor::counter("e2e.requests", "1", "requests served");
static TEMPERATURE: Descriptor = Descriptor::gauge("e2e.temperature", "Cel", "cold room");
static LATENCY: Descriptor = Descriptor::timing("e2e.latency", "s", "request latency");

/// Fixed readings: counters 42 and 7, a negative gauge, a timing of four values.
struct Fixed;

impl Sampler for Fixed {
    fn sample(&self, out: &mut Writer<'_>) {
        out.counter(&REQUESTS, &[("route", "a")], 42);
        out.counter(&REQUESTS, &[("route", "b")], 7);
        out.gauge(&TEMPERATURE, &[], -3.5);
        let mut d = Distribution::new(3);
        for v in [0.1, 0.2, 0.4, 3.0] {
            d.record(v);
        }
        out.timing(&LATENCY, &[], d);
    }
    fn name(&self) -> &str {
        "e2e-fixed"
    }
}

static FIXED: Fixed = Fixed;
register_sampler!("e2e-fixed", FIXED);

fn main() -> std::process::ExitCode {
    sampler::cli_main()
}
