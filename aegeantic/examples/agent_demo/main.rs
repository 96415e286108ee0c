//! An agent step that calls a tool through injected faults, with every event printed live.
//!
//! ```text
//! cargo run --example agent_demo --features demo
//! OPENAI_API_KEY=... cargo run --example agent_demo --features demo -- \
//!     --base-url https://api.openai.com/v1 --model gpt-4o-mini
//! cargo run --example agent_demo --features demo -- --help
//! ```
//!
//! Without a base URL (`--base-url`, or `OPENAI_BASE_URL`) it starts the in-process fault
//! server, which answers the first model call with a 429, cuts the second mid-stream, then
//! streams the tool call and the answer, with OpenAI's rate-limit headers. The demo then
//! talks to it exactly as it would to a real endpoint. A failed step is printed with its
//! whole cause and makes the demo exit with status 1.

mod cli;
mod show;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use aegeantic::agent::{Agent, AgentConfig, AgentEvent, AgentRunner, Tool, ToolError};
use aegeantic::llm::{llm_retry_on, OpenAiCompatible, OpenAiConfig, ResilientProvider};
use aegeantic::report::Report;
use aegeantic::resilience::{RateLimitConfig, RateLimiter, ResilienceMonitor, RetryConfig};
use aegeantic::testing::{FaultServer, Reply, StreamEnd};
use aegeantic::tool;
use cli::{Args, Command};
use serde_json::{json, Value};
use show::Paint;

/// A canned weather lookup, made a tool by `#[tool]`.
#[tool("Current weather for a city")]
async fn get_weather(city: String) -> Result<Value, ToolError> {
    if city.trim().is_empty() {
        return Err(ToolError::InvalidArguments("city must not be empty".into()));
    }
    Ok(json!({"city": city, "temperature_c": 21, "sky": "clear"}))
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

/// How the step ended.
#[derive(Debug, PartialEq)]
enum Outcome {
    Complete,
    Failed,
}

#[tokio::main]
async fn main() -> ExitCode {
    let env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    let args = match cli::parse(std::env::args().skip(1), env) {
        Ok(Command::Help) => {
            print!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Run(args)) => args,
        Err(problem) => {
            eprintln!("agent_demo: {problem}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    let paint = Paint(std::io::stdout().is_terminal());
    match run(args, &paint, &mut std::io::stdout()).await {
        Ok(Outcome::Complete) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("agent_demo: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one agent step, printing its events to `out`.
async fn run(args: Args, paint: &Paint, out: &mut dyn Write) -> Result<Outcome, Report> {
    // Kept alive for the whole run when used.
    let mut server = None;
    let mut config = match (args.base_url, args.model) {
        (Some(base_url), Some(model)) => OpenAiConfig::new(base_url, model),
        (Some(_), None) => unreachable!("the command line requires a model with a base URL"),
        (None, model) => {
            let fault = fault_server().await?;
            let base_url = fault.base_url();
            writeln!(
                out,
                "{}",
                paint.paint("2", &format!("fault server at {base_url}"))
            )?;
            server = Some(fault);
            OpenAiConfig::new(base_url, model.unwrap_or_else(|| "fault-model".into()))
        }
    };
    if let Some(key) = args.api_key {
        config = config.api_key(key);
    }
    config.connect_timeout = args.connect_timeout.unwrap_or(config.connect_timeout);
    config.response_timeout = args.response_timeout.unwrap_or(config.response_timeout);
    config.idle_timeout = args.idle_timeout.unwrap_or(config.idle_timeout);

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

    let mut outcome = Outcome::Failed;
    let mut events = runner.step_stream("What's the weather in Lisbon?");
    while let Some(event) = futures::StreamExt::next(&mut events).await {
        monitor.handle_event(&event);
        if let AgentEvent::StepComplete { .. } = event {
            outcome = Outcome::Complete;
        }
        show::event(out, paint, &event)?;
        out.flush()?;
    }
    drop(events);
    writeln!(
        out,
        "{}",
        paint.paint("1", &format!("resilience: {monitor}"))
    )?;
    if let Some(server) = server {
        let seen = format!("the fault server saw {} requests", server.requests().len());
        writeln!(out, "{}", paint.paint("2", &seen))?;
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn output(args: Args) -> (Result<Outcome, Report>, String) {
        let mut out = Vec::new();
        let outcome = run(args, &Paint(false), &mut out).await;
        (outcome, String::from_utf8(out).unwrap())
    }

    fn online(base_url: String) -> Args {
        Args {
            base_url: Some(base_url),
            model: Some("gpt-test".into()),
            ..Args::default()
        }
    }

    #[tokio::test]
    async fn offline_the_step_completes_through_the_faults() {
        let (outcome, out) = output(Args::default()).await;
        assert_eq!(outcome.unwrap(), Outcome::Complete, "{out}");
        assert!(out.contains("[step complete after 2 model calls]"), "{out}");
        assert!(out.contains("It is 21 °C and clear in Lisbon."), "{out}");
        assert!(out.contains("the fault server saw 4 requests"), "{out}");
    }

    #[tokio::test]
    async fn a_failed_step_says_why_and_is_a_failure() {
        let message = "Invalid value: 'robot'. Supported values are: 'system', 'assistant', \
                       'user', 'function', 'tool', and 'developer'.";
        let server = FaultServer::start([Reply::Status {
            status: 400,
            headers: vec![],
            body: json!({"error": {"message": message, "type": "invalid_request_error",
                "param": "messages[0].role", "code": "invalid_value"}})
            .to_string(),
        }])
        .await
        .unwrap();
        let (outcome, out) = output(online(server.base_url())).await;
        assert_eq!(outcome.unwrap(), Outcome::Failed, "{out}");
        let failed = out
            .lines()
            .find(|line| line.starts_with("[step failed: "))
            .unwrap_or_else(|| panic!("no failure line in {out}"));
        assert!(
            failed.starts_with("[step failed: model call failed: operation failed after 1 attempt"),
            "{failed}"
        );
        assert!(
            failed.ends_with(&format!(
                ": HTTP 400 invalid_request_error (invalid_value): {message}]"
            )),
            "{failed}"
        );
        assert_eq!(server.requests().len(), 1);
    }

    #[tokio::test]
    async fn a_bad_base_url_fails_before_any_request() {
        let (outcome, out) = output(online("localhost:8080/v1".into())).await;
        let error = outcome.unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"invalid base URL "localhost:8080/v1": the scheme must be http or https"#
        );
        assert_eq!(out, "");
    }
}
