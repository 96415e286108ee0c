//! Real-time accuracy: how far from its ideal instant each grant of a 100/s limiter with a
//! burst of 1 is released, driven in a loop. Two loops without a limiter show the floor:
//! tokio's `sleep_until` to the same instants, and a thread sleeping to them.

use std::cell::Cell;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aegeantic::resilience::{RateLimitConfig, RateLimiter};
use futures::future::OptionFuture;
use governor::{Quota, RateLimiter as Governor};

use crate::record::put;
use crate::Run;

const PER_SECOND: u32 = 100;
const INTERVAL: Duration = Duration::from_millis(10);

/// Awaits `acquire()` in a loop for `duration`; the k-th grant's ideal instant is the first
/// grant's plus k intervals. Records p50, p99 and max of |actual - ideal| in microseconds.
fn measure<F, Fut>(run: &Run, name: &str, duration: Duration, setup: impl FnOnce() -> F)
where
    F: Fn() -> Fut,
    Fut: Future,
{
    if !run.wants(&format!("accuracy/{name}")) {
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let grants = runtime.block_on(async {
        let acquire = setup();
        let end = Instant::now() + duration;
        let mut grants = Vec::new();
        while Instant::now() < end {
            acquire().await;
            grants.push(Instant::now());
        }
        grants
    });
    let first = grants[0];
    let mut errors: Vec<f64> = grants
        .iter()
        .enumerate()
        .map(|(k, &at)| {
            let ideal = first + INTERVAL * k as u32;
            let error = if at >= ideal { at - ideal } else { ideal - at };
            error.as_secs_f64() * 1e6
        })
        .collect();
    errors.sort_by(f64::total_cmp);
    let pick = |q: f64| errors[((errors.len() - 1) as f64 * q).round() as usize];
    let (p50, p99, max) = (pick(0.5), pick(0.99), pick(1.0));
    println!(
        "accuracy/{name}: {} grants, |release - ideal| p50 {p50:.0} µs, p99 {p99:.0} µs, \
         max {max:.0} µs",
        grants.len()
    );
    put(&format!("accuracy/{name}/p50_us"), p50);
    put(&format!("accuracy/{name}/p99_us"), p99);
}

/// A pacer without a limiter: the first call returns at once, as a limiter's first grant
/// does, and each later one `sleep`s to the first call's instant plus one interval a call.
fn paced<Fut: Future>(sleep: impl Fn(Instant) -> Fut) -> impl Fn() -> OptionFuture<Fut> {
    let next = Cell::new(None::<Instant>);
    move || {
        let at = next.get();
        next.set(Some(at.unwrap_or_else(Instant::now) + INTERVAL));
        at.map(&sleep).into()
    }
}

pub fn all(run: &Run, duration: Duration) {
    measure(run, "tokio_sleep", duration, || {
        paced(|at| tokio::time::sleep_until(at.into()))
    });
    measure(run, "thread_sleep", duration, || {
        paced(|at| {
            // Blocks the runtime's only thread, which has nothing else to do.
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            std::future::ready(())
        })
    });

    measure(run, "ours", duration, || {
        let limiter = RateLimiter::new(RateLimitConfig {
            requests_per_second: Some(f64::from(PER_SECOND)),
            burst_size: 1,
            ..RateLimitConfig::default()
        })
        .expect("valid config");
        move || {
            let limiter = limiter.clone();
            async move {
                limiter.acquire(1, "tick").await.expect("admitted");
            }
        }
    });
    measure(run, "governor", duration, || {
        let limiter = Arc::new(Governor::direct(
            Quota::per_second(NonZeroU32::new(PER_SECOND).unwrap()).allow_burst(NonZeroU32::MIN),
        ));
        move || {
            let limiter = limiter.clone();
            async move { limiter.until_ready().await }
        }
    });
    measure(run, "leaky_bucket", duration, || {
        let limiter = Arc::new(
            leaky_bucket::RateLimiter::builder()
                .max(1)
                .initial(1)
                .refill(1)
                .interval(INTERVAL)
                .fair(true)
                .build(),
        );
        move || {
            let limiter = limiter.clone();
            async move { limiter.acquire_one().await }
        }
    });
}
