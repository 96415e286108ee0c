//! Changing a bucket after the fact: reservations settled against what was really used, and
//! corrections from an upstream that knows its own quota better.
//!
//! A token-per-minute limit cannot know a request's cost up front: the answer's length is
//! known only at its end. So the caller reserves a bound, then settles: tokens not used go
//! back, tokens used beyond the reservation are charged on top, into debt if need be.
//!
//! In GCRA terms (see `gcra.rs`), with `T` nanoseconds per token:
//! * a grant of `n` books `n·T` of the bucket's time, ending where it left `tat`. A refund
//!   of `n` gives back at most the part of that booked time still ahead of `now`, and moves
//!   `tat` back by it. Once the booked time has elapsed, the bucket has refilled past it:
//!   either it was full again at some instant (and refill beyond full is lost whoever held
//!   the tokens) or later grants were booked after it, and moving them all earlier would
//!   hand out the same refill twice. While the booked time is ahead, everything booked
//!   after it is contiguous, so moving `tat` and the queued waiters back by the unelapsed
//!   part leaves the bucket exactly as if the tokens had never been taken.
//!
//!   A refund moves everything booked after its grant, other reservations included, so
//!   the end a reservation noted at its grant goes stale. The bucket keeps the total time
//!   refunds have moved back; a reservation notes it before it asks and subtracts what
//!   was added since from its end. Refunds of grants booked after it are subtracted too,
//!   though they did not move it: that errs on the side of giving back less.
//! * a charge of `n` moves `tat` to `max(tat, now) + n·T` whatever that does to the bucket:
//!   the tokens were spent upstream already. Queued requests keep their instants.
//! * a cap of `n` moves `tat` forward to at least `now + τ - n·T`, so that at most `n`
//!   tokens are left; a cap of zero is [`drain`](RateLimiter::drain).
//!
//! So refunds keep the bound `burst + rate·D` on the tokens kept (granted minus refunded)
//! over any span `D`.

use tokio::time::Instant;

use super::sync::Ordering;
use super::{Acquired, Acquisition, RateLimiter};
use crate::resilience::RateLimitError;

/// Where the time a grant booked ends: what bounds its refund.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BookedUntil {
    /// Admitted unchecked (Redis's fail-open): nothing was booked, nothing goes back.
    #[cfg(feature = "redis")]
    Nothing,
    /// In the in-process bucket, in nanoseconds of its clock.
    Local(u64),
    /// In the Redis bucket, per window, in microseconds of the script's epoch, with each
    /// window's refund total at the grant.
    #[cfg(feature = "redis")]
    Remote {
        ends: super::redis::WindowTimes,
        refunded: super::redis::WindowTimes,
    },
}

/// Tokens taken by [`RateLimiter::reserve`], to be settled against what was used.
///
/// Dropping it unsettled keeps every reserved token spent: a request that failed may still
/// have been counted upstream.
#[derive(Debug)]
#[must_use = "a reservation that is not settled keeps all its tokens spent"]
pub struct Reservation {
    limiter: RateLimiter,
    acquired: Acquired,
    /// The in-process bucket's refund total before the grant.
    refunded_before: u64,
}

impl Reservation {
    /// The grant: tokens reserved, how long it waited, what was left.
    pub fn acquired(&self) -> &Acquired {
        &self.acquired
    }

    /// Tokens reserved.
    pub fn tokens(&self) -> u32 {
        self.acquired.tokens
    }

    /// Settles at `used` tokens: refunds the part of the reservation not used, or charges
    /// what was used beyond it (without waiting; later requests wait instead).
    ///
    /// # Errors
    /// With Redis, [`RateLimitError::Backend`] when Redis cannot be reached; the tokens
    /// then stay as reserved.
    pub async fn settle(self, used: u64) -> Result<(), RateLimitError> {
        let reserved = u64::from(self.acquired.tokens);
        if used < reserved {
            self.limiter
                .refund(
                    reserved - used,
                    self.acquired.booked_until,
                    self.refunded_before,
                )
                .await
        } else {
            self.limiter.charge(used - reserved).await
        }
    }
}

impl RateLimiter {
    /// Waits for `tokens` like [`acquire`](RateLimiter::acquire), as a reservation to
    /// [`settle`](Reservation::settle) once the real cost is known.
    ///
    /// ```
    /// use aegeantic::resilience::{RateLimitConfig, RateLimiter};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let tokens_per_minute = RateLimiter::new(RateLimitConfig {
    ///     requests_per_minute: Some(10_000.0),
    ///     burst_size: 10_000,
    ///     ..RateLimitConfig::default()
    /// })?;
    ///
    /// // Room for a 500-token prompt and at most 1,000 tokens of answer.
    /// let reservation = tokens_per_minute.reserve(1_500, "llm").await?;
    /// assert!(tokens_per_minute.tokens_available() < 8_501.0);
    /// // The answer took 300 tokens: 1,200 go back.
    /// reservation.settle(800).await?;
    /// assert!(tokens_per_minute.tokens_available() >= 9_200.0);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`acquire`](RateLimiter::acquire).
    pub async fn reserve(
        &self,
        tokens: u32,
        operation_name: &str,
    ) -> Result<Reservation, RateLimitError> {
        self.reserve_before(tokens, operation_name, None).await
    }

    /// [`reserve`](RateLimiter::reserve) for an operation that must end by `deadline`:
    /// tokens that would come only at or after it are refused at once with
    /// [`RateLimitError::PastDeadline`], and nothing is taken.
    pub(crate) async fn reserve_before(
        &self,
        tokens: u32,
        operation_name: &str,
        deadline: Option<Instant>,
    ) -> Result<Reservation, RateLimitError> {
        let refunded_before = self.waiters().refunded;
        let mut acquisition = Acquisition::new(tokens);
        let acquired =
            std::future::poll_fn(|cx| acquisition.poll(self, operation_name, deadline, cx)).await?;
        Ok(Reservation {
            limiter: self.clone(),
            acquired,
            refunded_before,
        })
    }

    /// Lowers the tokens available to at most `tokens`, for every holder of the limiter
    /// (and, with Redis, every process); a bucket holding fewer is left alone. Use it when
    /// the upstream reports what is left of a quota that others share.
    ///
    /// # Errors
    /// With Redis, [`RateLimitError::Backend`] when Redis cannot be reached; the
    /// in-process bucket is lowered all the same.
    pub async fn cap_available(&self, tokens: u32) -> Result<(), RateLimitError> {
        let gcra = &self.shared.gcra;
        let headroom = u64::from(tokens.min(gcra.burst())) * gcra.interval();
        let floor = self.now() + gcra.tolerance() - headroom;
        self.shared.tat.0.fetch_max(floor, Ordering::Relaxed);
        #[cfg(feature = "redis")]
        if let Some(redis) = &self.shared.redis {
            return redis.adjust(super::redis::Adjust::Cap(tokens)).await;
        }
        Ok(())
    }

    async fn refund(
        &self,
        tokens: u64,
        booked_until: BookedUntil,
        refunded_before: u64,
    ) -> Result<(), RateLimitError> {
        match booked_until {
            #[cfg(feature = "redis")]
            BookedUntil::Nothing => Ok(()),
            BookedUntil::Local(end) => {
                self.refund_local(tokens, end, refunded_before);
                Ok(())
            }
            #[cfg(feature = "redis")]
            BookedUntil::Remote { ends, refunded } => match &self.shared.redis {
                Some(redis) => {
                    let refund = super::redis::Adjust::Refund {
                        tokens,
                        ends,
                        refunded,
                    };
                    redis.adjust(refund).await
                }
                None => Ok(()),
            },
        }
    }

    pub(super) fn refund_local(&self, tokens: u64, booked_until: u64, refunded_before: u64) {
        // Under the queue lock, so that no request books between the move of `tat` and
        // that of the waiters, and the refund total stays in step with `tat`.
        let mut waiters = self.waiters();
        let moved_since = waiters.refunded - refunded_before;
        let booked_until = booked_until.saturating_sub(moved_since);
        let wanted = tokens.saturating_mul(self.shared.gcra.interval());
        let tat = &self.shared.tat.0;
        let mut current = tat.load(Ordering::Relaxed);
        loop {
            // Read after `tat`: a lock-free grant that committed before the exchange below
            // read the clock before this, or it changed `tat` and the exchange fails. So
            // no grant has counted as elapsed time this refund still gives back.
            let now = self.now();
            let back = wanted.min(booked_until.saturating_sub(now));
            if back == 0 {
                return;
            }
            let new_tat = current.saturating_sub(back).max(now.min(current));
            match tat.compare_exchange_weak(current, new_tat, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    waiters.refunded += current - new_tat;
                    waiters.advance(current - new_tat);
                    return;
                }
                Err(actual) => current = actual,
            }
        }
    }

    async fn charge(&self, tokens: u64) -> Result<(), RateLimitError> {
        if tokens == 0 {
            return Ok(());
        }
        #[cfg(feature = "redis")]
        if let Some(redis) = &self.shared.redis {
            return redis.adjust(super::redis::Adjust::Charge(tokens)).await;
        }
        let cost = tokens.saturating_mul(self.shared.gcra.interval());
        let now = self.now();
        // The closure always returns `Some`, so the update cannot fail.
        let _ = self
            .shared
            .tat
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
                Some(tat.max(now).saturating_add(cost))
            });
        Ok(())
    }
}
