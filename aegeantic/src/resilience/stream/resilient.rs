//! The adapter behind `retry_stream`, `rate_limited_stream` and `resilient_stream`.

use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures_core::{FusedStream, Stream};
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::Resilient;
use crate::events::{unix_now, OperationType, RateLimitEvent, RetryEvent};
use crate::resilience::limiter::{Acquired, Acquisition};
use crate::resilience::{RateLimiter, ResilienceError, RetryConfig};

pin_project! {
    #[project = Projection]
    /// A stream wrapped with retry and/or rate limiting; see
    /// [`resilient_stream`](super::resilient_stream).
    ///
    /// Each attempt runs: take a token (with a limiter), open the stream with the factory,
    /// forward its items; on a retryable error, emit the retry event, sleep, start over.
    /// Dropping it at any point releases what it holds: the open stream, or the place in
    /// the limiter's queue.
    #[must_use = "streams do nothing unless polled"]
    pub struct ResilientStream<F, S> {
        factory: F,
        retry: Option<RetryConfig>,
        limiter: Option<RateLimiter>,
        operation_name: Arc<str>,
        operation_type: OperationType,
        step_id: Option<Arc<str>>,
        attempt: u32,
        delivered: u64,
        #[pin]
        state: State<S>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S> {
        // About to start attempt `attempt + 1`.
        Start,
        Acquiring { acquisition: Acquisition },
        Streaming { #[pin] stream: S },
        // Boxed so that the adapter is `Unpin` whenever the wrapped stream is.
        Backoff { sleep: Pin<Box<Sleep>> },
        Done,
    }
}

impl<F, S> ResilientStream<F, S> {
    pub(super) fn new(
        factory: F,
        retry: Option<RetryConfig>,
        limiter: Option<RateLimiter>,
        operation_name: Arc<str>,
        operation_type: OperationType,
    ) -> Self {
        ResilientStream {
            factory,
            retry,
            limiter,
            operation_name,
            operation_type,
            step_id: None,
            attempt: 0,
            delivered: 0,
            state: State::Start,
        }
    }

    /// Stamps `step_id` on every event this stream emits.
    pub fn with_step_id(mut self, step_id: impl Into<Arc<str>>) -> Self {
        self.step_id = Some(step_id.into());
        self
    }
}

impl<F, S, T, E> Stream for ResilientStream<F, S>
where
    F: FnMut() -> S,
    S: Stream<Item = Result<T, E>>,
    E: Error + Send + Sync + 'static,
{
    type Item = Result<Resilient<T>, ResilienceError<E>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let mut this = self.as_mut().project();
            match this.state.as_mut().project() {
                StateProj::Start => {
                    *this.attempt += 1;
                    *this.delivered = 0;
                    let next = match this.limiter {
                        Some(_) => State::Acquiring {
                            acquisition: Acquisition::new(1),
                        },
                        None => State::Streaming {
                            stream: (this.factory)(),
                        },
                    };
                    this.state.set(next);
                }
                StateProj::Acquiring { acquisition } => {
                    let limiter = this.limiter.as_ref().expect("acquiring needs a limiter");
                    match ready!(acquisition.poll(limiter, this.operation_name, cx)) {
                        Ok(acquired) => {
                            let event = rate_limit_event(&this, acquired);
                            let stream = (this.factory)();
                            this.state.set(State::Streaming { stream });
                            return Poll::Ready(Some(Ok(Resilient::RateLimit(event))));
                        }
                        Err(error) => {
                            this.state.set(State::Done);
                            return Poll::Ready(Some(Err(ResilienceError::RateLimit(error))));
                        }
                    }
                }
                StateProj::Streaming { stream } => match ready!(stream.poll_next(cx)) {
                    Some(Ok(item)) => {
                        *this.delivered += 1;
                        return Poll::Ready(Some(Ok(Resilient::Item(item))));
                    }
                    None => {
                        this.state.set(State::Done);
                        return Poll::Ready(None);
                    }
                    Some(Err(error)) => {
                        let retry = this.retry.as_ref().filter(|config| {
                            *this.attempt < config.max_attempts()
                                && config.retry_on().matches(&error)
                        });
                        let Some(config) = retry else {
                            this.state.set(State::Done);
                            return Poll::Ready(Some(Err(ResilienceError::Operation {
                                source: error,
                                attempts: *this.attempt,
                            })));
                        };
                        let delay = config.delay(*this.attempt);
                        let event = RetryEvent {
                            operation_type: this.operation_type.clone(),
                            operation_name: this.operation_name.clone(),
                            attempt: *this.attempt,
                            max_attempts: config.max_attempts(),
                            error: error.to_string(),
                            next_delay_seconds: delay.as_secs_f64(),
                            items_delivered: *this.delivered,
                            step_id: this.step_id.clone(),
                            timestamp: unix_now(),
                        };
                        #[cfg(feature = "tracing")]
                        tracing::warn!(
                            operation_name = &*event.operation_name,
                            operation_type = %event.operation_type,
                            attempt = event.attempt,
                            max_attempts = event.max_attempts,
                            next_delay_seconds = event.next_delay_seconds,
                            items_delivered = event.items_delivered,
                            error = %event.error,
                            "retrying"
                        );
                        // Replacing the state drops the failed stream before the wait.
                        if delay.is_zero() {
                            this.state.set(State::Start);
                        } else {
                            this.state.set(State::Backoff {
                                sleep: Box::pin(tokio::time::sleep(delay)),
                            });
                        }
                        return Poll::Ready(Some(Ok(Resilient::Retry(event))));
                    }
                },
                StateProj::Backoff { sleep } => {
                    ready!(sleep.as_mut().poll(cx));
                    this.state.set(State::Start);
                }
                StateProj::Done => return Poll::Ready(None),
            }
        }
    }
}

fn rate_limit_event<F, S>(this: &Projection<'_, F, S>, acquired: Acquired) -> RateLimitEvent {
    let now = unix_now();
    let event = RateLimitEvent {
        operation_name: this.operation_name.clone(),
        acquired_at: now,
        tokens_remaining: acquired.tokens_remaining,
        waited: acquired.waited,
        fallback: acquired.fallback,
        step_id: this.step_id.clone(),
        timestamp: now,
    };
    #[cfg(feature = "tracing")]
    tracing::debug!(
        operation_name = &*event.operation_name,
        tokens_remaining = event.tokens_remaining,
        waited_ms = event.waited.as_secs_f64() * 1e3,
        "rate limit: acquired"
    );
    event
}

impl<F, S, T, E> FusedStream for ResilientStream<F, S>
where
    F: FnMut() -> S,
    S: Stream<Item = Result<T, E>>,
    E: Error + Send + Sync + 'static,
{
    fn is_terminated(&self) -> bool {
        matches!(self.state, State::Done)
    }
}
