//! Tokens-per-minute reservations and quota headers, through `ResilientProvider` and the
//! OpenAI-compatible provider against the fault server, over real HTTP on loopback.
//!
//! Real time. The buckets refill at one token a second or slower, so counts taken within
//! a test move by a few tokens at most; the one wait is bounded from below only.
#![cfg(all(feature = "openai", feature = "fault-server"))]

use std::time::Duration;

use aegeantic::events::RateLimitEvent;
use aegeantic::llm::{
    estimate_prompt, llm_retry_on, LlmChunk, LlmProvider, LlmRequest, Message, OpenAiCompatible,
    OpenAiConfig, Quota, ResilientProvider,
};
use aegeantic::resilience::{
    RateLimitConfig, RateLimitError, RateLimiter, ResilienceError, Resilient, RetryConfig,
};
use aegeantic::testing::{FaultServer, Reply};
use futures::StreamExt;

const GAP: Duration = Duration::from_millis(2);

fn tokens_per_second(rate: f64, burst: u32) -> RateLimiter {
    RateLimiter::new(RateLimitConfig {
        requests_per_second: Some(rate),
        burst_size: burst,
        ..RateLimitConfig::default()
    })
    .unwrap()
}

fn metered(server: &FaultServer, tokens: &RateLimiter) -> ResilientProvider<OpenAiCompatible> {
    let config = OpenAiConfig::new(server.base_url(), "fault-model");
    let retry = RetryConfig::builder()
        .max_attempts(3)
        .base_delay(Duration::from_millis(10))
        .jitter(false)
        .retry_on(llm_retry_on())
        .build()
        .unwrap();
    ResilientProvider::new(OpenAiCompatible::new(config).unwrap())
        .retry(retry)
        .token_limiter(tokens.clone())
}

fn request(max_tokens: u32) -> LlmRequest {
    LlmRequest {
        max_tokens: Some(max_tokens),
        ..LlmRequest::new(vec![Message::user("What is the weather in Paris today?")])
    }
}

/// Runs one call to its end: the token grants, the quotas seen, and the final error.
async fn run(
    provider: &ResilientProvider<OpenAiCompatible>,
    request: &LlmRequest,
) -> (
    Vec<RateLimitEvent>,
    Vec<Quota>,
    Option<ResilienceError<aegeantic::llm::LlmError>>,
) {
    let (mut grants, mut quotas, mut error) = (Vec::new(), Vec::new(), None);
    let mut stream = provider.stream_events(request);
    while let Some(item) = stream.next().await {
        match item {
            Ok(Resilient::RateLimit(event)) => grants.push(event),
            Ok(Resilient::Item(LlmChunk::Quota(quota))) => quotas.push(quota),
            Ok(_) => {}
            Err(failure) => error = Some(failure),
        }
    }
    (grants, quotas, error)
}

fn assert_near(actual: f64, expected: f64) {
    assert!(
        (expected..expected + 3.0).contains(&actual),
        "{actual} tokens, expected {expected} (+ a few refilled)"
    );
}

#[tokio::test]
async fn a_call_reserves_its_bound_and_keeps_only_what_it_used() {
    let server = FaultServer::start([Reply::text(&["It is ", "sunny."], GAP).usage(12, 30)])
        .await
        .unwrap();
    let tokens = tokens_per_second(1.0, 1000);
    let request = request(200);
    let (grants, _, error) = run(&metered(&server, &tokens), &request).await;
    assert!(error.is_none(), "{error:?}");

    let reserved = estimate_prompt(&request) + 200;
    assert_eq!(grants.len(), 1);
    assert_eq!(&*grants[0].operation_name, "llm.tokens");
    assert_eq!(grants[0].tokens, reserved);
    assert_near(grants[0].tokens_remaining, f64::from(1000 - reserved));
    assert_near(tokens.tokens_available(), 1000.0 - 42.0);
}

#[tokio::test]
async fn a_failed_attempt_keeps_its_reservation_and_the_retry_reserves_again() {
    let server = FaultServer::start([
        Reply::status(500, "server_error"),
        Reply::text(&["ok"], GAP).usage(12, 8),
    ])
    .await
    .unwrap();
    let tokens = tokens_per_second(1.0, 1000);
    let request = request(100);
    let (grants, _, error) = run(&metered(&server, &tokens), &request).await;
    assert!(error.is_none(), "{error:?}");
    let reserved = estimate_prompt(&request) + 100;
    assert_eq!(grants.len(), 2, "one reservation per attempt");
    assert_eq!(server.requests().len(), 2);
    assert_near(
        tokens.tokens_available(),
        1000.0 - f64::from(reserved) - 20.0,
    );
}

#[tokio::test]
async fn a_call_larger_than_the_bucket_fails_before_any_request() {
    let server = FaultServer::start([Reply::text(&["never"], GAP)])
        .await
        .unwrap();
    let tokens = tokens_per_second(1.0, 1000);
    let (_, _, error) = run(&metered(&server, &tokens), &request(4000)).await;
    assert!(
        matches!(
            error,
            Some(ResilienceError::RateLimit(
                RateLimitError::InsufficientCapacity { burst: 1000, .. }
            ))
        ),
        "{error:?}"
    );
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn the_next_call_waits_for_the_tokens_the_last_one_used() {
    let server = FaultServer::start([
        Reply::text(&["long"], GAP).usage(10, 290),
        Reply::text(&["short"], GAP),
    ])
    .await
    .unwrap();
    // 100 tokens a second: the first call leaves about 0 of 300, the second needs 200 + its
    // prompt, so it waits about 2 s.
    let tokens = tokens_per_second(100.0, 300);
    let provider = metered(&server, &tokens);
    let request = request(200);
    let (first, _, error) = run(&provider, &request).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(first[0].waited, Duration::ZERO);
    let (second, _, error) = run(&provider, &request).await;
    assert!(error.is_none(), "{error:?}");
    assert!(
        second[0].waited >= Duration::from_millis(1500),
        "waited {:?}",
        second[0].waited
    );
}

#[tokio::test]
async fn quota_headers_lower_both_local_buckets() {
    let server = FaultServer::start([Reply::text(&["ok"], GAP)
        .usage(10, 5)
        .header("x-ratelimit-limit-requests", "500")
        .header("x-ratelimit-remaining-requests", "0")
        .header("x-ratelimit-reset-requests", "120ms")
        .header("x-ratelimit-limit-tokens", "30000")
        .header("x-ratelimit-remaining-tokens", "100")
        .header("x-ratelimit-reset-tokens", "6m0s")])
    .await
    .unwrap();
    let tokens = tokens_per_second(1.0, 1000);
    let requests = tokens_per_second(0.01, 50);
    let provider = metered(&server, &tokens).rate_limiter(requests.clone());
    let request = request(100);
    let (_, quotas, error) = run(&provider, &request).await;
    assert!(error.is_none(), "{error:?}");

    assert_eq!(quotas.len(), 1);
    let quota = quotas[0];
    let window = quota.requests.unwrap();
    assert_eq!(
        (window.limit, window.remaining, window.reset),
        (Some(500), 0, Some(Duration::from_millis(120)))
    );
    let window = quota.tokens.unwrap();
    assert_eq!(
        (window.limit, window.remaining, window.reset),
        (Some(30000), 100, Some(Duration::from_secs(360)))
    );
    assert!(!requests.try_acquire(1).await.unwrap(), "no request left");
    // Lowered to the server's 100 while the call held its reservation, then the unused
    // part of the reservation came back.
    let unused = f64::from(estimate_prompt(&request) + 100) - 15.0;
    assert_near(tokens.tokens_available(), 100.0 + unused);
}
