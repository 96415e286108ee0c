//! `ResilientProvider` over a scripted in-memory provider, on a paused clock.
#![cfg(feature = "llm")]

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use aegeantic::llm::{
    llm_retry_on, GenerateAdapter, LlmChunk, LlmError, LlmProvider, LlmRequest, LlmStream,
    ResilientProvider,
};
use aegeantic::resilience::{ResilienceError, Resilient, RetryConfig};
use futures::{stream, StreamExt};
use tokio::time::Instant;

type Attempt = Vec<Result<LlmChunk, LlmError>>;

struct Scripted(Mutex<VecDeque<Attempt>>);

impl LlmProvider for Scripted {
    fn stream(&self, _request: &LlmRequest) -> LlmStream {
        let attempt = self.0.lock().unwrap().pop_front().unwrap_or_default();
        Box::pin(stream::iter(attempt))
    }
}

fn text(t: &str) -> Result<LlmChunk, LlmError> {
    Ok(LlmChunk::Text(t.into()))
}

fn overloaded() -> Result<LlmChunk, LlmError> {
    Err(LlmError::Api {
        status: Some(529),
        code: Some("overloaded_error".into()),
        kind: Some("overloaded_error".into()),
        message: "Overloaded".into(),
        should_retry: None,
        server_delay: None,
        in_stream: true,
    })
}

fn provider(script: Vec<Attempt>) -> ResilientProvider<Scripted> {
    let retry = RetryConfig::builder()
        .max_attempts(3)
        .base_delay(Duration::from_secs(1))
        .jitter(false)
        .retry_on(llm_retry_on())
        .build()
        .unwrap();
    ResilientProvider::new(Scripted(Mutex::new(script.into()))).retry(retry)
}

#[tokio::test(start_paused = true)]
async fn events_carry_the_back_off_and_the_discarded_items() {
    let provider = provider(vec![
        vec![text("a"), overloaded()],
        vec![Err(LlmError::truncated())],
        vec![text("a"), text("b")],
    ]);
    let start = Instant::now();
    let items: Vec<String> = provider
        .stream_events(&LlmRequest::default())
        .map(|item| match item.unwrap() {
            Resilient::Item(chunk) => format!("{chunk:?}"),
            Resilient::Retry(e) => format!(
                "retry {}@{}s({})",
                e.attempt, e.next_delay_seconds, e.items_delivered
            ),
            other => format!("{other:?}"),
        })
        .collect()
        .await;
    assert_eq!(
        items,
        [
            r#"Text("a")"#,
            "retry 1@1s(1)",
            "retry 2@2s(0)",
            r#"Text("a")"#,
            r#"Text("b")"#
        ]
    );
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn exhaustion_and_permanent_errors_surface_as_llm_errors() {
    let provider = provider(vec![
        vec![overloaded()],
        vec![overloaded()],
        vec![overloaded()],
    ]);
    let last = provider
        .stream_events(&LlmRequest::default())
        .collect::<Vec<_>>()
        .await;
    assert!(matches!(
        last.last(),
        Some(Err(ResilienceError::Operation { attempts: 3, .. }))
    ));

    let provider = crate::provider(vec![vec![Err(LlmError::Protocol("garbage".into()))]]);
    let plain: Vec<_> = provider.stream(&LlmRequest::default()).collect().await;
    assert!(matches!(plain.as_slice(), [Err(LlmError::Protocol(_))]));
}

#[tokio::test]
async fn the_generate_adapter_passes_errors_through() {
    let failing = GenerateAdapter::new(|_: &LlmRequest| {
        Err(LlmError::Other {
            message: "backend down".into(),
            transient: true,
        })
    });
    let items: Vec<_> = failing.stream(&LlmRequest::default()).collect().await;
    assert!(matches!(items.as_slice(), [Err(e)] if e.is_transient()));
}

/// A tokens-per-second bucket of `burst`, emptied.
async fn empty_token_bucket(per_second: f64, burst: u32) -> aegeantic::resilience::RateLimiter {
    let limiter = aegeantic::resilience::RateLimiter::new(aegeantic::resilience::RateLimitConfig {
        requests_per_second: Some(per_second),
        burst_size: burst,
        ..Default::default()
    })
    .unwrap();
    assert!(limiter.try_acquire(burst).await.unwrap());
    limiter
}

#[tokio::test(start_paused = true)]
async fn max_elapsed_covers_the_token_reservations() {
    // Each call reserves its 100-token cap; the bucket refills 10 a second.
    let request = LlmRequest {
        max_tokens: Some(100),
        ..LlmRequest::default()
    };
    let retry = |max_elapsed| {
        RetryConfig::builder()
            .base_delay(Duration::from_secs(1))
            .jitter(false)
            .retry_on(llm_retry_on())
            .max_elapsed(max_elapsed)
            .build()
            .unwrap()
    };
    let outcome = |items: Vec<Result<Resilient<LlmChunk>, ResilienceError<LlmError>>>| {
        items
            .into_iter()
            .map(|item| match item {
                Ok(Resilient::Item(chunk)) => format!("{chunk:?}"),
                Ok(Resilient::Retry(e)) => format!("retry {}", e.attempt),
                Ok(Resilient::RateLimit(e)) => format!("tokens {}", e.tokens),
                Ok(other) => format!("{other:?}"),
                Err(ResilienceError::DeadlineExceeded {
                    attempts,
                    elapsed,
                    source,
                }) => {
                    format!("deadline after {attempts} in {elapsed:?}: {source:?}")
                }
                Err(other) => format!("{other:?}"),
            })
            .collect::<Vec<_>>()
    };

    // The first reservation is 10 s away, the deadline 2 s: no wait at all.
    let tokens = empty_token_bucket(10.0, 200).await;
    let provider = ResilientProvider::new(Scripted(Mutex::new(vec![vec![text("a")]].into())))
        .retry(retry(Duration::from_secs(2)))
        .token_limiter(tokens.clone());
    let start = Instant::now();
    let items = outcome(provider.stream_events(&request).collect().await);
    assert_eq!(start.elapsed(), Duration::ZERO, "{items:?}");
    assert_eq!(items.len(), 1, "{items:?}");
    assert!(items[0].starts_with("deadline after 0 in 0ns"), "{items:?}");
    assert!(items[0].contains("PastDeadline"), "{items:?}");
    // Nothing was taken: the 100 tokens come 10 s after the bucket was emptied.
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(tokens.try_acquire(100).await.unwrap());

    // The first call fits; the retry's reservation, made as the retry is announced, would
    // end past the deadline: the operation ends then, without the back-off.
    let tokens = empty_token_bucket(10.0, 200).await;
    tokio::time::advance(Duration::from_secs(10)).await;
    let provider = ResilientProvider::new(Scripted(Mutex::new(
        vec![vec![overloaded()], vec![text("a")]].into(),
    )))
    .retry(retry(Duration::from_secs(5)))
    .token_limiter(tokens.clone());
    let start = Instant::now();
    let items = outcome(provider.stream_events(&request).collect().await);
    assert_eq!(items[..2], ["tokens 100", "retry 1"], "{items:?}");
    assert!(items[2].starts_with("deadline after 1 in 0ns"), "{items:?}");
    assert_eq!(start.elapsed(), Duration::ZERO);

    // With time enough, the reservations wait and the call completes.
    let tokens = empty_token_bucket(10.0, 200).await;
    let provider = ResilientProvider::new(Scripted(Mutex::new(vec![vec![text("a")]].into())))
        .retry(retry(Duration::from_secs(20)))
        .token_limiter(tokens.clone());
    let start = Instant::now();
    let items = outcome(provider.stream_events(&request).collect().await);
    assert_eq!(items, ["tokens 100", "Text(\"a\")"]);
    assert_eq!(start.elapsed(), Duration::from_secs(10));
}
