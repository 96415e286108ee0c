//! `resilient_stream`: retry and rate limiting together, a token before every attempt.
//!
//! `cargo run --example combined`

mod support;

use std::time::Duration;

use aegeantic::report::Report;
use aegeantic::resilience::{
    resilient_stream, RateLimitConfig, RateLimiter, Resilient, RetryConfig, RetryOn,
};
use futures::StreamExt;
use support::{flaky_llm, Attempt};

#[tokio::main]
async fn main() -> Result<(), Report> {
    let retry_config = RetryConfig::builder()
        .max_attempts(3)
        .base_delay(Duration::from_millis(50))
        .retry_on(RetryOn::transient())
        .build()?;
    let rate_limiter = RateLimiter::new(RateLimitConfig {
        requests_per_second: Some(10.0),
        burst_size: 20,
        ..RateLimitConfig::default()
    })?;

    let llm_call = flaky_llm(
        "Rate limit first, then retry. ",
        &[Attempt::DropsAfter(3), Attempt::Ok],
    );
    let mut stream = resilient_stream(
        llm_call,
        Some(retry_config),
        Some(rate_limiter),
        "gpt-4",
        "llm",
    );
    while let Some(item) = stream.next().await {
        match item? {
            Resilient::Retry(event) => println!(
                "\n[retrying: {}; {} chunks above will come again]",
                event.error, event.items_delivered
            ),
            Resilient::RateLimit(event) => {
                println!("[rate limited, {:.0} tokens left]", event.tokens_remaining)
            }
            Resilient::Item(chunk) => print!("{chunk}"),
            _ => {}
        }
    }
    println!();
    Ok(())
}
