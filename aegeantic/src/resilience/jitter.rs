//! Jitter strategies: how a back-off delay is randomised so that clients that failed
//! together do not retry together.
//!
//! The strategies are those compared in Marc Brooker's study "Exponential Backoff and
//! Jitter" (AWS Architecture Blog, 2015); `cargo run --release --example
//! backoff_simulation` reproduces it. With `v` the capped back-off delay:
//!
//! | strategy          | delay                                   |
//! |-------------------|-----------------------------------------|
//! | `None`            | `v`                                     |
//! | `Proportional(f)` | `v · U(1 - f, 1 + f)`, capped           |
//! | `Full`            | `U(0, v)`                               |
//! | `Equal`           | `v/2 + U(0, v/2)`                       |
//! | `Decorrelated`    | `min(cap, U(base, 3 · previous delay))` |
//!
//! Full jitter does the least work under contention; decorrelated jitter finishes soonest.

use std::time::Duration;

use rand::{Rng, RngExt};

use super::backoff::saturating_secs;
use super::ConfigError;

/// How a back-off delay is randomised.
///
/// ```
/// use std::time::Duration;
/// use aegeantic::resilience::Jitter;
///
/// let v = Duration::from_secs(4);
/// let cap = Duration::from_secs(60);
/// let base = Duration::from_secs(1);
/// let mut rng = rand::rng();
/// let d = Jitter::Full.apply(v, None, base, cap, &mut rng);
/// assert!(d <= v);
/// let d = Jitter::Equal.apply(v, None, base, cap, &mut rng);
/// assert!(d >= v / 2 && d <= v);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Jitter {
    /// The delay as the back-off schedule says.
    None,
    /// Spread uniformly by ± the fraction (0 to 1); `Proportional(0.25)` is the
    /// reference's `jitter=True`.
    Proportional(f64),
    /// Anywhere between zero and the delay.
    Full,
    /// At least half the delay, the rest random.
    Equal,
    /// Grows from the previous delay rather than from the attempt number.
    Decorrelated,
}

impl Jitter {
    /// The reference's `jitter=True`: ±25 %.
    pub const REFERENCE: Jitter = Jitter::Proportional(0.25);

    /// Checks the parameter of [`Jitter::Proportional`].
    ///
    /// # Errors
    /// [`ConfigError::InvalidJitter`] for a fraction outside `[0, 1]` or not finite.
    pub fn validate(self) -> Result<Self, ConfigError> {
        match self {
            Jitter::Proportional(fraction) if !(0.0..=1.0).contains(&fraction) => {
                Err(ConfigError::InvalidJitter(fraction))
            }
            jitter => Ok(jitter),
        }
    }

    /// Randomises `delay`, the back-off schedule's delay for this attempt (already capped).
    ///
    /// `previous` is the delay actually slept before the previous retry (`None` before the
    /// first); only [`Jitter::Decorrelated`] uses it. The result always lies in
    /// `[0, max_delay]`.
    pub fn apply<R: Rng + ?Sized>(
        self,
        delay: Duration,
        previous: Option<Duration>,
        base_delay: Duration,
        max_delay: Duration,
        rng: &mut R,
    ) -> Duration {
        let v = delay.min(max_delay).as_secs_f64();
        let secs = match self {
            Jitter::None => v,
            Jitter::Proportional(fraction) => v * rng.random_range(1.0 - fraction..=1.0 + fraction),
            Jitter::Full => v * rng.random_range(0.0..=1.0),
            Jitter::Equal => v / 2.0 + v / 2.0 * rng.random_range(0.0..=1.0),
            Jitter::Decorrelated => {
                let low = base_delay.as_secs_f64();
                let high = previous.unwrap_or(base_delay).as_secs_f64() * 3.0;
                if high > low {
                    rng.random_range(low..=high)
                } else {
                    low
                }
            }
        };
        Duration::try_from_secs_f64(secs.max(0.0)).map_or(max_delay, |d| d.min(max_delay))
    }
}

/// `delay` lengthened by `U(0, fraction)` of itself, saturating at [`Duration::MAX`].
pub(crate) fn lengthen<R: Rng + ?Sized>(delay: Duration, fraction: f64, rng: &mut R) -> Duration {
    if fraction <= 0.0 || delay.is_zero() {
        return delay;
    }
    let extra = delay.as_secs_f64() * fraction * rng.random_range(0.0..=1.0);
    delay.saturating_add(saturating_secs(extra))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn strategies() -> impl Strategy<Value = Jitter> {
        prop_oneof![
            Just(Jitter::None),
            (0.0f64..=1.0).prop_map(Jitter::Proportional),
            Just(Jitter::Full),
            Just(Jitter::Equal),
            Just(Jitter::Decorrelated),
        ]
    }

    proptest! {
        #[test]
        fn every_jittered_delay_lies_within_zero_and_the_cap(
            jitter in strategies(),
            delay_ms in 0u64..10_000_000,
            previous_ms in prop::option::of(0u64..10_000_000),
            base_ms in 0u64..10_000,
            cap_ms in 0u64..1_000_000,
        ) {
            let cap = Duration::from_millis(cap_ms);
            let d = jitter.apply(
                Duration::from_millis(delay_ms),
                previous_ms.map(Duration::from_millis),
                Duration::from_millis(base_ms),
                cap,
                &mut rand::rng(),
            );
            prop_assert!(d <= cap);
        }

        #[test]
        fn extreme_durations_stay_in_range(
            jitter in strategies(),
            delay in any_duration(),
            previous in prop::option::of(any_duration()),
            base in any_duration(),
            cap in any_duration(),
            fraction in 0.0f64..=1.0,
        ) {
            let d = jitter.apply(delay, previous, base, cap, &mut rand::rng());
            prop_assert!(d <= cap);
            let longer = lengthen(delay, fraction, &mut rand::rng());
            prop_assert!(longer >= delay);
            let bound = delay.as_secs_f64() * (1.0 + fraction);
            prop_assert!(longer == Duration::MAX || longer.as_secs_f64() <= bound * (1.0 + 1e-12));
        }
    }

    fn any_duration() -> impl Strategy<Value = Duration> {
        prop_oneof![
            Just(Duration::MAX),
            Just(Duration::ZERO),
            (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
            (0u64..100_000_000_000).prop_map(Duration::from_micros),
        ]
    }

    #[test]
    fn strategies_stay_in_their_bands() {
        let (v, base, cap) = (
            Duration::from_secs(8),
            Duration::from_secs(1),
            Duration::from_secs(100),
        );
        let mut rng = rand::rng();
        for _ in 0..1000 {
            let d = Jitter::Equal.apply(v, None, base, cap, &mut rng);
            assert!(d >= v / 2 && d <= v);
            let d = Jitter::Full.apply(v, None, base, cap, &mut rng);
            assert!(d <= v);
            let d =
                Jitter::Decorrelated.apply(v, Some(Duration::from_secs(5)), base, cap, &mut rng);
            assert!(d >= base && d <= Duration::from_secs(15));
            let d = Jitter::REFERENCE.apply(v, None, base, cap, &mut rng);
            assert!(d >= Duration::from_secs(6) && d <= Duration::from_secs(10));
        }
        assert_eq!(Jitter::None.apply(v, None, base, cap, &mut rng), v);
    }

    #[test]
    fn fractions_outside_zero_to_one_are_rejected() {
        assert_eq!(
            Jitter::Proportional(1.5).validate(),
            Err(ConfigError::InvalidJitter(1.5))
        );
        assert!(Jitter::Proportional(f64::NAN).validate().is_err());
        assert!(Jitter::Proportional(0.25).validate().is_ok());
    }
}
