//! Retry budgets: retries as a fraction of traffic, shared by every stream that draws on
//! the budget, so that an outage does not multiply load.
//!
//! A per-stream attempt cap still lets every request retry: with 3 attempts a dead
//! upstream receives 3x its normal traffic exactly when it can least take it. A budget
//! caps retries across all requests instead: each new request deposits `ratio` tokens,
//! each retry withdraws one, and a small reserve refilled over time keeps retries possible
//! when traffic is thin. The idea is gRPC's retry throttling and Finagle's `RetryBudget`;
//! with a 10 % budget a fully failing upstream sees about 1.1x load.

#[cfg(feature = "redis")]
mod redis;

use std::sync::{Arc, Mutex, PoisonError};

use tokio::time::Instant;

use super::{ConfigError, Fallback};
#[cfg(feature = "redis")]
pub use redis::RedisBudgetOptions;

#[cfg(feature = "redis")]
use super::limiter::redis::connection::Target;

/// A retry budget shared by cloning.
///
/// ```
/// use aegeantic::resilience::RetryBudget;
///
/// let budget = RetryBudget::new(0.1)?.min_retries_per_second(0.0)?;
/// for _ in 0..10 {
///     budget.deposit();
/// }
/// assert!(budget.try_withdraw()); // 10 requests earned one retry
/// assert!(!budget.try_withdraw());
/// # Ok::<(), aegeantic::resilience::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct RetryBudget {
    /// The budget itself in-process; for a shared one, its settings and the fallback of
    /// [`FailurePolicy::Local`](crate::resilience::FailurePolicy::Local).
    state: Arc<Mutex<State>>,
    #[cfg(feature = "redis")]
    shared: Option<Arc<redis::SharedBudget>>,
}

/// One retry, in the integer units the balance counts in: deposits of 0.1 must add up to
/// exactly 1 after ten requests.
const RETRY: u64 = 1_000_000;

#[derive(Debug)]
struct State {
    /// Earned per request, in millionths of a retry.
    ratio: u64,
    /// Retries earned by requests, in millionths, at most `max_balance`.
    balance: u64,
    max_balance: u64,
    /// A second bucket, refilled over time at `min_per_second`, holding one second's worth.
    reserve: f64,
    min_per_second: f64,
    refilled_at: Instant,
}

impl RetryBudget {
    /// A budget allowing retries worth `ratio` of new requests (0.1 = 10 %), with the
    /// defaults of a reserve of 10 retries per second and at most 100 saved-up retries.
    ///
    /// # Errors
    /// [`ConfigError::InvalidRetryBudget`] unless `ratio` is finite and in `[0, 1]`.
    pub fn new(ratio: f64) -> Result<Self, ConfigError> {
        check("ratio", ratio, 1.0)?;
        Ok(RetryBudget {
            state: Arc::new(Mutex::new(State {
                ratio: (ratio * RETRY as f64).round() as u64,
                balance: 0,
                max_balance: 100 * RETRY,
                reserve: 10.0,
                min_per_second: 10.0,
                refilled_at: Instant::now(),
            })),
            #[cfg(feature = "redis")]
            shared: None,
        })
    }

    /// A budget shared by every process that uses the same URL and key: requests from the
    /// whole fleet earn retries in one balance in Redis, and the fleet's retries draw on
    /// it, so that N processes retry like one (with a 10 % budget, about 1.1 times the
    /// fleet's traffic at 100 % failure, not N times one process's reserve and savings).
    /// The reserve ([`min_retries_per_second`](Self::min_retries_per_second)) and the
    /// savings cap ([`max_balance`](Self::max_balance)) are the fleet's too; set them
    /// before first use.
    ///
    /// Decisions stay synchronous and take no Redis round trip: each process fetches
    /// retries ahead, as many as it was asked for in the last
    /// [`sync_interval`](RedisBudgetOptions::sync_interval) (at least
    /// [`prefetch`](RedisBudgetOptions::prefetch)), and hands its requests over at most
    /// every interval, in a task of its own. The fleet may so overspend by what its
    /// processes hold unused when their retries stop, and a process may refuse a retry the
    /// fleet could afford until its next call. Measured: 4 processes × 16 tasks against an
    /// upstream failing every call for 2 s, 3 attempts each: 1.100 attempts per request
    /// with a shared 10 % budget, 3.000 with none, about 640 Redis calls in all. While Redis does not answer, the
    /// [`failure_policy`](RedisBudgetOptions::failure_policy) decides (by default the
    /// in-process budget this one also keeps; [`is_shared`](Self::is_shared) says which),
    /// and the stream's events and errors say so: a retry it allowed has
    /// [`RetryEvent::budget_fallback`](crate::events::RetryEvent::budget_fallback) set,
    /// and the in-process budget's refusal is a
    /// [`RetryBudgetExhausted`](crate::resilience::ResilienceError::RetryBudgetExhausted)
    /// with `fallback` set.
    ///
    /// # Errors
    /// As [`new`](Self::new), an unparsable URL, and a zero call timeout or sync
    /// interval.
    #[cfg(feature = "redis")]
    pub fn redis(
        url: &str,
        key: &str,
        ratio: f64,
        options: RedisBudgetOptions,
    ) -> Result<Self, ConfigError> {
        let mut budget = Self::new(ratio)?;
        let target = Target::Node(url);
        budget.shared = Some(redis::SharedBudget::new(target, key, options)?);
        Ok(budget)
    }

    /// [`RetryBudget::redis`] on a Redis Cluster: `nodes` are the URLs of some of its
    /// nodes (one that answers is enough; the client learns the rest and follows the
    /// cluster as slots move and replicas are promoted). The budget is one key, so each
    /// call of its script runs on the master of its slot.
    ///
    /// # Errors
    /// As [`redis`](Self::redis), and [`ConfigError::NoClusterNodes`] for an empty list.
    #[cfg(feature = "redis")]
    pub fn redis_cluster<S: AsRef<str>>(
        nodes: &[S],
        key: &str,
        ratio: f64,
        options: RedisBudgetOptions,
    ) -> Result<Self, ConfigError> {
        let mut budget = Self::new(ratio)?;
        let nodes: Vec<&str> = nodes.iter().map(AsRef::as_ref).collect();
        let target = Target::Cluster(&nodes);
        budget.shared = Some(redis::SharedBudget::new(target, key, options)?);
        Ok(budget)
    }

    /// Whether decisions come from the shared budget in Redis now: `false` for an
    /// in-process budget, and for a shared one while Redis does not answer.
    pub fn is_shared(&self) -> bool {
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.shared {
            return !shared.is_down();
        }
        false
    }

    /// The settings in the shared script's units.
    #[cfg(feature = "redis")]
    fn settings(&self) -> redis::Settings {
        let state = self.lock();
        redis::Settings::new(state.ratio, state.max_balance, state.min_per_second)
    }

    /// Retries per second allowed whatever the traffic (default 10), so that a quiet
    /// service can still retry; the reserve holds one second's worth.
    ///
    /// # Errors
    /// [`ConfigError::InvalidRetryBudget`] unless finite and not negative.
    pub fn min_retries_per_second(self, per_second: f64) -> Result<Self, ConfigError> {
        check("min_retries_per_second", per_second, f64::MAX)?;
        {
            let mut state = self.lock();
            state.min_per_second = per_second;
            state.reserve = per_second;
        }
        Ok(self)
    }

    /// How many earned retries can be saved up (default 100), bounding the burst of
    /// retries after a long healthy period.
    ///
    /// # Errors
    /// [`ConfigError::InvalidRetryBudget`] unless finite and at least 1.
    pub fn max_balance(self, max_balance: f64) -> Result<Self, ConfigError> {
        check("max_balance", max_balance, f64::MAX)?;
        if max_balance < 1.0 {
            return Err(ConfigError::InvalidRetryBudget {
                field: "max_balance",
                value: max_balance,
            });
        }
        self.lock().max_balance = (max_balance * RETRY as f64) as u64;
        Ok(self)
    }

    /// Records a new request (a first attempt), earning `ratio` of a retry.
    pub fn deposit(&self) {
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.shared {
            shared.deposit(self);
        }
        let mut state = self.lock();
        state.balance = (state.balance + state.ratio).min(state.max_balance);
    }

    /// Takes one retry from the budget; `false` when it is spent and the retry must not
    /// happen.
    pub fn try_withdraw(&self) -> bool {
        self.withdraw().0
    }

    /// [`try_withdraw`](Self::try_withdraw), and, for a shared budget whose Redis does not
    /// answer, how its failure policy decided: [`Fallback::Local`] by the in-process
    /// budget, [`Fallback::FailOpen`] unchecked. A fail-closed budget's refusals then
    /// come with `None`, as the shared budget's do.
    pub(crate) fn withdraw(&self) -> (bool, Option<Fallback>) {
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.shared {
            return match shared.try_withdraw(self) {
                Ok(taken) => (taken, None),
                Err(crate::resilience::FailurePolicy::FailClosed) => (false, None),
                Err(crate::resilience::FailurePolicy::FailOpen) => (true, Some(Fallback::FailOpen)),
                Err(crate::resilience::FailurePolicy::Local) => {
                    (self.withdraw_here(), Some(Fallback::Local))
                }
            };
        }
        (self.withdraw_here(), None)
    }

    /// [`try_withdraw`](Self::try_withdraw) from the in-process budget.
    fn withdraw_here(&self) -> bool {
        let mut state = self.lock();
        if state.balance >= RETRY {
            state.balance -= RETRY;
            return true;
        }
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(state.refilled_at);
        state.reserve = (state.reserve + elapsed.as_secs_f64() * state.min_per_second)
            .min(state.min_per_second);
        state.refilled_at = now;
        if state.reserve >= 1.0 {
            state.reserve -= 1.0;
            return true;
        }
        false
    }

    /// Retries that could be taken now: the earned balance plus the reserve (for a shared
    /// budget, this process's allotment plus the fleet's balance as last reported).
    pub fn available(&self) -> f64 {
        #[cfg(feature = "redis")]
        if let Some(shared) = self.shared.as_ref().filter(|shared| !shared.is_down()) {
            return shared.available();
        }
        let state = self.lock();
        let elapsed = Instant::now().saturating_duration_since(state.refilled_at);
        let reserve = (state.reserve + elapsed.as_secs_f64() * state.min_per_second)
            .min(state.min_per_second);
        (state.balance / RETRY) as f64 + reserve.floor()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn check(field: &'static str, value: f64, max: f64) -> Result<(), ConfigError> {
    if value.is_finite() && (0.0..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::InvalidRetryBudget { field, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_failing_upstream_gets_at_most_the_ratio_plus_the_reserve() {
        let budget = RetryBudget::new(0.1)
            .unwrap()
            .min_retries_per_second(5.0)
            .unwrap();
        let mut retries = 0;
        for _ in 0..10_000 {
            budget.deposit();
            // Every attempt fails; each request would retry twice more.
            for _ in 0..2 {
                if budget.try_withdraw() {
                    retries += 1;
                } else {
                    break;
                }
            }
        }
        // No time passed: the reserve gave its initial second's worth only.
        assert!(retries <= 1_000 + 5, "{retries}");
        assert!(retries >= 1_000, "{retries}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_reserve_refills_over_time() {
        let budget = RetryBudget::new(0.0)
            .unwrap()
            .min_retries_per_second(2.0)
            .unwrap();
        assert!(budget.try_withdraw());
        assert!(budget.try_withdraw());
        assert!(!budget.try_withdraw());
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(budget.try_withdraw());
        assert!(!budget.try_withdraw());
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(
            budget.available(),
            2.0,
            "the reserve holds one second's worth"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn savings_are_capped() {
        let budget = RetryBudget::new(1.0)
            .unwrap()
            .min_retries_per_second(0.0)
            .unwrap()
            .max_balance(3.0)
            .unwrap();
        for _ in 0..100 {
            budget.deposit();
        }
        assert_eq!(budget.available(), 3.0);
    }

    #[test]
    fn bad_parameters_are_errors() {
        assert!(RetryBudget::new(-0.1).is_err());
        assert!(RetryBudget::new(1.5).is_err());
        assert!(RetryBudget::new(f64::NAN).is_err());
        let budget = RetryBudget::new(0.1).unwrap();
        assert!(budget.clone().min_retries_per_second(-1.0).is_err());
        assert!(budget.max_balance(0.5).is_err());
    }
}
