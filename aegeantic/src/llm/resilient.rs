//! A provider wrapped with retry and rate limiting.

use std::sync::Arc;

use futures_util::StreamExt;

use super::{LlmError, LlmEventStream, LlmProvider, LlmRequest, LlmStream};
use crate::resilience::{resilient_stream, RateLimiter, ResilienceError, RetryConfig};

/// A provider whose calls are retried and rate limited, with the events inline.
///
/// Each attempt takes a limiter token, then opens a fresh call to the inner provider. Use
/// [`llm_retry_on`](super::llm_retry_on) in the [`RetryConfig`] so that 429s and 5xx are
/// retried, not only transport errors.
///
/// A retried attempt starts the answer from the beginning; the
/// [`RetryEvent`](crate::events::RetryEvent)'s `items_delivered` says how many chunks of
/// the failed attempt to discard.
pub struct ResilientProvider<P> {
    inner: Arc<P>,
    retry: Option<RetryConfig>,
    limiter: Option<RateLimiter>,
    name: Arc<str>,
}

impl<P: LlmProvider + 'static> ResilientProvider<P> {
    /// Wraps `provider` with neither retry nor rate limiting yet.
    pub fn new(provider: P) -> Self {
        ResilientProvider {
            inner: Arc::new(provider),
            retry: None,
            limiter: None,
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
        self.limiter = Some(limiter);
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

    fn stream_events(&self, request: &LlmRequest) -> LlmEventStream {
        let inner = Arc::clone(&self.inner);
        let request = request.clone();
        Box::pin(resilient_stream(
            move || inner.stream(&request),
            self.retry.clone(),
            self.limiter.clone(),
            self.name.clone(),
            "llm",
        ))
    }
}
