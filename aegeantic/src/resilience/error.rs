//! Error types: bad configuration, refused rate-limit requests, and failed operations.

use std::time::Duration;

use super::{AttemptError, CircuitOpen, Fallback, StreamTimeout};

/// A configuration value that cannot work. Each variant names the field at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `max_attempts` was zero: not even the first attempt could run.
    #[error("max_attempts must be at least 1, got 0")]
    ZeroAttempts,
    /// The first delay would already exceed the cap.
    #[error("base_delay ({base_delay:?}) must not exceed max_delay ({max_delay:?})")]
    BaseDelayExceedsMax {
        /// The configured `base_delay`.
        base_delay: Duration,
        /// The configured `max_delay`.
        max_delay: Duration,
    },
    /// The back-off name is not one of `exponential`, `linear`, `constant`.
    #[error("backoff must be \"exponential\", \"linear\" or \"constant\", got {0:?}")]
    UnknownBackoff(String),
    /// A rate limit without any rate would admit everything.
    #[error(
        "a rate limit needs at least one of requests_per_second, requests_per_minute, requests_per_hour"
    )]
    NoRate,
    /// A rate that is zero, negative, NaN or infinite.
    #[error("{field} must be a finite number greater than zero, got {value}")]
    InvalidRate {
        /// The field at fault.
        field: &'static str,
        /// The value given.
        value: f64,
    },
    /// A rate the limiter cannot represent: faster than one token per microsecond, or so slow
    /// that a full bucket would take centuries to refill.
    #[error("{field} = {value} is outside the supported range (1e-6 to 1e6 per second)")]
    RateOutOfRange {
        /// The field at fault.
        field: &'static str,
        /// The value given.
        value: f64,
    },
    /// Refilling a full bucket would take longer than the limiter can count (about a
    /// century): `burst_size` divided by the slowest rate is too large.
    #[error("burst_size {burst_size} at {rate_per_second}/s takes too long to refill")]
    BucketTooLarge {
        /// The configured `burst_size`.
        burst_size: u32,
        /// The binding (slowest) rate, per second.
        rate_per_second: f64,
    },
    /// A concurrency limit of zero would admit nothing; one above what a semaphore can count
    /// (`usize::MAX >> 3`) cannot be held.
    #[error("a concurrency limit must be between 1 and {max}, got {value}")]
    InvalidConcurrency {
        /// The value given.
        value: usize,
        /// The largest limit supported.
        max: usize,
    },
    /// A Redis URL that does not parse. The URL itself is not repeated: it may hold a
    /// password.
    #[error("the Redis URL does not parse")]
    InvalidRedisUrl,
    /// A Redis Cluster was given without any node to reach it by.
    #[error("a Redis Cluster needs at least one node URL, got none")]
    NoClusterNodes,
    /// A Redis call timeout of zero would fail every call.
    #[error("call_timeout must be greater than zero")]
    ZeroCallTimeout,
    /// A Redis-backed limiter needs at least one connection.
    #[error("connections must be at least 1, got 0")]
    ZeroConnections,
    /// The limit given for a Redis-backed limiter's local fallback cannot work; the source
    /// says why.
    #[error("the Redis limiter's local_fallback is invalid")]
    InvalidLocalFallback(#[source] Box<ConfigError>),
    /// A limit was given for the local fallback, but the failure policy never falls back
    /// to a local bucket.
    #[error("local_fallback is set, but only the Local failure policy uses it")]
    LocalFallbackUnused,
    /// A jitter fraction outside `[0, 1]`.
    #[error("a proportional jitter must lie in [0, 1], got {0}")]
    InvalidJitter(f64),
    /// A retry budget parameter out of range.
    #[error("retry budget {field} is out of range: {value}")]
    InvalidRetryBudget {
        /// The parameter at fault.
        field: &'static str,
        /// The value given.
        value: f64,
    },
    /// A circuit breaker setting that cannot work.
    #[error("circuit breaker {field} is out of range")]
    InvalidCircuitBreaker {
        /// The setting at fault.
        field: &'static str,
    },
    /// A time limit of zero would fail every attempt.
    #[error("{field} must be greater than zero")]
    ZeroTimeout {
        /// The setting at fault.
        field: &'static str,
    },
    /// `burst_size` was zero: no request could ever pass.
    #[error("burst_size must be at least 1, got 0")]
    ZeroBurst,
}

/// A rate limiter refused a request outright. Waiting is not an error; these are requests
/// that could never succeed as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitError {
    /// More tokens than the bucket can ever hold: waiting would never end.
    #[error("requested {requested} tokens but the bucket holds at most {burst}")]
    InsufficientCapacity {
        /// Tokens asked for.
        requested: u32,
        /// The bucket's capacity (`burst_size`).
        burst: u32,
    },
    /// A request for zero tokens is almost certainly a bug in the caller.
    #[error("requested 0 tokens; a request must take at least 1")]
    ZeroTokens,
    /// The shared (Redis) bucket could not be reached in time and the failure policy is to
    /// refuse. The message never contains the password.
    #[error("rate limiter backend unavailable: {message}")]
    Backend {
        /// What went wrong.
        message: String,
    },
    /// The request would have to wait longer than the configured maximum; nothing was taken.
    #[error("waiting {wait:?} for tokens exceeds the maximum wait of {max_wait:?}")]
    WaitTooLong {
        /// How long the request would have waited.
        wait: Duration,
        /// The configured maximum.
        max_wait: Duration,
    },
    /// The tokens would come only at or after the operation's deadline (its `max_elapsed`),
    /// so the request did not wait and nothing was taken. (With Redis, a call still
    /// running at the deadline is cut there; like any call that timed out, it may have
    /// been charged on the server.)
    #[error("waiting {wait:?} for tokens would end past the deadline, {remaining:?} away")]
    PastDeadline {
        /// How long the request would have waited.
        wait: Duration,
        /// The time left before the deadline.
        remaining: Duration,
    },
    /// Waiting needs a tokio runtime with its timer enabled.
    #[error("waiting for tokens needs a tokio runtime with the time driver enabled")]
    NoRuntime,
}

/// Why a resilient stream ended with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResilienceError<E>
where
    E: std::error::Error + 'static,
{
    /// The operation failed with an error that is not retried, or every attempt failed.
    /// `source` is the last attempt's error.
    #[error("operation failed after {}", Attempts(*attempts))]
    Operation {
        /// The last attempt's error.
        #[source]
        source: E,
        /// How many attempts ran, including the failed one.
        attempts: u32,
    },
    /// The last attempt ran out of time and was not retried.
    #[error("operation timed out after {}", Attempts(*attempts))]
    Timeout {
        /// Which limit it ran into.
        #[source]
        source: StreamTimeout,
        /// How many attempts ran.
        attempts: u32,
    },
    /// A retry was due but the shared retry budget was spent.
    #[error("retry budget exhausted after {}", Attempts(*attempts))]
    RetryBudgetExhausted {
        /// Why the last attempt failed.
        #[source]
        source: AttemptError<E>,
        /// How many attempts ran.
        attempts: u32,
        /// [`Fallback::Local`] when the in-process budget standing in for a shared one
        /// (its Redis does not answer) refused; `None` when the shared budget did, or a
        /// budget that is in-process only.
        fallback: Option<Fallback>,
    },
    /// The operation reached `max_elapsed`, or the next retry would have started past it.
    #[error("deadline exceeded after {} in {elapsed:?}", Attempts(*attempts))]
    DeadlineExceeded {
        /// Why the last attempt failed.
        #[source]
        source: AttemptError<E>,
        /// How many attempts ran.
        attempts: u32,
        /// Time since the operation started.
        elapsed: Duration,
    },
    /// The server asked for a longer wait than `max_server_delay` allows.
    #[error("server asked to wait {delay:?}, more than the {max:?} allowed")]
    ServerDelayTooLong {
        /// The error that carried the delay.
        #[source]
        source: E,
        /// The delay asked for.
        delay: Duration,
        /// The configured maximum.
        max: Duration,
    },
    /// The circuit breaker is open: no request was made.
    #[error("circuit breaker open")]
    CircuitOpen(#[source] CircuitOpen),
    /// The rate limiter refused the request.
    #[error("rate limiter refused the request")]
    RateLimit(#[source] RateLimitError),
}

/// `1 attempt`, `3 attempts`.
struct Attempts(u32);

impl std::fmt::Display for Attempts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = if self.0 == 1 { "" } else { "s" };
        write!(f, "{} attempt{plural}", self.0)
    }
}

impl<E: std::error::Error + 'static> ResilienceError<E> {
    /// How the operation ended, as the `outcome` label of its last attempt, and the limit
    /// that ended it, if a timeout did.
    #[cfg(feature = "metrics")]
    pub(crate) fn outcome(&self) -> (&'static str, Option<&'static str>) {
        match self {
            ResilienceError::Operation { .. } => ("failed", None),
            ResilienceError::Timeout { source, .. } => ("timed_out", Some(source.kind.label())),
            ResilienceError::RetryBudgetExhausted { .. } => ("budget_exhausted", None),
            ResilienceError::DeadlineExceeded { .. } => ("deadline_exceeded", None),
            ResilienceError::ServerDelayTooLong { .. } => ("server_delay_too_long", None),
            ResilienceError::CircuitOpen(_) => ("circuit_open", None),
            ResilienceError::RateLimit(_) => ("rate_limited", None),
        }
    }
}

impl RateLimitError {
    /// The kind of refusal, as a metrics label.
    #[cfg(feature = "metrics")]
    pub(crate) fn label(&self) -> &'static str {
        match self {
            RateLimitError::InsufficientCapacity { .. } => "insufficient_capacity",
            RateLimitError::ZeroTokens => "zero_tokens",
            RateLimitError::Backend { .. } => "backend",
            RateLimitError::WaitTooLong { .. } => "wait_too_long",
            RateLimitError::PastDeadline { .. } => "past_deadline",
            RateLimitError::NoRuntime => "no_runtime",
        }
    }
}

impl<E: std::error::Error + 'static> ResilienceError<E> {
    /// The operation's own error, when the stream ended on one.
    pub fn operation_error(&self) -> Option<&E> {
        match self {
            ResilienceError::Operation { source, .. }
            | ResilienceError::ServerDelayTooLong { source, .. }
            | ResilienceError::RetryBudgetExhausted {
                source: AttemptError::Operation(source),
                ..
            }
            | ResilienceError::DeadlineExceeded {
                source: AttemptError::Operation(source),
                ..
            } => Some(source),
            _ => None,
        }
    }

    /// Consumes the error and returns the operation's own error, when the stream ended on
    /// one.
    pub fn into_operation_error(self) -> Option<E> {
        match self {
            ResilienceError::Operation { source, .. }
            | ResilienceError::ServerDelayTooLong { source, .. }
            | ResilienceError::RetryBudgetExhausted {
                source: AttemptError::Operation(source),
                ..
            }
            | ResilienceError::DeadlineExceeded {
                source: AttemptError::Operation(source),
                ..
            } => Some(source),
            _ => None,
        }
    }
}
