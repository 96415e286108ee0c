//! The spans of an operation (feature `tracing`): one for the operation, one for each
//! attempt inside it, and one for each wait for a token inside its attempt, so a trace
//! shows where the time went. The attempt span carries the attempt number and
//! OpenTelemetry's `http.request.resend_count` (on retries only, as the convention says).
//!
//! Spans are made only when a subscriber wants them; otherwise each is `Span::none()`,
//! and entering one costs a branch.

use tracing::{field, info_span, Span};

/// The open spans of one operation.
#[derive(Debug, Default)]
pub(crate) struct Spans {
    operation: Option<Span>,
    attempt: Option<Span>,
    wait: Option<Span>,
}

impl Spans {
    /// Opens the span of attempt `attempt`, and the operation's before the first.
    pub(crate) fn attempt(&mut self, name: &str, kind: &str, attempt: u32) {
        let operation = self.operation.get_or_insert_with(|| {
            info_span!(
                "aegeantic.operation",
                operation_name = name,
                operation_type = kind
            )
        });
        let span = info_span!(
            parent: &*operation,
            "aegeantic.attempt",
            attempt,
            http.request.resend_count = field::Empty
        );
        if attempt > 1 {
            span.record("http.request.resend_count", attempt - 1);
        }
        self.wait = None;
        self.attempt = Some(span);
    }

    /// Opens the span of the attempt's wait for a token.
    pub(crate) fn wait(&mut self, tokens: u32) {
        let parent = self.attempt.as_ref().or(self.operation.as_ref());
        self.wait = Some(
            info_span!(parent: parent.and_then(Span::id), "aegeantic.rate_limit.wait", tokens),
        );
    }

    /// Closes the wait's span: the token came, or was refused.
    pub(crate) fn waited(&mut self) {
        self.wait = None;
    }

    /// Closes the attempt's span.
    pub(crate) fn attempt_ended(&mut self) {
        self.wait = None;
        self.attempt = None;
    }

    /// Closes every span: the operation has ended.
    pub(crate) fn close(&mut self) {
        *self = Spans::default();
    }

    /// The innermost open span, entered until the guard is dropped.
    pub(crate) fn enter(&self) -> tracing::span::EnteredSpan {
        self.wait
            .as_ref()
            .or(self.attempt.as_ref())
            .or(self.operation.as_ref())
            .map_or_else(Span::none, Span::clone)
            .entered()
    }
}
