//! The open `tracing` spans of each request: a `tracing_subscriber` layer that ties every span
//! created while a request is being polled to that request, until the span closes.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::watch::Entry;

thread_local! {
    /// The request being polled on this thread, set around each poll by the request hook
    /// while a [`SpanLayer`] is in use (nothing else reads it).
    static CURRENT: RefCell<Option<Weak<Entry>>> = const { RefCell::new(None) };
}

/// Whether a [`SpanLayer`] has been added to a subscriber: until then no span is tied to a
/// request, and the request hook leaves [`CURRENT`] alone.
static IN_USE: AtomicBool = AtomicBool::new(false);

/// Marks `entry` as the request polled on this thread.
pub(crate) fn set_current(entry: &Weak<Entry>) {
    if IN_USE.load(Ordering::Relaxed) {
        CURRENT.with(|c| *c.borrow_mut() = Some(entry.clone()));
    }
}

/// Marks no request as polled on this thread.
pub(crate) fn clear_current() {
    if IN_USE.load(Ordering::Relaxed) {
        CURRENT.with(|c| *c.borrow_mut() = None);
    }
}

/// A span's name and fields as `name{key=value …}`, kept in its extensions.
struct Described(String);

/// Which request a span was opened in.
struct Owner(Weak<Entry>);

/// A [`tracing_subscriber::Layer`] that lets the watchdog report the open spans of a slow
/// request; made by [`Watchdog::tracing_layer`](crate::Watchdog::tracing_layer).
///
/// Spans opened while a request is polled (a handler's `#[instrument]`, `.instrument(span)`
/// inside it) belong to that request until they close; the spans around the request when it
/// arrived (a tracing layer outside, such as tower-http's `TraceLayer`) are reported too.
#[derive(Clone, Copy, Debug, Default)]
pub struct SpanLayer;

impl<S> tracing_subscriber::Layer<S> for SpanLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_layer(&mut self, _subscriber: &mut S) {
        IN_USE.store(true, Ordering::Relaxed);
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut text = String::from(attrs.metadata().name());
        let mut fields = Fields(String::new());
        attrs.record(&mut fields);
        if !fields.0.is_empty() {
            let _ = write!(text, "{{{}}}", fields.0.trim_start());
        }
        let mut extensions = span.extensions_mut();
        let owner = CURRENT.with(|c| c.borrow().as_ref().and_then(Weak::upgrade));
        if let Some(entry) = owner {
            entry.open_span(id.into_u64(), text.clone());
            extensions.insert(Owner(Arc::downgrade(&entry)));
        }
        extensions.insert(Described(text));
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let extensions = span.extensions();
        if let Some(entry) = extensions.get::<Owner>().and_then(|o| o.0.upgrade()) {
            entry.close_span(id.into_u64());
        }
    }
}

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, " {}={value}", field.name());
    }
}

/// The spans around the caller now (outermost first), as described by [`SpanLayer`]; empty
/// when the subscriber is not a `tracing_subscriber` registry with that layer.
pub(crate) fn enclosing() -> Vec<String> {
    tracing::dispatcher::get_default(|dispatch| {
        let Some(id) = dispatch.current_span().id().cloned() else {
            return Vec::new();
        };
        let Some(registry) = dispatch.downcast_ref::<tracing_subscriber::Registry>() else {
            return Vec::new();
        };
        let Some(span) = registry.span(&id) else {
            return Vec::new();
        };
        let mut out: Vec<String> = span
            .scope()
            .map(|s| {
                s.extensions()
                    .get::<Described>()
                    .map(|d| d.0.clone())
                    .unwrap_or_else(|| s.name().to_string())
            })
            .collect();
        out.reverse();
        out
    })
}
