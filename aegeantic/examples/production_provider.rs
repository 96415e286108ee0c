//! A production LLM provider: it wraps a base provider, and one shared rate limiter and
//! retry policy guard every call. Callers get only the text; retries and rate-limit grants
//! go to the log (stderr).
//!
//! `cargo run --example production_provider`

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::{io, time::Duration};

use aegeantic::report::Report;
use aegeantic::resilience::{
    resilient_stream, MidStream, RateLimitConfig, RateLimiter, ResilienceError, Resilient,
    RetryConfig,
};
use futures::stream::{BoxStream, Stream, StreamExt};
use support::{llm_stream, Attempt};

/// The simulated base provider: every other connection is refused.
#[derive(Default)]
struct BaseProvider(AtomicUsize);

impl BaseProvider {
    fn stream(&self, _prompt: &str) -> BoxStream<'static, io::Result<String>> {
        let attempt = [Attempt::Refused, Attempt::Ok][self.0.fetch_add(1, Ordering::Relaxed) % 2];
        llm_stream("Hello there! How can I help? ", attempt)
    }
}

struct ProductionLlmProvider {
    base: BaseProvider,
    rate_limiter: RateLimiter, // one bucket shared by every caller of this provider
    retry_config: RetryConfig,
}

impl ProductionLlmProvider {
    fn new(base: BaseProvider) -> Result<Self, Report> {
        let rate_limiter = RateLimiter::new(RateLimitConfig {
            requests_per_second: Some(50.0),
            requests_per_minute: Some(2000.0),
            burst_size: 100,
            ..RateLimitConfig::default()
        })?;
        let retry_config = RetryConfig::builder()
            .max_attempts(5)
            .base_delay(Duration::from_millis(50))
            .max_delay(Duration::from_secs(30))
            // Callers see only chunks, so never restart an answer they have half read.
            .mid_stream(MidStream::Fail)
            .build()?;
        Ok(Self {
            base,
            rate_limiter,
            retry_config,
        })
    }

    /// The answer, chunk by chunk; retry and rate-limit events go to the log.
    fn stream<'a>(
        &'a self,
        prompt: &'a str,
    ) -> impl Stream<Item = Result<String, ResilienceError<io::Error>>> + 'a {
        let (retry, limiter) = (self.retry_config.clone(), self.rate_limiter.clone());
        let open = move || self.base.stream(prompt);
        let items = resilient_stream(open, Some(retry), Some(limiter), "llm_stream", "llm");
        items.filter_map(|item| async move {
            match item {
                Ok(Resilient::Retry(e)) => eprintln!(
                    "WARN  llm retry {}/{}: {}",
                    e.attempt, e.max_attempts, e.error
                ),
                Ok(Resilient::RateLimit(e)) => eprintln!(
                    "DEBUG rate limit acquired: {:.0} tokens",
                    e.tokens_remaining
                ),
                other => return other.map(Resilient::into_item).transpose(),
            }
            None
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Report> {
    let provider = ProductionLlmProvider::new(BaseProvider::default())?;
    for prompt in ["Hello, world!", "Are you there?"] {
        let mut chunks = std::pin::pin!(provider.stream(prompt));
        let mut answer = String::new();
        while let Some(chunk) = chunks.next().await {
            answer.push_str(&chunk?);
        }
        println!("{prompt} -> {answer}");
    }
    Ok(())
}
