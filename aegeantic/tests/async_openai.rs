//! async-openai's streaming chat call under `resilient_stream`, with the example's
//! classifier and HTTP service, and with aegeantic's tower layers in its HTTP service hook,
//! against the fault server over real HTTP on loopback. Real time: bounds are loose enough
//! for a loaded machine, waits are short.

#[path = "../examples/async_openai/chat.rs"]
mod chat;
#[path = "../examples/async_openai/tower_stack.rs"]
mod tower_stack;
#[path = "../examples/async_openai/upstream.rs"]
mod upstream;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aegeantic::resilience::{
    resilient_stream, Classify, ConcurrencyLimiter, Event, RateLimitConfig, RateLimiter,
    ResilienceError, Resilient, RetryConfig, RetryDecision, RetryOn,
};
use aegeantic::testing::{FaultServer, Reply, StreamEnd};
use async_openai::config::OpenAIConfig;
use async_openai::error::{ApiError, ApiErrorResponse, OpenAIError};
use async_openai::types::chat::{
    ChatCompletionRequestUserMessage, CreateChatCompletionRequest, CreateChatCompletionRequestArgs,
};
use async_openai::Client;
use chat::ChatError;
use futures::StreamExt;
use http::StatusCode;

const GAP: Duration = Duration::from_millis(5);
const PIECES: [&str; 4] = ["The ", "quick ", "brown ", "fox."];

/// What one call through `resilient_stream` produced.
struct Outcome {
    text: String,
    retries: Vec<aegeantic::events::RetryEvent>,
    /// What each rate-limit event said was left in the bucket.
    tokens_left: Vec<f64>,
    result: Result<(), ResilienceError<ChatError>>,
}

fn request() -> CreateChatCompletionRequest {
    CreateChatCompletionRequestArgs::default()
        .model(upstream::MODEL)
        .messages([ChatCompletionRequestUserMessage::from("hi").into()])
        .build()
        .unwrap()
}

fn config(base_url: String) -> OpenAIConfig {
    OpenAIConfig::new()
        .with_api_base(base_url)
        .with_api_key("sk-test")
}

fn retry(max_attempts: u32) -> RetryConfig {
    RetryConfig::builder()
        .max_attempts(max_attempts)
        .base_delay(Duration::from_millis(20))
        .retry_on(RetryOn::classified::<ChatError>())
        .build()
        .unwrap()
}

async fn run(client: Client<OpenAIConfig>, retry: RetryConfig, limiter: RateLimiter) -> Outcome {
    let request = request();
    let open = move || chat::open(&client, &request);
    let stream = resilient_stream(open, Some(retry), Some(limiter), upstream::MODEL, "llm");
    let mut stream = std::pin::pin!(stream);
    let mut outcome = Outcome {
        text: String::new(),
        retries: Vec::new(),
        tokens_left: Vec::new(),
        result: Ok(()),
    };
    while let Some(item) = stream.next().await {
        match item {
            Ok(Resilient::Item(chunk)) => outcome.text.push_str(chat::text(&chunk)),
            Ok(Resilient::Retry(event)) => {
                outcome.text.clear();
                outcome.retries.push(event);
            }
            Ok(Resilient::RateLimit(event)) => outcome.tokens_left.push(event.tokens_remaining),
            Ok(_) => {}
            Err(error) => outcome.result = Err(error),
        }
    }
    outcome
}

fn limiter() -> RateLimiter {
    RateLimiter::new(RateLimitConfig {
        requests_per_second: Some(50.0),
        burst_size: 5,
        ..RateLimitConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn a_429_is_waited_and_a_cut_stream_retried_from_the_start() {
    let server = FaultServer::start([
        Reply::rate_limited("1"),
        upstream::answer(&PIECES[..3], GAP, StreamEnd::Cut),
        upstream::answer(&PIECES, GAP, StreamEnd::Done),
    ])
    .await
    .unwrap();
    // Burst 5, 2 a second: without the drain the 429 asks for, the second attempt would
    // leave about 4 tokens to everyone sharing the limiter.
    let shared = RateLimiter::new(RateLimitConfig {
        requests_per_second: Some(2.0),
        burst_size: 5,
        ..RateLimitConfig::default()
    })
    .unwrap();
    let client = chat::client(config(server.base_url()));
    let outcome = run(client, retry(4), shared).await;

    outcome.result.unwrap();
    assert_eq!(outcome.text, "The quick brown fox.");
    let [first, after_429, _] = outcome.tokens_left[..] else {
        panic!(
            "a token before each of the three attempts: {:?}",
            outcome.tokens_left
        );
    };
    assert!((3.9..=4.1).contains(&first), "{first}");
    assert!(
        after_429 < 2.0,
        "the 429 did not drain the shared limiter: {after_429}"
    );
    let [busy, cut] = &outcome.retries[..] else {
        panic!("two retries expected, got {:?}", outcome.retries);
    };
    assert_eq!((busy.attempt, busy.items_delivered), (1, 0));
    assert!(busy.server_directed, "{busy:?}");
    assert!((1.0..=1.2).contains(&busy.next_delay_seconds), "{busy:?}");
    assert!(busy.error.contains("429"), "{}", busy.error);
    assert_eq!((cut.attempt, cut.items_delivered), (2, 3));
    assert!(!cut.server_directed, "{cut:?}");
    assert!(cut.error.contains("stream failed"), "{}", cut.error);

    let requests = server.requests();
    assert_eq!(
        requests.len(),
        3,
        "async-openai's own retry must be out of the way"
    );
    let waited = requests[1].at.duration_since(requests[0].at);
    assert!(
        waited >= Duration::from_secs(1),
        "Retry-After not honoured: {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "{waited:?}");
}

#[tokio::test]
async fn a_5xx_and_a_connection_closed_before_the_response_are_retried() {
    let server = FaultServer::start([
        Reply::status(503, "server_error"),
        Reply::Reset,
        upstream::answer(&PIECES, GAP, StreamEnd::Done),
    ])
    .await
    .unwrap();
    let outcome = run(chat::client(config(server.base_url())), retry(4), limiter()).await;

    outcome.result.unwrap();
    assert_eq!(outcome.text, "The quick brown fox.");
    let errors: Vec<&str> = outcome.retries.iter().map(|e| e.error.as_str()).collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].contains("503"), "{errors:?}");
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn a_refused_connection_is_retried_until_the_attempts_run_out() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
    drop(listener);
    let outcome = run(chat::client(config(base_url)), retry(3), limiter()).await;

    assert_eq!(outcome.retries.len(), 2);
    match outcome.result {
        Err(ResilienceError::Operation {
            attempts: 3,
            source,
        }) => {
            assert!(
                matches!(source, ChatError::Call(OpenAIError::Reqwest(ref e)) if e.is_connect()),
                "{source:?}"
            );
        }
        other => panic!(
            "expected the connection failure after 3 attempts: {:?}",
            other.err()
        ),
    }
}

#[tokio::test]
async fn permanent_errors_are_not_retried_even_when_the_server_says_retry() {
    let quota = Reply::Status {
        status: 429,
        headers: vec![("retry-after".into(), "1".into())],
        body: r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#.into(),
    };
    let statuses = [400, 401, 403, 404].map(|status| {
        Reply::status(status, "invalid_request_error").header("x-should-retry", "true")
    });
    for reply in statuses.into_iter().chain([quota]) {
        let server = FaultServer::start([reply.clone()]).await.unwrap();
        let outcome = run(chat::client(config(server.base_url())), retry(4), limiter()).await;

        assert!(
            outcome.retries.is_empty(),
            "{reply:?}: {:?}",
            outcome.retries
        );
        assert_eq!(server.requests().len(), 1, "{reply:?}");
        match outcome.result {
            Err(ResilienceError::Operation {
                attempts: 1,
                source,
            }) => {
                let ChatError::Call(OpenAIError::Boxed(error)) = &source else {
                    panic!("{reply:?}: not the service's error: {source:?}");
                };
                let refused = error.downcast_ref::<chat::Refused>().unwrap();
                assert!(refused.http.status.is_client_error(), "{refused:?}");
                assert!(!refused.api.message.is_empty(), "{refused:?}");
            }
            other => panic!(
                "{reply:?}: expected a failure after 1 attempt: {:?}",
                other.err()
            ),
        }
    }
}

#[test]
fn without_the_service_statuses_are_classified_with_back_off() {
    let api_error = |status: u16, kind: &str| {
        ChatError::Call(OpenAIError::ApiError(ApiErrorResponse {
            status_code: StatusCode::from_u16(status).unwrap(),
            api_error: ApiError {
                message: "m".into(),
                r#type: Some(kind.into()),
                ..ApiError::default()
            },
        }))
    };
    for status in [429, 500, 502, 503] {
        let decision = api_error(status, "server_error").classify();
        assert_eq!(decision, Some(RetryDecision::Retry), "{status}");
    }
    for status in [400, 401, 403, 404, 422] {
        let decision = api_error(status, "invalid_request_error").classify();
        assert_eq!(decision, Some(RetryDecision::DoNotRetry), "{status}");
    }
    let quota = api_error(429, "insufficient_quota").classify();
    assert_eq!(quota, Some(RetryDecision::DoNotRetry));
    let invalid = ChatError::Call(OpenAIError::InvalidArgument("no model".into())).classify();
    assert_eq!(invalid, Some(RetryDecision::DoNotRetry));
}

/// async-openai ends its stream quietly when the body closes without `[DONE]`; the
/// example's `open` tells a cut from the end of the answer by the finish reason.
#[tokio::test]
async fn a_body_closed_before_the_finish_reason_is_retried() {
    let cut = match upstream::answer(&PIECES[..2], GAP, StreamEnd::MissingDone) {
        // The same body without its finish event: closed cleanly, but mid-answer.
        Reply::Stream {
            headers,
            mut chunks,
            end,
        } => {
            chunks.pop();
            Reply::Stream {
                headers,
                chunks,
                end,
            }
        }
        other => other,
    };
    let server = FaultServer::start([cut, upstream::answer(&PIECES, GAP, StreamEnd::MissingDone)])
        .await
        .unwrap();
    let outcome = run(chat::client(config(server.base_url())), retry(4), limiter()).await;

    outcome.result.unwrap();
    assert_eq!(outcome.text, "The quick brown fox.");
    let [truncated] = &outcome.retries[..] else {
        panic!("one retry expected, got {:?}", outcome.retries);
    };
    assert_eq!(truncated.items_delivered, 2);
    assert!(
        truncated.error.contains("before a finish reason"),
        "{}",
        truncated.error
    );
    assert_eq!(server.requests().len(), 2);
}

/// A client with the tower layers in its hook, and what their observer saw.
struct Hooked {
    client: Client<OpenAIConfig>,
    events: Arc<Mutex<Vec<Event>>>,
}

fn hooked(
    server: &FaultServer,
    limiter: RateLimiter,
    slots: ConcurrencyLimiter,
    attempts: u32,
) -> Hooked {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let retry = RetryConfig::builder()
        .max_attempts(attempts)
        .base_delay(Duration::from_millis(20))
        .build()
        .unwrap();
    let client = tower_stack::client(
        config(server.base_url()),
        limiter,
        slots,
        retry,
        Arc::new(move |event: &Event| sink.lock().unwrap().push(event.clone())),
    );
    Hooked { client, events }
}

#[tokio::test]
async fn in_the_hook_a_429_and_a_503_are_retried_below_async_openai() {
    let server = FaultServer::start([
        Reply::rate_limited("1"),
        Reply::status(503, "server_error"),
        upstream::answer(&PIECES, GAP, StreamEnd::Done),
    ])
    .await
    .unwrap();
    let limiter = RateLimiter::new(RateLimitConfig {
        requests_per_second: Some(2.0),
        burst_size: 5,
        ..RateLimitConfig::default()
    })
    .unwrap();
    let hooked = hooked(
        &server,
        limiter.clone(),
        ConcurrencyLimiter::new(4).unwrap(),
        4,
    );
    let started = Instant::now();
    let mut chunks = hooked.client.chat().create_stream(request()).await.unwrap();
    let mut text = String::new();
    while let Some(chunk) = chunks.next().await {
        text.push_str(chat::text(&chunk.unwrap()));
    }
    let waited = started.elapsed();

    assert_eq!(text, "The quick brown fox.");
    assert_eq!(server.requests().len(), 3);
    assert!(
        waited >= Duration::from_secs(1),
        "Retry-After not honoured: {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    let events = hooked.events.lock().unwrap();
    let retries: Vec<_> = events
        .iter()
        .filter_map(|event| match event {
            Resilient::Retry(retry) => Some((retry.error.clone(), retry.server_directed)),
            _ => None,
        })
        .collect();
    assert_eq!(
        retries,
        [
            ("HTTP 429 Too Many Requests".to_owned(), true),
            ("HTTP 503 Service Unavailable".to_owned(), false)
        ]
    );
    let tokens_left: Vec<f64> = events
        .iter()
        .filter_map(|event| match event {
            Resilient::RateLimit(wait) => Some(wait.tokens_remaining),
            _ => None,
        })
        .collect();
    assert_eq!(
        tokens_left.len(),
        3,
        "a token for every HTTP attempt: {tokens_left:?}"
    );
    // 5 tokens, refilled at 2/s: without the 429 draining the shared bucket the second
    // attempt, a second later, would find it full again.
    assert!(
        tokens_left[1] < 2.5,
        "the 429 did not drain the bucket: {tokens_left:?}"
    );
}

#[tokio::test]
async fn in_the_hook_the_last_status_is_async_openais_error_when_retries_run_out() {
    let server = FaultServer::start([
        Reply::status(503, "server_error"),
        Reply::status(503, "server_error"),
    ])
    .await
    .unwrap();
    let hooked = hooked(&server, limiter(), ConcurrencyLimiter::new(4).unwrap(), 2);
    let Err(error) = hooked.client.chat().create_stream(request()).await else {
        panic!("the call succeeded");
    };
    assert!(
        matches!(&error, OpenAIError::ApiError(api) if api.status_code == StatusCode::SERVICE_UNAVAILABLE),
        "{error:?}"
    );
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn in_the_hook_a_stream_holds_its_slot_until_its_end_or_its_drop() {
    // Gaps long enough that each piece is its own TCP segment: a reused connection would
    // otherwise hold small writes back (Nagle) and deliver the whole body at once.
    let gap = Duration::from_millis(50);
    let server = FaultServer::start([
        upstream::answer(&PIECES, gap, StreamEnd::Done),
        upstream::answer(&PIECES, gap, StreamEnd::Done),
    ])
    .await
    .unwrap();
    let slots = ConcurrencyLimiter::new(1).unwrap();
    let hooked = hooked(&server, limiter(), slots.clone(), 1);

    let mut chunks = hooked.client.chat().create_stream(request()).await.unwrap();
    let mut free = Vec::new();
    while let Some(chunk) = chunks.next().await {
        chunk.unwrap();
        free.push(slots.available());
    }
    // async-openai reads the body ahead, on a task of its own: the slot comes back when the
    // upstream's body ends, right after the last piece, whose gap is the last one.
    assert!(free.len() >= PIECES.len(), "{free:?}");
    assert!(
        free[..PIECES.len() - 1].iter().all(|&n| n == 0),
        "held while the body streams: {free:?}"
    );
    drop(chunks);
    assert_eq!(slots.available(), 1, "freed at the end");

    let mut chunks = hooked.client.chat().create_stream(request()).await.unwrap();
    chunks.next().await.unwrap().unwrap();
    assert_eq!(slots.available(), 0);
    drop(chunks);
    // The task reading the body ends once the stream is dropped; the slot comes back with
    // the body.
    let deadline = Instant::now() + Duration::from_secs(5);
    while slots.available() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(slots.available(), 1, "freed when the stream is dropped");
}
