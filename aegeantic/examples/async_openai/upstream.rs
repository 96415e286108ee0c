//! The simulated upstream's replies: streamed chunks shaped as OpenAI sends them, with the
//! `created` and `model` fields async-openai requires.

use std::time::Duration;

use aegeantic::testing::{Reply, SseChunk, StreamEnd};
use serde_json::{json, Value};

/// The model the example asks for.
pub const MODEL: &str = "gpt-4o-mini";

/// `pieces` streamed `gap` apart, then `end`; a finish event comes before it when `end`
/// is [`StreamEnd::Done`] or [`StreamEnd::MissingDone`] (the answer was complete).
pub fn answer(pieces: &[&str], gap: Duration, end: StreamEnd) -> Reply {
    let mut chunks: Vec<SseChunk> = pieces
        .iter()
        .map(|piece| SseChunk {
            gap,
            data: chunk(json!({ "content": piece }), Value::Null),
        })
        .collect();
    if matches!(end, StreamEnd::Done | StreamEnd::MissingDone) {
        chunks.push(SseChunk {
            gap: Duration::ZERO,
            data: chunk(json!({}), json!("stop")),
        });
    }
    Reply::Stream {
        headers: Vec::new(),
        chunks,
        end,
    }
}

fn chunk(delta: Value, finish_reason: Value) -> Value {
    json!({
        "id": "chatcmpl-example",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [{ "index": 0, "delta": delta, "finish_reason": finish_reason }],
    })
}
