//! Retry, rate limiting and resilient stream adapters.
//!
//! | file          | concern                                                     |
//! |---------------|-------------------------------------------------------------|
//! | `backoff`     | delay schedules                                             |
//! | `retry_on`    | which errors are retried                                    |
//! | `retry`       | the retry policy, [`RetryConfig`]                           |
//! | `limiter/`    | the token bucket, [`RateLimiter`]                           |
//! | `stream/`     | the stream adapters and [`Resilient`] items                 |
//! | `future`      | the same around a future: [`retry`], [`resilient`]          |
//! | `concurrency/`| [`ConcurrencyLimiter`]: at most N at once, or N per fleet   |
//! | `monitor`     | [`ResilienceMonitor`]                                       |
//! | `error`       | [`ConfigError`], [`RateLimitError`], [`ResilienceError`]    |

pub(crate) mod backoff;
mod breaker;
mod budget;
mod concurrency;
mod error;
mod future;
#[cfg(feature = "http")]
pub(crate) mod http;
mod jitter;
mod limiter;
mod monitor;
mod retry;
pub(crate) mod retry_on;
mod stream;

pub use backoff::Backoff;
#[cfg(feature = "redis")]
pub use breaker::RedisBreakerOptions;
pub use breaker::{
    Call, CircuitBreaker, CircuitBreakerConfig, CircuitOpen, CircuitState, Transition,
};
#[cfg(feature = "redis")]
pub use budget::RedisBudgetOptions;
pub use budget::RetryBudget;
#[cfg(feature = "redis")]
pub use concurrency::RedisConcurrencyOptions;
pub use concurrency::{ConcurrencyLimited, ConcurrencyLimiter, ConcurrencyPermit};
pub use error::{ConfigError, RateLimitError, ResilienceError};
pub use future::{resilient, retry, Event, Observer, RetryCall, RetryFuture};
#[cfg(feature = "http")]
pub use http::{classify_http, HttpError};
pub use jitter::Jitter;
pub use limiter::{
    Acquire, Acquired, Fallback, RateLimitConfig, RateLimiter, Reservation, TryAcquire,
};
#[cfg(feature = "redis")]
pub use limiter::{FailurePolicy, RedisOptions};
pub use monitor::ResilienceMonitor;
pub use retry::{MidStream, RetryConfig, RetryConfigBuilder};
pub use retry_on::{Classify, RetryDecision, RetryOn};
pub use stream::{
    rate_limited_stream, resilient_stream, resumable_stream, retry_stream, AttemptError, Cursor,
    Invoke, Limited, Once, Opener, OperationName, Reopen, Resilient, ResilientStream, Resume,
    StreamTimeout, TimeoutKind,
};
