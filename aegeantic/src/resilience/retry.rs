//! Retry policy: how many attempts, how long between them, and which errors count.

use std::time::Duration;

use super::backoff::{jittered, Backoff};
use super::{ConfigError, RetryOn};

/// How a wrapped stream retries failed attempts.
///
/// Built with [`RetryConfig::builder`], which checks the values; the defaults are 3
/// attempts, exponential back-off from 1 s capped at 60 s, ±25 % jitter, retrying
/// [`RetryOn::transient`] errors.
///
/// ```
/// use std::time::Duration;
/// use aegeantic::resilience::{Backoff, RetryConfig, RetryOn};
///
/// let config = RetryConfig::builder()
///     .max_attempts(5)
///     .backoff(Backoff::Exponential)
///     .base_delay(Duration::from_millis(500))
///     .max_delay(Duration::from_secs(30))
///     .jitter(true)
///     .retry_on(RetryOn::transient())
///     .build()?;
/// assert_eq!(config.max_attempts(), 5);
///
/// let bad = RetryConfig::builder().max_attempts(0).build();
/// assert!(bad.unwrap_err().to_string().contains("max_attempts"));
/// # Ok::<(), aegeantic::resilience::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct RetryConfig {
    max_attempts: u32,
    backoff: Backoff,
    base_delay: Duration,
    max_delay: Duration,
    jitter: bool,
    retry_on: RetryOn,
}

impl RetryConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> RetryConfigBuilder {
        RetryConfigBuilder {
            config: RetryConfig::default(),
        }
    }

    /// The most attempts a stream makes, the first one included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The back-off strategy.
    pub fn backoff(&self) -> Backoff {
        self.backoff
    }

    /// The first delay, before growth and jitter.
    pub fn base_delay(&self) -> Duration {
        self.base_delay
    }

    /// No delay exceeds this, jitter included.
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }

    /// Whether delays are spread by ±25 %.
    pub fn jitter(&self) -> bool {
        self.jitter
    }

    /// Which errors are retried.
    pub fn retry_on(&self) -> &RetryOn {
        &self.retry_on
    }

    /// The delay after failed attempt `attempt` (counting from 1): the back-off schedule,
    /// spread by jitter when enabled, always within `[0, max_delay]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let delay = self.backoff.delay(attempt, self.base_delay, self.max_delay);
        if self.jitter {
            jittered(delay, self.max_delay)
        } else {
            delay
        }
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 3,
            backoff: Backoff::Exponential,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            jitter: true,
            retry_on: RetryOn::transient(),
        }
    }
}

/// Builds a checked [`RetryConfig`].
#[derive(Clone, Debug)]
#[must_use]
pub struct RetryConfigBuilder {
    config: RetryConfig,
}

impl RetryConfigBuilder {
    /// The most attempts, the first one included (at least 1; default 3).
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.config.max_attempts = max_attempts;
        self
    }

    /// The back-off strategy (default exponential).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// The first delay (default 1 s).
    pub fn base_delay(mut self, base_delay: Duration) -> Self {
        self.config.base_delay = base_delay;
        self
    }

    /// The cap on every delay (default 60 s).
    pub fn max_delay(mut self, max_delay: Duration) -> Self {
        self.config.max_delay = max_delay;
        self
    }

    /// Spread delays by a uniform ±25 % (default on).
    pub fn jitter(mut self, jitter: bool) -> Self {
        self.config.jitter = jitter;
        self
    }

    /// Which errors are retried (default [`RetryOn::transient`]).
    pub fn retry_on(mut self, retry_on: RetryOn) -> Self {
        self.config.retry_on = retry_on;
        self
    }

    /// Checks the values and returns the config.
    ///
    /// # Errors
    /// [`ConfigError::ZeroAttempts`] or [`ConfigError::BaseDelayExceedsMax`].
    pub fn build(self) -> Result<RetryConfig, ConfigError> {
        let config = self.config;
        if config.max_attempts == 0 {
            return Err(ConfigError::ZeroAttempts);
        }
        if config.base_delay > config.max_delay {
            return Err(ConfigError::BaseDelayExceedsMax {
                base_delay: config.base_delay,
                max_delay: config.max_delay,
            });
        }
        Ok(config)
    }
}
