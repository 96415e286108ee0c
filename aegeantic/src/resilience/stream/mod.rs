//! Retry and rate limiting around any stream, with events delivered inline.
//!
//! All entry points build the same adapter, [`ResilientStream`]; they differ in which
//! layers are switched on and in how a retry reopens the stream.

mod failure;
mod labels;
mod open;
mod resilient;

pub use failure::{AttemptError, StreamTimeout, TimeoutKind};
pub use labels::OperationName;
pub use open::{Cursor, Invoke, Limited, Once, Opener, Reopen, Resume};
pub use resilient::ResilientStream;

use std::error::Error;

use futures_core::Stream;

use super::{RateLimiter, RetryConfig};
use crate::events::{
    AsEventRef, CircuitEvent, EventRef, OperationType, RateLimitEvent, RetryEvent,
};

/// One item of a wrapped stream: the data, or what the resilience layer did.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Resilient<T> {
    /// An item of the wrapped stream.
    Item(T),
    /// An attempt failed and another will follow after `next_delay_seconds`.
    Retry(RetryEvent),
    /// Tokens were acquired before an attempt.
    RateLimit(RateLimitEvent),
    /// A circuit breaker changed state.
    Circuit(CircuitEvent),
}

impl<T> Resilient<T> {
    /// The data item, dropping events.
    pub fn into_item(self) -> Option<T> {
        match self {
            Resilient::Item(item) => Some(item),
            _ => None,
        }
    }

    /// The data item by reference.
    pub fn as_item(&self) -> Option<&T> {
        match self {
            Resilient::Item(item) => Some(item),
            _ => None,
        }
    }
}

impl<T> AsEventRef for Resilient<T> {
    fn as_event_ref(&self) -> Option<EventRef<'_>> {
        match self {
            Resilient::Item(_) => None,
            Resilient::Retry(event) => Some(EventRef::Retry(event)),
            Resilient::RateLimit(event) => Some(EventRef::RateLimit(event)),
            Resilient::Circuit(event) => Some(EventRef::Circuit(event)),
        }
    }
}

/// Retries a stream: `factory` opens it, and opens it again after a retryable failure.
///
/// A failed attempt whose error matches the config's [`RetryOn`](super::RetryOn) and is not
/// the last yields a [`Resilient::Retry`] event, waits the back-off delay, and starts the
/// stream again **from the beginning**: items the failed attempt yielded will come again,
/// and the event's `items_delivered` says how many. Any other error ends the stream with
/// [`ResilienceError::Operation`](super::ResilienceError::Operation) holding it.
///
/// ```
/// use std::{io, time::Duration};
/// use futures::{stream, StreamExt};
/// use aegeantic::resilience::{retry_stream, Resilient, RetryConfig};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut calls = 0;
/// let flaky = move || {
///     calls += 1;
///     let first = calls == 1;
///     stream::iter(vec![
///         Ok("hello"),
///         if first { Err(io::Error::from(io::ErrorKind::ConnectionReset)) } else { Ok("world") },
///     ])
/// };
/// let config = RetryConfig::builder().base_delay(Duration::from_millis(1)).build().unwrap();
/// let items: Vec<_> = retry_stream(flaky, config, "gpt-4", "llm")
///     .map(|item| match item.unwrap() {
///         Resilient::Item(text) => text.to_string(),
///         Resilient::Retry(event) => format!("retry after attempt {}", event.attempt),
///         _ => String::new(),
///     })
///     .collect()
///     .await;
/// assert_eq!(items, ["hello", "retry after attempt 1", "hello", "world"]);
/// # }
/// ```
pub fn retry_stream<F, S, T, E>(
    factory: F,
    config: RetryConfig,
    operation_name: impl Into<OperationName>,
    operation_type: impl Into<OperationType>,
) -> ResilientStream<Reopen<F>, S>
where
    F: FnMut() -> S,
    S: Stream<Item = Result<T, E>>,
    E: Error + Send + Sync + 'static,
{
    ResilientStream::new(
        Reopen(factory),
        Some(config),
        None,
        operation_name.into(),
        operation_type.into(),
    )
}

/// Takes one token from `limiter` before opening the stream, yields a
/// [`Resilient::RateLimit`] event, then the stream's items. There is no retry: an error
/// ends the stream.
pub fn rate_limited_stream<F, S, T, E>(
    factory: F,
    limiter: RateLimiter,
    operation_name: impl Into<OperationName>,
) -> ResilientStream<Reopen<F>, S>
where
    F: FnMut() -> S,
    S: Stream<Item = Result<T, E>>,
    E: Error + Send + Sync + 'static,
{
    ResilientStream::new(
        Reopen(factory),
        None,
        Some(limiter),
        operation_name.into(),
        OperationType::Custom,
    )
}

/// Retry and rate limiting together: a token is taken before **every** attempt, since a
/// retry is a new request that the upstream counts.
///
/// The items read: rate-limit event, data, retry event, rate-limit event, data, and so on.
/// Without a retry config there is one attempt; without a limiter, no rate-limit events.
pub fn resilient_stream<F, S, T, E>(
    factory: F,
    retry_config: Option<RetryConfig>,
    rate_limiter: Option<RateLimiter>,
    operation_name: impl Into<OperationName>,
    operation_type: impl Into<OperationType>,
) -> ResilientStream<Reopen<F>, S>
where
    F: FnMut() -> S,
    S: Stream<Item = Result<T, E>>,
    E: Error + Send + Sync + 'static,
{
    ResilientStream::new(
        Reopen(factory),
        retry_config,
        rate_limiter,
        operation_name.into(),
        operation_type.into(),
    )
}

/// Retries a stream by continuing where it broke off: `factory` receives a [`Cursor`] with
/// the number of items delivered so far (and the last one), and opens the stream from
/// there. The consumer sees every item exactly once.
///
/// Since no item comes twice, a failure after items is retried whatever the config's
/// [`MidStream`](super::MidStream) says. Each attempt counts towards `max_attempts`, however
/// much it delivered, unless the config sets
/// [`reset_on_progress`](super::RetryConfigBuilder::reset_on_progress).
///
/// ```
/// use std::{io, time::Duration};
/// use futures::{stream, StreamExt};
/// use aegeantic::resilience::{resumable_stream, Cursor, RetryConfig};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut failed = false;
/// let numbers = move |cursor: &Cursor<u64>| {
///     let from = cursor.delivered;
///     let fail_now = !failed;
///     failed = true;
///     stream::iter(from..5).map(move |n| {
///         if fail_now && n == 3 { Err(io::Error::from(io::ErrorKind::ConnectionReset)) } else { Ok(n) }
///     })
/// };
/// let config = RetryConfig::builder().base_delay(Duration::from_millis(1)).build().unwrap();
/// let items: Vec<u64> = resumable_stream(numbers, config, "count", "custom")
///     .filter_map(|item| async move { item.unwrap().into_item() })
///     .collect()
///     .await;
/// assert_eq!(items, [0, 1, 2, 3, 4]);
/// # }
/// ```
pub fn resumable_stream<F, S, T, E>(
    factory: F,
    config: RetryConfig,
    operation_name: impl Into<OperationName>,
    operation_type: impl Into<OperationType>,
) -> ResilientStream<Resume<F, T>, S>
where
    F: FnMut(&Cursor<T>) -> S,
    S: Stream<Item = Result<T, E>>,
    T: Clone,
    E: Error + Send + Sync + 'static,
{
    ResilientStream::new(
        Resume::new(factory),
        Some(config),
        None,
        operation_name.into(),
        operation_type.into(),
    )
}
