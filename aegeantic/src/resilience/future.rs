//! Retry and rate limiting around a future: the streams' state machine, run until the
//! future's output.
//!
//! A call is a stream of one item, so every policy of the stream adapters applies as it is:
//! back-off and jitter, [`RetryOn`](super::RetryOn) and server-directed delays, timeouts
//! and `max_elapsed`, the budget, the breaker and the limiter. What a stream would yield as
//! events goes to an observer instead, since a future has only its output.

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures_core::Stream;
use pin_project_lite::pin_project;

use super::stream::{Invoke, Once, OperationName, Resilient, ResilientStream};
use super::{CircuitBreaker, RateLimiter, ResilienceError, RetryConfig};
use crate::events::OperationType;

/// What an observer is shown: the events of a call, without data.
pub type Event = Resilient<()>;

/// An observer that layers and middleware share between their clones and tasks: shown
/// every [`Event`] as it happens. `Arc::new(|event: &Event| ...)` makes one.
pub type Observer = Arc<dyn Fn(&Event) + Send + Sync>;

/// Retries a call: `factory` makes the future of one attempt, and is called again after a
/// retryable failure, as [`RetryConfig`] says. The future's output is the first attempt's
/// success, or the [`ResilienceError`] that ended the call.
///
/// Retry events go to [`on_event`](RetryFuture::on_event), if set. The events' operation
/// is named `"call"`; [`resilient`] takes a name and a limiter too.
///
/// ```
/// use std::{io, time::Duration};
/// use aegeantic::resilience::{retry, Resilient, RetryConfig};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let mut calls = 0;
/// let flaky = || {
///     calls += 1;
///     let result = if calls < 3 { Err(io::Error::from(io::ErrorKind::TimedOut)) } else { Ok(calls) };
///     async move { result }
/// };
/// let config = RetryConfig::builder().base_delay(Duration::from_millis(1)).build().unwrap();
/// let mut retries = Vec::new();
/// let answer = retry(flaky, config)
///     .on_event(|event| {
///         if let Resilient::Retry(retry) = event {
///             retries.push(retry.attempt);
///         }
///     })
///     .await;
/// assert_eq!(answer.unwrap(), 3);
/// assert_eq!(retries, [1, 2]);
/// # }
/// ```
pub fn retry<F, Fut, T, E>(factory: F, config: RetryConfig) -> RetryFuture<F, Fut>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Error + Send + Sync + 'static,
{
    resilient(factory, Some(config), None, "call", OperationType::Custom)
}

/// [`retry`] with a limiter, which gives a token before every attempt, and the name and
/// type the events carry. Without a retry config there is one attempt; without a limiter,
/// no waits.
pub fn resilient<F, Fut, T, E>(
    factory: F,
    retry_config: Option<RetryConfig>,
    rate_limiter: Option<RateLimiter>,
    operation_name: impl Into<OperationName>,
    operation_type: impl Into<OperationType>,
) -> RetryFuture<F, Fut>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Error + Send + Sync + 'static,
{
    RetryFuture {
        stream: ResilientStream::new(
            Invoke(factory),
            retry_config,
            rate_limiter,
            operation_name.into(),
            operation_type.into(),
        ),
        first: None,
        started: false,
        on_event: ignore,
        output: None,
    }
}

fn ignore(_: &Event) {}

pin_project! {
    /// A call with retry, rate limiting and a circuit breaker, each optional; see
    /// [`retry`]. Dropping it at any point releases what it holds, as the streams do.
    #[must_use = "futures do nothing unless awaited"]
    pub struct RetryFuture<F, Fut, O = fn(&Event)>
    where
        Fut: Future,
    {
        #[pin]
        stream: ResilientStream<Invoke<F>, Once<Fut>>,
        // The first attempt, while it runs outside the state machine (see `poll`).
        #[pin]
        first: Option<Once<Fut>>,
        started: bool,
        on_event: O,
        // The output, held while a breaker hears of the attempt's end.
        output: Option<Fut::Output>,
    }
}

impl<F, Fut: Future, O> RetryFuture<F, Fut, O> {
    /// Shows every event of the call (retries, waits for tokens, breaker changes) to
    /// `on_event` as it happens. A [`ResilienceMonitor`](super::ResilienceMonitor) counts
    /// them with `|event| monitor.handle_event(event)`.
    pub fn on_event<O2: FnMut(&Event)>(self, on_event: O2) -> RetryFuture<F, Fut, O2> {
        RetryFuture {
            stream: self.stream,
            first: self.first,
            started: self.started,
            on_event,
            output: self.output,
        }
    }

    /// Asks `breaker` before every attempt and tells it each attempt's outcome; while it
    /// is open the call fails at once with [`ResilienceError::CircuitOpen`].
    pub fn with_circuit_breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.stream = self.stream.with_circuit_breaker(breaker);
        self
    }

    /// Stamps `step_id` on every event.
    pub fn with_step_id(mut self, step_id: impl Into<Arc<str>>) -> Self {
        self.stream = self.stream.with_step_id(step_id);
        self
    }
}

impl<F, Fut, T, E, O> Future for RetryFuture<F, Fut, O>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Error + Send + Sync + 'static,
    O: FnMut(&Event),
{
    type Output = Result<T, ResilienceError<E>>;

    // A call that needs no token, breaker or time limit runs its first attempt here,
    // outside the stream's state machine, whose start and transitions were most of the
    // cost of a call that succeeds at once; a failure goes to the machine as that
    // attempt's end.
    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if !*this.started {
            *this.started = true;
            let plain = this.stream.as_mut().start_plain::<T>();
            this.first.set(plain);
        }
        if let Some(first) = this.first.as_mut().as_pin_mut() {
            match ready!(first.poll_next(cx)) {
                Some(Ok(value)) => return Poll::Ready(Ok(value)),
                Some(Err(error)) => {
                    this.first.set(None);
                    this.stream.as_mut().plain_attempt_failed(Err(error));
                }
                None => unreachable!("a call's stream yields its output before it ends"),
            }
        }
        loop {
            let item = match ready!(this.stream.as_mut().poll_next(cx)) {
                Some(Ok(Resilient::Item(value))) => {
                    if !this.stream.has_breaker() {
                        return Poll::Ready(Ok(value));
                    }
                    // The attempt has ended only when its stream says so; then the breaker
                    // hears of the success.
                    *this.output = Some(Ok(value));
                    continue;
                }
                Some(Ok(event)) => event,
                Some(Err(error)) => return Poll::Ready(Err(error)),
                None => match this.output.take() {
                    Some(Ok(value)) => return Poll::Ready(Ok(value)),
                    _ => unreachable!("a call's stream yields its output before it ends"),
                },
            };
            (this.on_event)(&without_data(item));
        }
    }
}

/// An event of a call's stream, without the data type it never carries.
fn without_data<T>(item: Resilient<T>) -> Event {
    match item {
        Resilient::Item(_) => unreachable!("data items are the output"),
        Resilient::Retry(event) => Resilient::Retry(event),
        Resilient::RateLimit(event) => Resilient::RateLimit(event),
        Resilient::Circuit(event) => Resilient::Circuit(event),
    }
}

impl<F, Fut: Future, O> fmt::Debug for RetryFuture<F, Fut, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryFuture").finish_non_exhaustive()
    }
}

/// `.retry(config)` on a future's factory, as backon's users write it:
/// `(|| fetch(url)).retry(config).await`. The same as [`retry`].
///
/// ```
/// use std::{io, time::Duration};
/// use aegeantic::resilience::{RetryCall, RetryConfig};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// async fn fetch() -> Result<&'static str, io::Error> {
///     Ok("page")
/// }
/// let config = RetryConfig::builder().base_delay(Duration::from_millis(1)).build().unwrap();
/// assert_eq!(fetch.retry(config).await.unwrap(), "page");
/// # }
/// ```
pub trait RetryCall<Fut: Future>: FnMut() -> Fut + Sized {
    /// Retries the calls as `config` says.
    fn retry<T, E>(self, config: RetryConfig) -> RetryFuture<Self, Fut>
    where
        Fut: Future<Output = Result<T, E>>,
        E: Error + Send + Sync + 'static,
    {
        retry(self, config)
    }
}

impl<F, Fut> RetryCall<Fut> for F
where
    F: FnMut() -> Fut,
    Fut: Future,
{
}
