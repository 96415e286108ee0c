//! The Redis backend of [`ConcurrencyLimiter`]: one set of slots shared by every process
//! that names the same key.
//!
//! `slots.lua` holds the state and every decision: the held slots, each a lease that ends
//! unless renewed, and the queue of waiters in order of arrival. A request that finds no
//! free slot is queued by the same call that refused it, and then sleeps: whoever frees a
//! slot (a release, or any call that finds a lease ended) hands it to the queue's head in
//! the same script, and pushes the grant to the waiter's process's inbox, a list. So a
//! grant costs one call, plus one wake-up for a waiter, never a poll.
//!
//! Each limiter has one task of its own while it holds or awaits slots (the agent): it
//! waits for grants on its inbox (`BLPOP`, on a connection of its own, since a blocking
//! command would hold up the calls queued behind it), and renews the leases of its
//! slots and queued tickets every third of the lease. While it has waiters it also calls
//! as soon as the earliest lease may have ended, so that a dead process's slots go to the
//! waiters within moments of their lease's end, whatever the renewal period.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError, Weak};
use std::task::Poll;
use std::time::Duration;

use redis::RedisError;
use tokio::sync::{oneshot, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::options::RedisConcurrencyOptions;
use crate::resilience::limiter::redis::connection::{Connection, Link, Lua, Target};
use crate::resilience::{ConfigError, FailurePolicy};

static SLOTS: LazyLock<Lua> = LazyLock::new(|| Lua::new("slots", include_str!("slots.lua")));
const KEYS: [&str; 3] = [":held", ":queue", ":waiting"];

/// A lease or a wait beyond what the script counts exactly is this long.
const LONGEST_US: u64 = 1 << 52;

/// The longest a wait for grants blocks before it is asked again.
const LONGEST_POP: Duration = Duration::from_secs(10);

/// `span` after `at`; a time past what the clock counts means about 30 years on (and, on a
/// clock that cannot count that far either, the furthest it can: `at` itself never).
fn later(at: Instant, span: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(30 * 365 * 24 * 3600);
    at.checked_add(span)
        .or_else(|| at.checked_add(FAR))
        .unwrap_or_else(|| at.checked_add(Duration::from_secs(1)).unwrap_or(at))
}

/// What a request got when Redis could not answer.
pub(crate) enum Fallback {
    /// A slot of the in-process limiter.
    Local(OwnedSemaphorePermit),
    /// Admitted without a slot.
    Open,
}

/// The state behind a Redis-backed [`super::ConcurrencyLimiter`], shared by its clones.
pub(crate) struct RedisSlots {
    connection: Connection,
    /// Names this limiter's tickets and inbox, unique among the processes.
    owner: String,
    max: usize,
    lease_us: u64,
    renew_every: Duration,
    options: RedisConcurrencyOptions,
    /// The fallback of [`FailurePolicy::Local`].
    local: Arc<Semaphore>,
    /// Free slots as of the last reply.
    free: AtomicUsize,
    next_ticket: AtomicU64,
    state: Mutex<Local>,
    /// Wakes the agent when a waiter queues while it sleeps.
    wake: Notify,
}

#[derive(Default)]
struct Local {
    /// Slots this limiter holds, renewed by the agent.
    held: HashSet<String>,
    /// Tickets queued in Redis, each with its waiter.
    waiting: HashMap<String, oneshot::Sender<()>>,
    /// When a call last renewed every lease above; acquisitions renew them on the way.
    renewed: Option<Instant>,
    agent_running: bool,
}

impl Local {
    /// Every ticket whose lease this limiter renews.
    fn ids(&self) -> Vec<String> {
        self.held
            .iter()
            .chain(self.waiting.keys())
            .cloned()
            .collect()
    }
}

/// A slot held in Redis, released when dropped.
pub(crate) struct RedisPermit {
    slots: Arc<RedisSlots>,
    id: String,
}

/// The script's reply: granted (or leases lost), free slots, microseconds until the
/// earliest lease ends (negative: none held).
struct Reply {
    result: i64,
    earliest_us: i64,
}

impl RedisSlots {
    pub(crate) fn new(
        target: Target<'_>,
        key: &str,
        max: usize,
        options: RedisConcurrencyOptions,
    ) -> Result<Arc<Self>, ConfigError> {
        if options.call_timeout.is_zero() {
            return Err(ConfigError::ZeroCallTimeout);
        }
        if options.connections == 0 {
            return Err(ConfigError::ZeroConnections);
        }
        for (field, value) in [
            ("lease", options.lease),
            ("probe_interval", options.probe_interval),
        ] {
            if value.is_zero() {
                return Err(ConfigError::ZeroTimeout { field });
            }
        }
        let local_max = match options.local_max {
            Some(_) if options.failure_policy != FailurePolicy::Local => {
                return Err(ConfigError::LocalFallbackUnused);
            }
            Some(local) => super::checked_max(local)?,
            None => max,
        };
        let lease_us = options.lease.as_micros().min(u128::from(LONGEST_US)) as u64;
        let connection = Connection::new(
            target,
            // The hash tag keeps every key of these slots in one cluster slot.
            format!("aegeantic:slots:{{{key}}}"),
            options.call_timeout,
            options.connections,
        )?;
        Ok(Arc::new(RedisSlots {
            connection,
            owner: format!("{:016x}", rand::random::<u64>()),
            max,
            lease_us,
            renew_every: Duration::from_micros(lease_us / 3).max(Duration::from_millis(1)),
            options,
            local: Arc::new(Semaphore::new(local_max)),
            free: AtomicUsize::new(max),
            next_ticket: AtomicU64::new(0),
            state: Mutex::new(Local::default()),
            wake: Notify::new(),
        }))
    }

    pub(crate) fn available(&self) -> usize {
        self.free.load(Ordering::Relaxed)
    }

    /// Waits for a slot, queued in Redis. While Redis cannot answer, the failure policy
    /// decides: fail closed keeps waiting (asking again every probe interval).
    pub(crate) async fn acquire(self: &Arc<Self>) -> Result<RedisPermit, Fallback> {
        loop {
            let ticket = self.ticket();
            let (granted, woken) = oneshot::channel();
            let renewing = {
                let mut local = self.lock();
                let renewing = local.ids();
                local.waiting.insert(ticket.clone(), granted);
                renewing
            };
            // From here until a permit owns the ticket, a drop cancels it.
            let pending = Pending {
                slots: self,
                ticket: Some(ticket.clone()),
            };
            self.start_agent();
            let outcome = match self.acquire_call(&ticket, true, &renewing).await {
                Ok(reply) if reply.result == 1 => {
                    let mut local = self.lock();
                    local.waiting.remove(&ticket);
                    local.held.insert(ticket.clone());
                    true
                }
                // Queued: the agent says when the slot is ours, or drops the sender when
                // Redis fails meanwhile.
                Ok(_) => woken.await.is_ok(),
                Err(_) => false,
            };
            if outcome {
                return Ok(pending.into_permit());
            }
            drop(pending);
            match self.options.failure_policy {
                FailurePolicy::FailClosed => {
                    tokio::time::sleep(self.options.probe_interval).await;
                }
                FailurePolicy::FailOpen => return Err(Fallback::Open),
                FailurePolicy::Local => match Arc::clone(&self.local).acquire_owned().await {
                    Ok(permit) => return Err(Fallback::Local(permit)),
                    Err(_) => unreachable!("the fallback semaphore is never closed"),
                },
            }
        }
    }

    /// A slot if one is free now and nobody queues for one; the failure policy decides
    /// while Redis cannot answer (fail closed: none).
    pub(crate) async fn try_acquire(self: &Arc<Self>) -> Option<Result<RedisPermit, Fallback>> {
        let ticket = self.ticket();
        let renewing = self.lock().ids();
        match self.acquire_call(&ticket, false, &renewing).await {
            Ok(reply) if reply.result == 1 => {
                self.lock().held.insert(ticket.clone());
                self.start_agent();
                Some(Ok(RedisPermit {
                    slots: Arc::clone(self),
                    id: ticket,
                }))
            }
            Ok(_) => None,
            Err(_) => match self.options.failure_policy {
                FailurePolicy::FailClosed => None,
                FailurePolicy::FailOpen => Some(Err(Fallback::Open)),
                FailurePolicy::Local => Arc::clone(&self.local)
                    .try_acquire_owned()
                    .ok()
                    .map(|permit| Err(Fallback::Local(permit))),
            },
        }
    }

    /// Asks for a slot for `ticket`, queueing it if `queue`, and renews `renewing` (this
    /// limiter's other tickets) on the way, so that under load no call renews alone.
    async fn acquire_call(
        &self,
        ticket: &str,
        queue: bool,
        renewing: &[String],
    ) -> Result<Reply, RedisError> {
        let sent = Instant::now();
        let mut args = vec![ticket, if queue { "1" } else { "0" }];
        args.extend(renewing.iter().map(String::as_str));
        let reply = self.call("acquire", &args).await?;
        let mut local = self.lock();
        local.renewed = Some(local.renewed.map_or(sent, |at| at.max(sent)));
        Ok(reply)
    }

    fn ticket(&self) -> String {
        let n = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        format!("{}:{n}", self.owner)
    }

    fn lock(&self) -> MutexGuard<'_, Local> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn call(&self, operation: &str, args: &[&str]) -> Result<Reply, RedisError> {
        let reply: Vec<i64> = self
            .connection
            .eval(&SLOTS, &KEYS, |cmd| {
                cmd.arg(operation)
                    .arg(-1)
                    .arg(self.lease_us)
                    .arg(self.max)
                    .arg(args);
            })
            .await?;
        let [result, free, earliest_us] = reply[..] else {
            return Err(RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "the slots script answered other than 3 numbers",
            )));
        };
        self.free.store(
            usize::try_from(free).unwrap_or(0).min(self.max),
            Ordering::Relaxed,
        );
        Ok(Reply {
            result,
            earliest_us,
        })
    }

    /// Gives `id` back (a slot, or a queued ticket), in a task of its own; without a
    /// runtime, or if Redis does not answer, its lease ends on its own.
    fn release(self: &Arc<Self>, id: String) {
        {
            let mut local = self.lock();
            local.held.remove(&id);
            local.waiting.remove(&id);
        }
        let slots = Arc::clone(self);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = slots.call("release", &[id.as_str()]).await;
            });
        }
    }

    /// Starts the agent unless it runs, and wakes it.
    fn start_agent(self: &Arc<Self>) {
        let start = {
            let mut local = self.lock();
            !std::mem::replace(&mut local.agent_running, true)
        };
        if start {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(agent(Arc::downgrade(self)));
                }
                Err(_) => self.lock().agent_running = false,
            }
        }
        self.wake.notify_one();
    }

    /// A queued ticket was granted: wake its waiter, or give the slot back if it left.
    fn deliver(self: &Arc<Self>, ticket: String) {
        let waiter = {
            let mut local = self.lock();
            let waiter = local.waiting.remove(&ticket);
            if waiter.is_some() {
                local.held.insert(ticket.clone());
            }
            waiter
        };
        match waiter {
            Some(waiter) => {
                if waiter.send(()).is_err() {
                    self.release(ticket);
                }
            }
            None => self.release(ticket),
        }
    }

    /// Redis failed: every waiter hears it (its sender is dropped) and applies the policy.
    fn fail_waiters(&self) {
        self.lock().waiting.clear();
    }
}

/// A `BLPOP` on the inbox in flight, with the connection it runs on.
type Pop = Pin<Box<dyn Future<Output = (Option<Link>, Result<Option<String>, RedisError>)> + Send>>;

/// What the agent woke up for.
enum Woke {
    Popped(Option<Link>, Result<Option<String>, RedisError>),
    /// A renewal is due, or a waiter queued.
    Other,
}

/// Renews this limiter's leases and waits for its grants while it holds or awaits slots;
/// ends when it has neither, or when the limiter is gone.
///
/// The wait for grants runs beside the timer rather than being cut by it: a `BLPOP`
/// abandoned on the client could still pop a grant on the server, which would then be
/// lost. Its own timeout only bounds how long it keeps the limiter alive.
async fn agent(slots: Weak<RedisSlots>) {
    let mut dedicated: Option<Link> = None;
    let mut pop: Option<Pop> = None;
    // When a dead holder's lease may have ended, for the waiters' sake.
    let mut purge_at: Option<Instant> = None;
    loop {
        let Some(this) = slots.upgrade() else {
            return;
        };
        let now = Instant::now();
        let (ids, waiting, due) = {
            let mut local = this.lock();
            if local.held.is_empty() && local.waiting.is_empty() && pop.is_none() {
                local.agent_running = false;
                return;
            }
            let renewed = *local.renewed.get_or_insert(now);
            let renew_at = later(renewed, this.renew_every);
            let waiting = !local.waiting.is_empty();
            let due = purge_at
                .filter(|_| waiting)
                .map_or(renew_at, |at| at.min(renew_at));
            (local.ids(), waiting, due)
        };
        if now >= due && !ids.is_empty() {
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            match this.call("renew", &ids).await {
                Ok(reply) => {
                    #[cfg(feature = "tracing")]
                    if reply.result > 0 {
                        tracing::warn!(
                            lost = reply.result,
                            "concurrency: leases ended before their renewal; raise the lease"
                        );
                    }
                    let mut local = this.lock();
                    local.renewed = Some(local.renewed.map_or(now, |at| at.max(now)));
                    // Ask again just after the earliest lease may end.
                    purge_at = u64::try_from(reply.earliest_us).ok().map(|us| {
                        let span = Duration::from_micros(us);
                        later(now, span.saturating_add(Duration::from_millis(1)))
                    });
                }
                Err(_) => {
                    this.fail_waiters();
                    tokio::time::sleep(this.options.probe_interval).await;
                }
            }
            continue;
        }
        if waiting && pop.is_none() {
            let owner = Arc::clone(&this);
            let mut link = dedicated.take();
            pop = Some(Box::pin(async move {
                let inbox = format!(":inbox:{}", owner.owner);
                // Bounded, so that Redis takes it whatever the lease.
                let wait = owner.renew_every.min(LONGEST_POP);
                let popped = owner.connection.blocking_pop(&mut link, &inbox, wait).await;
                (link, popped)
            }));
        }
        // With nothing to renew, only the pop in flight or a new waiter can matter.
        let until = if ids.is_empty() {
            later(now, this.renew_every)
        } else {
            due.max(later(now, Duration::from_millis(1)))
        };
        let woke = {
            let mut timer = std::pin::pin!(tokio::time::sleep_until(until));
            let mut queued = std::pin::pin!(this.wake.notified());
            std::future::poll_fn(|cx| {
                if let Some(Poll::Ready((link, popped))) =
                    pop.as_mut().map(|pop| pop.as_mut().poll(cx))
                {
                    return Poll::Ready(Woke::Popped(link, popped));
                }
                if timer.as_mut().poll(cx).is_ready() || queued.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Woke::Other);
                }
                Poll::Pending
            })
            .await
        };
        if let Woke::Popped(link, popped) = woke {
            pop = None;
            dedicated = link;
            match popped {
                Ok(Some(ticket)) => this.deliver(ticket),
                Ok(None) => {}
                Err(_) => {
                    this.fail_waiters();
                    tokio::time::sleep(this.options.probe_interval).await;
                }
            }
        }
    }
}

/// A ticket between its queueing and its permit: dropped first, it gives the ticket back.
struct Pending<'a> {
    slots: &'a Arc<RedisSlots>,
    ticket: Option<String>,
}

impl Pending<'_> {
    fn into_permit(mut self) -> RedisPermit {
        RedisPermit {
            slots: Arc::clone(self.slots),
            id: self.ticket.take().expect("a pending ticket"),
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.slots.release(ticket);
        }
    }
}

impl Drop for RedisPermit {
    fn drop(&mut self) {
        self.slots.release(std::mem::take(&mut self.id));
    }
}

impl fmt::Debug for RedisPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisPermit").field("id", &self.id).finish()
    }
}

impl fmt::Debug for RedisSlots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSlots")
            .field("redis", &format_args!("{}", self.connection))
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}
