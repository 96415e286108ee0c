//! Resilience inside a tool: the tool retries its own flaky fetch and returns the data.
//!
//! `cargo run --example tool_resilience`

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aegeantic::report::Report;
use aegeantic::resilience::{resilient, ResilienceError, Resilient, RetryConfig, RetryOn};

/// A simulated HTTP GET: the first two calls time out.
async fn http_get(url: &str, calls: &AtomicU32) -> Result<String, io::Error> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    if calls.fetch_add(1, Ordering::Relaxed) < 2 {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "read timed out"));
    }
    Ok(format!("{{\"url\": \"{url}\", \"temperature\": 21}}"))
}

struct ApiTool {
    retry_config: RetryConfig,
    calls: AtomicU32,
}

impl ApiTool {
    /// Fetch data from an external API.
    async fn fetch_data(&self, url: &str) -> Result<String, ResilienceError<io::Error>> {
        let fetch = || http_get(url, &self.calls);
        let retry = Some(self.retry_config.clone());
        resilient(fetch, retry, None, "api_fetch", "tool")
            .on_event(|event| {
                if let Resilient::Retry(retry) = event {
                    println!(
                        "  (attempt {} failed: {}; retrying)",
                        retry.attempt, retry.error
                    );
                }
            })
            .await
    }
}

#[tokio::main]
async fn main() -> Result<(), Report> {
    let tool = ApiTool {
        retry_config: RetryConfig::builder()
            .max_attempts(3)
            .base_delay(Duration::from_millis(50))
            .retry_on(RetryOn::transient())
            .build()?,
        calls: AtomicU32::new(0),
    };
    let data = tool.fetch_data("https://api.example.com/weather").await?;
    println!("tool result: {data}");
    Ok(())
}
