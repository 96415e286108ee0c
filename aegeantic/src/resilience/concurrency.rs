//! A limit on how many operations run at once, shared by cloning: the requests in flight
//! of a tower service (held for a response body's whole life, see
//! `integrations::tower::ConcurrencyLimitLayer`), or the attempts of streams.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures_core::Stream;
use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ConfigError;

/// At most `max` holders of a [`ConcurrencyPermit`] at once, shared by cloning (a tokio
/// [`Semaphore`], in-process). Waiters are served in arrival order.
///
/// ```
/// use aegeantic::resilience::ConcurrencyLimiter;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), aegeantic::resilience::ConfigError> {
/// let limiter = ConcurrencyLimiter::new(2)?;
/// let first = limiter.acquire().await;
/// let _second = limiter.clone().acquire().await;
/// assert!(limiter.try_acquire().is_none());
/// drop(first);
/// assert_eq!(limiter.available(), 1);
/// assert!(ConcurrencyLimiter::new(0).is_err());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ConcurrencyLimiter {
    semaphore: Arc<Semaphore>,
    max: usize,
}

/// A slot of a [`ConcurrencyLimiter`], given back when dropped.
#[derive(Debug)]
pub struct ConcurrencyPermit {
    _permit: OwnedSemaphorePermit,
}

impl ConcurrencyLimiter {
    /// A limiter admitting `max` holders at once.
    ///
    /// # Errors
    /// [`ConfigError::InvalidConcurrency`] for zero, or for more than a tokio semaphore can
    /// count.
    pub fn new(max: usize) -> Result<Self, ConfigError> {
        if max == 0 || max > Semaphore::MAX_PERMITS {
            return Err(ConfigError::InvalidConcurrency {
                value: max,
                max: Semaphore::MAX_PERMITS,
            });
        }
        Ok(ConcurrencyLimiter {
            semaphore: Arc::new(Semaphore::new(max)),
            max,
        })
    }

    /// Waits for a slot. Dropping the future gives its place in the queue back.
    pub async fn acquire(&self) -> ConcurrencyPermit {
        match self.semaphore.clone().acquire_owned().await {
            Ok(permit) => ConcurrencyPermit { _permit: permit },
            Err(_) => unreachable!("the semaphore is never closed"),
        }
    }

    /// A slot if one is free now.
    pub fn try_acquire(&self) -> Option<ConcurrencyPermit> {
        let permit = self.semaphore.clone().try_acquire_owned().ok()?;
        Some(ConcurrencyPermit { _permit: permit })
    }

    /// Free slots now.
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max
    }
}

impl fmt::Debug for ConcurrencyLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyLimiter")
            .field("max", &self.max)
            .field("available", &self.available())
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
                    *this.slot = match this.limiter.try_acquire() {
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
