//! aegeantic's tower layers in async-openai's HTTP service hook (`with_http_service`), in
//! place of async-openai's own retry: every HTTP attempt takes a token from the shared
//! limiter, and a 429's `Retry-After` drains it for everyone; error statuses and
//! connection failures are retried as a `RetryConfig` says, waiting what `Retry-After`
//! asks (async-openai's own errors drop the headers); and each attempt holds a concurrency
//! slot until its response body, a whole stream for `create_stream`, is read or dropped.
//!
//! What the hook cannot see is a stream cut after its response began: that is
//! `resilient_stream`'s job, around the call (see `chat.rs`).

use aegeantic::integrations::tower::{
    ConcurrencyLimitLayer, PermitBody, RateLimitLayer, RetryPolicy,
};
use aegeantic::resilience::{ConcurrencyLimiter, Observer, RateLimiter, RetryConfig};
use async_openai::config::OpenAIConfig;
use async_openai::middleware::ReqwestService;
use async_openai::Client;
use tower::retry::RetryLayer;
use tower::{BoxError, ServiceBuilder};

/// The layers, outermost first, around async-openai's transport.
pub fn client(
    config: OpenAIConfig,
    limiter: RateLimiter,
    slots: ConcurrencyLimiter,
    retry: RetryConfig,
    observer: Observer,
) -> Client<OpenAIConfig> {
    let service = ServiceBuilder::new()
        // What the hook takes: a `reqwest::Response`, and an error async-openai can box.
        .map_err(BoxError::from)
        .map_response(|response: http::Response<PermitBody<reqwest::Body>>| {
            reqwest::Response::from(response.map(reqwest::Body::wrap))
        })
        // The hook's request, `HttpRequestFactory`, builds its request afresh when it is
        // cloned, so every request can be retried.
        .layer(RetryLayer::new(
            RetryPolicy::new(retry)
                .clone_requests()
                .name("openai")
                .on_event(observer.clone()),
        ))
        .layer(
            RateLimitLayer::new(limiter)
                .name("openai")
                .on_event(observer),
        )
        .layer(ConcurrencyLimitLayer::new(slots))
        // The layers read the status and headers of an `http::Response`.
        .map_response(http::Response::<reqwest::Body>::from)
        .service(ReqwestService::default());
    Client::with_config(config).with_http_service(service)
}
