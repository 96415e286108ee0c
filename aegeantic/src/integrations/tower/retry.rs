//! A [`tower::retry::Policy`] that decides as the core's retry loop does, so tower's own
//! `Retry` middleware runs our classification, back-off, server delays, budget and
//! deadline.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use tokio::time::{Instant, Sleep};
use tower::retry::Policy;

use crate::events::{unix_now, OperationType, RetryEvent};
use crate::report::DisplayChain;
use crate::resilience::{classify_http, Event, Fallback, Observer, RetryConfig, RetryDecision};

/// A request body that can be sent again: `Some(copy)` when it can, `None` when it cannot
/// (a stream already consumed, say), in which case the request is not retried.
///
/// Implemented for the usual in-memory bodies, and (returning `None`) for boxed bodies,
/// which may be streams. Implement it for your own body type.
pub trait ReplayBody: Sized {
    /// A copy of the body to send again, if there can be one.
    fn replay(&self) -> Option<Self>;
}

macro_rules! replay_by_clone {
    ($($body:ty),*) => {$(
        impl ReplayBody for $body {
            fn replay(&self) -> Option<Self> {
                Some(self.clone())
            }
        }
    )*};
}

replay_by_clone!((), String, Vec<u8>, Bytes, &'static str);

impl<D: Clone> ReplayBody for http_body_util::Full<D> {
    fn replay(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl<D> ReplayBody for http_body_util::Empty<D> {
    fn replay(&self) -> Option<Self> {
        Some(http_body_util::Empty::new())
    }
}

impl<D, E> ReplayBody for http_body_util::combinators::BoxBody<D, E> {
    fn replay(&self) -> Option<Self> {
        None
    }
}

impl<D, E> ReplayBody for http_body_util::combinators::UnsyncBoxBody<D, E> {
    fn replay(&self) -> Option<Self> {
        None
    }
}

/// How [`RetryPolicy`] copies a request for another attempt: `Some(copy)`, or `None` when
/// the request cannot be sent again, in which case it is sent once.
pub trait Replay<Req> {
    /// A copy of `request` to send again, if there can be one.
    fn replay(&self, request: &Req) -> Option<Req>;
}

/// `http::Request`s, copied with their body when it is a [`ReplayBody`]: the default.
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpRequests;

impl<B: ReplayBody> Replay<Request<B>> for HttpRequests {
    fn replay(&self, request: &Request<B>) -> Option<Request<B>> {
        let body = request.body().replay()?;
        let mut copy = Request::new(body);
        *copy.method_mut() = request.method().clone();
        *copy.uri_mut() = request.uri().clone();
        *copy.version_mut() = request.version();
        *copy.headers_mut() = request.headers().clone();
        *copy.extensions_mut() = request.extensions().clone();
        Some(copy)
    }
}

/// Requests that are `Clone` and can be sent as often as they are cloned, such as
/// async-openai's `HttpRequestFactory`, which builds its request afresh for each attempt.
/// See [`RetryPolicy::clone_requests`].
#[derive(Clone, Copy, Debug, Default)]
pub struct ClonedRequests;

impl<Req: Clone> Replay<Req> for ClonedRequests {
    fn replay(&self, request: &Req) -> Option<Req> {
        Some(request.clone())
    }
}

/// Retries HTTP requests through tower's [`Retry`](tower::retry::Retry) middleware as a
/// [`RetryConfig`] says.
///
/// * Errors are classified by the config's [`RetryOn`](crate::resilience::RetryOn), which
///   looks through their `source()` chain; responses that are not successes by
///   [`classify_http`] (408, 409, 429, 5xx; `x-should-retry`; `Retry-After`).
/// * The wait is the config's back-off with its jitter; a server-directed delay
///   (`Retry-After`, `retry-after-ms`) is honoured up to `max_server_delay` (lengthened by
///   `server_delay_jitter`) and a longer one ends the retries, returning the response.
/// * `max_attempts`, the shared [`RetryBudget`](crate::resilience::RetryBudget) (one
///   deposit per request, one withdrawal per retry) and `max_elapsed` (no retry whose wait
///   would end past it) bound the retries. A response or error that is not retried is
///   returned as it came. Per-attempt timeouts are tower's `Timeout` layer's job.
/// * A request is retried only if its body can be sent again ([`ReplayBody`]); one that
///   cannot is sent once, and a tracing record (feature `tracing`) says so. Requests of
///   other types that can be cloned are retried after
///   [`clone_requests`](RetryPolicy::clone_requests).
///
/// Each retry is shown to the [`on_event`](RetryPolicy::on_event) observer as a
/// [`RetryEvent`] before its wait, and recorded with `tracing`.
///
/// ```
/// use std::{sync::Arc, sync::atomic::{AtomicU32, Ordering}, time::Duration};
/// use aegeantic::integrations::tower::RetryPolicy;
/// use aegeantic::resilience::RetryConfig;
/// use http::{Request, Response, StatusCode};
/// use tower::{retry::RetryLayer, service_fn, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let calls = Arc::new(AtomicU32::new(0));
/// let counter = calls.clone();
/// let flaky = service_fn(move |_: Request<String>| {
///     let call = counter.fetch_add(1, Ordering::Relaxed);
///     let status = if call == 0 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
///     async move {
///         let mut response = Response::new(String::new());
///         *response.status_mut() = status;
///         Ok::<_, std::io::Error>(response)
///     }
/// });
/// let config = RetryConfig::builder().base_delay(Duration::from_millis(1)).build()?;
/// let service = ServiceBuilder::new()
///     .layer(RetryLayer::new(RetryPolicy::new(config)))
///     .service(flaky);
/// let response = service.oneshot(Request::new(String::from("{}"))).await?;
/// assert_eq!(response.status(), StatusCode::OK);
/// assert_eq!(calls.load(Ordering::Relaxed), 2);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[must_use]
pub struct RetryPolicy<R = HttpRequests> {
    config: RetryConfig,
    name: Arc<str>,
    observer: Option<Observer>,
    replay: R,
    run: Run,
}

/// One request's retries so far. tower clones the policy into each request's future after
/// asking it for the first copy of the request, so the service's own policy never leaves
/// `attempts == 0`, and each request's copy counts for itself.
#[derive(Clone, Copy, Debug, Default)]
struct Run {
    attempts: u32,
    previous_delay: Option<Duration>,
    started: Option<Instant>,
}

impl RetryPolicy {
    /// A policy retrying `http::Request`s as `config` says.
    pub fn new(config: RetryConfig) -> Self {
        RetryPolicy {
            config,
            name: "tower".into(),
            observer: None,
            replay: HttpRequests,
            run: Run::default(),
        }
    }

    /// Retries requests of any type that is `Clone` by cloning them, such as the
    /// `HttpRequestFactory` that async-openai's HTTP service hook passes down.
    pub fn clone_requests(self) -> RetryPolicy<ClonedRequests> {
        RetryPolicy {
            config: self.config,
            name: self.name,
            observer: self.observer,
            replay: ClonedRequests,
            run: self.run,
        }
    }
}

impl<R> RetryPolicy<R> {
    /// The operation name the events and tracing records carry (default `"tower"`).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Shows every [`RetryEvent`] to `observer`, before the retry's wait.
    pub fn on_event(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The wait before the next attempt, whether the server chose it and how a shared
    /// budget's failure policy allowed it, or, when the failure ends the retries, the
    /// attempt's outcome as its metrics label says it.
    fn next_wait(&mut self, decision: RetryDecision) -> Result<Wait, &'static str> {
        let config = &self.config;
        self.run.attempts = self.run.attempts.saturating_add(1);
        let attempt = self.run.attempts;
        if decision == RetryDecision::DoNotRetry || attempt >= config.max_attempts() {
            return Err("failed");
        }
        let mut delay = config.delay_after(attempt, self.run.previous_delay);
        let mut server_directed = false;
        if let RetryDecision::RetryAfter(asked) = decision {
            if asked > config.max_server_delay() {
                #[cfg(feature = "tracing")]
                tracing::warn!(operation_name = &*self.name, ?asked, max = ?config.max_server_delay(), "not retrying: the server's delay is too long");
                return Err("server_delay_too_long");
            }
            delay = delay.max(config.server_delay(asked));
            server_directed = true;
        }
        if let (Some(max), Some(started)) = (config.max_elapsed(), self.run.started) {
            if started.elapsed().saturating_add(delay) >= max {
                #[cfg(feature = "tracing")]
                tracing::warn!(
                    operation_name = &*self.name,
                    ?max,
                    "not retrying: the wait would end past max_elapsed"
                );
                return Err("deadline_exceeded");
            }
        }
        let mut budget_fallback = None;
        if let Some(budget) = config.budget() {
            let (taken, fallback) = budget.withdraw();
            budget_fallback = fallback;
            if !taken {
                #[cfg(feature = "tracing")]
                tracing::warn!(
                    operation_name = &*self.name,
                    "not retrying: the retry budget is spent"
                );
                return Err("budget_exhausted");
            }
        }
        self.run.previous_delay = Some(delay);
        Ok(Wait {
            delay,
            server_directed,
            budget_fallback,
        })
    }

    /// Counts an attempt by how it ended.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    fn record_attempt(&self, outcome: &'static str) {
        #[cfg(feature = "metrics")]
        crate::observe::metrics::attempt(
            crate::observe::metrics::Operation {
                name: self.name.clone().into(),
                kind: OperationType::Custom.metrics_label(),
            },
            outcome,
            None,
        );
    }

    fn report(&self, error: String, wait: &Wait) {
        let Wait {
            delay,
            server_directed,
            budget_fallback,
        } = *wait;
        let event = RetryEvent {
            operation_type: OperationType::Custom,
            operation_name: self.name.clone(),
            attempt: self.run.attempts,
            max_attempts: self.config.max_attempts(),
            error,
            next_delay_seconds: delay.as_secs_f64(),
            items_delivered: 0,
            timeout: None,
            server_directed,
            budget_fallback,
            step_id: None,
            timestamp: unix_now(),
        };
        event.record();
        if let Some(observer) = &self.observer {
            observer(&Event::Retry(event));
        }
    }
}

/// What the next retry waits for, as the policy decided it.
#[derive(Clone, Copy)]
struct Wait {
    delay: Duration,
    server_directed: bool,
    budget_fallback: Option<Fallback>,
}

impl<R> fmt::Debug for RetryPolicy<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("config", &self.config)
            .field("name", &self.name)
            .field("attempts", &self.run.attempts)
            .finish_non_exhaustive()
    }
}

impl<R, Req, ResB, E> Policy<Req, Response<ResB>, E> for RetryPolicy<R>
where
    R: Replay<Req> + Clone,
    E: Error + 'static,
{
    type Future = Sleep;

    fn retry(
        &mut self,
        _request: &mut Req,
        result: &mut Result<Response<ResB>, E>,
    ) -> Option<Sleep> {
        let (decision, error) = match result {
            Ok(response) if response.status().is_success() => {
                self.record_attempt("success");
                return None;
            }
            Ok(response) => (
                classify_http(response.status(), response.headers()),
                format!("HTTP {}", response.status()),
            ),
            Err(error) => (
                self.config.retry_on().decide(error),
                DisplayChain(&*error).to_string(),
            ),
        };
        let wait = match self.next_wait(decision) {
            Ok(wait) => wait,
            Err(outcome) => {
                self.record_attempt(outcome);
                return None;
            }
        };
        self.record_attempt("retried");
        self.report(error, &wait);
        Some(tokio::time::sleep(wait.delay))
    }

    fn clone_request(&mut self, request: &Req) -> Option<Req> {
        if self.run.attempts == 0 {
            // A new request (see `Run`): its clock starts and it earns its share of retries.
            self.run.started = Some(Instant::now());
            if let Some(budget) = self.config.budget() {
                budget.deposit();
            }
        }
        let copy = self.replay.replay(request);
        #[cfg(feature = "tracing")]
        if copy.is_none() {
            tracing::debug!(
                operation_name = &*self.name,
                "request cannot be sent again: sent once, not retried"
            );
        }
        copy
    }
}
