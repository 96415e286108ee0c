//! An in-process OpenAI-compatible chat-completions server that misbehaves on cue.
//!
//! Each request gets the next scripted [`Reply`]: a streamed answer (text or tool calls,
//! with timed gaps) that ends cleanly or badly, an error status with headers, or a
//! connection closed before any response. Every request is recorded with its arrival
//! time, so tests can assert how many attempts were made and when.
//!
//! [`FaultServer::validating`] also checks each request's conversation the way OpenAI
//! does, so a test learns when a client sends tool calls without their results.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Extension;
use serde_json::{json, Value};

use super::random_faults::{self, FaultMix, RandomMode, Served};
use super::server::{event_stream, status_response, Kill, Script, ScriptedServer};

/// One `data:` event of a streamed reply, sent after `gap`.
#[derive(Clone, Debug)]
pub struct SseChunk {
    /// Silence before the event.
    pub gap: Duration,
    /// The event's JSON.
    pub data: Value,
}

/// How a streamed reply ends.
#[derive(Clone, Debug)]
pub enum StreamEnd {
    /// `data: [DONE]`, as it should.
    Done,
    /// The body closes cleanly without `[DONE]`.
    MissingDone,
    /// Half an event, then the connection is aborted.
    Cut,
    /// Nothing more is sent and the connection stays open.
    Stall,
    /// Nothing more is sent for this long, then the body closes without `[DONE]`.
    StallFor(Duration),
    /// An error event (`data: {"error": …}`) with this `error` object, then the body closes.
    ErrorEvent(Value),
}

/// The server's answer to one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// `200` with an SSE body.
    Stream {
        /// Extra headers, such as `x-ratelimit-remaining-tokens`.
        headers: Vec<(String, String)>,
        /// The events.
        chunks: Vec<SseChunk>,
        /// How the body ends.
        end: StreamEnd,
    },
    /// An error status with a JSON body.
    Status {
        /// The status code.
        status: u16,
        /// Extra headers, such as `retry-after`.
        headers: Vec<(String, String)>,
        /// The body.
        body: String,
    },
    /// The connection is closed after the request is read, before any response.
    Reset,
}

impl Reply {
    /// A text answer streamed in `pieces`, `gap` apart, with a finish reason, usage and
    /// `[DONE]`.
    pub fn text(pieces: &[&str], gap: Duration) -> Self {
        let mut chunks: Vec<SseChunk> = pieces
            .iter()
            .map(|piece| SseChunk {
                gap,
                data: choice(json!({ "content": piece }), None),
            })
            .collect();
        chunks.extend(finish("stop"));
        Reply::Stream {
            headers: Vec::new(),
            chunks,
            end: StreamEnd::Done,
        }
    }

    /// A tool call `id` to `name` whose arguments stream in `fragments`, `gap` apart.
    pub fn tool_call(id: &str, name: &str, fragments: &[&str], gap: Duration) -> Self {
        let mut chunks = vec![SseChunk {
            gap,
            data: choice(
                json!({ "tool_calls": [{ "index": 0, "id": id, "type": "function",
                    "function": { "name": name, "arguments": "" } }] }),
                None,
            ),
        }];
        chunks.extend(fragments.iter().map(|fragment| SseChunk {
            gap,
            data: choice(
                json!({ "tool_calls": [{ "index": 0, "function": { "arguments": fragment } }] }),
                None,
            ),
        }));
        chunks.extend(finish("tool_calls"));
        Reply::Stream {
            headers: Vec::new(),
            chunks,
            end: StreamEnd::Done,
        }
    }

    /// The same streamed reply ending with `end` instead; the finish and usage events are
    /// dropped unless the end is [`StreamEnd::Done`] or [`StreamEnd::MissingDone`].
    #[must_use]
    pub fn ending(self, end: StreamEnd) -> Self {
        match self {
            Reply::Stream {
                headers,
                mut chunks,
                ..
            } => {
                if !matches!(end, StreamEnd::Done | StreamEnd::MissingDone) {
                    chunks.truncate(chunks.len().saturating_sub(2));
                }
                Reply::Stream {
                    headers,
                    chunks,
                    end,
                }
            }
            other => other,
        }
    }

    /// The same reply with `name: value` among its headers.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match &mut self {
            Reply::Stream { headers, .. } | Reply::Status { headers, .. } => {
                headers.push((name.into(), value.into()));
            }
            Reply::Reset => {}
        }
        self
    }

    /// The same streamed reply reporting `prompt` and `completion` tokens in its usage
    /// event (10 and 5 unless set).
    #[must_use]
    pub fn usage(mut self, prompt: u64, completion: u64) -> Self {
        if let Reply::Stream { chunks, .. } = &mut self {
            for chunk in chunks.iter_mut() {
                if chunk.data.get("usage").is_some() {
                    chunk.data["usage"] = usage_json(prompt, completion);
                }
            }
        }
        self
    }

    /// `429` with `retry-after: <retry_after>` and an OpenAI-style error body.
    pub fn rate_limited(retry_after: &str) -> Self {
        Reply::Status {
            status: 429,
            headers: vec![("retry-after".into(), retry_after.into())],
            body: error_body("Rate limit reached", "rate_limit_exceeded"),
        }
    }

    /// `status` with an OpenAI-style error body of `code`.
    pub fn status(status: u16, code: &str) -> Self {
        Reply::Status {
            status,
            headers: Vec::new(),
            body: error_body(&format!("fault server: {status}"), code),
        }
    }
}

fn choice(delta: Value, finish_reason: Option<&str>) -> Value {
    json!({
        "id": "chatcmpl-fault",
        "object": "chat.completion.chunk",
        "choices": [{ "index": 0, "delta": delta, "finish_reason": finish_reason }],
    })
}

fn finish(reason: &str) -> [SseChunk; 2] {
    [
        SseChunk {
            gap: Duration::ZERO,
            data: choice(json!({}), Some(reason)),
        },
        SseChunk {
            gap: Duration::ZERO,
            data: json!({ "id": "chatcmpl-fault", "choices": [],
                "usage": usage_json(10, 5) }),
        },
    ]
}

fn usage_json(prompt: u64, completion: u64) -> Value {
    json!({ "prompt_tokens": prompt, "completion_tokens": completion,
        "total_tokens": prompt + completion })
}

fn error_body(message: &str, code: &str) -> String {
    json!({ "error": { "message": message, "type": code, "code": code } }).to_string()
}

/// A request the server received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// When it arrived.
    pub at: Instant,
    /// The `authorization` header, if sent.
    pub authorization: Option<String>,
    /// The JSON body (`Value::Null` when it was not JSON).
    pub body: Value,
}

/// A running fault server on `127.0.0.1`. Dropping it stops the server and closes its
/// connections.
pub struct FaultServer {
    server: ScriptedServer<Reply, RecordedRequest>,
    random: Option<Arc<RandomMode>>,
}

impl FaultServer {
    /// Starts a server on a free port that plays `script`, one reply per request. Requests
    /// past the end get a `400` (permanent, so a test fails fast instead of retrying).
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn start(script: impl IntoIterator<Item = Reply>) -> io::Result<Self> {
        let server = ScriptedServer::start(script, handle).await?;
        Ok(FaultServer {
            server,
            random: None,
        })
    }

    /// Like [`start`](FaultServer::start), but each request's `messages` are checked first,
    /// as OpenAI checks them: every assistant message with `tool_calls` must be followed,
    /// before any other message, by one `tool` message per call, and every `tool` message
    /// must answer such a call. A request that breaks this is recorded and answered
    /// `400 invalid_request_error` naming the message at fault; it takes no reply from the
    /// script.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn validating(script: impl IntoIterator<Item = Reply>) -> io::Result<Self> {
        let server = ScriptedServer::start(script, handle_validating).await?;
        Ok(FaultServer {
            server,
            random: None,
        })
    }

    /// Starts a server in random mode: each request's reply is drawn from `mix` (see
    /// [`FaultMix`]), and what was served is kept under the request's key, the content of
    /// its last message, until [`take_served`](FaultServer::take_served) takes it. A client
    /// that puts an id of its own in that message learns what each of its attempts was
    /// sent. The mode keeps no [`requests`](FaultServer::requests) record, which a long
    /// run would grow without end, and has no script.
    ///
    /// ```
    /// use aegeantic::testing::{FaultMix, FaultServer, RandomFault};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let only_429 = FaultMix::seeded(7)
    ///     .weight(RandomFault::Complete, 0)
    ///     .weight(RandomFault::RateLimited, 1);
    /// let server = FaultServer::random(only_429).await?;
    /// assert!(server.base_url().starts_with("http://127.0.0.1:"));
    /// assert!(server.take_served("nobody asked").is_empty());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn random(mix: FaultMix) -> io::Result<Self> {
        let mode = Arc::new(RandomMode::new(mix));
        let shared = Arc::clone(&mode);
        let handler = move |kill: Extension<Kill>, body: Bytes| {
            let reply = shared.draw(random_faults::key(&body));
            respond(reply, kill)
        };
        let server = ScriptedServer::start(std::iter::empty(), handler).await?;
        Ok(FaultServer {
            server,
            random: Some(mode),
        })
    }

    /// In random mode, what was served to the requests of `key` since the last call, in
    /// order; empty otherwise.
    pub fn take_served(&self, key: &str) -> Vec<Served> {
        self.random
            .as_ref()
            .map_or_else(Vec::new, |mode| mode.take(key))
    }

    /// In random mode, how many keys have replies that [`take_served`](FaultServer::take_served)
    /// has not taken; zero otherwise.
    pub fn untaken_keys(&self) -> usize {
        self.random.as_ref().map_or(0, |mode| mode.untaken())
    }

    /// The API root to give a provider: `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// Appends replies to the script.
    pub fn push(&self, replies: impl IntoIterator<Item = Reply>) {
        self.server.push(replies);
    }

    /// The requests received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.server.requests()
    }
}

/// [`handle`], after refusing a conversation OpenAI would refuse.
async fn handle_validating(
    State(script): State<Arc<Script<Reply, RecordedRequest>>>,
    kill: Extension<Kill>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match check_conversation(&body) {
        Ok(()) => handle(State(script), kill, headers, body).await,
        Err(message) => {
            script.record(record(&headers, &body));
            let body = error_body(&message, "invalid_request_error");
            status_response(400, Vec::new(), body)
        }
    }
}

async fn handle(
    State(script): State<Arc<Script<Reply, RecordedRequest>>>,
    kill: Extension<Kill>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match script.answer(record(&headers, &body)) {
        None => status_response(
            400,
            Vec::new(),
            error_body("fault server: script exhausted", "invalid_request_error"),
        ),
        Some(reply) => respond(reply, kill).await,
    }
}

/// Plays one reply.
async fn respond(reply: Reply, Extension(Kill(kill)): Extension<Kill>) -> Response {
    match reply {
        Reply::Reset => {
            // A stored permit: the connection task sees it even if it is not waiting yet.
            kill.notify_one();
            std::future::pending().await
        }
        Reply::Status {
            status,
            headers,
            body,
        } => status_response(status, headers, body),
        Reply::Stream {
            headers,
            chunks,
            end,
        } => {
            let body = async_stream::stream! {
                for chunk in chunks {
                    if !chunk.gap.is_zero() {
                        tokio::time::sleep(chunk.gap).await;
                    }
                    yield Ok(Bytes::from(format!("data: {}\n\n", chunk.data)));
                }
                match end {
                    StreamEnd::Done => yield Ok(Bytes::from_static(b"data: [DONE]\n\n")),
                    StreamEnd::MissingDone => {}
                    StreamEnd::Cut => {
                        yield Ok(Bytes::from_static(b"data: {\"choices\":[{\"delta\":{\"cont"));
                        // Let hyper flush what came before, so that the cut falls exactly
                        // here; then a body error makes it abort the connection.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        yield Err(io::Error::new(io::ErrorKind::ConnectionAborted, "cut"));
                    }
                    StreamEnd::Stall => std::future::pending::<()>().await,
                    StreamEnd::StallFor(silence) => tokio::time::sleep(silence).await,
                    StreamEnd::ErrorEvent(error) => {
                        yield Ok(Bytes::from(format!("data: {}\n\n", json!({ "error": error }))));
                    }
                }
            };
            event_stream(body, headers)
        }
    }
}

fn record(headers: &HeaderMap, body: &[u8]) -> RecordedRequest {
    RecordedRequest {
        at: Instant::now(),
        authorization: headers
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned),
        body: serde_json::from_slice(body).unwrap_or(Value::Null),
    }
}

/// Whether the request's messages pair each tool call with its result (see
/// [`FaultServer::validating`]); the error says which message is wrong.
fn check_conversation(body: &[u8]) -> Result<(), String> {
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let Some(messages) = body["messages"].as_array() else {
        return Err("the body has no 'messages' array".to_owned());
    };
    // The latest assistant message with calls, and its calls still without a result.
    let mut open: Option<(usize, Vec<&str>)> = None;
    for (index, message) in messages.iter().enumerate() {
        if message["role"] == "tool" {
            let id = message["tool_call_id"].as_str().unwrap_or_default();
            let answered = open.as_mut().and_then(|(_, ids)| {
                let at = ids.iter().position(|open_id| *open_id == id)?;
                Some(ids.swap_remove(at))
            });
            if answered.is_none() {
                return Err(format!(
                    "messages[{index}]: a 'tool' message must answer a call of the \
                     assistant message just before it, and '{id}' is no call left open"
                ));
            }
            continue;
        }
        check_answered(open.take())?;
        if message["role"] == "assistant" {
            if let Some(calls) = message["tool_calls"].as_array() {
                let ids = calls
                    .iter()
                    .map(|call| call["id"].as_str().unwrap_or_default());
                open = Some((index, ids.collect()));
            }
        }
    }
    check_answered(open)
}

/// An assistant message's calls must all have their result before the next message.
fn check_answered(open: Option<(usize, Vec<&str>)>) -> Result<(), String> {
    match open {
        Some((index, ids)) if !ids.is_empty() => Err(format!(
            "messages[{index}]: an assistant message with 'tool_calls' must be followed by \
             a 'tool' message for each call; no result for {}",
            ids.join(", ")
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::check_conversation;
    use serde_json::{json, Value};

    fn check(messages: Value) -> Result<(), String> {
        check_conversation(json!({ "messages": messages }).to_string().as_bytes())
    }

    fn call(ids: &[&str]) -> Value {
        let calls: Vec<Value> = ids
            .iter()
            .map(|id| {
                json!({ "id": id, "type": "function",
                "function": { "name": "add", "arguments": "{}" } })
            })
            .collect();
        json!({ "role": "assistant", "content": null, "tool_calls": calls })
    }

    fn result(id: &str) -> Value {
        json!({ "role": "tool", "content": "5", "tool_call_id": id })
    }

    fn user() -> Value {
        json!({ "role": "user", "content": "hi" })
    }

    #[test]
    fn calls_answered_in_any_order_pass() {
        let messages = json!([user(), call(&["a", "b"]), result("b"), result("a"), user()]);
        assert_eq!(check(messages), Ok(()));
    }

    #[test]
    fn a_call_without_its_result_is_refused() {
        let error = check(json!([user(), call(&["a", "b"]), result("a"), user()])).unwrap_err();
        assert!(error.starts_with("messages[1]:"), "{error}");
        assert!(error.ends_with("no result for b"), "{error}");
        let error = check(json!([user(), call(&["a"])])).unwrap_err();
        assert!(error.ends_with("no result for a"), "{error}");
    }

    #[test]
    fn a_result_without_its_call_is_refused() {
        for messages in [
            json!([user(), result("a")]),
            json!([user(), call(&["a"]), result("b")]),
            json!([user(), call(&["a"]), result("a"), result("a")]),
            json!([user(), call(&["a"]), result("a"), user(), result("a")]),
        ] {
            let error = check(messages).unwrap_err();
            assert!(error.contains("a 'tool' message must answer"), "{error}");
        }
    }

    #[test]
    fn a_body_without_messages_is_refused() {
        assert!(check_conversation(b"not json").is_err());
    }
}
