//! Requests in flight, the request hook, and the watchdog thread.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sampler_adapter_http::{InFlight, Outcome, RequestHook, RequestStart};
use sampler_api::CounterFamily;

use crate::capture::{self, CaptureError};
use crate::event::{Event, EventKind, Stack};
use crate::spans;
use crate::unwind::{self, StackUnwinder};

/// A callback told of every event.
pub(crate) type OnEvent = Box<dyn Fn(&Event) + Send + Sync>;

/// The requests in flight by key. Keys come from a counter: foldhash spreads them for the
/// table at a few instructions a key (the default SipHash costs a hundred on every request).
pub(crate) type InFlightTable = HashMap<u64, Arc<Entry>, foldhash::fast::FixedState>;

/// A request's id: its `X-Request-Id`, else a random number shown in hex (formatted only
/// when a report needs it).
#[derive(Debug)]
enum RequestId {
    Header(Box<str>),
    Fresh(u64),
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestId::Header(id) => f.write_str(id),
            RequestId::Fresh(n) => write!(f, "{n:016x}"),
        }
    }
}

/// One request in flight: what the hook gives the layer to follow it, and what the watchdog
/// thread reports. Made with one allocation per request and no formatting: what a report
/// needs is kept by reference count (group, URI) or made when the report is.
#[derive(Debug)]
pub(crate) struct Entry {
    /// This entry, for the thread-local mark of the request being polled.
    me: Weak<Entry>,
    shared: Arc<Shared>,
    key: u64,
    request_id: RequestId,
    group: Arc<str>,
    method: http::Method,
    uri: http::Uri,
    /// When the request arrived by the wall clock, worked out at its first report.
    arrived: OnceLock<SystemTime>,
    started: Instant,
    /// `(poll number << 32) | thread id` while a poll runs, 0 between polls. Two equal
    /// non-zero reads around a capture mean one poll ran on that thread throughout.
    polling: AtomicU64,
    polls: AtomicU32,
    /// The spans around the request when it arrived.
    enclosing: Vec<String>,
    /// Spans opened in the request and not closed yet: (span id, description).
    open: Mutex<Vec<(u64, String)>>,
    /// Reported as slow (so its end is reported too).
    reported: AtomicBool,
    /// How and when it ended, set under the in-flight lock (for a request that ends while
    /// its slow report is being made).
    ended: Mutex<Option<(Outcome, Duration)>>,
    file: Mutex<Option<PathBuf>>,
}

impl Entry {
    pub(crate) fn open_span(&self, id: u64, text: String) {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((id, text));
    }

    pub(crate) fn close_span(&self, id: u64) {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(open, _)| *open != id);
    }

    fn spans(&self) -> Vec<String> {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        self.enclosing
            .iter()
            .cloned()
            .chain(open.iter().map(|(_, text)| text.clone()))
            .collect()
    }

    /// When the request arrived by the wall clock: now less its time in flight, worked out
    /// once so that every report of it says the same.
    fn arrived(&self) -> SystemTime {
        *self.arrived.get_or_init(|| {
            let now = SystemTime::now();
            now.checked_sub(self.started.elapsed()).unwrap_or(now)
        })
    }

    fn event(&self, kind: EventKind, elapsed: Duration, stack: Stack, spans: Vec<String>) -> Event {
        Event {
            kind,
            request_id: self.request_id.to_string(),
            group: self.group.to_string(),
            method: self.method.to_string(),
            path: self.uri.path().to_string(),
            arrived: self.arrived(),
            elapsed,
            spans,
            stack,
            file: self
                .file
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}

/// Messages to the watchdog thread.
pub(crate) enum Message {
    Ended(Arc<Entry>, Outcome, Duration),
    Stop,
}

/// What the hook and the watchdog thread share.
pub(crate) struct Shared {
    pub(crate) threshold: Duration,
    pub(crate) dir: Option<PathBuf>,
    pub(crate) stderr: bool,
    pub(crate) capture_wait: Duration,
    pub(crate) slow: CounterFamily,
    pub(crate) on_event: Option<OnEvent>,
    pub(crate) in_flight: Mutex<InFlightTable>,
    pub(crate) next_key: AtomicU64,
    pub(crate) tx: Mutex<std::sync::mpsc::Sender<Message>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchdog")
            .field("threshold", &self.threshold)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// The [`RequestHook`] of a watchdog.
#[derive(Debug)]
pub(crate) struct Hook(pub(crate) Arc<Shared>);

/// `X-Request-Id` when it is a short printable token, else a fresh id.
fn request_id(header: Option<&http::HeaderValue>) -> RequestId {
    header
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(
            || RequestId::Fresh(fastrand::u64(..)),
            |v| RequestId::Header(v.into()),
        )
}

impl RequestHook for Hook {
    fn start(&self, request: &RequestStart<'_>) -> Option<Arc<dyn InFlight>> {
        let key = self.0.next_key.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new_cyclic(|me| Entry {
            me: me.clone(),
            shared: self.0.clone(),
            key,
            request_id: request_id(request.request_id),
            group: request.group.clone(),
            method: request.method.clone(),
            uri: request.uri.clone(),
            arrived: OnceLock::new(),
            started: request.arrived,
            polling: AtomicU64::new(0),
            polls: AtomicU32::new(0),
            enclosing: spans::enclosing(),
            open: Mutex::new(Vec::new()),
            reported: AtomicBool::new(false),
            ended: Mutex::new(None),
            file: Mutex::new(None),
        });
        self.0
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, entry.clone());
        Some(entry)
    }
}

impl InFlight for Entry {
    fn enter(&self) {
        let tid = capture::prepare_thread();
        let poll = self.polls.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        self.polling.store(
            (u64::from(poll) << 32) | u64::from(tid as u32),
            Ordering::SeqCst,
        );
        spans::set_current(&self.me);
    }

    fn exit(&self) {
        spans::clear_current();
        self.polling.store(0, Ordering::SeqCst);
    }

    fn end(self: Arc<Self>, outcome: Outcome, took: Duration) {
        let shared = &self.shared;
        let reported = {
            let mut in_flight = shared
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            in_flight.remove(&self.key);
            *self.ended.lock().unwrap_or_else(PoisonError::into_inner) = Some((outcome, took));
            self.reported.load(Ordering::Acquire)
        };
        if reported {
            let tx = shared.tx.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = tx.send(Message::Ended(self.clone(), outcome, took));
        }
    }
}

/// The watchdog thread: checks the requests in flight every `tick`, reports the slow ones
/// once, and reports the end of each reported request.
pub(crate) fn run(shared: Arc<Shared>, rx: Receiver<Message>, tick: Duration) {
    // Read the debug info meanwhile (backtrace's cache is process-wide), so that the first
    // report is quick; this thread stays free to take the first stack on time.
    let _ = std::thread::Builder::new()
        .name("sampler-watchdog-symbols".into())
        .spawn(|| unwind::symbolise(&[run as *const () as usize as u64]));
    let mut unwinder: Option<StackUnwinder> = None;
    loop {
        match rx.recv_timeout(tick) {
            Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Ok(Message::Ended(entry, outcome, took)) => {
                let event = entry.event(EventKind::Ended(outcome), took, Stack::None, Vec::new());
                publish(&shared, &event);
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        let slow: Vec<Arc<Entry>> = shared
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .filter(|e| {
                !e.reported.load(Ordering::Relaxed) && e.started.elapsed() >= shared.threshold
            })
            .cloned()
            .collect();
        for entry in slow {
            // What the request is doing now: time, spans and stack taken together, before the
            // stack is named (which takes a while the first time).
            let elapsed = entry.started.elapsed();
            let spans = entry.spans();
            let stack = where_is(&shared, &entry, &mut unwinder);
            if let Some(dir) = &shared.dir {
                let file = dir.join(file_name(&entry));
                *entry.file.lock().unwrap_or_else(PoisonError::into_inner) = Some(file);
            }
            // Under the lock `end` takes: either the request still runs, and its end will
            // see `reported` and be sent here, or it ended while this report was being made
            // (a stack takes a while to name), and its end is reported right after.
            let ended = {
                let in_flight = shared
                    .in_flight
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                entry.reported.store(true, Ordering::Release);
                if in_flight.contains_key(&entry.key) {
                    None
                } else {
                    *entry.ended.lock().unwrap_or_else(PoisonError::into_inner)
                }
            };
            shared.slow.get(&[&*entry.group]).inc();
            publish(
                &shared,
                &entry.event(EventKind::Slow, elapsed, stack, spans),
            );
            if let Some((outcome, took)) = ended {
                let end = entry.event(EventKind::Ended(outcome), took, Stack::None, Vec::new());
                publish(&shared, &end);
            }
        }
    }
}

/// The stack of a running request, or [`Stack::Parked`].
fn where_is(shared: &Shared, entry: &Entry, unwinder: &mut Option<StackUnwinder>) -> Stack {
    let before = entry.polling.load(Ordering::SeqCst);
    if before == 0 {
        return Stack::Parked;
    }
    let tid = before as u32 as i32;
    let captured = capture::capture(tid, shared.capture_wait);
    let after = entry.polling.load(Ordering::SeqCst);
    match captured {
        Ok(c) if after == before => {
            let unwinder = unwinder.get_or_insert_with(StackUnwinder::new);
            let frames = unwind::symbolise(&unwinder.addresses(&c));
            Stack::Running {
                thread: tid,
                frames,
                pause: c.pause,
            }
        }
        // The poll ended during the capture: the copy may show another request's work.
        Ok(_) if after == 0 => Stack::Parked,
        Ok(_) => Stack::Unavailable(format!(
            "the request moved off thread {tid} during the capture"
        )),
        Err(CaptureError::Timeout) => Stack::Unavailable(format!(
            "thread {tid} did not answer the capture signal within {:?}",
            shared.capture_wait
        )),
        Err(CaptureError::Send(why)) => Stack::Unavailable(why),
    }
}

fn file_name(entry: &Entry) -> String {
    let ms = entry
        .arrived()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let id: String = entry
        .request_id
        .to_string()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    format!("slow-{ms}-{}-{id}.txt", entry.key)
}

/// Logs the event, writes it to its file (the end appended to the slow report's file) and
/// calls the callback.
fn publish(shared: &Shared, event: &Event) {
    let text = event.to_string();
    match event.kind {
        EventKind::Slow => tracing::warn!(target: "sampler_adapter_watchdog", "{text}"),
        _ => tracing::info!(target: "sampler_adapter_watchdog", "{text}"),
    }
    if shared.stderr {
        eprintln!("{}", text.trim_end());
    }
    if let Some(file) = &event.file {
        if let Err(error) = write(file, &text, event.kind == EventKind::Slow) {
            tracing::error!(
                target: "sampler_adapter_watchdog",
                "failed to write the slow request report to {}: {error}",
                file.display()
            );
        }
    }
    if let Some(callback) = &shared.on_event {
        callback(event);
    }
}

fn write(file: &Path, text: &str, create: bool) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(!create)
        .write(true)
        .truncate(create)
        .open(file)?;
    f.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        f.write_all(b"\n")?;
    }
    Ok(())
}
