//! An agent step that calls a tool through injected faults, with every event printed live.
//!
//! ```text
//! cargo run --example agent_demo --features demo
//! OPENAI_API_KEY=... cargo run --example agent_demo --features demo -- \
//!     --base-url https://api.openai.com/v1 --model gpt-4o-mini
//! ```
//!
//! Without arguments it starts the in-process fault server, which answers the first model
//! call with a 429, cuts the second mid-stream, then streams the tool call and the answer,
//! with OpenAI's rate-limit headers. The demo then talks to it exactly as it would to the
//! `--base-url` given.

use std::error::Error;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use aegeantic::agent::{Agent, AgentConfig, AgentEvent, AgentRunner, Tool, ToolError};
use aegeantic::llm::{
    llm_retry_on, LlmChunk, OpenAiCompatible, OpenAiConfig, QuotaWindow, ResilientProvider,
};
use aegeantic::resilience::{RateLimitConfig, RateLimiter, ResilienceMonitor, RetryConfig};
use aegeantic::testing::{FaultServer, Reply, StreamEnd};
use aegeantic::tool;
use futures::StreamExt;
use serde_json::{json, Value};

/// A canned weather lookup, made a tool by `#[tool]`.
#[tool("Current weather for a city")]
async fn get_weather(city: String) -> Result<Value, ToolError> {
    if city.trim().is_empty() {
        return Err(ToolError::InvalidArguments("city must not be empty".into()));
    }
    Ok(json!({"city": city, "temperature_c": 21, "sky": "clear"}))
}

/// ANSI colours, only when stdout is a terminal.
struct Paint(bool);

impl Paint {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

struct Args {
    base_url: Option<String>,
    model: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        base_url: None,
        model: "fault-model".into(),
    };
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        let value = iter.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--base-url" => args.base_url = Some(value),
            "--model" => args.model = value,
            other => {
                return Err(format!(
                    "unknown argument {other}; use --base-url URL --model M"
                ))
            }
        }
    }
    Ok(args)
}

/// The scripted upstream: a 429, a tool call cut mid-stream, the tool call again, the
/// answer; every streamed reply with OpenAI's rate-limit headers.
async fn fault_server() -> std::io::Result<FaultServer> {
    let gap = Duration::from_millis(60);
    let args_json = ["{\"ci", "ty\": \"Lis", "bon\"}"];
    let quota = |reply: Reply, requests: &str, tokens: &str| {
        reply
            .header("x-ratelimit-limit-requests", "500")
            .header("x-ratelimit-remaining-requests", requests)
            .header("x-ratelimit-reset-requests", "120ms")
            .header("x-ratelimit-limit-tokens", "30000")
            .header("x-ratelimit-remaining-tokens", tokens)
            .header("x-ratelimit-reset-tokens", "4.2s")
    };
    FaultServer::start([
        Reply::rate_limited("1"),
        quota(
            Reply::tool_call("call_1", "get_weather", &args_json, gap).ending(StreamEnd::Cut),
            "498",
            "27900",
        ),
        quota(
            Reply::tool_call("call_1", "get_weather", &args_json, gap).usage(96, 18),
            "497",
            "26850",
        ),
        quota(
            Reply::text(&["It is ", "21 °C ", "and clear ", "in Lisbon."], gap).usage(141, 12),
            "496",
            "25810",
        ),
    ])
    .await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = parse_args()?;
    let paint = Paint(std::io::stdout().is_terminal());

    // Kept alive for the whole run when used.
    let mut server = None;
    let base_url = match args.base_url {
        Some(url) => url,
        None => {
            let fault = fault_server().await?;
            println!(
                "{}",
                paint.paint("2", &format!("fault server at {}", fault.base_url()))
            );
            let url = fault.base_url();
            server = Some(fault);
            url
        }
    };
    let mut config = OpenAiConfig::from_env(args.model);
    config.base_url = base_url;

    let retry = RetryConfig::builder()
        .max_attempts(4)
        .base_delay(Duration::from_millis(200))
        .max_delay(Duration::from_secs(8))
        .retry_on(llm_retry_on())
        .build()?;
    let limiter = RateLimiter::new(RateLimitConfig {
        requests_per_second: Some(2.0),
        burst_size: 1,
        ..RateLimitConfig::default()
    })?;
    let tokens_per_minute = RateLimiter::new(RateLimitConfig {
        requests_per_minute: Some(30_000.0),
        burst_size: 30_000,
        ..RateLimitConfig::default()
    })?;
    let provider = ResilientProvider::new(OpenAiCompatible::new(config)?)
        .retry(retry)
        .rate_limiter(limiter)
        .token_limiter(tokens_per_minute);
    let agent = Agent::new(
        AgentConfig {
            system_prompt: Some("Answer briefly. Use tools for facts.".into()),
            max_iterations: 4,
            ..AgentConfig::default()
        },
        provider,
        vec![Arc::new(GetWeather) as Arc<dyn Tool>],
    );
    let mut runner = AgentRunner::new(agent);
    let mut monitor = ResilienceMonitor::new();
    let mut stdout = std::io::stdout();

    let mut events = runner.step_stream("What's the weather in Lisbon?");
    while let Some(event) = events.next().await {
        monitor.handle_event(&event);
        match &event {
            AgentEvent::LlmChunk {
                chunk: LlmChunk::Text(text),
                ..
            } => print!("{text}"),
            AgentEvent::LlmChunk {
                chunk: LlmChunk::ToolCall(delta),
                ..
            } => {
                print!("{}", paint.paint("2", &delta.arguments));
            }
            AgentEvent::LlmChunk {
                chunk: LlmChunk::Quota(quota),
                ..
            } => {
                let left = |window: Option<QuotaWindow>| {
                    window.map_or("?".to_owned(), |w| match w.limit {
                        Some(limit) => format!("{}/{limit}", w.remaining),
                        None => w.remaining.to_string(),
                    })
                };
                println!(
                    "{}",
                    paint.paint(
                        "2",
                        &format!(
                            "[server quota left: {} requests, {} tokens]",
                            left(quota.requests),
                            left(quota.tokens)
                        )
                    )
                );
            }
            AgentEvent::LlmChunk { .. } => {}
            AgentEvent::LlmComplete {
                iteration,
                usage,
                finish_reason,
                ..
            } => println!(
                "\n{}",
                paint.paint(
                    "2",
                    &format!("[model call {iteration} done: {finish_reason:?}, {usage:?}]")
                )
            ),
            AgentEvent::Retry { event, .. } => println!(
                "\n{}",
                paint.paint(
                    "33",
                    &format!(
                        "[retry {}/{} of {} {} in {:.2}s, {} chunks to discard: {}]",
                        event.attempt,
                        event.max_attempts,
                        event.operation_type,
                        event.operation_name,
                        event.next_delay_seconds,
                        event.items_delivered,
                        event.error
                    )
                )
            ),
            AgentEvent::RateLimit { event, .. } => println!(
                "{}",
                paint.paint(
                    "36",
                    &format!(
                        "[rate limit {}: {} taken after {:.3}s, {:.0} left]",
                        event.operation_name,
                        event.tokens,
                        event.waited.as_secs_f64(),
                        event.tokens_remaining
                    )
                )
            ),
            AgentEvent::ToolStart {
                name, arguments, ..
            } => {
                println!(
                    "{}",
                    paint.paint("35", &format!("[tool {name}({arguments})]"))
                );
            }
            AgentEvent::ToolOutput {
                output, is_error, ..
            } => {
                let colour = if *is_error { "31" } else { "32" };
                println!("{}", paint.paint(colour, &format!("  -> {output}")));
            }
            AgentEvent::ToolEnd { name, duration, .. } => {
                println!(
                    "{}",
                    paint.paint("2", &format!("[tool {name} took {duration:?}]"))
                );
            }
            AgentEvent::Error { error, .. } => {
                println!(
                    "\n{}",
                    paint.paint("31", &format!("[step failed: {error}]"))
                );
            }
            AgentEvent::StepComplete { iterations, .. } => {
                println!(
                    "{}",
                    paint.paint(
                        "1",
                        &format!("[step complete after {iterations} model calls]")
                    )
                );
            }
            other => println!("{other:?}"),
        }
        stdout.flush()?;
    }
    drop(events);
    println!("{}", paint.paint("1", &format!("resilience: {monitor}")));
    if let Some(server) = server {
        println!(
            "{}",
            paint.paint(
                "2",
                &format!("the fault server saw {} requests", server.requests().len())
            )
        );
    }
    Ok(())
}
