//! The error type of every provider.

use std::io;
use std::time::Duration;

use crate::resilience::RateLimitError;

/// Why a model call failed.
///
/// Whether it is worth another attempt is decided by [`classify`](super::classify), and
/// [`llm_retry_on`](super::llm_retry_on) makes that decision available to
/// [`RetryConfig`](crate::resilience::RetryConfig). Transport failures also carry an
/// [`io::Error`] of a transient kind in their source chain, so plain
/// [`RetryOn::transient`](crate::resilience::RetryOn::transient) recognises them too.
///
/// No variant ever holds an API key: server messages are scrubbed of it before they are
/// stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LlmError {
    /// The server answered with an error status, or sent an error event inside a stream
    /// (`in_stream`; `status` is then the status of its HTTP twin, when known).
    ///
    /// Shown as `HTTP 400 invalid_request_error: Invalid value for messages[0].role …`:
    /// the status, the error's type, its code when that says more, and the server's message.
    #[error("{}", api_summary(*status, kind.as_deref(), code.as_deref(), message, *in_stream))]
    Api {
        /// The HTTP status, or the status an in-stream error stands for.
        status: Option<u16>,
        /// The most specific label the provider gave, such as `insufficient_quota` or
        /// `context_length_exceeded`: OpenAI's `code` when it is a word, else the error's
        /// type.
        code: Option<String>,
        /// The error's type, such as `invalid_request_error`. (A `Box<str>`, not a
        /// `String`, to keep the error, which every stream item carries, small.)
        kind: Option<Box<str>>,
        /// The provider's message.
        message: String,
        /// The `x-should-retry` header, which overrides the status rule when present.
        should_retry: Option<bool>,
        /// How long the server asked us to wait (`retry-after-ms` or `retry-after`).
        server_delay: Option<Duration>,
        /// Whether the error arrived as an event inside a `200` stream.
        in_stream: bool,
    },
    /// The request could not be sent or the response not read: refused or reset
    /// connections, timeouts before the headers, bodies cut mid-way.
    ///
    /// The message names the failure after the source's [`io::ErrorKind`] (`connection
    /// refused`, `connection closed mid-stream`, …); the source, the HTTP client's error,
    /// says how it came about.
    #[error("{}", connection_summary(.0.kind()))]
    Connection(#[source] io::Error),
    /// No data arrived for this long while the stream was open.
    #[error("stream stalled: no data for {0:?}")]
    Idle(Duration, #[source] io::Error),
    /// The body ended without the stream's terminator (OpenAI's `data: [DONE]`,
    /// Anthropic's `message_stop`).
    #[error("stream truncated")]
    Truncated(#[source] io::Error),
    /// The configured base URL does not parse, or its scheme is not `http` or `https`.
    /// Found when the provider is built, before any request. A user name or password in
    /// the URL is shown as `<redacted>`.
    #[error("invalid base URL {url:?}: {problem}")]
    InvalidBaseUrl {
        /// The URL as configured, its credentials redacted.
        url: String,
        /// What is wrong with it.
        problem: &'static str,
        /// The parser's error, when the URL does not parse.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The server sent something that is not the expected protocol.
    #[error("invalid response: {0}")]
    Protocol(String),
    /// The provider is misconfigured, or the request cannot be built.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A rate limiter refused the request.
    #[error("rate limiter refused the request")]
    RateLimit(#[source] RateLimitError),
    /// Any other failure of a provider, with its own verdict on retrying.
    #[error("{message}")]
    Other {
        /// What went wrong.
        message: String,
        /// Whether another attempt may succeed.
        transient: bool,
    },
}

impl LlmError {
    /// A stalled stream: carries an [`io::ErrorKind::TimedOut`] source.
    pub fn idle(after: Duration) -> Self {
        LlmError::Idle(
            after,
            io::Error::new(io::ErrorKind::TimedOut, "read timed out"),
        )
    }

    /// A body that ended early: carries an [`io::ErrorKind::UnexpectedEof`] source.
    pub fn truncated() -> Self {
        LlmError::Truncated(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the body ended without the stream's terminator",
        ))
    }

    /// Whether another attempt may succeed; see [`classify`](super::classify).
    pub fn is_transient(&self) -> bool {
        super::classify(self) != crate::resilience::RetryDecision::DoNotRetry
    }

    /// How long the server asked to wait before the next attempt, if it said.
    pub fn server_delay(&self) -> Option<Duration> {
        match self {
            LlmError::Api { server_delay, .. } => *server_delay,
            _ => None,
        }
    }
}

/// What [`LlmError::Api`] shows: `HTTP 400 invalid_request_error: …`.
fn api_summary(
    status: Option<u16>,
    kind: Option<&str>,
    code: Option<&str>,
    message: &str,
    in_stream: bool,
) -> String {
    let mut summary = String::from(if in_stream {
        "stream error event"
    } else {
        "HTTP"
    });
    if let Some(status) = status {
        summary.push_str(&format!(" {status}"));
    }
    if let Some(kind) = kind {
        summary.push_str(&format!(" {kind}"));
    }
    match code {
        Some(code) if kind.is_none() => summary.push_str(&format!(" {code}")),
        Some(code) if Some(code) != kind => summary.push_str(&format!(" ({code})")),
        _ => {}
    }
    format!("{summary}: {message}")
}

/// What [`LlmError::Connection`] shows, from the kind the transport mapping gives it.
fn connection_summary(kind: io::ErrorKind) -> &'static str {
    match kind {
        io::ErrorKind::ConnectionRefused => "connection refused",
        io::ErrorKind::NotConnected => "could not connect",
        io::ErrorKind::TimedOut => "timed out",
        io::ErrorKind::ConnectionAborted => "connection closed before the response",
        io::ErrorKind::ConnectionReset => "connection reset",
        io::ErrorKind::UnexpectedEof => "connection closed mid-stream",
        _ => "connection failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: Option<u16>, kind: Option<&str>, code: Option<&str>, in_stream: bool) -> String {
        LlmError::Api {
            status,
            code: code.map(str::to_owned),
            kind: kind.map(Box::from),
            message: "no".into(),
            should_retry: None,
            server_delay: None,
            in_stream,
        }
        .to_string()
    }

    #[test]
    fn api_errors_show_status_type_code_and_message() {
        let invalid = Some("invalid_request_error");
        assert_eq!(
            api(Some(400), invalid, invalid, false),
            "HTTP 400 invalid_request_error: no"
        );
        assert_eq!(
            api(Some(404), invalid, Some("model_not_found"), false),
            "HTTP 404 invalid_request_error (model_not_found): no"
        );
        assert_eq!(
            api(None, None, Some("overloaded_error"), true),
            "stream error event overloaded_error: no"
        );
        assert_eq!(api(Some(502), None, None, false), "HTTP 502: no");
    }

    #[test]
    fn messages_describe_their_layer_only() {
        use std::error::Error;

        let refused = LlmError::Connection(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "tcp connect error",
        ));
        assert_eq!(refused.to_string(), "connection refused");
        assert_eq!(refused.source().unwrap().to_string(), "tcp connect error");
        let truncated = LlmError::truncated();
        assert_eq!(truncated.to_string(), "stream truncated");
        let denied = LlmError::RateLimit(RateLimitError::ZeroTokens);
        assert_eq!(denied.to_string(), "rate limiter refused the request");
        assert!(denied.source().is_some());
    }
}
