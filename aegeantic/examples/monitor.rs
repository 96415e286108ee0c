//! `ResilienceMonitor`: count retries and rate-limit waits across several streams.
//!
//! `cargo run --example monitor`

mod support;

use std::time::Duration;

use aegeantic::report::Report;
use aegeantic::resilience::{
    resilient_stream, RateLimitConfig, RateLimiter, ResilienceMonitor, RetryConfig,
};
use futures::StreamExt;
use support::{flaky_llm, Attempt};

#[tokio::main]
async fn main() -> Result<(), Report> {
    let limiter = RateLimiter::new(RateLimitConfig {
        requests_per_second: Some(20.0),
        burst_size: 2,
        ..RateLimitConfig::default()
    })?;
    let retry = RetryConfig::builder()
        .base_delay(Duration::from_millis(30))
        .build()?;
    let mut monitor = ResilienceMonitor::new();

    let plans: [&[Attempt]; 4] = [
        &[Attempt::Ok],
        &[Attempt::Refused, Attempt::Ok],
        &[Attempt::DropsAfter(1), Attempt::Refused, Attempt::Ok],
        &[Attempt::Ok],
    ];
    for (i, plan) in plans.into_iter().enumerate() {
        let llm = flaky_llm("monitored ", plan);
        let mut stream = resilient_stream(
            llm,
            Some(retry.clone()),
            Some(limiter.clone()),
            format!("call-{i}"),
            "llm",
        );
        while let Some(item) = stream.next().await {
            monitor.handle_event(&item);
            item?;
        }
    }
    println!("Total retries: {}", monitor.retry_count());
    println!(
        "Total delay from retries: {:.3}s",
        monitor.total_delay().as_secs_f64()
    );
    println!("Rate-limit acquisitions: {}", monitor.rate_limit_waits());
    println!("Summary: {monitor}");
    Ok(())
}
