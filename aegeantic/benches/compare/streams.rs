//! The stream adapters: per-item cost over a ready stream, and retry around a one-shot
//! stream that succeeds.

use std::future::ready;
use std::hint::black_box;
use std::io;
use std::num::NonZeroU32;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use aegeantic::events::OperationType;
use aegeantic::resilience::{
    resilient_stream, retry_stream, RateLimitConfig, RateLimiter, RetryConfig,
};
use backon::{ExponentialBuilder, Retryable};
use criterion::Criterion;
use futures::stream::{self, Stream};
use governor::prelude::StreamRateLimitExt;
use governor::{Quota, RateLimiter as Governor};

use crate::hot::poll_once;
use crate::record::{bench, pair};
use crate::Run;

/// Items per stream.
pub const ITEMS: u64 = 1_000_000;

fn items() -> impl Stream<Item = Result<u64, io::Error>> {
    stream::iter((0..ITEMS).map(Ok))
}

/// Drains a stream that never returns `Pending`, returning how many items it yielded.
///
/// Never inlined: a consumer is a function of its own, and inlined into each benchmark's
/// closure the same loop measured twice as slow for one stream type and not for another.
#[inline(never)]
pub fn drain<S: Stream>(stream: S) -> u64 {
    let mut stream = pin!(stream);
    let mut cx = Context::from_waker(Waker::noop());
    let mut count = 0;
    loop {
        match stream.as_mut().poll_next(&mut cx) {
            Poll::Ready(Some(item)) => {
                // By reference: a consumer looks at an item where it lies.
                black_box(&item);
                count += 1;
            }
            Poll::Ready(None) => return count,
            Poll::Pending => panic!("a ready stream returned Pending"),
        }
    }
}

#[inline(always)]
fn timed_drains<S: Stream>(iters: u64, mut make: impl FnMut() -> S, expected: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let stream = make();
        let start = Instant::now();
        let count = drain(stream);
        total += start.elapsed();
        assert_eq!(count, expected);
    }
    total
}

fn never_empty() -> RateLimiter {
    RateLimiter::new(RateLimitConfig {
        requests_per_second: Some(1e6),
        burst_size: 1_000_000_000,
        ..RateLimitConfig::default()
    })
    .expect("valid config")
}

/// Time per item of a million-item ready stream, bare and wrapped.
pub fn per_item(c: &mut Criterion, run: &Run) {
    let name = "stream_per_item";
    if !run.wants(name) {
        return;
    }
    let retry = RetryConfig::builder().build().expect("valid config");
    let limiter = never_empty();
    let op: Arc<str> = "op".into();
    let governor = Governor::direct(
        Quota::per_second(NonZeroU32::new(1_000_000).unwrap())
            .allow_burst(NonZeroU32::new(1_000_000_000).unwrap()),
    );
    let bare = |iters| timed_drains(iters, items, ITEMS);
    let resilient = |iters| {
        let make = || {
            let (retry, limiter) = (Some(retry.clone()), Some(limiter.clone()));
            resilient_stream(items, retry, limiter, op.clone(), OperationType::Llm)
        };
        // One rate-limit event, then the items.
        timed_drains(iters, make, ITEMS + 1)
    };
    let gov_stream = |iters| timed_drains(iters, || items().ratelimit_stream(&governor), ITEMS);
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    bench(&mut group, name, "bare", ITEMS, bare);
    bench(&mut group, name, "resilient_stream", ITEMS, resilient);
    bench(
        &mut group,
        name,
        "governor_ratelimit_stream",
        ITEMS,
        gov_stream,
    );
    group.finish();
    let budget = run.budget(Duration::from_millis(2000), Duration::from_millis(5));
    let key = |who: &str| format!("{name}/{who}");
    pair(
        &key("resilient_stream"),
        &key("bare"),
        ITEMS,
        budget,
        resilient,
        bare,
    );
    pair(
        &key("resilient_stream"),
        &key("governor_ratelimit_stream"),
        ITEMS,
        budget,
        resilient,
        gov_stream,
    );
}

/// Retry around an operation that succeeds at once: the fixed cost of the retry layer, as a
/// stream and as a future, and as a stream that also takes a token.
pub fn retry_once(c: &mut Criterion, run: &Run) {
    let name = "retry_one_shot";
    if !run.wants(name) {
        return;
    }
    let config = RetryConfig::builder().build().expect("valid config");
    let op: Arc<str> = "op".into();
    let once = || stream::once(ready(Ok::<u64, io::Error>(black_box(1))));
    let ours_arc = |iters| {
        let start = Instant::now();
        for _ in 0..iters {
            let stream = retry_stream(once, config.clone(), op.clone(), OperationType::Llm);
            assert_eq!(drain(stream), 1);
        }
        start.elapsed()
    };
    let ours_str = |iters| {
        let start = Instant::now();
        for _ in 0..iters {
            let stream = retry_stream(once, config.clone(), "op", "llm");
            assert_eq!(drain(stream), 1);
        }
        start.elapsed()
    };
    let ours_future = |iters| {
        let start = Instant::now();
        for _ in 0..iters {
            let call = || async { Ok::<u64, io::Error>(black_box(1)) };
            let retried = aegeantic::resilience::retry(call, config.clone());
            assert!(matches!(poll_once(retried), Poll::Ready(Ok(1))));
        }
        start.elapsed()
    };
    // With a limiter that never runs dry: an attempt that also takes a token, so every
    // metric of an attempt is made (the grant's wait and tokens, the attempt's outcome).
    let limiter = never_empty();
    let ours_limited = |iters| {
        let start = Instant::now();
        for _ in 0..iters {
            let (retry, limiter) = (Some(config.clone()), Some(limiter.clone()));
            let stream = resilient_stream(once, retry, limiter, op.clone(), OperationType::Llm);
            // The rate-limit event, then the item.
            assert_eq!(drain(stream), 2);
        }
        start.elapsed()
    };
    let backon = |iters| {
        let start = Instant::now();
        for _ in 0..iters {
            let call = || async { Ok::<u64, io::Error>(black_box(1)) };
            let retried = call.retry(ExponentialBuilder::default());
            assert!(matches!(poll_once(retried), Poll::Ready(Ok(1))));
        }
        start.elapsed()
    };
    let mut group = c.benchmark_group(name);
    bench(&mut group, name, "ours_retry_stream", 1, ours_arc);
    bench(&mut group, name, "ours_str_name", 1, ours_str);
    bench(&mut group, name, "ours_retry_future", 1, ours_future);
    bench(&mut group, name, "ours_limited", 1, ours_limited);
    bench(&mut group, name, "backon", 1, backon);
    group.finish();
    let budget = run.budget(Duration::from_millis(1500), Duration::from_micros(200));
    let key = |who: &str| format!("{name}/{who}");
    pair(
        &key("ours_retry_stream"),
        &key("backon"),
        1,
        budget,
        ours_arc,
        backon,
    );
    pair(
        &key("ours_str_name"),
        &key("backon"),
        1,
        budget,
        ours_str,
        backon,
    );
    pair(
        &key("ours_retry_future"),
        &key("backon"),
        1,
        budget,
        ours_future,
        backon,
    );
    pair(
        &key("ours_limited"),
        &key("backon"),
        1,
        budget,
        ours_limited,
        backon,
    );
}
