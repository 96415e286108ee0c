//! async-openai's streaming chat call, `client.chat().create_stream(request)`, made
//! resilient two ways. The upstream is the in-process fault server, so this runs offline.
//!
//! 1. Around the call, with `resilient_stream`: the upstream answers with a 429 and
//!    `Retry-After: 1` (waited), then a stream cut after three chunks (retried; the retry
//!    event says how many chunks the cut attempt had delivered), then the answer. A limiter
//!    shared by every caller gives a token before each attempt.
//! 2. Inside the client, with aegeantic's tower layers in async-openai's HTTP service hook:
//!    a 429 with `Retry-After: 1` and a 503 are retried below async-openai, which sees only
//!    the answer; the stream holds a concurrency slot until its last chunk.
//!
//! `cargo run --example async_openai --features fault-server,http,tower`

mod chat;
mod tower_stack;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use aegeantic::report::Report;
use aegeantic::resilience::{
    resilient_stream, ConcurrencyLimiter, Event, RateLimitConfig, RateLimiter, Resilient,
    RetryConfig, RetryOn,
};
use aegeantic::testing::{FaultServer, Reply, StreamEnd};
use async_openai::config::OpenAIConfig;
use async_openai::types::chat::{
    ChatCompletionRequestUserMessage, CreateChatCompletionRequestArgs,
};
use futures::StreamExt;

use chat::ChatError;

const PIECES: [&str; 4] = ["The ", "quick ", "brown ", "fox."];
const GAP: Duration = Duration::from_millis(30);

#[tokio::main]
async fn main() -> Result<(), Report> {
    println!("== 1. resilient_stream around async-openai's call");
    around_the_call().await?;
    println!("\n== 2. aegeantic's tower layers in async-openai's HTTP service hook");
    in_the_hook().await
}

fn request() -> Result<async_openai::types::chat::CreateChatCompletionRequest, Report> {
    Ok(CreateChatCompletionRequestArgs::default()
        .model(upstream::MODEL)
        .messages([ChatCompletionRequestUserMessage::from("Say something.").into()])
        .build()?)
}

async fn around_the_call() -> Result<(), Report> {
    let (pieces, gap) = (PIECES, GAP);
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
    let request = request()?;

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

async fn in_the_hook() -> Result<(), Report> {
    let server = FaultServer::start([
        Reply::rate_limited("1"),
        Reply::status(503, "overloaded"),
        upstream::answer(&PIECES, GAP, StreamEnd::Done),
    ])
    .await?;
    let limiter = RateLimiter::new(RateLimitConfig {
        requests_per_second: Some(2.0),
        burst_size: 5,
        ..RateLimitConfig::default()
    })?;
    let max_in_flight = 4;
    let slots = ConcurrencyLimiter::new(max_in_flight)?;
    let retry = RetryConfig::builder()
        .max_attempts(4)
        .base_delay(Duration::from_millis(100))
        .build()?;
    let observer = Arc::new(|event: &Event| match event {
        Resilient::Retry(event) => println!(
            "[hook: retry {}/{} in {:.2}s{}: {}]",
            event.attempt,
            event.max_attempts,
            event.next_delay_seconds,
            if event.server_directed {
                " (server's Retry-After)"
            } else {
                ""
            },
            event.error,
        ),
        Resilient::RateLimit(event) => println!(
            "[hook: token after {:.0?}, {:.1} left]",
            event.waited, event.tokens_remaining
        ),
        _ => {}
    });
    let client = tower_stack::client(
        OpenAIConfig::new()
            .with_api_base(server.base_url())
            .with_api_key("sk-example"),
        limiter,
        slots.clone(),
        retry,
        observer,
    );

    let mut chunks = client.chat().create_stream(request()?).await?;
    let mut answer = String::new();
    let mut free_while_streaming = None;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        free_while_streaming.get_or_insert(slots.available());
        answer.push_str(chat::text(&chunk));
        print!("{}", chat::text(&chunk));
    }
    println!("\nanswer: {answer}");
    println!(
        "free slots of {max_in_flight} while it streamed: {}, after it: {}",
        free_while_streaming.unwrap_or(max_in_flight),
        slots.available()
    );
    println!("requests the upstream saw: {}", server.requests().len());
    Ok(())
}
