//! A provider for OpenAI-compatible chat-completions endpoints, streaming over SSE.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{json, Value};

use super::http_util::{
    client, endpoint, env_var, header, server_delay, ApiKey, Exchange, RedactedUrl, Redactor, Step,
};
use super::sse::SseEvent;
use super::{
    FinishReason, LlmChunk, LlmError, LlmProvider, LlmRequest, LlmStream, Message, Role,
    ToolCallDelta, Usage,
};

/// Where and how [`OpenAiCompatible`] connects. Its `Debug` output shows neither the key
/// nor a user name or password in the base URL.
///
/// ```
/// use aegeantic::llm::OpenAiConfig;
///
/// let config = OpenAiConfig::new("https://user:hunter2@proxy.example/v1", "m").api_key("sk-x");
/// let shown = format!("{config:?}");
/// assert!(!shown.contains("hunter2") && !shown.contains("sk-x"), "{shown}");
/// ```
#[derive(Clone)]
pub struct OpenAiConfig {
    /// The API root, such as `https://api.openai.com/v1`; `/chat/completions` is appended.
    pub base_url: String,
    /// The model used when a request names none.
    pub model: String,
    /// Sent as a bearer token when set.
    pub api_key: Option<ApiKey>,
    /// Limit on establishing the connection.
    pub connect_timeout: Duration,
    /// Limit on waiting for the response headers once the request is sent.
    pub response_timeout: Duration,
    /// Limit on the silence between two pieces of the body: a stalled stream fails with
    /// [`LlmError::Idle`] instead of hanging.
    pub idle_timeout: Duration,
    /// Whether a body that ends cleanly after the finish reason, without `data: [DONE]`,
    /// is a complete answer. Off by default: without the terminator a cut at an event
    /// boundary looks exactly like the end, so the answer is reported as
    /// [`LlmError::Truncated`]. Turn it on only for a server known to omit `[DONE]`.
    pub accept_missing_done: bool,
}

impl fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &RedactedUrl(&self.base_url))
            .field("model", &self.model)
            .field("api_key", &self.api_key)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("accept_missing_done", &self.accept_missing_done)
            .finish()
    }
}

impl OpenAiConfig {
    /// The default API root.
    pub const DEFAULT_BASE_URL: &'static str = "https://api.openai.com/v1";

    /// A config for `model` at `base_url`, without a key, with timeouts of 10 s (connect)
    /// and 60 s (response headers, and silence within the body), requiring `data: [DONE]`.
    ///
    /// The timeouts bound one attempt. A retrying caller waits for each attempt in turn: with
    /// four attempts, an endpoint that accepts connections but never answers is given up
    /// after about 4 × 60 s. Shorten `response_timeout` (and `idle_timeout`) to fail sooner.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        OpenAiConfig {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            accept_missing_done: false,
        }
    }

    /// A config for `model` with the key from `OPENAI_API_KEY` and the root from
    /// `OPENAI_BASE_URL` (default [`DEFAULT_BASE_URL`](Self::DEFAULT_BASE_URL)).
    pub fn from_env(model: impl Into<String>) -> Self {
        let base_url =
            env_var("OPENAI_BASE_URL").unwrap_or_else(|| Self::DEFAULT_BASE_URL.to_owned());
        let api_key = env_var("OPENAI_API_KEY").map(ApiKey::new);
        OpenAiConfig {
            api_key,
            ..Self::new(base_url, model)
        }
    }

    /// Sets the key.
    #[must_use]
    pub fn api_key(mut self, key: impl Into<Arc<str>>) -> Self {
        self.api_key = Some(ApiKey::new(key));
        self
    }

    /// Sets [`accept_missing_done`](Self::accept_missing_done).
    #[must_use]
    pub fn accept_missing_done(mut self, accept: bool) -> Self {
        self.accept_missing_done = accept;
        self
    }
}

/// Streams chat completions from an OpenAI-compatible endpoint.
///
/// Sends `stream: true` with `stream_options.include_usage`, maps the deltas to
/// [`LlmChunk`]s and fails with a classified [`LlmError`] on: an error status (with
/// `retry-after-ms` / `retry-after` read into `server_delay` and `x-should-retry` kept),
/// an error event inside the stream, a body that ends without `data: [DONE]`
/// ([`LlmError::Truncated`], unless [`OpenAiConfig::accept_missing_done`] is set and the
/// finish reason arrived), and silence longer than the idle timeout ([`LlmError::Idle`]).
/// It never retries on its own; wrap it in a [`ResilientProvider`](super::ResilientProvider).
///
/// An in-stream error is classified like the HTTP answer it stands for: a numeric `code`
/// (`"400"` as well as `400`) is that status, and a known type or code gives one
/// otherwise. In-stream errors of type `invalid_request_error`, `authentication_error`,
/// `permission_error`, `not_found_error` and `insufficient_quota` are never retried, and
/// neither are such HTTP answers unless they carry `x-should-retry: true`.
///
/// ```
/// use aegeantic::llm::{LlmError, OpenAiCompatible, OpenAiConfig};
///
/// let config = OpenAiConfig::new("localhost:8080/v1", "gpt-4o-mini");
/// let error = OpenAiCompatible::new(config).unwrap_err();
/// assert!(matches!(error, LlmError::InvalidBaseUrl { .. }));
/// assert_eq!(
///     error.to_string(),
///     r#"invalid base URL "localhost:8080/v1": the scheme must be http or https"#
/// );
/// ```
#[derive(Clone)]
pub struct OpenAiCompatible {
    config: Arc<OpenAiConfig>,
    client: reqwest::Client,
    /// `/chat/completions` under the base URL, checked when the provider is built.
    endpoint: reqwest::Url,
}

impl fmt::Debug for OpenAiCompatible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The endpoint would show the base URL's credentials; the config hides them.
        f.debug_struct("OpenAiCompatible")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl OpenAiCompatible {
    /// A provider for `config`.
    ///
    /// # Errors
    /// [`LlmError::InvalidBaseUrl`] when the base URL does not parse or is not `http` or
    /// `https`; [`LlmError::Config`] when the HTTP client cannot be built.
    pub fn new(config: OpenAiConfig) -> Result<Self, LlmError> {
        Ok(OpenAiCompatible {
            endpoint: endpoint(&config.base_url, "/chat/completions")?,
            client: client(config.connect_timeout)?,
            config: Arc::new(config),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &OpenAiConfig {
        &self.config
    }
}

impl LlmProvider for OpenAiCompatible {
    fn provider_name(&self) -> &str {
        "openai"
    }

    fn default_model(&self) -> Option<&str> {
        Some(&self.config.model)
    }

    fn stream(&self, request: &LlmRequest) -> LlmStream {
        let config = &self.config;
        let body = request_body(request, &config.model);
        let mut builder = self.client.post(self.endpoint.clone()).json(&body);
        if let Some(key) = &config.api_key {
            builder = builder.bearer_auth(key.expose());
        }
        Exchange {
            request: Ok(builder),
            response_timeout: config.response_timeout,
            idle_timeout: config.idle_timeout,
            redactor: Redactor(config.api_key.clone()),
            http_error,
            quota,
            finish_is_complete: config.accept_missing_done,
        }
        .stream(|event, redactor| {
            if event.data.trim() == "[DONE]" {
                return Ok(Step::Stop);
            }
            parse_event(event, redactor).map(Step::Chunks)
        })
    }
}

fn request_body(request: &LlmRequest, default_model: &str) -> Value {
    let messages: Vec<Value> = request.messages.iter().map(message_json).collect();
    let mut body = json!({
        "model": request.model.as_deref().unwrap_or(default_model),
        "messages": messages,
        "stream": true,
        "stream_options": { "include_usage": true },
    });
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|tool| {
                json!({
                    "type": "function",
                    "function": {
                        "name": tool.name,
                        "description": tool.description,
                        "parameters": tool.parameters,
                    }
                })
            })
            .collect();
    }
    if let Some(max_tokens) = request.max_tokens {
        body["max_tokens"] = max_tokens.into();
    }
    body
}

fn message_json(message: &Message) -> Value {
    let mut value = json!({ "role": message.role.as_str(), "content": message.content });
    if message.role == Role::Assistant && !message.tool_calls.is_empty() {
        if message.content.is_empty() {
            value["content"] = Value::Null;
        }
        value["tool_calls"] = message
            .tool_calls
            .iter()
            .map(|call| {
                json!({
                    "id": call.id,
                    "type": "function",
                    "function": { "name": call.name, "arguments": call.arguments },
                })
            })
            .collect();
    }
    if let Some(id) = &message.tool_call_id {
        value["tool_call_id"] = id.as_str().into();
    }
    value
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    code: Option<Value>,
}

impl ErrorBody {
    /// The most specific label: `code` when it is a word, else `type`.
    fn label(&self) -> Option<String> {
        match &self.code {
            Some(Value::String(code)) if status_in(code).is_none() => Some(code.clone()),
            _ => self.kind.clone(),
        }
    }

    /// The status `code` stands for when it is a number: proxies send `400` and `"400"`.
    fn status(&self) -> Option<u16> {
        match self.code.as_ref()? {
            Value::String(code) => status_in(code),
            Value::Number(code) => code
                .as_u64()
                .and_then(|code| u16::try_from(code).ok())
                .filter(|code| (100..600).contains(code)),
            _ => None,
        }
    }
}

/// `code` as an HTTP status, when it is one.
fn status_in(code: &str) -> Option<u16> {
    let code = code.trim();
    if code.is_empty() || !code.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    code.parse().ok().filter(|code| (100..600).contains(code))
}

fn http_error(status: u16, headers: &HeaderMap, body: &str, redactor: &Redactor) -> LlmError {
    let parsed = serde_json::from_str::<ErrorEnvelope>(body).ok();
    let code = parsed.as_ref().and_then(|envelope| envelope.error.label());
    let kind = parsed
        .as_ref()
        .and_then(|envelope| envelope.error.kind.as_deref().map(Box::from));
    let message = parsed
        .and_then(|envelope| envelope.error.message)
        .unwrap_or_else(|| body.chars().take(500).collect());
    LlmError::Api {
        status: Some(status),
        code,
        kind,
        message: redactor.scrub(&message),
        should_retry: header(headers, "x-should-retry").and_then(|value| match value {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }),
        server_delay: server_delay(headers, SystemTime::now()),
        in_stream: false,
    }
}

/// The `x-ratelimit-*` headers of a response.
pub(super) use super::x_ratelimit as quota;

/// The HTTP status an in-stream error stands for, from its code or type.
fn status_for_code(code: &str) -> Option<u16> {
    Some(match code {
        "invalid_request_error" | "context_length_exceeded" => 400,
        "authentication_error" | "invalid_api_key" => 401,
        "permission_error" | "insufficient_quota" => 403,
        "not_found_error" | "model_not_found" => 404,
        "timeout" | "request_timeout" => 408,
        "rate_limit_exceeded" | "rate_limit_error" | "tokens" | "requests" => 429,
        "server_error" | "api_error" | "internal_error" => 500,
        "overloaded_error" | "service_unavailable" => 503,
        _ => return None,
    })
}

#[derive(Deserialize)]
struct ChunkWire {
    #[serde(default)]
    choices: Vec<ChoiceWire>,
    #[serde(default)]
    usage: Option<UsageWire>,
}

#[derive(Deserialize)]
struct ChoiceWire {
    #[serde(default)]
    delta: Option<DeltaWire>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct DeltaWire {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<ToolCallWire>,
}

#[derive(Deserialize)]
struct ToolCallWire {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionWire>,
}

#[derive(Deserialize)]
struct FunctionWire {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct UsageWire {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

fn parse_event(event: &SseEvent, redactor: &Redactor) -> Result<Vec<LlmChunk>, LlmError> {
    let value: Value = serde_json::from_str(&event.data)
        .map_err(|error| LlmError::Protocol(format!("stream data is not JSON ({error})")))?;
    if event.event.as_deref() == Some("error") || value.get("error").is_some() {
        return Err(stream_error(value, redactor));
    }
    let chunk: ChunkWire = serde_json::from_value(value)
        .map_err(|error| LlmError::Protocol(format!("unexpected chunk shape ({error})")))?;
    let mut chunks = Vec::new();
    for choice in chunk.choices {
        if let Some(delta) = choice.delta {
            if let Some(text) = delta.content.filter(|text| !text.is_empty()) {
                chunks.push(LlmChunk::Text(text));
            }
            for call in delta.tool_calls {
                let function = call.function;
                let (name, arguments) = match function {
                    Some(f) => (f.name, f.arguments.unwrap_or_default()),
                    None => (None, String::new()),
                };
                chunks.push(LlmChunk::ToolCall(ToolCallDelta {
                    index: call.index,
                    id: call.id,
                    name,
                    arguments,
                }));
            }
        }
        if let Some(reason) = choice.finish_reason {
            chunks.push(LlmChunk::Finish(FinishReason::parse(&reason)));
        }
    }
    if let Some(usage) = chunk.usage {
        chunks.push(LlmChunk::Usage(Usage {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
        }));
    }
    Ok(chunks)
}

/// An error event inside a stream, classified like the HTTP answer it stands for.
fn stream_error(value: Value, redactor: &Redactor) -> LlmError {
    let body = serde_json::from_value::<ErrorEnvelope>(value.clone())
        .map(|envelope| envelope.error)
        .ok();
    let code = body.as_ref().and_then(ErrorBody::label);
    let kind = body
        .as_ref()
        .and_then(|body| body.kind.as_deref().map(Box::<str>::from));
    let status = body
        .as_ref()
        .and_then(ErrorBody::status)
        .or_else(|| code.as_deref().and_then(status_for_code))
        .or_else(|| kind.as_deref().and_then(status_for_code));
    let message = body
        .and_then(|body| body.message)
        .unwrap_or_else(|| value.to_string());
    LlmError::Api {
        status,
        code,
        kind,
        message: redactor.scrub(&message),
        should_retry: None,
        server_delay: None,
        in_stream: true,
    }
}

#[cfg(test)]
mod tests {
    use super::super::http_util::header_map;
    use super::*;

    #[test]
    fn error_bodies_are_classified_and_scrubbed() {
        let redactor = Redactor(Some(ApiKey::new("sk-secret")));
        let body = r#"{"error":{"message":"bad key sk-secret","type":"invalid_request_error","code":"invalid_api_key"}}"#;
        let error = http_error(401, &HeaderMap::new(), body, &redactor);
        assert!(!error.is_transient());
        assert!(!format!("{error} {error:?}").contains("sk-secret"));
        let quota =
            r#"{"error":{"message":"no","type":"insufficient_quota","code":"insufficient_quota"}}"#;
        assert!(!http_error(429, &HeaderMap::new(), quota, &redactor).is_transient());
        let busy = http_error(
            429,
            &header_map(&[("x-should-retry", "false")]),
            "",
            &redactor,
        );
        assert!(!busy.is_transient());
    }

    #[test]
    fn chunks_and_stream_errors_parse() {
        let redactor = Redactor(None);
        let event = |data: &str| SseEvent {
            event: None,
            data: data.to_owned(),
        };
        let tool = r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c1","function":{"name":"add","arguments":"{\"a\""}}]},"finish_reason":null}]}"#;
        assert_eq!(
            parse_event(&event(tool), &redactor).unwrap(),
            [LlmChunk::ToolCall(ToolCallDelta {
                index: 0,
                id: Some("c1".into()),
                name: Some("add".into()),
                arguments: "{\"a\"".into(),
            })]
        );
        let usage = r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#;
        assert_eq!(
            parse_event(&event(usage), &redactor).unwrap(),
            [LlmChunk::Usage(Usage {
                prompt_tokens: 3,
                completion_tokens: 4
            })]
        );
        let overloaded = r#"{"error":{"message":"busy","type":"overloaded_error"}}"#;
        let error = parse_event(&event(overloaded), &redactor).unwrap_err();
        assert!(error.is_transient());
        assert!(matches!(
            error,
            LlmError::Api {
                status: Some(503),
                in_stream: true,
                ..
            }
        ));
        let invalid = r#"{"error":{"message":"bad","type":"invalid_request_error"}}"#;
        assert!(!parse_event(&event(invalid), &redactor)
            .unwrap_err()
            .is_transient());
        assert!(matches!(
            parse_event(&event("not json"), &redactor),
            Err(LlmError::Protocol(_))
        ));
    }
}
