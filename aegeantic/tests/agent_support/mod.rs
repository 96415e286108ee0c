//! What the agent tests over loopback share: a provider for the fault server, a tool,
//! replies with several tool calls, event kinds in short, and running the test binary
//! itself as a child process.
#![allow(dead_code)] // each test file uses a part

use std::process::{Command, Output};
use std::time::Duration;

use aegeantic::agent::{AgentEvent, Tool, ToolContext, ToolError, ToolFuture};
use aegeantic::llm::{OpenAiCompatible, OpenAiConfig};
use aegeantic::testing::{FaultServer, Reply, SseChunk, StreamEnd};
use serde_json::{json, Value};

pub const GAP: Duration = Duration::from_millis(2);

pub fn openai(server: &FaultServer) -> OpenAiCompatible {
    OpenAiCompatible::new(OpenAiConfig::new(server.base_url(), "fault-model")).unwrap()
}

/// Adds two integers.
pub struct Add;

impl Tool for Add {
    fn name(&self) -> &str {
        "add"
    }
    fn description(&self) -> &str {
        "Adds two integers"
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "required": ["a", "b"],
               "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}})
    }
    fn call(&self, args: Value, _ctx: ToolContext) -> ToolFuture<'_> {
        Box::pin(async move {
            let int = |key: &str| {
                args[key]
                    .as_i64()
                    .ok_or_else(|| ToolError::InvalidArguments(format!("{key} must be an integer")))
            };
            Ok(json!(int("a")? + int("b")?))
        })
    }
}

/// One answer calling every `(id, name, arguments)`, each call's arguments in one piece,
/// with a usage event of 10 and 5 tokens.
pub fn tool_calls(calls: &[(&str, &str, &str)]) -> Reply {
    let delta = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-fault", "object": "chat.completion.chunk",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut chunks: Vec<SseChunk> = calls
        .iter()
        .enumerate()
        .map(|(index, (id, name, arguments))| SseChunk {
            gap: GAP,
            data: delta(
                json!({"tool_calls": [{"index": index, "id": id, "type": "function",
                        "function": {"name": name, "arguments": arguments}}]}),
                Value::Null,
            ),
        })
        .collect();
    chunks.push(SseChunk {
        gap: Duration::ZERO,
        data: delta(json!({}), json!("tool_calls")),
    });
    chunks.push(SseChunk {
        gap: Duration::ZERO,
        data: json!({"id": "chatcmpl-fault", "choices": [],
                     "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}),
    });
    Reply::Stream {
        headers: Vec::new(),
        chunks,
        end: StreamEnd::Done,
    }
}

/// An event in short; `None` for chunks, which depend on how the answer was split.
pub fn kind(event: &AgentEvent) -> Option<String> {
    Some(match event {
        AgentEvent::LlmChunk { .. } => return None,
        AgentEvent::LlmComplete { tool_calls, .. } => format!("complete({})", tool_calls.len()),
        AgentEvent::ToolDecision {
            call_id,
            decision,
            decided_by,
            ..
        } => format!("decision:{call_id}:{decision:?}:{decided_by:?}"),
        AgentEvent::ToolStart { call_id, .. } => format!("start:{call_id}"),
        AgentEvent::ToolOutput {
            call_id,
            output,
            is_error,
            partial,
            ..
        } => {
            let what = if *partial { "partial" } else { "output" };
            format!("{what}:{call_id}:{output}:{is_error}")
        }
        AgentEvent::ToolEnd { call_id, .. } => format!("end:{call_id}"),
        AgentEvent::Retry { event, .. } => format!("retry:{}", event.operation_name),
        AgentEvent::ContextWrite { key, .. } => format!("write:{key}"),
        AgentEvent::Error { error, .. } => format!("error:{error}"),
        AgentEvent::StepComplete { result, .. } => format!("done:{}", result.response),
        other => format!("{other:?}"),
    })
}

pub fn kinds(events: &[AgentEvent]) -> Vec<String> {
    events.iter().filter_map(kind).collect()
}

/// Runs the ignored test `name` of this test binary in a child process, with `env` set.
pub fn run_child(name: &str, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args([
        "--ignored",
        "--exact",
        name,
        "--nocapture",
        "--test-threads=1",
    ]);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

/// Like [`run_child`], and fails with the child's output if it failed.
pub fn child_ok(output: Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
