//! What the streams did, counted as they run, and the status line printed once a second.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use aegeantic::events::RetryEvent;

#[derive(Default)]
pub struct Tally {
    pub started: AtomicU64,
    pub completed: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
    pub items: AtomicU64,
    pub waits: AtomicU64,
    pub wait_micros: AtomicU64,
    pub fallbacks: AtomicU64,
    pub circuit_events: AtomicU64,
    /// Completed streams whose content differs from the server's successful answer.
    pub mismatched: AtomicU64,
    /// Streams that ended after their deadline (and its grace), or never did.
    pub overdue: AtomicU64,
    pub hung: AtomicU64,
    pub slowest_micros: AtomicU64,
    pub retries: Mutex<BTreeMap<&'static str, u64>>,
    pub errors: Mutex<BTreeMap<String, u64>>,
    pub samples: Mutex<Vec<String>>,
}

impl Tally {
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn retry(&self, event: &RetryEvent) {
        *self
            .retries
            .lock()
            .unwrap()
            .entry(cause(event))
            .or_default() += 1;
    }

    pub fn error(&self, kind: String) {
        *self.errors.lock().unwrap().entry(kind).or_default() += 1;
    }

    /// Keeps the first few descriptions of a failed check, for the summary.
    pub fn sample(&self, what: String) {
        let mut samples = self.samples.lock().unwrap();
        if samples.len() < 5 {
            samples.push(what);
        }
    }

    pub fn retries_line(&self) -> String {
        let retries = self.retries.lock().unwrap();
        let total: u64 = retries.values().sum();
        let causes: Vec<String> = retries.iter().map(|(c, n)| format!("{c} {n}")).collect();
        format!("{total} ({})", causes.join(", "))
    }
}

/// The fault behind a retry, from the event: its timeout, else its error's text.
fn cause(event: &RetryEvent) -> &'static str {
    if let Some(kind) = event.timeout {
        return match kind {
            aegeantic::resilience::TimeoutKind::FirstItem => "first-item timeout",
            aegeantic::resilience::TimeoutKind::Idle => "idle timeout",
            aegeantic::resilience::TimeoutKind::Attempt => "attempt timeout",
            aegeantic::resilience::TimeoutKind::Deadline => "deadline",
        };
    }
    let error = event.error.as_str();
    let causes = [
        (
            "HTTP 429",
            if event.server_directed {
                "429 retry-after"
            } else {
                "429"
            },
        ),
        ("HTTP 500", "500"),
        ("HTTP 503", "503"),
        ("stream error event", "error event"),
        ("stalled", "stall"),
        ("truncated", "truncated"),
        ("mid-stream", "cut body"),
        ("connection", "reset"),
    ];
    causes
        .iter()
        .find(|(text, _)| error.contains(text))
        .map_or("other", |(_, cause)| cause)
}
