//! `ConcurrencyLimiter::limit_stream` and `ResilientStream::with_concurrency`: a slot per
//! attempt of a retrying stream, free during the back-off.

mod common;

use std::time::Duration;

use aegeantic::resilience::{resilient_stream, ConcurrencyLimiter, Resilient};
use common::{reset, retry, scripted};
use futures::StreamExt;

#[tokio::test(start_paused = true)]
async fn each_attempt_holds_a_slot_and_the_back_off_holds_none() {
    let slots = ConcurrencyLimiter::new(1).unwrap();
    let mut attempts = scripted(vec![(vec!["a"], Some(reset)), (vec!["a", "b"], None)]);
    let factory = {
        let slots = slots.clone();
        move || slots.limit_stream(attempts())
    };
    let mut stream = resilient_stream(
        factory,
        Some(retry(3, Duration::from_secs(1))),
        None,
        "op",
        "llm",
    );
    let mut seen = Vec::new();
    while let Some(item) = stream.next().await {
        let held = slots.available() == 0;
        match item.unwrap() {
            Resilient::Item(chunk) => seen.push(format!("{chunk}:{held}")),
            Resilient::Retry(_) => seen.push(format!("retry:{held}")),
            _ => {}
        }
    }
    assert_eq!(seen, ["a:true", "retry:false", "a:true", "b:true"]);
    assert_eq!(slots.available(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_second_stream_waits_for_the_first_to_end_or_drop() {
    let slots = ConcurrencyLimiter::new(1).unwrap();
    let mut first = slots.limit_stream(futures::stream::iter([1, 2]));
    assert_eq!(first.next().await, Some(1));
    let mut second = slots.limit_stream(futures::stream::iter([3]));
    let waited = tokio::time::timeout(Duration::from_secs(1), second.next()).await;
    assert!(waited.is_err(), "the first holds the only slot");
    assert_eq!(first.next().await, Some(2));
    assert_eq!(first.next().await, None);
    assert_eq!(second.next().await, Some(3));
    assert_eq!(second.next().await, None);
    assert_eq!(slots.available(), 1);

    let mut third = slots.limit_stream(futures::stream::iter([4, 5]));
    assert_eq!(third.next().await, Some(4));
    assert_eq!(slots.available(), 0);
    drop(third);
    assert_eq!(slots.available(), 1);
}

#[tokio::test(start_paused = true)]
async fn with_concurrency_holds_a_slot_per_attempt_and_none_in_the_back_off() {
    let slots = ConcurrencyLimiter::new(1).unwrap();
    let attempts = scripted(vec![(vec!["a"], Some(reset)), (vec!["a", "b"], None)]);
    let mut stream = resilient_stream(
        attempts,
        Some(retry(3, Duration::from_secs(1))),
        None,
        "op",
        "llm",
    )
    .with_concurrency(slots.clone());
    let start = tokio::time::Instant::now();
    let mut seen = Vec::new();
    while let Some(item) = stream.next().await {
        let held = slots.available() == 0;
        match item.unwrap() {
            Resilient::Item(chunk) => seen.push(format!("{chunk}:{held}")),
            Resilient::Retry(_) => {
                seen.push(format!("retry:{held}"));
                // Someone else takes the free slot for 5 s: the retry waits for it.
                let permit = slots.try_acquire().await.expect("free during the back-off");
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    drop(permit);
                });
            }
            _ => {}
        }
    }
    assert_eq!(seen, ["a:true", "retry:false", "a:true", "b:true"]);
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(slots.available(), 1);
}
