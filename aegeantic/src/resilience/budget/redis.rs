//! The Redis backend of [`RetryBudget`]: one budget earned and spent by every process that
//! names the same key.
//!
//! A retry's decision cannot wait for Redis: the retry loops ask synchronously. So each
//! process keeps a few retries fetched ahead (its allotment) and decides from it at once,
//! and one task of its own per budget (while it is in use) calls `budget.lua` at most every
//! [`sync_interval`](RedisBudgetOptions::sync_interval): it hands over the requests counted
//! since the last call (each earning `ratio` in the shared balance) and tops the allotment
//! up, to as many retries as it was asked for in the last interval (at least `prefetch`),
//! from the balance, then from the shared reserve. Retries the fleet takes are therefore
//! what the fleet earned, plus at most the allotments held unused.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

use redis::RedisError;
use tokio::sync::Notify;

use super::RetryBudget;
use crate::resilience::limiter::redis::connection::{Connection, Lua, Target};
use crate::resilience::{ConfigError, FailurePolicy};

static BUDGET: LazyLock<Lua> = LazyLock::new(|| Lua::new("budget", include_str!("budget.lua")));

/// What the script counts exactly: a balance or rate past it is this much.
const LARGEST: f64 = (1u64 << 52) as f64;

/// Settings of a [`RetryBudget::redis`] beyond its ratio.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RedisBudgetOptions {
    /// What decides while Redis does not answer (default: [`FailurePolicy::Local`], an
    /// in-process budget of the same settings, fed by this process's requests all along);
    /// fail closed refuses every retry, fail open allows every retry.
    pub failure_policy: FailurePolicy,
    /// The longest a Redis call may take (default 250 ms).
    pub call_timeout: Duration,
    /// The shortest time between two calls of one process (default 10 ms).
    pub sync_interval: Duration,
    /// How many retries a process keeps fetched ahead at least (default 2); a process
    /// that asked for more in the last sync interval fetches as many as it asked for.
    /// What the processes hold unused when their retries stop is what the fleet can
    /// overspend.
    pub prefetch: u64,
}

impl Default for RedisBudgetOptions {
    fn default() -> Self {
        RedisBudgetOptions {
            failure_policy: FailurePolicy::Local,
            call_timeout: Duration::from_millis(250),
            sync_interval: Duration::from_millis(10),
            prefetch: 2,
        }
    }
}

impl RedisBudgetOptions {
    /// Sets the failure policy.
    #[must_use]
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.failure_policy = policy;
        self
    }

    /// Sets the shortest time between two calls.
    #[must_use]
    pub fn sync_interval(mut self, interval: Duration) -> Self {
        self.sync_interval = interval;
        self
    }

    /// Sets how many retries a process fetches ahead.
    #[must_use]
    pub fn prefetch(mut self, retries: u64) -> Self {
        self.prefetch = retries;
        self
    }
}

/// The shared part of a Redis-backed [`RetryBudget`].
pub(crate) struct SharedBudget {
    connection: Connection,
    options: RedisBudgetOptions,
    /// Retries fetched and not yet taken.
    allotment: AtomicU64,
    /// Requests not yet handed to Redis.
    deposits: AtomicU64,
    /// Retries asked for since the last call: the next call fetches as many.
    demand: AtomicU64,
    /// The earned balance Redis last reported, in millionths.
    balance: AtomicU64,
    /// Set by a failed call, cleared by a successful one.
    down: AtomicBool,
    running: AtomicBool,
    /// Wakes the task; its own `Arc`, so that a waiting task keeps nothing else alive.
    wake: Arc<Notify>,
}

impl SharedBudget {
    pub(crate) fn new(
        target: Target<'_>,
        key: &str,
        options: RedisBudgetOptions,
    ) -> Result<Arc<Self>, ConfigError> {
        if options.call_timeout.is_zero() {
            return Err(ConfigError::ZeroCallTimeout);
        }
        if options.sync_interval.is_zero() {
            return Err(ConfigError::ZeroTimeout {
                field: "sync_interval",
            });
        }
        let connection = Connection::new(
            target,
            format!("aegeantic:budget:{{{key}}}"),
            options.call_timeout,
            1,
        )?;
        Ok(Arc::new(SharedBudget {
            connection,
            options,
            allotment: AtomicU64::new(0),
            deposits: AtomicU64::new(0),
            demand: AtomicU64::new(0),
            balance: AtomicU64::new(0),
            down: AtomicBool::new(false),
            running: AtomicBool::new(false),
            wake: Arc::new(Notify::new()),
        }))
    }

    pub(crate) fn deposit(self: &Arc<Self>, budget: &RetryBudget) {
        self.deposits.fetch_add(1, Ordering::Relaxed);
        self.start(budget);
        self.wake.notify_one();
    }

    /// A retry from the allotment; while Redis is down, the policy that decides instead.
    pub(crate) fn try_withdraw(
        self: &Arc<Self>,
        budget: &RetryBudget,
    ) -> Result<bool, FailurePolicy> {
        self.start(budget);
        if self.down.load(Ordering::Relaxed) {
            return Err(self.options.failure_policy);
        }
        self.demand.fetch_add(1, Ordering::Relaxed);
        let taken = self
            .allotment
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if !taken {
            // Top up soon: the next retry may find one.
            self.wake.notify_one();
        }
        Ok(taken)
    }

    /// The allotment plus the fleet's earned balance as last reported.
    pub(crate) fn available(&self) -> f64 {
        let balance = self.balance.load(Ordering::Relaxed) / super::RETRY;
        (self.allotment.load(Ordering::Relaxed) + balance) as f64
    }

    pub(crate) fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// Starts the task on first use, in the caller's runtime; without one, every decision
    /// waits for a use inside a runtime.
    fn start(self: &Arc<Self>, budget: &RetryBudget) {
        if self.running.load(Ordering::Relaxed) || self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let settings = budget.settings();
                runtime.spawn(sync(Arc::downgrade(self), Arc::clone(&self.wake), settings));
            }
            Err(_) => self.running.store(false, Ordering::Release),
        }
    }

    async fn call(&self, deposits: u64, want: u64, settings: Settings) -> Result<(), RedisError> {
        let reply: Vec<i64> = self
            .connection
            .eval(&BUDGET, &[""], |cmd| {
                cmd.arg(deposits)
                    .arg(want)
                    .arg(settings.ratio)
                    .arg(settings.max_balance)
                    .arg(settings.per_second)
                    .arg(-1);
            })
            .await?;
        let [granted, balance] = reply[..] else {
            return Err(RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "the budget script answered other than 2 numbers",
            )));
        };
        self.allotment
            .fetch_add(u64::try_from(granted).unwrap_or(0), Ordering::AcqRel);
        self.balance
            .store(u64::try_from(balance).unwrap_or(0), Ordering::Relaxed);
        Ok(())
    }
}

impl Drop for SharedBudget {
    fn drop(&mut self) {
        // The task finds the budget gone and ends.
        self.wake.notify_one();
    }
}

/// The budget's settings in the script's units (millionths of a retry), each within what
/// the script counts exactly.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    pub(crate) ratio: u64,
    pub(crate) max_balance: u64,
    pub(crate) per_second: u64,
}

impl Settings {
    pub(crate) fn new(ratio: u64, max_balance: u64, min_per_second: f64) -> Self {
        let per_second = (min_per_second * super::RETRY as f64).min(LARGEST);
        Settings {
            ratio,
            max_balance: max_balance.min(LARGEST as u64),
            per_second: per_second as u64,
        }
    }
}

/// Hands deposits to Redis and keeps the allotment topped up, at most every sync interval,
/// while there is either to do; ends when the budget is gone.
async fn sync(budget: Weak<SharedBudget>, wake: Arc<Notify>, settings: Settings) {
    loop {
        let Some(this) = budget.upgrade() else {
            return;
        };
        let deposits = this.deposits.swap(0, Ordering::AcqRel);
        // What the last interval asked for, at least `prefetch`: the allotment follows
        // the process's demand.
        let asked = this.demand.swap(0, Ordering::AcqRel);
        let want = asked
            .max(this.options.prefetch)
            .saturating_sub(this.allotment.load(Ordering::Acquire));
        if deposits == 0 && want == 0 {
            drop(this);
            wake.notified().await;
            continue;
        }
        match this.call(deposits, want, settings).await {
            Ok(()) => {
                #[cfg(feature = "tracing")]
                if this.down.load(Ordering::Relaxed) {
                    tracing::info!(redis = %this.connection, "retry budget: redis answers again");
                }
                this.down.store(false, Ordering::Relaxed);
            }
            Err(error) => {
                // Counted when Redis answers again.
                this.deposits.fetch_add(deposits, Ordering::AcqRel);
                #[cfg(not(feature = "tracing"))]
                let _ = error;
                #[cfg(feature = "tracing")]
                if !this.down.load(Ordering::Relaxed) {
                    tracing::warn!(
                        error = %this.connection.describe(&error),
                        "retry budget: redis unavailable, the failure policy decides"
                    );
                }
                this.down.store(true, Ordering::Relaxed);
            }
        }
        let interval = this.options.sync_interval;
        drop(this);
        tokio::time::sleep(interval).await;
    }
}

impl fmt::Debug for SharedBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBudget")
            .field("redis", &format_args!("{}", self.connection))
            .field("options", &self.options)
            .field("allotment", &self.allotment.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}
