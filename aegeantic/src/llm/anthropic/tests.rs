use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use serde_json::json;

use super::headers::{parse_rfc3339, quota};
use super::wire::{http_error, request_body, Decoder};
use crate::llm::http_util::{header_map, ApiKey, Redactor, Step};
use crate::llm::sse::SseEvent;
use crate::llm::{
    FinishReason, LlmChunk, LlmError, LlmRequest, Message, QuotaWindow, ToolCall, ToolCallDelta,
    ToolSpec, Usage,
};

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

#[test]
fn rfc3339_timestamps_parse_with_fractions_and_offsets() {
    assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(at(0)));
    assert_eq!(parse_rfc3339("2000-03-01T00:00:00Z"), Some(at(951_868_800)));
    assert_eq!(
        parse_rfc3339("2100-03-01t00:00:00z"),
        Some(at(4_107_542_400))
    );
    assert_eq!(
        parse_rfc3339("2024-02-29T12:30:45.5+02:00"),
        Some(at(1_709_202_645) + Duration::from_millis(500))
    );
    assert_eq!(
        parse_rfc3339(" 1999-12-31T23:59:59-05:30 "),
        Some(at(946_704_599))
    );
    assert_eq!(
        parse_rfc3339("2024-01-01T00:00:00.1234567891Z"),
        Some(at(1_704_067_200) + Duration::from_nanos(123_456_789))
    );
    for bad in [
        "",
        "soon",
        "2023-02-29T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-01-01T24:00:00Z",
        "2024-01-01T00:00:00",
        "2024-01-01T00:00:00.Z",
        "2024-01-01T00:00:00+0200",
        "2024-01-01T00:00:00+02:6é",
        "2024-01-01T00:00:00+99:00",
        "+024-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "2024-01-01é00:00:00Z",
    ] {
        assert_eq!(parse_rfc3339(bad), None, "{bad}");
    }
}

#[test]
fn quota_headers_become_windows_measured_from_now() {
    let now = at(1_700_000_000);
    let all = header_map(&[
        ("anthropic-ratelimit-requests-limit", "50"),
        ("anthropic-ratelimit-requests-remaining", "49"),
        ("anthropic-ratelimit-requests-reset", "2023-11-14T22:13:21Z"),
        ("anthropic-ratelimit-tokens-limit", "90000"),
        ("anthropic-ratelimit-tokens-remaining", "80000"),
        ("anthropic-ratelimit-tokens-reset", "2023-11-14T22:13:00Z"),
        ("anthropic-ratelimit-input-tokens-remaining", "1"),
    ]);
    let quota = quota(&all, now);
    assert_eq!(
        quota.requests,
        Some(QuotaWindow {
            limit: Some(50),
            remaining: 49,
            reset: Some(Duration::from_secs(1)),
        })
    );
    // The tokens window wins over the input one, and a past reset is no wait at all.
    assert_eq!(
        quota.tokens,
        Some(QuotaWindow {
            limit: Some(90000),
            remaining: 80000,
            reset: Some(Duration::ZERO),
        })
    );
    let split = header_map(&[
        ("anthropic-ratelimit-input-tokens-remaining", "500"),
        ("anthropic-ratelimit-output-tokens-remaining", "20"),
        ("anthropic-ratelimit-output-tokens-reset", "not a date"),
    ]);
    let tokens = super::headers::quota(&split, now).tokens.unwrap();
    assert_eq!(
        (tokens.remaining, tokens.limit, tokens.reset),
        (20, None, None)
    );
    assert!(super::headers::quota(&header_map(&[]), now).is_empty());
    let garbage = header_map(&[("anthropic-ratelimit-requests-remaining", "-3")]);
    assert!(super::headers::quota(&garbage, now).is_empty());
}

#[test]
fn requests_map_system_tools_and_tool_results() {
    let call = ToolCall {
        id: "toolu_1".into(),
        name: "add".into(),
        arguments: r#"{"a":1}"#.into(),
    };
    let broken = ToolCall {
        id: "toolu_2".into(),
        name: "add".into(),
        arguments: r#"{"a":"#.into(),
    };
    let mut request = LlmRequest::new(vec![
        Message::system("Be brief."),
        Message::user("add"),
        Message::system("Use tools."),
        Message::assistant("", vec![call, broken]),
        Message::tool_result("toolu_1", "1"),
        Message::tool_result("toolu_2", "invalid arguments"),
        Message::user("thanks"),
    ]);
    request.tools = vec![ToolSpec {
        name: "add".into(),
        description: "Adds".into(),
        parameters: json!({"type": "object"}),
    }];
    let body = request_body(&request, "claude", 99).unwrap();
    assert_eq!(
        body,
        json!({
            "model": "claude",
            "max_tokens": 99,
            "stream": true,
            "system": "Be brief.\n\nUse tools.",
            "messages": [
                {"role": "user", "content": "add"},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "add", "input": {"a": 1}},
                    {"type": "tool_use", "id": "toolu_2", "name": "add", "input": {}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "1"},
                    {"type": "tool_result", "tool_use_id": "toolu_2",
                        "content": "invalid arguments"},
                    {"type": "text", "text": "thanks"},
                ]},
            ],
            "tools": [{"name": "add", "description": "Adds",
                "input_schema": {"type": "object"}}],
        })
    );
    request.model = Some("other".into());
    request.max_tokens = Some(7);
    request.messages = vec![Message::user("hi"), Message::assistant("sure", vec![])];
    let body = request_body(&request, "claude", 99).unwrap();
    assert_eq!(
        (body["model"].as_str(), body["max_tokens"].as_u64()),
        (Some("other"), Some(7))
    );
    assert_eq!(
        body["messages"][1],
        json!({"role": "assistant", "content": "sure"})
    );
    assert!(body.get("system").is_none());

    let mut orphan = Message::tool_result("x", "1");
    orphan.tool_call_id = None;
    let error = request_body(&LlmRequest::new(vec![orphan]), "claude", 1).unwrap_err();
    assert!(matches!(error, LlmError::Config(_)), "{error:?}");
}

fn event(name: &str, data: serde_json::Value) -> SseEvent {
    SseEvent {
        event: Some(name.into()),
        data: data.to_string(),
    }
}

fn decode(decoder: &mut Decoder, name: &str, data: serde_json::Value) -> Vec<LlmChunk> {
    match decoder.decode(&event(name, data), &Redactor(None)).unwrap() {
        Step::Chunks(chunks) => chunks,
        Step::Stop => panic!("unexpected stop"),
    }
}

#[test]
fn stream_events_become_chunks() {
    let mut d = Decoder::default();
    let start = json!({"type": "message_start", "message": {"id": "msg_1", "usage":
        {"input_tokens": 10, "cache_read_input_tokens": 2, "output_tokens": 1}}});
    assert!(decode(&mut d, "message_start", start).is_empty());
    let text = json!({"type": "content_block_start", "index": 0,
        "content_block": {"type": "text", "text": ""}});
    assert!(decode(&mut d, "content_block_start", text).is_empty());
    assert!(decode(&mut d, "ping", json!({"type": "ping"})).is_empty());
    let delta = json!({"type": "content_block_delta", "index": 0,
        "delta": {"type": "text_delta", "text": "Hi"}});
    assert_eq!(
        decode(&mut d, "content_block_delta", delta),
        [LlmChunk::Text("Hi".into())]
    );
    let thinking = json!({"type": "content_block_delta", "index": 0,
        "delta": {"type": "thinking_delta", "thinking": "hmm"}});
    assert!(decode(&mut d, "content_block_delta", thinking).is_empty());
    let tool = json!({"type": "content_block_start", "index": 1, "content_block":
        {"type": "tool_use", "id": "toolu_1", "name": "add", "input": {}}});
    assert_eq!(
        decode(&mut d, "content_block_start", tool),
        [LlmChunk::ToolCall(ToolCallDelta {
            index: 1,
            id: Some("toolu_1".into()),
            name: Some("add".into()),
            arguments: String::new(),
        })]
    );
    let json_delta = |partial: &str| {
        json!({"type": "content_block_delta", "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": partial}})
    };
    assert!(decode(&mut d, "content_block_delta", json_delta("")).is_empty());
    assert_eq!(
        decode(&mut d, "content_block_delta", json_delta("{\"a\"")),
        [LlmChunk::ToolCall(ToolCallDelta {
            index: 1,
            arguments: "{\"a\"".into(),
            ..ToolCallDelta::default()
        })]
    );
    let stop = json!({"type": "content_block_stop", "index": 1});
    assert!(decode(&mut d, "content_block_stop", stop).is_empty());
    let end = json!({"type": "message_delta", "delta": {"stop_reason": "tool_use",
        "stop_sequence": null}, "usage": {"output_tokens": 15}});
    assert_eq!(
        decode(&mut d, "message_delta", end),
        [
            LlmChunk::Finish(FinishReason::ToolCalls),
            LlmChunk::Usage(Usage {
                prompt_tokens: 12,
                completion_tokens: 15
            }),
        ]
    );
    let refusal = json!({"type": "message_delta", "delta": {"stop_reason": "refusal"}});
    assert_eq!(
        decode(&mut d, "message_delta", refusal),
        [LlmChunk::Finish(FinishReason::ContentFilter)]
    );
    assert!(decode(&mut d, "brand_new", json!({"type": "brand_new"})).is_empty());
    let done = event("message_stop", json!({"type": "message_stop"}));
    assert_eq!(d.decode(&done, &Redactor(None)).unwrap(), Step::Stop);
}

#[test]
fn bad_events_and_error_events_are_errors() {
    let redactor = Redactor(Some(ApiKey::new("sk-ant-secret")));
    let mut d = Decoder::default();
    let not_json = SseEvent {
        event: None,
        data: "{oops".into(),
    };
    assert!(matches!(
        d.decode(&not_json, &redactor),
        Err(LlmError::Protocol(_))
    ));
    let array = SseEvent {
        event: Some("ping".into()),
        data: "[1]".into(),
    };
    assert!(matches!(
        d.decode(&array, &redactor),
        Err(LlmError::Protocol(_))
    ));
    let wrong = event(
        "content_block_delta",
        json!({"type": "content_block_delta"}),
    );
    assert!(matches!(
        d.decode(&wrong, &redactor),
        Err(LlmError::Protocol(_))
    ));
    let overloaded = event(
        "error",
        json!({"type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded sk-ant-secret"}}),
    );
    let error = d.decode(&overloaded, &redactor).unwrap_err();
    assert!(error.is_transient());
    assert!(matches!(
        error,
        LlmError::Api {
            status: Some(529),
            in_stream: true,
            ..
        }
    ));
    assert!(!format!("{error} {error:?}").contains("sk-ant-secret"));
    let invalid = event(
        "error",
        json!({"type": "error",
        "error": {"type": "invalid_request_error", "message": "bad"}}),
    );
    assert!(!d.decode(&invalid, &redactor).unwrap_err().is_transient());
    let unknown = event(
        "error",
        json!({"type": "error", "error": {"type": "new_error"}}),
    );
    assert!(d.decode(&unknown, &redactor).unwrap_err().is_transient());
}

#[test]
fn error_statuses_are_classified_and_scrubbed() {
    let redactor = Redactor(Some(ApiKey::new("sk-ant-secret")));
    let body = |kind: &str, message: &str| {
        json!({"type": "error", "error": {"type": kind, "message": message}}).to_string()
    };
    let none = HeaderMap::new();
    let overloaded = http_error(
        529,
        &none,
        &body("overloaded_error", "Overloaded"),
        &redactor,
    );
    assert!(overloaded.is_transient());
    let delayed = http_error(
        429,
        &header_map(&[("retry-after", "3")]),
        &body("rate_limit_error", "slow down"),
        &redactor,
    );
    assert_eq!(delayed.server_delay(), Some(Duration::from_secs(3)));
    assert!(delayed.is_transient());
    for status in [408, 409, 500, 503] {
        assert!(
            http_error(status, &none, "", &redactor).is_transient(),
            "{status}"
        );
    }
    let auth = http_error(
        401,
        &none,
        &body("authentication_error", "key sk-ant-secret"),
        &redactor,
    );
    assert!(!auth.is_transient());
    assert!(
        matches!(&auth, LlmError::Api { code: Some(code), .. } if code == "authentication_error")
    );
    let raw = http_error(400, &none, "<html>sk-ant-secret</html>", &redactor);
    assert!(!raw.is_transient());
    let shown = format!("{auth} {auth:?} {raw} {raw:?}");
    assert!(
        !shown.contains("sk-ant-secret") && shown.contains("<redacted>"),
        "{shown}"
    );
    let vetoed = http_error(
        529,
        &header_map(&[("x-should-retry", "false")]),
        "",
        &redactor,
    );
    assert!(!vetoed.is_transient());
}
