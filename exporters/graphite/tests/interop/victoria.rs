//! VictoriaMetrics' Graphite listener: tagged series come back as Prometheus labels with the
//! values sent.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sampler_api::{Descriptor, Exporter, Harvester, Registry};
use sampler_exporter_graphite::{GraphiteExporter, Protocol, TagStyle};

use super::support::{at, now_secs, poll, Victoria};

static REQS: Descriptor = Descriptor::counter("http.requests", "1", "requests");
static TEMP: Descriptor = Descriptor::gauge("temp", "Cel", "temperature");

#[test]
fn r12_victoriametrics_reads_tagged_series_as_labels() {
    let vm = Victoria::start();
    for protocol in [Protocol::Plaintext, Protocol::Udp] {
        let registry = Registry::new();
        let reqs = registry.counter_family(&REQS, &["method", "path"]);
        let temp = registry.gauge_family(&TEMP, &["room"]);
        let h = Harvester::builder()
            .registry(registry)
            .self_metrics(false)
            .build();
        let proto = format!("{protocol:?}").to_lowercase();
        let mut exporter = GraphiteExporter::builder()
            .address(format!("127.0.0.1:{}", vm.graphite))
            .protocol(protocol)
            .tags(TagStyle::Tagged)
            .prefix(format!("rtest.vm.{proto}"))
            .build()
            .unwrap();
        let base = now_secs() - 120;
        reqs.add(&["GET", "/a b"], 3);
        temp.set(&["x"], -7.25);
        exporter.export(at(&h.harvest_now(), base)).unwrap();
        reqs.add(&["GET", "/a b"], 4);
        temp.set(&["x"], 0.5);
        exporter.export(at(&h.harvest_now(), base + 1)).unwrap();
        exporter
            .shutdown(Instant::now() + Duration::from_secs(5))
            .unwrap();

        let want: BTreeMap<String, (BTreeMap<String, String>, Vec<f64>)> = [
            (
                format!("rtest.vm.{proto}.http.requests"),
                (
                    [("method", "GET"), ("path", "/a_b")]
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect(),
                    vec![3.0, 4.0],
                ),
            ),
            (
                format!("rtest.vm.{proto}.temp"),
                (
                    [("room".to_owned(), "x".to_owned())].into_iter().collect(),
                    vec![-7.25, 0.5],
                ),
            ),
        ]
        .into_iter()
        .collect();
        let selector = format!("{{__name__=~\"rtest[.]vm[.]{proto}[.].*\"}}");
        let got = poll(
            Duration::from_secs(30),
            "both series in victoria-metrics",
            || {
                let rows = vm.export(&selector);
                let complete = rows.len() == 2
                    && rows
                        .iter()
                        .all(|r| r["values"].as_array().map(|v| v.len()) == Some(2));
                complete.then_some(rows)
            },
        );
        for row in got {
            let mut labels: BTreeMap<String, String> = row["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            let name = labels.remove("__name__").unwrap();
            let (want_labels, want_values) = &want[&name];
            assert_eq!(&labels, want_labels, "labels of {name}");
            let values: Vec<f64> = row["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert_eq!(&values, want_values, "values of {name}");
            let ts: Vec<u64> = row["timestamps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            assert_eq!(
                ts,
                vec![base * 1000, (base + 1) * 1000],
                "timestamps of {name}"
            );
        }
    }
}
