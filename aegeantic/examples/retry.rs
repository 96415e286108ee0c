//! `retry_stream`: a streaming call that times out, then drops mid-answer, then works; the
//! retry events arrive inline. An error that is not transient is not retried.
//!
//! `cargo run --example retry`

mod support;

use std::time::Duration;

use aegeantic::report::{DisplayChain, Report};
use aegeantic::resilience::{retry_stream, Backoff, Resilient, RetryConfig, RetryOn};
use futures::StreamExt;
use support::{flaky_llm, Attempt};

#[tokio::main]
async fn main() -> Result<(), Report> {
    let config = RetryConfig::builder()
        .max_attempts(3)
        .backoff("exponential".parse::<Backoff>()?)
        .base_delay(Duration::from_millis(50))
        .max_delay(Duration::from_secs(30))
        .jitter(true)
        .retry_on(RetryOn::transient())
        .build()?;

    let llm = flaky_llm(
        "Retries happen where you can see them. ",
        &[Attempt::TimesOut, Attempt::DropsAfter(2), Attempt::Ok],
    );
    let mut stream = retry_stream(llm, config, "gpt-4", "llm");
    let mut line = String::new();
    while let Some(item) = stream.next().await {
        match item? {
            Resilient::Retry(event) => {
                if event.items_delivered > 0 {
                    // The next attempt starts from the beginning: these chunks come again.
                    println!("{line}[dropped after {} chunks]", event.items_delivered);
                    line.clear();
                }
                println!(
                    "Retry {}/{}, waiting {:.2}s ({})",
                    event.attempt, event.max_attempts, event.next_delay_seconds, event.error
                );
            }
            Resilient::Item(chunk) => line.push_str(&chunk),
            _ => {}
        }
    }
    println!("{line}");

    // An error that is not transient is not retried: it ends the stream at once.
    let denied = flaky_llm("never shown", &[Attempt::Denied]);
    let config = RetryConfig::default();
    let mut stream = retry_stream(denied, config, "gpt-4", "llm");
    while let Some(item) = stream.next().await {
        if let Err(error) = item {
            // The whole chain: the resilience layer's message, then the operation's error.
            println!("gave up: {}", DisplayChain(&error));
        }
    }
    Ok(())
}
