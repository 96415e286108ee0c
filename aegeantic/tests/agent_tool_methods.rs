//! Tools made of methods (`#[tools]`) in an agent against the fault server, over loopback
//! HTTP: the tool's own retries appear in the step stream, and its tools share the
//! instance.
#![cfg(all(feature = "macros", feature = "openai", feature = "fault-server"))]

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aegeantic::agent::{Agent, AgentConfig, AgentEvent, AgentRunner, ToolContext, ToolError};
use aegeantic::llm::{OpenAiCompatible, OpenAiConfig};
use aegeantic::report::DisplayChain;
use aegeantic::resilience::{resilient, RetryConfig, RetryOn};
use aegeantic::testing::{FaultServer, Reply};
use aegeantic::tools;
use futures::StreamExt;
use serde_json::json;

struct Api {
    retry: RetryConfig,
    failures: u32,
    calls: AtomicU32,
}

#[tools]
impl Api {
    #[tool("Fetch data from external API")]
    async fn fetch_data(&self, url: String, ctx: ToolContext) -> Result<String, ToolError> {
        let fetch = || async {
            if self.calls.fetch_add(1, Ordering::SeqCst) < self.failures {
                Err(io::Error::from(io::ErrorKind::TimedOut))
            } else {
                Ok(format!("data of {url}"))
            }
        };
        resilient(fetch, Some(self.retry.clone()), None, "api_fetch", "tool")
            .on_event(|event| ctx.report(event))
            .await
            .map_err(|error| ToolError::failed(DisplayChain(&error).to_string()))
    }

    #[tool("How many fetch attempts were made")]
    fn attempts(&self) -> Result<u32, ToolError> {
        Ok(self.calls.load(Ordering::SeqCst))
    }
}

#[tokio::test]
async fn a_method_tools_own_retries_are_in_the_step_stream() {
    let gap = Duration::from_millis(2);
    let server = FaultServer::start([
        Reply::tool_call("c1", "fetch_data", &["{\"url\": \"u\"}"], gap),
        Reply::tool_call("c2", "attempts", &["{}"], gap),
        Reply::text(&["done"], gap),
    ])
    .await
    .unwrap();
    let api = Arc::new(Api {
        retry: RetryConfig::builder()
            .max_attempts(3)
            .base_delay(Duration::from_millis(5))
            .jitter(false)
            .retry_on(RetryOn::transient())
            .build()
            .unwrap(),
        failures: 2,
        calls: AtomicU32::new(0),
    });
    let provider =
        OpenAiCompatible::new(OpenAiConfig::new(server.base_url(), "fault-model")).unwrap();
    let agent = Agent::new(AgentConfig::default(), provider, Arc::clone(&api).tools());
    let mut runner = AgentRunner::new(agent);
    let events: Vec<AgentEvent> = runner.step_stream("fetch u").collect().await;
    let kinds: Vec<String> = events
        .iter()
        .filter_map(|event| match event {
            AgentEvent::ToolStart { name, .. } => Some(format!("start:{name}")),
            AgentEvent::Retry { event, .. } => {
                Some(format!("retry:{}:{}", event.operation_name, event.attempt))
            }
            AgentEvent::ToolOutput { output, .. } => Some(format!("output:{output}")),
            AgentEvent::StepComplete { result, .. } => Some(format!("done:{}", result.response)),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "start:fetch_data",
            "retry:api_fetch:1",
            "retry:api_fetch:2",
            "output:\"data of u\"",
            "start:attempts",
            "output:3",
            "done:done",
        ]
    );
    assert_eq!(
        api.calls.load(Ordering::SeqCst),
        3,
        "the tools share one instance"
    );
    let sent = &server.requests()[2].body["messages"];
    assert_eq!(sent[2]["content"], json!("data of u"));
}
