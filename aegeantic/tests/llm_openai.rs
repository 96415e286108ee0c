//! The OpenAI-compatible provider against the fault server, over real HTTP on loopback.
//! Real time: bounds are loose enough for a loaded machine, waits are short.
#![cfg(all(feature = "openai", feature = "fault-server"))]

#[path = "common/llm.rs"]
mod llm_common;

use std::time::{Duration, Instant};

use aegeantic::llm::{
    FinishReason, LlmChunk, LlmError, LlmProvider, LlmRequest, Message, OpenAiCompatible,
    OpenAiConfig, ResilientProvider, Usage,
};
use aegeantic::resilience::{RateLimitConfig, RateLimiter};
use aegeantic::testing::{FaultServer, Reply, StreamEnd};
use futures::StreamExt;
use serde_json::json;

const GAP: Duration = Duration::from_millis(5);
const KEY: &str = "sk-test-0123456789-secret";

fn provider(server: &FaultServer) -> OpenAiCompatible {
    let mut config = OpenAiConfig::new(server.base_url(), "fault-model").api_key(KEY);
    config.idle_timeout = Duration::from_millis(300);
    OpenAiCompatible::new(config).unwrap()
}

fn resilient(server: &FaultServer) -> ResilientProvider<OpenAiCompatible> {
    ResilientProvider::new(provider(server)).retry(llm_common::retry())
}

fn request() -> LlmRequest {
    LlmRequest::new(vec![Message::user("hi")])
}

async fn chunks(provider: &impl LlmProvider) -> Vec<Result<LlmChunk, LlmError>> {
    provider.stream(&request()).collect().await
}

async fn transcript(provider: &ResilientProvider<OpenAiCompatible>) -> Vec<String> {
    llm_common::transcript(provider, &request()).await
}

fn ok_tail() -> [&'static str; 4] {
    ["item:Hel", "item:lo", "fin", "usage"]
}

#[tokio::test]
async fn streams_text_usage_and_finish_and_sends_the_right_request() {
    let server = FaultServer::start([Reply::text(&["Hel", "lo"], GAP)])
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
    let body = &requests[0].body;
    assert_eq!(body["stream"], json!(true));
    assert_eq!(body["stream_options"]["include_usage"], json!(true));
    assert_eq!(body["model"], json!("fault-model"));
    assert_eq!(
        body["messages"][0],
        json!({"role": "user", "content": "hi"})
    );
    assert_eq!(
        requests[0].authorization.as_deref(),
        Some(&*format!("Bearer {KEY}"))
    );
}

#[tokio::test]
async fn rate_limited_429_reads_retry_after_and_is_retried() {
    let server = FaultServer::start([
        Reply::rate_limited("1"),
        Reply::rate_limited("0"),
        Reply::text(&["Hel", "lo"], GAP),
    ])
    .await
    .unwrap();
    let first = chunks(&provider(&server)).await;
    let error = first[0].as_ref().unwrap_err();
    assert!(
        matches!(
            error,
            LlmError::Api {
                status: Some(429),
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(error.server_delay(), Some(Duration::from_secs(1)));
    assert!(error.is_transient());

    let items = transcript(&resilient(&server)).await;
    assert_eq!(items[0], "retry:1(0)");
    assert_eq!(items[1..], ok_tail());
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn server_errors_are_retried_with_back_off() {
    let server = FaultServer::start([
        Reply::status(500, "server_error"),
        Reply::status(503, "service_unavailable"),
        Reply::text(&["Hel", "lo"], GAP),
    ])
    .await
    .unwrap();
    let items = transcript(&resilient(&server)).await;
    assert_eq!(items[..2], ["retry:1(0)", "retry:2(0)"]);
    assert_eq!(items[2..], ok_tail());
    let at: Vec<Instant> = server.requests().iter().map(|r| r.at).collect();
    // Back-off of 10 ms then 20 ms: the attempts cannot be closer than that.
    assert!(at[1] - at[0] >= Duration::from_millis(10));
    assert!(at[2] - at[1] >= Duration::from_millis(20));
}

#[tokio::test]
async fn permanent_errors_are_not_retried() {
    for reply in [
        Reply::status(400, "invalid_request_error"),
        Reply::Status {
            status: 429,
            headers: vec![("retry-after".into(), "1".into())],
            body: json!({"error": {"message": "You exceeded your current quota",
                "type": "insufficient_quota", "code": "insufficient_quota"}})
            .to_string(),
        },
        Reply::Status {
            status: 429,
            headers: vec![],
            body: json!({"error": {"message":
                "Request too large for gpt-4o on tokens per min (TPM): Limit 30000, Requested 50000.",
                "type": "tokens", "code": "rate_limit_exceeded"}})
            .to_string(),
        },
        Reply::Status {
            status: 503,
            headers: vec![("x-should-retry".into(), "false".into())],
            body: String::new(),
        },
    ] {
        let server = FaultServer::start([reply, Reply::text(&["never"], GAP)]).await.unwrap();
        let items = transcript(&resilient(&server)).await;
        assert_eq!(items, ["err:1"]);
        assert_eq!(server.requests().len(), 1);
    }
}

#[tokio::test]
async fn x_should_retry_true_overrides_a_4xx() {
    let server = FaultServer::start([
        Reply::Status {
            status: 400,
            headers: vec![("x-should-retry".into(), "true".into())],
            body: String::new(),
        },
        Reply::text(&["Hel", "lo"], GAP),
    ])
    .await
    .unwrap();
    let items = transcript(&resilient(&server)).await;
    assert_eq!(items[0], "retry:1(0)");
    assert_eq!(items[1..], ok_tail());
}

#[tokio::test]
async fn connection_reset_before_headers_is_transient() {
    let server = FaultServer::start([Reply::Reset, Reply::text(&["Hel", "lo"], GAP)])
        .await
        .unwrap();
    let first = chunks(&provider(&server)).await;
    let error = first[0].as_ref().unwrap_err();
    assert!(matches!(error, LlmError::Connection(_)), "{error:?}");
    assert!(error.is_transient());

    server.push([Reply::Reset, Reply::text(&["Hel", "lo"], GAP)]);
    // The first reply of the script was already consumed above.
    let items = transcript(&resilient(&server)).await;
    assert_eq!(items, ok_tail());
    let items = transcript(&resilient(&server)).await;
    assert_eq!(items[0], "retry:1(0)");
    assert_eq!(items[1..], ok_tail());
}

#[tokio::test]
async fn a_body_cut_mid_way_is_retried_from_the_beginning() {
    let server = FaultServer::start([
        Reply::text(&["Hel", "lo"], GAP).ending(StreamEnd::Cut),
        Reply::text(&["Hel", "lo"], GAP),
    ])
    .await
    .unwrap();
    let items = transcript(&resilient(&server)).await;
    assert_eq!(items[..3], ["item:Hel", "item:lo", "retry:1(2)"]);
    assert_eq!(items[3..], ok_tail());
}

#[tokio::test]
async fn a_missing_done_is_a_transient_truncation() {
    let server = FaultServer::start([
        Reply::text(&["Hel", "lo"], GAP).ending(StreamEnd::MissingDone),
        Reply::text(&["Hel", "lo"], GAP),
    ])
    .await
    .unwrap();
    let first = chunks(&provider(&server)).await;
    let error = first.last().unwrap().as_ref().unwrap_err();
    assert!(matches!(error, LlmError::Truncated(_)), "{error:?}");
    assert!(error.is_transient());
    assert_eq!(first.len(), 5, "all four chunks arrive before the error");
    server.push([
        Reply::text(&["Hel", "lo"], GAP).ending(StreamEnd::MissingDone),
        Reply::text(&["Hel", "lo"], GAP),
    ]);
    let items = transcript(&resilient(&server)).await;
    // The first reply was the leftover success from the script.
    assert_eq!(items, ok_tail());
    let items = transcript(&resilient(&server)).await;
    assert_eq!(items[4], "retry:1(4)");
}

#[tokio::test]
async fn a_stalled_stream_fails_after_the_idle_timeout_and_is_retried() {
    let server = FaultServer::start([
        Reply::text(&["Hel", "lo"], GAP).ending(StreamEnd::Stall),
        Reply::text(&["Hel", "lo"], GAP),
    ])
    .await
    .unwrap();
    let started = Instant::now();
    let first = chunks(&provider(&server)).await;
    let elapsed = started.elapsed();
    let error = first.last().unwrap().as_ref().unwrap_err();
    assert!(matches!(error, LlmError::Idle(..)), "{error:?}");
    assert!(error.is_transient());
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    server.push([
        Reply::text(&["Hel", "lo"], GAP).ending(StreamEnd::Stall),
        Reply::text(&["Hel", "lo"], GAP),
    ]);
    assert_eq!(transcript(&resilient(&server)).await, ok_tail());
    let items = transcript(&resilient(&server)).await;
    assert_eq!(items[..3], ["item:Hel", "item:lo", "retry:1(2)"]);
    assert_eq!(items[3..], ok_tail());
}

#[tokio::test]
async fn in_stream_error_events_are_classified_like_their_http_twin() {
    let overloaded = json!({"message": "Overloaded", "type": "overloaded_error"});
    let invalid = json!({"message": "bad tool schema", "type": "invalid_request_error"});
    let server = FaultServer::start([
        Reply::text(&["Hel"], GAP).ending(StreamEnd::ErrorEvent(overloaded)),
        Reply::text(&["Hel", "lo"], GAP),
        Reply::text(&["Hel"], GAP).ending(StreamEnd::ErrorEvent(invalid)),
        Reply::text(&["never"], GAP),
    ])
    .await
    .unwrap();
    let items = transcript(&resilient(&server)).await;
    assert_eq!(items[..2], ["item:Hel", "retry:1(1)"]);
    assert_eq!(items[2..], ok_tail());
    let items = transcript(&resilient(&server)).await;
    assert_eq!(items, ["item:Hel", "err:1"]);
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn a_rate_limiter_emits_an_event_per_attempt() {
    let server = FaultServer::start([
        Reply::status(502, "server_error"),
        Reply::text(&["Hel", "lo"], GAP),
    ])
    .await
    .unwrap();
    let limiter = RateLimiter::new(RateLimitConfig {
        requests_per_second: Some(100.0),
        burst_size: 5,
        ..RateLimitConfig::default()
    })
    .unwrap();
    let provider = resilient(&server).rate_limiter(limiter);
    let items = transcript(&provider).await;
    assert_eq!(items[..3], ["rate", "retry:1(0)", "rate"]);
    assert_eq!(items[3..], ok_tail());
}

#[tokio::test]
async fn the_api_key_never_shows() {
    let echo = json!({"error": {"message": format!("Incorrect API key provided: {KEY}."),
        "type": "invalid_request_error", "code": "invalid_api_key"}});
    let server = FaultServer::start([
        Reply::Status {
            status: 401,
            headers: vec![],
            body: echo.to_string(),
        },
        Reply::text(&["Hel"], GAP).ending(StreamEnd::ErrorEvent(echo["error"].clone())),
        Reply::Reset,
    ])
    .await
    .unwrap();
    let provider = resilient(&server);
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
    assert!(seen.contains("Incorrect API key"), "{seen}");
    assert!(!seen.contains(KEY), "{seen}");
    assert!(!seen.contains("0123456789"), "{seen}");
}

/// An answer whose error event is `error`, after one piece of text.
fn failing_mid_stream(error: serde_json::Value) -> Reply {
    Reply::text(&["Hel"], GAP).ending(StreamEnd::ErrorEvent(error))
}

#[tokio::test]
async fn an_in_stream_error_with_a_numeric_string_code_has_that_status() {
    // The shape OpenAI-compatible proxies send: the status as a string in `code`.
    let invalid = json!({"message": "bad role", "type": "invalid_request_error", "code": "400"});
    let server = FaultServer::start([failing_mid_stream(invalid.clone())])
        .await
        .unwrap();
    let items = chunks(&provider(&server)).await;
    let error = items.last().unwrap().as_ref().unwrap_err();
    assert!(
        matches!(error, LlmError::Api { status: Some(400), code: Some(code), kind: Some(kind), in_stream: true, .. }
            if code == "invalid_request_error" && &**kind == "invalid_request_error"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "stream error event 400 invalid_request_error: bad role"
    );

    server.push([failing_mid_stream(invalid), Reply::text(&["never"], GAP)]);
    assert_eq!(transcript(&resilient(&server)).await, ["item:Hel", "err:1"]);
    assert_eq!(server.requests().len(), 2);

    // A numeric code of a transient status is retried, like its HTTP twin.
    let busy = json!({"message": "busy", "type": "server_error", "code": "503"});
    let server = FaultServer::start([failing_mid_stream(busy), Reply::text(&["Hel", "lo"], GAP)])
        .await
        .unwrap();
    let items = transcript(&resilient(&server)).await;
    assert_eq!(items[..2], ["item:Hel", "retry:1(1)"]);
    assert_eq!(items[2..], ok_tail());
}

#[tokio::test]
async fn request_errors_are_never_retried_whatever_their_code() {
    let cases = [
        ("invalid_request_error", json!("500")),
        ("invalid_request_error", json!("invalid_value")),
        ("authentication_error", json!(503)),
        ("permission_error", json!("rate_limit_exceeded")),
        ("not_found_error", json!("502")),
        ("insufficient_quota", json!("429")),
    ];
    for (kind, code) in cases {
        let error = json!({"message": "no", "type": kind, "code": code});
        let server = FaultServer::start([failing_mid_stream(error), Reply::text(&["never"], GAP)])
            .await
            .unwrap();
        let items = transcript(&resilient(&server)).await;
        assert_eq!(items, ["item:Hel", "err:1"], "{kind} {code}");
        assert_eq!(server.requests().len(), 1, "{kind} {code}");
    }
}

#[tokio::test]
async fn a_finished_stream_without_done_is_accepted_when_configured() {
    let server = FaultServer::start([
        Reply::text(&["Hel", "lo"], GAP).ending(StreamEnd::MissingDone),
        Reply::text(&["Hel", "lo"], GAP).ending(StreamEnd::MissingDone),
    ])
    .await
    .unwrap();
    let accepting = |server: &FaultServer| {
        let mut config =
            OpenAiConfig::new(server.base_url(), "fault-model").accept_missing_done(true);
        config.idle_timeout = Duration::from_millis(300);
        OpenAiCompatible::new(config).unwrap()
    };
    let items: Vec<LlmChunk> = chunks(&accepting(&server))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(items.len(), 4, "{items:?}");
    assert!(matches!(items[2], LlmChunk::Finish(FinishReason::Stop)));
    let provider = ResilientProvider::new(accepting(&server)).retry(llm_common::retry());
    assert_eq!(
        llm_common::transcript(&provider, &request()).await,
        ok_tail()
    );

    // A body that ends before the finish reason is still cut short.
    let Reply::Stream {
        headers,
        chunks: events,
        ..
    } = Reply::text(&["Hel", "lo"], GAP).ending(StreamEnd::Cut)
    else {
        unreachable!("a text reply streams")
    };
    let unfinished = Reply::Stream {
        headers,
        chunks: events,
        end: StreamEnd::MissingDone,
    };
    let server = FaultServer::start([unfinished]).await.unwrap();
    let items = chunks(&accepting(&server)).await;
    let error = items.last().unwrap().as_ref().unwrap_err();
    assert!(matches!(error, LlmError::Truncated(_)), "{error:?}");
}
