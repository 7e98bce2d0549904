//! The harvester's own `sampler.*` series, written after the samplers' in every snapshot.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::descriptor::Descriptor;
use crate::sampler::Writer;
use crate::snapshot::SeriesBuf;

use super::collect::State;
use super::delivery::Link;

static HARVEST_DURATION: Descriptor = Descriptor::gauge(
    "sampler.harvest.duration",
    "s",
    "time the last harvest took to poll every sampler",
);
static HARVEST_COUNT: Descriptor =
    Descriptor::counter("sampler.harvest.count", "1", "harvests run");
static HARVEST_SERIES: Descriptor = Descriptor::gauge(
    "sampler.harvest.series",
    "1",
    "series in the last snapshot, self-metrics aside",
);
static HARVEST_SKIPPED: Descriptor = Descriptor::counter(
    "sampler.harvest.skipped",
    "1",
    "interval ticks skipped because a harvest ran past them",
);
static SAMPLER_ERRORS: Descriptor = Descriptor::counter(
    "sampler.sampler.errors",
    "1",
    "sampler failures by reason: panic, budget (over its time budget), hung (abandoned past twice its budget), rejected (bad reading)",
);
static SAMPLER_DURATION: Descriptor = Descriptor::gauge(
    "sampler.sampler.duration",
    "s",
    "time each sampler took in the last harvest",
);
static EXPORTER_DROPPED: Descriptor = Descriptor::counter(
    "sampler.exporter.dropped",
    "1",
    "snapshots dropped because the exporter's queue was full",
);
static EXPORTER_QUEUE: Descriptor = Descriptor::gauge(
    "sampler.exporter.queue_depth",
    "1",
    "snapshots waiting in the exporter's queue",
);
static EXPORTER_ERRORS: Descriptor =
    Descriptor::counter("sampler.exporter.errors", "1", "failed exports");
static EXPORTER_EXPORTED: Descriptor =
    Descriptor::counter("sampler.exporter.exported", "1", "snapshots exported");
static EXPORTER_DURATION: Descriptor = Descriptor::gauge(
    "sampler.exporter.duration",
    "s",
    "time the last export took",
);

/// Appends the self-metrics to `series`: the harvest's own figures (`polled` is the time the
/// samplers took, `user_series` how many series they wrote), then each sampler's errors and
/// duration, then each exporter's queue and export counts.
pub(super) fn write(
    state: &mut State,
    links: &[Arc<Link>],
    series: &mut SeriesBuf,
    time: SystemTime,
    interval: Duration,
    polled: Duration,
    user_series: usize,
) {
    let own = &mut state.own;
    own.begin();
    let mut w = Writer::new(own, series, time, interval);
    w.gauge(&HARVEST_DURATION, &[], polled.as_secs_f64());
    w.counter(&HARVEST_COUNT, &[], state.harvests);
    w.gauge(&HARVEST_SERIES, &[], user_series as f64);
    w.counter(&HARVEST_SKIPPED, &[], state.skipped);
    for ((sampler, reason), n) in &state.errors {
        w.counter(
            &SAMPLER_ERRORS,
            &[("sampler", sampler), ("reason", reason)],
            *n,
        );
    }
    for (sampler, secs) in &state.durations {
        w.gauge(&SAMPLER_DURATION, &[("sampler", sampler)], *secs);
    }
    for l in links {
        let e = [("exporter", l.name.as_str())];
        w.counter(&EXPORTER_DROPPED, &e, l.stats.dropped.load(Relaxed));
        w.gauge(&EXPORTER_QUEUE, &e, l.tx.len() as f64);
        w.counter(&EXPORTER_ERRORS, &e, l.stats.errors.load(Relaxed));
        w.counter(&EXPORTER_EXPORTED, &e, l.stats.exported.load(Relaxed));
        w.gauge(
            &EXPORTER_DURATION,
            &e,
            l.stats.last_nanos.load(Relaxed) as f64 / 1e9,
        );
    }
    own.end();
}
