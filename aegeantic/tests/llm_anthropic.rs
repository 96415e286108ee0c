//! The Anthropic provider against a scripted Messages server, over real HTTP on loopback.
//! Real time: bounds are loose enough for a loaded machine, waits are short.
#![cfg(all(feature = "anthropic", feature = "fault-server"))]

#[path = "common/llm.rs"]
mod llm_common;

use std::time::{Duration, SystemTime};

use aegeantic::llm::{
    Anthropic, AnthropicConfig, FinishReason, LlmChunk, LlmError, LlmProvider, LlmRequest, Message,
    ResilientProvider, ToolCallDelta, ToolSpec, Usage,
};
use aegeantic::testing::{AnthropicEnd, AnthropicReply, AnthropicServer};
use futures::StreamExt;
use serde_json::json;

const GAP: Duration = Duration::from_millis(5);
const KEY: &str = "sk-ant-test-0123456789-secret";

fn config(server: &AnthropicServer) -> AnthropicConfig {
    let mut config = AnthropicConfig::new("claude-test")
        .base_url(server.base_url())
        .api_key(KEY)
        .max_tokens(256);
    config.idle_timeout = Duration::from_millis(300);
    config
}

fn provider(server: &AnthropicServer) -> Anthropic {
    Anthropic::new(config(server)).unwrap()
}

fn resilient(server: &AnthropicServer) -> ResilientProvider<Anthropic> {
    ResilientProvider::new(provider(server)).retry(llm_common::retry())
}

fn request() -> LlmRequest {
    LlmRequest::new(vec![Message::system("Be brief."), Message::user("hi")])
}

async fn chunks(provider: &impl LlmProvider) -> Vec<Result<LlmChunk, LlmError>> {
    provider.stream(&request()).collect().await
}

async fn transcript(provider: &ResilientProvider<Anthropic>) -> Vec<String> {
    llm_common::transcript(provider, &request()).await
}

const OK_TAIL: [&str; 4] = ["item:Hel", "item:lo", "fin", "usage"];

fn first_error(items: &[Result<LlmChunk, LlmError>]) -> &LlmError {
    items
        .iter()
        .find_map(|item| item.as_ref().err())
        .expect("an error")
}

#[tokio::test]
async fn streams_text_usage_and_finish_and_sends_the_right_request() {
    let server = AnthropicServer::start([AnthropicReply::text(&["Hel", "lo"], GAP)])
        .await
        .unwrap();
    let items: Vec<_> = chunks(&provider(&server))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        items,
        [
            LlmChunk::Text("Hel".into()),
            LlmChunk::Text("lo".into()),
            LlmChunk::Finish(FinishReason::Stop),
            LlmChunk::Usage(Usage {
                prompt_tokens: 10,
                completion_tokens: 5
            }),
        ]
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let sent = &requests[0];
    assert!(sent.body.get("stream_options").is_none());
    assert_eq!(
        sent.body,
        json!({"model": "claude-test", "max_tokens": 256, "stream": true,
            "system": "Be brief.", "messages": [{"role": "user", "content": "hi"}]})
    );
    assert_eq!(sent.header("x-api-key"), Some(KEY));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.header("authorization"), None);
}

#[tokio::test]
async fn tool_use_streams_its_input_json_in_fragments() {
    let server = AnthropicServer::start([AnthropicReply::tool_use(
        "toolu_01",
        "add",
        &["{\"a\": 1", ", \"b\": 2}"],
        GAP,
    )])
    .await
    .unwrap();
    let mut with_tools = request();
    with_tools.tools = vec![ToolSpec {
        name: "add".into(),
        description: "Adds two numbers".into(),
        parameters: json!({"type": "object", "properties": {"a": {}, "b": {}}}),
    }];
    let items: Vec<_> = provider(&server)
        .stream(&with_tools)
        .map(Result::unwrap)
        .collect()
        .await;
    let fragment = |arguments: &str| {
        LlmChunk::ToolCall(ToolCallDelta {
            index: 1,
            arguments: arguments.into(),
            ..ToolCallDelta::default()
        })
    };
    assert_eq!(
        items,
        [
            LlmChunk::Text("Let me check.".into()),
            LlmChunk::ToolCall(ToolCallDelta {
                index: 1,
                id: Some("toolu_01".into()),
                name: Some("add".into()),
                arguments: String::new(),
            }),
            fragment("{\"a\": 1"),
            fragment(", \"b\": 2}"),
            LlmChunk::Finish(FinishReason::ToolCalls),
            LlmChunk::Usage(Usage {
                prompt_tokens: 10,
                completion_tokens: 5
            }),
        ]
    );
    assert_eq!(
        server.requests()[0].body["tools"],
        json!([{"name": "add", "description": "Adds two numbers",
            "input_schema": {"type": "object", "properties": {"a": {}, "b": {}}}}])
    );
}

#[tokio::test]
async fn rate_limit_headers_arrive_first_as_a_quota_chunk() {
    let in_a_minute = rfc3339(SystemTime::now() + Duration::from_secs(60));
    let server =
        AnthropicServer::start([AnthropicReply::text(&["Hel", "lo"], GAP).with_headers([
            ("anthropic-ratelimit-requests-limit", "50".to_owned()),
            ("anthropic-ratelimit-requests-remaining", "49".to_owned()),
            ("anthropic-ratelimit-requests-reset", in_a_minute.clone()),
            ("anthropic-ratelimit-input-tokens-limit", "40000".to_owned()),
            (
                "anthropic-ratelimit-input-tokens-remaining",
                "39000".to_owned(),
            ),
            ("anthropic-ratelimit-output-tokens-limit", "8000".to_owned()),
            (
                "anthropic-ratelimit-output-tokens-remaining",
                "7000".to_owned(),
            ),
            ("anthropic-ratelimit-output-tokens-reset", in_a_minute),
        ])])
        .await
        .unwrap();
    let items = chunks(&provider(&server)).await;
    let Ok(LlmChunk::Quota(quota)) = &items[0] else {
        panic!("no quota first: {items:?}");
    };
    let requests = quota.requests.unwrap();
    assert_eq!((requests.limit, requests.remaining), (Some(50), 49));
    let reset = requests.reset.unwrap();
    assert!(
        reset > Duration::from_secs(50) && reset <= Duration::from_secs(60),
        "{reset:?}"
    );
    // Output tokens have less left than input tokens: they bind.
    let tokens = quota.tokens.unwrap();
    assert_eq!((tokens.limit, tokens.remaining), (Some(8000), 7000));
    assert!(tokens.reset.is_some());
    assert_eq!(items.len(), 5);
    assert!(items[1..].iter().all(Result::is_ok));
}

/// Formats a time as RFC 3339 in UTC, as Anthropic's reset headers do.
fn rfc3339(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[tokio::test]
async fn overloaded_529_is_transient_and_reads_retry_after() {
    let server =
        AnthropicServer::start([AnthropicReply::overloaded().with_headers([("retry-after", "2")])])
            .await
            .unwrap();
    let items = chunks(&provider(&server)).await;
    assert_eq!(items.len(), 1);
    let error = first_error(&items);
    assert!(
        matches!(error, LlmError::Api { status: Some(529), code: Some(code), in_stream: false, .. }
            if code == "overloaded_error"),
        "{error:?}"
    );
    assert!(error.is_transient());
    assert_eq!(error.server_delay(), Some(Duration::from_secs(2)));
}

#[tokio::test]
async fn an_overloaded_error_event_mid_stream_is_transient() {
    let overloaded = json!({"type": "overloaded_error", "message": "Overloaded"});
    let server = AnthropicServer::start([
        AnthropicReply::text(&["Hel"], GAP).ending(AnthropicEnd::Error(overloaded))
    ])
    .await
    .unwrap();
    let items = chunks(&provider(&server)).await;
    assert_eq!(items[0].as_ref().unwrap(), &LlmChunk::Text("Hel".into()));
    let error = first_error(&items);
    assert!(
        matches!(
            error,
            LlmError::Api {
                status: Some(529),
                in_stream: true,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_transient());
}

#[tokio::test]
async fn a_missing_message_stop_is_a_transient_truncation() {
    let server = AnthropicServer::start([
        AnthropicReply::text(&["Hel", "lo"], GAP).ending(AnthropicEnd::MissingStop)
    ])
    .await
    .unwrap();
    let items = chunks(&provider(&server)).await;
    assert_eq!(items.len(), 5, "all four chunks arrive before the error");
    let error = items[4].as_ref().unwrap_err();
    assert!(matches!(error, LlmError::Truncated(_)), "{error:?}");
    assert!(error.is_transient());
}

#[tokio::test]
async fn a_stalled_stream_fails_after_the_idle_timeout() {
    let server =
        AnthropicServer::start([AnthropicReply::text(&["Hel"], GAP).ending(AnthropicEnd::Stall)])
            .await
            .unwrap();
    let items = chunks(&provider(&server)).await;
    let error = first_error(&items);
    assert!(matches!(error, LlmError::Idle(..)), "{error:?}");
    assert!(error.is_transient());
}

#[tokio::test]
async fn a_400_is_permanent_and_not_retried() {
    let server = AnthropicServer::start([
        AnthropicReply::status(400, "invalid_request_error"),
        AnthropicReply::text(&["never"], GAP),
    ])
    .await
    .unwrap();
    assert_eq!(transcript(&resilient(&server)).await, ["err:1"]);
    assert_eq!(server.requests().len(), 1);
    // The reply meant for a retry is still there.
    let items = chunks(&provider(&server)).await;
    assert_eq!(items.len(), 3);
    assert!(items.iter().all(Result::is_ok));
}

#[tokio::test]
async fn a_529_then_success_is_retried_by_the_resilient_provider() {
    let overloaded = json!({"type": "overloaded_error", "message": "Overloaded"});
    let server = AnthropicServer::start([
        AnthropicReply::overloaded(),
        AnthropicReply::text(&["Hel", "lo"], GAP),
        AnthropicReply::text(&["Hel"], GAP).ending(AnthropicEnd::Error(overloaded)),
        AnthropicReply::text(&["Hel", "lo"], GAP).ending(AnthropicEnd::MissingStop),
        AnthropicReply::text(&["Hel", "lo"], GAP),
    ])
    .await
    .unwrap();
    let items = transcript(&resilient(&server)).await;
    assert_eq!(items[0], "retry:1(0)");
    assert_eq!(items[1..], OK_TAIL);
    assert_eq!(server.requests().len(), 2);
    // Mid-stream failures too: the attempt starts over, saying how much to discard.
    let items = transcript(&resilient(&server)).await;
    assert_eq!(items[..2], ["item:Hel", "retry:1(1)"]);
    assert_eq!(items[2..6], OK_TAIL);
    assert_eq!(items[6], "retry:2(4)");
    assert_eq!(items[7..], OK_TAIL);
    assert_eq!(server.requests().len(), 5);
}

#[tokio::test]
async fn the_api_key_never_shows() {
    let echo = json!({"type": "authentication_error",
        "message": format!("invalid x-api-key: {KEY}")});
    let server = AnthropicServer::start([
        AnthropicReply::Status {
            status: 401,
            headers: vec![],
            body: json!({"type": "error", "error": echo}).to_string(),
        },
        AnthropicReply::text(&["Hel"], GAP).ending(AnthropicEnd::Error(echo.clone())),
        AnthropicReply::Status {
            status: 500,
            headers: vec![],
            body: format!("<html>proxy error for key {KEY}</html>"),
        },
    ])
    .await
    .unwrap();
    let provider = ResilientProvider::new(provider(&server));
    let mut seen = format!("{:?} {:?}", provider.inner(), provider.inner().config());
    for _ in 0..3 {
        let mut stream = provider.stream_events(&request());
        while let Some(item) = stream.next().await {
            seen.push_str(&format!("{item:?}"));
            if let Err(error) = &item {
                seen.push_str(&format!("{error} {:?}", error.operation_error()));
                let mut source = std::error::Error::source(error);
                while let Some(cause) = source {
                    seen.push_str(&format!("{cause} {cause:?}"));
                    source = cause.source();
                }
            }
        }
    }
    assert!(seen.contains("<redacted>"), "{seen}");
    assert!(seen.contains("invalid x-api-key"), "{seen}");
    assert!(seen.contains("proxy error"), "{seen}");
    assert!(!seen.contains(KEY), "{seen}");
    assert!(!seen.contains("0123456789"), "{seen}");
}
