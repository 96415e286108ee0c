//! The `chaos` feature: each fault alone, checked rates, reproducible runs, observed rates
//! near the configured ones, and a resilient stream recovering from injected faults. All on
//! a paused clock.
#![cfg(feature = "chaos")]

use std::io;
use std::sync::Arc;
use std::time::Duration;

use aegeantic::chaos::{chaos, chaos_future, Chaos, ChaosError};
use aegeantic::resilience::{resilient_stream, Resilient, RetryConfig};
use futures::stream::{self, StreamExt};
use proptest::prelude::*;
use tokio::time::{timeout, Instant};

fn reset() -> io::Error {
    io::Error::from(io::ErrorKind::ConnectionReset)
}

fn numbers(n: u32) -> impl futures::Stream<Item = Result<u32, io::Error>> {
    stream::iter((0..n).map(Ok))
}

/// What a consumer saw at each position, and when (milliseconds after the start).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Item(u32, u128),
    Error(u128),
    End(u128),
    Stalled(u128),
}

async fn observe(faults: Chaos<u32, io::Error>, items: u32) -> Vec<Seen> {
    let start = Instant::now();
    let ms = || start.elapsed().as_millis();
    let mut stream = chaos(numbers(items), faults).expect("valid rates");
    let mut seen = Vec::new();
    loop {
        match timeout(Duration::from_secs(3600), stream.next()).await {
            Ok(Some(Ok(item))) => seen.push(Seen::Item(item, ms())),
            Ok(Some(Err(_))) => seen.push(Seen::Error(ms())),
            Ok(None) => {
                seen.push(Seen::End(ms()));
                return seen;
            }
            Err(_) => {
                seen.push(Seen::Stalled(ms()));
                return seen;
            }
        }
    }
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime")
}

#[test]
fn rates_outside_zero_to_one_or_nan_are_refused_not_clamped() {
    for rate in [-0.01, 1.01, f64::NAN, f64::INFINITY] {
        let cases: [(&str, Chaos<u32, io::Error>); 5] = [
            ("error", Chaos::seeded(1).error_rate(rate, reset)),
            ("latency", Chaos::seeded(1).latency(rate, Duration::ZERO)),
            ("stall", Chaos::seeded(1).stall_rate(rate)),
            ("early end", Chaos::seeded(1).early_end_rate(rate)),
            ("replace", Chaos::seeded(1).replace_rate(rate, |x| x)),
        ];
        for (fault, faults) in cases {
            let error = chaos(numbers(1), faults.clone()).unwrap_err();
            assert_eq!(error.fault, fault);
            assert!(error.rate.is_nan() == rate.is_nan());
            assert!(chaos_future(async { Ok(1) }, faults).is_err());
            assert!(error.to_string().contains(fault), "{error}");
        }
    }
    // The first bad rate is the one reported; the bounds themselves are probabilities.
    let faults: Chaos<u32, io::Error> = Chaos::seeded(1)
        .error_rate(0.0, reset)
        .latency(1.0, Duration::ZERO)
        .stall_rate(2.0)
        .early_end_rate(-1.0);
    let error = chaos(numbers(1), faults).unwrap_err();
    assert_eq!(
        error,
        ChaosError {
            fault: "stall",
            rate: 2.0
        }
    );
}

#[tokio::test(start_paused = true)]
async fn without_faults_the_stream_is_unchanged() {
    let seen = observe(Chaos::seeded(3), 3).await;
    let expected = [
        Seen::Item(0, 0),
        Seen::Item(1, 0),
        Seen::Item(2, 0),
        Seen::End(0),
    ];
    assert_eq!(seen, expected);
}

#[tokio::test(start_paused = true)]
async fn an_error_rate_of_one_fails_before_the_first_item_and_ends() {
    let seen = observe(Chaos::seeded(3).error_rate(1.0, reset), 3).await;
    assert_eq!(seen, [Seen::Error(0), Seen::End(0)]);
}

#[tokio::test(start_paused = true)]
async fn errors_come_after_item_k_for_every_k() {
    // With a rate of one half, the first hundred seeds fail at many positions: each run is
    // a prefix of the items, then the error, then the end.
    let mut positions = std::collections::BTreeSet::new();
    for seed in 0..100 {
        let seen = observe(Chaos::seeded(seed).error_rate(0.5, reset), 4).await;
        let k = seen
            .iter()
            .take_while(|s| matches!(s, Seen::Item(..)))
            .count();
        let prefix: Vec<Seen> = (0..k as u32).map(|i| Seen::Item(i, 0)).collect();
        assert_eq!(seen[..k], prefix[..]);
        match &seen[k..] {
            [Seen::Error(0), Seen::End(0)] => {
                positions.insert(k);
            }
            [Seen::End(0)] => assert_eq!(k, 4),
            rest => panic!("after {k} items: {rest:?}"),
        }
    }
    assert_eq!(positions.into_iter().collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
}

#[tokio::test(start_paused = true)]
async fn latency_waits_before_each_item_and_the_end() {
    let faults = Chaos::seeded(3).latency(1.0, Duration::from_millis(200));
    let seen = observe(faults, 2).await;
    assert_eq!(
        seen,
        [Seen::Item(0, 200), Seen::Item(1, 400), Seen::End(600)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_stall_yields_nothing_until_the_consumer_gives_up_and_dropping_it_drops_the_stream() {
    let alive = Arc::new(());
    let guard = Arc::clone(&alive);
    let inner = numbers(3).map(move |item| {
        let _ = &guard;
        item
    });
    let mut stalled = chaos(inner, Chaos::seeded(3).stall_rate(1.0)).unwrap();
    let waited = timeout(Duration::from_secs(86_400), stalled.next()).await;
    assert!(waited.is_err(), "a stall never ends by itself");
    assert_eq!(Arc::strong_count(&alive), 2);
    drop(stalled);
    assert_eq!(Arc::strong_count(&alive), 1);
}

#[tokio::test(start_paused = true)]
async fn an_early_end_stops_before_the_wrapped_stream_does() {
    let seen = observe(Chaos::seeded(3).early_end_rate(1.0), 3).await;
    assert_eq!(seen, [Seen::End(0)]);
}

#[tokio::test(start_paused = true)]
async fn a_replaced_item_is_what_the_function_makes_of_it() {
    let seen = observe(Chaos::seeded(3).replace_rate(1.0, |x| x + 100), 2).await;
    assert_eq!(seen, [Seen::Item(100, 0), Seen::Item(101, 0), Seen::End(0)]);
}

#[tokio::test(start_paused = true)]
async fn the_future_wrapper_fails_lags_stalls_and_replaces() {
    let ok = || async { Ok::<u32, io::Error>(7) };
    let failed = chaos_future(ok(), Chaos::seeded(1).error_rate(1.0, reset)).unwrap();
    assert_eq!(
        failed.await.unwrap_err().kind(),
        io::ErrorKind::ConnectionReset
    );

    let start = Instant::now();
    let slow = Chaos::seeded(1).latency(1.0, Duration::from_millis(250));
    assert_eq!(chaos_future(ok(), slow).unwrap().await.unwrap(), 7);
    assert_eq!(start.elapsed(), Duration::from_millis(250));

    let stalled = chaos_future(ok(), Chaos::seeded(1).stall_rate(1.0)).unwrap();
    assert!(timeout(Duration::from_secs(86_400), stalled).await.is_err());

    let replaced = Chaos::seeded(1).replace_rate(1.0, |x| x * 6);
    assert_eq!(chaos_future(ok(), replaced).unwrap().await.unwrap(), 42);

    // A future has no early end: its output stands.
    let early = Chaos::seeded(1).early_end_rate(1.0);
    assert_eq!(chaos_future(ok(), early).unwrap().await.unwrap(), 7);
}

fn mixed(seed: u64, rates: [f64; 5]) -> Chaos<u32, io::Error> {
    Chaos::seeded(seed)
        .error_rate(rates[0], reset)
        .latency(rates[1], Duration::from_millis(50))
        .stall_rate(rates[2])
        .early_end_rate(rates[3])
        .replace_rate(rates[4], |x| x + 1000)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The same seed and faults give the same run, stream after stream; another seed gives
    /// another run (somewhere within 50 streams, at these rates).
    #[test]
    fn a_seed_reproduces_its_run(seed in any::<u64>(), rates in prop::array::uniform5(0.0..0.3f64)) {
        let runtime = paused_runtime();
        let runs = |seed: u64| runtime.block_on(async {
            let faults = mixed(seed, rates);
            let mut runs = Vec::new();
            for _ in 0..50 {
                runs.push(observe(faults.clone(), 5).await);
            }
            runs
        });
        let first = runs(seed);
        prop_assert_eq!(&first, &runs(seed));
        if rates.iter().any(|rate| *rate > 0.05) {
            prop_assert_ne!(&first, &runs(seed.wrapping_add(1)));
        }
    }

    /// Over 4,000 positions, each fault's observed rate is within five standard deviations
    /// of the configured one.
    #[test]
    fn observed_rates_are_near_the_configured_ones(
        seed in any::<u64>(),
        error in 0.01..0.5f64,
        latency in 0.01..0.5f64,
        replace in 0.01..0.5f64,
    ) {
        let runtime = paused_runtime();
        let faults = Chaos::seeded(seed)
            .error_rate(error, reset)
            .latency(latency, Duration::from_millis(1))
            .replace_rate(replace, |x| x + 1000);
        let (mut positions, mut errors, mut delayed, mut items, mut replaced) = (0u64, 0u64, 0u64, 0u64, 0u64);
        runtime.block_on(async {
            for _ in 0..1000 {
                // Every position either fails, or waits (latency) or not for its item or end.
                let mut stream = chaos(numbers(3), faults.clone()).unwrap();
                let mut expected = 0;
                loop {
                    positions += 1;
                    let start = Instant::now();
                    let next = stream.next().await;
                    match next {
                        Some(Err(_)) => { errors += 1; break; }
                        Some(Ok(item)) => {
                            items += 1;
                            if item >= 1000 { replaced += 1; }
                            prop_assert_eq!(item % 1000, expected);
                            expected += 1;
                        }
                        None => {}
                    }
                    if start.elapsed() > Duration::ZERO { delayed += 1; }
                    if next.is_none() { break; }
                }
            }
            Ok(())
        })?;
        let near = |count: u64, trials: u64, rate: f64| {
            let sigma = (trials as f64 * rate * (1.0 - rate)).sqrt();
            (count as f64 - trials as f64 * rate).abs() <= 5.0 * sigma + 1.0
        };
        prop_assert!(near(errors, positions, error), "errors {errors}/{positions} at {error}");
        // Latency is drawn at the positions that did not fail.
        prop_assert!(near(delayed, positions - errors, latency), "delayed {delayed}/{} at {latency}", positions - errors);
        prop_assert!(near(replaced, items, replace), "replaced {replaced}/{items} at {replace}");
    }
}

/// A resilient stream with first-item and idle timeouts recovers from errors, latency and stalls: every
/// run ends with the full answer once its failed attempts' items are discarded.
#[tokio::test(start_paused = true)]
async fn resilient_stream_recovers_from_injected_faults() {
    let mut retries = 0;
    for seed in 0..50 {
        let faults = Chaos::seeded(seed)
            .error_rate(0.15, reset)
            .latency(0.2, Duration::from_millis(100))
            .stall_rate(0.05);
        let open = move || chaos(numbers(8), faults.clone()).unwrap();
        let retry = RetryConfig::builder()
            .max_attempts(100)
            .base_delay(Duration::from_millis(10))
            .max_delay(Duration::from_millis(100))
            // Both limits: a stall before the first item is no idle stream.
            .first_item_timeout(Duration::from_secs(1))
            .idle_timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let mut items = Vec::new();
        let mut stream = resilient_stream(open, Some(retry), None, "chaos", "custom");
        let start = Instant::now();
        while let Some(item) = stream.next().await {
            match item.expect("recovered within 100 attempts") {
                Resilient::Item(n) => items.push(n),
                Resilient::Retry(event) => {
                    retries += 1;
                    let kept = items.len() - usize::try_from(event.items_delivered).unwrap();
                    items.truncate(kept);
                }
                _ => {}
            }
        }
        assert_eq!(items, (0..8).collect::<Vec<_>>(), "seed {seed}");
        assert!(start.elapsed() < Duration::from_secs(600), "seed {seed}");
    }
    // At these rates most of the 50 operations needed a retry (a clean run is 0.85^9 ·
    // 0.95^9 ≈ 14 % likely).
    assert!(retries > 40, "{retries} retries");
}
