//! What a user sets on a Redis-backed limiter beyond its limit.

use std::time::Duration;

use crate::resilience::RateLimitConfig;
#[cfg(doc)]
use crate::resilience::{RateLimitError, RateLimiter};

/// What a Redis-backed limiter does when Redis cannot answer in time, and until a probe
/// finds it answering again (see [`RateLimiter::redis`] for what a fleet admits then).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum FailurePolicy {
    /// Refuse: the request fails with [`RateLimitError::Backend`].
    #[default]
    FailClosed,
    /// Admit without limiting.
    FailOpen,
    /// Limit with an in-process bucket until Redis is back: by default one of the shared
    /// configuration, so that each process admits the whole shared limit on its own; see
    /// [`RedisOptions::local_fallback`] to size it.
    Local,
}

/// Settings of a Redis-backed limiter beyond its [`RateLimitConfig`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RedisOptions {
    /// What to do when Redis is down, slow or refuses (default: fail closed).
    pub failure_policy: FailurePolicy,
    /// The longest a Redis call may take, connecting included (default 250 ms). A call that
    /// times out may still have been charged on the server; it is never refunded.
    pub call_timeout: Duration,
    /// The longest an `acquire` may wait for its slot; a request that would wait longer
    /// fails at once with [`RateLimitError::WaitTooLong`] and takes nothing (default: none).
    /// An operation's deadline bounds the wait as well (see [`RateLimiter::redis`]).
    pub max_wait: Option<Duration>,
    /// How many multiplexed connections the limiter spreads its calls over (default 4).
    pub connections: usize,
    /// How often to check whether Redis answers again once a call has failed (default
    /// 100 ms; zero is refused). Meanwhile the failure policy decides without calling
    /// Redis. An interval beyond what the clock counts means never.
    pub probe_interval: Duration,
    /// The limit of the in-process bucket that [`FailurePolicy::Local`] falls back to
    /// (default: none, the shared configuration itself). Give each of N processes a
    /// 1/N share of the shared limit, and the fleet as a whole keeps to the shared limit
    /// while Redis is down. Setting it with another policy is a configuration error.
    pub local_fallback: Option<RateLimitConfig>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            failure_policy: FailurePolicy::FailClosed,
            call_timeout: Duration::from_millis(250),
            max_wait: None,
            connections: 4,
            probe_interval: Duration::from_millis(100),
            local_fallback: None,
        }
    }
}

impl RedisOptions {
    /// Sets the failure policy.
    #[must_use]
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.failure_policy = policy;
        self
    }

    /// Sets the per-call timeout.
    #[must_use]
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Sets the longest wait an `acquire` accepts.
    #[must_use]
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = Some(max_wait);
        self
    }

    /// Sets how many connections the limiter uses.
    #[must_use]
    pub fn connections(mut self, connections: usize) -> Self {
        self.connections = connections;
        self
    }

    /// Sets how often an unanswering Redis is probed.
    #[must_use]
    pub fn probe_interval(mut self, interval: Duration) -> Self {
        self.probe_interval = interval;
        self
    }

    /// Falls back to an in-process bucket of `config` while Redis is down: sets the
    /// failure policy to [`FailurePolicy::Local`] and the bucket's limit.
    ///
    /// ```
    /// use aegeantic::resilience::{RateLimitConfig, RateLimiter, RedisOptions};
    ///
    /// // 100 per second shared by 4 processes: each takes a quarter while Redis is down.
    /// let shared = RateLimitConfig {
    ///     requests_per_second: Some(100.0),
    ///     burst_size: 20,
    ///     ..RateLimitConfig::default()
    /// };
    /// let quarter = RateLimitConfig {
    ///     requests_per_second: Some(25.0),
    ///     burst_size: 5,
    ///     ..RateLimitConfig::default()
    /// };
    /// let options = RedisOptions::default().local_fallback(quarter);
    /// let limiter = RateLimiter::redis_with("redis://127.0.0.1/", "api", shared, options)?;
    /// # Ok::<(), aegeantic::resilience::ConfigError>(())
    /// ```
    #[must_use]
    pub fn local_fallback(mut self, config: RateLimitConfig) -> Self {
        self.failure_policy = FailurePolicy::Local;
        self.local_fallback = Some(config);
        self
    }
}
