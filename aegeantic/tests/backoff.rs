use std::time::Duration;

use aegeantic::resilience::{Backoff, ConfigError, Jitter, RetryConfig};
use proptest::prelude::*;

fn secs(backoff: Backoff, base: f64, max: f64, attempts: u32) -> Vec<f64> {
    let config = RetryConfig::builder()
        .backoff(backoff)
        .base_delay(Duration::from_secs_f64(base))
        .max_delay(Duration::from_secs_f64(max))
        .jitter(false)
        .build()
        .unwrap();
    (1..=attempts)
        .map(|n| config.delay(n).as_secs_f64())
        .collect()
}

#[test]
fn exponential_doubles_up_to_the_cap() {
    assert_eq!(
        secs(Backoff::Exponential, 1.0, 60.0, 8),
        [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    );
}

#[test]
fn linear_grows_by_the_base() {
    assert_eq!(
        secs(Backoff::Linear, 2.0, 30.0, 17),
        [
            2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0, 20.0, 22.0, 24.0, 26.0, 28.0, 30.0,
            30.0, 30.0
        ]
    );
}

#[test]
fn constant_stays_put() {
    assert_eq!(secs(Backoff::Constant, 5.0, 60.0, 4), [5.0; 4]);
}

#[test]
fn defaults_match_the_reference() {
    let config = RetryConfig::default();
    assert_eq!(config.max_attempts(), 3);
    assert_eq!(config.backoff(), Backoff::Exponential);
    assert_eq!(config.base_delay(), Duration::from_secs(1));
    assert_eq!(config.max_delay(), Duration::from_secs(60));
    assert_eq!(config.jitter(), Jitter::REFERENCE);
}

#[test]
fn bad_configs_name_their_field() {
    let zero = RetryConfig::builder().max_attempts(0).build().unwrap_err();
    assert_eq!(zero, ConfigError::ZeroAttempts);
    assert!(zero.to_string().contains("max_attempts"));

    let inverted = RetryConfig::builder()
        .base_delay(Duration::from_secs(10))
        .max_delay(Duration::from_secs(5))
        .build()
        .unwrap_err();
    assert!(matches!(inverted, ConfigError::BaseDelayExceedsMax { .. }));
    let message = inverted.to_string();
    assert!(
        message.contains("base_delay") && message.contains("max_delay"),
        "{message}"
    );
}

#[test]
fn backoff_names_parse() {
    assert_eq!("exponential".parse(), Ok(Backoff::Exponential));
    assert_eq!("linear".parse(), Ok(Backoff::Linear));
    assert_eq!("constant".parse(), Ok(Backoff::Constant));
    assert!("quadratic".parse::<Backoff>().is_err());
}

#[test]
fn jitter_spreads_over_the_whole_band() {
    let config = RetryConfig::builder()
        .backoff(Backoff::Constant)
        .base_delay(Duration::from_secs(4))
        .build()
        .unwrap();
    let samples: Vec<f64> = (0..2000).map(|_| config.delay(1).as_secs_f64()).collect();
    let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
    let max = samples.iter().copied().fold(0.0, f64::max);
    assert!((3.0..3.1).contains(&min), "min {min}");
    assert!((4.9..=5.0).contains(&max), "max {max}");
}

fn backoff_strategy() -> impl Strategy<Value = Backoff> {
    prop_oneof![
        Just(Backoff::Exponential),
        Just(Backoff::Linear),
        Just(Backoff::Constant)
    ]
}

proptest! {
    #[test]
    fn every_delay_lies_within_zero_and_the_cap(
        backoff in backoff_strategy(),
        base_ms in 0u64..100_000,
        extra_ms in 0u64..10_000_000,
        attempt in 0u32..=u32::MAX,
        jitter in any::<bool>(),
    ) {
        let base = Duration::from_millis(base_ms);
        let max = base + Duration::from_millis(extra_ms);
        let config = RetryConfig::builder()
            .backoff(backoff)
            .base_delay(base)
            .max_delay(max)
            .jitter(jitter)
            .build()
            .unwrap();
        let plain = backoff.delay(attempt, base, max);
        let delay = config.delay(attempt);
        prop_assert!(delay <= max);
        prop_assert!(plain <= max);
        if jitter {
            // Uniform ±25 % around the plain delay, then capped.
            let low = plain.mul_f64(0.75).min(max);
            let high = plain.mul_f64(1.25).min(max);
            let slack = Duration::from_micros(1);
            prop_assert!(delay + slack >= low && delay <= high + slack, "{delay:?} not in [{low:?}, {high:?}]");
        } else {
            prop_assert_eq!(delay, plain);
        }
    }
}
