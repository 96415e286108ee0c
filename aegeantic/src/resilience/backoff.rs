//! Back-off schedules: how long to wait after the n-th failed attempt.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::ConfigError;

/// How the delay grows from one failed attempt to the next.
///
/// For failed attempt `n` (counting from 1) and base delay `b`:
///
/// | strategy      | delay          | base 1 s            |
/// |---------------|----------------|---------------------|
/// | `Exponential` | `b · 2^(n-1)`  | 1, 2, 4, 8, 16, ... |
/// | `Linear`      | `b · n`        | 1, 2, 3, 4, 5, ...  |
/// | `Constant`    | `b`            | 1, 1, 1, 1, 1, ...  |
///
/// Every delay is then capped at `max_delay`.
///
/// ```
/// use std::time::Duration;
/// use aegeantic::resilience::Backoff;
///
/// let backoff: Backoff = "exponential".parse().unwrap();
/// let secs = |n| backoff.delay(n, Duration::from_secs(1), Duration::from_secs(60)).as_secs();
/// assert_eq!((1..=7).map(secs).collect::<Vec<_>>(), [1, 2, 4, 8, 16, 32, 60]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Backoff {
    /// The delay doubles after each failure.
    #[default]
    Exponential,
    /// The delay grows by `base_delay` after each failure.
    Linear,
    /// Every delay is `base_delay`.
    Constant,
}

impl Backoff {
    /// The delay after failed attempt `attempt` (counting from 1; 0 is read as 1), before
    /// jitter, capped at `max_delay`.
    pub fn delay(self, attempt: u32, base_delay: Duration, max_delay: Duration) -> Duration {
        let n = attempt.max(1);
        let factor = match self {
            // Past 2^1023 an f64 is infinite and 0 · ∞ is NaN; the cap binds long before.
            Backoff::Exponential => 2f64.powi((n - 1).min(1023) as i32),
            Backoff::Linear => f64::from(n),
            Backoff::Constant => 1.0,
        };
        scale_capped(base_delay, factor, max_delay)
    }
}

/// `seconds` as a duration for any number: negative and NaN are zero, and too large for a
/// `Duration` (infinity included) is [`Duration::MAX`], which callers read as "never".
pub(crate) fn saturating_secs(seconds: f64) -> Duration {
    if seconds.is_nan() || seconds <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX)
}

/// `delay · factor`, never above `max_delay`, computed without overflow.
fn scale_capped(delay: Duration, factor: f64, max_delay: Duration) -> Duration {
    let secs = delay.as_secs_f64() * factor;
    if secs >= max_delay.as_secs_f64() {
        return max_delay;
    }
    Duration::try_from_secs_f64(secs).map_or(max_delay, |d| d.min(max_delay))
}

impl FromStr for Backoff {
    type Err = ConfigError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name.trim().to_ascii_lowercase().as_str() {
            "exponential" => Ok(Backoff::Exponential),
            "linear" => Ok(Backoff::Linear),
            "constant" => Ok(Backoff::Constant),
            _ => Err(ConfigError::UnknownBackoff(name.to_owned())),
        }
    }
}

impl fmt::Display for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backoff::Exponential => "exponential",
            Backoff::Linear => "linear",
            Backoff::Constant => "constant",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn huge_attempt_numbers_saturate_at_the_cap() {
        for backoff in [Backoff::Exponential, Backoff::Linear, Backoff::Constant] {
            let d = backoff.delay(u32::MAX, S, Duration::from_secs(30));
            assert!(d <= Duration::from_secs(30), "{backoff}: {d:?}");
        }
        assert_eq!(
            Backoff::Exponential.delay(u32::MAX, Duration::ZERO, S),
            Duration::ZERO
        );
        assert_eq!(
            Backoff::Exponential.delay(200, S, Duration::MAX),
            Duration::MAX
        );
    }

    #[test]
    fn unknown_names_are_errors() {
        assert_eq!(
            "fibonacci".parse::<Backoff>(),
            Err(ConfigError::UnknownBackoff("fibonacci".into()))
        );
        assert_eq!(" Linear ".parse::<Backoff>(), Ok(Backoff::Linear));
    }
}
