//! The limiter on the cycle counter, the clock of production builds. Test builds pick
//! tokio's clock (see `clock.rs`), so the integration tests never reach this one; these
//! tests construct it directly and run in real time.

use std::time::Duration;

use super::{Clock, RateLimitConfig, RateLimiter};

fn on_the_counter(per_second: f64, burst: u32) -> RateLimiter {
    let config = RateLimitConfig {
        requests_per_second: Some(per_second),
        burst_size: burst,
        ..RateLimitConfig::default()
    };
    RateLimiter::with_clock(config, Clock::counter()).unwrap()
}

#[test]
fn concurrent_callers_never_exceed_the_bucket() {
    let l = on_the_counter(1000.0, 50);
    let start = std::time::Instant::now();
    let admitted: u64 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut n = 0u64;
                    while start.elapsed() < Duration::from_millis(100) {
                        n += u64::from(futures::executor::block_on(l.try_acquire(1)).unwrap());
                    }
                    n
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    // The counter and the system clock measure the same span; one token of slack covers
    // the reads not being simultaneous.
    let elapsed = start.elapsed().as_secs_f64();
    assert!(
        admitted as f64 <= 50.0 + 1000.0 * elapsed + 1.0,
        "{admitted} in {elapsed}s"
    );
    assert!(admitted > 50, "the counter refilled nothing: {admitted}");
}

#[test]
fn a_waiter_is_released_once_the_counter_reaches_its_instant() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let l = on_the_counter(100.0, 1);
    let before = l.now();
    assert!(futures::executor::block_on(l.try_acquire(1)).unwrap());
    let got = runtime.block_on(l.acquire(1, "op")).unwrap();
    // The second token exists 10 ms after the first was taken, by the bucket's own clock.
    let waited = l.now() - before;
    assert!(waited >= 10_000_000, "{waited} ns");
    assert!(waited < 500_000_000, "{waited} ns");
    assert!(got.waited > Duration::ZERO);
    assert!(
        !futures::executor::block_on(l.try_acquire(1)).unwrap(),
        "the token was spent on the waiter"
    );
}

#[test]
fn a_cancelled_waiter_gives_its_place_back() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let l = on_the_counter(10.0, 1);
    assert!(futures::executor::block_on(l.try_acquire(1)).unwrap());
    runtime.block_on(async {
        let mut first = Box::pin(l.acquire(1, "first"));
        assert!(futures::poll!(first.as_mut()).is_pending());
        drop(first);
        // The handed-back booking is the one the next request gets: 100 ms after the first
        // grant, not 200.
        let start = std::time::Instant::now();
        l.acquire(1, "second").await.unwrap();
        assert!(
            start.elapsed() < Duration::from_millis(180),
            "{:?}",
            start.elapsed()
        );
    });
}
