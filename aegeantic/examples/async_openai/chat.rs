//! What an application adds to async-openai to put its streaming chat call under
//! aegeantic: an error type that classifies async-openai's errors, a client whose HTTP
//! service keeps an error status's headers, and a function that opens one attempt.

use aegeantic::resilience::{classify_http, Classify, HttpError, RetryDecision};
use async_openai::config::OpenAIConfig;
use async_openai::error::{ApiError, OpenAIError, StreamError, WrappedError};
use async_openai::middleware::{HttpRequestFactory, ReqwestService};
use async_openai::types::chat::{CreateChatCompletionRequest, CreateChatCompletionStreamResponse};
use async_openai::Client;
use futures::{stream, Stream, StreamExt, TryStreamExt};
use http::{HeaderMap, StatusCode};
use tower::ServiceExt;

/// A failed chat completion attempt, for `RetryOn::classified::<ChatError>()`.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// async-openai's call failed, before or during the stream.
    #[error("chat completion failed")]
    Call(#[source] OpenAIError),
    /// The stream ended before any choice had a finish reason. async-openai ends the
    /// stream quietly when the body closes without `[DONE]`; this tells a cut from an end.
    #[error("chat completion stream ended before a finish reason")]
    Truncated,
}

impl Classify for ChatError {
    fn classify(&self) -> Option<RetryDecision> {
        let ChatError::Call(error) = self else {
            return Some(RetryDecision::Retry);
        };
        Some(match error {
            // From the client `client` builds: the status with its headers.
            OpenAIError::Boxed(error) => match error.downcast_ref::<Refused>() {
                Some(refused) => decide(refused.http.status, &refused.http.headers, &refused.api),
                None => RetryDecision::DoNotRetry,
            },
            // From a client with async-openai's own HTTP service, which drops the headers:
            // a 429 then waits the back-off, not the server's `Retry-After`.
            OpenAIError::ApiError(error) => {
                decide(error.status_code, &HeaderMap::new(), &error.api_error)
            }
            OpenAIError::Reqwest(error) => {
                if error.is_connect() || error.is_timeout() || error.is_request() || error.is_body()
                {
                    RetryDecision::Retry
                } else {
                    RetryDecision::DoNotRetry
                }
            }
            // The body broke off mid-stream; async-openai keeps only the cause's message.
            OpenAIError::StreamError(error) => match **error {
                StreamError::EventStream(_) => RetryDecision::Retry,
                StreamError::UnknownEvent(_) => RetryDecision::DoNotRetry,
            },
            _ => RetryDecision::DoNotRetry,
        })
    }
}

/// The status and `Retry-After` as aegeantic reads them (`classify_http`), except that a
/// bad request, a bad key, a forbidden or unknown resource and an exhausted quota are
/// never retried, whatever `x-should-retry` says.
fn decide(status: StatusCode, headers: &HeaderMap, error: &ApiError) -> RetryDecision {
    let out_of_quota =
        [error.r#type.as_deref(), error.code.as_deref()].contains(&Some("insufficient_quota"));
    if matches!(status.as_u16(), 400 | 401 | 403 | 404) || out_of_quota {
        RetryDecision::DoNotRetry
    } else {
        classify_http(status, headers)
    }
}

/// An error status as the HTTP service saw it: the headers, which async-openai's own
/// error drops, and the server's error object.
#[derive(Debug, thiserror::Error)]
#[error("{http}")]
pub struct Refused {
    /// The status and headers.
    pub http: HttpError,
    /// The body's `error` object (its `message` is the whole body when it was not one).
    #[source]
    pub api: ApiError,
}

/// A client for `config` whose HTTP service (async-openai's `with_http_service` hook) has
/// no retry of its own, so that each attempt is aegeantic's to count, rate-limit and
/// report, and turns an error status into a [`Refused`] that keeps its headers.
pub fn client(config: OpenAIConfig) -> Client<OpenAIConfig> {
    let transport = ReqwestService::default();
    let service = tower::service_fn(move |request: HttpRequestFactory| {
        let transport = transport.clone();
        async move {
            let response = transport.oneshot(request).await?;
            if response.status().is_success() {
                return Ok(response);
            }
            let http = HttpError {
                status: response.status(),
                headers: response.headers().clone(),
            };
            let body = response.bytes().await.map_err(OpenAIError::Reqwest)?;
            let api = serde_json::from_slice::<WrappedError>(&body).map_or_else(
                |_| ApiError {
                    message: String::from_utf8_lossy(&body).into_owned(),
                    ..ApiError::default()
                },
                |wrapped| wrapped.error,
            );
            Err(OpenAIError::Boxed(Box::new(Refused { http, api })))
        }
    });
    Client::with_config(config).with_http_service(service)
}

/// One attempt: sends `request` and streams its chunks; a failure to open, a failure
/// mid-stream and an end before the finish reason come out of the same stream.
pub fn open(
    client: &Client<OpenAIConfig>,
    request: &CreateChatCompletionRequest,
) -> impl Stream<Item = Result<CreateChatCompletionStreamResponse, ChatError>> + Send + 'static {
    let (client, request) = (client.clone(), request.clone());
    let chunks = stream::once(async move { client.chat().create_stream(request).await })
        .try_flatten()
        .map_err(ChatError::Call);
    async_stream::stream! {
        let mut chunks = std::pin::pin!(chunks);
        let mut finished = false;
        while let Some(chunk) = chunks.next().await {
            match chunk {
                Ok(chunk) => {
                    finished |= chunk.choices.iter().any(|choice| choice.finish_reason.is_some());
                    yield Ok(chunk);
                }
                Err(error) => {
                    yield Err(error);
                    return;
                }
            }
        }
        if !finished {
            yield Err(ChatError::Truncated);
        }
    }
}

/// The text a chunk adds.
pub fn text(chunk: &CreateChatCompletionStreamResponse) -> &str {
    chunk
        .choices
        .first()
        .and_then(|choice| choice.delta.content.as_deref())
        .unwrap_or_default()
}
