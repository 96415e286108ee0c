//! The uncontended and contended hot paths: a try that is admitted, one that is refused,
//! two threads on one limiter, and an `acquire` whose tokens are there.

use std::future::Future;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::pin::pin;
use std::sync::Barrier;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use aegeantic::resilience::{RateLimitConfig, RateLimiter};
use criterion::Criterion;
use futures::FutureExt;
use governor::clock::MonotonicClock;
use governor::{Quota, RateLimiter as Governor};

use crate::record::{bench, pair};
use crate::Run;

/// A million tokens a second and a billion in the bucket: every call in a run is admitted.
const FAST_RATE: u32 = 1_000_000;
const HUGE_BURST: u32 = 1_000_000_000;

fn ours(per_second: f64, burst: u32) -> RateLimiter {
    RateLimiter::new(RateLimitConfig {
        requests_per_second: Some(per_second),
        burst_size: burst,
        ..RateLimitConfig::default()
    })
    .expect("valid config")
}

fn quota(per_second: u32, burst: u32) -> Quota {
    Quota::per_second(NonZeroU32::new(per_second).unwrap())
        .allow_burst(NonZeroU32::new(burst).unwrap())
}

fn leaky(burst: usize, interval: Duration) -> leaky_bucket::RateLimiter {
    leaky_bucket::RateLimiter::builder()
        .max(burst)
        .initial(burst)
        .refill(1)
        .interval(interval)
        .fair(true)
        .build()
}

/// Polls `future` once with a waker that does nothing.
///
/// The harness helpers are always inlined, so that every measured loop has the same shape
/// whoever else calls them; left to itself the compiler inlines a helper into one caller
/// and calls it from two, which moved results by more than the differences measured.
#[inline(always)]
pub fn poll_once<F: Future>(future: F) -> Poll<F::Output> {
    pin!(future).poll(&mut Context::from_waker(Waker::noop()))
}

/// Times `iters` calls of `call` on a value that `setup` makes fresh for each sample.
#[inline(always)]
fn timed<T>(iters: u64, setup: impl FnOnce() -> T, call: impl Fn(&T) -> bool) -> Duration {
    let target = setup();
    let start = Instant::now();
    for _ in 0..iters {
        black_box(call(black_box(&target)));
    }
    start.elapsed()
}

fn drained(ok: bool) {
    assert!(ok, "draining the bucket");
}

pub fn try_acquire(c: &mut Criterion, run: &Run) {
    const N: u32 = 4;
    let n = NonZeroU32::new(N).unwrap();
    let budget = run.budget(Duration::from_millis(1500), Duration::from_micros(200));
    for admitted in [true, false] {
        let name = if admitted {
            "try_acquire_admitted"
        } else {
            "try_acquire_refused"
        };
        if !run.wants(name) {
            continue;
        }
        // Admitted: a bucket that never runs dry. Refused: one token an hour, taken first.
        let ours_setup = || {
            if admitted {
                ours(f64::from(FAST_RATE), HUGE_BURST)
            } else {
                let l = ours(1.0 / 3600.0, 1);
                drained(
                    l.try_acquire(1)
                        .now_or_never()
                        .expect("the in-process limiter answers at once")
                        .unwrap(),
                );
                l
            }
        };
        let gov_quota = if admitted {
            quota(FAST_RATE, HUGE_BURST)
        } else {
            Quota::per_hour(NonZeroU32::MIN)
        };
        let gov_setup = || {
            let g = Governor::direct(gov_quota);
            if !admitted {
                drained(g.check().is_ok());
            }
            g
        };
        let gov_std_setup = || {
            let g = Governor::direct_with_clock(gov_quota, MonotonicClock);
            if !admitted {
                drained(g.check().is_ok());
            }
            g
        };
        let leaky_setup = || {
            let interval = Duration::from_secs(if admitted { 1 } else { 3600 });
            let l = leaky(if admitted { HUGE_BURST as usize } else { 1 }, interval);
            if !admitted {
                drained(l.try_acquire(1));
            }
            l
        };
        let ours_1 = |iters| {
            timed(iters, ours_setup, |l| {
                l.try_acquire(1)
                    .now_or_never()
                    .expect("the in-process limiter answers at once")
                    .unwrap()
            })
        };
        let gov_1 = |iters| timed(iters, gov_setup, |g| g.check().is_ok());
        let gov_std = |iters| timed(iters, gov_std_setup, |g| g.check().is_ok());
        let leaky_1 = |iters| timed(iters, leaky_setup, |l| l.try_acquire(1));
        let ours_n = |iters| {
            timed(iters, ours_setup, |l| {
                l.try_acquire(N)
                    .now_or_never()
                    .expect("the in-process limiter answers at once")
                    .unwrap()
            })
        };
        let gov_n = |iters| timed(iters, gov_setup, |g| matches!(g.check_n(n), Ok(Ok(()))));

        let mut group = c.benchmark_group(name);
        bench(&mut group, name, "ours", 1, ours_1);
        bench(&mut group, name, "governor", 1, gov_1);
        bench(&mut group, name, "governor_std_clock", 1, gov_std);
        bench(&mut group, name, "leaky_bucket", 1, leaky_1);
        if admitted {
            bench(&mut group, name, "ours_n4", 1, ours_n);
            bench(&mut group, name, "governor_n4", 1, gov_n);
        }
        group.finish();

        let key = |who: &str| format!("{name}/{who}");
        pair(&key("ours"), &key("governor"), 1, budget, ours_1, gov_1);
        pair(
            &key("ours"),
            &key("governor_std_clock"),
            1,
            budget,
            ours_1,
            gov_std,
        );
        pair(
            &key("ours"),
            &key("leaky_bucket"),
            1,
            budget,
            ours_1,
            leaky_1,
        );
        if admitted {
            pair(
                &key("ours_n4"),
                &key("governor_n4"),
                1,
                budget,
                ours_n,
                gov_n,
            );
        }
    }
}

/// Two threads taking tokens from one shared, never-empty limiter: time per grant, i.e.
/// the inverse of the pair's combined throughput.
pub fn contended(c: &mut Criterion, run: &Run) {
    let name = "contended_2_threads";
    if !run.wants(name) {
        return;
    }
    let ours_2 = |iters| {
        two_threads(
            iters,
            || ours(f64::from(FAST_RATE), HUGE_BURST),
            |l| {
                l.try_acquire(1)
                    .now_or_never()
                    .expect("the in-process limiter answers at once")
                    .unwrap()
            },
        )
    };
    let gov_2 = |iters| {
        two_threads(
            iters,
            || Governor::direct(quota(FAST_RATE, HUGE_BURST)),
            |g| g.check().is_ok(),
        )
    };
    let mut group = c.benchmark_group(name);
    bench(&mut group, name, "ours", 1, ours_2);
    bench(&mut group, name, "governor", 1, gov_2);
    group.finish();
    let budget = run.budget(Duration::from_millis(2000), Duration::from_millis(2));
    let key = |who: &str| format!("{name}/{who}");
    pair(&key("ours"), &key("governor"), 1, budget, ours_2, gov_2);
}

#[inline(always)]
fn two_threads<T: Sync>(
    iters: u64,
    setup: impl FnOnce() -> T,
    call: impl Fn(&T) -> bool + Sync,
) -> Duration {
    let target = setup();
    let start_line = Barrier::new(3);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                start_line.wait();
                for _ in 0..iters / 2 {
                    assert!(call(black_box(&target)), "the bucket never runs dry");
                }
            });
        }
        start_line.wait();
        // Leaving the scope joins both threads, so this is read once both are done.
        Instant::now()
    })
    .elapsed()
}

/// `acquire().await` when the tokens are there, against `try_acquire` and the others'
/// ready paths.
pub fn acquire_ready(c: &mut Criterion, run: &Run) {
    let name = "acquire_ready";
    if !run.wants(name) {
        return;
    }
    let setup = || ours(f64::from(FAST_RATE), HUGE_BURST);
    let ours_try = |iters| {
        timed(iters, setup, |l| {
            l.try_acquire(1)
                .now_or_never()
                .expect("the in-process limiter answers at once")
                .unwrap()
        })
    };
    let ours_acquire = |iters| {
        timed(iters, setup, |l| {
            matches!(poll_once(l.acquire(1, "op")), Poll::Ready(Ok(_)))
        })
    };
    let gov_until_ready = |iters| {
        timed(
            iters,
            || Governor::direct(quota(FAST_RATE, HUGE_BURST)),
            |g| poll_once(g.until_ready()).is_ready(),
        )
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let leaky_acquire = |iters| {
        // leaky-bucket reads tokio's time driver even when it need not wait.
        let _guard = runtime.enter();
        timed(
            iters,
            || leaky(HUGE_BURST as usize, Duration::from_secs(1)),
            |l| poll_once(l.acquire_one()).is_ready(),
        )
    };
    let mut group = c.benchmark_group(name);
    bench(&mut group, name, "ours_try_acquire", 1, ours_try);
    bench(&mut group, name, "ours", 1, ours_acquire);
    bench(&mut group, name, "governor_until_ready", 1, gov_until_ready);
    bench(&mut group, name, "leaky_bucket", 1, leaky_acquire);
    group.finish();
    let budget = run.budget(Duration::from_millis(1500), Duration::from_micros(200));
    let key = |who: &str| format!("{name}/{who}");
    pair(
        &key("ours"),
        &key("ours_try_acquire"),
        1,
        budget,
        ours_acquire,
        ours_try,
    );
    pair(
        &key("ours"),
        &key("governor_until_ready"),
        1,
        budget,
        ours_acquire,
        gov_until_ready,
    );
    pair(
        &key("ours"),
        &key("leaky_bucket"),
        1,
        budget,
        ours_acquire,
        leaky_acquire,
    );
}
