//! OpenTelemetry's GenAI metrics for a model call (feature `metrics`): token usage, the
//! call's duration, and the time to its first chunk, labelled by provider and model.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_core::Stream;
use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::{LlmChunk, LlmError, LlmEventStream};
use crate::observe::metrics::gen_ai::{self, Call};
use crate::resilience::{ResilienceError, Resilient};

pin_project! {
    /// A call's event stream, measured as it is read. The first chunk is the first the
    /// reader saw, even if its attempt failed later: that is when text began to arrive.
    pub(super) struct Measured {
        #[pin]
        inner: LlmEventStream,
        call: Call,
        // From the first poll; `None` until then.
        started: Option<Instant>,
        first_chunk_seen: bool,
        ended: bool,
    }
}

impl Measured {
    pub(super) fn new(inner: LlmEventStream, provider: &str, model: &str) -> Self {
        Measured {
            inner,
            call: Call {
                provider: provider.to_owned().into(),
                model: model.to_owned().into(),
            },
            started: None,
            first_chunk_seen: false,
            ended: false,
        }
    }
}

impl Stream for Measured {
    type Item = Result<Resilient<LlmChunk>, ResilienceError<LlmError>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        let started = *this.started.get_or_insert_with(Instant::now);
        let item = ready!(this.inner.poll_next(cx));
        match &item {
            Some(Ok(Resilient::Item(chunk))) => match chunk {
                LlmChunk::Text(_) | LlmChunk::ToolCall(_) if !*this.first_chunk_seen => {
                    *this.first_chunk_seen = true;
                    gen_ai::first_chunk(this.call, started.elapsed());
                }
                LlmChunk::Usage(usage) => {
                    gen_ai::token_usage(this.call, usage.prompt_tokens, usage.completion_tokens)
                }
                _ => {}
            },
            Some(Ok(_)) => {}
            Some(Err(error)) if !*this.ended => {
                *this.ended = true;
                gen_ai::ended(this.call, started.elapsed(), Some(error.outcome().0));
            }
            None if !*this.ended => {
                *this.ended = true;
                gen_ai::ended(this.call, started.elapsed(), None);
            }
            Some(Err(_)) | None => {}
        }
        Poll::Ready(item)
    }
}
