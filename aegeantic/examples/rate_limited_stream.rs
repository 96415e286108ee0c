//! `rate_limited_stream`: take a token before opening each stream.
//!
//! `cargo run --example rate_limited_stream`

mod support;

use aegeantic::report::Report;
use aegeantic::resilience::{rate_limited_stream, RateLimitConfig, RateLimiter, Resilient};
use futures::StreamExt;
use support::{flaky_llm, Attempt};

#[tokio::main]
async fn main() -> Result<(), Report> {
    let limiter = RateLimiter::new(RateLimitConfig {
        requests_per_second: Some(5.0),
        burst_size: 1,
        ..RateLimitConfig::default()
    })?;
    for page in 1..=3 {
        let fetch = flaky_llm("row-a row-b row-c ", &[Attempt::Ok]);
        let mut stream = rate_limited_stream(fetch, limiter.clone(), "data_fetch");
        while let Some(item) = stream.next().await {
            match item? {
                Resilient::RateLimit(event) => println!(
                    "page {page}: rate limit acquired after {:.0} ms, {:.1} tokens left",
                    event.waited.as_secs_f64() * 1e3,
                    event.tokens_remaining
                ),
                Resilient::Item(row) => println!("  {row}"),
                _ => {}
            }
        }
    }
    Ok(())
}
