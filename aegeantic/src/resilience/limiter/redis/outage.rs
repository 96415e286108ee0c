//! Deciding without Redis while it is down.
//!
//! A failed call marks Redis down. While it is down, calls do not touch Redis: the failure
//! policy decides at once. Once `probe_interval` has passed since the last failure, the
//! next caller starts a probe (one at a time, in a task of its own, so that no caller waits
//! for it); the probe's success marks Redis up again, its failure starts a new interval.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

pub(crate) struct Outage {
    interval: Duration,
    /// Read by every call; the rest of the state is behind the lock, which only calls made
    /// while Redis is down take.
    down: AtomicBool,
    state: Mutex<State>,
    /// Set while a [`Probe`] is out.
    probing: AtomicBool,
}

struct State {
    /// When the next probe may start; `None` (never) for an interval beyond the clock.
    probe_at: Option<Instant>,
    /// The failure callers are told about: the call or probe that failed last.
    message: String,
}

/// Why a call skipped Redis.
pub(crate) struct Down {
    pub(crate) message: String,
    /// For the one caller that must start a probe.
    pub(crate) probe: Option<Probe>,
}

/// The right to probe: one at a time. Dropped unfinished, it frees the right for the next
/// caller.
pub(crate) struct Probe {
    outage: Arc<Outage>,
    started: Instant,
}

impl Probe {
    /// Ends the probe: Redis answered (`Ok`) or not.
    pub(crate) fn finish(self, result: Result<(), String>) {
        let outage = &self.outage;
        let mut state = outage.lock();
        match result {
            Ok(()) => outage.down.store(false, Ordering::Release),
            Err(message) => {
                // Counted from this probe's start, so that probes start once an interval
                // however long each takes.
                state.probe_at = self.started.checked_add(outage.interval);
                state.message = message;
            }
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.outage.probing.store(false, Ordering::Release);
    }
}

impl Outage {
    pub(crate) fn new(interval: Duration) -> Self {
        Outage {
            interval,
            down: AtomicBool::new(false),
            state: Mutex::new(State {
                probe_at: None,
                message: String::new(),
            }),
            probing: AtomicBool::new(false),
        }
    }

    /// `None` while Redis is taken to be up; else what to tell the caller.
    #[inline]
    pub(crate) fn check(self: &Arc<Self>) -> Option<Down> {
        if !self.down.load(Ordering::Acquire) {
            return None;
        }
        self.check_down()
    }

    #[cold]
    fn check_down(self: &Arc<Self>) -> Option<Down> {
        let state = self.lock();
        if !self.down.load(Ordering::Acquire) {
            // A probe succeeded meanwhile.
            return None;
        }
        let now = Instant::now();
        let due = state.probe_at.is_some_and(|at| now >= at);
        let probe = (due && !self.probing.swap(true, Ordering::AcqRel)).then(|| Probe {
            outage: Arc::clone(self),
            started: now,
        });
        Some(Down {
            message: state.message.clone(),
            probe,
        })
    }

    /// Records a failed call; true if Redis was taken to be up until now.
    pub(crate) fn failed(&self, message: String) -> bool {
        let mut state = self.lock();
        state.probe_at = Instant::now().checked_add(self.interval);
        state.message = message;
        !self.down.swap(true, Ordering::AcqRel)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_probe_at_a_time_once_the_interval_has_passed() {
        let outage = Arc::new(Outage::new(Duration::from_millis(100)));
        assert!(outage.check().is_none());
        assert!(outage.failed("refused".into()));
        assert!(!outage.failed("refused again".into()), "already down");
        let down = outage.check().unwrap();
        assert_eq!(down.message, "refused again");
        assert!(down.probe.is_none(), "not before the interval");

        tokio::time::advance(Duration::from_millis(100)).await;
        let probe = outage.check().unwrap().probe.unwrap();
        assert!(
            outage.check().unwrap().probe.is_none(),
            "one probe at a time"
        );
        tokio::time::advance(Duration::from_millis(30)).await;
        probe.finish(Err("still refused".into()));
        let down = outage.check().unwrap();
        assert_eq!(down.message, "still refused");
        assert!(down.probe.is_none(), "a failed probe starts a new interval");
        // Counted from the probe's start.
        tokio::time::advance(Duration::from_millis(69)).await;
        assert!(outage.check().unwrap().probe.is_none());

        tokio::time::advance(Duration::from_millis(1)).await;
        drop(outage.check().unwrap().probe.unwrap());
        let probe = outage.check().unwrap().probe;
        assert!(probe.is_some(), "a probe dropped unfinished frees its turn");
        probe.unwrap().finish(Ok(()));
        assert!(outage.check().is_none(), "up again");
    }

    #[tokio::test(start_paused = true)]
    async fn an_interval_beyond_the_clock_never_probes() {
        let outage = Arc::new(Outage::new(Duration::MAX));
        outage.failed("refused".into());
        tokio::time::advance(Duration::from_secs(365 * 24 * 3600)).await;
        assert!(outage.check().unwrap().probe.is_none());
    }
}
