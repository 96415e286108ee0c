//! A [`Middleware`] for `reqwest-middleware` clients (feature `reqwest-middleware`): each
//! request runs through [`resilient`], so the shared [`RateLimiter`], the [`RetryConfig`]
//! (back-off, `Retry-After`, budget, deadline) and a [`CircuitBreaker`] apply to it as they
//! do to a stream, and the server's quota headers adjust the limiter.
//!
//! - **Tokens.** Every attempt takes its request's weight from the limiter (1 unless
//!   [`weight`](ResilienceMiddleware::weight) says otherwise) before it is sent, since the
//!   upstream counts a retry as a request. A weight the limiter can never grant (0, or more
//!   than its burst) fails the request with [`ResilienceError::RateLimit`]. The wait is part
//!   of the attempt (the core's own token step takes one token, not a weight), so the
//!   [`RetryConfig`]'s per-attempt time limits and a breaker's `slow_call` include it; set
//!   the HTTP timeouts on the reqwest client instead. `max_elapsed` bounds it as it bounds
//!   the rest.
//! - **Retries.** A response is a failed attempt when its status is a 5xx or one that
//!   [`classify_http`] retries (408, 409, 429, `x-should-retry: true`); so is a request
//!   that got no response (timed out, not connected, connection closed). Which of them are retried is the [`RetryConfig`]'s
//!   [`RetryOn`]: use [`request_retry_on`] there. A request whose body cannot be cloned (a
//!   stream) is sent once, never retried (with `tracing`, a debug record says so), and
//!   without the config's time limits.
//! - **Quota.** A 429, or any response that names a delay (`Retry-After`, `retry-after-ms`),
//!   drains the limiter, so that every client sharing it holds off; otherwise
//!   `x-ratelimit-remaining-requests` (or the header set with
//!   [`remaining_header`](ResilienceMiddleware::remaining_header)) caps it.
//! - **Outcome.** A response is returned as reqwest would return it, error statuses
//!   included, when the attempts run out on it or it is not to be retried. The request fails
//!   with a [`ResilienceError<RequestError>`] inside [`reqwest_middleware::Error::Middleware`]
//!   otherwise: transport errors after the last attempt, an open breaker, a refused token,
//!   a spent budget, the deadline, a server delay above `max_server_delay`. Its
//!   [`source()`](std::error::Error::source) chain reaches the reqwest error underneath.
//!   When the last attempt had an answer, the error keeps it:
//!   `anyhow_error.downcast::<ResilienceError<RequestError>>()`, then
//!   [`into_operation_error`](ResilienceError::into_operation_error) gives
//!   [`RequestError::Status`] with the response.

use std::fmt;
use std::sync::Arc;

use ::reqwest_middleware::{Error, Middleware, Next};
use http::{Extensions, HeaderName, StatusCode};
use reqwest::{Request, Response};

use crate::events::{OperationType, RateLimitEvent};
use crate::resilience::{
    classify_http, resilient, CircuitBreaker, Classify, Event, Observer, RateLimitError,
    RateLimiter, ResilienceError, Resilient, RetryConfig, RetryDecision, RetryOn,
};

/// Rate limiting, retry and a circuit breaker for every request of a
/// `reqwest_middleware::ClientWithMiddleware`; see the [module](self). Clones share the
/// limiter, the breaker, the retry budget and the observer.
///
/// ```
/// use std::time::Duration;
/// use aegeantic::integrations::reqwest_middleware::{request_retry_on, ResilienceMiddleware};
/// use aegeantic::resilience::{RateLimitConfig, RateLimiter, RetryConfig};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let limiter = RateLimiter::new(RateLimitConfig {
///     requests_per_second: Some(10.0),
///     burst_size: 20,
///     ..RateLimitConfig::default()
/// })?;
/// let retry = RetryConfig::builder()
///     .max_attempts(4)
///     .base_delay(Duration::from_millis(200))
///     .retry_on(request_retry_on())
///     .build()?;
/// let middleware = ResilienceMiddleware::new()
///     .rate_limit(limiter)
///     .retry(retry)
///     .on_event(|event| println!("{event:?}"));
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(middleware)
///     .build();
/// # drop(client);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ResilienceMiddleware {
    retry: Option<RetryConfig>,
    limiter: Option<RateLimiter>,
    weight: Option<Weight>,
    remaining_header: HeaderName,
    breaker: Option<CircuitBreaker>,
    observer: Option<Observer>,
    name: Arc<str>,
}

type Weight = Arc<dyn Fn(&Request) -> u32 + Send + Sync>;

impl ResilienceMiddleware {
    /// A middleware that sends each request once, unlimited, its events named `"http"`,
    /// until configured otherwise.
    pub fn new() -> Self {
        ResilienceMiddleware {
            retry: None,
            limiter: None,
            weight: None,
            remaining_header: HeaderName::from_static("x-ratelimit-remaining-requests"),
            breaker: None,
            observer: None,
            name: Arc::from("http"),
        }
    }

    /// Retries failed attempts as `config` says; give it [`request_retry_on`] so that
    /// error statuses are retried as [`classify_http`] decides.
    pub fn retry(mut self, config: RetryConfig) -> Self {
        self.retry = Some(config);
        self
    }

    /// Takes a request's weight from `limiter` before every attempt, and adjusts it to the
    /// server's quota headers.
    pub fn rate_limit(mut self, limiter: RateLimiter) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// How many tokens a request takes (1 if unset): an estimate of its tokens, say, for a
    /// limiter that counts tokens per minute. Such a limiter should be capped by the
    /// matching quota header ([`remaining_header`](Self::remaining_header)).
    pub fn weight(mut self, weight: impl Fn(&Request) -> u32 + Send + Sync + 'static) -> Self {
        self.weight = Some(Arc::new(weight));
        self
    }

    /// The response header whose number caps the limiter, in the limiter's units;
    /// `x-ratelimit-remaining-requests` unless set.
    pub fn remaining_header(mut self, name: HeaderName) -> Self {
        self.remaining_header = name;
        self
    }

    /// Asks `breaker` before every attempt and tells it each attempt's outcome; while it
    /// is open requests fail at once with [`ResilienceError::CircuitOpen`].
    pub fn circuit_breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.breaker = Some(breaker);
        self
    }

    /// Shows every event (retries, tokens granted, breaker changes) to `observer` as it
    /// happens, from whichever task runs the request.
    pub fn on_event(mut self, observer: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// The operation name the events carry.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }
}

impl Default for ResilienceMiddleware {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ResilienceMiddleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResilienceMiddleware")
            .field("name", &self.name)
            .field("retry", &self.retry)
            .field("limiter", &self.limiter.is_some())
            .field("breaker", &self.breaker.is_some())
            .finish_non_exhaustive()
    }
}

/// Why one attempt of a request failed. The middleware's error is a
/// [`ResilienceError`] of it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The server answered with a status that counts as a failure; the response is kept
    /// as it came, its body unread.
    #[error("HTTP {}", .0.status())]
    Status(Response),
    /// No response: reqwest, or a middleware after this one, failed.
    #[error(transparent)]
    Transport(::reqwest_middleware::Error),
    /// The limiter refused the request's tokens; reported as [`ResilienceError::RateLimit`].
    #[error(transparent)]
    RateLimit(RateLimitError),
}

impl Classify for RequestError {
    fn classify(&self) -> Option<RetryDecision> {
        match self {
            RequestError::Status(response) => {
                Some(classify_http(response.status(), response.headers()))
            }
            // No response came: a timeout, a failed connect, or a connection closed before
            // the answer (hyper's "connection closed before message completed"), as the
            // official SDKs retry them. None of these is an `io::Error` that
            // `RetryOn::transient` would find in the chain.
            RequestError::Transport(::reqwest_middleware::Error::Reqwest(error))
                if error.is_timeout() || error.is_connect() || error.is_request() =>
            {
                Some(RetryDecision::Retry)
            }
            RequestError::Transport(_) => None,
            RequestError::RateLimit(_) => Some(RetryDecision::DoNotRetry),
        }
    }
}

/// The [`RetryOn`] for requests: error statuses as [`classify_http`] decides, timeouts and
/// connection failures.
///
/// ```
/// use aegeantic::integrations::reqwest_middleware::request_retry_on;
/// use aegeantic::resilience::RetryConfig;
///
/// let config = RetryConfig::builder().retry_on(request_retry_on()).build().unwrap();
/// # drop(config);
/// ```
pub fn request_retry_on() -> RetryOn {
    RetryOn::classified::<RequestError>().or(RetryOn::transient())
}

#[async_trait::async_trait]
impl Middleware for ResilienceMiddleware {
    async fn handle(
        &self,
        request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> ::reqwest_middleware::Result<Response> {
        let weight = self.weight.as_ref().map_or(1, |weight| weight(&request));
        // A streamed body can be read once only.
        let replayable = request.try_clone().is_some();
        let retry = self.retry.clone().filter(|_| replayable);
        #[cfg(feature = "tracing")]
        if self.retry.is_some() && !replayable {
            tracing::debug!(
                operation_name = &*self.name,
                "the request's body cannot be cloned: sent once, not retried"
            );
        }
        let retried = retry.is_some();
        let mut pending = Some(request);
        let template = extensions.clone();
        let attempt = || {
            let request = if retried {
                pending.as_ref().and_then(Request::try_clone)
            } else {
                pending.take()
            };
            let request = request.expect("a request is cloned for every attempt or sent once");
            let context = Attempt {
                middleware: self,
                weight,
                extensions: template.clone(),
            };
            context.run(request, next.clone())
        };
        let observer = self.observer.clone();
        let mut call = resilient(
            attempt,
            retry,
            None,
            Arc::clone(&self.name),
            OperationType::Custom,
        )
        .on_event(move |event| {
            if let Some(observer) = &observer {
                observer(event);
            }
        });
        if let Some(breaker) = &self.breaker {
            call = call.with_circuit_breaker(breaker.clone());
        }
        match call.await {
            Ok((response, attempt_extensions)) => {
                *extensions = attempt_extensions;
                Ok(response)
            }
            Err(ResilienceError::Operation {
                source: RequestError::Status(response),
                ..
            }) => Ok(response),
            Err(ResilienceError::Operation {
                source: RequestError::RateLimit(error),
                ..
            }) => Err(Error::middleware(
                ResilienceError::<RequestError>::RateLimit(error),
            )),
            Err(error) => Err(Error::middleware(error)),
        }
    }
}

/// What one attempt needs besides its request.
struct Attempt<'a> {
    middleware: &'a ResilienceMiddleware,
    weight: u32,
    // The caller's extensions, copied: what the rest of the chain adds to them is kept from
    // the successful attempt only.
    extensions: Extensions,
}

impl Attempt<'_> {
    async fn run(
        mut self,
        request: Request,
        next: Next<'_>,
    ) -> Result<(Response, Extensions), RequestError> {
        let limiter = self.middleware.limiter.as_ref();
        if let Some(limiter) = limiter {
            let name = &self.middleware.name;
            let acquired = limiter
                .acquire(self.weight, name)
                .await
                .map_err(RequestError::RateLimit)?;
            if let Some(observer) = &self.middleware.observer {
                let event = RateLimitEvent::granted(Arc::clone(name), &acquired);
                observer(&Resilient::RateLimit(event));
            }
        }
        let response = next
            .run(request, &mut self.extensions)
            .await
            .map_err(RequestError::Transport)?;
        if let Some(limiter) = limiter {
            self.middleware.apply_quota(limiter, &response).await;
        }
        if is_failure(&response) {
            return Err(RequestError::Status(response));
        }
        Ok((response, self.extensions))
    }
}

impl ResilienceMiddleware {
    /// Lowers the shared limiter to what the response says is left.
    async fn apply_quota(&self, limiter: &RateLimiter, response: &Response) {
        let headers = response.headers();
        let delayed = matches!(
            classify_http(response.status(), headers),
            RetryDecision::RetryAfter(_)
        );
        // A failed adjustment (Redis down) loses only the courtesy; the response stands.
        if delayed || response.status() == StatusCode::TOO_MANY_REQUESTS {
            let _ = limiter.drain().await;
        } else if let Some(remaining) = headers
            .get(&self.remaining_header)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
        {
            let _ = limiter
                .cap_available(u32::try_from(remaining).unwrap_or(u32::MAX))
                .await;
        }
    }
}

/// Whether a response ends its attempt as a failure: what the breaker counts and the retry
/// policy judges.
fn is_failure(response: &Response) -> bool {
    response.status().is_server_error()
        || classify_http(response.status(), response.headers()) != RetryDecision::DoNotRetry
}
