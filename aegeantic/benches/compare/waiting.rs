//! Many waiters on one slow limiter, in real time: the CPU each admission costs and how
//! often waiters are woken for each admission.

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use aegeantic::resilience::{RateLimitConfig, RateLimiter};
use futures::FutureExt;
use governor::{Quota, RateLimiter as Governor};
use pin_project_lite::pin_project;

use crate::record::put;
use crate::Run;

pub const WAITERS: u64 = 10_000;
const PER_SECOND: u32 = 1_000;

pin_project! {
    /// Counts how often the wrapped future is polled.
    struct CountPolls<F> {
        #[pin]
        inner: F,
        polls: Arc<AtomicU64>,
    }
}

impl<F: Future> Future for CountPolls<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        this.polls.fetch_add(1, Ordering::Relaxed);
        this.inner.poll(cx)
    }
}

/// CPU time of the whole process (every thread, timer threads included), in nanoseconds.
pub fn process_cpu_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID)");
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Queues [`WAITERS`] tasks at once, each making one request through `acquire`, lets them
/// run for `duration` of real time and records CPU and wake-ups per admission as `name`.
fn measure<F, Fut>(run: &Run, name: &str, duration: Duration, setup: impl FnOnce() -> F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    if !run.wants(&format!("waiting/{name}")) {
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let (admitted, polls, cpu, wall) = runtime.block_on(async {
        let acquire = setup();
        let polls = Arc::new(AtomicU64::new(0));
        let admitted = Arc::new(AtomicU64::new(0));
        let cpu_start = process_cpu_ns();
        let wall_start = std::time::Instant::now();
        let tasks: Vec<_> = (0..WAITERS)
            .map(|_| {
                let admitted = admitted.clone();
                let request = acquire();
                tokio::spawn(CountPolls {
                    inner: async move {
                        request.await;
                        admitted.fetch_add(1, Ordering::Relaxed);
                    },
                    polls: polls.clone(),
                })
            })
            .collect();
        tokio::time::sleep(duration).await;
        let cpu = process_cpu_ns() - cpu_start;
        let result = (
            admitted.load(Ordering::Relaxed),
            polls.load(Ordering::Relaxed),
            cpu,
            // Longer than `duration` when the runtime is too busy to wake on time.
            wall_start.elapsed(),
        );
        // Tearing down the unserved waiters is not part of the measurement.
        for task in tasks {
            task.abort();
        }
        result
    });
    let admitted = admitted.max(1);
    // Every task is polled once to queue; every poll after that is a wake-up.
    let wakeups = polls.saturating_sub(WAITERS) as f64 / admitted as f64;
    let cpu_per = cpu as f64 / admitted as f64;
    println!(
        "waiting/{name}: {admitted} admitted in {:.2} s, {cpu_per:.0} ns CPU and {wakeups:.3} \
         wake-ups per admission",
        wall.as_secs_f64()
    );
    put(&format!("waiting/{name}/cpu_ns"), cpu_per);
    put(&format!("waiting/{name}/wakeups"), wakeups);
    put(&format!("waiting/{name}/admitted"), admitted as f64);
}

pub fn all(run: &Run, duration: Duration) {
    measure(run, "ours", duration, || {
        let limiter = RateLimiter::new(RateLimitConfig {
            requests_per_second: Some(f64::from(PER_SECOND)),
            burst_size: 1,
            ..RateLimitConfig::default()
        })
        .expect("valid config");
        assert!(
            limiter
                .try_acquire(1)
                .now_or_never()
                .expect("the in-process limiter answers at once")
                .unwrap(),
            "start empty"
        );
        move || {
            let limiter = limiter.clone();
            async move {
                limiter.acquire(1, "waiter").await.expect("admitted");
            }
        }
    });
    measure(run, "governor", duration, || {
        // `per_second` alone would also allow a burst of 1,000.
        let quota =
            Quota::per_second(NonZeroU32::new(PER_SECOND).unwrap()).allow_burst(NonZeroU32::MIN);
        let limiter = Arc::new(Governor::direct(quota));
        assert!(limiter.check().is_ok(), "start empty");
        move || {
            let limiter = limiter.clone();
            async move { limiter.until_ready().await }
        }
    });
    measure(run, "leaky_bucket", duration, || {
        let limiter = Arc::new(
            leaky_bucket::RateLimiter::builder()
                .max(1)
                .initial(0)
                .refill(1)
                .interval(Duration::from_millis(1))
                .fair(true)
                .build(),
        );
        move || {
            let limiter = limiter.clone();
            async move { limiter.acquire_one().await }
        }
    });
}
