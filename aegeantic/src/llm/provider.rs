//! The provider trait, and an adapter for providers that cannot stream.

use std::pin::Pin;
use std::sync::Arc;

use futures_core::Stream;
use futures_util::stream::{self, StreamExt};

use super::{FinishReason, LlmChunk, LlmError, LlmRequest};
use crate::resilience::{ResilienceError, Resilient};

/// The stream of one model call.
pub type LlmStream = Pin<Box<dyn Stream<Item = Result<LlmChunk, LlmError>> + Send + 'static>>;

/// A model call's stream with the resilience events of retries and rate limiting inline.
pub type LlmEventStream = Pin<
    Box<dyn Stream<Item = Result<Resilient<LlmChunk>, ResilienceError<LlmError>>> + Send + 'static>,
>;

/// A language model that streams its answers.
///
/// The trait is object-safe so an agent can hold any provider as `Arc<dyn LlmProvider>`
/// and the choice can be made at run time (configuration, tests, fallbacks); one boxed
/// stream per call costs nothing next to a network round trip.
///
/// [`stream`](LlmProvider::stream) returns at once: the request is sent when the stream is
/// first polled, and each call starts a fresh request. That makes `|| provider.stream(&r)`
/// a factory for [`resilient_stream`](crate::resilience::resilient_stream), which opens
/// the stream again for each attempt. Providers should not retry on their own: retries
/// nested in retries multiply.
pub trait LlmProvider: Send + Sync {
    /// Starts one call. The stream ends after [`LlmChunk::Finish`] (and a possible
    /// [`LlmChunk::Usage`]), or with an error.
    fn stream(&self, request: &LlmRequest) -> LlmStream;

    /// The API serving the calls, as OpenTelemetry's `gen_ai.provider.name` names it
    /// (`"openai"`, `"anthropic"`): a label of the GenAI metrics (feature `metrics`).
    fn provider_name(&self) -> &str {
        "unknown"
    }

    /// The model a request that names none goes to, if the provider has one configured: a
    /// label of the GenAI metrics.
    fn default_model(&self) -> Option<&str> {
        None
    }

    /// The call with resilience events inline. Plain providers have none, so the default
    /// wraps [`stream`](LlmProvider::stream)'s items in [`Resilient::Item`];
    /// [`ResilientProvider`](super::ResilientProvider) overrides it.
    fn stream_events(&self, request: &LlmRequest) -> LlmEventStream {
        Box::pin(self.stream(request).map(|item| {
            item.map(Resilient::Item)
                .map_err(|source| ResilienceError::Operation {
                    source,
                    attempts: 1,
                })
        }))
    }
}

impl<P: LlmProvider + ?Sized> LlmProvider for Arc<P> {
    fn stream(&self, request: &LlmRequest) -> LlmStream {
        (**self).stream(request)
    }

    fn provider_name(&self) -> &str {
        (**self).provider_name()
    }

    fn default_model(&self) -> Option<&str> {
        (**self).default_model()
    }

    fn stream_events(&self, request: &LlmRequest) -> LlmEventStream {
        (**self).stream_events(request)
    }
}

/// Makes a provider out of a blocking, non-streaming `generate` function: the whole
/// answer arrives as one [`LlmChunk::Text`] followed by [`LlmChunk::Finish`].
///
/// The function runs on tokio's blocking pool, so it may block on I/O.
///
/// ```
/// use futures::StreamExt;
/// use aegeantic::llm::{GenerateAdapter, LlmChunk, LlmProvider, LlmRequest, Message};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let echo = GenerateAdapter::new(|request: &LlmRequest| {
///     Ok(format!("you said: {}", request.messages[0].content))
/// });
/// let chunks: Vec<_> = echo.stream(&LlmRequest::new(vec![Message::user("hi")])).collect().await;
/// assert_eq!(chunks[0].as_ref().unwrap(), &LlmChunk::Text("you said: hi".into()));
/// # }
/// ```
pub struct GenerateAdapter<F> {
    generate: Arc<F>,
}

impl<F> GenerateAdapter<F>
where
    F: Fn(&LlmRequest) -> Result<String, LlmError> + Send + Sync + 'static,
{
    /// Wraps `generate`.
    pub fn new(generate: F) -> Self {
        GenerateAdapter {
            generate: Arc::new(generate),
        }
    }
}

impl<F> LlmProvider for GenerateAdapter<F>
where
    F: Fn(&LlmRequest) -> Result<String, LlmError> + Send + Sync + 'static,
{
    fn stream(&self, request: &LlmRequest) -> LlmStream {
        let generate = Arc::clone(&self.generate);
        let request = request.clone();
        let answer = async move {
            let joined = tokio::task::spawn_blocking(move || generate(&request)).await;
            let chunks = match joined {
                Ok(Ok(text)) => vec![
                    Ok(LlmChunk::Text(text)),
                    Ok(LlmChunk::Finish(FinishReason::Stop)),
                ],
                Ok(Err(error)) => vec![Err(error)],
                Err(join) => vec![Err(LlmError::Other {
                    message: format!("generate failed: {join}"),
                    transient: false,
                })],
            };
            stream::iter(chunks)
        };
        Box::pin(stream::once(answer).flatten())
    }
}
