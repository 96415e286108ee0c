//! The builder, `step()` and its result, events as JSON, step ids: an agent against the
//! fault server over loopback HTTP.
#![cfg(all(feature = "agent", feature = "openai", feature = "fault-server"))]

mod agent_support;

use std::collections::HashSet;
use std::sync::Arc;

use aegeantic::agent::{Agent, AgentConfig, AgentError, AgentEvent, AgentRunner, InMemoryContext};
use aegeantic::agent::{Context, Tool};
use aegeantic::llm::{LlmChunk, ToolCall, Usage};
use aegeantic::testing::{FaultServer, Reply};
use agent_support::{child_ok, openai, run_child, tool_calls, Add, GAP};
use futures::StreamExt;
use serde_json::{json, Value};

fn config() -> AgentConfig {
    AgentConfig {
        system_prompt: Some("You add numbers.".into()),
        ..AgentConfig::default()
    }
}

#[tokio::test]
async fn the_builder_and_step_give_the_steps_result() {
    let server = FaultServer::validating([
        tool_calls(&[("c1", "add", "{\"a\": 2, \"b\": 3}")]).usage(7, 3),
        tool_calls(&[("c2", "add", "{\"a\": 5, \"b\": \"x\"}")]),
        Reply::text(&["The sum ", "is 5."], GAP).usage(20, 4),
    ])
    .await
    .unwrap();
    let store = Arc::new(InMemoryContext::new());
    let agent = Agent::builder()
        .config(config())
        .context(Arc::clone(&store))
        .tools(vec![Arc::new(Add) as Arc<dyn Tool>])
        .llm_provider(openai(&server))
        .build();
    let mut runner = AgentRunner::new(agent);
    let result = runner.step("What is 2 + 3?").await.unwrap();
    assert_eq!(result.response, "The sum is 5.");
    assert_eq!(result.iterations, 3);
    assert_eq!(result.context_iteration, 1);
    // 7 + 10 + 20 and 3 + 5 + 4.
    assert_eq!(
        result.usage,
        Some(Usage {
            prompt_tokens: 37,
            completion_tokens: 12
        })
    );
    let calls: Vec<(&ToolCall, &Value, bool)> = result
        .tool_calls
        .iter()
        .map(|done| (&done.call, &done.output, done.is_error))
        .collect();
    assert_eq!(calls.len(), 2);
    assert_eq!(
        (&*calls[0].0.id, &*calls[0].0.name, calls[0].1, calls[0].2),
        ("c1", "add", &json!(5), false)
    );
    assert_eq!(
        calls[1].1,
        &json!("error: invalid arguments: b must be an integer")
    );
    assert!(calls[1].2);
    assert_eq!(runner.history().len(), 1 + 1 + 4 + 1);
    assert_eq!(store.iteration().unwrap(), 1);
}

#[tokio::test]
async fn a_failed_step_is_its_typed_error() {
    let server = FaultServer::start([Reply::status(401, "invalid_api_key")])
        .await
        .unwrap();
    let mut runner = AgentRunner::new(Agent::new(config(), openai(&server), Vec::new()));
    let error = runner.step("hi").await.unwrap_err();
    assert!(matches!(error, AgentError::Llm(_)), "{error}");
    assert_eq!(runner.history().len(), 1);
}

#[tokio::test]
async fn events_serialise_tagged_with_a_timestamp() {
    let server = FaultServer::start([
        Reply::rate_limited("0"),
        tool_calls(&[("c1", "add", "{\"a\": 1, \"b\": 1}")]),
        Reply::text(&["Two."], GAP),
        Reply::status(401, "invalid_api_key"),
    ])
    .await
    .unwrap();
    let retry = aegeantic::resilience::RetryConfig::builder()
        .base_delay(std::time::Duration::from_millis(1))
        .retry_on(aegeantic::llm::llm_retry_on())
        .build()
        .unwrap();
    let provider = aegeantic::llm::ResilientProvider::new(openai(&server)).retry(retry);
    let mut runner = AgentRunner::new(Agent::new(config(), provider, vec![Arc::new(Add)]));
    let mut events: Vec<AgentEvent> = runner.step_stream("1 + 1?").collect().await;
    events.extend(runner.step_stream("again").collect::<Vec<_>>().await);
    let json: Vec<Value> = events
        .iter()
        .map(|event| serde_json::to_value(event).unwrap())
        .collect();
    let types: HashSet<&str> = json.iter().map(|e| e["type"].as_str().unwrap()).collect();
    for expected in [
        "llm_chunk",
        "llm_complete",
        "tool_start",
        "tool_output",
        "tool_end",
        "retry",
        "context_write",
        "step_complete",
        "error",
    ] {
        assert!(
            types.contains(expected),
            "{expected} missing from {types:?}"
        );
    }
    for (event, value) in events.iter().zip(&json) {
        assert_eq!(value["step_id"], json!(event.step_id()));
        assert_eq!(value["timestamp"].as_f64(), Some(event.timestamp()));
        assert!(event.timestamp() > 1.7e9, "{value}");
    }
    let chunk = json
        .iter()
        .find(|e| e["type"] == "llm_chunk" && e["chunk"].get("text").is_some());
    assert_eq!(chunk.unwrap()["chunk"], json!({"text": "Two."}));
    // The model's pieces read back as they were.
    for event in &events {
        if let AgentEvent::LlmChunk { chunk, .. } = event {
            let value = serde_json::to_value(chunk).unwrap();
            assert_eq!(&serde_json::from_value::<LlmChunk>(value).unwrap(), chunk);
        }
    }
    let call = json.iter().find(|e| e["chunk"].get("tool_call").is_some());
    assert_eq!(call.unwrap()["chunk"]["tool_call"]["name"], json!("add"));
    let end = json.iter().find(|e| e["type"] == "tool_end").unwrap();
    assert!(end["duration"].is_f64(), "{end}");
    let error = json.iter().find(|e| e["type"] == "error").unwrap();
    let message = error["error"].as_str().unwrap();
    assert!(
        message.starts_with("model call failed: "),
        "the whole chain: {message}"
    );
    assert!(message.contains("401"), "{message}");
    let done = json.iter().find(|e| e["type"] == "step_complete").unwrap();
    assert_eq!(done["result"]["response"], json!("Two."));
    assert_eq!(done["result"]["tool_calls"][0]["output"], json!(2));
    let text: String = events.iter().filter_map(AgentEvent::text).collect();
    assert_eq!(text, "Two.");
}

/// Prints the id of a step it runs; run by `step_ids_are_unique_across_processes`.
#[tokio::test]
#[ignore = "a child process of step_ids_are_unique_across_processes"]
async fn child_prints_a_step_id() {
    let server = FaultServer::start([Reply::text(&["hi"], GAP)])
        .await
        .unwrap();
    let mut runner = AgentRunner::new(Agent::new(config(), openai(&server), Vec::new()));
    let events: Vec<AgentEvent> = runner.step_stream("hi").collect().await;
    println!("STEP_ID={}", events[0].step_id());
}

#[tokio::test]
async fn step_ids_are_unique_across_runners_and_processes() {
    let mut ids = HashSet::new();
    for _ in 0..20 {
        let server = FaultServer::start([Reply::text(&["a"], GAP), Reply::text(&["b"], GAP)])
            .await
            .unwrap();
        let mut runner = AgentRunner::new(Agent::new(config(), openai(&server), Vec::new()));
        for input in ["one", "two"] {
            let events: Vec<AgentEvent> = runner.step_stream(input).collect().await;
            assert!(ids.insert(events[0].step_id().to_owned()));
        }
    }
    for _ in 0..2 {
        let out = child_ok(run_child("child_prints_a_step_id", &[]));
        let id = out
            .split_once("STEP_ID=")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no step id in {out}"));
        assert!(ids.insert(id.to_owned()), "{id} seen before");
    }
    assert_eq!(ids.len(), 42);
}
