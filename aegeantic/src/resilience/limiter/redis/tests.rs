//! The Redis script against the in-memory bucket, decision for decision, with a test-chosen
//! clock: the two backends must implement one model.

// Shared with the integration tests, which use the rest of it.
#[allow(dead_code)]
#[path = "../../../../tests/common/redis_server.rs"]
mod redis_server;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use redis_server::RedisServer;

use tokio::time::Instant;

use super::{RedisBackend, RedisOptions, Target};
use crate::resilience::limiter::Acquisition;
use crate::resilience::{RateLimitConfig, RateLimitError, RateLimiter};

static KEYS: AtomicU64 = AtomicU64::new(0);

fn backend(server: &RedisServer, config: &RateLimitConfig) -> RedisBackend {
    let key = format!("agree-{}", KEYS.fetch_add(1, Ordering::Relaxed));
    RedisBackend::new(
        Target::Node(&server.url()),
        &key,
        config,
        RedisOptions::default(),
    )
    .unwrap()
}

fn runtime(paused: bool) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(paused)
        .build()
        .unwrap()
}

/// Far from the script's epoch, so that re-basing is exercised.
const START_US: u64 = 60 * 60 * 24 * 365 * 1_000_000;

fn config_strategy() -> impl Strategy<Value = RateLimitConfig> {
    (
        prop::sample::select(vec![1.0, 3.0, 7.0, 10.0, 250.0]),
        prop::option::of(prop::sample::select(vec![30.0, 500.0, 1000.0])),
        prop::option::of(prop::sample::select(vec![2000.0, 20_000.0])),
        1u32..20,
    )
        .prop_map(|(second, minute, hour, burst)| RateLimitConfig {
            requests_per_second: Some(second),
            requests_per_minute: minute,
            requests_per_hour: hour,
            burst_size: burst,
            name: None,
        })
}

/// Arbitrary gaps, and gaps on whole intervals (or one microsecond short of them) so that
/// requests land exactly on, or just before, the instants where a token appears.
fn gap_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..400_000,
        (0u64..50).prop_map(|k| k * 4_000),
        (0u64..10).prop_map(|k| k * 100_000),
        (0u64..4).prop_map(|k| k * 333_334),
        (1u64..10).prop_map(|k| k * 100_000 - 1),
    ]
}

#[test]
fn redis_and_memory_agree_decision_for_decision() {
    let server = RedisServer::start();
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let cases = (
        config_strategy(),
        prop::collection::vec((gap_strategy(), 1u32..20), 1..80),
    );
    runner
        .run(&cases, |(config, requests)| {
            let memory_rt = runtime(true);
            let redis_rt = runtime(false);
            let memory = memory_rt.block_on(async { RateLimiter::new(config.clone()).unwrap() });
            let redis = backend(&server, &config);
            let mut now_us = START_US;
            for (gap_us, tokens) in requests {
                let tokens = tokens.min(config.burst_size);
                now_us += gap_us;
                let local = memory_rt.block_on(async {
                    tokio::time::advance(Duration::from_micros(gap_us)).await;
                    let admitted = memory.try_acquire(tokens).await.unwrap();
                    (admitted, memory.tokens_available())
                });
                let remote = redis_rt
                    .block_on(redis.try_acquire_at(tokens, now_us))
                    .unwrap();
                prop_assert_eq!(remote.now_us, now_us);
                prop_assert_eq!(
                    remote.admitted,
                    local.0,
                    "at {} µs, {} tokens",
                    now_us - START_US,
                    tokens
                );
                prop_assert!(
                    (remote.remaining - local.1).abs() < 1e-5,
                    "remaining {} vs {}",
                    remote.remaining,
                    local.1
                );
            }
            Ok(())
        })
        .unwrap();
}

/// Weighted reservations against several windows with different capacities per token: over
/// any span, each window admits at most `burst + rate · span`.
#[test]
fn reservations_respect_every_window() {
    let config = RateLimitConfig {
        requests_per_second: Some(50.0),
        requests_per_minute: Some(600.0),
        requests_per_hour: None,
        burst_size: 10,
        name: None,
    };
    let server = RedisServer::start();
    let redis = backend(&server, &config);
    let rt = runtime(false);
    let mut grants = Vec::new();
    let mut now_us = START_US;
    for i in 0..200u64 {
        now_us += (i * 7919) % 90_000;
        let tokens = 1 + (i % 5) as u32;
        let reply = rt
            .block_on(redis.call(tokens, super::UNBOUNDED_WAIT_US, Some(now_us)))
            .unwrap();
        assert!(reply.admitted);
        grants.push((now_us + reply.wait_us, u64::from(tokens)));
    }
    grants.sort();
    for (rate_per_s, label) in [(50u64, "second"), (10, "minute")] {
        let interval_us = 1_000_000 / rate_per_s;
        for (i, &(a, _)) in grants.iter().enumerate() {
            let mut taken = 0;
            for &(b, tokens) in &grants[i..] {
                taken += tokens;
                assert!(
                    taken * interval_us <= 10 * interval_us + (b - a),
                    "{label} window: {taken} tokens in {} µs",
                    b - a
                );
            }
        }
    }
    // Demand exceeded the binding rate throughout, so the last grant is exactly where
    // the minute window's bucket allows it.
    let total: u64 = grants.iter().map(|&(_, tokens)| tokens).sum();
    let (first, last) = (START_US, grants.last().unwrap().0);
    assert_eq!(last - first, (total - 10) * 100_000);
}

/// A wait known to end past the deadline is refused at once and books nothing: the tokens
/// it would have taken are there for the next request.
#[tokio::test]
async fn a_wait_past_the_deadline_is_refused_and_books_nothing() {
    let server = RedisServer::start();
    let config = RateLimitConfig {
        requests_per_second: Some(1.0),
        burst_size: 10,
        ..RateLimitConfig::default()
    };
    let limiter = RateLimiter::redis(&server.url(), "deadline", config).unwrap();
    limiter.drain().await.unwrap();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(2);
    // Ten tokens at one per second: ten seconds away.
    let mut acquisition = Acquisition::new(10);
    let refused =
        std::future::poll_fn(|cx| acquisition.poll(&limiter, "op", Some(deadline), cx)).await;
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    match refused {
        Err(RateLimitError::PastDeadline { wait, remaining }) => {
            assert!(wait > Duration::from_secs(9), "{wait:?}");
            assert!(remaining > Duration::from_secs(1), "{remaining:?}");
        }
        other => panic!("{other:?}"),
    }
    tokio::time::sleep_until(start + Duration::from_millis(1100)).await;
    assert!(
        limiter.try_acquire(1).await.unwrap(),
        "the refused request took nothing"
    );
}
