//! Property tests of the rate limiter on a paused clock.
//!
//! Rates are chosen with a whole number of milliseconds per token and requests arrive on
//! whole milliseconds, so every booked instant falls on a tick of tokio's millisecond timer
//! and observed grant times equal the limiter's own instants.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegeantic::resilience::RateLimiter;
use common::{limiter, paused};
use proptest::prelude::*;
use tokio::time::Instant;

fn per_token(ms: u64) -> f64 {
    1000.0 / ms as f64
}

#[derive(Clone, Debug)]
struct Request {
    gap_ms: u64,
    tokens: u32,
    waits: bool,
}

fn requests(burst: u32) -> impl Strategy<Value = Vec<Request>> {
    prop::collection::vec(
        (0u64..150, 1..=burst, any::<bool>()).prop_map(|(gap_ms, tokens, waits)| Request {
            gap_ms,
            tokens,
            waits,
        }),
        1..60,
    )
}

/// Runs `requests` against `l` and returns every grant as (ms since start, tokens).
async fn run(l: RateLimiter, requests: Vec<Request>) -> Vec<(u64, u32)> {
    let start = Instant::now();
    let grants = Arc::new(Mutex::new(Vec::new()));
    let mut waiting = Vec::new();
    for request in requests {
        tokio::time::sleep(Duration::from_millis(request.gap_ms)).await;
        if request.waits {
            let (l, grants) = (l.clone(), grants.clone());
            waiting.push(tokio::spawn(async move {
                l.acquire(request.tokens, "prop").await.unwrap();
                let at = start.elapsed().as_millis() as u64;
                grants.lock().unwrap().push((at, request.tokens));
            }));
            tokio::task::yield_now().await;
        } else if l.try_acquire(request.tokens).await.unwrap() {
            let at = start.elapsed().as_millis() as u64;
            grants.lock().unwrap().push((at, request.tokens));
        }
    }
    for task in waiting {
        task.await.unwrap();
    }
    let mut grants = grants.lock().unwrap().clone();
    grants.sort_by_key(|&(at, _)| at); // stable: same-instant grants keep their order
    grants
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Over any span [a, b] the tokens granted never exceed `burst + rate · (b - a)`.
    #[test]
    fn never_admits_more_than_the_bucket_allows(
        (burst, ms, requests) in (1u32..12, 1u64..60).prop_flat_map(|(burst, ms)| {
            (Just(burst), Just(ms), requests(burst))
        })
    ) {
        let grants = paused(run(limiter(per_token(ms), burst), requests));
        for (i, &(a, _)) in grants.iter().enumerate() {
            let mut taken = 0u64;
            for &(b, tokens) in &grants[i..] {
                taken += u64::from(tokens);
                // taken ≤ burst + (b - a) / ms, in integers.
                prop_assert!(
                    taken * ms <= u64::from(burst) * ms + (b - a),
                    "{taken} tokens in [{a}, {b}] ms with burst {burst}, {ms} ms/token: {grants:?}"
                );
            }
        }
    }

    /// With everyone queued at once, the k-th grant comes exactly when the bucket has
    /// produced enough tokens: the bound is reached, not just respected, and order is kept.
    #[test]
    fn queued_demand_is_served_in_order_at_the_full_rate(
        (burst, ms, weights) in (1u32..12, 1u64..60).prop_flat_map(|(burst, ms)| {
            (Just(burst), Just(ms), prop::collection::vec(1..=burst, 1..40))
        })
    ) {
        let requests: Vec<Request> = weights
            .iter()
            .map(|&tokens| Request { gap_ms: 0, tokens, waits: true })
            .collect();
        let grants = paused(run(limiter(per_token(ms), burst), requests));
        let mut cumulative = 0u64;
        for (&(at, tokens), &weight) in grants.iter().zip(&weights) {
            cumulative += u64::from(weight);
            prop_assert_eq!(tokens, weight, "order kept");
            prop_assert_eq!(at, cumulative.saturating_sub(u64::from(burst)) * ms);
        }
    }

    /// Cancelled waiters free their place: the others are served in order, as if the
    /// cancelled ones had never asked, and no token is lost.
    #[test]
    fn cancelled_waiters_lose_no_tokens_and_keep_the_order(
        (burst, ms, queue) in (1u32..12, 1u64..60).prop_flat_map(|(burst, ms)| {
            (Just(burst), Just(ms), prop::collection::vec((1..=burst, any::<bool>()), 1..40))
        })
    ) {
        let script = queue.clone();
        let (times, end_tokens) = paused(async move {
            let l = limiter(per_token(ms), burst);
            assert!(l.try_acquire(burst).await.unwrap(), "start empty");
            let start = Instant::now();
            let done = Arc::new(Mutex::new(Vec::new()));
            let mut tasks = Vec::new();
            for (i, &(tokens, _)) in script.iter().enumerate() {
                let (l, done) = (l.clone(), done.clone());
                tasks.push(tokio::spawn(async move {
                    l.acquire(tokens, "prop").await.unwrap();
                    done.lock().unwrap().push((i, start.elapsed().as_millis() as u64));
                }));
                tokio::task::yield_now().await;
            }
            for (task, &(_, cancel)) in tasks.iter().zip(&script) {
                if cancel {
                    task.abort();
                }
            }
            for task in tasks {
                let _ = task.await;
            }
            let times = done.lock().unwrap().clone();
            tokio::time::sleep(Duration::from_millis(u64::from(burst) * ms)).await;
            (times, l.tokens_available())
        });
        let mut expected = Vec::new();
        let mut cumulative = 0u64;
        for (i, &(tokens, cancel)) in queue.iter().enumerate() {
            if !cancel {
                cumulative += u64::from(tokens);
                expected.push((i, cumulative * ms));
            }
        }
        prop_assert_eq!(times, expected);
        prop_assert!((end_tokens - f64::from(burst)).abs() < 1e-9, "refilled to {}", end_tokens);
    }
}
