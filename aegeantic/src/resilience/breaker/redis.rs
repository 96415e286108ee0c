//! The Redis backend of [`CircuitBreaker`]: one breaker for every process that names the
//! same key.
//!
//! `breaker.lua` holds the state, the window and the probes out, and makes every change of
//! state in one script, so the fleet changes state once, together. A call's permission
//! cannot wait for Redis (the retry loops ask synchronously), so each process decides from
//! its copy of the fleet's state, kept by two tasks of its own per breaker (while it is in
//! use). One calls the script: it reports the outcomes since its last call and brings
//! back the state, at once for a failure or a probe's outcome, else at most every
//! [`sync_interval`](RedisBreakerOptions::sync_interval). The other subscribes to a
//! channel on which the script publishes every change of state and every failure added to
//! the closed window, so that an opening reaches every process within a hop of Redis, and
//! each process counts the fleet's failures towards its own refusals as they come. A
//! half-open breaker's probes are granted by the script, so the fleet as a whole sends at
//! most `half_open_probes`: a process that wants one is refused until its task has got
//! one. Transitions reach each process with its next call's permission.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use redis::RedisError;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::{CircuitBreakerConfig, CircuitOpen, CircuitState, Transition};
use crate::resilience::limiter::redis::connection::{Connection, Lua, Target};
use crate::resilience::ConfigError;

mod listen;

static BREAKER: LazyLock<Lua> = LazyLock::new(|| Lua::new("breaker", include_str!("breaker.lua")));
const KEYS: [&str; 3] = [":state", ":window", ":probes"];

/// What the script counts exactly: a duration past it is this long.
const LONGEST_US: u64 = 1 << 52;

/// Settings of a [`CircuitBreaker::redis`](super::CircuitBreaker::redis) beyond its
/// config.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RedisBreakerOptions {
    /// The longest a Redis call may take (default 250 ms).
    pub call_timeout: Duration,
    /// The shortest time between two calls of one process that has only successes to
    /// report (default 10 ms); a failure or a probe's outcome is reported as soon as the
    /// previous call has returned. Changes of state reach a process sooner, as the script
    /// publishes them; this bounds how stale its copy may be should a message be lost.
    pub sync_interval: Duration,
    /// How often a process whose Redis does not answer asks it again (default 100 ms).
    pub probe_interval: Duration,
    /// How long a half-open probe counts as out when its holder never reports it, e.g.
    /// because its process died (default 30 s).
    pub probe_lease: Duration,
}

impl Default for RedisBreakerOptions {
    fn default() -> Self {
        RedisBreakerOptions {
            call_timeout: Duration::from_millis(250),
            sync_interval: Duration::from_millis(10),
            probe_interval: Duration::from_millis(100),
            probe_lease: Duration::from_secs(30),
        }
    }
}

impl RedisBreakerOptions {
    /// Sets the shortest time between two calls.
    #[must_use]
    pub fn sync_interval(mut self, interval: Duration) -> Self {
        self.sync_interval = interval;
        self
    }

    /// Sets how long an unreported probe counts as out.
    #[must_use]
    pub fn probe_lease(mut self, lease: Duration) -> Self {
        self.probe_lease = lease;
        self
    }
}

/// The shared part of a Redis-backed [`CircuitBreaker`](super::CircuitBreaker).
pub(crate) struct FleetBreaker {
    connection: Connection,
    /// For the subscription to the transitions, which takes a connection of its own: the
    /// node, or the cluster's nodes to try in turn.
    clients: Vec<redis::Client>,
    channel: String,
    /// The task that hears transitions; it waits on the subscription, so it is stopped
    /// when the breaker goes.
    listener: Mutex<Option<AbortHandle>>,
    config: CircuitBreakerConfig,
    options: RedisBreakerOptions,
    owner: String,
    next_probe: AtomicU64,
    view: Mutex<View>,
    running: AtomicBool,
    /// Wakes the task; its own `Arc`, so that a waiting task keeps nothing else alive.
    wake: Arc<Notify>,
    /// Cuts the task's pause short: this process's outcomes say the breaker opens, and
    /// the fleet should know at once.
    urgent: Arc<Notify>,
}

/// This process's copy of the fleet's breaker, and what it has to tell the fleet.
struct View {
    state: CircuitState,
    generation: u64,
    /// When an open breaker lets a probe through; `None` while not open, or never.
    open_until: Option<Instant>,
    /// A change of state not yet reported to a caller.
    transition: Option<Transition>,
    /// Reports for the script (see `breaker.lua`).
    reports: Vec<String>,
    /// Probes granted and not yet handed to a call, with their generation.
    probes: Vec<(String, u64)>,
    want_probe: bool,
    /// A caller found the copy older than the sync interval.
    refresh: bool,
    /// The fleet's window as last reported, and this process's outcomes since, in the
    /// closed state: enough failures among them refuse calls before the fleet's breaker
    /// has heard of them, as an in-process breaker would.
    window: (u64, u64),
    unreported: (u64, u64),
    /// Redis did not answer the last call: the in-process breaker decides.
    down: bool,
    /// Since Redis stopped answering, no permission has been asked: the fleet's state
    /// as last seen, which the in-process breaker takes over from with the next.
    switched: Option<CircuitState>,
    /// Since Redis answers again, no permission has been granted.
    returned: bool,
    synced: Option<Instant>,
    /// When the last published transition was taken.
    heard: Option<Instant>,
}

/// Who decides a call's permission.
pub(crate) enum Decision {
    /// The fleet's breaker, by the copy.
    Shared(Result<Grant, CircuitOpen>),
    /// The in-process breaker, Redis being down; with the fleet's state as last seen the
    /// first time after the switch, which the in-process breaker takes over from.
    Fallback(Option<CircuitState>),
}

/// A permission of the fleet's breaker.
pub(crate) struct Grant {
    pub(crate) permission: Permission,
    /// The fleet's state as last seen.
    pub(crate) state: CircuitState,
    /// A change of state not yet reported.
    pub(crate) transition: Option<Transition>,
    /// The first permission since Redis answers again: the fleet's state takes over from
    /// the in-process breaker's.
    pub(crate) returned: bool,
}

/// What a permission says when the fleet's breaker decides.
#[derive(Debug)]
pub(crate) struct Permission {
    pub(crate) generation: u64,
    /// The probe's id when the call is a half-open probe.
    pub(crate) probe: Option<String>,
}

impl FleetBreaker {
    pub(crate) fn new(
        target: Target<'_>,
        key: &str,
        config: CircuitBreakerConfig,
        options: RedisBreakerOptions,
    ) -> Result<Arc<Self>, ConfigError> {
        if options.call_timeout.is_zero() {
            return Err(ConfigError::ZeroCallTimeout);
        }
        for (field, value) in [
            ("sync_interval", options.sync_interval),
            ("probe_interval", options.probe_interval),
            ("probe_lease", options.probe_lease),
        ] {
            if value.is_zero() {
                return Err(ConfigError::ZeroTimeout { field });
            }
        }
        let connection = Connection::new(
            target,
            format!("aegeantic:breaker:{{{key}}}"),
            options.call_timeout,
            1,
        )?;
        // A cluster forwards what is published on any node to every node: a subscription
        // to one that answers is enough.
        let urls = match target {
            Target::Node(url) => vec![url],
            Target::Cluster(urls) => urls.to_vec(),
        };
        let clients = urls
            .into_iter()
            .map(redis::Client::open)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| ConfigError::InvalidRedisUrl)?;
        Ok(Arc::new(FleetBreaker {
            connection,
            clients,
            channel: format!("aegeantic:breaker:{{{key}}}:transitions"),
            listener: Mutex::new(None),
            config,
            options,
            owner: format!("{:016x}", rand::random::<u64>()),
            next_probe: AtomicU64::new(0),
            view: Mutex::new(View {
                state: CircuitState::Closed,
                generation: 0,
                open_until: None,
                transition: None,
                reports: Vec::new(),
                probes: Vec::new(),
                want_probe: false,
                refresh: false,
                window: (0, 0),
                unreported: (0, 0),
                down: false,
                switched: None,
                returned: false,
                synced: None,
                heard: None,
            }),
            running: AtomicBool::new(false),
            wake: Arc::new(Notify::new()),
            urgent: Arc::new(Notify::new()),
        }))
    }

    /// Whether Redis answered the last call (else the in-process breaker decides).
    pub(crate) fn is_up(&self) -> bool {
        !self.lock().down
    }

    /// The fleet's state as last seen; `None` while Redis is down.
    pub(crate) fn state(&self) -> Option<CircuitState> {
        let copy = self.lock();
        if copy.down {
            return None;
        }
        Some(match (copy.state, copy.open_until) {
            (CircuitState::Open, Some(until)) if Instant::now() >= until => CircuitState::HalfOpen,
            (state, _) => state,
        })
    }

    /// The refusal a call would meet `delay` from now; the outer `None` while Redis is
    /// down.
    pub(crate) fn open_past(&self, delay: Duration) -> Option<Option<CircuitOpen>> {
        let copy = self.lock();
        if copy.down {
            return None;
        }
        if copy.state != CircuitState::Open {
            return Some(None);
        }
        let retry_in = copy.open_until.map_or(Duration::MAX, |until| {
            until.saturating_duration_since(Instant::now())
        });
        Some((retry_in > delay).then_some(CircuitOpen {
            retry_in,
            fallback: None,
        }))
    }

    /// A permission from the fleet's state as last seen, with the transition not yet
    /// reported; while Redis is down, word that the in-process breaker decides.
    pub(crate) fn try_call(self: &Arc<Self>) -> Decision {
        self.start();
        let now = Instant::now();
        let mut copy = self.lock();
        if copy.down {
            return Decision::Fallback(copy.switched.take());
        }
        if copy
            .synced
            .is_none_or(|at| now.saturating_duration_since(at) >= self.options.sync_interval)
        {
            // The copy may be stale: bring it up to date for the next calls.
            copy.refresh = true;
            self.wake.notify_one();
        }
        let permission = match copy.state {
            CircuitState::Closed if self.would_open(&copy) => {
                return Decision::Shared(Err(CircuitOpen {
                    retry_in: self.config.open_duration,
                    fallback: None,
                }));
            }
            CircuitState::Closed => Permission {
                generation: copy.generation,
                probe: None,
            },
            CircuitState::Open if copy.open_until.is_none_or(|until| now < until) => {
                let retry_in = copy
                    .open_until
                    .map_or(Duration::MAX, |until| until.saturating_duration_since(now));
                return Decision::Shared(Err(CircuitOpen {
                    retry_in,
                    fallback: None,
                }));
            }
            CircuitState::Open | CircuitState::HalfOpen => match copy.probes.pop() {
                Some((id, generation)) => Permission {
                    generation,
                    probe: Some(id),
                },
                None => {
                    copy.want_probe = true;
                    self.wake.notify_one();
                    return Decision::Shared(Err(CircuitOpen {
                        retry_in: Duration::ZERO,
                        fallback: None,
                    }));
                }
            },
        };
        Decision::Shared(Ok(Grant {
            permission,
            state: copy.state,
            transition: copy.transition.take(),
            returned: std::mem::take(&mut copy.returned),
        }))
    }

    /// Whether the fleet's window as last seen, with this process's outcomes since, has
    /// reached the failure ratio: the fleet's breaker is opening, or about to.
    fn would_open(&self, copy: &View) -> bool {
        // The window keeps the latest calls, and which of the oldest the new outcomes push
        // out is unknown here: every failure counts as still in. So a process may refuse
        // calls a little before the fleet's breaker opens, never later than its own
        // outcomes and those it has heard of say it should.
        let size = self.config.window as u64;
        let calls = (copy.window.0 + copy.unreported.0).min(size);
        let failures = (copy.window.1 + copy.unreported.1).min(calls);
        calls >= self.config.minimum_calls as u64
            && failures as f64 >= self.config.failure_ratio * calls as f64
    }

    /// Reports a call's outcome to the fleet, with the next call of the task.
    pub(crate) fn record(&self, permission: &Permission, failed: bool) {
        let outcome = u8::from(failed);
        let report = match &permission.probe {
            Some(id) => format!("p:{}:{id}:{outcome}", permission.generation),
            None => format!("c:{}:{outcome}", permission.generation),
        };
        let mut copy = self.lock();
        if permission.probe.is_none() && permission.generation == copy.generation {
            copy.unreported.0 += 1;
            copy.unreported.1 += u64::from(failed);
        }
        copy.reports.push(report);
        drop(copy);
        if failed || permission.probe.is_some() {
            self.urgent.notify_one();
        }
        self.wake.notify_one();
    }

    /// A probe dropped unreported frees its place.
    pub(crate) fn release(&self, permission: &Permission) {
        if let Some(id) = &permission.probe {
            let report = format!("x:{}:{id}", permission.generation);
            self.lock().reports.push(report);
            self.wake.notify_one();
        }
    }

    /// A message the script published: a transition, taken at once unless the copy
    /// already has it (or a later one), or a failure added to the window, which counts
    /// towards this process's refusals at once. Ignored while Redis is down for this
    /// process.
    fn hear(&self, message: &str) {
        let Some((fleet, window, caller)) = Fleet::parse(message) else {
            return;
        };
        let now = Instant::now();
        let mut copy = self.lock();
        if copy.down || fleet.generation < copy.generation {
            return;
        }
        if fleet.generation > copy.generation {
            copy.adopt(&fleet, now);
            copy.heard = Some(now);
        }
        // This process's own call brings the window with its reply, with its outcomes
        // no longer counted as unreported.
        if fleet.state == CircuitState::Closed && caller != self.owner {
            copy.window = window;
        }
    }

    /// Has the task bring the copy up to date: a transition may have been published while
    /// no subscription heard it.
    fn resync(&self) {
        self.lock().refresh = true;
        self.wake.notify_one();
    }

    fn lock(&self) -> MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the task on first use, in the caller's runtime.
    fn start(self: &Arc<Self>) {
        if self.running.load(Ordering::Relaxed) || self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let wakes = (Arc::clone(&self.wake), Arc::clone(&self.urgent));
                runtime.spawn(sync(Arc::downgrade(self), wakes));
                let pauses = (self.options.call_timeout, self.options.probe_interval);
                let subscription = (self.clients.clone(), self.channel.clone());
                let listener =
                    runtime.spawn(listen::listen(Arc::downgrade(self), subscription, pauses));
                *self.listener.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(listener.abort_handle());
            }
            Err(_) => self.running.store(false, Ordering::Release),
        }
    }

    /// One call of the script: hands over `reports` (`sent` of them closed calls' outcomes:
    /// calls, failures), asks for a probe if `want_probe`, and updates the copy.
    async fn call(
        &self,
        reports: &[String],
        sent: (u64, u64),
        want_probe: bool,
    ) -> Result<(), RedisError> {
        let micros = |span: Duration| span.as_micros().min(u128::from(LONGEST_US)) as u64;
        let probe_id = format!(
            "{}:{}",
            self.owner,
            self.next_probe.fetch_add(1, Ordering::Relaxed)
        );
        let config = &self.config;
        let asked = Instant::now();
        let reply: Vec<i64> = self
            .connection
            .eval(&BREAKER, &KEYS, |cmd| {
                cmd.arg(-1)
                    .arg(config.window)
                    .arg(config.minimum_calls)
                    .arg((config.failure_ratio * 1e6).round() as u64)
                    .arg(micros(config.open_duration))
                    .arg(config.half_open_probes)
                    .arg(micros(self.options.probe_lease))
                    .arg(u8::from(want_probe))
                    .arg(&probe_id)
                    .arg(&self.channel)
                    .arg(reports);
            })
            .await?;
        let [state, generation, remaining_us, granted, ratio, calls, failures] = reply[..] else {
            return Err(RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "the breaker script answered other than 7 numbers",
            )));
        };
        let fleet = Fleet::read(state, generation, remaining_us, ratio);
        let mut copy = self.lock();
        copy.synced = Some(asked);
        if std::mem::take(&mut copy.down) {
            // Whatever happened meanwhile, the in-process breaker's state is what callers
            // saw last: the change to report is from it to the fleet's.
            copy.returned = true;
            copy.switched = None;
            copy.transition = None;
        }
        // A transition heard since this call was asked is newer than its reply.
        if fleet.generation < copy.generation && copy.heard.is_some_and(|heard| heard > asked) {
            return Ok(());
        }
        if !copy.adopt(&fleet, asked) {
            copy.unreported.0 = copy.unreported.0.saturating_sub(sent.0);
            copy.unreported.1 = copy.unreported.1.saturating_sub(sent.1);
        }
        copy.window = (
            u64::try_from(calls).unwrap_or(0),
            u64::try_from(failures).unwrap_or(0),
        );
        if granted == 1 {
            copy.probes.push((probe_id, fleet.generation));
        }
        Ok(())
    }
}

/// The fleet's breaker as the script answers or announces it.
struct Fleet {
    state: CircuitState,
    generation: u64,
    /// Until an open breaker lets a probe through (`-1`: not open).
    remaining_us: i64,
    /// The failure ratio of the last opening in millionths (`-1`: none).
    ratio: i64,
}

impl Fleet {
    fn read(state: i64, generation: i64, remaining_us: i64, ratio: i64) -> Self {
        Fleet {
            state: match state {
                1 => CircuitState::Open,
                2 => CircuitState::HalfOpen,
                _ => CircuitState::Closed,
            },
            generation: u64::try_from(generation).unwrap_or(0),
            remaining_us,
            ratio,
        }
    }

    /// A message of the script, `gen:state:remaining_us:ratio:calls:failures:caller`:
    /// the fleet's state, the window's calls and failures, and the name of the process
    /// whose call of the script published it.
    fn parse(message: &str) -> Option<(Self, (u64, u64), &str)> {
        let (numbers, caller) = message.rsplit_once(':')?;
        let mut numbers = numbers.split(':').map(str::parse::<i64>);
        let mut next = || numbers.next()?.ok();
        let (generation, state, remaining_us, ratio) = (next()?, next()?, next()?, next()?);
        let window = (next()?, next()?);
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        let fleet = Fleet::read(state, generation, remaining_us, ratio);
        Some((fleet, (count(window.0), count(window.1)), caller))
    }
}

impl View {
    /// Takes the fleet's state as read at `at`; whether its generation differs from the
    /// copy's.
    fn adopt(&mut self, fleet: &Fleet, at: Instant) -> bool {
        let changed = fleet.generation != self.generation;
        if changed {
            self.transition = Some(Transition {
                from: self.state,
                to: fleet.state,
                failure_ratio: (fleet.state == CircuitState::Open && fleet.ratio >= 0)
                    .then(|| fleet.ratio as f64 / 1e6),
                fallback: None,
            });
            // Probes and outcomes of an earlier period count for nothing now.
            self.probes.clear();
            self.unreported = (0, 0);
            self.window = (0, 0);
        }
        self.state = fleet.state;
        self.generation = fleet.generation;
        self.open_until = u64::try_from(fleet.remaining_us)
            .ok()
            .and_then(|us| at.checked_add(Duration::from_micros(us)));
        changed
    }
}

/// Reports outcomes and brings the state back, at most every sync interval, while there
/// is something to report or a probe to ask for; ends when the breaker is gone.
async fn sync(breaker: Weak<FleetBreaker>, (wake, urgent): (Arc<Notify>, Arc<Notify>)) {
    loop {
        let Some(this) = breaker.upgrade() else {
            return;
        };
        let (reports, sent, want_probe, refresh, down) = {
            let mut copy = this.lock();
            let want = std::mem::take(&mut copy.want_probe);
            let refresh = std::mem::take(&mut copy.refresh);
            let reports = std::mem::take(&mut copy.reports);
            (reports, copy.unreported, want, refresh, copy.down)
        };
        if reports.is_empty() && !want_probe && !refresh && !down {
            drop(this);
            wake.notified().await;
            continue;
        }
        let pause = match this.call(&reports, sent, want_probe).await {
            Ok(()) => this.options.sync_interval,
            Err(error) => {
                #[cfg(feature = "tracing")]
                if !this.lock().down {
                    tracing::warn!(
                        error = %this.connection.describe(&error),
                        "circuit breaker: redis unavailable, the in-process breaker decides"
                    );
                }
                #[cfg(not(feature = "tracing"))]
                let _ = error;
                let mut copy = this.lock();
                if !copy.down {
                    copy.switched = Some(match (copy.state, copy.open_until) {
                        (CircuitState::Open, Some(until)) if Instant::now() >= until => {
                            CircuitState::HalfOpen
                        }
                        (state, _) => state,
                    });
                    copy.returned = false;
                }
                copy.down = true;
                copy.unreported = (0, 0);
                drop(copy);
                this.options.probe_interval
            }
        };
        drop(this);
        let _ = tokio::time::timeout(pause, urgent.notified()).await;
    }
}

impl fmt::Debug for FleetBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetBreaker")
            .field("redis", &format_args!("{}", self.connection))
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Drop for FleetBreaker {
    fn drop(&mut self) {
        // The task finds the breaker gone and ends; the listener is told to.
        self.wake.notify_one();
        if let Some(listener) = self
            .listener
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            listener.abort();
        }
    }
}
