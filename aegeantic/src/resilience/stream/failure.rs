//! Why an attempt failed: the stream's own error, or one of the time limits.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::resilience::retry::Timeouts;
use crate::resilience::RateLimitError;

/// Which time limit an attempt ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum TimeoutKind {
    /// No first item within `first_item_timeout`.
    FirstItem,
    /// No next item within `idle_timeout`: the stream stalled.
    Idle,
    /// The attempt as a whole exceeded `attempt_timeout`.
    Attempt,
    /// The operation as a whole reached `max_elapsed`.
    Deadline,
}

impl TimeoutKind {
    /// The kind as a metrics label.
    #[cfg(feature = "metrics")]
    pub(crate) fn label(self) -> &'static str {
        match self {
            TimeoutKind::FirstItem => "first_item",
            TimeoutKind::Idle => "idle",
            TimeoutKind::Attempt => "attempt",
            TimeoutKind::Deadline => "deadline",
        }
    }
}

impl fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutKind::FirstItem => "first-item",
            TimeoutKind::Idle => "idle",
            TimeoutKind::Attempt => "attempt",
            TimeoutKind::Deadline => "deadline",
        })
    }
}

/// An attempt ran out of time. [`RetryOn::transient`](crate::resilience::RetryOn::transient)
/// retries it (except a [`TimeoutKind::Deadline`], after which nothing is retried).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} timeout after {after:?}")]
pub struct StreamTimeout {
    /// Which limit.
    pub kind: TimeoutKind,
    /// The limit's length.
    pub after: Duration,
}

/// Why one attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError<E>
where
    E: std::error::Error + 'static,
{
    /// The stream yielded an error.
    #[error("the stream failed")]
    Operation(#[source] E),
    /// The attempt ran out of time.
    #[error("the attempt timed out")]
    Timeout(#[source] StreamTimeout),
    /// The attempt never started: its tokens would have come only past the deadline.
    #[error("the attempt found no tokens before the deadline")]
    RateLimit(#[source] RateLimitError),
}

/// The nearest time limit of a running attempt.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    timeouts: Timeouts,
    /// When the whole operation must end.
    operation_end: Option<Instant>,
    attempt_started: Instant,
}

impl Limits {
    pub(crate) fn new(timeouts: Timeouts, operation_end: Option<Instant>, now: Instant) -> Self {
        Limits {
            timeouts,
            operation_end,
            attempt_started: now,
        }
    }

    /// The earliest limit, given when the last item came (`None`: none yet). A limit past
    /// what the clock can represent never fires.
    pub(crate) fn nearest(&self, last_item: Option<Instant>) -> Option<(Instant, StreamTimeout)> {
        let after =
            |from: Instant, after: Duration, kind| Some((from.checked_add(after)?, kind, after));
        let item = match last_item {
            None => self
                .timeouts
                .first_item
                .and_then(|d| after(self.attempt_started, d, TimeoutKind::FirstItem)),
            Some(at) => self
                .timeouts
                .idle
                .and_then(|d| after(at, d, TimeoutKind::Idle)),
        };
        let attempt = self
            .timeouts
            .attempt
            .and_then(|d| after(self.attempt_started, d, TimeoutKind::Attempt));
        let operation = self.operation_end.map(|end| {
            (
                end,
                TimeoutKind::Deadline,
                end.saturating_duration_since(self.attempt_started),
            )
        });
        [item, attempt, operation]
            .into_iter()
            .flatten()
            .min_by_key(|&(at, _, _)| at)
            .map(|(at, kind, after)| (at, StreamTimeout { kind, after }))
    }
}
