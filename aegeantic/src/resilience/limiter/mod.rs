//! Token-bucket rate limiting with first-come-first-served waiting.
//!
//! The split follows the concerns: `config.rs` says what a limit means, `gcra.rs` holds the
//! arithmetic, `clock.rs` the time it runs on, `waiters.rs` the queue of sleeping requests,
//! `acquire.rs` the future that waits, `adjust.rs` reservations, refunds and corrections,
//! and `redis/` the backend that keeps the bucket in Redis. This file ties them together and shares them between clones.

mod acquire;
mod adjust;
mod clock;
mod config;
mod gcra;
#[cfg(all(test, aegeantic_loom))]
mod loom_tests;
#[cfg(feature = "redis")]
pub(crate) mod redis;
mod sync;
#[cfg(test)]
mod tests;
mod try_acquire;
mod waiters;

#[cfg(feature = "redis")]
pub use self::redis::{FailurePolicy, RedisOptions};
pub(crate) use acquire::Acquisition;
pub use acquire::{Acquire, Acquired, Fallback};
pub use adjust::Reservation;
pub use config::RateLimitConfig;
pub use try_acquire::TryAcquire;

use std::fmt;
use std::sync::{Arc, PoisonError};
use std::task::Waker;
use tokio::time::Instant;

use self::clock::Clock;
use self::gcra::Gcra;
use self::sync::{AtomicU64, Mutex, MutexGuard, Ordering};
use self::waiters::Waiters;
use super::{ConfigError, RateLimitError};

/// A token-bucket rate limiter, shared by cloning.
///
/// Clones share one bucket: create one limiter per upstream API and hand clones to
/// everything that calls it. The bucket starts full with `burst_size` tokens and refills
/// continuously at the binding rate of its [`RateLimitConfig`].
///
/// * [`acquire`](RateLimiter::acquire) waits until the tokens exist. Waiters are served
///   strictly in arrival order whatever their size, so a large request is never starved by
///   small ones and a late caller never overtakes a waiting one. Each waiter sleeps on a
///   timer until the instant its tokens will exist; nothing polls.
/// * [`try_acquire`](RateLimiter::try_acquire) never waits, and fails while others wait.
/// * [`tokens_available`](RateLimiter::tokens_available) reads the bucket, refill included.
///
/// A grant takes no lock, allocates nothing and, in production builds, reads the CPU's cycle
/// counter rather than the system clock. When tokio is built with its `test-util` feature,
/// as test builds usually are, the limiter runs on tokio's clock instead, so tests can drive
/// it with `tokio::time::pause` and `advance` (which exist only with `test-util`). Waiting
/// always uses tokio's timers, which fire on whole milliseconds: a waiter is released at its
/// instant or up to about 2 ms after it (more when the runtime is busy), never before, and
/// the delay does not carry over to the next waiter, whose instant was booked when it
/// queued.
///
/// ```
/// use aegeantic::resilience::{RateLimitConfig, RateLimiter};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let limiter = RateLimiter::new(RateLimitConfig {
///     requests_per_second: Some(10.0),
///     burst_size: 2,
///     ..RateLimitConfig::default()
/// })?;
///
/// limiter.acquire(1, "api_call").await?;
/// assert!(limiter.try_acquire(1).await?);
/// assert!(!limiter.try_acquire(1).await?); // empty until the next refill
/// assert!(limiter.try_acquire(3).await.is_err()); // can never fit in a bucket of 2
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RateLimiter {
    shared: Arc<Shared>,
}

struct Shared {
    config: RateLimitConfig,
    gcra: Gcra,
    clock: Clock,
    /// The GCRA theoretical arrival time, in nanoseconds of `clock`. It is the only state
    /// that admissions touch, so immediate grants need no lock.
    tat: OwnLine<AtomicU64>,
    /// Taken only by requests that must wait and by waiters that give up.
    waiters: Mutex<Waiters>,
    /// Where the bucket lives when it is shared through Redis; the in-process bucket then
    /// serves only as the fallback of [`FailurePolicy::Local`].
    #[cfg(feature = "redis")]
    redis: Option<self::redis::RedisBackend>,
    #[cfg(feature = "metrics")]
    metrics: crate::observe::metrics::Limiter,
}

/// Gives its content cache lines of its own: every grant writes `tat` and reads the fields
/// beside it, and sharing a line would make each grant on one core evict those fields from
/// the others. 128 bytes, since x86 fetches lines in adjacent pairs.
#[repr(align(128))]
struct OwnLine<T>(T);

/// What a request that may wait got.
pub(crate) enum Booked {
    /// Granted now; the bucket's `tat` after the grant.
    Now { tat: u64 },
    /// Queued as waiter `id`, due at `admit_at`.
    Later { id: u64, admit_at: u64 },
    /// Its tokens would exist only at `admit_at`, at or past the latest instant it accepted;
    /// nothing was booked.
    TooLate { admit_at: u64 },
}

impl RateLimiter {
    /// A limiter for `config`, with a full bucket.
    ///
    /// In production builds the first limiter of a process calibrates the CPU's cycle
    /// counter against the system clock: about a millisecond, 200 ms at most. Later ones
    /// reuse the calibration.
    ///
    /// # Errors
    /// No rate configured, a rate that is zero, negative, NaN, infinite or out of range, or
    /// a zero `burst_size`.
    pub fn new(config: RateLimitConfig) -> Result<Self, ConfigError> {
        Self::build(
            config,
            Clock::new(),
            #[cfg(feature = "redis")]
            None,
        )
    }

    /// A limiter on `clock`; the unit tests pick the counter, which test builds otherwise
    /// never use.
    #[cfg(test)]
    fn with_clock(config: RateLimitConfig, clock: Clock) -> Result<Self, ConfigError> {
        Self::build(
            config,
            clock,
            #[cfg(feature = "redis")]
            None,
        )
    }

    #[cfg(feature = "redis")]
    fn with_redis(
        config: RateLimitConfig,
        backend: self::redis::RedisBackend,
    ) -> Result<Self, ConfigError> {
        Self::build(config, Clock::new(), Some(backend))
    }

    fn build(
        config: RateLimitConfig,
        clock: Clock,
        #[cfg(feature = "redis")] redis: Option<self::redis::RedisBackend>,
    ) -> Result<Self, ConfigError> {
        let gcra = Gcra::new(&config)?;
        Ok(RateLimiter {
            shared: Arc::new(Shared {
                #[cfg(feature = "metrics")]
                metrics: crate::observe::metrics::Limiter::new(
                    config.name.as_deref().unwrap_or("default"),
                ),
                config,
                gcra,
                clock,
                tat: OwnLine(AtomicU64::new(0)),
                waiters: Mutex::new(Waiters::default()),
                #[cfg(feature = "redis")]
                redis,
            }),
        })
    }

    /// The configuration this limiter enforces.
    pub fn config(&self) -> &RateLimitConfig {
        &self.shared.config
    }

    /// Waits until `tokens` tokens are available, then takes them.
    ///
    /// Returns at once when the tokens are there and nobody is waiting. Otherwise the
    /// request takes its place in the queue and sleeps until its tokens exist. Dropping the
    /// future before then gives its place back: the tokens stay in the bucket and the
    /// waiters behind it move forward. (With Redis a booked slot stays spent: other
    /// processes may have booked behind it.) `operation_name` labels tracing records.
    ///
    /// # Errors
    /// [`RateLimitError::InsufficientCapacity`] at once when `tokens` exceeds the burst
    /// size, [`RateLimitError::ZeroTokens`] for zero, and [`RateLimitError::NoRuntime`] when
    /// waiting is needed outside a tokio runtime.
    pub fn acquire<'a>(&'a self, tokens: u32, operation_name: &'a str) -> Acquire<'a> {
        Acquire::new(self, tokens, operation_name)
    }

    /// Takes `tokens` tokens if they are available now; never waits.
    ///
    /// Returns `Ok(false)` when the bucket is short or earlier requests are still waiting:
    /// a caller that does not queue never takes tokens that a queued one is owed. With the
    /// in-process bucket the future is ready at once; with Redis it makes one call.
    ///
    /// # Errors
    /// As [`acquire`](RateLimiter::acquire), for requests that could never succeed, and a
    /// Redis failure under [`FailurePolicy::FailClosed`].
    #[inline]
    pub fn try_acquire(&self, tokens: u32) -> TryAcquire<'_> {
        TryAcquire::new(self, tokens)
    }

    /// Tokens in the bucket now, refill included. Tokens promised to queued waiters are
    /// not available, so this is 0 while anyone waits.
    ///
    /// With Redis this is an estimate: the count of the last reply plus the refill since,
    /// blind to what other processes took meanwhile.
    pub fn tokens_available(&self) -> f64 {
        #[cfg(feature = "redis")]
        if let Some(redis) = &self.shared.redis {
            return redis.tokens_available();
        }
        let tat = self.shared.tat.0.load(Ordering::Relaxed);
        self.shared.gcra.tokens(tat, self.now()).max(0.0)
    }

    /// Empties the bucket, for every holder of the limiter (and, with Redis, every
    /// process): call it when the upstream says it is overloaded (a 429), so that nobody
    /// sharing the quota sends more until the bucket refills. Requests already queued keep
    /// their places.
    ///
    /// # Errors
    /// With Redis, [`RateLimitError::Backend`] when Redis cannot be reached; the
    /// in-process bucket is drained all the same.
    pub async fn drain(&self) -> Result<(), RateLimitError> {
        self.cap_available(0).await
    }

    /// Takes the tokens if they are there now, with no queue.
    #[inline]
    fn try_take_now(&self, tokens: u32) -> bool {
        let now = self.now();
        let taken = self.try_take(tokens, now);
        #[cfg(feature = "metrics")]
        if let Some(tat) = taken {
            self.shared.metrics.tokens(self.remaining(tat, now));
        }
        taken.is_some()
    }

    /// Counts a refusal of `try_acquire` in the metrics, and returns it.
    #[cfg_attr(not(feature = "metrics"), inline(always))]
    fn refused(&self, error: RateLimitError) -> RateLimitError {
        #[cfg(feature = "metrics")]
        self.shared.metrics.refusal(error.label());
        error
    }

    /// Records what an acquisition's poll came to: a grant's wait and tokens, or a refusal.
    #[cfg(feature = "metrics")]
    #[inline]
    fn observe(&self, polled: &std::task::Poll<Result<Acquired, RateLimitError>>) {
        match polled {
            std::task::Poll::Ready(Ok(acquired)) => self.shared.metrics.grant(
                acquired.waited,
                acquired.tokens_remaining,
                acquired.fallback.map(Fallback::label),
            ),
            std::task::Poll::Ready(Err(error)) => self.shared.metrics.refusal(error.label()),
            std::task::Poll::Pending => {}
        }
    }

    #[inline]
    fn check(&self, tokens: u32) -> Result<(), RateLimitError> {
        let burst = self.shared.gcra.burst();
        // One comparison on the hot path: zero wraps round to the largest value.
        if tokens.wrapping_sub(1) < burst {
            Ok(())
        } else {
            Err(refusal(tokens, burst))
        }
    }

    #[inline]
    fn now(&self) -> u64 {
        self.shared.clock.now()
    }

    /// The tokio instant to set a timer to for `at`.
    fn deadline(&self, at: u64) -> Instant {
        self.shared.clock.deadline(at)
    }

    /// `deadline` on the bucket's clock, read at `now`: `u64::MAX` (never) when there is
    /// none or it lies beyond what the clock counts.
    fn latest(&self, deadline: Option<Instant>, now: u64) -> u64 {
        deadline.map_or(u64::MAX, |deadline| {
            let left = deadline.saturating_duration_since(Instant::now());
            u64::try_from(left.as_nanos()).map_or(u64::MAX, |left| now.saturating_add(left))
        })
    }

    /// Tokens left at `now` in a bucket whose `tat` is `tat`. Inlined: every ready
    /// `acquire` reports it, and the call cost more than the arithmetic.
    #[inline]
    fn remaining(&self, tat: u64, now: u64) -> f64 {
        self.shared.gcra.tokens(tat, now).max(0.0)
    }

    /// The lock-free grant: takes the tokens if they are there at `now`, returning the new
    /// `tat`. Relaxed ordering suffices: `tat` publishes no other memory, and every update
    /// is a read-modify-write of this one atomic.
    #[inline]
    fn try_take(&self, tokens: u32, now: u64) -> Option<u64> {
        let tat = &self.shared.tat.0;
        let mut current = tat.load(Ordering::Relaxed);
        loop {
            let booking = self.shared.gcra.book(current, now, tokens);
            if booking.admit_at > now {
                return None;
            }
            match tat.compare_exchange_weak(
                current,
                booking.tat,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(booking.tat),
                Err(actual) => current = actual,
            }
        }
    }

    /// Grants now or books a place in the queue, unless the place would come at or after
    /// `latest`. Holding the queue lock while moving `tat` keeps queue order and booking
    /// order the same.
    fn book(&self, tokens: u32, now: u64, latest: u64, waker: &Waker) -> Booked {
        let mut waiters = self.waiters();
        let tat = &self.shared.tat.0;
        let mut current = tat.load(Ordering::Relaxed);
        loop {
            let booking = self.shared.gcra.book(current, now, tokens);
            if booking.admit_at > now && booking.admit_at >= latest {
                return Booked::TooLate {
                    admit_at: booking.admit_at,
                };
            }
            match tat.compare_exchange_weak(
                current,
                booking.tat,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) if booking.admit_at <= now => return Booked::Now { tat: booking.tat },
                Ok(_) => {
                    let id = waiters.push(tokens, booking.admit_at, waker);
                    return Booked::Later {
                        id,
                        admit_at: booking.admit_at,
                    };
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// A waiter's current instant, or `None` if it is no longer queued.
    fn admit_at(&self, id: u64, waker: &Waker) -> Option<u64> {
        self.waiters().admit_at(id, waker)
    }

    /// Removes a waiter whose instant has come.
    /// The tokens left, and where the time the waiter booked ends (see `adjust.rs`).
    fn finish(&self, id: u64, now: u64) -> (f64, u64) {
        let admit_at = self.waiters().remove(id).unwrap_or(now);
        let remaining = self.remaining(self.shared.tat.0.load(Ordering::Relaxed), now);
        (remaining, admit_at + self.shared.gcra.tolerance())
    }

    /// Removes a waiter that gave up, handing back its place if its instant is ahead.
    ///
    /// The place goes back only if `tat` is still where the last booking left it (the last
    /// waiter's instant plus the tolerance): a grant made without the lock since then found
    /// every waiter due, this one included, so its tokens already counted as taken, even
    /// if this waiter's clock reading, taken before the lock, says otherwise.
    fn cancel(&self, id: u64) {
        let now = self.now();
        let mut waiters = self.waiters();
        let tolerance = self.shared.gcra.tolerance();
        waiters.cancel(id, now, self.shared.gcra.interval(), |last, shift| {
            let booked = last + tolerance;
            self.shared
                .tat
                .0
                .compare_exchange(booked, booked - shift, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        });
    }

    fn waiters(&self) -> MutexGuard<'_, Waiters> {
        // The queue stays consistent even if a waker panicked while the lock was held.
        self.shared
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Why a request that can never succeed is refused; out of line, so that the check stays
/// one comparison where it is inlined.
#[cold]
fn refusal(requested: u32, burst: u32) -> RateLimitError {
    if requested == 0 {
        RateLimitError::ZeroTokens
    } else {
        RateLimitError::InsufficientCapacity { requested, burst }
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("config", &self.shared.config)
            .field("tokens_available", &self.tokens_available())
            .field("clock", &self.shared.clock)
            .finish()
    }
}
