//! A provider wrapped with retry and rate limiting.

use std::sync::Arc;

use futures_util::StreamExt;

use super::tokens::{metered, Buckets, TokenBudget};
use super::{LlmError, LlmEventStream, LlmProvider, LlmRequest, LlmStream};
use crate::resilience::{resilient_stream, RateLimiter, ResilienceError, RetryConfig};

/// What a token reservation assumes for the answer of a request without `max_tokens`.
const DEFAULT_OUTPUT_TOKENS: u32 = 1024;

/// A provider whose calls are retried and rate limited, with the events inline.
///
/// Each attempt takes a token from the request limiter and, with a
/// [`token_limiter`](ResilientProvider::token_limiter), reserves its estimated size in
/// tokens, then opens a fresh call to the inner provider. The reservation is settled from
/// the usage the answer reports. Rate-limit headers the server sends ([`Quota`](super::Quota)
/// chunks) lower both local buckets to what the server says is left, so a quota shared with
/// other clients is respected before the first 429.
///
/// Use [`llm_retry_on`](super::llm_retry_on) in the [`RetryConfig`] so that 429s and 5xx are
/// retried, not only transport errors.
///
/// A retried attempt starts the answer from the beginning; the
/// [`RetryEvent`](crate::events::RetryEvent)'s `items_delivered` says how many chunks of
/// the failed attempt to discard.
pub struct ResilientProvider<P> {
    inner: Arc<P>,
    retry: Option<RetryConfig>,
    buckets: Buckets,
    name: Arc<str>,
}

impl<P: LlmProvider + 'static> ResilientProvider<P> {
    /// Wraps `provider` with neither retry nor rate limiting yet.
    pub fn new(provider: P) -> Self {
        ResilientProvider {
            inner: Arc::new(provider),
            retry: None,
            buckets: Buckets::default(),
            name: "llm".into(),
        }
    }

    /// Retries failed attempts as `config` says.
    #[must_use]
    pub fn retry(mut self, config: RetryConfig) -> Self {
        self.retry = Some(config);
        self
    }

    /// Takes a token from `limiter` before every attempt. Clones of one limiter share
    /// their bucket, so pass clones to share a budget between providers.
    #[must_use]
    pub fn rate_limiter(mut self, limiter: RateLimiter) -> Self {
        self.buckets.requests = Some(limiter);
        self
    }

    /// Limits model tokens with `limiter` (e.g. 90,000 per minute, burst 90,000): each
    /// attempt reserves its prompt estimate (a character count / 4) plus its
    /// `max_tokens`, or 1024 when the request sets none, and settles at the reported
    /// usage. Its grants appear as [`RateLimitEvent`](crate::events::RateLimitEvent)s named
    /// `"<name>.tokens"`.
    ///
    /// A request whose reservation exceeds the bucket's burst fails with
    /// [`RateLimitError::InsufficientCapacity`](crate::resilience::RateLimitError). The
    /// retry config's `max_elapsed` counts from the first poll and covers the reservations:
    /// one that could only be granted past the deadline ends the call at once with
    /// [`ResilienceError::DeadlineExceeded`], taking nothing.
    #[must_use]
    pub fn token_limiter(mut self, limiter: RateLimiter) -> Self {
        self.buckets.tokens = Some(TokenBudget {
            limiter,
            default_output: DEFAULT_OUTPUT_TOKENS,
        });
        self
    }

    /// The operation name on the events (default `"llm"`).
    #[must_use]
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The wrapped provider.
    pub fn inner(&self) -> &P {
        &self.inner
    }
}

impl<P: LlmProvider + 'static> LlmProvider for ResilientProvider<P> {
    /// The chunks only; events are dropped and a final error is unwrapped.
    fn stream(&self, request: &LlmRequest) -> LlmStream {
        Box::pin(self.stream_events(request).filter_map(|item| async move {
            match item {
                Ok(resilient) => resilient.into_item().map(Ok),
                Err(ResilienceError::RateLimit(error)) => Some(Err(LlmError::RateLimit(error))),
                Err(error) => error.into_operation_error().map(Err),
            }
        }))
    }

    fn provider_name(&self) -> &str {
        self.inner.provider_name()
    }

    fn default_model(&self) -> Option<&str> {
        self.inner.default_model()
    }

    fn stream_events(&self, request: &LlmRequest) -> LlmEventStream {
        let events = self.unmeasured_events(request);
        #[cfg(feature = "metrics")]
        let events = {
            let model = request.model.as_deref().or(self.inner.default_model());
            Box::pin(super::measured::Measured::new(
                events,
                self.inner.provider_name(),
                model.unwrap_or("unknown"),
            ))
        };
        events
    }
}

impl<P: LlmProvider + 'static> ResilientProvider<P> {
    fn unmeasured_events(&self, request: &LlmRequest) -> LlmEventStream {
        let inner = Arc::clone(&self.inner);
        let reserve = self
            .buckets
            .tokens
            .as_ref()
            .map_or(0, |budget| budget.reservation(request));
        let request = request.clone();
        let (requests, name) = (self.buckets.requests.clone(), self.name.clone());
        let calls = move |retry| -> LlmEventStream {
            Box::pin(resilient_stream(
                move || inner.stream(&request),
                retry,
                requests,
                name,
                "llm",
            ))
        };
        if self.buckets.is_empty() {
            return calls(self.retry.clone());
        }
        metered(
            calls,
            self.retry.clone(),
            self.buckets.clone(),
            reserve,
            self.name.clone(),
        )
    }
}
