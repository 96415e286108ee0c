//! The future returned by [`RateLimiter::try_acquire`].
//!
//! Written by hand rather than as an `async fn`: the in-process answer is a dozen
//! nanoseconds of work, and an `async fn`'s state machine is compiled in this crate, out of
//! the caller's reach, so every try paid a call and the machine's resume checks on top. This
//! poll is inlined into the caller's; only a Redis call is boxed.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::RateLimiter;
use crate::resilience::RateLimitError;

/// Takes tokens if they are there; see [`RateLimiter::try_acquire`]. Like any future it
/// does nothing until polled: dropped unpolled, it takes nothing.
#[must_use = "futures do nothing unless awaited"]
pub struct TryAcquire<'a> {
    limiter: &'a RateLimiter,
    tokens: u32,
    /// Set by the first poll: polling a completed try must not take tokens a second time.
    started: bool,
    /// The call to the Redis backend while it runs.
    #[cfg(feature = "redis")]
    remote: Option<RemoteCall<'a>>,
}

#[cfg(feature = "redis")]
type RemoteCall<'a> = Pin<Box<dyn Future<Output = Result<bool, RateLimitError>> + Send + 'a>>;

impl<'a> TryAcquire<'a> {
    #[inline]
    pub(super) fn new(limiter: &'a RateLimiter, tokens: u32) -> Self {
        TryAcquire {
            limiter,
            tokens,
            started: false,
            #[cfg(feature = "redis")]
            remote: None,
        }
    }
}

impl Future for TryAcquire<'_> {
    type Output = Result<bool, RateLimitError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        #[cfg(feature = "redis")]
        if this.limiter.is_redis() {
            return this.poll_remote(cx);
        }
        #[cfg(not(feature = "redis"))]
        let _ = cx;
        if std::mem::replace(&mut this.started, true) {
            // Polled again after completing.
            return Poll::Pending;
        }
        if let Err(error) = this.limiter.check(this.tokens) {
            return Poll::Ready(Err(this.limiter.refused(error)));
        }
        Poll::Ready(Ok(this.limiter.try_take_now(this.tokens)))
    }
}

#[cfg(feature = "redis")]
impl TryAcquire<'_> {
    #[inline(never)]
    fn poll_remote(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, RateLimitError>> {
        if !std::mem::replace(&mut self.started, true) {
            if let Err(error) = self.limiter.check(self.tokens) {
                return Poll::Ready(Err(self.limiter.refused(error)));
            }
            self.remote = Some(Box::pin(self.limiter.try_acquire_remote(self.tokens)));
        }
        let Some(call) = &mut self.remote else {
            // Polled again after completing.
            return Poll::Pending;
        };
        let admitted = std::task::ready!(call.as_mut().poll(cx));
        self.remote = None;
        Poll::Ready(admitted.map_err(|error| self.limiter.refused(error)))
    }
}

impl std::fmt::Debug for TryAcquire<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TryAcquire")
            .field("tokens", &self.tokens)
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}
