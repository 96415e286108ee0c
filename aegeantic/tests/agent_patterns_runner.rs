//! Tool calls written in the model's text, through the agent runner against the fault
//! server over real loopback HTTP: the same tool loop as native calls, results sent back
//! in the pattern set's style, tags split at every position, retried answers forgotten.
#![cfg(all(feature = "agent", feature = "openai", feature = "fault-server"))]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aegeantic::agent::{
    tool_retry_on, Agent, AgentConfig, AgentError, AgentEvent, AgentRunner, DecidedBy,
    ExtractError, PatternSet, SegmentKind, Tool, ToolApproval, ToolContext, ToolDecision,
    ToolError, ToolFuture, ToolPolicy, DEFAULT_INPUT_CAP,
};
use aegeantic::llm::{llm_retry_on, OpenAiCompatible, OpenAiConfig, ResilientProvider};
use aegeantic::report::DisplayChain;
use aegeantic::resilience::RetryConfig;
use aegeantic::testing::{FaultServer, Reply, StreamEnd};
use futures::StreamExt;
use serde_json::{json, Value};

/// Adds two integers; fails transiently on its first `flaky` calls.
struct Add {
    flaky: u32,
    calls: AtomicU32,
}

fn add() -> Arc<Add> {
    Arc::new(Add {
        flaky: 0,
        calls: AtomicU32::new(0),
    })
}

impl Tool for Add {
    fn name(&self) -> &str {
        "add"
    }
    fn description(&self) -> &str {
        "Adds two integers."
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "required": ["a", "b"],
               "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}})
    }
    fn call(&self, args: Value, _ctx: ToolContext) -> ToolFuture<'_> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if call < self.flaky {
                return Err(ToolError::transient("adder busy"));
            }
            let int = |key: &str| {
                args[key]
                    .as_i64()
                    .ok_or_else(|| ToolError::InvalidArguments(format!("{key} must be an integer")))
            };
            Ok(json!(int("a")? + int("b")?))
        })
    }

    fn policy(&self) -> ToolPolicy {
        ToolPolicy::default().retry(
            RetryConfig::builder()
                .base_delay(Duration::from_millis(1))
                .jitter(false)
                .retry_on(tool_retry_on())
                .build()
                .unwrap(),
        )
    }
}

fn runner(server: &FaultServer, set: PatternSet, tool: Arc<Add>) -> AgentRunner {
    configured(server, set, tool, AgentConfig::default())
}

fn configured(
    server: &FaultServer,
    set: PatternSet,
    tool: Arc<Add>,
    config: AgentConfig,
) -> AgentRunner {
    let provider =
        OpenAiCompatible::new(OpenAiConfig::new(server.base_url(), "no-function-calling")).unwrap();
    let retry = RetryConfig::builder()
        .base_delay(Duration::from_millis(1))
        .jitter(false)
        .retry_on(llm_retry_on())
        .build()
        .unwrap();
    let config = AgentConfig {
        system_prompt: Some("You add numbers.".into()),
        ..config
    };
    let tools: Vec<Arc<dyn Tool>> = vec![tool];
    let agent = Agent::builder()
        .config(config)
        .patterns(set)
        .tools(tools)
        .llm_provider(ResilientProvider::new(provider).retry(retry))
        .build();
    AgentRunner::new(agent)
}

/// The events without model chunks and pattern content, whose number depends on the split.
fn kinds(events: &[AgentEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| {
            Some(match event {
                AgentEvent::LlmChunk { .. } | AgentEvent::PatternContent { .. } => return None,
                AgentEvent::PatternStart { segment, kind, .. } => {
                    format!("start {segment} {kind:?}")
                }
                AgentEvent::PatternEnd {
                    segment,
                    content,
                    closed,
                    call,
                    ..
                } => match call {
                    None => format!("end {segment} {closed} {content}"),
                    Some(Ok(call)) => format!(
                        "end {segment} {closed} call {}({})",
                        call.name, call.arguments
                    ),
                    Some(Err(error)) => {
                        format!("end {segment} {closed} error {}", DisplayChain(error))
                    }
                },
                AgentEvent::LlmComplete { tool_calls, .. } => {
                    format!("complete {}", tool_calls.len())
                }
                AgentEvent::ToolStart { name, .. } => format!("tool {name}"),
                AgentEvent::ToolOutput {
                    output, is_error, ..
                } => format!("output {output} {is_error}"),
                AgentEvent::ToolEnd { success, .. } => format!("tool end {success}"),
                AgentEvent::Retry { event, .. } => format!("retry {}", event.operation_type),
                AgentEvent::StepComplete { result, .. } => format!("done {}", result.response),
                AgentEvent::ContextWrite { key, .. } => format!("write {key}"),
                AgentEvent::Error { error, .. } => format!("error {}", DisplayChain(&**error)),
                other => format!("{other:?}"),
            })
        })
        .collect()
}

/// The content of each segment, joined from its pieces.
fn contents(events: &[AgentEvent]) -> Vec<(u32, String)> {
    let mut out: Vec<(u32, String)> = Vec::new();
    for event in events {
        match event {
            AgentEvent::PatternStart { segment, .. } => out.push((*segment, String::new())),
            AgentEvent::PatternContent { text, .. } => out.last_mut().unwrap().1.push_str(text),
            _ => {}
        }
    }
    out
}

const CALL: &str =
    "Let me add. <tool>{\"name\": \"add\", \"arguments\": {\"a\": 2, \"b\": 3}}</tool>";
const FINAL: &str = "<think>2 + 3 = 5</think>The sum is 5.";

#[tokio::test]
async fn a_text_tool_call_runs_end_to_end_with_tags_split_at_every_position() {
    let splits: Vec<usize> = (0..=CALL.len())
        .filter(|at| CALL.is_char_boundary(*at))
        .collect();
    let mut script = Vec::new();
    for &at in &splits {
        script.push(Reply::text(&[&CALL[..at], &CALL[at..]], Duration::ZERO));
        script.push(Reply::text(&[FINAL], Duration::ZERO));
    }
    // And every byte a chunk of its own.
    let bytes: Vec<String> = CALL.chars().map(String::from).collect();
    let bytes: Vec<&str> = bytes.iter().map(String::as_str).collect();
    script.push(Reply::text(&bytes, Duration::ZERO));
    script.push(Reply::text(&[FINAL], Duration::ZERO));
    let server = FaultServer::validating(script).await.unwrap();
    let expected = [
        "start 0 Tool",
        r#"end 0 true call add({"a":2,"b":3})"#,
        "complete 1",
        "tool add",
        "output 5 false",
        "tool end true",
        "write tool:result:1:text_call_1_0",
        "start 0 Reasoning",
        "end 0 true 2 + 3 = 5",
        "complete 0",
        "write response",
        "done The sum is 5.",
    ];
    for run in 0..=splits.len() {
        let mut runner = runner(&server, PatternSet::tool_tags(), add());
        let events: Vec<AgentEvent> = runner.step_stream("What is 2 + 3?").collect().await;
        assert_eq!(kinds(&events), expected, "run {run}");
        assert_eq!(
            contents(&events)[0],
            (
                0,
                r#"{"name": "add", "arguments": {"a": 2, "b": 3}}"#.to_owned()
            )
        );
    }
    let requests = server.requests();
    assert_eq!(requests.len(), 2 * (splits.len() + 1));
    let first = &requests[0].body;
    assert!(
        first.get("tools").is_none(),
        "no native tool specs: {first}"
    );
    let system = first["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.starts_with("You add numbers.\n\nYou can call tools."),
        "{system}"
    );
    assert!(system.contains("- add: Adds two integers."), "{system}");
    let second = requests[1].body["messages"].as_array().unwrap();
    assert_eq!(
        second.len(),
        4,
        "system, user, assistant, results: {second:?}"
    );
    assert_eq!(second[2]["role"], "assistant");
    assert_eq!(second[2]["content"], CALL, "the model sees its own tags");
    assert!(second[2].get("tool_calls").is_none());
    assert_eq!(second[3]["role"], "user");
    assert_eq!(
        second[3]["content"],
        r#"<tool_result>{"call_id":"text_call_1_0","name":"add","result":5}</tool_result>"#
    );
}

#[tokio::test]
async fn text_calls_get_the_tools_policy_and_several_run_in_order() {
    let two =
        "<tool>{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}, \"call_id\": \"x\"}</tool>\
               <tool>{\"name\": \"add\", \"arguments\": {\"a\": 3, \"b\": 4}}</tool>";
    let server = FaultServer::validating([
        Reply::text(&[two], Duration::ZERO),
        Reply::text(&["3 and 7."], Duration::ZERO),
    ])
    .await
    .unwrap();
    let tool = Arc::new(Add {
        flaky: 1,
        calls: AtomicU32::new(0),
    });
    let mut runner = runner(&server, PatternSet::tool_tags(), Arc::clone(&tool));
    let events: Vec<AgentEvent> = runner.step_stream("Two sums").collect().await;
    assert_eq!(
        kinds(&events),
        [
            "start 0 Tool",
            r#"end 0 true call add({"a":1,"b":2})"#,
            "start 1 Tool",
            r#"end 1 true call add({"a":3,"b":4})"#,
            "complete 2",
            "tool add",
            "retry tool",
            "output 3 false",
            "tool end true",
            "write tool:result:1:x",
            "tool add",
            "output 7 false",
            "tool end true",
            "write tool:result:1:text_call_1_1",
            "complete 0",
            "write response",
            "done 3 and 7.",
        ]
    );
    assert_eq!(
        tool.calls.load(Ordering::SeqCst),
        3,
        "the first call retried once"
    );
    let results = &server.requests()[1].body["messages"][3]["content"];
    assert_eq!(
        results,
        "<tool_result>{\"call_id\":\"x\",\"name\":\"add\",\"result\":3}</tool_result>\n\
         <tool_result>{\"call_id\":\"text_call_1_1\",\"name\":\"add\",\"result\":7}</tool_result>"
    );
}

#[tokio::test]
async fn a_malformed_or_unclosed_text_call_is_told_to_the_model() {
    let server = FaultServer::validating([
        Reply::text(
            &["<tool>{\"name\": \"add\", \"arguments\": {\"a\": 2,}}</tool>"],
            Duration::ZERO,
        ),
        Reply::text(
            &["<tool>{\"name\": \"add\", \"arguments\": {\"a\": 2, \"b\": 3}}"],
            Duration::ZERO,
        ),
        Reply::text(&["<tool>{\"name\": \"sub\"}</tool>"], Duration::ZERO),
        Reply::text(&["Sorry, I cannot."], Duration::ZERO),
    ])
    .await
    .unwrap();
    let mut runner = runner(&server, PatternSet::tool_tags(), add());
    let events: Vec<AgentEvent> = runner.step_stream("2 + 3?").collect().await;
    let json_error = "the tool call is not valid JSON: trailing comma at line 1 column 38";
    let unclosed = "the tool call was not closed with \\\"</tool>\\\"";
    assert_eq!(
        kinds(&events),
        [
            "start 0 Tool".to_owned(),
            format!("end 0 true error {json_error}"),
            "complete 1".into(),
            // No name, and it fails at once: the model is told why.
            "tool ".into(),
            format!("output \"error: invalid arguments: {json_error}\" true"),
            "tool end false".into(),
            "write tool:result:1:text_call_1_0".into(),
            "start 0 Tool".into(),
            format!("end 0 false error {}", unclosed.replace('\\', "")),
            "complete 1".into(),
            "tool ".into(),
            format!("output \"error: invalid arguments: {unclosed}\" true"),
            "tool end false".into(),
            "write tool:result:1:text_call_2_0".into(),
            "start 0 Tool".into(),
            r#"end 0 true call sub({})"#.into(),
            "complete 1".into(),
            "tool sub".into(),
            r#"output "error: unknown tool \"sub\"" true"#.into(),
            "tool end false".into(),
            "write tool:result:1:text_call_3_0".into(),
            "complete 0".into(),
            "write response".into(),
            "done Sorry, I cannot.".into(),
        ]
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 4);
    let told = &requests[1].body["messages"][3]["content"];
    let expected = json!({"call_id": "text_call_1_0", "name": "",
        "error": format!("error: invalid arguments: {json_error}")});
    assert_eq!(told, &format!("<tool_result>{expected}</tool_result>"));
}

#[tokio::test]
async fn a_retried_model_call_leaves_no_segment_of_the_failed_attempt() {
    let cut = Reply::text(
        &["<tool>{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 1}}</tool> <think>half"],
        Duration::ZERO,
    )
    .ending(StreamEnd::Cut);
    let server = FaultServer::validating([
        cut,
        Reply::text(&["<think>no tool</think>Nothing to add."], Duration::ZERO),
    ])
    .await
    .unwrap();
    let tool = add();
    let mut runner = runner(&server, PatternSet::tool_tags(), Arc::clone(&tool));
    let events: Vec<AgentEvent> = runner.step_stream("hi").collect().await;
    assert_eq!(
        kinds(&events),
        [
            "start 0 Tool",
            r#"end 0 true call add({"a":1,"b":1})"#,
            "start 1 Reasoning",
            "retry llm",
            "start 0 Reasoning",
            "end 0 true no tool",
            "complete 0",
            "write response",
            "done Nothing to add.",
        ]
    );
    assert_eq!(
        tool.calls.load(Ordering::SeqCst),
        0,
        "the failed attempt's call never ran"
    );
}

#[tokio::test]
async fn name_arguments_calls_get_their_results_in_lines() {
    let server = FaultServer::validating([
        Reply::text(
            &["<tool>\nName: add\nArguments: {\"a\": 20, \"b\": 22}\n</tool>"],
            Duration::ZERO,
        ),
        Reply::text(&["42"], Duration::ZERO),
    ])
    .await
    .unwrap();
    let mut runner = runner(&server, PatternSet::name_arguments(), add());
    let events: Vec<AgentEvent> = runner.step_stream("20 + 22?").collect().await;
    assert_eq!(kinds(&events).last().unwrap(), "done 42");
    let requests = server.requests();
    let system = requests[0].body["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.contains("<tool>\nName: TOOL_NAME\nArguments: {...}\n</tool>"),
        "{system}"
    );
    assert_eq!(
        requests[1].body["messages"][3]["content"],
        "<tool_result>\nName: add\nResult: 42\n</tool_result>"
    );
}

#[tokio::test]
async fn a_hostile_answer_past_the_cap_ends_the_step_with_a_typed_error() {
    let piece = "x".repeat(64 * 1024);
    let mut pieces = vec!["<tool>"];
    pieces.extend(std::iter::repeat_n(piece.as_str(), 20));
    let server = FaultServer::validating([Reply::text(&pieces, Duration::ZERO)])
        .await
        .unwrap();
    let mut runner = runner(&server, PatternSet::tool_tags(), add());
    let events: Vec<AgentEvent> = runner.step_stream("hi").collect().await;
    let Some(AgentEvent::Error { error, .. }) = events.last() else {
        panic!("the step should fail: {:?}", kinds(&events));
    };
    assert!(matches!(
        &**error,
        AgentError::Patterns(ExtractError::InputCap {
            cap: DEFAULT_INPUT_CAP
        })
    ));
    assert_eq!(
        DisplayChain(&**error).to_string(),
        "the model's answer was refused by the pattern extractor: the model's answer exceeds \
         the pattern extractor's cap of 1048576 bytes"
    );
    let content: usize = events
        .iter()
        .map(|event| match event {
            AgentEvent::PatternContent {
                text,
                kind: SegmentKind::Tool,
                ..
            } => text.len(),
            _ => 0,
        })
        .sum();
    assert!(content < DEFAULT_INPUT_CAP, "{content}");
    assert_eq!(runner.history().len(), 1, "the failed step left nothing");

    // A set's own cap holds the same way.
    let server =
        FaultServer::validating([Reply::text(&["a".repeat(40).as_str(); 2], Duration::ZERO)])
            .await
            .unwrap();
    let mut capped = crate::runner(&server, PatternSet::tool_tags().with_input_cap(64), add());
    let events: Vec<AgentEvent> = capped.step_stream("hi").collect().await;
    assert!(matches!(
        events.last(),
        Some(AgentEvent::Error { error, .. })
            if matches!(**error, AgentError::Patterns(ExtractError::InputCap { cap: 64 }))
    ));
}

#[tokio::test]
async fn text_calls_go_through_the_allow_list_and_the_approval_hook() {
    let calls = "<tool_call>{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}</tool_call>\
                 <tool_call>{\"name\": \"add\", \"arguments\": {\"a\": 100, \"b\": 2}}</tool_call>\
                 <tool_call>{\"name\": \"sub\", \"arguments\": {}}</tool_call>";
    let server = FaultServer::validating([
        Reply::text(&[calls], Duration::ZERO),
        Reply::text(&["<think>one of three</think>3"], Duration::ZERO),
    ])
    .await
    .unwrap();
    let config = AgentConfig {
        allowed_tools: Some(vec!["add".into()]),
        on_tool_detected: Some(ToolApproval::new(|call| async move {
            if call.arguments.contains("100") {
                ToolDecision::reject("too big")
            } else {
                ToolDecision::Accept
            }
        })),
        ..AgentConfig::default()
    };
    let tool = add();
    let mut runner = configured(&server, PatternSet::xml_tags(), Arc::clone(&tool), config);
    let mut decisions = Vec::new();
    let mut result = None;
    let mut events = runner.step_stream("sums");
    while let Some(event) = events.next().await {
        match event {
            AgentEvent::ToolDecision {
                name,
                decision,
                decided_by,
                ..
            } => decisions.push((name, decision, decided_by)),
            AgentEvent::StepComplete { result: done, .. } => result = Some(done),
            _ => {}
        }
    }
    drop(events);
    assert_eq!(
        decisions,
        [
            ("add".to_owned(), ToolDecision::Accept, DecidedBy::Hook),
            (
                "add".to_owned(),
                ToolDecision::reject("too big"),
                DecidedBy::Hook
            ),
            (
                "sub".to_owned(),
                ToolDecision::reject("the tool \"sub\" is not allowed"),
                DecidedBy::AllowList
            ),
        ]
    );
    assert_eq!(
        tool.calls.load(Ordering::SeqCst),
        1,
        "only the accepted call ran"
    );
    let result = result.expect("the step completes");
    assert_eq!(result.response, "3");
    let outputs: Vec<(&str, &Value, bool)> = result
        .tool_calls
        .iter()
        .map(|call| (call.call.id.as_str(), &call.output, call.is_error))
        .collect();
    assert_eq!(
        outputs,
        [
            ("text_call_1_0", &json!(3), false),
            ("text_call_1_1", &json!("rejected: too big"), true),
            (
                "text_call_1_2",
                &json!("rejected: the tool \"sub\" is not allowed"),
                true
            ),
        ]
    );
    // The Hermes-style set sends results back in its own tags.
    let results = server.requests()[1].body["messages"][3]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(results.matches("<tool_response>").count(), 3, "{results}");
    assert!(
        results.contains(r#""error":"rejected: too big""#),
        "{results}"
    );
    // The context has each result under the call's id.
    let stored = runner
        .agent()
        .context()
        .get("tool:result:1:text_call_1_1")
        .unwrap()
        .expect("the rejected call's result is stored");
    assert!(stored.to_text().contains("too big"), "{}", stored.to_text());
}

#[cfg(feature = "serde")]
#[tokio::test]
async fn pattern_events_serialise_with_their_type() {
    let server = FaultServer::validating([
        Reply::text(
            &["<tool>{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}</tool>"],
            Duration::ZERO,
        ),
        Reply::text(&["<tool>{\"name\": 1}</tool>"], Duration::ZERO),
        Reply::text(&["done"], Duration::ZERO),
    ])
    .await
    .unwrap();
    let mut runner = runner(&server, PatternSet::tool_tags(), add());
    let events: Vec<Value> = runner
        .step_stream("go")
        .map(|event| serde_json::to_value(&event).unwrap())
        .collect()
        .await;
    let of_type =
        |kind: &str| -> Vec<&Value> { events.iter().filter(|e| e["type"] == kind).collect() };
    let start = of_type("pattern_start")[0];
    assert_eq!(
        (&start["segment"], &start["kind"]),
        (&json!(0), &json!("tool"))
    );
    assert!(start["timestamp"].as_f64().unwrap() > 1.7e9, "{start}");
    assert_eq!(of_type("pattern_content")[0]["kind"], "tool");
    let ends = of_type("pattern_end");
    assert_eq!(
        ends[0]["call"],
        json!({"ok": {"id": "text_call_1_0", "name": "add", "arguments": "{\"a\":1,\"b\":2}"}})
    );
    assert_eq!(ends[0]["closed"], true);
    assert_eq!(
        ends[1]["call"],
        json!({"error": "the tool call does not name a tool"})
    );
}
