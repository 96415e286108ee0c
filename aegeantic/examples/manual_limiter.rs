//! Using a `RateLimiter` by hand: waiting, trying, and reading the bucket.
//!
//! `cargo run --example manual_limiter`

use aegeantic::report::Report;
use aegeantic::resilience::{RateLimitConfig, RateLimitError, RateLimiter};
use tokio::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Report> {
    let limiter = RateLimiter::new(RateLimitConfig {
        requests_per_second: Some(10.0),
        burst_size: 3,
        ..RateLimitConfig::default()
    })?;
    let start = Instant::now();

    // Waits until a token exists (the first three are there at once).
    for call in 1..=5 {
        let acquired = limiter.acquire(1, "api_call").await?;
        println!(
            "call {call} at {:>4.0} ms (waited {:>3.0} ms, {:.1} tokens left)",
            start.elapsed().as_secs_f64() * 1e3,
            acquired.waited.as_secs_f64() * 1e3,
            acquired.tokens_remaining
        );
    }

    // Never waits: true only if the tokens are there now.
    if limiter.try_acquire(1).await? {
        println!("try_acquire: got a token");
    } else {
        println!(
            "try_acquire: rate limit exceeded, {:.2} tokens available",
            limiter.tokens_available()
        );
    }

    // A request larger than the bucket could never be served: an error, not a hang.
    match limiter.acquire(5, "bulk").await {
        Err(RateLimitError::InsufficientCapacity { requested, burst }) => {
            println!("asked for {requested} tokens, the bucket holds {burst}")
        }
        other => println!("unexpected: {other:?}"),
    }
    Ok(())
}
