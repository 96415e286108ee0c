//! The agent runner against the fault server, over real HTTP on loopback.
#![cfg(all(feature = "agent", feature = "openai", feature = "fault-server"))]

mod agent_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegeantic::agent::{Agent, AgentConfig, AgentError, AgentEvent, AgentRunner, Tool};
use aegeantic::llm::{
    llm_retry_on, LlmProvider, LlmRequest, LlmStream, Message, OpenAiCompatible, OpenAiConfig,
    ResilientProvider,
};
use aegeantic::resilience::{ResilienceMonitor, RetryConfig};
use aegeantic::testing::{FaultServer, Reply, StreamEnd};
use agent_support::Add;
use futures::StreamExt;
use serde_json::json;

const GAP: Duration = Duration::from_millis(5);

fn openai(server: &FaultServer) -> OpenAiCompatible {
    OpenAiCompatible::new(OpenAiConfig::new(server.base_url(), "fault-model")).unwrap()
}

fn config(max_iterations: u32) -> AgentConfig {
    AgentConfig {
        max_iterations,
        system_prompt: Some("You add numbers.".into()),
        ..AgentConfig::default()
    }
}

fn runner(server: &FaultServer, max_iterations: u32) -> AgentRunner {
    let provider = openai(server);
    let retry = RetryConfig::builder()
        .base_delay(Duration::from_millis(10))
        .jitter(false)
        .retry_on(llm_retry_on())
        .build()
        .unwrap();
    let tools: Vec<Arc<dyn Tool>> = vec![Arc::new(Add)];
    AgentRunner::new(Agent::new(
        config(max_iterations),
        ResilientProvider::new(provider).retry(retry),
        tools,
    ))
}

/// A provider whose server can be replaced between steps, so that a step's requests reach
/// a server scripted for that step alone.
#[derive(Clone)]
struct Switch(Arc<Mutex<Arc<dyn LlmProvider>>>);

impl Switch {
    fn to(&self, server: &FaultServer) {
        *self.0.lock().unwrap() = Arc::new(openai(server));
    }
}

impl LlmProvider for Switch {
    fn stream(&self, request: &LlmRequest) -> LlmStream {
        let upstream = Arc::clone(&self.0.lock().unwrap());
        upstream.stream(request)
    }
}

/// A runner talking to `server`, and the switch that points it at another.
fn switched(server: &FaultServer) -> (Switch, AgentRunner) {
    let switch = Switch(Arc::new(Mutex::new(Arc::new(openai(server)))));
    let tools: Vec<Arc<dyn Tool>> = vec![Arc::new(Add)];
    let runner = AgentRunner::new(Agent::new(config(5), switch.clone(), tools));
    (switch, runner)
}

fn kind(event: &AgentEvent) -> String {
    match event {
        AgentEvent::LlmChunk { .. } => "chunk".into(),
        AgentEvent::LlmComplete { tool_calls, .. } => format!("complete({})", tool_calls.len()),
        AgentEvent::ToolStart { name, .. } => format!("start:{name}"),
        AgentEvent::ToolOutput {
            output, is_error, ..
        } => format!("output:{output}:{is_error}"),
        AgentEvent::ToolEnd { success, .. } => format!("end:{success}"),
        AgentEvent::Retry { event, .. } => format!("retry:{}", event.operation_type),
        AgentEvent::RateLimit { .. } => "rate".into(),
        AgentEvent::Error { error, .. } => format!("error:{error}"),
        AgentEvent::ContextWrite { key, .. } => format!("write:{key}"),
        AgentEvent::StepComplete { result, .. } => {
            format!("done:{}:{}", result.iterations, result.response)
        }
        other => format!("{other:?}"),
    }
}

/// The event kinds without the chunks, which depend on how the answer was split.
async fn step(runner: &mut AgentRunner, input: &str) -> (Vec<AgentEvent>, Vec<String>) {
    let events: Vec<AgentEvent> = runner.step_stream(input).collect().await;
    let kinds = events.iter().map(kind).filter(|k| k != "chunk").collect();
    (events, kinds)
}

#[tokio::test]
async fn a_tool_call_round_trip_through_429s_and_a_cut_stream() {
    let server = FaultServer::start([
        Reply::rate_limited("0"),
        Reply::tool_call("call_1", "add", &["{\"a\": 2,", " \"b\": 3}"], GAP)
            .ending(StreamEnd::Cut),
        Reply::tool_call("call_1", "add", &["{\"a\": 2,", " \"b\": 3}"], GAP),
        Reply::status(503, "service_unavailable"),
        Reply::text(&["The sum ", "is 5."], GAP),
    ])
    .await
    .unwrap();
    let mut runner = runner(&server, 5);
    let (events, kinds) = step(&mut runner, "What is 2 + 3?").await;
    assert_eq!(
        kinds,
        [
            "retry:llm",
            "retry:llm",
            "complete(1)",
            "start:add",
            "output:5:false",
            "end:true",
            "write:tool:result:1:call_1",
            "retry:llm",
            "complete(0)",
            "write:response",
            "done:2:The sum is 5.",
        ]
    );
    let id = events[0].step_id();
    assert!(id.starts_with("step_") && id.len() == 37, "{id}");
    assert!(events.iter().all(|e| e.step_id() == id));
    let mut monitor = ResilienceMonitor::new();
    events.iter().for_each(|e| monitor.handle_event(e));
    assert_eq!(monitor.retry_count(), 3);

    // The answer to the tool call went back to the model with the call it answers.
    let requests = server.requests();
    assert_eq!(requests.len(), 5);
    let messages = &requests[4].body["messages"];
    assert_eq!(
        messages[0],
        json!({"role": "system", "content": "You add numbers."})
    );
    assert_eq!(messages[2]["tool_calls"][0]["id"], json!("call_1"));
    assert_eq!(
        messages[2]["tool_calls"][0]["function"]["arguments"],
        json!("{\"a\": 2, \"b\": 3}")
    );
    assert_eq!(
        messages[3],
        json!({"role": "tool", "content": "5", "tool_call_id": "call_1"})
    );
    assert_eq!(
        requests[0].body["tools"][0]["function"]["name"],
        json!("add")
    );
    assert_eq!(runner.history().len(), 5);
}

#[tokio::test]
async fn bad_arguments_become_a_tool_error_the_model_sees() {
    let server = FaultServer::start([
        Reply::tool_call("c1", "add", &["{\"a\": 2,"], GAP),
        Reply::tool_call("c2", "add", &["{\"a\": \"x\", \"b\": 1}"], GAP),
        Reply::tool_call("c3", "subtract", &["{}"], GAP),
        Reply::text(&["Sorry."], GAP),
    ])
    .await
    .unwrap();
    let (events, kinds) = step(&mut runner(&server, 5), "2+?").await;
    assert_eq!(kinds.last().unwrap(), "done:4:Sorry.");
    let errors: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::ToolOutput {
                output,
                is_error: true,
                ..
            } => Some(output.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), 3);
    assert!(errors[0].contains("not valid JSON"), "{}", errors[0]);
    assert!(errors[1].contains("a must be an integer"), "{}", errors[1]);
    assert!(errors[2].contains("unknown tool"), "{}", errors[2]);
    let sent = &server.requests()[3].body["messages"];
    assert!(sent[3]["content"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));
}

#[tokio::test]
async fn max_iterations_ends_the_step_with_a_clear_error() {
    let call = || Reply::tool_call("c", "add", &["{\"a\":1,\"b\":1}"], GAP);
    let server = FaultServer::start([call(), call(), call()]).await.unwrap();
    let mut runner = runner(&server, 2);
    let (events, kinds) = step(&mut runner, "loop").await;
    assert_eq!(runner.history(), [Message::system("You add numbers.")]);
    assert_eq!(server.requests().len(), 2);
    assert!(
        kinds
            .last()
            .unwrap()
            .contains("no final answer after 2 model calls"),
        "{kinds:?}"
    );
    assert!(matches!(
        events.last(),
        Some(AgentEvent::Error { error, .. }) if matches!(**error, AgentError::MaxIterations { max_iterations: 2 })
    ));
}

#[tokio::test]
async fn a_permanent_model_error_ends_the_step() {
    let server = FaultServer::start([Reply::status(401, "invalid_api_key")])
        .await
        .unwrap();
    let (_, kinds) = step(&mut runner(&server, 2), "hi").await;
    assert_eq!(kinds.len(), 1);
    assert!(kinds[0].starts_with("error:model call failed"), "{kinds:?}");
}

/// Model -> a call to `add`; the tool runs; model -> the answer.
fn tool_step() -> [Reply; 2] {
    [
        Reply::tool_call(
            "call_1",
            "add",
            &["{\"a\": 2,", " \"b\": 3}"],
            Duration::ZERO,
        ),
        Reply::text(&["The sum ", "is 5."], Duration::ZERO),
    ]
}

/// The history after a step answered `answer` to `input`, on top of `before`.
fn answered(before: &[Message], input: &str, answer: &str) -> Vec<Message> {
    let mut history = before.to_vec();
    history.extend([Message::user(input), Message::assistant(answer, Vec::new())]);
    history
}

#[tokio::test]
async fn a_step_dropped_at_any_event_leaves_the_history_as_it_was() {
    let server = FaultServer::validating(tool_step()).await.unwrap();
    let (_, mut runner) = switched(&server);
    let (events, kinds) = step(&mut runner, "What is 2 + 3?").await;
    assert_eq!(
        kinds,
        [
            "complete(1)",
            "start:add",
            "output:5:false",
            "end:true",
            "write:tool:result:1:call_1",
            "complete(0)",
            "write:response",
            "done:2:The sum is 5.",
        ]
    );
    let before = [Message::system("You add numbers.")];
    let completed = runner.history().to_vec();
    assert_eq!(completed.len(), before.len() + 4);

    // Every way of stopping, from before the first poll to right after `StepComplete`.
    let mut wrong = Vec::new();
    for k in 0..=events.len() {
        let expected = if k == events.len() {
            &completed[..]
        } else {
            &before[..]
        };
        let first = FaultServer::validating(tool_step()).await.unwrap();
        let (switch, mut runner) = switched(&first);
        let taken = runner.step_stream("What is 2 + 3?").take(k).count().await;
        assert_eq!(taken, k);
        let after_drop = runner.history().to_vec();

        let second = FaultServer::validating([Reply::text(&["Bye."], Duration::ZERO)])
            .await
            .unwrap();
        switch.to(&second);
        let (_, kinds) = step(&mut runner, "Thanks!").await;
        if after_drop != expected
            || kinds != ["complete(0)", "write:response", "done:1:Bye."]
            || runner.history() != answered(expected, "Thanks!", "Bye.")
        {
            wrong.push(format!(
                "dropped after {k} events: history {after_drop:?}, then step 2 {kinds:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[tokio::test]
async fn a_failed_step_leaves_the_history_as_it_was() {
    let [call, _] = tool_step();
    let server = FaultServer::validating([
        call,
        Reply::status(401, "invalid_api_key"),
        Reply::text(&["Bye."], GAP),
    ])
    .await
    .unwrap();
    let mut runner = runner(&server, 5);
    let before = runner.history().to_vec();
    let (_, kinds) = step(&mut runner, "What is 2 + 3?").await;
    assert_eq!(
        kinds[..5],
        [
            "complete(1)",
            "start:add",
            "output:5:false",
            "end:true",
            "write:tool:result:1:call_1"
        ]
    );
    assert!(kinds[5].starts_with("error:model call failed"), "{kinds:?}");
    assert_eq!(runner.history(), before);

    let (_, kinds) = step(&mut runner, "Thanks!").await;
    assert_eq!(kinds, ["complete(0)", "write:response", "done:1:Bye."]);
    assert_eq!(runner.history(), answered(&before, "Thanks!", "Bye."));
    assert_eq!(
        server.requests()[2].body["messages"],
        json!([{"role": "system", "content": "You add numbers."},
               {"role": "user", "content": "Thanks!"}])
    );
}
