//! The reference's "Tool Resilience" example: a tool that holds its own retry
//! configuration and retries its flaky fetch, its retries visible in the agent's step
//! stream. Offline: the model is the in-process fault server, scripted to call the tool.
//!
//! `cargo run --example tool_resilience --features demo`

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aegeantic::agent::{Agent, AgentConfig, AgentEvent, AgentRunner, ToolContext, ToolError};
use aegeantic::llm::{OpenAiCompatible, OpenAiConfig};
use aegeantic::report::{DisplayChain, Report};
use aegeantic::resilience::{resilient, RetryConfig, RetryOn};
use aegeantic::testing::{FaultServer, Reply};
use aegeantic::tools;
use futures::StreamExt;

/// A client of an external API, with its own retry policy. The agent's tools share it.
struct ApiTool {
    retry_config: RetryConfig,
    calls: AtomicU32,
}

#[tools]
impl ApiTool {
    /// Retries the fetch under `retry_config`, reporting each retry to the step stream.
    #[tool("Fetch data from external API")]
    async fn fetch_data(
        &self,
        /// The URL to fetch.
        url: String,
        ctx: ToolContext,
    ) -> Result<String, ToolError> {
        let fetch = || self.http_get(&url);
        resilient(
            fetch,
            Some(self.retry_config.clone()),
            None,
            "api_fetch",
            "tool",
        )
        .on_event(|event| ctx.report(event))
        .await
        .map_err(|error| ToolError::failed(DisplayChain(&error).to_string()))
    }
}

impl ApiTool {
    /// A simulated GET: the first two calls time out.
    async fn http_get(&self, url: &str) -> Result<String, io::Error> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if self.calls.fetch_add(1, Ordering::Relaxed) < 2 {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "read timed out"));
        }
        Ok(format!("{{\"url\": \"{url}\", \"temperature\": 21}}"))
    }
}

#[tokio::main]
async fn main() -> Result<(), Report> {
    let gap = Duration::from_millis(10);
    let model = FaultServer::start([
        Reply::tool_call(
            "call_1",
            "fetch_data",
            &["{\"url\": \"https://api.example.com/weather\"}"],
            gap,
        ),
        Reply::text(&["It is ", "21 °C."], gap),
    ])
    .await?;
    let api = Arc::new(ApiTool {
        retry_config: RetryConfig::builder()
            .max_attempts(3)
            .base_delay(Duration::from_millis(50))
            .retry_on(RetryOn::transient())
            .build()?,
        calls: AtomicU32::new(0),
    });
    let provider = OpenAiCompatible::new(OpenAiConfig::new(model.base_url(), "fault-model"))?;
    let agent = Agent::builder()
        .config(AgentConfig::default())
        .tools(api.tools())
        .llm_provider(provider)
        .build();
    let mut runner = AgentRunner::new(agent);
    let mut steps = runner.step_stream("What's the weather?");
    while let Some(event) = steps.next().await {
        match event {
            AgentEvent::ToolStart {
                name, arguments, ..
            } => println!("[tool {name}({arguments})]"),
            AgentEvent::Retry { event, .. } => println!(
                "  [{} attempt {} failed: {}; retrying in {:?}]",
                event.operation_name,
                event.attempt,
                event.error,
                event.next_delay()
            ),
            AgentEvent::ToolOutput { output, .. } => println!("  [tool result: {output}]"),
            AgentEvent::StepComplete { result, .. } => {
                println!("step complete: {}", result.response)
            }
            AgentEvent::Error { error, .. } => return Err(Report::from(error)),
            _ => {}
        }
    }
    Ok(())
}
