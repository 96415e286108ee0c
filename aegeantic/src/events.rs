//! Events the resilience layer emits inline with a stream's data.
//!
//! A wrapped stream yields [`Resilient`](crate::resilience::Resilient) items: data, or one
//! of these events. They say what the resilience layer did, at the point in the stream where
//! it did it, so a consumer (or an agent's step stream) can show, log or count it.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::resilience::{Acquired, CircuitState, Fallback, TimeoutKind};

/// What kind of operation a wrapped stream performs.
///
/// Converts from `"llm"`, `"tool"` and `"custom"`; any other string is kept as
/// [`OperationType::Other`] so that no label is lost.
///
/// ```
/// use aegeantic::events::OperationType;
///
/// assert_eq!(OperationType::from("llm"), OperationType::Llm);
/// assert_eq!(OperationType::from("db").to_string(), "db");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(from = "String", into = "String"))]
pub enum OperationType {
    /// A call to a language model.
    Llm,
    /// A tool invocation.
    Tool,
    /// Anything else.
    #[default]
    Custom,
    /// A caller-chosen label.
    Other(Arc<str>),
}

impl OperationType {
    /// The label as a string slice.
    pub fn as_str(&self) -> &str {
        match self {
            OperationType::Llm => "llm",
            OperationType::Tool => "tool",
            OperationType::Custom => "custom",
            OperationType::Other(label) => label,
        }
    }

    /// The label as a metrics label value, copied only if it is not a literal.
    #[cfg(feature = "metrics")]
    pub(crate) fn metrics_label(&self) -> metrics::SharedString {
        match self {
            OperationType::Llm => metrics::SharedString::const_str("llm"),
            OperationType::Tool => metrics::SharedString::const_str("tool"),
            OperationType::Custom => metrics::SharedString::const_str("custom"),
            OperationType::Other(label) => label.clone().into(),
        }
    }
}

impl fmt::Display for OperationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for OperationType {
    // Inlined: a literal label then resolves at compile time, not by string comparisons in
    // every stream's constructor.
    #[inline]
    fn from(label: &str) -> Self {
        match label {
            "llm" => OperationType::Llm,
            "tool" => OperationType::Tool,
            "custom" => OperationType::Custom,
            other => OperationType::Other(other.into()),
        }
    }
}

impl From<String> for OperationType {
    fn from(label: String) -> Self {
        OperationType::from(label.as_str())
    }
}

impl From<OperationType> for String {
    fn from(kind: OperationType) -> Self {
        kind.as_str().to_owned()
    }
}

/// An attempt failed with a retryable error and another attempt will follow.
///
/// Emitted before the back-off delay starts, so `next_delay_seconds` is the wait that is
/// about to happen. Nothing is emitted for an error that is not retried.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct RetryEvent {
    /// The kind of operation.
    pub operation_type: OperationType,
    /// The caller's name for the operation.
    pub operation_name: Arc<str>,
    /// The attempt that failed, counting from 1.
    pub attempt: u32,
    /// The configured maximum number of attempts.
    pub max_attempts: u32,
    /// The failed attempt's error with its causes, as [`DisplayChain`](crate::report::DisplayChain)
    /// shows it.
    pub error: String,
    /// How long the layer waits before the next attempt, in seconds.
    pub next_delay_seconds: f64,
    /// How many items the failed attempt had yielded before it failed. Unless the stream
    /// resumes from a cursor, the next attempt starts from the beginning, so a consumer
    /// that kept those items may want to discard them.
    pub items_delivered: u64,
    /// Set when the attempt failed by running out of time.
    pub timeout: Option<TimeoutKind>,
    /// Whether the server set the delay (`Retry-After` or similar) rather than back-off.
    pub server_directed: bool,
    /// Set when a shared (Redis) retry budget could not reach Redis and its failure
    /// policy allowed the retry: [`Fallback::Local`] by its in-process budget,
    /// [`Fallback::FailOpen`] unchecked. Back to `None` once the shared budget decides
    /// again.
    #[cfg_attr(feature = "serde", serde(default))]
    pub budget_fallback: Option<Fallback>,
    /// Correlation id set with `with_step_id`.
    pub step_id: Option<Arc<str>>,
    /// When the event was made, in Unix seconds.
    pub timestamp: f64,
}

impl RateLimitEvent {
    /// The event of `acquired`, made now.
    pub(crate) fn granted(operation_name: Arc<str>, acquired: &Acquired) -> Self {
        let now = unix_now();
        let event = RateLimitEvent {
            operation_name,
            tokens: acquired.tokens,
            acquired_at: now,
            tokens_remaining: acquired.tokens_remaining,
            waited: acquired.waited,
            fallback: acquired.fallback,
            step_id: None,
            timestamp: now,
        };
        #[cfg(feature = "tracing")]
        tracing::debug!(
            operation_name = &*event.operation_name,
            tokens = event.tokens,
            tokens_remaining = event.tokens_remaining,
            waited_ms = event.waited.as_secs_f64() * 1e3,
            fallback = ?event.fallback,
            "rate limit: acquired"
        );
        event
    }
}

impl RetryEvent {
    /// The event as a `tracing` record (feature `tracing`): every place that makes one
    /// records it the same way.
    pub(crate) fn record(&self) {
        #[cfg(feature = "tracing")]
        tracing::warn!(
            operation_name = &*self.operation_name,
            operation_type = %self.operation_type,
            attempt = self.attempt,
            max_attempts = self.max_attempts,
            next_delay_seconds = self.next_delay_seconds,
            items_delivered = self.items_delivered,
            server_directed = self.server_directed,
            error = %self.error,
            "retrying"
        );
        #[cfg(feature = "metrics")]
        crate::observe::metrics::retry(
            crate::observe::metrics::Operation {
                name: self.operation_name.clone().into(),
                kind: self.operation_type.metrics_label(),
            },
            self.timeout
                .map_or("error", crate::resilience::TimeoutKind::label),
            self.server_directed,
        );
    }

    /// The delay before the next attempt. An event read from elsewhere may hold any
    /// number: a negative or NaN one reads as zero, one too large as [`Duration::MAX`].
    ///
    pub fn next_delay(&self) -> Duration {
        crate::resilience::backoff::saturating_secs(self.next_delay_seconds)
    }
}

/// Tokens were taken from a rate limiter before an attempt.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct RateLimitEvent {
    /// The caller's name for the operation.
    pub operation_name: Arc<str>,
    /// Tokens taken.
    #[cfg_attr(feature = "serde", serde(default))]
    pub tokens: u32,
    /// When the tokens were granted, in Unix seconds.
    pub acquired_at: f64,
    /// Tokens left in the bucket right after the grant (tokens promised to queued waiters
    /// do not count).
    pub tokens_remaining: f64,
    /// How long the acquisition waited; zero when the tokens were there.
    pub waited: Duration,
    /// Set when a shared (Redis) bucket could not decide and its failure policy admitted
    /// the request instead.
    pub fallback: Option<Fallback>,
    /// Correlation id set with `with_step_id`.
    pub step_id: Option<Arc<str>>,
    /// When the event was made, in Unix seconds.
    pub timestamp: f64,
}

/// A circuit breaker changed state, or a shared one changed the breaker that decides.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct CircuitEvent {
    /// The caller's name for the operation whose call caused the change.
    pub operation_name: Arc<str>,
    /// The state before.
    pub from: CircuitState,
    /// The state after.
    pub to: CircuitState,
    /// The failure ratio that opened the breaker, when a window did.
    pub failure_ratio: Option<f64>,
    /// [`Fallback::Local`] when the state after is that of the in-process breaker standing
    /// in for a shared (Redis) one that cannot reach Redis. A shared breaker also emits an
    /// event when it switches to that breaker and when the fleet's state decides again
    /// (`fallback` back to `None`); `from` and `to` may then be the same.
    #[cfg_attr(feature = "serde", serde(default))]
    pub fallback: Option<Fallback>,
    /// Correlation id set with `with_step_id`.
    pub step_id: Option<Arc<str>>,
    /// When the event was made, in Unix seconds.
    pub timestamp: f64,
}

/// A borrowed view of a resilience event, whatever it arrived in.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum EventRef<'a> {
    /// A retry is about to happen.
    Retry(&'a RetryEvent),
    /// Tokens were acquired.
    RateLimit(&'a RateLimitEvent),
    /// A circuit breaker changed state.
    Circuit(&'a CircuitEvent),
}

/// Anything that may carry a resilience event: the events themselves, a
/// [`Resilient`](crate::resilience::Resilient) item, or a stream's `Result` item.
pub trait AsEventRef {
    /// The event inside, if any.
    fn as_event_ref(&self) -> Option<EventRef<'_>>;
}

impl AsEventRef for RetryEvent {
    fn as_event_ref(&self) -> Option<EventRef<'_>> {
        Some(EventRef::Retry(self))
    }
}

impl AsEventRef for RateLimitEvent {
    fn as_event_ref(&self) -> Option<EventRef<'_>> {
        Some(EventRef::RateLimit(self))
    }
}

impl AsEventRef for CircuitEvent {
    fn as_event_ref(&self) -> Option<EventRef<'_>> {
        Some(EventRef::Circuit(self))
    }
}

impl<T: AsEventRef, E> AsEventRef for Result<T, E> {
    fn as_event_ref(&self) -> Option<EventRef<'_>> {
        self.as_ref().ok().and_then(AsEventRef::as_event_ref)
    }
}

pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_delay_in_an_event_reads_as_a_duration() {
        let mut event = RetryEvent {
            operation_type: OperationType::Llm,
            operation_name: "op".into(),
            attempt: 1,
            max_attempts: 3,
            error: "reset".into(),
            next_delay_seconds: 1.5,
            items_delivered: 0,
            timeout: None,
            server_directed: false,
            budget_fallback: None,
            step_id: None,
            timestamp: 0.0,
        };
        for (seconds, delay) in [
            (1.5, Duration::from_millis(1500)),
            (-1.0, Duration::ZERO),
            (f64::NAN, Duration::ZERO),
            (f64::NEG_INFINITY, Duration::ZERO),
            (f64::INFINITY, Duration::MAX),
            (1e300, Duration::MAX),
            (Duration::MAX.as_secs_f64(), Duration::MAX),
        ] {
            event.next_delay_seconds = seconds;
            assert_eq!(event.next_delay(), delay, "{seconds}");
        }
    }
}
