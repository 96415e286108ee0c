//! `retry` and `resilient` around futures, on a paused clock: the streams' policies, with
//! the events sent to an observer.

mod common;

use std::future::{pending, ready};
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegeantic::resilience::{
    resilient, retry, CircuitBreaker, CircuitBreakerConfig, CircuitState, Classify, Event,
    ResilienceError, ResilienceMonitor, Resilient, RetryCall, RetryConfig, RetryDecision, RetryOn,
};
use common::{denied, reset};
use tokio::time::Instant;

const SEC: Duration = Duration::from_secs(1);

fn policy() -> aegeantic::resilience::RetryConfigBuilder {
    RetryConfig::builder().base_delay(SEC).jitter(false)
}

/// A factory whose calls fail with `errors` in turn, then succeed with the call's number.
fn failing_with(
    errors: Vec<fn() -> io::Error>,
) -> (
    Arc<AtomicU32>,
    impl FnMut() -> std::future::Ready<Result<u32, io::Error>>,
) {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let factory = move || {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        ready(match errors.get(n as usize) {
            Some(error) => Err(error()),
            None => Ok(n + 1),
        })
    };
    (calls, factory)
}

/// The observer's view: one line an event.
fn log() -> (Arc<Mutex<Vec<String>>>, impl FnMut(&Event)) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let observer = move |event: &Event| {
        sink.lock().unwrap().push(match event {
            Resilient::Retry(e) => format!("retry:{}@{}", e.attempt, e.next_delay_seconds),
            Resilient::RateLimit(e) => format!("rate:{:?}", e.waited),
            Resilient::Circuit(e) => format!("circuit:{:?}->{:?}", e.from, e.to),
            other => format!("{other:?}"),
        });
    };
    (lines, observer)
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_with_back_off_and_reported() {
    let (calls, factory) = failing_with(vec![reset, reset]);
    let (lines, observer) = log();
    let start = Instant::now();
    let value = retry(factory, policy().build().unwrap())
        .on_event(observer)
        .await
        .unwrap();
    assert_eq!(value, 3);
    assert_eq!(calls.load(Ordering::Relaxed), 3);
    assert_eq!(start.elapsed(), 3 * SEC, "1 s, then 2 s");
    assert_eq!(*lines.lock().unwrap(), ["retry:1@1", "retry:2@2"]);
}

#[tokio::test(start_paused = true)]
async fn permanent_failures_and_exhaustion_end_the_call() {
    let (calls, factory) = failing_with(vec![denied]);
    let error = retry(factory, policy().build().unwrap()).await.unwrap_err();
    assert!(
        matches!(&error, ResilienceError::Operation { attempts: 1, source } if source.kind() == io::ErrorKind::PermissionDenied),
        "{error:?}"
    );
    assert_eq!(calls.load(Ordering::Relaxed), 1);

    let (calls, factory) = failing_with(vec![reset; 5]);
    let error = retry(factory, policy().max_attempts(3).build().unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(error, ResilienceError::Operation { attempts: 3, .. }),
        "{error:?}"
    );
    assert_eq!(error.to_string(), "operation failed after 3 attempts");
    assert_eq!(calls.load(Ordering::Relaxed), 3);
}

#[derive(Debug, thiserror::Error)]
#[error("429 Too Many Requests")]
struct Busy(Duration);

impl Classify for Busy {
    fn classify(&self) -> Option<RetryDecision> {
        Some(RetryDecision::RetryAfter(self.0))
    }
}

#[tokio::test(start_paused = true)]
async fn a_server_delay_is_waited() {
    let mut calls = 0;
    let factory = || {
        calls += 1;
        ready(if calls == 1 {
            Err(Busy(5 * SEC))
        } else {
            Ok("ok")
        })
    };
    let config = policy()
        .retry_on(RetryOn::classified::<Busy>())
        .server_delay_jitter(0.0)
        .build()
        .unwrap();
    let start = Instant::now();
    assert_eq!(retry(factory, config).await.unwrap(), "ok");
    assert_eq!(start.elapsed(), 5 * SEC);
}

#[tokio::test(start_paused = true)]
async fn timeouts_and_the_deadline_bound_a_call() {
    // The first attempt hangs; the attempt timeout cuts it and the retry succeeds.
    let mut calls = 0;
    let factory = || {
        calls += 1;
        let first = calls == 1;
        async move {
            if first {
                pending::<()>().await;
            }
            Ok::<_, io::Error>("late")
        }
    };
    let config = policy().attempt_timeout(2 * SEC).build().unwrap();
    let start = Instant::now();
    assert_eq!(retry(factory, config).await.unwrap(), "late");
    assert_eq!(start.elapsed(), 3 * SEC, "2 s timeout, 1 s back-off");

    // A call that never answers ends on its deadline.
    let config = policy().max_elapsed(5 * SEC).build().unwrap();
    let start = Instant::now();
    let error = retry(pending::<Result<(), io::Error>>, config)
        .await
        .unwrap_err();
    assert!(
        matches!(error, ResilienceError::DeadlineExceeded { .. }),
        "{error:?}"
    );
    assert_eq!(start.elapsed(), 5 * SEC);
}

#[tokio::test(start_paused = true)]
async fn a_limiter_gives_a_token_before_every_attempt() {
    let limiter = common::limiter(1.0, 1);
    let (calls, factory) = failing_with(vec![reset]);
    let (lines, mut observer) = log();
    let mut monitor = ResilienceMonitor::new();
    let start = Instant::now();
    let value = resilient(
        factory,
        Some(policy().base_delay(Duration::ZERO).build().unwrap()),
        Some(limiter.clone()),
        "fetch",
        "tool",
    )
    .on_event(|event| {
        observer(event);
        monitor.handle_event(event);
    })
    .await
    .unwrap();
    assert_eq!(value, 2);
    assert_eq!(calls.load(Ordering::Relaxed), 2);
    assert_eq!(
        start.elapsed(),
        SEC,
        "the retry's token came a second later"
    );
    assert_eq!(*lines.lock().unwrap(), ["rate:0ns", "retry:1@0", "rate:1s"]);
    assert_eq!((monitor.retry_count(), monitor.rate_limit_waits()), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_call_gives_its_place_in_the_queue_back() {
    let limiter = common::limiter(1.0, 1);
    assert!(limiter.try_acquire(1).await.unwrap());
    let call = resilient(
        || ready(Ok::<_, io::Error>(1)),
        None,
        Some(limiter.clone()),
        "op",
        "custom",
    );
    let mut call = Box::pin(call);
    assert!(
        futures::poll!(call.as_mut()).is_pending(),
        "waiting for its token"
    );
    drop(call);
    tokio::time::advance(SEC).await;
    assert!(
        limiter.try_acquire(1).await.unwrap(),
        "the token was not spent"
    );
}

#[tokio::test(start_paused = true)]
async fn a_breaker_hears_of_every_outcome() {
    let breaker = CircuitBreaker::new(CircuitBreakerConfig {
        failure_ratio: 0.5,
        window: 3,
        minimum_calls: 3,
        open_duration: 10 * SEC,
        half_open_probes: 1,
        slow_call: None,
    })
    .unwrap();
    let once = || policy().max_attempts(1).build().unwrap();
    let call = |fail: bool| {
        retry(
            move || ready(if fail { Err(reset()) } else { Ok(()) }),
            once(),
        )
        .with_circuit_breaker(breaker.clone())
    };
    // Successes count: without them the window would not be full at the fourth call.
    call(false).await.unwrap();
    call(false).await.unwrap();
    call(true).await.unwrap_err();
    let (lines, observer) = log();
    call(true).on_event(observer).await.unwrap_err();
    assert_eq!(*lines.lock().unwrap(), ["circuit:Closed->Open"]);
    assert!(matches!(
        call(false).await,
        Err(ResilienceError::CircuitOpen(_))
    ));

    tokio::time::advance(10 * SEC).await;
    let (lines, observer) = log();
    call(false).on_event(observer).await.unwrap();
    assert_eq!(
        *lines.lock().unwrap(),
        ["circuit:Open->HalfOpen", "circuit:HalfOpen->Closed"]
    );
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn the_extension_trait_reads_like_backon() {
    async fn fetch(url: &str) -> Result<usize, io::Error> {
        Ok(url.len())
    }
    let url = "https://example.com";
    let config = policy().build().unwrap();
    assert_eq!((|| fetch(url)).retry(config).await.unwrap(), url.len());
}

#[tokio::test(start_paused = true)]
async fn every_call_funds_the_retry_budget_even_when_it_succeeds_at_once() {
    let budget = aegeantic::resilience::RetryBudget::new(0.5)
        .unwrap()
        .min_retries_per_second(0.0)
        .unwrap();
    let config = policy().budget(budget.clone()).build().unwrap();
    // Two calls that succeed at once deposit a retry's worth between them.
    for _ in 0..2 {
        retry(|| ready(Ok::<_, io::Error>(())), config.clone())
            .await
            .unwrap();
    }
    assert_eq!(budget.available(), 1.0);
    // A failing call deposits half a retry more and spends one; with the next call's half
    // the balance is a whole retry again (`available` counts whole retries).
    let (calls, factory) = failing_with(vec![reset]);
    assert_eq!(retry(factory, config.clone()).await.unwrap(), 2);
    assert_eq!(calls.load(Ordering::Relaxed), 2);
    assert_eq!(budget.available(), 0.0);
    retry(|| ready(Ok::<_, io::Error>(())), config)
        .await
        .unwrap();
    assert_eq!(budget.available(), 1.0);
}

#[tokio::test(start_paused = true)]
async fn settings_made_before_the_first_attempt_reach_the_retries() {
    // The first attempt of a plain call runs before the state machine exists; what was set
    // on the call before it (step id, name) must still be on the machine's events.
    let (_, factory) = failing_with(vec![reset]);
    let steps = Arc::new(Mutex::new(Vec::new()));
    let sink = steps.clone();
    let value = resilient(
        factory,
        Some(policy().build().unwrap()),
        None,
        "fetch",
        "tool",
    )
    .with_step_id("step-7")
    .on_event(move |event: &Event| {
        if let Resilient::Retry(retry) = event {
            sink.lock().unwrap().push((
                retry.step_id.as_deref().map(str::to_owned),
                retry.operation_name.to_string(),
                retry.attempt,
            ));
        }
    })
    .await
    .unwrap();
    assert_eq!(value, 2);
    assert_eq!(
        *steps.lock().unwrap(),
        [(Some("step-7".to_owned()), "fetch".to_owned(), 1)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_breaker_added_after_the_step_id_still_counts_the_first_attempt() {
    let breaker = CircuitBreaker::new(CircuitBreakerConfig {
        failure_ratio: 0.5,
        window: 1,
        minimum_calls: 1,
        ..CircuitBreakerConfig::default()
    })
    .unwrap();
    let (calls, factory) = failing_with(vec![reset]);
    let error = retry(factory, policy().max_attempts(3).build().unwrap())
        .with_step_id("step-8")
        .with_circuit_breaker(breaker.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(error, ResilienceError::CircuitOpen { .. }),
        "{error:?}"
    );
    assert_eq!(
        calls.load(Ordering::Relaxed),
        1,
        "the open breaker stops the second"
    );
    assert_eq!(breaker.state(), CircuitState::Open);
}
