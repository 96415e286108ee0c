//! The tower layers' decisions on a paused clock, over `service_fn` upstreams.
#![cfg(feature = "tower")]

use std::convert::Infallible;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aegeantic::integrations::tower::{
    ConcurrencyLimitLayer, Counted, LimitError, RateLimitLayer, RetryPolicy,
};
use aegeantic::resilience::{
    ConcurrencyLimiter, RateLimitConfig, RateLimitError, RateLimiter, RetryConfig,
};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use tokio::time::Instant;
use tower::retry::RetryLayer;
use tower::{service_fn, Service, ServiceBuilder, ServiceExt};

fn limiter(per_second: f64, burst: u32) -> RateLimiter {
    RateLimiter::new(RateLimitConfig {
        requests_per_second: Some(per_second),
        burst_size: burst,
        ..RateLimitConfig::default()
    })
    .unwrap()
}

fn response(status: u16, headers: &[(&'static str, &'static str)]) -> Response<String> {
    let mut response = Response::new(String::new());
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    for &(name, value) in headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

/// An upstream answering every call with `status` and `headers`; counts the calls.
fn answering(
    status: u16,
    headers: &'static [(&'static str, &'static str)],
) -> (
    impl Service<Request<String>, Response = Response<String>, Error = io::Error, Future: Send>
        + Clone
        + Send,
    Arc<AtomicU32>,
) {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let service = service_fn(move |_: Request<String>| {
        counter.fetch_add(1, Ordering::Relaxed);
        async move { Ok::<_, io::Error>(response(status, headers)) }
    });
    (service, calls)
}

fn config() -> aegeantic::resilience::RetryConfigBuilder {
    RetryConfig::builder()
        .max_attempts(10)
        .base_delay(Duration::from_secs(1))
        .jitter(false)
}

#[tokio::test(start_paused = true)]
async fn the_servers_remaining_count_caps_the_bucket() {
    let limiter = limiter(1.0, 20);
    let (upstream, _) = answering(200, &[("x-ratelimit-remaining-requests", "3")]);
    let service = ServiceBuilder::new()
        .layer(RateLimitLayer::new(limiter.clone()))
        .service(upstream);
    service.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(limiter.tokens_available(), 3.0);

    // A token bucket follows the tokens header, not the requests one.
    let tokens = self::limiter(100.0, 1000);
    let (upstream, _) = answering(
        200,
        &[
            ("x-ratelimit-remaining-requests", "3"),
            ("x-ratelimit-remaining-tokens", "400"),
        ],
    );
    let service = ServiceBuilder::new()
        .layer(
            RateLimitLayer::new(tokens.clone())
                .counts(Counted::Tokens)
                .weight(|request: &Request<String>| request.body().len() as u32),
        )
        .service(upstream);
    service
        .oneshot(Request::new("x".repeat(100)))
        .await
        .unwrap();
    assert_eq!(tokens.tokens_available(), 400.0);
}

#[tokio::test(start_paused = true)]
async fn hostile_quota_headers_are_ignored_or_saturate() {
    for value in ["-1", "many", "1e3", "99999999999999999999999"] {
        let limiter = limiter(1.0, 20);
        let headers: &'static [(&str, &str)] =
            Box::leak(Box::new([("x-ratelimit-remaining-requests", value)]));
        let (upstream, _) = answering(200, headers);
        let service = ServiceBuilder::new()
            .layer(RateLimitLayer::new(limiter.clone()))
            .service(upstream);
        service.oneshot(Request::new(String::new())).await.unwrap();
        assert_eq!(limiter.tokens_available(), 19.0, "{value}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_heavier_than_the_burst_is_refused() {
    let (upstream, calls) = answering(200, &[]);
    let service = ServiceBuilder::new()
        .layer(RateLimitLayer::new(limiter(1.0, 10)).weight(|_: &Request<String>| 11))
        .service(upstream);
    let error = service
        .oneshot(Request::new(String::new()))
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        LimitError::RateLimit(RateLimitError::InsufficientCapacity { .. })
    ));
    assert_eq!(calls.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_request_gives_its_place_back() {
    let limiter = limiter(1.0, 1);
    let (upstream, calls) = answering(200, &[]);
    let service = ServiceBuilder::new()
        .layer(RateLimitLayer::new(limiter.clone()))
        .service(upstream);
    service
        .clone()
        .oneshot(Request::new(String::new()))
        .await
        .unwrap();
    // The bucket is empty: this one queues for the token due in 1 s, then is dropped.
    let waiting = service.clone().oneshot(Request::new(String::new()));
    assert!(tokio::time::timeout(Duration::from_millis(500), waiting)
        .await
        .is_err());
    tokio::time::advance(Duration::from_millis(600)).await;
    // The token it had booked is still there for the next one, with no wait.
    let start = Instant::now();
    service.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(calls.load(Ordering::Relaxed), 2);
}

#[tokio::test(start_paused = true)]
async fn max_elapsed_ends_the_retries() {
    let (upstream, calls) = answering(503, &[]);
    let policy = RetryPolicy::new(
        config()
            .max_elapsed(Duration::from_secs(5))
            .build()
            .unwrap(),
    );
    let service = ServiceBuilder::new()
        .layer(RetryLayer::new(policy))
        .service(upstream);
    let start = Instant::now();
    let response = service.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Waits of 1, 2: the next (4) would end at 7 s, past the deadline.
    assert_eq!(calls.load(Ordering::Relaxed), 3);
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn server_delays_are_honoured_up_to_max_server_delay() {
    let (upstream, calls) = answering(429, &[("retry-after", "30")]);
    let policy = RetryPolicy::new(
        config()
            .max_attempts(2)
            .server_delay_jitter(0.0)
            .build()
            .unwrap(),
    );
    let service = ServiceBuilder::new()
        .layer(RetryLayer::new(policy))
        .service(upstream);
    let start = Instant::now();
    service.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(calls.load(Ordering::Relaxed), 2);
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(30),
        "the server's delay, not 1 s"
    );

    let (upstream, calls) = answering(429, &[("retry-after", "3600")]);
    let policy = RetryPolicy::new(config().build().unwrap());
    let service = ServiceBuilder::new()
        .layer(RetryLayer::new(policy))
        .service(upstream);
    let response = service.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        calls.load(Ordering::Relaxed),
        1,
        "an hour is above max_server_delay"
    );
}

#[tokio::test(start_paused = true)]
async fn errors_are_classified_by_retry_on_and_statuses_by_classify_http() {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let upstream = service_fn(move |_: Request<String>| {
        let call = counter.fetch_add(1, Ordering::Relaxed);
        async move {
            match call {
                0 => Err(io::Error::from(io::ErrorKind::ConnectionReset)),
                1 => Ok(response(500, &[])),
                _ => Err(io::Error::from(io::ErrorKind::PermissionDenied)),
            }
        }
    });
    let service = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryPolicy::new(config().build().unwrap())))
        .service(upstream);
    let error = service
        .oneshot(Request::new(String::new()))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::PermissionDenied);
    assert_eq!(calls.load(Ordering::Relaxed), 3);

    let (upstream, calls) = answering(404, &[]);
    let service = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryPolicy::new(config().build().unwrap())))
        .service(upstream);
    service.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(calls.load(Ordering::Relaxed), 1, "a 404 is not retried");
}

#[tokio::test(start_paused = true)]
async fn each_request_counts_its_own_attempts() {
    let (upstream, calls) = answering(503, &[]);
    let policy = RetryPolicy::new(config().max_attempts(3).build().unwrap());
    let service = ServiceBuilder::new()
        .layer(RetryLayer::new(policy))
        .service(upstream);
    for round in 1..=3 {
        service
            .clone()
            .oneshot(Request::new(String::new()))
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::Relaxed), 3 * round);
    }
}

#[tokio::test(start_paused = true)]
async fn an_empty_body_frees_its_slot_at_once() {
    let limiter = ConcurrencyLimiter::new(1).unwrap();
    let upstream = service_fn(|_: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    });
    let service = ServiceBuilder::new()
        .layer(ConcurrencyLimitLayer::new(limiter.clone()))
        .service(upstream);
    let response = service.clone().oneshot(Request::new(())).await.unwrap();
    assert!(!response.body().holds_permit());
    assert_eq!(limiter.available(), 1);
    // A waiting request that is dropped gives its place back.
    let held = limiter.acquire().await;
    let waiting = service.clone().oneshot(Request::new(()));
    assert!(tokio::time::timeout(Duration::from_secs(1), waiting)
        .await
        .is_err());
    drop(held);
    assert_eq!(limiter.available(), 1);
    assert!(ConcurrencyLimiter::new(0).is_err());
    assert!(ConcurrencyLimiter::new(usize::MAX).is_err());
}
