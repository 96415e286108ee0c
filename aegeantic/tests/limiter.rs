//! Rate limiter behaviour on a paused clock: refill, FIFO, cancellation, errors.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegeantic::resilience::{ConfigError, RateLimitConfig, RateLimitError, RateLimiter};
use common::limiter;
use futures::FutureExt;
use tokio::time::Instant;

fn config(
    second: Option<f64>,
    minute: Option<f64>,
    hour: Option<f64>,
    burst: u32,
) -> RateLimitConfig {
    RateLimitConfig {
        requests_per_second: second,
        requests_per_minute: minute,
        requests_per_hour: hour,
        burst_size: burst,
        name: None,
    }
}

#[test]
fn bad_configs_are_typed_errors() {
    let err = |c| RateLimiter::new(c).unwrap_err();
    assert_eq!(err(config(None, None, None, 10)), ConfigError::NoRate);
    assert_eq!(
        err(config(Some(10.0), None, None, 0)),
        ConfigError::ZeroBurst
    );
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let e = err(config(None, Some(bad), None, 10));
        assert!(
            matches!(
                e,
                ConfigError::InvalidRate {
                    field: "requests_per_minute",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("requests_per_minute"));
    }
    assert!(matches!(
        err(config(Some(2e6), None, None, 1)),
        ConfigError::RateOutOfRange {
            field: "requests_per_second",
            ..
        }
    ));
    assert!(matches!(
        err(config(None, None, Some(1e-4), 1)),
        ConfigError::RateOutOfRange {
            field: "requests_per_hour",
            ..
        }
    ));
    assert!(matches!(
        err(config(None, None, Some(0.01), u32::MAX)),
        ConfigError::BucketTooLarge { .. }
    ));
}

#[test]
fn the_slowest_window_binds() {
    let c = config(Some(10.0), Some(500.0), Some(20_000.0), 20);
    assert!((c.binding_rate().unwrap() - 20_000.0 / 3600.0).abs() < 1e-9);
    let c = config(Some(10.0), Some(60.0), None, 20);
    assert!((c.binding_rate().unwrap() - 1.0).abs() < 1e-12);
}

#[tokio::test(start_paused = true)]
async fn requests_that_can_never_fit_fail_at_once() {
    let l = limiter(1.0, 5);
    assert_eq!(
        l.try_acquire(6).await,
        Err(RateLimitError::InsufficientCapacity {
            requested: 6,
            burst: 5
        })
    );
    let start = Instant::now();
    assert_eq!(
        l.acquire(6, "big").await.unwrap_err(),
        RateLimitError::InsufficientCapacity {
            requested: 6,
            burst: 5
        }
    );
    assert_eq!(
        l.acquire(0, "none").await.unwrap_err(),
        RateLimitError::ZeroTokens
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(l.tokens_available(), 5.0, "refused requests take nothing");
}

#[tokio::test(start_paused = true)]
async fn the_bucket_starts_full_and_refills_continuously_up_to_the_burst() {
    let l = limiter(10.0, 4);
    assert_eq!(l.tokens_available(), 4.0);
    assert!(l.try_acquire(4).await.unwrap());
    assert_eq!(l.tokens_available(), 0.0);
    assert!(!l.try_acquire(1).await.unwrap());
    tokio::time::advance(Duration::from_millis(150)).await;
    assert!((l.tokens_available() - 1.5).abs() < 1e-9);
    assert!(l.try_acquire(1).await.unwrap());
    assert!((l.tokens_available() - 0.5).abs() < 1e-9);
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_eq!(l.tokens_available(), 4.0, "never above the burst");
}

#[tokio::test(start_paused = true)]
async fn acquire_returns_at_once_when_tokens_are_there() {
    let l = limiter(1.0, 3);
    let start = Instant::now();
    let got = l.acquire(2, "op").await.unwrap();
    assert_eq!(got.waited, Duration::ZERO);
    assert_eq!(got.tokens_remaining, 1.0);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

/// Queues `weights` in order on `l` (each polled once, so queued) and returns when each
/// finished, as milliseconds since the start.
async fn finish_times(l: &RateLimiter, weights: &[u32], cancel: &[usize]) -> Vec<Option<u64>> {
    let start = Instant::now();
    let done = Arc::new(Mutex::new(vec![None; weights.len()]));
    let mut handles = Vec::new();
    for (i, &w) in weights.iter().enumerate() {
        let (l, done) = (l.clone(), done.clone());
        handles.push(tokio::spawn(async move {
            l.acquire(w, "op").await.unwrap();
            done.lock().unwrap()[i] = Some(start.elapsed().as_millis() as u64);
        }));
        tokio::task::yield_now().await; // let it queue before the next arrives
    }
    for &i in cancel {
        handles[i].abort();
    }
    for h in handles {
        let _ = h.await;
    }
    let times = done.lock().unwrap().clone();
    times
}

#[tokio::test(start_paused = true)]
async fn waiters_are_served_first_come_first_served_whatever_their_weight() {
    // 10/s: a token every 100 ms. The bucket starts empty.
    let l = limiter(10.0, 10);
    assert!(l.try_acquire(10).await.unwrap());
    let times = finish_times(&l, &[10, 1, 5, 1, 3], &[]).await;
    assert_eq!(
        times,
        [Some(1000), Some(1100), Some(1600), Some(1700), Some(2000)]
    );
}

#[tokio::test(start_paused = true)]
async fn try_acquire_does_not_barge_past_waiters() {
    let l = limiter(10.0, 10);
    assert!(l.try_acquire(10).await.unwrap());
    let waiter = {
        let l = l.clone();
        tokio::spawn(async move { l.acquire(5, "big").await.unwrap() })
    };
    tokio::task::yield_now().await;
    // At 300 ms three tokens exist, but they belong to the queued request.
    tokio::time::advance(Duration::from_millis(300)).await;
    assert!(!l.try_acquire(1).await.unwrap());
    assert_eq!(l.tokens_available(), 0.0);
    let got = waiter.await.unwrap();
    assert_eq!(got.waited, Duration::from_millis(500));
    assert!(!l.try_acquire(1).await.unwrap());
    tokio::time::advance(Duration::from_millis(100)).await;
    assert!(l.try_acquire(1).await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_waiter_hands_its_place_forward() {
    let l = limiter(10.0, 10);
    assert!(l.try_acquire(10).await.unwrap());
    // Without the cancellation: 300, 600, 900. With the middle one gone: 300, 600.
    let times = finish_times(&l, &[3, 3, 3], &[1]).await;
    assert_eq!(times, [Some(300), None, Some(600)]);
    tokio::time::advance(Duration::from_millis(1000) - Duration::from_millis(600)).await;
    assert!(
        (l.tokens_available() - 4.0).abs() < 1e-9,
        "no token was lost"
    );
}

#[tokio::test(start_paused = true)]
async fn cancelling_part_way_through_a_wait_moves_the_queue_up() {
    let l = limiter(10.0, 10);
    assert!(l.try_acquire(10).await.unwrap());
    let start = Instant::now();
    let first = {
        let l = l.clone();
        tokio::spawn(async move { l.acquire(5, "a").await.unwrap() })
    };
    tokio::task::yield_now().await;
    let second = {
        let l = l.clone();
        tokio::spawn(async move {
            l.acquire(2, "b").await.unwrap();
            Instant::now()
        })
    };
    tokio::task::yield_now().await;
    tokio::time::advance(Duration::from_millis(200)).await;
    first.abort();
    // The second would have gone at 700 ms; with 5 tokens handed back it goes at 200 ms.
    let finished = second.await.unwrap();
    assert_eq!(finished - start, Duration::from_millis(200));
}

#[tokio::test(start_paused = true)]
async fn a_waiter_dropped_after_its_instant_keeps_its_tokens_spent() {
    let l = limiter(10.0, 1);
    assert!(l.try_acquire(1).await.unwrap());
    let mut waiting = Box::pin(l.acquire(1, "late"));
    assert!(futures::poll!(waiting.as_mut()).is_pending());
    tokio::time::advance(Duration::from_millis(150)).await;
    drop(waiting);
    // Its token (due at 100 ms) counts as granted; the next exists at 200 ms.
    assert!(!l.try_acquire(1).await.unwrap());
    tokio::time::advance(Duration::from_millis(50)).await;
    assert!(l.try_acquire(1).await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn a_clone_shares_the_bucket() {
    let a = limiter(1.0, 2);
    let b = a.clone();
    assert!(a.try_acquire(2).await.unwrap());
    assert!(!b.try_acquire(1).await.unwrap());
    assert!(format!("{a:?}").contains("tokens_available"));
}

#[tokio::test(start_paused = true)]
async fn per_minute_limits_space_requests_by_the_minute_rate() {
    let l = RateLimiter::new(config(Some(10.0), Some(60.0), None, 1)).unwrap();
    let start = Instant::now();
    for _ in 0..3 {
        l.acquire(1, "op").await.unwrap();
    }
    assert_eq!(start.elapsed(), 2 * Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_try_takes_tokens_when_polled_and_only_once() {
    let l = limiter(1.0, 2);
    drop(l.try_acquire(2));
    assert_eq!(l.tokens_available(), 2.0, "an unpolled try takes nothing");
    let mut try_one = Box::pin(l.try_acquire(1));
    assert_eq!(l.tokens_available(), 2.0, "nor does making one");
    assert_eq!(
        futures::poll!(try_one.as_mut()),
        std::task::Poll::Ready(Ok(true))
    );
    assert!(
        futures::poll!(try_one.as_mut()).is_pending(),
        "polled again after completing"
    );
    assert_eq!(
        l.tokens_available(),
        1.0,
        "one token, however often it was polled"
    );
}

#[test]
fn waiting_outside_a_runtime_is_an_error_not_a_panic() {
    let l = limiter(1.0, 1);
    assert!(futures::executor::block_on(l.try_acquire(1)).unwrap());
    let result = futures::executor::block_on(l.acquire(1, "op"));
    assert_eq!(result.unwrap_err(), RateLimitError::NoRuntime);
    assert!(l.tokens_available() < 0.01, "nothing was booked");
}

#[test]
fn concurrent_callers_never_exceed_the_bucket() {
    // Real threads, real clock: only the bound is asserted, which holds at any speed.
    let l = limiter(1000.0, 50);
    let start = std::time::Instant::now();
    let admitted: u64 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let l = l.clone();
                scope.spawn(move || {
                    let mut n = 0u64;
                    while start.elapsed() < Duration::from_millis(100) {
                        n += u64::from(l.try_acquire(1).now_or_never().unwrap().unwrap());
                    }
                    n
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    let elapsed = start.elapsed().as_secs_f64();
    assert!(
        admitted as f64 <= 50.0 + 1000.0 * elapsed + 1.0,
        "{admitted} in {elapsed}s"
    );
    assert!(admitted >= 50, "{admitted}");
}
