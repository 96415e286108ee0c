//! What follows an attempt's end: the breaker's verdict, then the end of the stream, a
//! retry after a back-off (its length, the server's say, the deadline and the budget), or
//! the error the caller gets.

use std::error::Error;
use std::time::Duration;

use futures_core::Stream;
use tokio::time::Instant;

use super::{Drain, End, Output, Projection, State};
use crate::report::DisplayChain;
use crate::resilience::stream::failure::{AttemptError, StreamTimeout, TimeoutKind};
use crate::resilience::stream::labels::Retry;
use crate::resilience::stream::open::Opener;
use crate::resilience::stream::Resilient;
use crate::resilience::{MidStream, RateLimitError, ResilienceError, RetryDecision};

/// Reports the attempt to the breaker; a state change goes out first, the rest after.
pub(super) fn end_attempt<O, S, T, E>(
    this: &mut Projection<'_, O, S>,
    end: End<S::Item>,
) -> Output<T, E>
where
    O: Opener<T, Stream = S>,
    S: Stream<Item = Result<T, E>>,
    E: Error + Send + Sync + 'static,
{
    let transition = this.run.call.take().and_then(|call| match end {
        End::Finished => call.success(),
        End::Item(_) | End::TimedOut(_) => call.failure(),
    });
    match transition {
        Some(transition) => {
            this.state.set(State::Settling { end });
            Some(Ok(Resilient::Circuit(this.run.labels.circuit(transition))))
        }
        None => settle::<O, S, T, E>(this, end),
    }
}

/// Decides what follows an attempt's end: the end of the stream, a retry, or the error.
pub(super) fn settle<O, S, T, E>(this: &mut Projection<'_, O, S>, end: End<S::Item>) -> Output<T, E>
where
    O: Opener<T, Stream = S>,
    S: Stream<Item = Result<T, E>>,
    E: Error + Send + Sync + 'static,
{
    let output = decide::<O, S, T, E>(this, end);
    #[cfg(feature = "metrics")]
    record_attempt(this, &output);
    match output {
        Some(Ok(_)) => this.run.spans.attempt_ended(),
        None | Some(Err(_)) => this.run.spans.close(),
    }
    output
}

/// Counts the attempt by how it ended, as `settle` decided.
#[cfg(feature = "metrics")]
fn record_attempt<O, S: Stream, T, E: Error + 'static>(
    this: &Projection<'_, O, S>,
    output: &Output<T, E>,
) {
    let (outcome, timeout) = match output {
        None => ("success", None),
        Some(Ok(Resilient::Retry(event))) => ("retried", event.timeout.map(TimeoutKind::label)),
        Some(Ok(_)) => return,
        Some(Err(error)) => error.outcome(),
    };
    crate::observe::metrics::attempt(this.run.labels.metrics(), outcome, timeout);
}

fn decide<O, S, T, E>(this: &mut Projection<'_, O, S>, end: End<S::Item>) -> Output<T, E>
where
    O: Opener<T, Stream = S>,
    S: Stream<Item = Result<T, E>>,
    E: Error + Send + Sync + 'static,
{
    let failure = match end {
        End::Finished => return None,
        End::Item(Ok(_)) => unreachable!("attempts end on errors, not items"),
        End::Item(Err(error)) => AttemptError::Operation(error),
        End::TimedOut(timeout) => AttemptError::Timeout(timeout),
    };
    let Some(config) = this.run.retry.as_ref() else {
        return Some(Err(give_up(failure, this.run.attempt)));
    };
    let resumes = Opener::<T>::resumes(&this.run.opener);
    if resumes && this.run.delivered > 0 && config.reset_on_progress() {
        this.run.attempt = 1;
        this.run.previous_delay = None;
    }
    let attempts = this.run.attempt;
    if let AttemptError::Timeout(StreamTimeout {
        kind: TimeoutKind::Deadline,
        ..
    }) = failure
    {
        return Some(Err(past_deadline(this, failure, attempts)));
    }
    let committed = this.run.delivered > 0 && !resumes && config.mid_stream() == MidStream::Fail;
    let decision = match &failure {
        AttemptError::Operation(error) => config.retry_on().decide(error),
        AttemptError::Timeout(timeout) => config.retry_on().decide(timeout),
        AttemptError::RateLimit(error) => config.retry_on().decide(error),
    };
    if committed || decision == RetryDecision::DoNotRetry || attempts >= config.max_attempts() {
        return Some(Err(give_up(failure, attempts)));
    }
    let mut delay = config.delay_after(attempts, this.run.previous_delay);
    let mut server_directed = false;
    let mut drain = None;
    if let RetryDecision::RetryAfter(asked) = decision {
        // The upstream is shedding load: everyone sharing the limiter should hold off,
        // not just this stream.
        if let Some(limiter) = this.run.limiter.clone() {
            drain = Some(Box::pin(async move {
                // A failed drain (Redis down) only loses the courtesy; the retry still waits.
                let _ = limiter.drain().await;
            }) as Drain);
        }
        if asked > config.max_server_delay() {
            return Some(Err(match failure {
                AttemptError::Operation(source) => ResilienceError::ServerDelayTooLong {
                    source,
                    delay: asked,
                    max: config.max_server_delay(),
                },
                AttemptError::Timeout(_) | AttemptError::RateLimit(_) => give_up(failure, attempts),
            }));
        }
        if asked >= delay {
            delay = config.server_delay(asked);
            server_directed = true;
        }
    }
    if let Some(end) = this.run.operation_end() {
        // A delay beyond what the clock can represent ends past any deadline.
        if Instant::now().checked_add(delay).is_none_or(|at| at >= end) {
            return Some(Err(past_deadline(this, failure, attempts)));
        }
    }
    // A breaker that stays open past the delay would refuse the retry: announce none.
    if let Some(open) = this.run.breaker.as_ref().and_then(|b| b.open_past(delay)) {
        return Some(Err(ResilienceError::CircuitOpen(open)));
    }
    let mut budget_fallback = None;
    if let Some(budget) = config.budget() {
        let (taken, fallback) = budget.withdraw();
        if !taken {
            return Some(Err(ResilienceError::RetryBudgetExhausted {
                source: failure,
                attempts,
                fallback,
            }));
        }
        budget_fallback = fallback;
    }
    this.run.previous_delay = Some(delay);
    // The event is shown to people: the whole chain, not just the outer message.
    let (error, timeout) = match &failure {
        AttemptError::Operation(error) => (DisplayChain(error).to_string(), None),
        AttemptError::Timeout(timeout) => (timeout.to_string(), Some(timeout.kind)),
        AttemptError::RateLimit(error) => (error.to_string(), None),
    };
    let event = this.run.labels.retry(Retry {
        attempt: attempts,
        max_attempts: config.max_attempts(),
        error,
        delay,
        items_delivered: this.run.delivered,
        timeout,
        server_directed,
        budget_fallback,
    });
    if delay.is_zero() && drain.is_none() {
        this.state.set(State::Start);
    } else {
        this.state.set(State::Backoff {
            sleep: Box::pin(tokio::time::sleep(delay)),
            drain,
        });
    }
    Some(Ok(Resilient::Retry(event)))
}

/// The error for a limiter's refusal before an attempt: a wait past the deadline ends the
/// operation on its deadline; any other refusal is the limiter's.
pub(super) fn refused<O, S: Stream, E: Error + 'static>(
    this: &mut Projection<'_, O, S>,
    error: RateLimitError,
) -> ResilienceError<E> {
    let error = refused_as(this, error);
    this.run.spans.close();
    #[cfg(feature = "metrics")]
    {
        let (outcome, timeout) = error.outcome();
        crate::observe::metrics::attempt(this.run.labels.metrics(), outcome, timeout);
    }
    error
}

fn refused_as<O, S: Stream, E: Error + 'static>(
    this: &Projection<'_, O, S>,
    error: RateLimitError,
) -> ResilienceError<E> {
    match error {
        RateLimitError::PastDeadline { .. } => {
            // The attempt waiting for its tokens never ran.
            let attempts = this.run.attempt - 1;
            past_deadline(this, AttemptError::RateLimit(error), attempts)
        }
        error => ResilienceError::RateLimit(error),
    }
}

fn give_up<E: Error + 'static>(failure: AttemptError<E>, attempts: u32) -> ResilienceError<E> {
    match failure {
        AttemptError::Operation(source) => ResilienceError::Operation { source, attempts },
        AttemptError::Timeout(source) => ResilienceError::Timeout { source, attempts },
        AttemptError::RateLimit(source) => ResilienceError::RateLimit(source),
    }
}

fn past_deadline<O, S: Stream, E: Error + 'static>(
    this: &Projection<'_, O, S>,
    failure: AttemptError<E>,
    attempts: u32,
) -> ResilienceError<E> {
    ResilienceError::DeadlineExceeded {
        source: failure,
        attempts,
        elapsed: this
            .run
            .started
            .map_or(Duration::ZERO, |started| started.elapsed()),
    }
}
