//! Helpers shared by the providers' tests against the scripted servers.

use std::time::Duration;

use aegeantic::llm::{llm_retry_on, LlmChunk, LlmProvider, LlmRequest};
use aegeantic::resilience::{ResilienceError, Resilient, RetryConfig};
use futures::StreamExt;

/// Four attempts on what an LLM call counts as transient, 10 ms apart and unjittered, so a
/// test's retries are quick and their count is fixed.
pub fn retry() -> RetryConfig {
    RetryConfig::builder()
        .max_attempts(4)
        .base_delay(Duration::from_millis(10))
        .jitter(false)
        .retry_on(llm_retry_on())
        .build()
        .unwrap()
}

/// A call's events in short: `item:text`, `retry:attempt(delivered)`, `rate`,
/// `err:attempts`, `fin`, `usage`.
pub async fn transcript(provider: &impl LlmProvider, request: &LlmRequest) -> Vec<String> {
    provider
        .stream_events(request)
        .map(|item| match item {
            Ok(Resilient::Item(LlmChunk::Text(text))) => format!("item:{text}"),
            Ok(Resilient::Item(LlmChunk::Finish(_))) => "fin".into(),
            Ok(Resilient::Item(LlmChunk::Usage(_))) => "usage".into(),
            Ok(Resilient::Item(other)) => format!("{other:?}"),
            Ok(Resilient::Retry(event)) => {
                format!("retry:{}({})", event.attempt, event.items_delivered)
            }
            Ok(Resilient::RateLimit(_)) => "rate".into(),
            Ok(other) => format!("{other:?}"),
            Err(ResilienceError::Operation { attempts, .. }) => format!("err:{attempts}"),
            Err(other) => format!("error:{other}"),
        })
        .collect()
        .await
}
