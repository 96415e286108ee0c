//! A circuit breaker: stop calling an upstream that keeps failing, probe it now and then,
//! and resume when it answers again.
//!
//! * **Closed**: calls go through; the outcomes of the last `window` calls are kept. Once at
//!   least `minimum_calls` are in and the failure ratio reaches `failure_ratio`, it opens.
//! * **Open**: calls fail at once, without touching the upstream, for `open_duration`.
//! * **Half-open**: up to `half_open_probes` calls go through as probes. If all succeed it
//!   closes with a fresh window; one failure opens it again.
//!
//! A call slower than `slow_call` counts as a failure even when it succeeds: an upstream
//! that answers in a minute is not healthy.

#[cfg(feature = "redis")]
mod redis;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::{ConfigError, Fallback};
#[cfg(feature = "redis")]
pub use redis::RedisBreakerOptions;

#[cfg(feature = "redis")]
use super::limiter::redis::connection::Target;

/// Where a breaker stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum CircuitState {
    /// Calls go through.
    Closed,
    /// Calls fail fast.
    Open,
    /// A few probe calls go through.
    HalfOpen,
}

impl CircuitState {
    /// The state as a metrics label.
    #[cfg(feature = "metrics")]
    pub(crate) fn label(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::HalfOpen => "half_open",
            CircuitState::Open => "open",
        }
    }

    /// The state as the value of the state gauge: 0 closed, 1 half-open, 2 open.
    #[cfg(feature = "metrics")]
    pub(crate) fn gauge(self) -> f64 {
        match self {
            CircuitState::Closed => 0.0,
            CircuitState::HalfOpen => 1.0,
            CircuitState::Open => 2.0,
        }
    }
}

/// A change of a breaker's state.
///
/// A shared breaker ([`CircuitBreaker::redis`]) also reports a change of the breaker that
/// decides: when Redis stops answering and its in-process breaker takes over, and when
/// the fleet's state decides again (`from` and `to` may then be the same state).
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Transition {
    /// The state before.
    pub from: CircuitState,
    /// The state after.
    pub to: CircuitState,
    /// The failure ratio of the window that caused it, when a window did.
    pub failure_ratio: Option<f64>,
    /// [`Fallback::Local`] when the state after is that of the in-process breaker standing
    /// in for a shared one whose Redis does not answer; `None` for the fleet's state, and
    /// for a breaker that is in-process only.
    pub fallback: Option<Fallback>,
}

/// The settings of a [`CircuitBreaker`].
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct CircuitBreakerConfig {
    /// Failures over calls in the window at which the breaker opens (default 0.5).
    pub failure_ratio: f64,
    /// How many recent calls the window holds (default 20).
    pub window: usize,
    /// Calls needed in the window before the ratio counts (default 10).
    pub minimum_calls: usize,
    /// How long the breaker stays open before probing (default 30 s).
    pub open_duration: Duration,
    /// Probe calls let through when half-open (default 3).
    pub half_open_probes: u32,
    /// Calls at least this slow count as failures (default: none).
    pub slow_call: Option<Duration>,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        CircuitBreakerConfig {
            failure_ratio: 0.5,
            window: 20,
            minimum_calls: 10,
            open_duration: Duration::from_secs(30),
            half_open_probes: 3,
            slow_call: None,
        }
    }
}

impl CircuitBreakerConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field| Err(ConfigError::InvalidCircuitBreaker { field });
        if !(self.failure_ratio > 0.0 && self.failure_ratio <= 1.0) {
            return invalid("failure_ratio");
        }
        if self.window == 0 {
            return invalid("window");
        }
        if self.minimum_calls == 0 || self.minimum_calls > self.window {
            return invalid("minimum_calls");
        }
        if self.open_duration.is_zero() {
            return invalid("open_duration");
        }
        if self.half_open_probes == 0 {
            return invalid("half_open_probes");
        }
        if self.slow_call.is_some_and(|slow| slow.is_zero()) {
            return invalid("slow_call");
        }
        Ok(())
    }
}

/// The breaker refused a call: it is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("circuit open: upstream failing; next probe in {retry_in:?}")]
#[non_exhaustive]
pub struct CircuitOpen {
    /// How long until the breaker lets a probe through.
    pub retry_in: Duration,
    /// [`Fallback::Local`] when the in-process breaker standing in for a shared one (its
    /// Redis does not answer) refused; `None` when the fleet's state did, or a breaker
    /// that is in-process only.
    pub fallback: Option<Fallback>,
}

/// A circuit breaker shared by cloning: every stream holding a clone feeds and obeys the
/// same state.
///
/// ```
/// use std::time::Duration;
/// use aegeantic::resilience::{CircuitBreaker, CircuitBreakerConfig, CircuitState};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let breaker = CircuitBreaker::new(CircuitBreakerConfig {
///     window: 4,
///     minimum_calls: 4,
///     ..CircuitBreakerConfig::default()
/// })?;
/// for _ in 0..4 {
///     let (call, _) = breaker.try_call()?;
///     call.failure();
/// }
/// assert_eq!(breaker.state(), CircuitState::Open);
/// assert!(breaker.try_call().is_err());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct CircuitBreaker {
    /// The breaker itself in-process; for a fleet's, the one that decides while Redis
    /// does not answer.
    shared: Arc<Shared>,
    #[cfg(feature = "redis")]
    fleet: Option<Arc<redis::FleetBreaker>>,
}

#[derive(Debug)]
struct Shared {
    config: CircuitBreakerConfig,
    state: Mutex<Breaker>,
}

#[derive(Debug)]
struct Breaker {
    state: CircuitState,
    /// Outcomes of recent calls, `true` for a failure.
    window: VecDeque<bool>,
    failures: usize,
    /// When an open breaker lets a probe through; `None`: an `open_duration` past what the
    /// clock can represent, which keeps it open for good.
    open_until: Option<Instant>,
    probes_started: u32,
    probes_succeeded: u32,
    /// Bumped on every transition, so that a call started in one period cannot change
    /// the state of a later one.
    generation: u64,
}

/// Permission for one call. Report how it went with [`success`](Call::success) or
/// [`failure`](Call::failure); dropping it unreported counts for nothing (a cancelled call
/// says nothing about the upstream) and frees its probe slot.
#[derive(Debug)]
#[must_use = "report the call's outcome, or drop the permit if it was cancelled"]
pub struct Call {
    breaker: CircuitBreaker,
    started: Instant,
    generation: u64,
    probe: bool,
    reported: bool,
    /// Set when the fleet's breaker gave the permission: the outcome goes there.
    #[cfg(feature = "redis")]
    fleet: Option<redis::Permission>,
}

impl CircuitBreaker {
    /// A closed breaker.
    ///
    /// # Errors
    /// [`ConfigError::InvalidCircuitBreaker`] naming the field: a ratio outside `(0, 1]`,
    /// an empty window, `minimum_calls` of 0 or above the window, a zero open duration,
    /// zero probes or a zero slow-call threshold.
    pub fn new(config: CircuitBreakerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let window = VecDeque::with_capacity(config.window);
        Ok(CircuitBreaker {
            shared: Arc::new(Shared {
                config,
                state: Mutex::new(Breaker {
                    state: CircuitState::Closed,
                    window,
                    failures: 0,
                    open_until: None,
                    probes_started: 0,
                    probes_succeeded: 0,
                    generation: 0,
                }),
            }),
            #[cfg(feature = "redis")]
            fleet: None,
        })
    }

    /// A breaker shared by every process that uses the same URL, key and config: the
    /// outcomes of every process's calls count in one window in Redis, the state changes
    /// once for everyone (in one script), and while half-open the fleet as a whole sends
    /// at most `half_open_probes` probes.
    ///
    /// Permissions stay synchronous and take no Redis round trip: each process decides
    /// from its copy of the fleet's state. A task of its own reports each failure as soon
    /// as its previous call of the script has returned (successes at most every
    /// [`sync_interval`](RedisBreakerOptions::sync_interval), 10 ms by default), and every
    /// process hears each change of state, and each failure added to the fleet's window,
    /// on a channel the script publishes to (`aegeantic:breaker:{key}:transitions`). So
    /// an opening reaches every process within a hop of Redis, and a process refuses calls
    /// once the failures it has heard of, with its own not yet reported, reach the ratio.
    /// Processes whose calls fail within that hop of each other each start calls before
    /// they hear of the others' failures, as many as an in-process breaker lets through
    /// before it opens. Transitions are returned with the next permission each process
    /// gets ([`try_call`](Self::try_call)), not by [`Call::success`] or [`Call::failure`].
    /// A process that wants a half-open probe is refused (with a `retry_in` of zero) until
    /// the fleet has granted it one.
    ///
    /// While Redis does not answer, an in-process breaker of the same config decides,
    /// starting closed at each switch ([`is_shared`](Self::is_shared) says which), and the
    /// task asks Redis again every [`probe_interval`](RedisBreakerOptions::probe_interval).
    /// The switch is returned as a [`Transition`] with the next permission (from the
    /// fleet's state as last seen to the in-process breaker's, `fallback` set), and so is
    /// the return (from the in-process breaker's state to the fleet's, `fallback` `None`);
    /// the in-process breaker's own transitions and refusals carry `fallback` too.
    ///
    /// # Errors
    /// As [`new`](Self::new), an unparsable URL, and a zero call timeout, sync interval,
    /// probe interval or probe lease.
    #[cfg(feature = "redis")]
    pub fn redis(
        url: &str,
        key: &str,
        config: CircuitBreakerConfig,
        options: RedisBreakerOptions,
    ) -> Result<Self, ConfigError> {
        let mut breaker = Self::new(config.clone())?;
        let target = Target::Node(url);
        breaker.fleet = Some(redis::FleetBreaker::new(target, key, config, options)?);
        Ok(breaker)
    }

    /// [`CircuitBreaker::redis`] on a Redis Cluster: `nodes` are the URLs of some of its
    /// nodes (one that answers is enough; the client learns the rest and follows the
    /// cluster as slots move and replicas are promoted). The breaker's keys share one hash
    /// tag, so each call of its script runs on the master of that slot; its subscription
    /// is to any node that answers, since a cluster forwards what is published to every
    /// node.
    ///
    /// # Errors
    /// As [`redis`](Self::redis), and [`ConfigError::NoClusterNodes`] for an empty list.
    #[cfg(feature = "redis")]
    pub fn redis_cluster<S: AsRef<str>>(
        nodes: &[S],
        key: &str,
        config: CircuitBreakerConfig,
        options: RedisBreakerOptions,
    ) -> Result<Self, ConfigError> {
        let mut breaker = Self::new(config.clone())?;
        let nodes: Vec<&str> = nodes.iter().map(AsRef::as_ref).collect();
        let target = Target::Cluster(&nodes);
        breaker.fleet = Some(redis::FleetBreaker::new(target, key, config, options)?);
        Ok(breaker)
    }

    /// Whether the fleet's breaker in Redis decides now: `false` for an in-process
    /// breaker, and for a shared one while Redis does not answer.
    pub fn is_shared(&self) -> bool {
        #[cfg(feature = "redis")]
        if let Some(fleet) = &self.fleet {
            return fleet.is_up();
        }
        false
    }

    /// The state now (an open breaker whose time is up reads as half-open).
    pub fn state(&self) -> CircuitState {
        #[cfg(feature = "redis")]
        if let Some(state) = self.fleet.as_ref().and_then(|fleet| fleet.state()) {
            return state;
        }
        let breaker = self.lock();
        if breaker.state == CircuitState::Open
            && breaker
                .open_until
                .is_some_and(|until| Instant::now() >= until)
        {
            CircuitState::HalfOpen
        } else {
            breaker.state
        }
    }

    /// The refusal a call would meet `delay` from now, if the breaker is open and stays
    /// open until then.
    pub(crate) fn open_past(&self, delay: Duration) -> Option<CircuitOpen> {
        #[cfg(feature = "redis")]
        if let Some(open) = self.fleet.as_ref().and_then(|fleet| fleet.open_past(delay)) {
            return open;
        }
        let breaker = self.lock();
        if breaker.state != CircuitState::Open {
            return None;
        }
        let retry_in = breaker.open_until.map_or(Duration::MAX, |until| {
            until.saturating_duration_since(Instant::now())
        });
        let fallback = self.fallback();
        (retry_in > delay).then_some(CircuitOpen { retry_in, fallback })
    }

    /// What the in-process breaker stands for when it decides: itself, or the fallback of
    /// a shared one.
    fn fallback(&self) -> Option<Fallback> {
        #[cfg(feature = "redis")]
        if self.fleet.is_some() {
            return Some(Fallback::Local);
        }
        None
    }

    /// Asks to make a call. Returns the permit, and the transition this caused (an open
    /// breaker whose time is up turns half-open).
    ///
    /// # Errors
    /// [`CircuitOpen`] while open, or while half-open with all probes out.
    pub fn try_call(&self) -> Result<(Call, Option<Transition>), CircuitOpen> {
        let now = Instant::now();
        #[cfg(feature = "redis")]
        let mut switched = None;
        #[cfg(feature = "redis")]
        if let Some(fleet) = &self.fleet {
            match fleet.try_call() {
                redis::Decision::Shared(decided) => {
                    let grant = decided?;
                    let transition = if grant.returned {
                        // The fleet's state takes over from the in-process breaker's.
                        Some(Transition {
                            from: self.lock().state,
                            to: grant.state,
                            failure_ratio: grant.transition.and_then(|t| t.failure_ratio),
                            fallback: None,
                        })
                    } else {
                        grant.transition
                    };
                    let call = Call {
                        breaker: self.clone(),
                        started: now,
                        generation: grant.permission.generation,
                        probe: grant.permission.probe.is_some(),
                        reported: false,
                        fleet: Some(grant.permission),
                    };
                    return Ok((call, transition));
                }
                redis::Decision::Fallback(switch) => switched = switch,
            }
        }
        let fallback = self.fallback();
        let mut breaker = self.lock();
        let mut transition = None;
        #[cfg(feature = "redis")]
        if let Some(from) = switched {
            // The in-process breaker takes over, closed: the fleet's state says nothing of
            // what this process alone will see.
            breaker.enter(CircuitState::Closed, None);
            transition = Some(Transition {
                from,
                to: CircuitState::Closed,
                failure_ratio: None,
                fallback,
            });
        }
        if breaker.state == CircuitState::Open {
            match breaker.open_until {
                Some(until) if now >= until => {}
                until => {
                    return Err(CircuitOpen {
                        retry_in: until.map_or(Duration::MAX, |until| until - now),
                        fallback,
                    })
                }
            }
            transition = Some(Transition {
                fallback,
                ..breaker.enter(CircuitState::HalfOpen, None)
            });
        }
        let probe = breaker.state == CircuitState::HalfOpen;
        if probe {
            if breaker.probes_started >= self.shared.config.half_open_probes {
                return Err(CircuitOpen {
                    retry_in: Duration::ZERO,
                    fallback,
                });
            }
            breaker.probes_started += 1;
        }
        let call = Call {
            breaker: self.clone(),
            started: now,
            generation: breaker.generation,
            probe,
            reported: false,
            #[cfg(feature = "redis")]
            fleet: None,
        };
        Ok((call, transition))
    }

    /// The configuration.
    pub fn config(&self) -> &CircuitBreakerConfig {
        &self.shared.config
    }

    fn record(&self, call: &Call, failed: bool) -> Option<Transition> {
        let config = &self.shared.config;
        let slow = config
            .slow_call
            .is_some_and(|slow| call.started.elapsed() >= slow);
        let failed = failed || slow;
        #[cfg(feature = "redis")]
        if let (Some(fleet), Some(permission)) = (&self.fleet, &call.fleet) {
            fleet.record(permission, failed);
            return None;
        }
        let fallback = self.fallback();
        let mut breaker = self.lock();
        if breaker.generation != call.generation {
            return None;
        }
        let transition = match breaker.state {
            CircuitState::HalfOpen if failed => Some(breaker.open(config, None)),
            CircuitState::HalfOpen => {
                breaker.probes_succeeded += 1;
                (breaker.probes_succeeded >= config.half_open_probes)
                    .then(|| breaker.enter(CircuitState::Closed, None))
            }
            CircuitState::Closed => {
                if breaker.window.len() == config.window && breaker.window.pop_front() == Some(true)
                {
                    breaker.failures -= 1;
                }
                breaker.window.push_back(failed);
                breaker.failures += usize::from(failed);
                let calls = breaker.window.len();
                let ratio = breaker.failures as f64 / calls as f64;
                (calls >= config.minimum_calls && ratio >= config.failure_ratio)
                    .then(|| breaker.open(config, Some(ratio)))
            }
            CircuitState::Open => None,
        };
        drop(breaker);
        // A call the in-process breaker allowed may end after the fleet's state decides
        // again: the in-process breaker's changes are then no one's concern.
        if fallback.is_some() && self.is_shared() {
            return None;
        }
        transition.map(|transition| Transition {
            fallback,
            ..transition
        })
    }

    /// A probe permit dropped unreported gives its slot back.
    fn release(&self, call: &Call) {
        #[cfg(feature = "redis")]
        if let (Some(fleet), Some(permission)) = (&self.fleet, &call.fleet) {
            fleet.release(permission);
            return;
        }
        let mut breaker = self.lock();
        if call.probe && breaker.generation == call.generation {
            breaker.probes_started -= 1;
        }
    }

    fn lock(&self) -> MutexGuard<'_, Breaker> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Breaker {
    fn open(&mut self, config: &CircuitBreakerConfig, ratio: Option<f64>) -> Transition {
        self.open_until = Instant::now().checked_add(config.open_duration);
        self.enter(CircuitState::Open, ratio)
    }

    fn enter(&mut self, to: CircuitState, failure_ratio: Option<f64>) -> Transition {
        let from = self.state;
        self.state = to;
        self.generation += 1;
        self.window.clear();
        self.failures = 0;
        self.probes_started = 0;
        self.probes_succeeded = 0;
        Transition {
            from,
            to,
            failure_ratio,
            fallback: None,
        }
    }
}

impl Call {
    /// Starts timing the call from now, for the slow-call threshold.
    pub(crate) fn restart_clock(&mut self) {
        self.started = Instant::now();
    }

    /// The call succeeded (it still counts as a failure if slower than `slow_call`).
    pub fn success(mut self) -> Option<Transition> {
        self.reported = true;
        self.breaker.record(&self, false)
    }

    /// The call failed.
    pub fn failure(mut self) -> Option<Transition> {
        self.reported = true;
        self.breaker.record(&self, true)
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.reported {
            self.breaker.release(self);
        }
    }
}

#[cfg(test)]
mod tests;
