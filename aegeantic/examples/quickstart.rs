//! The two-minute tour: three LLM calls share one rate limiter, one of them drops
//! mid-stream and is retried, and a monitor sums up what the resilience layer did.
//!
//! `cargo run --example quickstart`

mod support;

use std::error::Error;
use std::time::Duration;

use aegeantic::resilience::{
    resilient_stream, RateLimitConfig, RateLimiter, ResilienceMonitor, Resilient, RetryConfig,
};
use futures::StreamExt;
use support::{flaky_llm, Attempt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // One limiter per upstream API: 2 requests per second, bursts of 2.
    let limiter = RateLimiter::new(RateLimitConfig {
        requests_per_second: Some(2.0),
        burst_size: 2,
        ..RateLimitConfig::default()
    })?;
    let retry = RetryConfig::builder()
        .max_attempts(3)
        .base_delay(Duration::from_millis(200))
        .max_delay(Duration::from_secs(2))
        .build()?;
    let mut monitor = ResilienceMonitor::new();

    let calls = [
        (
            "summary",
            flaky_llm("Streams fail; resilient streams recover. ", &[Attempt::Ok]),
        ),
        (
            "haiku",
            flaky_llm(
                "Tokens drip like rain, the bucket fills and empties, retries wait their turn. ",
                &[Attempt::DropsAfter(4), Attempt::Ok],
            ),
        ),
        (
            "answer",
            flaky_llm("The answer is 42. ", &[Attempt::Refused, Attempt::Ok]),
        ),
    ];
    for (name, llm) in calls {
        println!("--- {name}");
        let mut stream =
            resilient_stream(llm, Some(retry.clone()), Some(limiter.clone()), name, "llm")
                .with_step_id(name);
        while let Some(item) = stream.next().await {
            let item = item?;
            monitor.handle_event(&item);
            match item {
                Resilient::Item(chunk) => print!("{chunk}"),
                Resilient::RateLimit(event) => println!(
                    "[rate limit] waited {:.0} ms, {:.1} tokens left",
                    event.waited.as_secs_f64() * 1e3,
                    event.tokens_remaining
                ),
                Resilient::Retry(event) => println!(
                    "\n[retry] attempt {}/{} failed after {} chunks ({}); next in {:.2} s, restarting from the top",
                    event.attempt, event.max_attempts, event.items_delivered, event.error, event.next_delay_seconds
                ),
                _ => {}
            }
        }
        println!();
    }
    println!("--- {monitor}");
    Ok(())
}
