//! The adapter behind `retry_stream`, `rate_limited_stream`, `resilient_stream` and
//! `resumable_stream`.

use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures_core::{FusedStream, Stream};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::failure::{Limits, StreamTimeout};
use super::labels::{Labels, OperationName};
use super::open::{Limited, Opener};
use super::Resilient;
use crate::events::OperationType;
use crate::observe::Spans;
use crate::resilience::concurrency::{ConcurrencyLimited, ConcurrencyLimiter};
use crate::resilience::limiter::Acquisition;
use crate::resilience::{Call, CircuitBreaker, RateLimiter, ResilienceError, RetryConfig};

mod attempt;
mod settle;

use self::attempt::{open, start_attempt, streamed};
use self::settle::{refused, settle};

pin_project! {
    #[project = Projection]
    /// A stream wrapped with retry, rate limiting and a circuit breaker, each optional; see
    /// [`resilient_stream`](super::resilient_stream).
    ///
    /// Each attempt runs: ask the breaker, take a token, open the stream, forward its items
    /// under the configured time limits; on a retryable failure, emit the retry event,
    /// sleep, start over. Dropping it at any point releases what it holds: the open
    /// stream, the place in the limiter's queue, the breaker's probe slot.
    #[must_use = "streams do nothing unless polled"]
    pub struct ResilientStream<O, S>
    where
        S: Stream,
    {
        run: Run<O>,
        #[pin]
        state: State<S>,
    }
}

/// One operation's policies and progress: everything but the open stream. Apart from the
/// state, so that a helper takes two pointers, not one per field: a projection of every
/// field, built and spilled on each pass of the loop, was the costliest part of a stream
/// that succeeds at once.
struct Run<O> {
    opener: O,
    retry: Option<RetryConfig>,
    limiter: Option<RateLimiter>,
    breaker: Option<CircuitBreaker>,
    labels: Labels,
    attempt: u32,
    // Items delivered by the current attempt.
    delivered: u64,
    // When the first attempt started, if the operation has a deadline.
    started: Option<Instant>,
    previous_delay: Option<Duration>,
    call: Option<Call>,
    // The running attempt's time limits, if it has any.
    timer: Option<Pin<Box<Timer>>>,
    spans: Spans,
}

impl<O> Run<O> {
    /// The policies of an operation that has not started.
    fn unstarted(
        opener: O,
        retry: Option<RetryConfig>,
        limiter: Option<RateLimiter>,
        breaker: Option<CircuitBreaker>,
        labels: Labels,
    ) -> Self {
        Run {
            opener,
            retry,
            limiter,
            breaker,
            labels,
            attempt: 0,
            delivered: 0,
            started: None,
            previous_delay: None,
            call: None,
            timer: None,
            spans: Spans::default(),
        }
    }
}

pin_project! {
    #[project = StateProj]
    #[project_replace = StateReplace]
    enum State<S>
    where
        S: Stream,
    {
        // About to start attempt `attempt + 1`.
        Start,
        Acquiring { acquisition: Acquisition },
        Streaming { #[pin] stream: S },
        // An attempt's end, held back while a circuit event goes out first.
        Settling { end: End<S::Item> },
        Backoff { sleep: Pin<Box<Sleep>>, drain: Option<Drain> },
        Done,
    }
}

pin_project! {
    /// An attempt's time limits and the timer set for the nearest. Boxed, limits and timer
    /// together: a stream without limits then carries one pointer rather than both (the
    /// adapter is moved whole, and a stream that succeeds at once pays for every byte), a
    /// stream with limits allocates no more than the timer alone did, and the adapter
    /// stays `Unpin` whenever the wrapped stream is.
    struct Timer {
        limits: Limits,
        // The limit the timer is set for; `None` while no limit applies.
        armed: Option<StreamTimeout>,
        #[pin]
        sleep: Sleep,
    }
}

/// Empties the shared limiter while the back-off runs.
type Drain = Pin<Box<dyn Future<Output = ()> + Send>>;

/// How an attempt ended: `Item` holds the stream's error item.
enum End<I> {
    Finished,
    Item(I),
    TimedOut(StreamTimeout),
}

type Output<T, E> = Option<Result<Resilient<T>, ResilienceError<E>>>;

impl<O, S: Stream> ResilientStream<O, S> {
    pub(crate) fn new(
        opener: O,
        retry: Option<RetryConfig>,
        limiter: Option<RateLimiter>,
        operation_name: OperationName,
        operation_type: OperationType,
    ) -> Self {
        // With a limiter every attempt emits an event: share the name before the first
        // attempt rather than while the stream is read.
        let operation_name = if limiter.is_some() {
            operation_name.into_shared()
        } else {
            operation_name
        };
        let labels = Labels {
            operation_name,
            operation_type,
            step_id: None,
        };
        ResilientStream {
            run: Run::unstarted(opener, retry, limiter, None, labels),
            state: State::Start,
        }
    }

    /// Stamps `step_id` on every event this stream emits.
    pub fn with_step_id(mut self, step_id: impl Into<Arc<str>>) -> Self {
        self.run.labels.step_id = Some(step_id.into());
        self
    }

    /// The state machine of an operation whose first attempt ran without it and failed
    /// with `failure`, which it settles on its first poll as any attempt's end. Only for a
    /// first attempt that needed none of the machine: no token, breaker or time limit, and
    /// whose budget deposit the caller has made.
    pub(crate) fn after_first_failure(mut self, failure: S::Item, spans: Spans) -> Self {
        debug_assert!(self.run.limiter.is_none() && self.run.breaker.is_none());
        self.run.attempt = 1;
        self.run.spans = spans;
        self.state = State::Settling {
            end: End::Item(failure),
        };
        self
    }

    /// [`with_circuit_breaker`](Self::with_circuit_breaker) on a stream already pinned.
    pub(crate) fn set_circuit_breaker(self: Pin<&mut Self>, breaker: CircuitBreaker) {
        self.project().run.breaker = Some(breaker);
    }

    /// [`with_step_id`](Self::with_step_id) on a stream already pinned.
    pub(crate) fn set_step_id(self: Pin<&mut Self>, step_id: Arc<str>) {
        self.project().run.labels.step_id = Some(step_id);
    }

    /// Holds a slot of `limiter` for each attempt: the attempt's stream waits for one at
    /// its first poll (after the breaker and the token) and gives it back when it ends or
    /// fails, so a back-off holds none. The wait for a slot counts against the attempt's
    /// time limits.
    ///
    /// ```
    /// use std::io;
    /// use futures::{stream, StreamExt};
    /// use aegeantic::resilience::{retry_stream, ConcurrencyLimiter, Resilient, RetryConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let slots = ConcurrencyLimiter::new(2)?;
    /// let answer = || stream::iter([Ok::<_, io::Error>("chunk")]);
    /// let mut items = retry_stream(answer, RetryConfig::default(), "llm", "llm")
    ///     .with_concurrency(slots.clone());
    /// while let Some(item) = items.next().await {
    ///     if let Resilient::Item(_) = item? {
    ///         assert_eq!(slots.available(), 1);
    ///     }
    /// }
    /// assert_eq!(slots.available(), 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_concurrency(
        self,
        limiter: ConcurrencyLimiter,
    ) -> ResilientStream<Limited<O>, ConcurrencyLimited<S>> {
        debug_assert!(
            matches!(self.state, State::Start),
            "built before the first poll"
        );
        let run = self.run;
        ResilientStream {
            run: Run::unstarted(
                Limited::new(run.opener, limiter),
                run.retry,
                run.limiter,
                run.breaker,
                run.labels,
            ),
            state: State::Start,
        }
    }

    /// Asks `breaker` before every attempt and reports each attempt's outcome to it. While
    /// it is open the stream fails at once with [`ResilienceError::CircuitOpen`] and makes
    /// no request; its state changes appear as [`Resilient::Circuit`] events.
    pub fn with_circuit_breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.run.breaker = Some(breaker);
        self
    }
}

impl<O, S, T, E> Stream for ResilientStream<O, S>
where
    O: Opener<T, Stream = S>,
    S: Stream<Item = Result<T, E>>,
    E: Error + Send + Sync + 'static,
{
    type Item = Result<Resilient<T>, ResilienceError<E>>;

    // The item path is this function alone, small enough to inline into the consumer's
    // loop; every other state goes to `poll_states`. One function holding both computed
    // and spilled the addresses of every field on each call, an item's cost twice over.
    #[inline]
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Output<T, E>> {
        let mut this = self.as_mut().project();
        if let StateProj::Streaming { stream } = this.state.as_mut().project() {
            let _entered = this.run.spans.enter();
            let polled = stream.poll_next(cx);
            return streamed::<O, S, T, E>(&mut this, polled, cx);
        }
        poll_states(self, cx)
    }
}

/// Every state but an open stream's items: start, token, back-off, end.
#[inline(never)]
fn poll_states<O, S, T, E>(
    mut stream: Pin<&mut ResilientStream<O, S>>,
    cx: &mut Context<'_>,
) -> Poll<Output<T, E>>
where
    O: Opener<T, Stream = S>,
    S: Stream<Item = Result<T, E>>,
    E: Error + Send + Sync + 'static,
{
    loop {
        let mut this = stream.as_mut().project();
        let _entered = this.run.spans.enter();
        match this.state.as_mut().project() {
            StateProj::Start => {
                if let Some(event) = start_attempt::<O, S, T, E>(&mut this) {
                    return Poll::Ready(Some(event));
                }
            }
            StateProj::Acquiring { acquisition } => {
                let deadline = this.run.operation_end();
                let limiter = this
                    .run
                    .limiter
                    .as_ref()
                    .expect("acquiring needs a limiter");
                let name = this.run.labels.operation_name.as_str();
                let acquired = ready!(acquisition.poll(limiter, name, deadline, cx));
                this.run.spans.waited();
                match acquired {
                    Ok(acquired) => {
                        let event = this.run.labels.rate_limit(acquired);
                        open::<O, S, T>(&mut this);
                        return Poll::Ready(Some(Ok(Resilient::RateLimit(event))));
                    }
                    Err(error) => {
                        this.run.call = None;
                        this.state.set(State::Done);
                        return Poll::Ready(Some(Err(refused(&mut this, error))));
                    }
                }
            }
            StateProj::Streaming { stream } => {
                let polled = stream.poll_next(cx);
                return streamed::<O, S, T, E>(&mut this, polled, cx);
            }
            StateProj::Settling { .. } => {
                let StateReplace::Settling { end } =
                    this.state.as_mut().project_replace(State::Done)
                else {
                    unreachable!("the state was matched as settling");
                };
                return Poll::Ready(settle::<O, S, T, E>(&mut this, end));
            }
            StateProj::Backoff { sleep, drain } => {
                if let Some(future) = drain {
                    ready!(future.as_mut().poll(cx));
                    *drain = None;
                }
                ready!(sleep.as_mut().poll(cx));
                this.state.set(State::Start);
            }
            StateProj::Done => return Poll::Ready(None),
        }
    }
}

impl<O, S, T, E> FusedStream for ResilientStream<O, S>
where
    O: Opener<T, Stream = S>,
    S: Stream<Item = Result<T, E>>,
    E: Error + Send + Sync + 'static,
{
    fn is_terminated(&self) -> bool {
        matches!(self.state, State::Done)
    }
}
