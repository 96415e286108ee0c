//! The tower layers over real loopback HTTP: an axum router as the upstream, a hyper
//! client stack built with `tower::ServiceBuilder` as the caller. Real time, so the bounds
//! asserted leave room for a loaded machine.
#![cfg(feature = "tower")]

use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegeantic::integrations::tower::{ConcurrencyLimitLayer, RateLimitLayer, RetryPolicy};
use aegeantic::resilience::{
    ConcurrencyLimiter, Event, Observer, RateLimitConfig, RateLimiter, RetryBudget, RetryConfig,
};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::Request;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tower::retry::RetryLayer;
use tower::{ServiceBuilder, ServiceExt};

/// What the upstream saw.
#[derive(Clone, Default)]
struct Upstream {
    /// Calls per route.
    ok: Arc<AtomicU32>,
    busy: Arc<AtomicU32>,
    flaky: Arc<AtomicU32>,
    down: Arc<AtomicU32>,
    streams: Arc<AtomicU32>,
    /// When each call of the `busy` route arrived.
    busy_at: Arc<Mutex<Vec<Instant>>>,
    /// The chunks of the next streamed answer, sent by the test.
    chunks: Arc<Mutex<Option<mpsc::UnboundedReceiver<Bytes>>>>,
}

async fn ok(State(up): State<Upstream>) -> impl IntoResponse {
    up.ok.fetch_add(1, Ordering::Relaxed);
    "ok"
}

/// 429 with `Retry-After: 1` on the first call, then 200.
async fn busy(State(up): State<Upstream>) -> impl IntoResponse {
    up.busy_at.lock().unwrap().push(Instant::now());
    if up.busy.fetch_add(1, Ordering::Relaxed) == 0 {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "1".parse().unwrap());
        return (StatusCode::TOO_MANY_REQUESTS, headers, "slow down").into_response();
    }
    "ok".into_response()
}

/// 503 twice, then 200.
async fn flaky(State(up): State<Upstream>) -> impl IntoResponse {
    if up.flaky.fetch_add(1, Ordering::Relaxed) < 2 {
        return (StatusCode::SERVICE_UNAVAILABLE, "later").into_response();
    }
    "ok".into_response()
}

async fn down(State(up): State<Upstream>) -> impl IntoResponse {
    up.down.fetch_add(1, Ordering::Relaxed);
    (StatusCode::SERVICE_UNAVAILABLE, "down")
}

/// 200 with a body streamed as the test sends its chunks.
async fn stream(State(up): State<Upstream>) -> impl IntoResponse {
    up.streams.fetch_add(1, Ordering::Relaxed);
    let rx = up
        .chunks
        .lock()
        .unwrap()
        .take()
        .expect("a stream was prepared");
    let chunks = futures::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok::<_, Infallible>(chunk), rx))
    });
    axum::body::Body::from_stream(chunks)
}

/// Serves the router on 127.0.0.1; its base URL.
async fn serve(up: Upstream) -> String {
    let app = Router::new()
        .route("/ok", get(ok))
        .route("/busy", get(busy))
        .route("/flaky", get(flaky))
        .route("/down", get(down))
        .route("/stream", get(stream))
        .with_state(up);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}")
}

fn get_request<B: Default>(url: &str) -> Request<B> {
    Request::get(url).body(B::default()).unwrap()
}

fn limiter(per_second: f64, burst: u32) -> RateLimiter {
    RateLimiter::new(RateLimitConfig {
        requests_per_second: Some(per_second),
        burst_size: burst,
        ..RateLimitConfig::default()
    })
    .unwrap()
}

/// An observer counting retry and rate-limit events.
fn counting() -> (Observer, Arc<AtomicU64>, Arc<AtomicU64>) {
    let (retries, grants) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (r, g) = (retries.clone(), grants.clone());
    let observer: Observer = Arc::new(move |event: &Event| match event {
        Event::Retry(_) => {
            r.fetch_add(1, Ordering::Relaxed);
        }
        Event::RateLimit(_) => {
            g.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    });
    (observer, retries, grants)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_from_many_tasks_share_one_bucket() {
    let up = Upstream::default();
    let base = serve(up.clone()).await;
    let (rate, burst) = (40.0, 10);
    let limiter = limiter(rate, burst);
    let (observer, _, grants) = counting();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let service = ServiceBuilder::new()
        .layer(RateLimitLayer::new(limiter).on_event(observer))
        .service(client);

    let run = Duration::from_millis(1500);
    let start = Instant::now();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let service = service.clone();
            let url = format!("{base}/ok");
            tokio::spawn(async move {
                let mut done = 0u64;
                while start.elapsed() < run {
                    let response = service.clone().oneshot(get_request(&url)).await.unwrap();
                    assert_eq!(response.status(), StatusCode::OK);
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        admitted += task.await.unwrap();
    }
    // Every grant happened between `start` and now.
    let span = start.elapsed().as_secs_f64();
    let bound = f64::from(burst) + rate * span;
    println!(
        "admitted {admitted} requests in {span:.3} s from 16 tasks; burst + rate·D = {burst} + {rate}·{span:.3} = {bound:.1}"
    );
    assert_eq!(u64::from(up.ok.load(Ordering::Relaxed)), admitted);
    assert_eq!(
        grants.load(Ordering::Relaxed),
        admitted,
        "one event per grant"
    );
    assert!(admitted as f64 <= bound, "{admitted} > {bound}");
    // Not vacuous: the clones together got close to the limit (waiters are served as
    // soon as their tokens exist).
    assert!(
        admitted as f64 >= 0.8 * (f64::from(burst) + rate * 1.5),
        "{admitted}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_drains_the_bucket_and_is_waited() {
    let up = Upstream::default();
    let base = serve(up.clone()).await;
    let limiter = limiter(100.0, 20);
    let (observer, retries, _) = counting();
    let config = RetryConfig::builder()
        .base_delay(Duration::from_millis(10))
        .build()
        .unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let service = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryPolicy::new(config).on_event(observer)))
        .layer(RateLimitLayer::new(limiter.clone()))
        .service(client);
    let start = Instant::now();
    let response = service
        .oneshot(get_request(&format!("{base}/busy")))
        .await
        .unwrap();
    let elapsed = start.elapsed();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(up.busy.load(Ordering::Relaxed), 2);
    assert_eq!(retries.load(Ordering::Relaxed), 1);
    let arrivals = up.busy_at.lock().unwrap().clone();
    let gap = arrivals[1] - arrivals[0];
    println!("429 + Retry-After: 1 -> second attempt {gap:?} after the first ({elapsed:?} in all)");
    assert!(gap >= Duration::from_secs(1), "{gap:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    // The 429 drained the shared bucket: 20 tokens before, about 1.1 s of refill now, and
    // the second attempt's token taken.
    assert!(limiter.tokens_available() < 20.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_drains_the_bucket_for_every_clone() {
    let up = Upstream::default();
    let base = serve(up.clone()).await;
    // A slow refill, so that the drain is visible for long.
    let limiter = limiter(1.0, 5);
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let service = ServiceBuilder::new()
        .layer(RateLimitLayer::new(limiter.clone()))
        .service(client);
    let response = service
        .clone()
        .oneshot(get_request(&format!("{base}/busy")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        limiter.tokens_available() < 1.0,
        "{}",
        limiter.tokens_available()
    );
    // Another clone now waits for the refill (one token a second).
    let start = Instant::now();
    service
        .oneshot(get_request(&format!("{base}/ok")))
        .await
        .unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_is_retried_within_the_budget() {
    let up = Upstream::default();
    let base = serve(up.clone()).await;
    let config = |budget: Option<RetryBudget>| {
        let builder = RetryConfig::builder()
            .max_attempts(5)
            .base_delay(Duration::from_millis(5))
            .max_delay(Duration::from_millis(20));
        match budget {
            Some(budget) => builder.budget(budget),
            None => builder,
        }
        .build()
        .unwrap()
    };
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();

    // Recovers after two 503s.
    let service = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryPolicy::new(config(None))))
        .service(client.clone());
    let response = service
        .oneshot(get_request(&format!("{base}/flaky")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(up.flaky.load(Ordering::Relaxed), 3);

    // Always down: a budget of half a retry per request, no reserve.
    let budget = RetryBudget::new(0.5)
        .unwrap()
        .min_retries_per_second(0.0)
        .unwrap();
    let (observer, retries, _) = counting();
    let service = ServiceBuilder::new()
        .layer(RetryLayer::new(
            RetryPolicy::new(config(Some(budget))).on_event(observer),
        ))
        .service(client);
    for _ in 0..10 {
        let response = service
            .clone()
            .oneshot(get_request(&format!("{base}/down")))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    let calls = up.down.load(Ordering::Relaxed);
    println!("10 requests to an upstream that is down, budget 0.5: {calls} calls");
    assert_eq!(retries.load(Ordering::Relaxed), 5);
    assert_eq!(calls, 15, "10 requests + 5 retries, not 10 x 5 attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_cannot_be_replayed_is_sent_once() {
    let up = Upstream::default();
    let base = serve(up.clone()).await;
    let config = RetryConfig::builder()
        .base_delay(Duration::from_millis(1))
        .build()
        .unwrap();
    let (observer, retries, _) = counting();
    let client = Client::builder(TokioExecutor::new()).build_http::<BoxBody<Bytes, Infallible>>();
    let service = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryPolicy::new(config).on_event(observer)))
        .service(client);
    let body = Full::new(Bytes::from_static(b"streamed")).boxed();
    let request = Request::get(format!("{base}/down")).body(body).unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(up.down.load(Ordering::Relaxed), 1);
    assert_eq!(retries.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_body_holds_its_permit_until_the_last_chunk_or_its_drop() {
    let up = Upstream::default();
    let base = serve(up.clone()).await;
    let limiter = ConcurrencyLimiter::new(1).unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let service = ServiceBuilder::new()
        .layer(ConcurrencyLimitLayer::new(limiter.clone()))
        .service(client);
    let url = format!("{base}/stream");

    let (tx, rx) = mpsc::unbounded_channel();
    *up.chunks.lock().unwrap() = Some(rx);
    let response = service.clone().oneshot(get_request(&url)).await.unwrap();
    let headers_at = Instant::now();
    assert_eq!(
        limiter.available(),
        0,
        "the headers came; the body holds the slot"
    );
    let mut body = response.into_body();

    // A second request waits for the slot: it does not reach the server.
    let (tx2, rx2) = mpsc::unbounded_channel();
    let second = tokio::spawn({
        let (service, url) = (service.clone(), url.clone());
        async move {
            let response = service.oneshot(get_request(&url)).await.unwrap();
            (Instant::now(), response)
        }
    });
    for chunk in ["one ", "two ", "three"] {
        tokio::time::sleep(Duration::from_millis(100)).await;
        tx.send(Bytes::from(chunk)).unwrap();
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), chunk);
        assert_eq!(limiter.available(), 0, "still streaming");
        assert_eq!(
            up.streams.load(Ordering::Relaxed),
            1,
            "the second request waits"
        );
    }
    *up.chunks.lock().unwrap() = Some(rx2);
    drop(tx);
    assert!(body.frame().await.is_none());
    let ended_at = Instant::now();
    let (second_at, second) = second.await.unwrap();
    println!(
        "permit held {:?} after the headers, through 3 chunks; the next request got it {:?} after the body ended",
        ended_at - headers_at,
        second_at.saturating_duration_since(ended_at)
    );
    assert!(ended_at - headers_at >= Duration::from_millis(300));
    assert_eq!(up.streams.load(Ordering::Relaxed), 2);

    // Dropped mid-stream, the body frees the slot.
    assert_eq!(limiter.available(), 0);
    let mut body = second.into_body();
    tx2.send(Bytes::from("partial")).unwrap();
    body.frame().await.unwrap().unwrap();
    assert_eq!(limiter.available(), 0);
    drop(body);
    assert_eq!(
        limiter.available(),
        1,
        "dropping the body gave the slot back"
    );
}

/// The README's stack, against the loopback server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_stack_runs() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let up = Upstream::default();
    let base = serve(up.clone()).await;
    let limiter = RateLimiter::new(RateLimitConfig {
        requests_per_second: Some(10.0),
        burst_size: 20,
        ..Default::default()
    })?;
    let (log, retries, grants) = counting();
    let retry = RetryConfig::builder()
        .max_attempts(4)
        .base_delay(Duration::from_millis(200))
        .build()?;
    let concurrency = ConcurrencyLimiter::new(8)?;

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let service = ServiceBuilder::new()
        .layer(RetryLayer::new(
            RetryPolicy::new(retry).on_event(log.clone()),
        ))
        .layer(RateLimitLayer::new(limiter).on_event(log))
        .layer(ConcurrencyLimitLayer::new(concurrency.clone()))
        .service(client);
    let request = Request::get(format!("{base}/flaky")).body(Full::default())?;
    let response = service.oneshot(request).await?;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(concurrency.available(), 7, "the body is unread");
    let body = response.into_body().collect().await?.to_bytes();
    assert_eq!(body, "ok");
    assert_eq!(concurrency.available(), 8);
    // Two 503s retried, a token before each of the three attempts.
    assert_eq!(retries.load(Ordering::Relaxed), 2);
    assert_eq!(grants.load(Ordering::Relaxed), 3);
    Ok(())
}
