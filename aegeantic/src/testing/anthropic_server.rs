//! An in-process server speaking Anthropic's Messages streaming format, replying from a
//! script: streamed answers (text or tool use, with timed gaps and any response headers)
//! that end cleanly or badly, and error statuses. Every request is recorded with its
//! headers and arrival time.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{json, Value};

use super::server::{event_stream, status_response, Script, ScriptedServer};

/// One event of a streamed reply, sent after `gap`; its SSE name is the data's `type`.
#[derive(Clone, Debug)]
pub struct AnthropicEvent {
    /// Silence before the event.
    pub gap: Duration,
    /// The event's JSON.
    pub data: Value,
}

/// How a streamed reply ends.
#[derive(Clone, Debug)]
pub enum AnthropicEnd {
    /// `message_stop`, as it should.
    Stop,
    /// The body closes cleanly without `message_stop`.
    MissingStop,
    /// An `error` event with this `error` object, then the body closes.
    Error(Value),
    /// Nothing more is sent and the connection stays open.
    Stall,
}

/// The server's answer to one request.
#[derive(Clone, Debug)]
pub enum AnthropicReply {
    /// `200` with an SSE body.
    Stream {
        /// Extra response headers, such as `anthropic-ratelimit-*`.
        headers: Vec<(String, String)>,
        /// The events before the end.
        events: Vec<AnthropicEvent>,
        /// How the body ends.
        end: AnthropicEnd,
    },
    /// An error status.
    Status {
        /// The status code.
        status: u16,
        /// Extra headers, such as `retry-after`.
        headers: Vec<(String, String)>,
        /// The body.
        body: String,
    },
}

fn event(gap: Duration, data: Value) -> AnthropicEvent {
    AnthropicEvent { gap, data }
}

fn start_events() -> Vec<AnthropicEvent> {
    vec![event(
        Duration::ZERO,
        json!({"type": "message_start", "message": {"id": "msg_test", "type": "message",
            "role": "assistant", "content": [], "model": "test-model", "stop_reason": null,
            "usage": {"input_tokens": 10, "output_tokens": 1}}}),
    )]
}

fn text_events(index: u32, pieces: &[&str], gap: Duration) -> Vec<AnthropicEvent> {
    let mut events = vec![
        event(
            Duration::ZERO,
            json!({"type": "content_block_start", "index": index,
                "content_block": {"type": "text", "text": ""}}),
        ),
        event(Duration::ZERO, json!({"type": "ping"})),
    ];
    events.extend(pieces.iter().map(|piece| {
        event(
            gap,
            json!({"type": "content_block_delta", "index": index,
                "delta": {"type": "text_delta", "text": piece}}),
        )
    }));
    events
}

fn finish_events(index: u32, reason: &str) -> [AnthropicEvent; 2] {
    [
        event(
            Duration::ZERO,
            json!({"type": "content_block_stop", "index": index}),
        ),
        event(
            Duration::ZERO,
            json!({"type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": null},
                "usage": {"output_tokens": 5}}),
        ),
    ]
}

/// An Anthropic error body.
fn error_body(kind: &str, message: &str) -> String {
    json!({"type": "error", "error": {"type": kind, "message": message}}).to_string()
}

impl AnthropicReply {
    /// A text answer streamed in `pieces`, `gap` apart: `message_start` (10 input
    /// tokens), one text block with a `ping`, `message_delta` (`end_turn`, 5 output tokens)
    /// and `message_stop`.
    pub fn text(pieces: &[&str], gap: Duration) -> Self {
        let mut events = start_events();
        events.extend(text_events(0, pieces, gap));
        events.extend(finish_events(0, "end_turn"));
        AnthropicReply::Stream {
            headers: Vec::new(),
            events,
            end: AnthropicEnd::Stop,
        }
    }

    /// A text block `Let me check.` (index 0), then a call `id` to `name` (index 1) whose
    /// input JSON streams in `fragments`, `gap` apart, ending with `tool_use`.
    pub fn tool_use(id: &str, name: &str, fragments: &[&str], gap: Duration) -> Self {
        let mut events = start_events();
        events.extend(text_events(0, &["Let me check."], Duration::ZERO));
        events.push(event(
            Duration::ZERO,
            json!({"type": "content_block_stop", "index": 0}),
        ));
        events.push(event(
            gap,
            json!({"type": "content_block_start", "index": 1,
                "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}),
        ));
        events.extend([""].iter().chain(fragments).map(|fragment| {
            event(
                gap,
                json!({"type": "content_block_delta", "index": 1,
                    "delta": {"type": "input_json_delta", "partial_json": fragment}}),
            )
        }));
        events.extend(finish_events(1, "tool_use"));
        AnthropicReply::Stream {
            headers: Vec::new(),
            events,
            end: AnthropicEnd::Stop,
        }
    }

    /// `status` with an Anthropic error body of type `kind`.
    pub fn status(status: u16, kind: &str) -> Self {
        AnthropicReply::Status {
            status,
            headers: Vec::new(),
            body: error_body(kind, &format!("test server: {status}")),
        }
    }

    /// `529 overloaded_error`.
    pub fn overloaded() -> Self {
        Self::status(529, "overloaded_error")
    }

    /// The same reply with these headers added.
    #[must_use]
    pub fn with_headers<N: Into<String>, V: Into<String>>(
        mut self,
        extra: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        let (AnthropicReply::Stream { headers, .. } | AnthropicReply::Status { headers, .. }) =
            &mut self;
        headers.extend(extra.into_iter().map(|(n, v)| (n.into(), v.into())));
        self
    }

    /// The same streamed reply ending with `end` instead. For [`AnthropicEnd::Error`] and
    /// [`AnthropicEnd::Stall`] the last block's stop and `message_delta` are dropped, so
    /// the failure comes mid-answer.
    #[must_use]
    pub fn ending(self, end: AnthropicEnd) -> Self {
        match self {
            AnthropicReply::Stream {
                headers,
                mut events,
                ..
            } => {
                if matches!(end, AnthropicEnd::Error(_) | AnthropicEnd::Stall) {
                    events.truncate(events.len().saturating_sub(2));
                }
                AnthropicReply::Stream {
                    headers,
                    events,
                    end,
                }
            }
            other => other,
        }
    }
}

/// A request the server received.
#[derive(Clone, Debug)]
pub struct AnthropicRequest {
    /// When it arrived.
    pub at: Instant,
    /// Its headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The JSON body (`Value::Null` when it was not JSON).
    pub body: Value,
}

impl AnthropicRequest {
    /// The first value of the header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header == name)
            .map(|(_, value)| value.as_str())
    }
}

/// A running scripted Messages server on `127.0.0.1`. Dropping it stops the server and
/// closes its connections.
pub struct AnthropicServer(ScriptedServer<AnthropicReply, AnthropicRequest>);

impl AnthropicServer {
    /// Starts a server on a free port that plays `script`, one reply per request. Requests
    /// past the end get a `400` (permanent, so a test fails fast instead of retrying).
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn start(script: impl IntoIterator<Item = AnthropicReply>) -> io::Result<Self> {
        ScriptedServer::start(script, handle)
            .await
            .map(AnthropicServer)
    }

    /// The API root to give a provider: `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        self.0.base_url()
    }

    /// Appends replies to the script.
    pub fn push(&self, replies: impl IntoIterator<Item = AnthropicReply>) {
        self.0.push(replies);
    }

    /// The requests received so far, in order.
    pub fn requests(&self) -> Vec<AnthropicRequest> {
        self.0.requests()
    }
}

fn sse(data: &Value) -> Bytes {
    let name = data["type"].as_str().unwrap_or("message");
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

async fn handle(
    State(script): State<Arc<Script<AnthropicReply, AnthropicRequest>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = script.answer(AnthropicRequest {
        at: Instant::now(),
        headers: headers
            .iter()
            .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
            .collect(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    match reply {
        None => status_response(
            400,
            Vec::new(),
            error_body("invalid_request_error", "test server: script exhausted"),
        ),
        Some(AnthropicReply::Status {
            status,
            headers,
            body,
        }) => status_response(status, headers, body),
        Some(AnthropicReply::Stream {
            headers,
            events,
            end,
        }) => {
            let body = async_stream::stream! {
                for event in events {
                    if !event.gap.is_zero() {
                        tokio::time::sleep(event.gap).await;
                    }
                    yield Ok::<_, io::Error>(sse(&event.data));
                }
                match end {
                    AnthropicEnd::Stop => yield Ok(sse(&json!({"type": "message_stop"}))),
                    AnthropicEnd::MissingStop => {}
                    AnthropicEnd::Error(error) => {
                        yield Ok(sse(&json!({"type": "error", "error": error})));
                    }
                    AnthropicEnd::Stall => std::future::pending::<()>().await,
                }
            };
            event_stream(body, headers)
        }
    }
}
