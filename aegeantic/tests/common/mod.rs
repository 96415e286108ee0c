//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use aegeantic::resilience::{RateLimitConfig, RateLimiter, RetryConfig};
use futures::stream::{self, BoxStream, StreamExt};
use pin_project_lite::pin_project;

/// A transient error, retried by `RetryOn::transient()`.
pub fn reset() -> io::Error {
    io::Error::from(io::ErrorKind::ConnectionReset)
}

/// A permanent error, not retried by `RetryOn::transient()`.
pub fn denied() -> io::Error {
    io::Error::from(io::ErrorKind::PermissionDenied)
}

/// One scripted attempt: the items it yields, then maybe an error.
pub type Attempt = (Vec<&'static str>, Option<fn() -> io::Error>);

/// A factory that plays `script` one attempt per call; past the end it repeats the last.
pub fn scripted(
    script: Vec<Attempt>,
) -> impl FnMut() -> BoxStream<'static, Result<&'static str, io::Error>> + Send {
    let mut calls = 0;
    move || {
        let (items, error) = script[calls.min(script.len() - 1)].clone();
        calls += 1;
        let items = stream::iter(items.into_iter().map(Ok));
        let error = stream::iter(error.map(|make| Err(make())));
        items.chain(error).boxed()
    }
}

/// Exact delays: no jitter.
pub fn retry(max_attempts: u32, base: Duration) -> RetryConfig {
    RetryConfig::builder()
        .max_attempts(max_attempts)
        .base_delay(base)
        .jitter(false)
        .build()
        .unwrap()
}

pub fn limiter(per_second: f64, burst: u32) -> RateLimiter {
    RateLimiter::new(RateLimitConfig {
        requests_per_second: Some(per_second),
        burst_size: burst,
        ..RateLimitConfig::default()
    })
    .unwrap()
}

pin_project! {
    /// Counts how often the wrapped future is polled: polls after the first are wake-ups.
    pub struct CountPolls<F> {
        #[pin]
        pub inner: F,
        pub polls: Arc<AtomicU64>,
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

/// Runs `future` to completion on a fresh current-thread runtime with a paused clock, for
/// property tests, which cannot be `#[tokio::test]`s.
pub fn paused<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(future)
}
