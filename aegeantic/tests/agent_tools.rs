//! The agent runner with a scripted in-memory provider, on a paused clock: tool policies
//! (timeout, retry) and events reported by tools.
#![cfg(feature = "agent")]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegeantic::agent::{
    tool_retry_on, Agent, AgentConfig, AgentEvent, AgentRunner, Tool, ToolContext, ToolError,
    ToolFuture, ToolPolicy, WithPolicy,
};
use aegeantic::llm::{
    FinishReason, LlmChunk, LlmError, LlmProvider, LlmRequest, LlmStream, ToolCallDelta,
};
use aegeantic::resilience::{retry_stream, Resilient, RetryConfig};
use futures::{stream, StreamExt};
use serde_json::{json, Value};
use tokio::time::Instant;

/// Plays one scripted answer per call.
struct Scripted(Mutex<VecDeque<Vec<LlmChunk>>>);

impl Scripted {
    fn new(answers: Vec<Vec<LlmChunk>>) -> Self {
        Scripted(Mutex::new(answers.into()))
    }
}

impl LlmProvider for Scripted {
    fn stream(&self, _request: &LlmRequest) -> LlmStream {
        let answer = self.0.lock().unwrap().pop_front().unwrap_or_default();
        Box::pin(stream::iter(answer.into_iter().map(Ok::<_, LlmError>)))
    }
}

fn call(name: &str) -> Vec<LlmChunk> {
    vec![
        LlmChunk::ToolCall(ToolCallDelta {
            index: 0,
            id: Some("c1".into()),
            name: Some(name.into()),
            arguments: "{}".into(),
        }),
        LlmChunk::Finish(FinishReason::ToolCalls),
    ]
}

fn answer() -> Vec<LlmChunk> {
    vec![
        LlmChunk::Text("ok".into()),
        LlmChunk::Finish(FinishReason::Stop),
    ]
}

/// Sleeps `sleeps[n]` on its n-th call, then fails transiently or succeeds.
struct Flaky {
    calls: Mutex<u32>,
    sleeps: Vec<Duration>,
}

impl Tool for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }
    fn description(&self) -> &str {
        "Slow, then fast"
    }
    fn parameters(&self) -> Value {
        json!({"type": "object"})
    }
    fn call(&self, _args: Value, _ctx: ToolContext) -> ToolFuture<'_> {
        let n = {
            let mut calls = self.calls.lock().unwrap();
            *calls += 1;
            *calls as usize - 1
        };
        let sleep = self.sleeps[n.min(self.sleeps.len() - 1)];
        Box::pin(async move {
            tokio::time::sleep(sleep).await;
            Ok(json!(format!("done on call {}", n + 1)))
        })
    }
}

/// Uses `retry_stream` itself and reports its events through the context.
struct SelfRetrying;

impl Tool for SelfRetrying {
    fn name(&self) -> &str {
        "fetch"
    }
    fn description(&self) -> &str {
        "Fetches with its own retries"
    }
    fn parameters(&self) -> Value {
        json!({"type": "object"})
    }
    fn call(&self, _args: Value, ctx: ToolContext) -> ToolFuture<'_> {
        Box::pin(async move {
            let mut attempts = 0;
            let fetch = move || {
                attempts += 1;
                let result = if attempts == 1 {
                    Err(ToolError::transient("upstream reset"))
                } else {
                    Ok("payload")
                };
                stream::iter([result])
            };
            let config = RetryConfig::builder()
                .base_delay(Duration::from_secs(1))
                .jitter(false)
                .retry_on(tool_retry_on())
                .build()
                .unwrap();
            let mut items = retry_stream(fetch, config, "fetch-api", "tool");
            let mut out = None;
            while let Some(item) = items.next().await {
                ctx.report(&item);
                if let Resilient::Item(value) =
                    item.map_err(|e| ToolError::failed(e.to_string()))?
                {
                    out = Some(value);
                }
            }
            Ok(json!(out))
        })
    }
}

fn run(provider: Scripted, tool: Arc<dyn Tool>) -> AgentRunner {
    AgentRunner::new(Agent::new(AgentConfig::default(), provider, vec![tool]))
}

#[tokio::test(start_paused = true)]
async fn a_tool_timeout_is_retried_under_the_tools_policy() {
    let flaky = Flaky {
        calls: Mutex::new(0),
        sleeps: vec![Duration::from_secs(60), Duration::from_secs(1)],
    };
    let policy = ToolPolicy::default().timeout(Duration::from_secs(5)).retry(
        RetryConfig::builder()
            .base_delay(Duration::from_secs(2))
            .jitter(false)
            .retry_on(tool_retry_on())
            .build()
            .unwrap(),
    );
    let mut runner = run(
        Scripted::new(vec![call("flaky"), answer()]),
        Arc::new(WithPolicy::new(flaky, policy)),
    );
    let start = Instant::now();
    let events: Vec<AgentEvent> = runner.step_stream("go").collect().await;
    // 5 s timeout, 2 s back-off, 1 s second call.
    assert_eq!(start.elapsed(), Duration::from_secs(8));
    let retry = events.iter().find_map(|e| match e {
        AgentEvent::Retry { event, .. } => Some(event.clone()),
        _ => None,
    });
    let retry = retry.expect("a retry event");
    assert_eq!(retry.operation_name.as_ref(), "flaky");
    assert!(retry.error.contains("timed out"), "{}", retry.error);
    assert_eq!(retry.step_id.as_deref(), Some(events[0].step_id()));
    assert!(events.iter().any(|e| matches!(e,
        AgentEvent::ToolOutput { output, is_error: false, .. } if output == &json!("done on call 2"))));
    assert!(matches!(
        events.last(),
        Some(AgentEvent::StepComplete { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_tool_stopped_by_its_deadline_tells_the_model_why() {
    let flaky = Flaky {
        calls: Mutex::new(0),
        sleeps: vec![Duration::from_secs(60)],
    };
    // The timeout after 1 s is retryable, but the back-off of 10 s would end past the 5 s
    // deadline.
    let policy = ToolPolicy::default().timeout(Duration::from_secs(1)).retry(
        RetryConfig::builder()
            .base_delay(Duration::from_secs(10))
            .jitter(false)
            .retry_on(tool_retry_on())
            .max_elapsed(Duration::from_secs(5))
            .build()
            .unwrap(),
    );
    let mut runner = run(
        Scripted::new(vec![call("flaky"), answer()]),
        Arc::new(WithPolicy::new(flaky, policy)),
    );
    let events: Vec<AgentEvent> = runner.step_stream("go").collect().await;
    let output = events
        .iter()
        .find_map(|e| match e {
            AgentEvent::ToolOutput {
                output,
                is_error: true,
                ..
            } => Some(output.to_string()),
            _ => None,
        })
        .expect("the tool failed");
    assert!(output.contains("deadline exceeded"), "{output}");
    assert!(
        output.contains("timed out after 1s"),
        "the cause is shown: {output}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_timeout_without_retry_is_an_error_the_model_sees() {
    let flaky = Flaky {
        calls: Mutex::new(0),
        sleeps: vec![Duration::from_secs(60)],
    };
    let policy = ToolPolicy::default().timeout(Duration::from_secs(1));
    let mut runner = run(
        Scripted::new(vec![call("flaky"), answer()]),
        Arc::new(WithPolicy::new(flaky, policy)),
    );
    let events: Vec<AgentEvent> = runner.step_stream("go").collect().await;
    assert!(events.iter().any(|e| matches!(e,
        AgentEvent::ToolOutput { output, is_error: true, .. } if output.to_string().contains("timed out"))));
    assert!(events
        .iter()
        .any(|e| matches!(e, AgentEvent::ToolEnd { success: false, .. })));
    assert!(matches!(
        events.last(),
        Some(AgentEvent::StepComplete { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn events_a_tool_reports_appear_while_it_runs() {
    let mut runner = run(
        Scripted::new(vec![call("fetch"), answer()]),
        Arc::new(SelfRetrying),
    );
    let events: Vec<AgentEvent> = runner.step_stream("go").collect().await;
    let order: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::ToolStart { .. } => Some("start"),
            AgentEvent::Retry { event, .. } if &*event.operation_name == "fetch-api" => {
                Some("retry")
            }
            AgentEvent::ToolOutput { .. } => Some("output"),
            _ => None,
        })
        .collect();
    assert_eq!(order, ["start", "retry", "output"]);
    assert!(events.iter().any(|e| matches!(e,
        AgentEvent::ToolOutput { output, .. } if output == &json!("payload"))));
}

#[tokio::test(start_paused = true)]
async fn history_carries_over_between_steps() {
    let mut runner = AgentRunner::new(Agent::new(
        AgentConfig {
            system_prompt: Some("sys".into()),
            ..AgentConfig::default()
        },
        Scripted::new(vec![answer(), answer()]),
        vec![],
    ));
    let first: Vec<AgentEvent> = runner.step_stream("one").collect().await;
    let second: Vec<AgentEvent> = runner.step_stream("two").collect().await;
    assert!(first.iter().all(|e| e.step_id() == first[0].step_id()));
    assert!(second.iter().all(|e| e.step_id() == second[0].step_id()));
    assert_ne!(first[0].step_id(), second[0].step_id());
    assert_eq!(runner.history().len(), 5);
}
