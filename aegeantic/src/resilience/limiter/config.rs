//! What a rate limit is: rates per window and a burst.

use crate::resilience::ConfigError;

/// A rate limit: up to three windows sharing one burst.
///
/// Each configured rate is a window of its own (per second, per minute, per hour), every
/// window holds `burst_size` tokens, and a request passes only when it fits all of them at
/// once. With one capacity for all windows the slowest refill always binds, so the limit is
/// one token bucket of `burst_size` tokens refilled continuously at the most restrictive
/// rate: `requests_per_minute = 500` refills one token every 120 ms.
///
/// Over any span of time `D`, at most `burst_size + rate · D` tokens are granted, where
/// `rate` is the binding per-second rate.
///
/// ```
/// use aegeantic::resilience::{RateLimitConfig, RateLimiter};
///
/// let config = RateLimitConfig {
///     requests_per_second: Some(10.0),
///     requests_per_minute: Some(500.0),
///     burst_size: 20,
///     ..RateLimitConfig::default()
/// };
/// assert!((config.binding_rate().unwrap() - 500.0 / 60.0).abs() < 1e-9);
/// let _limiter = RateLimiter::new(config)?;
/// # Ok::<(), aegeantic::resilience::ConfigError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RateLimitConfig {
    /// Requests per second.
    pub requests_per_second: Option<f64>,
    /// Requests per minute.
    pub requests_per_minute: Option<f64>,
    /// Requests per hour.
    pub requests_per_hour: Option<f64>,
    /// Tokens the bucket holds when full; the largest burst and the largest single request.
    pub burst_size: u32,
    /// The limiter's name in its metrics (feature `metrics`: the `limiter` label of its
    /// waits, tokens, refusals and fallbacks); `"default"` when unset. Name each limiter
    /// after the quota it guards ("openai-chat"), never after a key or a URL: a label is
    /// read by whoever reads the dashboards. The limit itself does not depend on it.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub name: Option<String>,
}

impl Default for RateLimitConfig {
    /// No rate (not yet valid: set at least one) and a burst of 10.
    fn default() -> Self {
        RateLimitConfig {
            requests_per_second: None,
            requests_per_minute: None,
            requests_per_hour: None,
            burst_size: 10,
            name: None,
        }
    }
}

/// Microseconds per window.
const WINDOWS: [(&str, f64); 3] = [
    ("requests_per_second", 1e6),
    ("requests_per_minute", 60e6),
    ("requests_per_hour", 3600e6),
];

impl RateLimitConfig {
    /// The binding (slowest) rate in requests per second, after checking the config.
    ///
    /// # Errors
    /// The same as [`RateLimiter::new`](super::RateLimiter::new).
    pub fn binding_rate(&self) -> Result<f64, ConfigError> {
        let interval = self.emission_interval()?;
        Ok(1e9 / interval as f64)
    }

    /// Nanoseconds per token at the binding (slowest) window.
    pub(crate) fn emission_interval(&self) -> Result<u64, ConfigError> {
        let slowest = self.window_intervals_us()?.into_iter().max();
        Ok(slowest.expect("a valid config has a window") * 1000)
    }

    /// Microseconds per token of each configured window, after checking the config.
    ///
    /// Intervals are rounded up to a whole microsecond, so that rounding never admits more
    /// than the configured rate and every backend (Redis counts in microseconds) computes
    /// the same instants.
    pub(crate) fn window_intervals_us(&self) -> Result<Vec<u64>, ConfigError> {
        let rates = [
            self.requests_per_second,
            self.requests_per_minute,
            self.requests_per_hour,
        ];
        let mut intervals = Vec::with_capacity(3);
        for ((field, window_us), rate) in WINDOWS.into_iter().zip(rates) {
            let Some(value) = rate else { continue };
            if !value.is_finite() || value <= 0.0 {
                return Err(ConfigError::InvalidRate { field, value });
            }
            let interval_us = window_us / value;
            // One token per microsecond at the fast end; 1e-6/s (a token every ~11.6 days)
            // at the slow end keeps `burst · interval` countable for any sane burst.
            if !(1.0..=1e12).contains(&interval_us) {
                return Err(ConfigError::RateOutOfRange { field, value });
            }
            intervals.push(interval_us.ceil() as u64);
        }
        if intervals.is_empty() {
            return Err(ConfigError::NoRate);
        }
        if self.burst_size == 0 {
            return Err(ConfigError::ZeroBurst);
        }
        Ok(intervals)
    }
}
