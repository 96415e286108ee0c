//! A limit on how many operations run at once, shared by cloning: the requests in flight
//! of a tower service (held for a response body's whole life, see
//! `integrations::tower::ConcurrencyLimitLayer`), or the attempts of streams. In-process
//! (a tokio semaphore, here) or shared by every process through Redis (`redis.rs`).

#[cfg(feature = "redis")]
mod options;
#[cfg(feature = "redis")]
mod redis;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures_core::Stream;
use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ConfigError;
#[cfg(feature = "redis")]
pub use options::RedisConcurrencyOptions;

/// At most `max` holders of a [`ConcurrencyPermit`] at once, shared by cloning. Waiters are
/// served in arrival order. In-process ([`new`](Self::new), a tokio [`Semaphore`]) or
/// shared by processes through Redis ([`redis`](Self::redis)), with the same API.
///
/// ```
/// use aegeantic::resilience::ConcurrencyLimiter;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), aegeantic::resilience::ConfigError> {
/// let limiter = ConcurrencyLimiter::new(2)?;
/// let first = limiter.acquire().await;
/// let _second = limiter.clone().acquire().await;
/// assert!(limiter.try_acquire().await.is_none());
/// drop(first);
/// assert_eq!(limiter.available(), 1);
/// assert!(ConcurrencyLimiter::new(0).is_err());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ConcurrencyLimiter {
    backend: Backend,
    max: usize,
}

#[derive(Clone)]
enum Backend {
    Local(Arc<Semaphore>),
    #[cfg(feature = "redis")]
    Redis(Arc<redis::RedisSlots>),
}

/// A slot of a [`ConcurrencyLimiter`], given back when dropped.
#[derive(Debug)]
pub struct ConcurrencyPermit {
    _held: Held,
}

// Each is held for its drop, which gives the slot back.
#[derive(Debug)]
enum Held {
    Local {
        _permit: OwnedSemaphorePermit,
    },
    #[cfg(feature = "redis")]
    Redis {
        _permit: redis::RedisPermit,
    },
    /// Admitted without a slot: Redis was down and the policy fails open.
    #[cfg(feature = "redis")]
    Unlimited,
}

/// A limit between 1 and what a semaphore counts.
fn checked_max(max: usize) -> Result<usize, ConfigError> {
    if max == 0 || max > Semaphore::MAX_PERMITS {
        return Err(ConfigError::InvalidConcurrency {
            value: max,
            max: Semaphore::MAX_PERMITS,
        });
    }
    Ok(max)
}

impl ConcurrencyLimiter {
    /// A limiter admitting `max` holders at once, in this process.
    ///
    /// # Errors
    /// [`ConfigError::InvalidConcurrency`] for zero, or for more than a tokio semaphore can
    /// count.
    pub fn new(max: usize) -> Result<Self, ConfigError> {
        let max = checked_max(max)?;
        Ok(ConcurrencyLimiter {
            backend: Backend::Local(Arc::new(Semaphore::new(max))),
            max,
        })
    }

    /// A limiter admitting `max_in_flight` holders at once across every process that uses
    /// the same URL and key: the slots live in Redis.
    ///
    /// Each held slot is a lease, renewed by the holder's process every third of
    /// [`lease`](RedisConcurrencyOptions::lease) while the permit lives: a process that
    /// dies (SIGKILL included) stops renewing, and its slots come back on their own when
    /// their lease ends (measured: within the lease plus a few milliseconds). Waiters are
    /// served in the order their requests reached Redis, whatever their process, and
    /// sleep until a slot is handed to them: a grant costs one Redis call, and one more
    /// (the wake-up) when it had to wait; releasing is one call more.
    ///
    /// Nothing connects yet: the connections are made on first use and remade after
    /// failures. While Redis cannot answer, the
    /// [`failure_policy`](RedisConcurrencyOptions::failure_policy) decides: fail closed
    /// grants nothing (`acquire` keeps waiting, asking Redis again every
    /// [`probe_interval`](RedisConcurrencyOptions::probe_interval)), fail open grants every
    /// request, `Local` limits with an in-process limiter. Permits held when Redis fails
    /// stay held; their leases end on their own if Redis comes back without them.
    /// [`available`](Self::available) is the count Redis reported on the last call.
    ///
    /// ```no_run
    /// use aegeantic::resilience::{ConcurrencyLimiter, RedisConcurrencyOptions};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), aegeantic::resilience::ConfigError> {
    /// let options = RedisConcurrencyOptions::default();
    /// let limiter = ConcurrencyLimiter::redis("redis://127.0.0.1/", "vllm", 8, options)?;
    /// let permit = limiter.acquire().await; // one of the fleet's 8
    /// drop(permit);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`ConfigError::InvalidConcurrency`] as [`new`](Self::new) (and for
    /// [`local_max`](RedisConcurrencyOptions::local_max)), an unparsable URL, a zero call
    /// timeout, connection count, lease or probe interval, and a `local_max` with a policy
    /// other than `Local`.
    #[cfg(feature = "redis")]
    pub fn redis(
        url: &str,
        key: &str,
        max_in_flight: usize,
        options: RedisConcurrencyOptions,
    ) -> Result<Self, ConfigError> {
        use crate::resilience::limiter::redis::connection::Target;

        Self::with_slots(Target::Node(url), key, max_in_flight, options)
    }

    /// [`ConcurrencyLimiter::redis`] on a Redis Cluster, given the URLs of some of its
    /// nodes (the client finds the rest). Every key of the slots carries `key` as its hash
    /// tag, so they live in one cluster slot: its master holds them all, the client follows
    /// `MOVED`/`ASK`, and the wait for grants (`BLPOP`) runs on a cluster connection of its
    /// own, routed to the same node.
    ///
    /// While the master of the key's slot is down and no replica has taken over, calls
    /// fail and the failure policy decides, as in any outage. A promoted replica may lack
    /// the master's last writes (replication is asynchronous): slots granted or released
    /// just before the failover may be missing or still counted there. A grant it lacks is
    /// not counted: as many more holders can be let in until that permit is released (its
    /// renewals find the lease gone and say so through `tracing`); a release it lacks keeps
    /// that slot out until its lease ends.
    ///
    /// # Errors
    /// As [`ConcurrencyLimiter::redis`], and [`ConfigError::NoClusterNodes`] for an empty
    /// list.
    #[cfg(feature = "redis")]
    pub fn redis_cluster<S: AsRef<str>>(
        nodes: &[S],
        key: &str,
        max_in_flight: usize,
        options: RedisConcurrencyOptions,
    ) -> Result<Self, ConfigError> {
        use crate::resilience::limiter::redis::connection::Target;

        let nodes: Vec<&str> = nodes.iter().map(AsRef::as_ref).collect();
        Self::with_slots(Target::Cluster(&nodes), key, max_in_flight, options)
    }

    #[cfg(feature = "redis")]
    fn with_slots(
        target: crate::resilience::limiter::redis::connection::Target<'_>,
        key: &str,
        max_in_flight: usize,
        options: RedisConcurrencyOptions,
    ) -> Result<Self, ConfigError> {
        let max = checked_max(max_in_flight)?;
        let slots = redis::RedisSlots::new(target, key, max, options)?;
        Ok(ConcurrencyLimiter {
            backend: Backend::Redis(slots),
            max,
        })
    }

    /// Waits for a slot. Dropping the future gives its place in the queue back.
    pub async fn acquire(&self) -> ConcurrencyPermit {
        let held = match &self.backend {
            Backend::Local(semaphore) => match Arc::clone(semaphore).acquire_owned().await {
                Ok(permit) => Held::Local { _permit: permit },
                Err(_) => unreachable!("the semaphore is never closed"),
            },
            #[cfg(feature = "redis")]
            Backend::Redis(slots) => Held::remote(slots.acquire().await),
        };
        ConcurrencyPermit { _held: held }
    }

    /// A slot if one is free now, without waiting for one (through Redis, one call).
    pub async fn try_acquire(&self) -> Option<ConcurrencyPermit> {
        #[cfg(feature = "redis")]
        if let Backend::Redis(slots) = &self.backend {
            let held = Held::remote(slots.try_acquire().await?);
            return Some(ConcurrencyPermit { _held: held });
        }
        self.try_acquire_now()
    }

    /// An in-process slot if one is free, without a future; `None` for the Redis backend,
    /// whose answer needs a call. The adapters' fast path.
    pub(crate) fn try_acquire_now(&self) -> Option<ConcurrencyPermit> {
        match &self.backend {
            Backend::Local(semaphore) => {
                let permit = Arc::clone(semaphore).try_acquire_owned().ok()?;
                Some(ConcurrencyPermit {
                    _held: Held::Local { _permit: permit },
                })
            }
            #[cfg(feature = "redis")]
            Backend::Redis(_) => None,
        }
    }

    /// Free slots now (for the Redis backend, as of its last call).
    pub fn available(&self) -> usize {
        match &self.backend {
            Backend::Local(semaphore) => semaphore.available_permits(),
            #[cfg(feature = "redis")]
            Backend::Redis(slots) => slots.available(),
        }
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max
    }
}

#[cfg(feature = "redis")]
impl Held {
    fn remote(outcome: Result<redis::RedisPermit, redis::Fallback>) -> Self {
        match outcome {
            Ok(permit) => Held::Redis { _permit: permit },
            Err(redis::Fallback::Local(permit)) => Held::Local { _permit: permit },
            Err(redis::Fallback::Open) => Held::Unlimited,
        }
    }
}

impl fmt::Debug for ConcurrencyLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyLimiter")
            .field("max", &self.max)
            .field("available", &self.available())
            .field("shared", &!matches!(self.backend, Backend::Local(_)))
            .finish()
    }
}

pin_project! {
    /// A stream that holds a slot of a [`ConcurrencyLimiter`] from its first poll until it
    /// ends or is dropped; see [`ConcurrencyLimiter::limit_stream`].
    #[must_use = "streams do nothing unless polled"]
    pub struct ConcurrencyLimited<S> {
        #[pin]
        stream: S,
        limiter: ConcurrencyLimiter,
        slot: Slot,
    }
}

enum Slot {
    Free,
    Waiting(Pin<Box<dyn Future<Output = ConcurrencyPermit> + Send>>),
    // Held for its drop, which gives the slot back.
    Held { _permit: ConcurrencyPermit },
    Ended,
}

impl ConcurrencyLimiter {
    /// `stream`, run only while it holds a slot: its first poll waits for one, and the
    /// slot is given back when the stream ends or is dropped.
    ///
    /// Wrapping each attempt in a retrying stream's factory holds a slot per attempt:
    /// `resilient_stream` drops a failed attempt's stream before its back-off, so the
    /// slot is free while it waits.
    ///
    /// ```
    /// use std::io;
    /// use futures::{stream, StreamExt};
    /// use aegeantic::resilience::{retry_stream, ConcurrencyLimiter, Resilient, RetryConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let slots = ConcurrencyLimiter::new(2)?;
    /// let attempts = {
    ///     let slots = slots.clone();
    ///     move || slots.limit_stream(stream::iter([Ok::<_, io::Error>("chunk")]))
    /// };
    /// let config = RetryConfig::builder().build()?;
    /// let mut items = retry_stream(attempts, config, "llm", "llm");
    /// while let Some(item) = items.next().await {
    ///     if let Resilient::Item(chunk) = item? {
    ///         assert_eq!(slots.available(), 1); // this attempt holds one
    ///         println!("{chunk}");
    ///     }
    /// }
    /// assert_eq!(slots.available(), 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn limit_stream<S: Stream>(&self, stream: S) -> ConcurrencyLimited<S> {
        ConcurrencyLimited {
            stream,
            limiter: self.clone(),
            slot: Slot::Free,
        }
    }
}

impl<S: Stream> Stream for ConcurrencyLimited<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let this = self.project();
        loop {
            match this.slot {
                Slot::Free => {
                    *this.slot = match this.limiter.try_acquire_now() {
                        Some(permit) => Slot::Held { _permit: permit },
                        None => {
                            let limiter = this.limiter.clone();
                            Slot::Waiting(Box::pin(async move { limiter.acquire().await }))
                        }
                    };
                }
                Slot::Waiting(acquire) => {
                    *this.slot = Slot::Held {
                        _permit: ready!(acquire.as_mut().poll(cx)),
                    }
                }
                Slot::Held { .. } => break,
                Slot::Ended => return Poll::Ready(None),
            }
        }
        let item = ready!(this.stream.poll_next(cx));
        if item.is_none() {
            *this.slot = Slot::Ended;
        }
        Poll::Ready(item)
    }
}

impl<S> fmt::Debug for ConcurrencyLimited<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let holds = matches!(self.slot, Slot::Held { .. });
        f.debug_struct("ConcurrencyLimited")
            .field("limiter", &self.limiter)
            .field("holds_slot", &holds)
            .finish_non_exhaustive()
    }
}
