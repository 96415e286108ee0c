//! The future returned by [`RateLimiter::acquire`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Sleep;

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
}

/// How a request was admitted when the shared (Redis) bucket could not decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Fallback {
    /// Admitted unchecked, as the fail-open policy says.
    FailOpen,
    /// Admitted by the in-process bucket, as the local policy says.
    Local,
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

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.acquisition.poll(this.limiter, this.operation_name, cx)
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
    Waiting(Wait),
    /// A call to the Redis backend, which owns its handle.
    #[cfg(feature = "redis")]
    Remote(Pin<Box<dyn Future<Output = Result<Acquired, RateLimitError>> + Send>>),
    /// Polling a completed acquisition must not take tokens a second time.
    Done,
}

/// A booked place in the queue. Dropping it before the grant hands the place back.
#[derive(Debug)]
struct Wait {
    /// `Some` while the place is held.
    id: Option<u64>,
    limiter: RateLimiter,
    booked_at: u64,
    deadline: u64,
    sleep: Pin<Box<Sleep>>,
}

impl Acquisition {
    pub(crate) fn new(tokens: u32) -> Self {
        Acquisition {
            tokens,
            state: State::Start,
        }
    }

    pub(crate) fn poll(
        &mut self,
        limiter: &RateLimiter,
        operation_name: &str,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Acquired, RateLimitError>> {
        #[cfg(feature = "redis")]
        if matches!(self.state, State::Start) && limiter.is_redis() {
            limiter.check(self.tokens)?;
            let (limiter, tokens) = (limiter.clone(), self.tokens);
            self.state = State::Remote(Box::pin(
                async move { limiter.acquire_remote(tokens).await },
            ));
        }
        #[cfg(feature = "redis")]
        if let State::Remote(call) = &mut self.state {
            let acquired = std::task::ready!(call.as_mut().poll(cx));
            self.state = State::Done;
            return Poll::Ready(acquired);
        }
        self.poll_local(limiter, operation_name, cx)
    }

    /// Acquires from the in-process bucket, whatever the limiter's backend.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(crate) fn poll_local(
        &mut self,
        limiter: &RateLimiter,
        operation_name: &str,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Acquired, RateLimitError>> {
        let tokens = self.tokens;
        let wait = match &mut self.state {
            State::Done => return Poll::Pending,
            #[cfg(feature = "redis")]
            State::Remote(_) => unreachable!("remote acquisitions are polled by `poll`"),
            State::Waiting(wait) => wait,
            State::Start => {
                self.state = State::Done;
                limiter.check(tokens)?;
                let now = limiter.now();
                if let Some(tat) = limiter.try_take(tokens, now) {
                    return Poll::Ready(Ok(granted_now(limiter, tokens, tat, now)));
                }
                if tokio::runtime::Handle::try_current().is_err() {
                    return Poll::Ready(Err(RateLimitError::NoRuntime));
                }
                let (id, admit_at) = match limiter.book(tokens, now, cx.waker()) {
                    Booked::Now { tat } => {
                        return Poll::Ready(Ok(granted_now(limiter, tokens, tat, now)));
                    }
                    Booked::Later { id, admit_at } => (id, admit_at),
                };
                #[cfg(feature = "tracing")]
                tracing::debug!(
                    operation_name,
                    tokens,
                    wait_ms = (admit_at - now) as f64 / 1e6,
                    "rate limit: queued"
                );
                self.state = State::Waiting(Wait {
                    id: Some(id),
                    limiter: limiter.clone(),
                    booked_at: now,
                    deadline: admit_at,
                    sleep: Box::pin(tokio::time::sleep_until(limiter.instant(admit_at))),
                });
                let State::Waiting(wait) = &mut self.state else {
                    unreachable!("just set")
                };
                wait
            }
        };
        let id = wait.id.expect("a waiting acquisition holds its place");
        while wait.sleep.as_mut().poll(cx).is_pending() {
            // Woken before the timer: spurious, or a waiter ahead gave up and moved us up.
            match limiter.admit_at(id, cx.waker()) {
                Some(admit_at) if admit_at <= limiter.now() => break,
                Some(admit_at) if admit_at < wait.deadline => {
                    wait.deadline = admit_at;
                    wait.sleep.as_mut().reset(limiter.instant(admit_at));
                }
                _ => return Poll::Pending,
            }
        }
        let now = limiter.now();
        wait.id = None;
        let acquired = Acquired {
            tokens,
            tokens_remaining: limiter.finish(id, now),
            waited: Duration::from_nanos(now.saturating_sub(wait.booked_at)),
            fallback: None,
        };
        self.state = State::Done;
        Poll::Ready(Ok(acquired))
    }
}

fn granted_now(limiter: &RateLimiter, tokens: u32, tat: u64, now: u64) -> Acquired {
    Acquired {
        tokens,
        tokens_remaining: limiter.remaining(tat, now),
        waited: Duration::ZERO,
        fallback: None,
    }
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Start => f.write_str("Start"),
            State::Waiting(wait) => f.debug_tuple("Waiting").field(wait).finish(),
            #[cfg(feature = "redis")]
            State::Remote(_) => f.write_str("Remote"),
            State::Done => f.write_str("Done"),
        }
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.limiter.cancel(id);
        }
    }
}
