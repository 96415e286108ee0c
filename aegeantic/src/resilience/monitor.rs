//! Counting what the resilience layer did.

use std::fmt;
use std::time::Duration;

use crate::events::{AsEventRef, EventRef};
use crate::resilience::CircuitState;

/// Tallies resilience events from one or more streams.
///
/// Feed it every item with [`handle_event`](ResilienceMonitor::handle_event); data items
/// and errors are ignored. `Display` prints a one-line summary.
///
/// ```
/// use futures::StreamExt;
/// use aegeantic::resilience::{rate_limited_stream, RateLimitConfig, RateLimiter, ResilienceMonitor};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let limiter = RateLimiter::new(RateLimitConfig {
///     requests_per_second: Some(5.0),
///     ..RateLimitConfig::default()
/// })?;
/// let mut monitor = ResilienceMonitor::new();
/// let numbers = || futures::stream::iter([Ok::<_, std::io::Error>(1), Ok(2)]);
/// let mut stream = rate_limited_stream(numbers, limiter, "numbers");
/// while let Some(item) = stream.next().await {
///     monitor.handle_event(&item);
/// }
/// assert_eq!(monitor.rate_limit_waits(), 1);
/// assert_eq!(monitor.retry_count(), 0);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResilienceMonitor {
    retry_count: u64,
    rate_limit_waits: u64,
    total_delay: Duration,
    rate_limit_wait_time: Duration,
    circuit_opens: u64,
}

impl ResilienceMonitor {
    /// A monitor with every count at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts `item` if it carries a resilience event.
    pub fn handle_event<I: AsEventRef + ?Sized>(&mut self, item: &I) {
        match item.as_event_ref() {
            Some(EventRef::Retry(event)) => {
                self.retry_count += 1;
                self.total_delay += event.next_delay();
            }
            Some(EventRef::RateLimit(event)) => {
                self.rate_limit_waits += 1;
                self.rate_limit_wait_time += event.waited;
            }
            Some(EventRef::Circuit(event)) => {
                self.circuit_opens += u64::from(event.to == CircuitState::Open);
            }
            _ => {}
        }
    }

    /// Retry events seen.
    pub fn retry_count(&self) -> u64 {
        self.retry_count
    }

    /// Rate-limit acquisitions seen, whether or not they had to wait.
    pub fn rate_limit_waits(&self) -> u64 {
        self.rate_limit_waits
    }

    /// The back-off delays of all retries, added up.
    pub fn total_delay(&self) -> Duration {
        self.total_delay
    }

    /// How many times a circuit breaker opened.
    pub fn circuit_opens(&self) -> u64 {
        self.circuit_opens
    }

    /// Time spent waiting for rate-limit tokens, added up.
    pub fn rate_limit_wait_time(&self) -> Duration {
        self.rate_limit_wait_time
    }
}

impl fmt::Display for ResilienceMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} retries ({:.3}s back-off), {} rate-limit acquisitions ({:.3}s waiting)",
            self.retry_count,
            self.total_delay.as_secs_f64(),
            self.rate_limit_waits,
            self.rate_limit_wait_time.as_secs_f64(),
        )
    }
}
