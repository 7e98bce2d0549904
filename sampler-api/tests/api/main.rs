//! Behaviour of the core as a library user sees it: isolation, drop policy, shutdown,
//! lifetimes, bounds, exactness and the spec's conformance vectors.

mod alloc;
mod harvest;
mod instruments;
mod label_errors;
mod stress;
mod vectors;

/// Every event of this test binary, collected by one hook installed once (tests run in
/// parallel, and the hook is process-wide): each test looks for the events that name its own
/// exporter or metric.
pub fn events() -> &'static std::sync::Mutex<Vec<sampler_api::Event>> {
    use std::sync::{Mutex, OnceLock};
    static EVENTS: OnceLock<&'static Mutex<Vec<sampler_api::Event>>> = OnceLock::new();
    EVENTS.get_or_init(|| {
        let events: &'static Mutex<Vec<sampler_api::Event>> = Box::leak(Box::default());
        sampler_api::set_event_hook(move |e| events.lock().unwrap().push(e.clone()));
        events
    })
}
