//! The demo: five simulated LLM calls run at once through one shared rate limiter (5
//! requests/s, bursts of 2). One connection is refused and one drops mid-answer; both are
//! retried, the dropped one from the beginning. Each retry and rate-limit grant is printed
//! as it happens, and a monitor sums them up. Offline; about a second and a half.
//!
//! `cargo run --example quickstart`

mod support;

use std::cell::RefCell;
use std::time::Duration;

use aegeantic::report::Report;
use aegeantic::resilience::{
    resilient_stream, RateLimitConfig, RateLimiter, ResilienceMonitor, Resilient, RetryConfig,
};
use futures::{future, StreamExt};
use support::{flaky_llm, Attempt};
use tokio::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Report> {
    // One limiter per upstream API, shared by every call: 5 requests/s, bursts of 2.
    let limiter = RateLimiter::new(RateLimitConfig {
        requests_per_second: Some(5.0),
        burst_size: 2,
        ..RateLimitConfig::default()
    })?;
    let retry = RetryConfig::builder()
        .max_attempts(3)
        .base_delay(Duration::from_millis(100))
        .build()?;
    let monitor = &RefCell::new(ResilienceMonitor::new());
    let start = Instant::now();
    let log = move |name: &str, line: String| {
        println!("{:5.2}s  {name:<8} {line}", start.elapsed().as_secs_f64())
    };

    let calls = [
        ("greeting", "Hello! How can I help? ", Attempt::Ok),
        (
            "haiku",
            "Rain on the wire; we retry. ",
            Attempt::DropsAfter(3),
        ),
        ("answer", "The answer is 42. ", Attempt::Refused),
        ("summary", "Streams fail; we recover. ", Attempt::Ok),
        ("joke", "Why retry? It had issues. ", Attempt::Ok),
    ];
    let runs = calls.map(|(name, text, first_attempt)| {
        let llm = flaky_llm(text, &[first_attempt, Attempt::Ok]);
        let (retry, limiter) = (Some(retry.clone()), Some(limiter.clone()));
        let mut stream = resilient_stream(llm, retry, limiter, name, "llm");
        async move {
            let mut answer = String::new();
            while let Some(item) = stream.next().await {
                let item = item?;
                monitor.borrow_mut().handle_event(&item);
                match item {
                    Resilient::Item(chunk) => answer.push_str(&chunk),
                    Resilient::RateLimit(e) => log(name, format!(
                        "rate limit: waited {:.2}s for a token, {:.1} left",
                        e.waited.as_secs_f64(), e.tokens_remaining
                    )),
                    Resilient::Retry(e) => {
                        log(name, format!(
                            "retry {}/{}: {} after {} chunks; restarting from the beginning in {:.2}s",
                            e.attempt, e.max_attempts, e.error, e.items_delivered, e.next_delay_seconds
                        ));
                        answer.clear(); // those chunks will come again
                    }
                    _ => {}
                }
            }
            log(name, format!("done: {answer:?}"));
            Ok::<_, Report>(())
        }
    });
    for result in future::join_all(runs).await {
        result?;
    }
    let monitor = monitor.borrow();
    println!("{monitor}");
    Ok(())
}
