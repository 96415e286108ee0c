//! The Redis backend: one limit shared by every process that names the same key.
//!
//! The bucket lives in Redis and is checked and charged by one Lua script (`gcra.lua`), so
//! concurrent clients never race, and time comes from the Redis server's clock, so client
//! clocks never matter. A request that must wait does not poll: the script books its slot
//! and says how long to sleep, and the caller sleeps once. That makes one Redis call per
//! admitted request whatever the contention, and serves requests in the order their calls
//! reach Redis, across all processes.
//!
//! `options.rs` holds the settings, `estimate.rs` what `tokens_available` reports between
//! calls, and `outage.rs` decides when to stop calling Redis after a failure and when to
//! try it again.

pub(crate) mod connection;
mod estimate;
mod gcra;
mod options;
mod outage;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use self::connection::{Connection, Target};
use self::estimate::Estimate;
use self::gcra::Reply;
pub use self::options::{FailurePolicy, RedisOptions};
use self::outage::{Outage, Probe};
use super::adjust::BookedUntil;
use super::{Acquired, Acquisition, Fallback, RateLimitConfig, RateLimiter};
use crate::resilience::{ConfigError, RateLimitError};

/// Redis's answer, or the fallback the failure policy chose when Redis had none.
pub(crate) enum Remote<T> {
    Answer(T),
    Fallback(Fallback),
}

/// A config has at most three windows: per second, minute and hour.
pub(crate) const MAX_WINDOWS: usize = 3;

/// One instant per window, in microseconds of the scripts' epoch (unused windows: 0).
pub(crate) type WindowTimes = [u64; MAX_WINDOWS];

/// A change to the shared bucket outside admission.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Adjust {
    /// At most this many tokens left.
    Cap(u32),
    /// Tokens handed back by a grant whose booked time ended at `ends` when the windows'
    /// refund totals were `refunded`.
    Refund {
        tokens: u64,
        ends: WindowTimes,
        refunded: WindowTimes,
    },
    /// Tokens taken without waiting.
    Charge(u64),
}

/// The state behind a Redis-backed [`RateLimiter`].
pub(crate) struct RedisBackend {
    /// Shared with the probes, which run in tasks of their own.
    connection: Arc<Connection>,
    outage: Arc<Outage>,
    /// Per window: emission interval and tolerance, in microseconds.
    windows: Vec<(u64, u64)>,
    options: RedisOptions,
    /// What `tokens_available` reports between calls.
    estimate: Estimate,
    /// The bucket of [`RedisOptions::local_fallback`]; without one, the limiter's own
    /// in-process bucket is the fallback.
    local: Option<RateLimiter>,
}

/// Reservations are bounded only by what a double counts exactly.
const UNBOUNDED_WAIT_US: u64 = 1 << 52;

/// `span` in whole microseconds, within the bound of a reservation.
fn micros(span: Duration) -> u64 {
    span.as_micros().min(u128::from(UNBOUNDED_WAIT_US)) as u64
}

/// The longest wait, in whole microseconds, that ends strictly before `left` has passed.
fn before(left: Duration) -> u64 {
    micros(left.saturating_sub(Duration::from_nanos(1)))
}

impl RedisBackend {
    pub(crate) fn new(
        target: Target<'_>,
        key: &str,
        config: &RateLimitConfig,
        options: RedisOptions,
    ) -> Result<Self, ConfigError> {
        let intervals = config.window_intervals_us()?;
        if options.call_timeout.is_zero() {
            return Err(ConfigError::ZeroCallTimeout);
        }
        if options.connections == 0 {
            return Err(ConfigError::ZeroConnections);
        }
        if options.probe_interval.is_zero() {
            // Redis would be called on every decision of an outage, which the interval
            // exists to prevent.
            return Err(ConfigError::ZeroTimeout {
                field: "probe_interval",
            });
        }
        let local = match &options.local_fallback {
            None => None,
            Some(_) if options.failure_policy != FailurePolicy::Local => {
                return Err(ConfigError::LocalFallbackUnused);
            }
            Some(config) => Some(
                RateLimiter::new(config.clone())
                    .map_err(|error| ConfigError::InvalidLocalFallback(Box::new(error)))?,
            ),
        };
        let burst = u64::from(config.burst_size);
        let windows = intervals.iter().map(|&t| (t, t * burst)).collect();
        let slowest_us = intervals.into_iter().max().unwrap_or(1);
        Ok(RedisBackend {
            connection: Arc::new(Connection::new(
                target,
                // The hash tag pins the key to one cluster slot whatever else is added to it.
                format!("aegeantic:{{{key}}}"),
                options.call_timeout,
                options.connections,
            )?),
            outage: Arc::new(Outage::new(options.probe_interval)),
            windows,
            options,
            estimate: Estimate::new(slowest_us, config.burst_size),
            local,
        })
    }

    /// Books `tokens` and sleeps until the slot, or says which fallback to use. A slot at
    /// or past `deadline` is refused with [`RateLimitError::PastDeadline`] without booking,
    /// and a call still unanswered at the deadline is abandoned there (the server may still
    /// run it, as after any timeout).
    pub(crate) async fn acquire(
        &self,
        tokens: u32,
        deadline: Option<Instant>,
    ) -> Result<Remote<Acquired>, RateLimitError> {
        let started = Instant::now();
        let left = deadline.map(|deadline| deadline.saturating_duration_since(started));
        if let Some(Duration::ZERO) = left {
            // No answer from Redis can come before a deadline that has passed.
            return Err(RateLimitError::PastDeadline {
                wait: Duration::ZERO,
                remaining: Duration::ZERO,
            });
        }
        let max_wait_us = self
            .options
            .max_wait
            .map_or(UNBOUNDED_WAIT_US, micros)
            .min(left.map_or(UNBOUNDED_WAIT_US, before));
        let call = self.call(tokens, max_wait_us, None);
        let result = match deadline {
            None => call.await,
            Some(deadline) => match tokio::time::timeout_at(deadline, call).await {
                Ok(result) => result,
                Err(_) => {
                    let left = left.unwrap_or_default();
                    return Err(RateLimitError::PastDeadline {
                        wait: left,
                        remaining: left,
                    });
                }
            },
        };
        let reply = match result {
            Ok(reply) => reply,
            Err(error) => return self.fall_back(error).map(Remote::Fallback),
        };
        if !reply.admitted {
            let wait = Duration::from_micros(reply.wait_us);
            return Err(match (self.options.max_wait, left) {
                (Some(max_wait), _) if wait > max_wait => {
                    RateLimitError::WaitTooLong { wait, max_wait }
                }
                (_, Some(remaining)) => RateLimitError::PastDeadline { wait, remaining },
                // Refused past what a reservation can count.
                (max_wait, None) => RateLimitError::WaitTooLong {
                    wait,
                    max_wait: max_wait.unwrap_or(Duration::MAX),
                },
            });
        }
        if reply.wait_us > 0 {
            // Counted from the reply, which left the server after its `now`: the caller
            // never proceeds before the slot the script booked.
            tokio::time::sleep(Duration::from_micros(reply.wait_us)).await;
        }
        Ok(Remote::Answer(Acquired {
            tokens,
            tokens_remaining: reply.remaining,
            waited: started.elapsed(),
            fallback: None,
            booked_until: BookedUntil::Remote {
                ends: reply.booked_until,
                refunded: reply.refunded,
            },
        }))
    }

    /// Takes `tokens` if Redis has them now, or says which fallback to use.
    pub(crate) async fn try_acquire(&self, tokens: u32) -> Result<Remote<bool>, RateLimitError> {
        match self.call(tokens, 0, None).await {
            Ok(reply) => Ok(Remote::Answer(reply.admitted)),
            Err(error) => self.fall_back(error).map(Remote::Fallback),
        }
    }

    /// Changes the shared bucket outside admission (see `adjust.rs`).
    pub(crate) async fn adjust(&self, adjust: Adjust) -> Result<(), RateLimitError> {
        let unused = [0; MAX_WINDOWS];
        let (operation, tokens, bounds) = match &adjust {
            Adjust::Cap(tokens) => ("cap", u64::from(*tokens), (&unused, &unused)),
            Adjust::Refund {
                tokens,
                ends,
                refunded,
            } => ("refund", *tokens, (ends, refunded)),
            Adjust::Charge(tokens) => ("charge", *tokens, (&unused, &unused)),
        };
        if let (Adjust::Cap(tokens), Some(local)) = (&adjust, &self.local) {
            // Lowered whatever Redis answers, like the limiter's own bucket. Boxed: a cap
            // calls this function, and the in-process one never comes back here.
            Box::pin(local.cap_available(*tokens)).await?;
        }
        self.guarded(gcra::adjust(
            &self.connection,
            operation,
            tokens,
            bounds,
            &self.windows,
        ))
        .await
        .map_err(|message| RateLimitError::Backend { message })?;
        if let Adjust::Cap(tokens) = adjust {
            self.estimate.cap(tokens);
        }
        Ok(())
    }

    /// The tokens Redis last reported, at the instant they were reported for, plus the
    /// refill since: an estimate, since other processes' takes are unseen until the next
    /// call.
    pub(crate) fn tokens_available(&self) -> f64 {
        self.estimate.tokens_available()
    }

    /// A decision at a caller-chosen `now` (microseconds since the script's epoch), for
    /// deterministic tests against the in-memory limiter.
    #[cfg(test)]
    pub(crate) async fn try_acquire_at(&self, tokens: u32, now_us: u64) -> Result<Reply, String> {
        self.call(tokens, 0, Some(now_us)).await
    }

    async fn call(
        &self,
        tokens: u32,
        max_wait_us: u64,
        now_us: Option<u64>,
    ) -> Result<Reply, String> {
        let sent = Instant::now();
        let reply = self
            .guarded(gcra::gcra(
                &self.connection,
                tokens,
                max_wait_us,
                now_us,
                &self.windows,
            ))
            .await?;
        self.estimate.record(&reply, tokens, sent, Instant::now());
        Ok(reply)
    }

    /// Runs `call` unless Redis is down, and marks Redis down when it fails. The error is
    /// the failure's description, for the caller.
    async fn guarded<T>(
        &self,
        call: impl Future<Output = Result<T, redis::RedisError>>,
    ) -> Result<T, String> {
        if let Some(down) = self.outage.check() {
            if let Some(probe) = down.probe {
                self.start_probe(probe);
            }
            return Err(down.message);
        }
        call.await.map_err(|error| {
            let message = self.connection.describe(&error);
            let began = self.outage.failed(message.clone());
            #[cfg(feature = "tracing")]
            if began {
                tracing::warn!(
                    redis = %self.connection,
                    error = %message,
                    policy = ?self.options.failure_policy,
                    "rate limit: redis unavailable, deciding without it until it answers"
                );
            }
            #[cfg(not(feature = "tracing"))]
            let _ = began;
            message
        })
    }

    /// Probes Redis in a task of its own, so that the caller that found the probe due
    /// decides at once like the others.
    fn start_probe(&self, probe: Probe) {
        let connection = Arc::clone(&self.connection);
        let task = async move {
            let result = connection.probe().await;
            #[cfg(feature = "tracing")]
            if result.is_ok() {
                tracing::info!(redis = %connection, "rate limit: redis answers again");
            }
            probe.finish(result.map_err(|error| connection.describe(&error)));
        };
        // Outside a runtime nothing can reach Redis anyway; the dropped task frees the
        // probe for a later caller.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(task);
        }
    }

    /// Applies the failure policy to a failure described by `message`: the fallback to
    /// use, or the error to return.
    fn fall_back(&self, message: String) -> Result<Fallback, RateLimitError> {
        let fallback = match self.options.failure_policy {
            FailurePolicy::FailClosed => None,
            FailurePolicy::FailOpen => Some(Fallback::FailOpen),
            FailurePolicy::Local => Some(Fallback::Local),
        };
        #[cfg(feature = "tracing")]
        tracing::debug!(error = %message, fallback = ?fallback, "rate limit: decided without redis");
        fallback.ok_or(RateLimitError::Backend { message })
    }
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("redis", &format_args!("{}", self.connection))
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// A limiter whose bucket lives in Redis under `key`, shared by every process that uses
    /// the same URL, key and config.
    ///
    /// Nothing connects yet: the connection is made on first use and remade on its own
    /// after failures, so a limiter can be created while Redis is down. The URL may carry
    /// a password; it never appears in errors, `Debug` output or logs.
    ///
    /// Under a deadline (a [`ResilientStream`](crate::resilience::ResilientStream)'s
    /// `max_elapsed`) the time left is the reservation's longest wait: a slot that would
    /// come at or after the deadline is refused at once with
    /// [`RateLimitError::PastDeadline`] and nothing is booked, and a Redis call still
    /// unanswered at the deadline is abandoned there (like a timed-out call, the server may
    /// still run it and charge it). A wait past [`RedisOptions::max_wait`] is
    /// [`RateLimitError::WaitTooLong`], deadline or not.
    ///
    /// # When Redis is down
    ///
    /// A call that fails (refused, unanswered within the call timeout, an error reply)
    /// marks Redis down. From then on the [`FailurePolicy`] decides every request at once,
    /// without touching Redis: microseconds, not a timeout or a reconnection delay per
    /// request (in a test that kills redis-server with SIGKILL, decisions during the
    /// outage took about 1 µs at the median and 5 to 20 µs at the 99th percentile, on a
    /// shared 2-core machine). Every
    /// [`probe_interval`](RedisOptions::probe_interval) (100 ms by default), one probe
    /// sends a PING on each connection, in a task of its own so that no request waits for
    /// it; the first probe that gets answers hands decisions back to Redis, so they return
    /// to Redis within the interval, plus the probe's round trips (about 2 ms on loopback),
    /// of it answering again. A restarted Redis without persistence starts with every
    /// bucket full.
    ///
    /// Over a span `D` of an outage, a fleet of `N` processes sharing a limit of burst `B`
    /// and rate `r` admits:
    /// * [`FailClosed`](FailurePolicy::FailClosed): nothing; every request fails with
    ///   [`RateLimitError::Backend`];
    /// * [`FailOpen`](FailurePolicy::FailOpen): everything, unlimited;
    /// * [`Local`](FailurePolicy::Local): `N · (B + r·D)`, since each process limits with
    ///   a full copy of the shared limit (measured: 4 processes, 3.99 times the limit);
    /// * [`Local`](FailurePolicy::Local) with
    ///   [`local_fallback`](RedisOptions::local_fallback) of burst `b` and rate `q`:
    ///   `N · (b + q·D)`, which is the shared limit when each process gets a `1/N` share
    ///   (measured: 4 processes with a quarter each, 1.00 times). Grants of such a
    ///   bucket are not refunded by [`settle`](crate::resilience::Reservation::settle).
    ///
    /// # Errors
    /// A bad config (as [`RateLimiter::new`]) or an unparsable URL.
    pub fn redis(url: &str, key: &str, config: RateLimitConfig) -> Result<Self, ConfigError> {
        Self::redis_with(url, key, config, RedisOptions::default())
    }

    /// [`RateLimiter::redis`] with explicit [`RedisOptions`].
    ///
    /// # Errors
    /// As [`RateLimiter::redis`], a zero call timeout, connection count or probe interval
    /// ([`ConfigError::ZeroTimeout`]), an invalid
    /// [`local_fallback`](RedisOptions::local_fallback)
    /// ([`ConfigError::InvalidLocalFallback`]), and a local fallback with a policy other
    /// than [`FailurePolicy::Local`] ([`ConfigError::LocalFallbackUnused`]).
    pub fn redis_with(
        url: &str,
        key: &str,
        config: RateLimitConfig,
        options: RedisOptions,
    ) -> Result<Self, ConfigError> {
        let backend = RedisBackend::new(Target::Node(url), key, &config, options)?;
        RateLimiter::with_redis(config, backend)
    }

    /// A limiter whose bucket lives in a Redis Cluster under `key`, shared by every
    /// process that uses the same cluster, key and config; `nodes` are the URLs of some of
    /// its nodes (one that answers is enough: the client learns the rest, and follows the
    /// cluster as slots move and replicas are promoted).
    ///
    /// The same limiter as [`RateLimiter::redis`], with the same scripts and decisions:
    /// all of a limiter's state is one key, in one slot, so each decision is one script on
    /// the master that serves the slot. A password in the URLs never appears in errors,
    /// `Debug` output or logs; all nodes must share it.
    ///
    /// # When the key's master fails
    ///
    /// Until a replica is promoted in its place, calls for the key fail and the
    /// [`FailurePolicy`] decides, as in any outage (see [`RateLimiter::redis`]); probes
    /// find the promoted replica. With three masters, a replica each and a
    /// `cluster-node-timeout` of 500 ms, the limiter served from Redis again 1.46 to 1.96 s
    /// after the key's master was killed with SIGKILL (five runs on loopback); the time is
    /// the cluster's failure detection and election, so it grows with
    /// `cluster-node-timeout`.
    ///
    /// Replication is asynchronous: a promoted replica may not have received the master's
    /// last writes, and then holds the bucket as it was that much earlier. If it lags by
    /// `L`, the grants of that last `L` are forgotten and can be granted again, so over a
    /// span `D` across the failover the fleet admits at most `2·B + r·(D + L)` instead of
    /// `B + r·D` (at most one bucket's worth more), plus whatever the failure policy admits
    /// while no master serves the key. Measured with fail closed, 16 tasks on a limit of
    /// 100 per second with bursts of 20: 574 to 624 grants over the 7 s runs against the
    /// `B + r·D` of 735, since the time without a master admitted nothing.
    ///
    /// # Errors
    /// As [`RateLimiter::redis`], and [`ConfigError::NoClusterNodes`] for an empty list.
    pub fn redis_cluster<S: AsRef<str>>(
        nodes: &[S],
        key: &str,
        config: RateLimitConfig,
    ) -> Result<Self, ConfigError> {
        Self::redis_cluster_with(nodes, key, config, RedisOptions::default())
    }

    /// [`RateLimiter::redis_cluster`] with explicit [`RedisOptions`].
    ///
    /// # Errors
    /// As [`RateLimiter::redis_with`], and [`ConfigError::NoClusterNodes`] for an empty
    /// list.
    pub fn redis_cluster_with<S: AsRef<str>>(
        nodes: &[S],
        key: &str,
        config: RateLimitConfig,
        options: RedisOptions,
    ) -> Result<Self, ConfigError> {
        let nodes: Vec<&str> = nodes.iter().map(AsRef::as_ref).collect();
        let backend = RedisBackend::new(Target::Cluster(&nodes), key, &config, options)?;
        RateLimiter::with_redis(config, backend)
    }

    pub(super) fn is_redis(&self) -> bool {
        self.shared.redis.is_some()
    }

    /// Tries Redis, applying the failure policy when Redis cannot answer.
    pub(super) async fn try_acquire_remote(&self, tokens: u32) -> Result<bool, RateLimitError> {
        let redis = self.shared.redis.as_ref().expect("a Redis-backed limiter");
        Ok(match redis.try_acquire(tokens).await? {
            Remote::Answer(admitted) => {
                #[cfg(feature = "metrics")]
                if admitted {
                    self.shared.metrics.tokens(redis.tokens_available());
                }
                admitted
            }
            Remote::Fallback(Fallback::FailOpen) => true,
            Remote::Fallback(Fallback::Local) => match &redis.local {
                Some(local) => {
                    local.check(tokens)?;
                    local.try_take_now(tokens)
                }
                None => self.try_take_now(tokens),
            },
        })
    }

    /// Acquires through Redis, applying the failure policy when Redis cannot answer.
    pub(super) async fn acquire_remote(
        &self,
        tokens: u32,
        deadline: Option<Instant>,
    ) -> Result<Acquired, RateLimitError> {
        let redis = self.shared.redis.as_ref().expect("a Redis-backed limiter");
        let fallback = match redis.acquire(tokens, deadline).await? {
            Remote::Answer(acquired) => return Ok(acquired),
            Remote::Fallback(fallback) => fallback,
        };
        let mut acquired = match fallback {
            Fallback::FailOpen => Acquired {
                tokens,
                tokens_remaining: 0.0,
                waited: Duration::ZERO,
                fallback: None,
                booked_until: BookedUntil::Nothing,
            },
            Fallback::Local => {
                let bucket = redis.local.as_ref().unwrap_or(self);
                let mut local = Acquisition::new(tokens);
                let mut acquired = std::future::poll_fn(|cx| {
                    local.poll_local(bucket, "redis-fallback", deadline, cx)
                })
                .await?;
                if redis.local.is_some() {
                    // Settling refunds into the limiter's own bucket, not this one.
                    acquired.booked_until = BookedUntil::Nothing;
                }
                acquired
            }
        };
        acquired.fallback = Some(fallback);
        Ok(acquired)
    }
}

#[cfg(test)]
mod tests;
