//! Event order and timing of the stream adapters, on a paused clock.

mod common;

use std::error::Error as _;
use std::io;
use std::time::Duration;

use aegeantic::events::OperationType;
use aegeantic::resilience::{
    rate_limited_stream, resilient_stream, retry_stream, ResilienceError, Resilient, RetryConfig,
    RetryOn,
};
use common::{denied, limiter, reset, retry, scripted};
use futures::{Stream, StreamExt};
use tokio::time::Instant;

/// A compact transcript of a stream: `item:x`, `retry:n/m@delay(delivered)`, `rate`, `err:n`.
async fn transcript<S, T, E>(stream: S) -> Vec<String>
where
    S: Stream<Item = Result<Resilient<T>, ResilienceError<E>>>,
    T: std::fmt::Display,
    E: std::error::Error + 'static,
{
    stream
        .map(|item| match item {
            Ok(Resilient::Item(x)) => format!("item:{x}"),
            Ok(Resilient::Retry(e)) => format!(
                "retry:{}/{}@{}({})",
                e.attempt, e.max_attempts, e.next_delay_seconds, e.items_delivered
            ),
            Ok(Resilient::RateLimit(_)) => "rate".to_string(),
            Ok(_) => "other".to_string(),
            Err(ResilienceError::Operation { attempts, .. }) => format!("err:{attempts}"),
            Err(e) => format!("error:{e}"),
        })
        .collect()
        .await
}

const SEC: Duration = Duration::from_secs(1);

#[tokio::test(start_paused = true)]
async fn success_yields_only_items() {
    let factory = scripted(vec![(vec!["a", "b"], None)]);
    let items = transcript(retry_stream(factory, retry(3, SEC), "op", "llm")).await;
    assert_eq!(items, ["item:a", "item:b"]);
}

#[tokio::test(start_paused = true)]
async fn retry_then_success_restarts_from_the_beginning() {
    let start = Instant::now();
    let factory = scripted(vec![(vec!["a"], Some(reset)), (vec!["a", "b"], None)]);
    let items = transcript(retry_stream(factory, retry(3, SEC), "op", "llm")).await;
    assert_eq!(items, ["item:a", "retry:1/3@1(1)", "item:a", "item:b"]);
    assert_eq!(start.elapsed(), SEC);
}

#[tokio::test(start_paused = true)]
async fn exhaustion_ends_with_the_last_error_after_the_exact_back_off() {
    let start = Instant::now();
    let factory = scripted(vec![(vec![], Some(reset))]);
    let items = transcript(retry_stream(factory, retry(3, SEC), "op", "llm")).await;
    assert_eq!(items, ["retry:1/3@1(0)", "retry:2/3@2(0)", "err:3"]);
    assert_eq!(start.elapsed(), 3 * SEC);
}

#[tokio::test(start_paused = true)]
async fn a_non_retryable_error_fails_at_once_without_an_event() {
    let start = Instant::now();
    let factory = scripted(vec![(vec!["a"], Some(denied))]);
    let items = transcript(retry_stream(factory, retry(3, SEC), "op", "llm")).await;
    assert_eq!(items, ["item:a", "err:1"]);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn mid_stream_failure_reports_items_delivered() {
    let factory = scripted(vec![
        (vec!["a", "b", "c"], Some(reset)),
        (vec!["a"], Some(reset)),
        (vec!["a", "b", "c", "d"], None),
    ]);
    let items = transcript(retry_stream(factory, retry(3, SEC), "op", "llm")).await;
    assert_eq!(
        items,
        [
            "item:a",
            "item:b",
            "item:c",
            "retry:1/3@1(3)",
            "item:a",
            "retry:2/3@2(1)",
            "item:a",
            "item:b",
            "item:c",
            "item:d"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn one_attempt_means_no_retry() {
    let factory = scripted(vec![(vec![], Some(reset))]);
    let items = transcript(retry_stream(factory, retry(1, SEC), "op", "llm")).await;
    assert_eq!(items, ["err:1"]);
}

#[tokio::test(start_paused = true)]
async fn custom_classification_decides() {
    let factory = scripted(vec![(vec![], Some(denied)), (vec!["ok"], None)]);
    let config = RetryConfig::builder()
        .base_delay(SEC)
        .jitter(false)
        .retry_on(RetryOn::when(|e| {
            e.downcast_ref::<io::Error>()
                .is_some_and(|io| io.kind() == io::ErrorKind::PermissionDenied)
        }))
        .build()
        .unwrap();
    let items = transcript(retry_stream(factory, config, "op", "tool")).await;
    assert_eq!(items, ["retry:1/3@1(0)", "item:ok"]);
}

#[tokio::test(start_paused = true)]
async fn rate_limited_stream_acquires_once_then_streams() {
    let factory = scripted(vec![(vec!["a", "b"], None)]);
    let items = transcript(rate_limited_stream(factory, limiter(10.0, 5), "fetch")).await;
    assert_eq!(items, ["rate", "item:a", "item:b"]);

    let failing = scripted(vec![(vec!["a"], Some(reset))]);
    let items = transcript(rate_limited_stream(failing, limiter(10.0, 5), "fetch")).await;
    assert_eq!(items, ["rate", "item:a", "err:1"]);
}

#[tokio::test(start_paused = true)]
async fn resilient_stream_takes_a_token_before_every_attempt() {
    let factory = scripted(vec![
        (vec!["a"], Some(reset)),
        (vec![], Some(reset)),
        (vec!["a", "b"], None),
    ]);
    let stream = resilient_stream(
        factory,
        Some(retry(3, SEC)),
        Some(limiter(10.0, 5)),
        "op",
        "llm",
    );
    assert_eq!(
        transcript(stream).await,
        [
            "rate",
            "item:a",
            "retry:1/3@1(1)",
            "rate",
            "retry:2/3@2(0)",
            "rate",
            "item:a",
            "item:b"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn resilient_stream_without_layers_is_one_plain_attempt() {
    let factory = scripted(vec![(vec!["a"], Some(reset))]);
    let stream = resilient_stream(factory, None, None, "op", "custom");
    assert_eq!(transcript(stream).await, ["item:a", "err:1"]);
}

#[tokio::test(start_paused = true)]
async fn retries_wait_for_tokens_and_events_say_how_long() {
    // One token per second, no burst beyond 1: the retry's token comes 1 s after the first,
    // which the 0.25 s back-off does not cover.
    let start = Instant::now();
    let factory = scripted(vec![(vec![], Some(reset)), (vec!["ok"], None)]);
    let stream = resilient_stream(
        factory,
        Some(retry(3, Duration::from_millis(250))),
        Some(limiter(1.0, 1)),
        "op",
        "llm",
    );
    let items: Vec<_> = stream.map(Result::unwrap).collect().await;
    let waits: Vec<Duration> = items
        .iter()
        .filter_map(|item| match item {
            Resilient::RateLimit(event) => Some(event.waited),
            _ => None,
        })
        .collect();
    assert_eq!(waits, [Duration::ZERO, Duration::from_millis(750)]);
    assert_eq!(start.elapsed(), SEC);
}

#[tokio::test(start_paused = true)]
async fn events_carry_names_types_and_the_step_id() {
    let factory = scripted(vec![(vec![], Some(reset)), (vec!["ok"], None)]);
    let items: Vec<_> = resilient_stream(
        factory,
        Some(retry(2, SEC)),
        Some(limiter(10.0, 5)),
        "gpt-4",
        "llm",
    )
    .with_step_id("step-7")
    .map(Result::unwrap)
    .collect()
    .await;
    let Resilient::RateLimit(rate) = &items[0] else {
        panic!("{items:?}")
    };
    assert_eq!(&*rate.operation_name, "gpt-4");
    assert_eq!(rate.step_id.as_deref(), Some("step-7"));
    assert_eq!(rate.tokens_remaining, 4.0);
    assert!(rate.timestamp > 1.7e9 && rate.acquired_at > 1.7e9);
    let Resilient::Retry(retry) = &items[1] else {
        panic!("{items:?}")
    };
    assert_eq!(retry.operation_type, OperationType::Llm);
    assert_eq!(retry.step_id.as_deref(), Some("step-7"));
    assert_eq!(retry.error, reset().to_string());
    assert_eq!(retry.max_attempts, 2);
}

#[tokio::test(start_paused = true)]
async fn the_final_error_keeps_its_source_chain() {
    let factory = scripted(vec![(vec![], Some(reset))]);
    let mut stream = retry_stream(factory, retry(2, SEC), "op", "llm");
    let error = loop {
        if let Err(error) = stream.next().await.unwrap() {
            break error;
        }
    };
    let source = error.source().expect("has a source");
    let io = source.downcast_ref::<io::Error>().expect("is the io error");
    assert_eq!(io.kind(), io::ErrorKind::ConnectionReset);
    assert_eq!(
        error.operation_error().map(io::Error::kind),
        Some(io::ErrorKind::ConnectionReset)
    );
    assert!(stream.next().await.is_none(), "ends after the error");
}

#[tokio::test(start_paused = true)]
async fn dropping_a_waiting_stream_gives_back_its_place() {
    let shared = limiter(1.0, 1);
    assert!(shared.try_acquire(1).await.unwrap());
    let factory = scripted(vec![(vec!["a"], None)]);
    let mut blocked = rate_limited_stream(factory, shared.clone(), "first");
    // Poll once: it queues for the token due at t = 1 s.
    assert!(futures::poll!(blocked.next()).is_pending());
    drop(blocked);
    let start = Instant::now();
    shared.acquire(1, "second").await.unwrap();
    assert_eq!(
        start.elapsed(),
        SEC,
        "the dropped waiter's token went to the next"
    );
    assert_eq!(shared.tokens_available(), 0.0);
}

#[test]
fn wrapped_streams_are_send_when_their_parts_are() {
    fn assert_send<T: Send>(_: &T) {}
    let factory = scripted(vec![(vec!["a"], None)]);
    let stream = resilient_stream(
        factory,
        Some(retry(2, SEC)),
        Some(limiter(1.0, 1)),
        "op",
        "llm",
    );
    assert_send(&stream);
}

#[cfg(feature = "serde")]
#[tokio::test(start_paused = true)]
async fn events_serialize() {
    let factory = scripted(vec![(vec![], Some(reset)), (vec!["ok"], None)]);
    let items: Vec<_> = resilient_stream(
        factory,
        Some(retry(2, SEC)),
        Some(limiter(10.0, 5)),
        "op",
        "tool",
    )
    .map(Result::unwrap)
    .collect()
    .await;
    let Resilient::Retry(retry) = &items[1] else {
        panic!("{items:?}")
    };
    let json = serde_json::to_value(retry).unwrap();
    assert_eq!(json["operation_type"], "tool");
    assert_eq!(json["attempt"], 1);
    let back: aegeantic::events::RetryEvent = serde_json::from_value(json).unwrap();
    assert_eq!(&back, retry);
}

#[tokio::test(start_paused = true)]
async fn every_event_carries_the_operation_name_however_it_was_given() {
    let retries = |stream: Vec<_>| -> Vec<String> {
        stream
            .into_iter()
            .filter_map(|item| match item {
                Ok(Resilient::Retry(event)) => Some(event.operation_name.to_string()),
                _ => None,
            })
            .collect()
    };
    let failing_twice = || {
        scripted(vec![
            (vec!["a"], Some(reset)),
            (vec!["a"], Some(reset)),
            (vec!["a"], None),
        ])
    };
    let literal: Vec<_> = retry_stream(failing_twice(), retry(3, SEC), "literal", "llm")
        .collect()
        .await;
    assert_eq!(retries(literal), ["literal", "literal"]);
    let owned = format!("owned-{}", 1);
    let owned: Vec<_> = retry_stream(failing_twice(), retry(3, SEC), owned, "llm")
        .collect()
        .await;
    assert_eq!(retries(owned), ["owned-1", "owned-1"]);
}
