//! The future returned by [`RateLimiter::acquire`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::adjust::BookedUntil;
use super::{Booked, RateLimiter};
use crate::resilience::RateLimitError;

/// Tokens granted by a rate limiter.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Acquired {
    /// Tokens taken.
    pub tokens: u32,
    /// Tokens left in the bucket right after the grant.
    pub tokens_remaining: f64,
    /// How long the request waited; zero when the tokens were there.
    pub waited: Duration,
    /// Set when a shared (Redis) bucket could not decide and the failure policy admitted
    /// the request instead.
    pub fallback: Option<Fallback>,
    /// Where the time the grant booked in the bucket ends, which bounds a refund.
    pub(crate) booked_until: BookedUntil,
}

/// Who decided in place of shared (Redis) state that could not be reached: a grant of a
/// rate limiter, a retry of a retry budget, a breaker's decision or transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Fallback {
    /// Allowed unchecked, as the fail-open policy says.
    FailOpen,
    /// Decided by the in-process stand-in (bucket, budget or breaker), as the local
    /// policy says.
    Local,
}

impl Fallback {
    /// The policy as a metrics label.
    #[cfg(feature = "metrics")]
    pub(crate) fn label(self) -> &'static str {
        match self {
            Fallback::FailOpen => "fail_open",
            Fallback::Local => "local",
        }
    }
}

/// Waits for tokens; see [`RateLimiter::acquire`]. Dropping it gives its place in the
/// in-process queue back (a slot booked in Redis stays spent).
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Acquire<'a> {
    limiter: &'a RateLimiter,
    operation_name: &'a str,
    acquisition: Acquisition,
}

impl<'a> Acquire<'a> {
    #[inline]
    pub(super) fn new(limiter: &'a RateLimiter, tokens: u32, operation_name: &'a str) -> Self {
        Acquire {
            limiter,
            operation_name,
            acquisition: Acquisition::new(tokens),
        }
    }
}

impl Future for Acquire<'_> {
    type Output = Result<Acquired, RateLimitError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.acquisition
            .poll(this.limiter, this.operation_name, None, cx)
    }
}

/// The state of one acquisition, apart from the limiter it runs against, so that both the
/// borrowing [`Acquire`] future and stream adapters that own their limiter can drive it.
#[derive(Debug)]
pub(crate) struct Acquisition {
    tokens: u32,
    state: State,
}

enum State {
    Start,
    /// Boxed: most acquisitions never wait, and every future and stream that holds one is
    /// moved around at its full size.
    Waiting(Pin<Box<Wait>>),
    /// A call to the Redis backend, which owns its handle.
    #[cfg(feature = "redis")]
    Remote(Pin<Box<dyn Future<Output = Result<Acquired, RateLimitError>> + Send>>),
    /// Polling a completed acquisition must not take tokens a second time.
    Done,
}

pin_project! {
    /// A booked place in the queue and the timer for it. Dropping it before the grant hands
    /// the place back.
    #[derive(Debug)]
    struct Wait {
        // `Some` while the place is held.
        id: Option<u64>,
        limiter: RateLimiter,
        booked_at: u64,
        deadline: u64,
        #[pin]
        sleep: Sleep,
    }

    impl PinnedDrop for Wait {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(id) = *this.id {
                this.limiter.cancel(id);
            }
        }
    }
}

impl Acquisition {
    #[inline]
    pub(crate) fn new(tokens: u32) -> Self {
        Acquisition {
            tokens,
            state: State::Start,
        }
    }

    /// Acquires from the limiter's backend: Redis when it has one, else the in-process
    /// bucket. A request whose tokens would come only at or after `deadline` fails at once
    /// with [`RateLimitError::PastDeadline`] and takes nothing; `deadline` is read on the
    /// first poll only.
    #[inline]
    pub(crate) fn poll(
        &mut self,
        limiter: &RateLimiter,
        operation_name: &str,
        deadline: Option<Instant>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Acquired, RateLimitError>> {
        #[cfg(feature = "redis")]
        if limiter.is_redis() {
            let polled = self.poll_remote(limiter, deadline, cx);
            #[cfg(feature = "metrics")]
            limiter.observe(&polled);
            return polled;
        }
        let polled = self.poll_local(limiter, operation_name, deadline, cx);
        #[cfg(feature = "metrics")]
        limiter.observe(&polled);
        polled
    }

    #[cfg(feature = "redis")]
    #[inline(never)]
    fn poll_remote(
        &mut self,
        limiter: &RateLimiter,
        deadline: Option<Instant>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Acquired, RateLimitError>> {
        if let State::Start = self.state {
            self.state = State::Done;
            limiter.check(self.tokens)?;
            let (limiter, tokens) = (limiter.clone(), self.tokens);
            self.state = State::Remote(Box::pin(async move {
                limiter.acquire_remote(tokens, deadline).await
            }));
        }
        let State::Remote(call) = &mut self.state else {
            // Done: polled again after completing.
            return Poll::Pending;
        };
        let acquired = std::task::ready!(call.as_mut().poll(cx));
        self.state = State::Done;
        Poll::Ready(acquired)
    }

    /// Grants at once when the tokens are there and nobody waits; otherwise queues and
    /// waits. The immediate grant is kept small enough to inline into the caller's poll:
    /// it is most calls, and a call into the queueing code would cost as much as the grant.
    /// Used for the in-process bucket whatever the backend (Redis's local fallback too).
    #[inline]
    pub(crate) fn poll_local(
        &mut self,
        limiter: &RateLimiter,
        operation_name: &str,
        deadline: Option<Instant>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Acquired, RateLimitError>> {
        let State::Start = self.state else {
            return self.poll_waiting(limiter, cx);
        };
        // Whatever happens next, this acquisition never takes tokens a second time.
        self.state = State::Done;
        let tokens = self.tokens;
        limiter.check(tokens)?;
        let now = limiter.now();
        match limiter.try_take(tokens, now) {
            Some(tat) => Poll::Ready(Ok(granted_now(limiter, tokens, tat, now))),
            None => self.queue(limiter, operation_name, now, deadline, cx),
        }
    }

    /// Books a place for a request that found the bucket short at `now`.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    #[inline(never)]
    fn queue(
        &mut self,
        limiter: &RateLimiter,
        operation_name: &str,
        now: u64,
        deadline: Option<Instant>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Acquired, RateLimitError>> {
        let tokens = self.tokens;
        if tokio::runtime::Handle::try_current().is_err() {
            return Poll::Ready(Err(RateLimitError::NoRuntime));
        }
        let latest = limiter.latest(deadline, now);
        let (id, admit_at) = match limiter.book(tokens, now, latest, cx.waker()) {
            Booked::Now { tat } => {
                return Poll::Ready(Ok(granted_now(limiter, tokens, tat, now)));
            }
            Booked::Later { id, admit_at } => (id, admit_at),
            Booked::TooLate { admit_at } => {
                return Poll::Ready(Err(RateLimitError::PastDeadline {
                    wait: Duration::from_nanos(admit_at - now),
                    remaining: Duration::from_nanos(latest.saturating_sub(now)),
                }));
            }
        };
        #[cfg(feature = "tracing")]
        tracing::debug!(
            operation_name,
            tokens,
            wait_ms = (admit_at - now) as f64 / 1e6,
            "rate limit: queued"
        );
        self.state = State::Waiting(Box::pin(Wait {
            id: Some(id),
            limiter: limiter.clone(),
            booked_at: now,
            deadline: admit_at,
            sleep: tokio::time::sleep_until(limiter.deadline(admit_at)),
        }));
        self.poll_waiting(limiter, cx)
    }

    /// Sleeps until the booked instant, following the queue if it moves up.
    #[inline(never)]
    fn poll_waiting(
        &mut self,
        limiter: &RateLimiter,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Acquired, RateLimitError>> {
        let State::Waiting(wait) = &mut self.state else {
            // Done: polled again after completing.
            return Poll::Pending;
        };
        let mut wait = wait.as_mut().project();
        let id = wait.id.expect("a waiting acquisition holds its place");
        let now = loop {
            if wait.sleep.as_mut().poll(cx).is_ready() {
                // The timer keeps tokio's time and the bucket its own clock's (see
                // `clock.rs`): the grant waits until the bucket's clock agrees.
                let now = limiter.now();
                if now >= *wait.deadline {
                    break now;
                }
                wait.sleep.as_mut().reset(limiter.deadline(*wait.deadline));
                continue;
            }
            // Woken before the timer: spurious, or a waiter ahead gave up and moved us up.
            let Some(admit_at) = limiter.admit_at(id, cx.waker()) else {
                return Poll::Pending;
            };
            let now = limiter.now();
            if admit_at <= now {
                break now;
            }
            if admit_at >= *wait.deadline {
                return Poll::Pending;
            }
            *wait.deadline = admit_at;
            wait.sleep.as_mut().reset(limiter.deadline(admit_at));
        };
        *wait.id = None;
        let (tokens_remaining, booked_until) = limiter.finish(id, now);
        let acquired = Acquired {
            tokens: self.tokens,
            tokens_remaining,
            waited: Duration::from_nanos(now.saturating_sub(*wait.booked_at)),
            fallback: None,
            booked_until: BookedUntil::Local(booked_until),
        };
        self.state = State::Done;
        Poll::Ready(Ok(acquired))
    }
}

#[inline]
fn granted_now(limiter: &RateLimiter, tokens: u32, tat: u64, now: u64) -> Acquired {
    Acquired {
        tokens,
        tokens_remaining: limiter.remaining(tat, now),
        waited: Duration::ZERO,
        fallback: None,
        booked_until: BookedUntil::Local(tat),
    }
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            State::Start => f.write_str("Start"),
            State::Waiting(wait) => f.debug_tuple("Waiting").field(wait).finish(),
            #[cfg(feature = "redis")]
            State::Remote(_) => f.write_str("Remote"),
            State::Done => f.write_str("Done"),
        }
    }
}
