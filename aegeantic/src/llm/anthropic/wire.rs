//! The Messages API's JSON: the request body, the stream's events and error bodies.

use std::time::SystemTime;

use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::super::http_util::{header, server_delay, Redactor, Step};
use super::super::sse::SseEvent;
use super::super::{
    FinishReason, LlmChunk, LlmError, LlmRequest, Message, Role, ToolCallDelta, Usage,
};

/// The body of a streamed Messages request.
///
/// # Errors
/// [`LlmError::Config`] for a tool result that does not say which call it answers.
pub(super) fn request_body(
    request: &LlmRequest,
    default_model: &str,
    default_max_tokens: u32,
) -> Result<Value, LlmError> {
    let mut system = Vec::new();
    // The API merges consecutive turns of one role anyway; doing it here puts the results
    // of parallel tool calls in one user turn, where the API wants them.
    let mut turns: Vec<(&str, Vec<Value>)> = Vec::new();
    for message in &request.messages {
        let (role, blocks) = match message.role {
            Role::System => {
                system.push(message.content.as_str());
                continue;
            }
            Role::User => ("user", vec![text_block(&message.content)]),
            Role::Tool => ("user", vec![tool_result(message)?]),
            Role::Assistant => ("assistant", assistant_blocks(message)),
        };
        match turns.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    let messages: Vec<Value> = turns
        .into_iter()
        .map(|(role, blocks)| json!({ "role": role, "content": content(blocks) }))
        .collect();
    let mut body = json!({
        "model": request.model.as_deref().unwrap_or(default_model),
        "max_tokens": request.max_tokens.unwrap_or(default_max_tokens),
        "messages": messages,
        "stream": true,
    });
    let system: Vec<&str> = system.into_iter().filter(|s| !s.is_empty()).collect();
    if !system.is_empty() {
        body["system"] = system.join("\n\n").into();
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|tool| {
                json!({
                    "name": tool.name,
                    "description": tool.description,
                    "input_schema": tool.parameters,
                })
            })
            .collect();
    }
    Ok(body)
}

fn text_block(text: &str) -> Value {
    json!({ "type": "text", "text": text })
}

fn tool_result(message: &Message) -> Result<Value, LlmError> {
    let id = message
        .tool_call_id
        .as_deref()
        .ok_or_else(|| LlmError::Config("a tool result message has no tool_call_id".to_owned()))?;
    Ok(json!({ "type": "tool_result", "tool_use_id": id, "content": message.content }))
}

fn assistant_blocks(message: &Message) -> Vec<Value> {
    let mut blocks = Vec::new();
    // The API refuses empty text blocks, and a turn that only calls tools has no text.
    if !message.content.is_empty() || message.tool_calls.is_empty() {
        blocks.push(text_block(&message.content));
    }
    blocks.extend(message.tool_calls.iter().map(|call| {
        json!({ "type": "tool_use", "id": call.id, "name": call.name,
            "input": tool_input(&call.arguments) })
    }));
    blocks
}

/// The API wants a call's input as an object, but the model may have written invalid
/// JSON. Failing the request would make the conversation unrecoverable, while the tool's
/// result (an error, surely) still tells the model what went wrong; so it becomes `{}`.
fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(object)) => Value::Object(object),
        _ => Value::Object(Map::new()),
    }
}

/// A lone text block as a plain string, the API's short form; anything else as blocks.
fn content(mut blocks: Vec<Value>) -> Value {
    if blocks.len() == 1 && blocks[0]["type"] == "text" {
        return blocks.swap_remove(0)["text"].take();
    }
    Value::Array(blocks)
}

/// Turns the stream's events into chunks. The prompt's token count arrives in
/// `message_start` but belongs with the output count of `message_delta`, so it is kept.
#[derive(Debug, Default)]
pub(super) struct Decoder {
    prompt_tokens: u64,
}

#[derive(Deserialize)]
struct MessageStart {
    message: StartedMessage,
}

#[derive(Deserialize)]
struct StartedMessage {
    #[serde(default)]
    usage: Option<UsageWire>,
}

/// Token counts; the cache counts are part of the prompt but reported apart.
#[derive(Default, Deserialize)]
struct UsageWire {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
}

impl UsageWire {
    fn prompt_tokens(&self) -> Option<u64> {
        let input = self.input_tokens?;
        let cached = [
            self.cache_creation_input_tokens,
            self.cache_read_input_tokens,
        ];
        Some(
            cached
                .into_iter()
                .flatten()
                .fold(input, u64::saturating_add),
        )
    }
}

#[derive(Deserialize)]
struct BlockStart {
    index: u32,
    content_block: Block,
}

#[derive(Deserialize)]
struct Block {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct BlockDelta {
    index: u32,
    delta: Delta,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    partial_json: Option<String>,
}

#[derive(Deserialize)]
struct MessageDelta {
    #[serde(default)]
    delta: Option<StopDelta>,
    #[serde(default)]
    usage: Option<UsageWire>,
}

#[derive(Deserialize)]
struct StopDelta {
    #[serde(default)]
    stop_reason: Option<String>,
}

impl Decoder {
    /// The meaning of one event. Unknown events and block types (thinking, server tools)
    /// are skipped: the API adds new ones without a version change.
    ///
    /// # Errors
    /// The stream's `error` event, classified; [`LlmError::Protocol`] for data that is not
    /// the expected JSON.
    pub(super) fn decode(
        &mut self,
        event: &SseEvent,
        redactor: &Redactor,
    ) -> Result<Step, LlmError> {
        let value: Value = serde_json::from_str(&event.data)
            .map_err(|error| LlmError::Protocol(format!("stream data is not JSON ({error})")))?;
        if !value.is_object() {
            return Err(LlmError::Protocol(
                "stream data is not a JSON object".to_owned(),
            ));
        }
        let kind = value
            .get("type")
            .and_then(Value::as_str)
            .or(event.event.as_deref())
            .unwrap_or_default()
            .to_owned();
        let mut chunks = Vec::new();
        match kind.as_str() {
            "message_stop" => return Ok(Step::Stop),
            "error" => return Err(api_error(None, &value, redactor, true)),
            "message_start" => {
                let start: MessageStart = shape(value)?;
                let usage = start.message.usage.unwrap_or_default();
                self.prompt_tokens = usage.prompt_tokens().unwrap_or(0);
            }
            "content_block_start" => {
                let start: BlockStart = shape(value)?;
                let block = start.content_block;
                match block.kind.as_str() {
                    "text" => chunks.extend(text_chunk(block.text)),
                    "tool_use" => chunks.push(LlmChunk::ToolCall(ToolCallDelta {
                        index: start.index,
                        id: block.id,
                        name: block.name,
                        arguments: String::new(),
                    })),
                    _ => {}
                }
            }
            "content_block_delta" => {
                let delta: BlockDelta = shape(value)?;
                match delta.delta.kind.as_str() {
                    "text_delta" => chunks.extend(text_chunk(delta.delta.text)),
                    "input_json_delta" => {
                        if let Some(json) = delta.delta.partial_json.filter(|j| !j.is_empty()) {
                            chunks.push(LlmChunk::ToolCall(ToolCallDelta {
                                index: delta.index,
                                arguments: json,
                                ..ToolCallDelta::default()
                            }));
                        }
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                let delta: MessageDelta = shape(value)?;
                if let Some(reason) = delta.delta.and_then(|delta| delta.stop_reason) {
                    chunks.push(LlmChunk::Finish(finish_reason(&reason)));
                }
                if let Some(usage) = delta.usage {
                    // Newer servers repeat the prompt count here; it is the final word.
                    if let Some(prompt) = usage.prompt_tokens() {
                        self.prompt_tokens = prompt;
                    }
                    chunks.push(LlmChunk::Usage(Usage {
                        prompt_tokens: self.prompt_tokens,
                        completion_tokens: usage.output_tokens.unwrap_or(0),
                    }));
                }
            }
            _ => {}
        }
        Ok(Step::Chunks(chunks))
    }
}

fn shape<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, LlmError> {
    serde_json::from_value(value)
        .map_err(|error| LlmError::Protocol(format!("unexpected event shape ({error})")))
}

fn text_chunk(text: Option<String>) -> Option<LlmChunk> {
    text.filter(|text| !text.is_empty()).map(LlmChunk::Text)
}

/// A `refusal` is the safety classifier withholding the answer: a content filter.
fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "refusal" => FinishReason::ContentFilter,
        other => FinishReason::parse(other),
    }
}

/// An error status with its `{"type":"error","error":{...}}` body.
pub(super) fn http_error(
    status: u16,
    headers: &HeaderMap,
    body: &str,
    redactor: &Redactor,
) -> LlmError {
    let value = serde_json::from_str(body).unwrap_or(Value::Null);
    let mut error = api_error(Some(status), &value, redactor, false);
    if let LlmError::Api {
        message,
        should_retry,
        server_delay: delay,
        ..
    } = &mut error
    {
        if value.is_null() {
            *message = redactor.scrub(&body.chars().take(500).collect::<String>());
        }
        *should_retry = header(headers, "x-should-retry").and_then(|value| match value {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        });
        *delay = server_delay(headers, SystemTime::now());
    }
    error
}

/// An error body; an in-stream one gets the status of its HTTP twin, from its type.
fn api_error(status: Option<u16>, value: &Value, redactor: &Redactor, in_stream: bool) -> LlmError {
    let error = &value["error"];
    let code = error["type"].as_str().map(str::to_owned);
    let message = error["message"]
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned);
    LlmError::Api {
        status: status.or_else(|| code.as_deref().and_then(status_for_type)),
        kind: code.as_deref().map(Box::from),
        code,
        message: redactor.scrub(&message),
        should_retry: None,
        server_delay: None,
        in_stream,
    }
}

/// The HTTP status Anthropic's documentation gives for each error type.
fn status_for_type(kind: &str) -> Option<u16> {
    Some(match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "api_error" => 500,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => return None,
    })
}
