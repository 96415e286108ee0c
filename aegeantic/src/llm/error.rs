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
    #[error("{} {}{}: {message}",
        if *in_stream { "stream error event" } else { "HTTP" },
        status.map_or_else(|| "?".to_owned(), |s| s.to_string()),
        code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Api {
        /// The HTTP status, or the status an in-stream error stands for.
        status: Option<u16>,
        /// The provider's error code or type, such as `insufficient_quota`.
        code: Option<String>,
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
    #[error("connection failed: {0}")]
    Connection(#[source] io::Error),
    /// No data arrived for this long while the stream was open.
    #[error("stream stalled: no data for {0:?}")]
    Idle(Duration, #[source] io::Error),
    /// The body ended without the stream's terminator (OpenAI's `data: [DONE]`,
    /// Anthropic's `message_stop`).
    #[error("stream truncated: the body ended without its terminator")]
    Truncated(#[source] io::Error),
    /// The server sent something that is not the expected protocol.
    #[error("invalid response: {0}")]
    Protocol(String),
    /// The provider is misconfigured, or the request cannot be built.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A rate limiter refused the request.
    #[error("rate limiter refused the request: {0}")]
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
            "stream ended without terminator",
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
