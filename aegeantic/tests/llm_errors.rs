//! What a failed model call tells a person: the whole chain, from the resilience layer down
//! to the server's message or the socket's error. Real servers on 127.0.0.1 (the fault
//! server, raw TCP listeners), real time; waits are short.
#![cfg(all(feature = "openai", feature = "fault-server"))]

use std::error::Error;
use std::io;
use std::time::{Duration, Instant};

use aegeantic::llm::{
    LlmChunk, LlmError, LlmProvider, LlmRequest, Message, OpenAiCompatible, OpenAiConfig,
    ResilientProvider,
};
use aegeantic::report::DisplayChain;
use aegeantic::resilience::RetryConfig;
use aegeantic::testing::{FaultServer, Reply, StreamEnd};
use futures::StreamExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const GAP: Duration = Duration::from_millis(5);

fn config(base_url: impl Into<String>) -> OpenAiConfig {
    let mut config = OpenAiConfig::new(base_url, "gpt-test").api_key("sk-test-key");
    config.response_timeout = Duration::from_secs(5);
    config.idle_timeout = Duration::from_secs(5);
    config
}

fn request() -> LlmRequest {
    LlmRequest::new(vec![Message::user("hi")])
}

/// The provider's own error: the last item of one call.
async fn call_error(config: OpenAiConfig) -> LlmError {
    let provider = OpenAiCompatible::new(config).unwrap();
    let items: Vec<Result<LlmChunk, LlmError>> = provider.stream(&request()).collect().await;
    match items.into_iter().last() {
        Some(Err(error)) => error,
        other => panic!("the call did not fail: {other:?}"),
    }
}

/// The chain a person is shown for a call through one attempt of the resilience layer.
async fn reported(config: OpenAiConfig) -> String {
    let retry = RetryConfig::builder().max_attempts(1).build().unwrap();
    let provider = ResilientProvider::new(OpenAiCompatible::new(config).unwrap()).retry(retry);
    let mut events = provider.stream_events(&request());
    while let Some(item) = events.next().await {
        if let Err(error) = item {
            return DisplayChain(&error).to_string();
        }
    }
    panic!("the call did not fail")
}

/// The `io` kind the provider gives a transport failure, which `RetryOn::transient` reads.
fn io_kind(error: &LlmError) -> io::ErrorKind {
    match error {
        LlmError::Connection(io) => io.kind(),
        other => panic!("not a connection error: {other:?}"),
    }
}

/// A port on 127.0.0.1 with nothing listening.
fn refused_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A server for one connection: reads the request, writes `reply`, closes.
async fn raw_server(reply: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buffer = [0; 8192];
        let _ = socket.read(&mut buffer).await;
        socket.write_all(reply).await.unwrap();
        socket.flush().await.unwrap();
    });
    format!("http://{addr}/v1")
}

#[tokio::test]
async fn a_refused_connection_says_connection_refused() {
    let error = call_error(config(format!("http://127.0.0.1:{}/v1", refused_port()))).await;
    assert_eq!(error.to_string(), "connection refused");
    assert_eq!(io_kind(&error), io::ErrorKind::ConnectionRefused);
    // The HTTP client's error is kept as the cause, down to the socket's.
    let chain = DisplayChain(&error).to_string();
    assert!(
        chain.starts_with("connection refused: error sending request"),
        "{chain}"
    );
    assert!(error.source().is_some());

    let shown = reported(config(format!("http://127.0.0.1:{}/v1", refused_port()))).await;
    assert!(
        shown.starts_with("operation failed after 1 attempt"),
        "{shown}"
    );
    assert!(shown.contains(": connection refused: "), "{shown}");
}

#[tokio::test]
async fn a_body_cut_mid_stream_says_the_connection_closed_mid_stream() {
    let server = FaultServer::start([Reply::text(&["Hel", "lo"], GAP).ending(StreamEnd::Cut)])
        .await
        .unwrap();
    let error = call_error(config(server.base_url())).await;
    assert_eq!(error.to_string(), "connection closed mid-stream");
    assert_eq!(io_kind(&error), io::ErrorKind::UnexpectedEof);
    let chain = DisplayChain(&error).to_string();
    assert!(
        chain.starts_with("connection closed mid-stream: error decoding response body"),
        "{chain}"
    );

    // A body shorter than its content-length, from a server that then closes.
    let short = raw_server(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: 500\r\n\r\n\
          data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n",
    )
    .await;
    let error = call_error(config(short)).await;
    assert_eq!(error.to_string(), "connection closed mid-stream");
    assert!(error.is_transient());
}

#[tokio::test]
async fn a_connection_closed_before_the_response_says_so() {
    let server = FaultServer::start([Reply::Reset]).await.unwrap();
    let error = call_error(config(server.base_url())).await;
    assert_eq!(error.to_string(), "connection closed before the response");
    assert!(error.is_transient());
    let chain = DisplayChain(&error).to_string();
    assert!(
        chain.contains("connection closed before message completed"),
        "{chain}"
    );
}

#[tokio::test]
async fn a_black_holed_endpoint_gives_up_after_the_response_timeout() {
    // Accepts the connection and reads the request, never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buffer = [0; 8192];
        let _ = socket.read(&mut buffer).await;
        std::future::pending::<()>().await;
        drop(socket);
    });
    let mut config = config(format!("http://{addr}/v1"));
    config.response_timeout = Duration::from_millis(200);
    let started = Instant::now();
    let error = call_error(config).await;
    let elapsed = started.elapsed();
    assert_eq!(
        DisplayChain(&error).to_string(),
        "timed out: no response headers within 200ms"
    );
    assert_eq!(io_kind(&error), io::ErrorKind::TimedOut);
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    server.abort();
}

#[tokio::test]
async fn error_answers_are_reported_with_the_servers_message() {
    let role = "Invalid value for 'messages[0].role': 'robot'. Supported values are: 'system', \
                'assistant', 'user', 'function', 'tool', and 'developer'.";
    let cases = [
        (
            400,
            json!({"message": role, "type": "invalid_request_error",
                "param": "messages[0].role", "code": "invalid_value"}),
            format!("HTTP 400 invalid_request_error (invalid_value): {role}"),
        ),
        (
            429,
            json!({"message": "You exceeded your current quota, please check your plan.",
                "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}),
            "HTTP 429 insufficient_quota: You exceeded your current quota, please check your plan."
                .to_owned(),
        ),
        (
            401,
            json!({"message": "Incorrect API key provided: sk-test-key.",
                "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}),
            "HTTP 401 invalid_request_error (invalid_api_key): Incorrect API key provided: \
             <redacted>."
                .to_owned(),
        ),
        (
            404,
            json!({"message": "The model `gpt-nope` does not exist or you do not have access to it.",
                "type": "invalid_request_error", "param": null, "code": "model_not_found"}),
            "HTTP 404 invalid_request_error (model_not_found): The model `gpt-nope` does not \
             exist or you do not have access to it."
                .to_owned(),
        ),
    ];
    for (status, error, expected) in cases {
        let server = FaultServer::start([Reply::Status {
            status,
            headers: vec![],
            body: json!({ "error": error }).to_string(),
        }])
        .await
        .unwrap();
        let shown = reported(config(server.base_url())).await;
        assert!(
            shown.starts_with("operation failed after 1 attempt"),
            "{shown}"
        );
        assert!(shown.ends_with(&format!(": {expected}")), "{shown}");
    }
}

#[tokio::test]
async fn a_base_url_that_cannot_work_is_refused_when_the_provider_is_built() {
    let cases = [
        (
            "localhost:8080/v1",
            r#""localhost:8080/v1": the scheme must be http or https"#,
        ),
        (
            "ftp://user:hunter2@example.com/v1",
            r#""ftp://<redacted>@example.com/v1": the scheme must be http or https"#,
        ),
        (
            "https://user:hunter2@exa mple.com/v1",
            r#""https://<redacted>@exa mple.com/v1": it does not parse"#,
        ),
        ("http://", r#""http://": it does not parse"#),
    ];
    for (url, shown) in cases {
        let error = OpenAiCompatible::new(config(url)).unwrap_err();
        assert!(
            matches!(error, LlmError::InvalidBaseUrl { .. }),
            "{error:?}"
        );
        assert_eq!(error.to_string(), format!("invalid base URL {shown}"));
        assert!(!error.is_transient());
        let everything = format!("{} {error:?}", DisplayChain(&error));
        assert!(!everything.contains("hunter2"), "{everything}");
    }
    // The parser's reason is the cause.
    let error = OpenAiCompatible::new(config("http://")).unwrap_err();
    assert_eq!(error.source().unwrap().to_string(), "empty host");
    // http and https, with or without a trailing slash, are fine.
    for url in ["http://127.0.0.1:9/v1/", "https://api.openai.com/v1"] {
        OpenAiCompatible::new(config(url)).unwrap();
    }
}

#[cfg(feature = "anthropic")]
#[test]
fn the_anthropic_provider_checks_its_base_url_too() {
    use aegeantic::llm::{Anthropic, AnthropicConfig};

    let config = AnthropicConfig::new("claude-test").base_url("file:///etc/passwd");
    let error = Anthropic::new(config).unwrap_err();
    assert_eq!(
        error.to_string(),
        r#"invalid base URL "file:///etc/passwd": the scheme must be http or https"#
    );
}

/// A server for one connection: reads the request, writes `head`, then `filler` over and
/// over until the client hangs up. Returns the base URL and how many bytes it wrote.
async fn endless_server(
    head: &'static [u8],
    filler: &'static [u8],
) -> (String, tokio::task::JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let written = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buffer = [0; 8192];
        let _ = socket.read(&mut buffer).await;
        let mut written = 0;
        if socket.write_all(head).await.is_ok() {
            while socket.write_all(filler).await.is_ok() {
                written += filler.len();
            }
        }
        written
    });
    (format!("http://{addr}/v1"), written)
}

static MEBIBYTE_OF_A: [u8; 1 << 20] = [b'a'; 1 << 20];

#[tokio::test]
async fn an_event_that_never_ends_is_refused_not_held() {
    let (url, written) = endless_server(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\ndata: ",
        &MEBIBYTE_OF_A,
    )
    .await;
    let error = call_error(config(url)).await;
    assert!(matches!(error, LlmError::Protocol(_)), "{error:?}");
    assert!(error.to_string().contains("without ending"), "{error}");
    assert!(!error.is_transient());
    let written = written.await.unwrap();
    // The client read about 16 MiB and hung up; what the kernel buffered on top is small.
    assert!(
        written < 64 << 20,
        "{written} bytes were sent before the client hung up"
    );
}

#[tokio::test]
async fn an_endless_error_body_is_read_only_in_part() {
    let (url, _written) = endless_server(
        b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nbad request ",
        &MEBIBYTE_OF_A,
    )
    .await;
    let started = Instant::now();
    let error = call_error(config(url)).await;
    let LlmError::Api {
        status, message, ..
    } = &error
    else {
        panic!("not an API error: {error:?}");
    };
    assert_eq!(*status, Some(400));
    assert!(message.starts_with("bad request aaa"), "{}", &message[..40]);
    assert!(message.len() <= 64 * 1024, "{} bytes kept", message.len());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not held until the idle timeout"
    );
}

#[tokio::test]
async fn timeouts_beyond_the_clock_mean_no_limit() {
    let server = FaultServer::start([Reply::text(&["Hel", "lo"], GAP)])
        .await
        .unwrap();
    let mut config = config(server.base_url());
    config.connect_timeout = Duration::MAX;
    config.response_timeout = Duration::MAX;
    config.idle_timeout = Duration::MAX;
    let provider = OpenAiCompatible::new(config).unwrap();
    let items: Vec<Result<LlmChunk, LlmError>> = provider.stream(&request()).collect().await;
    assert!(items.iter().all(Result::is_ok), "{items:?}");
    let text: String = items
        .iter()
        .filter_map(|item| match item {
            Ok(LlmChunk::Text(text)) => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text, "Hello");
}

#[cfg(feature = "anthropic")]
#[test]
fn debug_output_never_shows_credentials() {
    let url = "https://user:hunter2@proxy.example/v1";
    let openai = OpenAiCompatible::new(OpenAiConfig::new(url, "m").api_key("sk-secret")).unwrap();
    let anthropic = aegeantic::llm::Anthropic::new(
        aegeantic::llm::AnthropicConfig::new("m")
            .base_url(url)
            .api_key("sk-ant-secret"),
    )
    .unwrap();
    for shown in [format!("{openai:?}"), format!("{anthropic:?}")] {
        assert!(shown.contains("proxy.example"), "{shown}");
        for secret in ["hunter2", "user:", "sk-secret", "sk-ant-secret"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }
}
