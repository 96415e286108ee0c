//! The admission log: every grant's time, fed in time order to the bound checks of the
//! bucket that granted it.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use super::bound::BoundCheck;

pub struct Admissions {
    pending: Mutex<Vec<(f64, bool)>>,
    checks: Mutex<Checks>,
}

pub struct Checks {
    /// Grants of the shared bucket (the in-process one, or Redis).
    pub shared: BoundCheck,
    /// Grants of the in-process fallback while Redis was down.
    pub fallback: BoundCheck,
    buffer: Vec<(f64, bool)>,
}

/// How long a grant may take to reach the log: grants younger than this wait, so that the
/// checks see them in time order.
const SETTLE_SECS: f64 = 2.0;

impl Admissions {
    pub fn new(shared: BoundCheck, fallback: BoundCheck) -> Self {
        Admissions {
            pending: Mutex::new(Vec::new()),
            checks: Mutex::new(Checks {
                shared,
                fallback,
                buffer: Vec::new(),
            }),
        }
    }

    /// A grant at `at` (Unix seconds), by the fallback or not.
    pub fn record(&self, at: f64, fallback: bool) {
        self.pending.lock().unwrap().push((at, fallback));
    }

    /// Feeds the checks what has settled; everything when `all`.
    pub fn settle(&self, all: bool) {
        let fresh = std::mem::take(&mut *self.pending.lock().unwrap());
        let mut checks = self.checks.lock().unwrap();
        let Checks {
            shared,
            fallback,
            buffer,
        } = &mut *checks;
        buffer.extend(fresh);
        buffer.sort_by(|a, b| a.0.total_cmp(&b.0));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |since| since.as_secs_f64());
        let ready = if all {
            buffer.len()
        } else {
            buffer.partition_point(|(at, _)| *at < now - SETTLE_SECS)
        };
        for (at, by_fallback) in buffer.drain(..ready) {
            if by_fallback {
                fallback.admit(at);
            } else {
                shared.admit(at);
            }
        }
    }

    pub fn with_checks<R>(&self, read: impl FnOnce(&Checks) -> R) -> R {
        read(&self.checks.lock().unwrap())
    }
}
