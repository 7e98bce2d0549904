//! The page in a real browser (headless Chromium) and over plain HTTP, served by a
//! `UiExporter` inside a running harvester on loopback.

mod browser;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sampler_api::{Descriptor, Harvester, Registry};
use sampler_exporter_ui::{UiExporter, CONTENT_SECURITY_POLICY};

use browser::Browser;

static REQUESTS: Descriptor = Descriptor::counter("app.requests", "1", "requests served");
static LATENCY: Descriptor = Descriptor::timing("app.latency", "s", "request latency");
static DEPTH: Descriptor = Descriptor::gauge("app.queue.depth", "1", "jobs waiting");
static HOSTILE: Descriptor = Descriptor::counter("app.hostile", "1", "a label value that is HTML");

/// A label value that runs script if the page ever treats it as HTML.
const HOSTILE_VALUE: &str =
    "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">";

/// Records into every series from a thread until dropped, at a rate that changes, so the charts
/// have something to move.
struct Load {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(registry: &Registry) -> Load {
        let requests = registry.counter_family(&REQUESTS, &["route"]);
        let latency = registry.timing(&LATENCY);
        let depth = registry.gauge(&DEPTH);
        let hostile = registry.counter_family(&HOSTILE, &["value"]);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            let api = requests.get(&["/api"]);
            let files = requests.get(&["/static"]);
            let odd = hostile.get(&[HOSTILE_VALUE]);
            let mut i = 0u64;
            // Bounded: a minute at most, whatever the test does.
            while !stopping.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(60) {
                i += 1;
                let phase = ((started.elapsed().as_millis() / 700) % 4) as u64;
                api.add(1 + phase);
                files.inc();
                odd.inc();
                latency.record(0.001 * (1 + phase) as f64 + (i % 7) as f64 * 1e-4);
                depth.set(((i / 50) % 13) as f64);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Load {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The JavaScript expression giving the `<canvas>` of the card of `name` as a data URL.
fn canvas_of(name: &str) -> String {
    format!(
        "[...document.querySelectorAll('.series')].find(c => c.querySelector('.name').textContent === '{name}').querySelector('canvas').toDataURL()"
    )
}

/// The harvest number the page shows in its status line.
fn shown_harvest(b: &mut Browser) -> u64 {
    let text = b.eval("document.getElementById('status').textContent");
    let text = text.as_str().unwrap_or_default();
    text.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no harvest number in the status line {text:?}"))
}

#[test]
fn r17_the_page_in_a_browser_shows_the_series_moves_with_the_harvest_and_filters() {
    let registry = Registry::new();
    let load = Load::start(&registry);
    let ui = UiExporter::builder()
        .listen("127.0.0.1:0")
        .build()
        .expect("failed to start the page");
    let url = ui.url();
    let harvester = Harvester::builder()
        .registry(registry)
        .interval(Duration::from_millis(250))
        .harvest_at_start(true)
        .exporter(ui)
        .start();

    let mut b = Browser::launch();
    b.navigate(&url);
    // Every series has a card once a harvest has reached the page.
    b.wait_for(
        "[...document.querySelectorAll('.series .name')].map(n => n.textContent).filter(n => n.startsWith('app.')).length === 5",
        Duration::from_secs(20),
    );
    let names = b.eval("[...document.querySelectorAll('.series .name')].map(n => n.textContent)");
    for name in [
        "app.requests",
        "app.latency",
        "app.queue.depth",
        "app.hostile",
    ] {
        assert!(
            names.as_array().unwrap().iter().any(|n| n == name),
            "{name} not on the page: {names}"
        );
    }
    // A timing shows its p50 and p99, a counter its rate.
    b.wait_for(
        "[...document.querySelectorAll('.series')].some(c => c.querySelector('.name').textContent === 'app.latency' && /p99 [0-9.]+ ms/.test(c.querySelector('.value').textContent))",
        Duration::from_secs(10),
    );
    b.wait_for(
        "[...document.querySelectorAll('.series')].some(c => c.querySelector('.name').textContent === 'app.requests' && /[0-9] \\/s$/.test(c.querySelector('.value').textContent))",
        Duration::from_secs(10),
    );

    // The charts move: a few harvests apart, the canvases and the screenshot differ.
    let first = shown_harvest(&mut b);
    let canvas_a = b.eval(&canvas_of("app.requests"));
    let latency_a = b.eval(&canvas_of("app.latency"));
    let shot_a = b.screenshot();
    b.wait_for(
        &format!(
            "Number(document.getElementById('status').textContent.split(' ')[1]) >= {}",
            first + 3
        ),
        Duration::from_secs(20),
    );
    let canvas_b = b.eval(&canvas_of("app.requests"));
    let latency_b = b.eval(&canvas_of("app.latency"));
    let shot_b = b.screenshot();
    assert!(canvas_a.as_str().is_some_and(|s| s.len() > 100));
    assert_ne!(canvas_a, canvas_b, "the counter's chart did not change");
    assert_ne!(latency_a, latency_b, "the timing's chart did not change");
    assert_ne!(shot_a, shot_b, "the page did not change in three harvests");

    // Typing in the filter narrows the list to the matching names; clearing it shows all.
    b.eval("document.getElementById('filter').focus()");
    b.call("Input.insertText", serde_json::json!({"text": "LATENCY"}));
    let visible = "[...document.querySelectorAll('.series')].filter(c => !c.hidden).map(c => c.querySelector('.name').textContent)";
    assert_eq!(b.eval(visible), serde_json::json!(["app.latency"]));
    let total = b
        .eval("document.querySelectorAll('.series').length")
        .as_u64()
        .unwrap();
    assert_eq!(
        b.eval("document.getElementById('count').textContent"),
        serde_json::json!(format!("1 of {total} series"))
    );
    b.eval("(() => { const f = document.getElementById('filter'); f.value = ''; f.dispatchEvent(new Event('input')); })()");
    assert_eq!(
        b.eval(&format!("{visible}.length")).as_u64(),
        Some(total),
        "clearing the filter shows every series again"
    );

    // The hostile label value is shown as text and never ran.
    let labels = b.eval(
        "[...document.querySelectorAll('.series')].find(c => c.querySelector('.name').textContent === 'app.hostile').querySelector('.labels').textContent",
    );
    assert!(
        labels
            .as_str()
            .unwrap()
            .contains("<script>window.__pwned = 1</script>"),
        "the label value is not shown as text: {labels}"
    );
    assert_eq!(
        b.eval("typeof window.__pwned"),
        serde_json::json!("undefined")
    );
    assert_eq!(
        b.eval("document.querySelectorAll('#list script, #list img').length"),
        serde_json::json!(0)
    );

    b.drain_events();
    assert!(b.errors.is_empty(), "errors on the page: {:#?}", b.errors);
    drop(b);
    harvester.shutdown(Duration::from_secs(5)).unwrap();
    drop(load);
}

#[test]
fn r17_the_page_is_served_with_its_policy_and_unknown_paths_are_not_found() {
    let ui = UiExporter::builder().listen("127.0.0.1:0").build().unwrap();
    let base = format!("http://{}", ui.local_addr());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    for (path, kind) in [
        ("/", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/style.css", "text/css; charset=utf-8"),
        ("/ui/data.json", "application/json"),
    ] {
        let r = agent.get(format!("{base}{path}")).call().unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], kind, "{path}");
        assert_eq!(
            r.headers()["content-security-policy"],
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    }
    let body = agent
        .get(format!("{base}/ui/data.json"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let data: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(data["sequence"], 0, "no harvest yet");
    assert_eq!(data["series"], serde_json::json!([]));
    assert_eq!(
        agent
            .get(format!("{base}/metrics"))
            .call()
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        agent.post(format!("{base}/")).send("x").unwrap().status(),
        405
    );
    // Stopping the exporter closes the listener.
    let addr = ui.local_addr();
    drop(ui);
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err());
}
