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
use crate::observe::Spans;

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
/// A call whose first attempt succeeds and needs no token, breaker or time limit allocates
/// nothing; any other builds the retry state machine once, on the heap.
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
        phase: Phase::First {
            call: Some(Call {
                factory,
                retry: retry_config,
                limiter: rate_limiter,
                breaker: None,
                operation_name: operation_name.into(),
                operation_type: operation_type.into(),
                step_id: None,
            }),
            attempt: None,
            spans: Spans::default(),
        },
        on_event: ignore,
        output: None,
    }
}

fn ignore(_: &Event) {}

/// What a call is made of until its first poll shows whether it needs the state machine.
struct Call<F> {
    factory: F,
    retry: Option<RetryConfig>,
    limiter: Option<RateLimiter>,
    breaker: Option<CircuitBreaker>,
    operation_name: OperationName,
    operation_type: OperationType,
    step_id: Option<Arc<str>>,
}

impl<F> Call<F> {
    /// Whether the first attempt needs nothing of the state machine: no token, breaker or
    /// time limit.
    fn runs_plain(&self) -> bool {
        self.limiter.is_none()
            && self.breaker.is_none()
            && self
                .retry
                .as_ref()
                .is_none_or(|retry| !retry.timeouts().any() && retry.max_elapsed().is_none())
    }

    fn into_machine<Fut: Future>(self) -> ResilientStream<Invoke<F>, Once<Fut>> {
        let mut stream = ResilientStream::new(
            Invoke(self.factory),
            self.retry,
            self.limiter,
            self.operation_name,
            self.operation_type,
        );
        if let Some(breaker) = self.breaker {
            stream = stream.with_circuit_breaker(breaker);
        }
        if let Some(step_id) = self.step_id {
            stream = stream.with_step_id(step_id);
        }
        stream
    }
}

pin_project! {
    #[project = PhaseProj]
    enum Phase<F, Fut>
    where
        Fut: Future,
    {
        // Until the first poll, and while a first attempt that needs nothing of the state
        // machine runs outside it. Building the machine and taking a success through it were
        // most of the cost of a call that succeeds at once; `call` is taken when the machine
        // is built, `attempt` set when the plain attempt starts.
        First {
            call: Option<Call<F>>,
            #[pin]
            attempt: Option<Fut>,
            spans: Spans,
        },
        // Boxed: a call is moved whole as it is handed on, and the machine is most of its
        // size. Only calls that need it (a limiter, breaker or time limit, or a failed first
        // attempt) pay for the allocation.
        Machine {
            stream: Pin<Box<ResilientStream<Invoke<F>, Once<Fut>>>>,
        },
    }
}

pin_project! {
    /// A call with retry, rate limiting and a circuit breaker, each optional; see
    /// [`retry`]. Dropping it at any point releases what it holds, as the streams do.
    #[must_use = "futures do nothing unless awaited"]
    pub struct RetryFuture<F, Fut, O = fn(&Event)>
    where
        Fut: Future,
    {
        #[pin]
        phase: Phase<F, Fut>,
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
            phase: self.phase,
            on_event,
            output: self.output,
        }
    }

    /// Asks `breaker` before every attempt and tells it each attempt's outcome; while it
    /// is open the call fails at once with [`ResilienceError::CircuitOpen`].
    pub fn with_circuit_breaker(mut self, breaker: CircuitBreaker) -> Self {
        match &mut self.phase {
            Phase::First {
                call: Some(call), ..
            } => call.breaker = Some(breaker),
            Phase::First { call: None, .. } => unreachable!("taken only by the machine"),
            Phase::Machine { stream } => stream.as_mut().set_circuit_breaker(breaker),
        }
        self
    }

    /// Stamps `step_id` on every event.
    pub fn with_step_id(mut self, step_id: impl Into<Arc<str>>) -> Self {
        match &mut self.phase {
            Phase::First {
                call: Some(call), ..
            } => call.step_id = Some(step_id.into()),
            Phase::First { call: None, .. } => unreachable!("taken only by the machine"),
            Phase::Machine { stream } => stream.as_mut().set_step_id(step_id.into()),
        }
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

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let PhaseProj::First {
            call,
            mut attempt,
            spans,
        } = this.phase.as_mut().project()
        {
            let Some(plain) = call.as_mut() else {
                unreachable!("the machine replaces the first phase when it takes the call")
            };
            let failure = if attempt.is_none() && !plain.runs_plain() {
                None
            } else {
                if attempt.is_none() {
                    if let Some(budget) = plain.retry.as_ref().and_then(RetryConfig::budget) {
                        budget.deposit();
                    }
                    spans.attempt(
                        plain.operation_name.as_str(),
                        plain.operation_type.as_str(),
                        1,
                    );
                    let _entered = spans.enter();
                    attempt.set(Some((plain.factory)()));
                }
                let _entered = spans.enter();
                let Some(running) = attempt.as_pin_mut() else {
                    unreachable!("set above")
                };
                match ready!(running.poll(cx)) {
                    Ok(value) => {
                        #[cfg(feature = "metrics")]
                        crate::observe::metrics::attempt(
                            crate::observe::metrics::Operation {
                                name: plain.operation_name.metrics_label(),
                                kind: plain.operation_type.metrics_label(),
                            },
                            "success",
                            None,
                        );
                        return Poll::Ready(Ok(value));
                    }
                    Err(error) => Some(Err(error)),
                }
            };
            let Some(call) = call.take() else {
                unreachable!("taken only here")
            };
            let machine = call.into_machine();
            let stream = match failure {
                Some(failure) => machine.after_first_failure(failure, std::mem::take(spans)),
                None => machine,
            };
            this.phase.set(Phase::Machine {
                stream: Box::pin(stream),
            });
        }
        poll_machine(this.phase, this.on_event, this.output, cx)
    }
}

/// The state machine's part of [`RetryFuture::poll`], apart so that a call that succeeds
/// at once runs a function small enough to inline into its caller.
#[inline(never)]
fn poll_machine<F, Fut, T, E, O>(
    phase: Pin<&mut Phase<F, Fut>>,
    on_event: &mut O,
    output: &mut Option<Fut::Output>,
    cx: &mut Context<'_>,
) -> Poll<Result<T, ResilienceError<E>>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Error + Send + Sync + 'static,
    O: FnMut(&Event),
{
    let PhaseProj::Machine { stream } = phase.project() else {
        unreachable!("the first phase ends before the machine runs")
    };
    loop {
        let item = match ready!(stream.as_mut().poll_next(cx)) {
            Some(Ok(Resilient::Item(value))) => {
                // The attempt has ended only when its stream says so (at once: the output
                // is its only item); then the breaker hears of the success, the attempt is
                // counted and its span closes.
                *output = Some(Ok(value));
                continue;
            }
            Some(Ok(event)) => event,
            Some(Err(error)) => return Poll::Ready(Err(error)),
            None => match output.take() {
                Some(Ok(value)) => return Poll::Ready(Ok(value)),
                _ => unreachable!("a call's stream yields its output before it ends"),
            },
        };
        on_event(&without_data(item));
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
