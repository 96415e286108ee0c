//! A production LLM provider: one shared limiter and retry policy wrap every call; callers
//! get only the text, while retries and waits go to the log (stderr).
//!
//! `cargo run --example production_provider`

mod support;

use std::error::Error;
use std::time::Duration;

use aegeantic::resilience::{
    resilient_stream, ConfigError, RateLimitConfig, RateLimiter, ResilienceError, Resilient,
    RetryConfig,
};
use futures::{Stream, StreamExt};
use support::{flaky_llm, Attempt};

struct ProductionLlmProvider {
    rate_limiter: RateLimiter,
    retry_config: RetryConfig,
}

impl ProductionLlmProvider {
    fn new() -> Result<Self, ConfigError> {
        Ok(ProductionLlmProvider {
            // One limiter for the whole provider: every caller shares it.
            rate_limiter: RateLimiter::new(RateLimitConfig {
                requests_per_second: Some(50.0),
                requests_per_minute: Some(2000.0),
                burst_size: 100,
                ..RateLimitConfig::default()
            })?,
            retry_config: RetryConfig::builder()
                .max_attempts(5)
                .base_delay(Duration::from_millis(50))
                .max_delay(Duration::from_secs(30))
                .build()?,
        })
    }

    /// The text of the answer, chunk by chunk.
    fn stream(
        &self,
        prompt: &str,
    ) -> impl Stream<Item = Result<String, ResilienceError<std::io::Error>>> + use<> {
        // The simulated base provider refuses the first connection of every prompt. (A
        // failure after some chunks would restart the answer: see `items_delivered`.)
        let answer = if prompt.contains("weather") {
            "Sunny, 21 °C. "
        } else {
            "Hello there! "
        };
        let base = flaky_llm(answer, &[Attempt::Refused, Attempt::Ok]);
        resilient_stream(
            base,
            Some(self.retry_config.clone()),
            Some(self.rate_limiter.clone()),
            "llm_stream",
            "llm",
        )
        .filter_map(|item| async move {
            match item {
                Ok(Resilient::Item(chunk)) => Some(Ok(chunk)),
                Ok(Resilient::Retry(event)) => {
                    eprintln!(
                        "WARN llm retry {}/{}: {}",
                        event.attempt, event.max_attempts, event.error
                    );
                    None
                }
                Ok(Resilient::RateLimit(event)) => {
                    eprintln!(
                        "DEBUG rate limit acquired: {:.0} tokens",
                        event.tokens_remaining
                    );
                    None
                }
                Ok(_) => None,
                Err(error) => Some(Err(error)),
            }
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let provider = ProductionLlmProvider::new()?;
    for prompt in ["Hello, world!", "What's the weather?"] {
        let mut answer = String::new();
        let mut chunks = std::pin::pin!(provider.stream(prompt));
        while let Some(chunk) = chunks.next().await {
            answer.push_str(&chunk?);
        }
        println!("{prompt} -> {answer}");
    }
    Ok(())
}
