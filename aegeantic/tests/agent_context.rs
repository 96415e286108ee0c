//! The runner and its context: what a step writes (keys by iteration and call id,
//! `ContextWrite` events), prompts built from the store, and a failing store. Over
//! loopback HTTP against the fault server.
#![cfg(all(feature = "agent", feature = "openai", feature = "fault-server"))]

mod agent_support;

use std::sync::Arc;

use aegeantic::agent::{
    Agent, AgentConfig, AgentError, AgentEvent, AgentRunner, Context, ContextEntry, ContextError,
    ContextValue, InMemoryContext, PromptBuilder,
};
use aegeantic::report::DisplayChain;
use aegeantic::testing::{FaultServer, Reply};
use agent_support::{kinds, openai, tool_calls, Add, GAP};
use futures::StreamExt;
use serde_json::json;

#[tokio::test]
async fn a_step_writes_its_tool_results_and_response() {
    let server = FaultServer::start([
        tool_calls(&[
            ("c1", "add", "{\"a\": 2, \"b\": 3}"),
            ("c2", "add", "{\"a\""),
        ]),
        Reply::text(&["Five."], GAP),
        Reply::text(&["Again."], GAP),
    ])
    .await
    .unwrap();
    let store = Arc::new(InMemoryContext::new());
    let agent = Agent::builder()
        .context(Arc::clone(&store))
        .tool(Add)
        .llm_provider(openai(&server))
        .build();
    let mut runner = AgentRunner::new(agent);
    let events: Vec<AgentEvent> = runner.step_stream("2 + 3").collect().await;
    assert_eq!(
        kinds(&events),
        [
            "complete(2)",
            "start:c1",
            "output:c1:5:false",
            "end:c1",
            "write:tool:result:1:c1",
            "start:c2",
            "output:c2:\"error: invalid arguments: arguments are not valid JSON (EOF while parsing an object at line 1 column 4)\":true",
            "end:c2",
            "write:tool:result:1:c2",
            "complete(0)",
            "write:response",
            "done:Five.",
        ]
    );
    let writes: Vec<(&str, u64, u64, &str)> = events
        .iter()
        .filter_map(|event| match event {
            AgentEvent::ContextWrite {
                key,
                version,
                iteration,
                preview,
                ..
            } => Some((&**key, *version, *iteration, &**preview)),
            _ => None,
        })
        .collect();
    assert_eq!(writes[2], ("response", 1, 1, "Five."));
    assert_eq!(
        store.get("tool:result:1:c1").unwrap(),
        Some(ContextValue::Json(json!({
            "name": "add", "arguments": {"a": 2, "b": 3}, "output": 5, "is_error": false
        })))
    );
    let failed = store.get("tool:result:1:c2").unwrap().unwrap();
    assert_eq!(failed.as_json().unwrap()["arguments"], json!("{\"a\""));
    assert_eq!(failed.as_json().unwrap()["is_error"], json!(true));

    let result = runner.step("again").await.unwrap();
    assert_eq!(result.context_iteration, 2);
    assert_eq!(store.iteration().unwrap(), 2);
    let answers: Vec<Option<ContextValue>> = store
        .history("response", 10)
        .unwrap()
        .into_iter()
        .map(|entry: ContextEntry| entry.value)
        .collect();
    assert_eq!(answers, [Some("Again.".into()), Some("Five.".into())]);
    assert_eq!(
        store.list_keys("tool:result:").unwrap(),
        ["tool:result:1:c1", "tool:result:1:c2"]
    );
}

#[tokio::test]
async fn the_prompt_is_built_from_the_context() {
    let server = FaultServer::start([
        Reply::text(&["Plan: ", "1. boil water"], GAP),
        Reply::text(&["Done."], GAP),
    ])
    .await
    .unwrap();
    let store = Arc::new(InMemoryContext::new());
    store.set("goal", "tea".into()).unwrap();
    let config = AgentConfig {
        prompt: Some(PromptBuilder::new(|context, input| {
            let goal = context.get("goal")?.map(|goal| goal.to_text());
            let previous = context.get("response")?.map(|answer| answer.to_text());
            Ok(format!(
                "goal={} previous={} input={input}",
                goal.unwrap_or_default(),
                previous.unwrap_or_else(|| "none".into())
            ))
        })),
        ..AgentConfig::default()
    };
    let agent = Agent::builder()
        .config(config)
        .context(Arc::clone(&store))
        .llm_provider(openai(&server))
        .build();
    let mut runner = AgentRunner::new(agent);
    runner.step("plan").await.unwrap();
    // The next step of the workflow reads what the first left in the store.
    runner.step("execute").await.unwrap();
    let requests = server.requests();
    assert_eq!(
        requests[0].body["messages"][0]["content"],
        json!("goal=tea previous=none input=plan")
    );
    assert_eq!(
        requests[1].body["messages"][2]["content"],
        json!("goal=tea previous=Plan: 1. boil water input=execute")
    );
}

#[tokio::test]
async fn a_failing_prompt_builder_fails_the_step() {
    let server = FaultServer::start([]).await.unwrap();
    let config = AgentConfig {
        prompt: Some(PromptBuilder::new(|context, _| {
            let plan = context.get("plan")?;
            plan.map(|plan| plan.to_text())
                .ok_or_else(|| "no plan in the context".into())
        })),
        ..AgentConfig::default()
    };
    let agent = Agent::builder()
        .config(config)
        .llm_provider(openai(&server))
        .build();
    let error = AgentRunner::new(agent).step("go").await.unwrap_err();
    assert!(matches!(error, AgentError::Prompt(_)));
    assert_eq!(
        DisplayChain(&error).to_string(),
        "the prompt builder failed: no plan in the context"
    );
    assert!(
        server.requests().is_empty(),
        "no model call without a prompt"
    );
}

/// A store whose writes fail.
struct ReadOnly(InMemoryContext);

impl Context for ReadOnly {
    fn set(&self, key: &str, _: ContextValue) -> Result<u64, ContextError> {
        Err(ContextError::Storage(format!("{key}: read-only").into()))
    }
    fn update(&self, key: &str, value: ContextValue) -> Result<u64, ContextError> {
        self.set(key, value)
    }
    fn get(&self, key: &str) -> Result<Option<ContextValue>, ContextError> {
        self.0.get(key)
    }
    fn get_version(&self, key: &str, version: u64) -> Result<Option<ContextEntry>, ContextError> {
        self.0.get_version(key, version)
    }
    fn delete(&self, key: &str) -> Result<Option<u64>, ContextError> {
        self.0.delete(key)
    }
    fn list_keys(&self, prefix: &str) -> Result<Vec<String>, ContextError> {
        self.0.list_keys(prefix)
    }
    fn history(&self, key: &str, max: usize) -> Result<Vec<ContextEntry>, ContextError> {
        self.0.history(key, max)
    }
    fn clear(&self) -> Result<(), ContextError> {
        self.0.clear()
    }
    fn iteration(&self) -> Result<u64, ContextError> {
        self.0.iteration()
    }
    fn next_iteration(&self) -> Result<u64, ContextError> {
        self.0.next_iteration()
    }
}

#[tokio::test]
async fn a_store_that_cannot_write_fails_the_step_and_keeps_the_history() {
    let server = FaultServer::start([
        tool_calls(&[("c1", "add", "{\"a\": 2, \"b\": 3}")]),
        Reply::text(&["Five."], GAP),
    ])
    .await
    .unwrap();
    let agent = Agent::builder()
        .context(ReadOnly(InMemoryContext::new()))
        .tool(Add)
        .llm_provider(openai(&server))
        .build();
    let mut runner = AgentRunner::new(agent);
    let events: Vec<AgentEvent> = runner.step_stream("2 + 3").collect().await;
    let kinds = kinds(&events);
    assert_eq!(
        kinds[..4],
        ["complete(1)", "start:c1", "output:c1:5:false", "end:c1"]
    );
    let Some(AgentEvent::Error { error, .. }) = events.last() else {
        panic!("{kinds:?}");
    };
    assert_eq!(
        DisplayChain(&**error).to_string(),
        "the agent's context failed: the context store failed: tool:result:1:c1: read-only"
    );
    assert!(runner.history().is_empty());
}
