//! What a user sets on a Redis-backed concurrency limiter beyond its limit.

use std::time::Duration;

#[cfg(doc)]
use crate::resilience::ConcurrencyLimiter;
use crate::resilience::FailurePolicy;

/// Settings of a [`ConcurrencyLimiter::redis`] beyond its limit.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RedisConcurrencyOptions {
    /// What to do when Redis cannot answer (default: fail closed): [`FailurePolicy::FailClosed`]
    /// grants nothing until Redis answers again (`acquire` waits, `try_acquire` says no),
    /// [`FailurePolicy::FailOpen`] grants every request, and [`FailurePolicy::Local`]
    /// limits with an in-process limiter of [`local_max`](Self::local_max) slots.
    pub failure_policy: FailurePolicy,
    /// How long a held slot stays held after its holder stops renewing it, e.g. because
    /// its process died (default 3 s). Holders renew every third of it.
    pub lease: Duration,
    /// The longest a Redis call may take, connecting included (default 250 ms).
    pub call_timeout: Duration,
    /// How many multiplexed connections the limiter spreads its calls over (default 2),
    /// besides the one on which it waits for grants.
    pub connections: usize,
    /// How long to wait before asking Redis again after a failed call, while the failure
    /// policy keeps a request waiting (default 100 ms).
    pub probe_interval: Duration,
    /// The slots of the in-process limiter that [`FailurePolicy::Local`] falls back to
    /// (default: the shared limit itself; give each of N processes a 1/N share to keep the
    /// fleet within the shared limit while Redis is down).
    pub local_max: Option<usize>,
}

impl Default for RedisConcurrencyOptions {
    fn default() -> Self {
        RedisConcurrencyOptions {
            failure_policy: FailurePolicy::FailClosed,
            lease: Duration::from_secs(3),
            call_timeout: Duration::from_millis(250),
            connections: 2,
            probe_interval: Duration::from_millis(100),
            local_max: None,
        }
    }
}

impl RedisConcurrencyOptions {
    /// Sets the failure policy.
    #[must_use]
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.failure_policy = policy;
        self
    }

    /// Sets the lease.
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Sets the per-call timeout.
    #[must_use]
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Sets the interval between calls while Redis does not answer.
    #[must_use]
    pub fn probe_interval(mut self, interval: Duration) -> Self {
        self.probe_interval = interval;
        self
    }

    /// Falls back to an in-process limiter of `max` slots while Redis is down: sets the
    /// failure policy to [`FailurePolicy::Local`] and the limit.
    #[must_use]
    pub fn local_max(mut self, max: usize) -> Self {
        self.failure_policy = FailurePolicy::Local;
        self.local_max = Some(max);
        self
    }
}
