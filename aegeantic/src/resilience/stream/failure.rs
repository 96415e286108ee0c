//! Why an attempt failed: the stream's own error, or one of the time limits.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::resilience::retry::Timeouts;

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

    /// The earliest limit, given when the last item came (`None`: none yet).
    pub(crate) fn nearest(&self, last_item: Option<Instant>) -> Option<(Instant, StreamTimeout)> {
        let item = match last_item {
            None => self
                .timeouts
                .first_item
                .map(|after| (self.attempt_started + after, TimeoutKind::FirstItem, after)),
            Some(at) => self
                .timeouts
                .idle
                .map(|after| (at + after, TimeoutKind::Idle, after)),
        };
        let attempt = self
            .timeouts
            .attempt
            .map(|after| (self.attempt_started + after, TimeoutKind::Attempt, after));
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
