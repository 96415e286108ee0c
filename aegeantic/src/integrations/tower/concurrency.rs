//! A limit on requests in flight whose slot is held until the response body has been read
//! to its end or dropped, not merely until the headers arrive: a streamed LLM answer keeps
//! its slot for as long as it streams. The slots are a [`ConcurrencyLimiter`]'s.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::Response;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::resilience::{ConcurrencyLimiter, ConcurrencyPermit};

/// Wraps services in [`ConcurrencyLimit`], all sharing one [`ConcurrencyLimiter`].
///
/// Unlike tower's `ConcurrencyLimit`, whose slot is freed when the response (its headers)
/// arrives, the slot is held by the response body ([`PermitBody`]) until its last frame
/// has been read, it fails, or it is dropped. The slot is taken inside the call's future,
/// so readiness stays the inner service's and a dropped request gives its place back.
///
/// ```
/// use std::convert::Infallible;
/// use aegeantic::integrations::tower::ConcurrencyLimitLayer;
/// use aegeantic::resilience::ConcurrencyLimiter;
/// use http::{Request, Response};
/// use http_body_util::{BodyExt, Full};
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let limiter = ConcurrencyLimiter::new(4)?;
/// let upstream = service_fn(|_: Request<()>| async {
///     Ok::<_, Infallible>(Response::new(Full::new(bytes::Bytes::from("a long answer"))))
/// });
/// let service = ServiceBuilder::new()
///     .layer(ConcurrencyLimitLayer::new(limiter.clone()))
///     .service(upstream);
/// let response = service.oneshot(Request::new(())).await?;
/// assert_eq!(limiter.available(), 3); // the body is still unread
/// let body = response.into_body().collect().await?.to_bytes();
/// assert_eq!(body, "a long answer");
/// assert_eq!(limiter.available(), 4);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ConcurrencyLimitLayer {
    limiter: ConcurrencyLimiter,
}

impl ConcurrencyLimitLayer {
    /// A layer whose services share `limiter`.
    pub fn new(limiter: ConcurrencyLimiter) -> Self {
        ConcurrencyLimitLayer { limiter }
    }
}

impl<S> Layer<S> for ConcurrencyLimitLayer {
    type Service = ConcurrencyLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConcurrencyLimit {
            inner,
            limiter: self.limiter.clone(),
        }
    }
}

/// A service with at most the limiter's number of requests in flight, bodies included;
/// see [`ConcurrencyLimitLayer`].
#[derive(Clone, Debug)]
pub struct ConcurrencyLimit<S> {
    inner: S,
    limiter: ConcurrencyLimiter,
}

type Waiting = Pin<Box<dyn Future<Output = ConcurrencyPermit> + Send>>;

impl<S, Req, B> Service<Req> for ConcurrencyLimit<S>
where
    S: Service<Req, Response = Response<B>> + Clone,
    B: Body,
{
    type Response = Response<PermitBody<B>>;
    type Error = S::Error;
    type Future = ConcurrencyLimitFuture<S, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let fresh = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, fresh);
        let state = match self.limiter.try_acquire_now() {
            Some(permit) => State::Calling {
                future: ready.call(request),
                permit: Some(permit),
            },
            None => {
                let limiter = self.limiter.clone();
                State::Waiting {
                    acquire: Box::pin(async move { limiter.acquire().await }),
                    call: Some((ready, request)),
                }
            }
        };
        ConcurrencyLimitFuture { state }
    }
}

pin_project! {
    /// The response of a [`ConcurrencyLimit`] service: a slot, then the inner call.
    pub struct ConcurrencyLimitFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req>
    where
        S: Service<Req>,
    {
        Waiting { acquire: Waiting, call: Option<(S, Req)> },
        Calling { #[pin] future: S::Future, permit: Option<ConcurrencyPermit> },
    }
}

impl<S, Req, B> Future for ConcurrencyLimitFuture<S, Req>
where
    S: Service<Req, Response = Response<B>>,
    B: Body,
{
    type Output = Result<Response<PermitBody<B>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Waiting { acquire, call } => {
                    let permit = ready!(acquire.as_mut().poll(cx));
                    let (mut service, request) = call.take().expect("polled after completion");
                    let future = service.call(request);
                    this.state.set(State::Calling {
                        future,
                        permit: Some(permit),
                    });
                }
                StateProj::Calling { future, permit } => {
                    let response = ready!(future.poll(cx))?;
                    let permit = permit.take().expect("polled after completion");
                    return Poll::Ready(Ok(response.map(|body| PermitBody::new(body, permit))));
                }
            }
        }
    }
}

impl<S: Service<Req>, Req> fmt::Debug for ConcurrencyLimitFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyLimitFuture")
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// A response body holding a concurrency slot until its last frame has been read, it
    /// has failed, or it is dropped.
    #[derive(Debug)]
    pub struct PermitBody<B> {
        #[pin]
        inner: B,
        permit: Option<ConcurrencyPermit>,
    }
}

impl<B: Body> PermitBody<B> {
    /// `inner` holding `permit`; an empty body lets it go at once.
    pub fn new(inner: B, permit: ConcurrencyPermit) -> Self {
        let permit = (!inner.is_end_stream()).then_some(permit);
        PermitBody { inner, permit }
    }

    /// Whether the body still holds its slot.
    pub fn holds_permit(&self) -> bool {
        self.permit.is_some()
    }
}

impl<B: Body> Body for PermitBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        let ended = match &frame {
            Some(Ok(_)) => this.inner.is_end_stream(),
            None | Some(Err(_)) => true,
        };
        if ended {
            *this.permit = None;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
