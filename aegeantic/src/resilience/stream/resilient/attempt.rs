//! An attempt's life: the breaker and a token before it, its stream opened under its time
//! limits, its items passed on, and what is seen when it stops.

use std::error::Error;
use std::future::Future;
use std::task::{ready, Context, Poll};

use futures_core::Stream;
use tokio::time::Instant;

use super::settle::end_attempt;
use super::{End, Output, Projection, Run, State, Timer};
use crate::resilience::limiter::Acquisition;
use crate::resilience::stream::failure::Limits;
use crate::resilience::stream::open::Opener;
use crate::resilience::stream::Resilient;
use crate::resilience::{ResilienceError, RetryConfig};

/// What the open stream's poll means for the consumer: an item passes on; anything else
/// goes out of line.
#[inline]
pub(super) fn streamed<O, S, T, E>(
    this: &mut Projection<'_, O, S>,
    polled: Poll<Option<Result<T, E>>>,
    cx: &mut Context<'_>,
) -> Poll<Output<T, E>>
where
    O: Opener<T, Stream = S>,
    S: Stream<Item = Result<T, E>>,
    E: Error + Send + Sync + 'static,
{
    match polled {
        Poll::Ready(Some(Ok(item))) => {
            this.run.delivered += 1;
            this.run.opener.delivered(&item);
            rearm_timer(this);
            Poll::Ready(Some(Ok(Resilient::Item(item))))
        }
        Poll::Pending if this.run.timer.is_none() => Poll::Pending,
        other => stopped::<O, S, T, E>(this, other, cx),
    }
}

/// The open stream ended, failed, or is pending under a time limit.
#[inline(never)]
pub(super) fn stopped<O, S, T, E>(
    this: &mut Projection<'_, O, S>,
    polled: Poll<Option<Result<T, E>>>,
    cx: &mut Context<'_>,
) -> Poll<Output<T, E>>
where
    O: Opener<T, Stream = S>,
    S: Stream<Item = Result<T, E>>,
    E: Error + Send + Sync + 'static,
{
    let end = match polled {
        Poll::Ready(Some(Ok(_))) => unreachable!("items are passed on before"),
        Poll::Ready(Some(Err(error))) => End::Item(Err(error)),
        Poll::Ready(None) if this.run.call.is_none() => {
            // The common end, with no breaker to tell: nothing to decide.
            this.state.set(State::Done);
            this.run.timer = None;
            this.run.spans.close();
            #[cfg(feature = "metrics")]
            crate::observe::metrics::attempt(this.run.labels.metrics(), "success", None);
            return Poll::Ready(None);
        }
        Poll::Ready(None) => End::Finished,
        Poll::Pending => {
            let Some(timer) = this.run.timer.as_mut() else {
                return Poll::Pending;
            };
            let timer = timer.as_mut().project();
            let Some(timeout) = *timer.armed else {
                return Poll::Pending;
            };
            ready!(timer.sleep.poll(cx));
            End::TimedOut(timeout)
        }
    };
    // Replacing the state drops the finished stream before anything waits.
    this.state.set(State::Done);
    this.run.timer = None;
    Poll::Ready(end_attempt::<O, S, T, E>(this, end))
}

/// Starts the next attempt: the breaker, then a token or the stream itself. Returns an
/// item to emit first, if any.
pub(super) fn start_attempt<O, S, T, E>(this: &mut Projection<'_, O, S>) -> Output<T, E>
where
    O: Opener<T, Stream = S>,
    S: Stream<Item = Result<T, E>>,
    E: Error + Send + Sync + 'static,
{
    this.run.attempt += 1;
    this.run.delivered = 0;
    let labels = &this.run.labels;
    this.run.spans.attempt(
        labels.operation_name.as_str(),
        labels.operation_type.as_str(),
        this.run.attempt,
    );
    if this.run.attempt == 1 {
        // Read only for the operation's deadline: a clock read costs as much as the rest of
        // an attempt that succeeds at once.
        if this
            .run
            .retry
            .as_ref()
            .is_some_and(|retry| retry.max_elapsed().is_some())
        {
            this.run.started = Some(Instant::now());
        }
        if let Some(budget) = this.run.retry.as_ref().and_then(RetryConfig::budget) {
            budget.deposit();
        }
    }
    let mut event = None;
    if let Some(breaker) = this.run.breaker.as_ref() {
        match breaker.try_call() {
            Ok((call, transition)) => {
                this.run.call = Some(call);
                event = transition.map(|t| Ok(Resilient::Circuit(this.run.labels.circuit(t))));
            }
            Err(open) => {
                this.state.set(State::Done);
                this.run.spans.close();
                #[cfg(feature = "metrics")]
                crate::observe::metrics::attempt(this.run.labels.metrics(), "circuit_open", None);
                return Some(Err(ResilienceError::CircuitOpen(open)));
            }
        }
    }
    if this.run.limiter.is_some() {
        this.run.spans.wait(1);
        this.state.set(State::Acquiring {
            acquisition: Acquisition::new(1),
        });
    } else {
        open::<O, S, T>(this);
    }
    event
}

/// Opens the attempt's stream and arms its time limits. Inlined: a stream that succeeds at
/// once spends a fair share of its time on the call.
#[inline(always)]
pub(super) fn open<O, S, T>(this: &mut Projection<'_, O, S>)
where
    O: Opener<T, Stream = S>,
    S: Stream,
{
    if let Some(call) = this.run.call.as_mut() {
        // Time spent waiting for a token is not the upstream's slowness.
        call.restart_clock();
    }
    // The user's code opening the attempt runs inside the attempt's span.
    let entered = this.run.spans.enter();
    let stream = Opener::<T>::open(&mut this.run.opener);
    drop(entered);
    this.state.set(State::Streaming { stream });
    let end = this.run.operation_end();
    this.run.timer = match this.run.retry.as_ref().map(RetryConfig::timeouts) {
        Some(timeouts) if timeouts.any() || end.is_some() => {
            let now = Instant::now();
            let limits = Limits::new(timeouts, end, now);
            let nearest = limits.nearest(None);
            Some(Box::pin(Timer {
                limits,
                armed: nearest.map(|(_, timeout)| timeout),
                // Polled only while armed; until then its instant does not matter.
                sleep: tokio::time::sleep_until(nearest.map_or(now, |(at, _)| at)),
            }))
        }
        _ => None,
    };
}

/// Points the timer at the nearest limit after an item. Inlined: it runs after every item
/// and for most streams is a test that there are no limits.
#[inline]
pub(super) fn rearm_timer<O, S: Stream>(this: &mut Projection<'_, O, S>) {
    let Some(timer) = this.run.timer.as_mut() else {
        return;
    };
    let timer = timer.as_mut().project();
    *timer.armed = match timer.limits.nearest(Some(Instant::now())) {
        Some((at, timeout)) => {
            timer.sleep.reset(at);
            Some(timeout)
        }
        None => None,
    };
}

impl<O> Run<O> {
    /// When the operation must end, if `max_elapsed` is set. A deadline past what the clock
    /// can represent is none: the operation may run for ever.
    pub(super) fn operation_end(&self) -> Option<Instant> {
        let max = self.retry.as_ref()?.max_elapsed()?;
        self.started?.checked_add(max)
    }
}
