//! `ResilienceMiddleware` in a reqwest-middleware client against the fault server, over real
//! HTTP on loopback. Real time: bounds are loose enough for a loaded machine, waits short.
#![cfg(all(feature = "reqwest-middleware", feature = "fault-server"))]

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aegeantic::integrations::reqwest_middleware::{
    request_retry_on, RequestError, ResilienceMiddleware,
};
use aegeantic::report::DisplayChain;
use aegeantic::resilience::{
    CircuitBreaker, CircuitBreakerConfig, Event, RateLimitConfig, RateLimiter, ResilienceError,
    Resilient, RetryBudget, RetryConfig,
};
use aegeantic::testing::{FaultServer, Reply};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};

fn retry(max_attempts: u32) -> RetryConfig {
    RetryConfig::builder()
        .max_attempts(max_attempts)
        .base_delay(Duration::from_millis(10))
        .retry_on(request_retry_on())
        .build()
        .unwrap()
}

fn ok() -> Reply {
    Reply::text(&["ok"], Duration::ZERO)
}

/// The events a middleware shows its observer, in order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Event>>>);

impl Seen {
    fn observe(&self, middleware: ResilienceMiddleware) -> ResilienceMiddleware {
        let seen = self.clone();
        middleware.on_event(move |event| seen.0.lock().unwrap().push(event.clone()))
    }

    fn retries(&self) -> Vec<(u32, bool)> {
        let events = self.0.lock().unwrap();
        events
            .iter()
            .filter_map(|event| match event {
                Resilient::Retry(retry) => Some((retry.attempt, retry.server_directed)),
                _ => None,
            })
            .collect()
    }

    fn grants(&self) -> Vec<Duration> {
        let events = self.0.lock().unwrap();
        events
            .iter()
            .filter_map(|event| match event {
                Resilient::RateLimit(grant) => Some(grant.waited),
                _ => None,
            })
            .collect()
    }
}

fn client(middleware: ResilienceMiddleware) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(middleware)
        .build()
}

fn url(server: &FaultServer) -> String {
    format!("{}/chat/completions", server.base_url())
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out_then_the_request_succeeds() {
    let server = FaultServer::start([Reply::rate_limited("1"), ok()])
        .await
        .unwrap();
    let seen = Seen::default();
    let client = client(seen.observe(ResilienceMiddleware::new().retry(retry(3))));

    let started = Instant::now();
    let response = client.post(url(&server)).body("{}").send().await.unwrap();
    let elapsed = started.elapsed();

    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("ok"));
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let gap = requests[1].at - requests[0].at;
    // Retry-After: 1, lengthened by at most 10 % of server-delay jitter.
    assert!(gap >= Duration::from_secs(1), "{gap:?}");
    println!("Retry-After 1: the retry came {gap:?} after the 429, {elapsed:?} in all");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    assert_eq!(seen.retries(), [(1, true)]);
}

#[tokio::test]
async fn a_503_is_retried_up_to_max_attempts_and_the_last_answer_returned() {
    let busy = || Reply::status(503, "server_error");
    let server = FaultServer::start([busy(), busy(), busy(), ok()])
        .await
        .unwrap();
    let seen = Seen::default();
    let client = client(seen.observe(ResilienceMiddleware::new().retry(retry(3))));

    let response = client.post(url(&server)).body("{}").send().await.unwrap();

    assert_eq!(response.status(), 503);
    assert!(response.text().await.unwrap().contains("fault server: 503"));
    assert_eq!(server.requests().len(), 3);
    assert_eq!(seen.retries(), [(1, false), (2, false)]);
}

#[tokio::test]
async fn a_status_not_to_retry_is_returned_at_once() {
    let server = FaultServer::start([Reply::status(404, "not_found_error"), ok()])
        .await
        .unwrap();
    let client = client(ResilienceMiddleware::new().retry(retry(3)));

    let response = client.post(url(&server)).body("{}").send().await.unwrap();

    assert_eq!(response.status(), 404);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_streamed_body_is_sent_once_and_not_retried() {
    let server = FaultServer::start([Reply::status(503, "server_error"), ok()])
        .await
        .unwrap();
    let seen = Seen::default();
    let client = client(seen.observe(ResilienceMiddleware::new().retry(retry(3))));
    let chunks = futures::stream::iter([Ok::<_, io::Error>("{}")]);

    let response = client
        .post(url(&server))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 503);
    assert_eq!(server.requests().len(), 1);
    assert!(seen.retries().is_empty());
}

#[tokio::test]
async fn clones_of_the_client_and_of_the_middleware_share_one_limiter() {
    let server = FaultServer::start((0..6).map(|_| ok())).await.unwrap();
    // Two at once, then one every 250 ms.
    let limiter = RateLimiter::new(RateLimitConfig {
        requests_per_second: Some(4.0),
        burst_size: 2,
        ..RateLimitConfig::default()
    })
    .unwrap();
    let seen = Seen::default();
    let middleware = seen.observe(ResilienceMiddleware::new().rate_limit(limiter));
    let first = client(middleware.clone());
    let second = client(middleware);
    let clients = [
        first.clone(),
        first,
        second.clone(),
        second.clone(),
        second.clone(),
        second,
    ];

    let started = Instant::now();
    let calls = clients.into_iter().map(|client| {
        let url = url(&server);
        tokio::spawn(async move { client.post(url).body("{}").send().await.unwrap().status() })
    });
    for call in calls.collect::<Vec<_>>() {
        assert_eq!(call.await.unwrap(), 200);
    }
    let elapsed = started.elapsed();

    // burst 2 + 4/s: the sixth token comes 1 s after the first two.
    assert!(elapsed >= Duration::from_millis(990), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    let requests = server.requests();
    assert_eq!(requests.len(), 6);
    let span = requests[5].at - requests[0].at;
    assert!(span >= Duration::from_millis(950), "{span:?}");
    let mut waits = seen.grants();
    waits.sort();
    println!("6 requests, burst 2 + 4/s: {elapsed:?} in all, first to last request {span:?}, waits {waits:?}");
    assert_eq!(waits.len(), 6);
    assert!(waits[5] >= Duration::from_millis(990), "{waits:?}");
}

#[tokio::test]
async fn a_429_drains_the_limiter_and_the_remaining_quota_caps_it() {
    let quota = ok().header("x-ratelimit-remaining-requests", "3");
    let server = FaultServer::start([quota, Reply::status(429, "rate_limit_exceeded")])
        .await
        .unwrap();
    let limiter = RateLimiter::new(RateLimitConfig {
        requests_per_minute: Some(60.0),
        burst_size: 10,
        ..RateLimitConfig::default()
    })
    .unwrap();
    let client = client(ResilienceMiddleware::new().rate_limit(limiter.clone()));

    client.post(url(&server)).body("{}").send().await.unwrap();
    let capped = limiter.tokens_available();
    assert!((3.0..3.5).contains(&capped), "{capped}");
    let response = client.post(url(&server)).body("{}").send().await.unwrap();
    assert_eq!(response.status(), 429);
    let drained = limiter.tokens_available();
    assert!(drained < 0.5, "{drained}");
}

#[tokio::test]
async fn a_request_that_gets_no_answer_fails_with_the_whole_chain() {
    let server = FaultServer::start([Reply::Reset, Reply::Reset, ok()])
        .await
        .unwrap();
    let client = client(ResilienceMiddleware::new().retry(retry(2)));

    let error = client
        .post(url(&server))
        .body("{}")
        .send()
        .await
        .unwrap_err();

    let chain = DisplayChain(&error).to_string();
    println!("{chain}");
    assert!(
        chain.starts_with("operation failed after 2 attempts: error sending request"),
        "{chain}"
    );
    assert!(chain.contains("connection closed"), "{chain}");
    assert_eq!(server.requests().len(), 2);
    let reqwest_middleware::Error::Middleware(inner) = &error else {
        panic!("not the middleware's error: {error:?}");
    };
    let typed = inner.downcast_ref::<ResilienceError<RequestError>>();
    assert!(
        matches!(typed, Some(ResilienceError::Operation { attempts: 2, .. })),
        "{typed:?}"
    );
}

#[tokio::test]
async fn a_weight_the_limiter_can_never_grant_fails_with_a_typed_error_and_sends_nothing() {
    let server = FaultServer::start([ok()]).await.unwrap();
    let limiter = RateLimiter::new(RateLimitConfig {
        requests_per_second: Some(1.0),
        burst_size: 2,
        ..RateLimitConfig::default()
    })
    .unwrap();
    let middleware = ResilienceMiddleware::new()
        .rate_limit(limiter)
        .weight(|request| {
            request
                .body()
                .and_then(|b| b.as_bytes())
                .map_or(1, |b| b.len() as u32)
        })
        .retry(retry(3));
    let client = client(middleware);

    let error = client
        .post(url(&server))
        .body("{ }")
        .send()
        .await
        .unwrap_err();

    assert_eq!(
        DisplayChain(&error).to_string(),
        "rate limiter refused the request: requested 3 tokens but the bucket holds at most 2"
    );
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn an_open_breaker_refuses_requests_without_sending_them() {
    let busy = || Reply::status(500, "server_error");
    let server = FaultServer::start([busy(), busy(), ok()]).await.unwrap();
    let breaker = CircuitBreaker::new(CircuitBreakerConfig {
        window: 2,
        minimum_calls: 2,
        ..CircuitBreakerConfig::default()
    })
    .unwrap();
    let client = client(ResilienceMiddleware::new().circuit_breaker(breaker));

    for _ in 0..2 {
        let response = client.post(url(&server)).body("{}").send().await.unwrap();
        assert_eq!(response.status(), 500);
    }
    let error = client
        .post(url(&server))
        .body("{}")
        .send()
        .await
        .unwrap_err();

    assert!(
        DisplayChain(&error)
            .to_string()
            .starts_with("circuit breaker open"),
        "{}",
        DisplayChain(&error)
    );
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn a_retry_after_beyond_max_server_delay_fails_at_once_and_keeps_the_answer() {
    let server = FaultServer::start([Reply::rate_limited("99999999999999999999"), ok()])
        .await
        .unwrap();
    let client = client(ResilienceMiddleware::new().retry(retry(3)));

    let started = Instant::now();
    let error = client
        .post(url(&server))
        .body("{}")
        .send()
        .await
        .unwrap_err();

    assert!(started.elapsed() < Duration::from_secs(2));
    let chain = DisplayChain(&error).to_string();
    assert!(chain.starts_with("server asked to wait"), "{chain}");
    assert!(
        chain.ends_with("more than the 120s allowed: HTTP 429 Too Many Requests"),
        "{chain}"
    );
    assert_eq!(server.requests().len(), 1);
    // The server's answer is still there, body and all.
    let reqwest_middleware::Error::Middleware(inner) = error else {
        panic!("not the middleware's error");
    };
    let typed = inner.downcast::<ResilienceError<RequestError>>().unwrap();
    let Some(RequestError::Status(response)) = typed.into_operation_error() else {
        panic!("no answer kept");
    };
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("Rate limit reached"));
}

#[tokio::test]
async fn a_spent_retry_budget_stops_retries_across_requests() {
    let busy = || Reply::status(503, "server_error");
    let server = FaultServer::start([busy(), busy(), busy(), ok()])
        .await
        .unwrap();
    // Two requests earn one retry between them, and nothing else refills it.
    let budget = RetryBudget::new(0.5)
        .unwrap()
        .min_retries_per_second(0.0)
        .unwrap();
    let config = RetryConfig::builder()
        .max_attempts(5)
        .base_delay(Duration::from_millis(10))
        .retry_on(request_retry_on())
        .budget(budget)
        .build()
        .unwrap();
    let client = client(ResilienceMiddleware::new().retry(config));

    let first = client
        .post(url(&server))
        .body("{}")
        .send()
        .await
        .unwrap_err();
    let chain = DisplayChain(&first).to_string();
    assert!(
        chain.starts_with("retry budget exhausted after 1 attempt: "),
        "{chain}"
    );
    assert!(chain.ends_with(": HTTP 503 Service Unavailable"), "{chain}");
    let second = client
        .post(url(&server))
        .body("{}")
        .send()
        .await
        .unwrap_err();
    let chain = DisplayChain(&second).to_string();
    assert!(
        chain.starts_with("retry budget exhausted after 2 attempts: "),
        "{chain}"
    );
    assert!(chain.ends_with(": HTTP 503 Service Unavailable"), "{chain}");
    assert_eq!(server.requests().len(), 3);
}
