//! A rate limit that every clone of a service shares, because the bucket lives in the
//! [`RateLimiter`] handle rather than in the service.

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::{Response, StatusCode};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::events::RateLimitEvent;
use crate::llm::x_ratelimit;
use crate::resilience::{
    classify_http, Acquired, Event, Observer, RateLimitError, RateLimiter, RetryDecision,
};

/// How many tokens a request costs.
///
/// Implemented by [`PerRequest`] (one each) and by every `Fn(&Req) -> u32`, so
/// `.weight(|request: &Request<_>| estimate(request))` charges an estimate of a request's
/// LLM tokens.
pub trait Weigh<Req> {
    /// The tokens `request` takes from the bucket.
    fn weigh(&self, request: &Req) -> u32;
}

/// One token per request: the default weight.
#[derive(Clone, Copy, Debug, Default)]
pub struct PerRequest;

impl<Req> Weigh<Req> for PerRequest {
    fn weigh(&self, _: &Req) -> u32 {
        1
    }
}

impl<Req, F: Fn(&Req) -> u32> Weigh<Req> for F {
    fn weigh(&self, request: &Req) -> u32 {
        self(request)
    }
}

/// What the bucket counts, and so which of the server's `x-ratelimit-remaining-*` headers
/// caps it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Counted {
    /// Requests: capped by `x-ratelimit-remaining-requests`.
    #[default]
    Requests,
    /// Tokens (with a [`weight`](RateLimitLayer::weight)): capped by
    /// `x-ratelimit-remaining-tokens`.
    Tokens,
}

/// Why a rate-limited service failed a request.
#[derive(Debug, thiserror::Error)]
pub enum LimitError<E> {
    /// The limiter refused the request: more tokens than the bucket holds, zero tokens, or
    /// a shared bucket that could not be reached under a fail-closed policy.
    #[error("rate limiter refused the request")]
    RateLimit(#[source] RateLimitError),
    /// The inner service failed.
    #[error(transparent)]
    Service(E),
}

/// Wraps services in [`RateLimit`]: every clone of every service it makes takes its
/// tokens from the one [`RateLimiter`], in-process or shared through Redis.
///
/// The token is taken inside the call's future, after the inner service said it was
/// ready, so dropping a request that waits gives its place in the queue back (as
/// [`RateLimiter::acquire`] does). When the response comes, what the server said is applied
/// to the shared bucket: a 429, or a response with a server-directed delay
/// (`Retry-After`, see [`classify_http`]), drains it, so that every holder holds off; an
/// `x-ratelimit-remaining-requests` (or `-tokens`, see [`counts`](RateLimitLayer::counts))
/// caps it to what the server says is left.
///
/// ```
/// use std::convert::Infallible;
/// use aegeantic::integrations::tower::RateLimitLayer;
/// use aegeantic::resilience::{RateLimitConfig, RateLimiter};
/// use http::{Request, Response};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let limiter = RateLimiter::new(RateLimitConfig {
///     requests_per_second: Some(10.0),
///     burst_size: 2,
///     ..RateLimitConfig::default()
/// })?;
/// let upstream = service_fn(|_: Request<String>| async {
///     Ok::<_, Infallible>(Response::new(String::from("ok")))
/// });
/// let service = ServiceBuilder::new()
///     .layer(RateLimitLayer::new(limiter.clone()).weight(|request: &Request<String>| {
///         1 + request.body().len() as u32 / 1000
///     }))
///     .service(upstream);
/// // Clones share the bucket: two requests take both tokens.
/// service.clone().oneshot(Request::new(String::new())).await?;
/// service.oneshot(Request::new(String::new())).await?;
/// assert!(limiter.tokens_available() < 1.0);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[must_use]
pub struct RateLimitLayer<W = PerRequest> {
    common: Common,
    weight: W,
}

#[derive(Clone)]
struct Common {
    limiter: RateLimiter,
    name: Arc<str>,
    counted: Counted,
    observer: Option<Observer>,
}

impl RateLimitLayer {
    /// A layer taking one token of `limiter` per request.
    pub fn new(limiter: RateLimiter) -> Self {
        RateLimitLayer {
            common: Common {
                limiter,
                name: "tower".into(),
                counted: Counted::Requests,
                observer: None,
            },
            weight: PerRequest,
        }
    }
}

impl<W> RateLimitLayer<W> {
    /// Charges each request what `weight` says instead of one token; a weight above the
    /// bucket's burst fails that request with [`RateLimitError::InsufficientCapacity`].
    pub fn weight<W2>(self, weight: W2) -> RateLimitLayer<W2> {
        RateLimitLayer {
            common: self.common,
            weight,
        }
    }

    /// Which of the server's `x-ratelimit-remaining-*` headers caps the bucket (default
    /// requests).
    pub fn counts(mut self, counted: Counted) -> Self {
        self.common.counted = counted;
        self
    }

    /// The operation name the events and tracing records carry (default `"tower"`).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.common.name = name.into();
        self
    }

    /// Shows a [`RateLimitEvent`] to `observer` for every grant.
    pub fn on_event(mut self, observer: Observer) -> Self {
        self.common.observer = Some(observer);
        self
    }
}

impl<W> fmt::Debug for RateLimitLayer<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("name", &self.common.name)
            .field("counted", &self.common.counted)
            .finish_non_exhaustive()
    }
}

impl<S, W: Clone> Layer<S> for RateLimitLayer<W> {
    type Service = RateLimit<S, W>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            common: Arc::new(self.common.clone()),
            weight: self.weight.clone(),
        }
    }
}

/// A service whose requests take tokens from a shared [`RateLimiter`]; see
/// [`RateLimitLayer`].
#[derive(Clone)]
pub struct RateLimit<S, W = PerRequest> {
    inner: S,
    common: Arc<Common>,
    weight: W,
}

impl<S, W> fmt::Debug for RateLimit<S, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("name", &self.common.name)
            .finish_non_exhaustive()
    }
}

type Acquiring = Pin<Box<dyn Future<Output = Result<Acquired, RateLimitError>> + Send>>;
type Adjusting = Pin<Box<dyn Future<Output = ()> + Send>>;

impl<S, W, Req, B> Service<Req> for RateLimit<S, W>
where
    S: Service<Req, Response = Response<B>> + Clone,
    S::Error: Error + 'static,
    W: Weigh<Req>,
{
    type Response = Response<B>;
    type Error = LimitError<S::Error>;
    type Future = RateLimitFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(LimitError::Service)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let tokens = self.weight.weigh(&request);
        // The service that said it was ready goes with the request; a fresh clone stays.
        let fresh = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, fresh);
        let (limiter, name) = (self.common.limiter.clone(), self.common.name.clone());
        RateLimitFuture {
            state: State::Acquiring {
                acquire: Box::pin(async move { limiter.acquire(tokens, &name).await }),
                call: Some((ready, request)),
            },
            common: self.common.clone(),
        }
    }
}

pin_project! {
    /// The response of a [`RateLimit`] service: waits for the tokens, calls the inner
    /// service, applies the response's rate-limit headers.
    pub struct RateLimitFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req>,
        common: Arc<Common>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req>
    where
        S: Service<Req>,
    {
        Acquiring { acquire: Acquiring, call: Option<(S, Req)> },
        Calling { #[pin] future: S::Future },
        Adjusting { adjust: Adjusting, response: Option<S::Response> },
    }
}

impl<S, Req, B> Future for RateLimitFuture<S, Req>
where
    S: Service<Req, Response = Response<B>>,
{
    type Output = Result<Response<B>, LimitError<S::Error>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Acquiring { acquire, call } => {
                    let acquired =
                        ready!(acquire.as_mut().poll(cx)).map_err(LimitError::RateLimit)?;
                    this.common.report(&acquired);
                    let (mut service, request) = call.take().expect("polled after completion");
                    let future = service.call(request);
                    this.state.set(State::Calling { future });
                }
                StateProj::Calling { future } => {
                    let response = ready!(future.poll(cx)).map_err(LimitError::Service)?;
                    match this.common.adjustment(&response) {
                        None => return Poll::Ready(Ok(response)),
                        Some(adjust) => this.state.set(State::Adjusting {
                            adjust,
                            response: Some(response),
                        }),
                    }
                }
                StateProj::Adjusting { adjust, response } => {
                    ready!(adjust.as_mut().poll(cx));
                    return Poll::Ready(Ok(response.take().expect("polled after completion")));
                }
            }
        }
    }
}

impl<S: Service<Req>, Req> fmt::Debug for RateLimitFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitFuture").finish_non_exhaustive()
    }
}

impl Common {
    fn report(&self, acquired: &Acquired) {
        let event = RateLimitEvent::granted(self.name.clone(), acquired);
        if let Some(observer) = &self.observer {
            observer(&Event::RateLimit(event));
        }
    }

    /// What the response says to do to the shared bucket, if anything.
    fn adjustment<B>(&self, response: &Response<B>) -> Option<Adjusting> {
        let (status, headers) = (response.status(), response.headers());
        let server_delay = matches!(classify_http(status, headers), RetryDecision::RetryAfter(_));
        let limiter = self.limiter.clone();
        if status == StatusCode::TOO_MANY_REQUESTS || server_delay {
            #[cfg(feature = "tracing")]
            tracing::debug!(operation_name = &*self.name, %status, "rate limit: upstream pushed back, bucket drained");
            return Some(Box::pin(async move {
                // A failed drain (Redis down) loses only the courtesy to the others.
                let _ = limiter.drain().await;
            }));
        }
        let quota = x_ratelimit(headers);
        let window = match self.counted {
            Counted::Requests => quota.requests,
            Counted::Tokens => quota.tokens,
        }?;
        let remaining = u32::try_from(window.remaining).unwrap_or(u32::MAX);
        #[cfg(feature = "tracing")]
        tracing::debug!(
            operation_name = &*self.name,
            remaining,
            "rate limit: bucket capped to the server's quota"
        );
        Some(Box::pin(async move {
            let _ = limiter.cap_available(remaining).await;
        }))
    }
}
