//! async-openai's streaming chat call, `client.chat().create_stream(request)`, under
//! `resilient_stream`: the upstream answers with a 429 and `Retry-After: 1` (waited), then
//! a stream cut after three chunks (retried; the retry event says how many chunks the cut
//! attempt had delivered), then the answer. A limiter shared by every caller gives a token
//! before each attempt. The upstream is the in-process fault server, so this runs offline.
//!
//! `cargo run --example async_openai --features fault-server,http`

mod chat;
mod upstream;

use std::time::Duration;

use aegeantic::report::Report;
use aegeantic::resilience::{
    resilient_stream, RateLimitConfig, RateLimiter, Resilient, RetryConfig, RetryOn,
};
use aegeantic::testing::{FaultServer, Reply, StreamEnd};
use async_openai::config::OpenAIConfig;
use async_openai::types::chat::{
    ChatCompletionRequestUserMessage, CreateChatCompletionRequestArgs,
};
use futures::StreamExt;

use chat::ChatError;

#[tokio::main]
async fn main() -> Result<(), Report> {
    let pieces = ["The ", "quick ", "brown ", "fox."];
    let gap = Duration::from_millis(30);
    let server = FaultServer::start([
        Reply::rate_limited("1"),
        upstream::answer(&pieces[..3], gap, StreamEnd::Cut),
        upstream::answer(&pieces, gap, StreamEnd::Done),
    ])
    .await?;

    let client = chat::client(
        OpenAIConfig::new()
            .with_api_base(server.base_url())
            .with_api_key("sk-example"),
    );
    let request = CreateChatCompletionRequestArgs::default()
        .model(upstream::MODEL)
        .messages([ChatCompletionRequestUserMessage::from("Say something.").into()])
        .build()?;

    // One limiter per upstream API, shared by every caller (clones share the bucket); a
    // retry takes a token too, and the 429's Retry-After empties it for everyone.
    let limiter = RateLimiter::new(RateLimitConfig {
        requests_per_second: Some(2.0),
        burst_size: 5,
        ..RateLimitConfig::default()
    })?;
    let retry = RetryConfig::builder()
        .max_attempts(4)
        .base_delay(Duration::from_millis(100))
        .retry_on(RetryOn::classified::<ChatError>())
        .build()?;

    let open = move || chat::open(&client, &request);
    let chunks = resilient_stream(
        open,
        Some(retry),
        Some(limiter.clone()),
        upstream::MODEL,
        "llm",
    );
    let mut chunks = std::pin::pin!(chunks);
    let mut answer = String::new();
    while let Some(item) = chunks.next().await {
        match item? {
            Resilient::Item(chunk) => {
                print!("{}", chat::text(&chunk));
                answer.push_str(chat::text(&chunk));
            }
            Resilient::Retry(event) => {
                // The next attempt starts over: what this one delivered comes again.
                answer.clear();
                println!(
                    "\n[retry {}/{} in {:.2}s{}, after {} chunks: {}]",
                    event.attempt,
                    event.max_attempts,
                    event.next_delay_seconds,
                    if event.server_directed {
                        " (server's Retry-After)"
                    } else {
                        ""
                    },
                    event.items_delivered,
                    event.error,
                );
            }
            Resilient::RateLimit(event) => println!(
                "[token after {:.0?}, {:.1} left]",
                event.waited, event.tokens_remaining
            ),
            _ => {}
        }
    }
    println!("\nanswer: {answer}");
    println!("requests the upstream saw: {}", server.requests().len());
    println!(
        "tokens left for the limiter's other users: {:.1}",
        limiter.tokens_available()
    );
    Ok(())
}
