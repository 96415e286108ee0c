//! Tower layers over the core (feature `tower`, tower 0.5).
//!
//! | item                    | what it does                                                  |
//! |-------------------------|---------------------------------------------------------------|
//! | [`RateLimitLayer`]      | one [`RateLimiter`](crate::resilience::RateLimiter) bucket for every clone of the service (and, with Redis, every process); applies `Retry-After` and `x-ratelimit-remaining-*` |
//! | [`RetryPolicy`]         | a [`tower::retry::Policy`] from a [`RetryConfig`](crate::resilience::RetryConfig) |
//! | [`ConcurrencyLimitLayer`] | at most N requests in flight, a [`ConcurrencyLimiter`](crate::resilience::ConcurrencyLimiter) slot held until the response body ends or is dropped |
//!
//! Each reports its [`RetryEvent`](crate::events::RetryEvent)s or
//! [`RateLimitEvent`](crate::events::RateLimitEvent)s to an
//! [`Observer`](crate::resilience::Observer), and, with feature `tracing`, as records.

mod concurrency;
mod rate_limit;
mod retry;

pub use concurrency::{
    ConcurrencyLimit, ConcurrencyLimitFuture, ConcurrencyLimitLayer, PermitBody,
};
pub use rate_limit::{
    Counted, LimitError, PerRequest, RateLimit, RateLimitFuture, RateLimitLayer, Weigh,
};
pub use retry::{ClonedRequests, HttpRequests, Replay, ReplayBody, RetryPolicy};
