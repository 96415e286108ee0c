//! `tokio::time::pause` drives the limiter however the limiter and the paused clock meet:
//! made inside a paused runtime, made before the clock was paused, or made outside any
//! runtime and used in a paused one. Test builds carry tokio's `test-util`, so the limiter
//! runs on tokio's clock; no real time passes in these tests.

mod common;

use std::time::Duration;

use common::limiter;
use tokio::time::Instant;

async fn refills_by_the_paused_clock(l: &aegeantic::resilience::RateLimiter) {
    let real = std::time::Instant::now();
    assert!(l.try_acquire(2).await.unwrap());
    assert!(!l.try_acquire(1).await.unwrap());
    tokio::time::advance(Duration::from_millis(100)).await;
    assert!(l.try_acquire(1).await.unwrap(), "advance refilled a token");
    assert!(!l.try_acquire(1).await.unwrap());
    // A waiter sleeps on the paused clock too: auto-advance releases it at once.
    let start = Instant::now();
    l.acquire(1, "op").await.unwrap();
    // tokio's timer fires on whole milliseconds from the runtime's start, and the bucket's
    // instants need not fall on one, so the release may come up to a tick late.
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(100), "{waited:?}");
    assert!(waited <= Duration::from_millis(101), "{waited:?}");
    assert!(real.elapsed() < Duration::from_secs(5), "no real waiting");
}

#[tokio::test(start_paused = true)]
async fn made_inside_a_paused_runtime() {
    refills_by_the_paused_clock(&limiter(10.0, 2)).await;
}

#[tokio::test]
async fn made_before_the_clock_is_paused() {
    let l = limiter(10.0, 2);
    tokio::time::pause();
    refills_by_the_paused_clock(&l).await;
}

#[test]
fn made_outside_any_runtime() {
    let l = limiter(10.0, 2);
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(refills_by_the_paused_clock(&l));
}

#[test]
fn a_limiter_reports_the_clock_it_runs_on() {
    assert!(format!("{:?}", limiter(1.0, 1)).contains("clock: Tokio"));
}

#[tokio::test(start_paused = true)]
async fn after_idling_the_bucket_grants_its_burst_and_no_more() {
    // `tat` is ahead of the clock after the first burst; the bucket then idles past it. A
    // grant that trusted the old reading would credit the idle time beyond the burst.
    let l = limiter(10.0, 3);
    assert!(l.try_acquire(3).await.unwrap());
    tokio::time::advance(Duration::from_secs(10)).await;
    let mut granted = 0;
    for _ in 0..4 {
        granted += usize::from(l.try_acquire(1).await.unwrap());
    }
    assert_eq!(granted, 3);
}
