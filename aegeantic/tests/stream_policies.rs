//! Streams that die halfway, stall, or are told to wait, on a paused clock.

mod common;

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aegeantic::resilience::{
    resilient_stream, resumable_stream, retry_stream, CircuitBreaker, CircuitBreakerConfig,
    CircuitState, Classify, Cursor, MidStream, ResilienceError, Resilient, RetryBudget,
    RetryConfig, RetryDecision, RetryOn,
};
use common::{reset, scripted};
use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt};
use tokio::time::Instant;

const SEC: Duration = Duration::from_secs(1);

fn policy() -> aegeantic::resilience::RetryConfigBuilder {
    RetryConfig::builder().base_delay(SEC).jitter(false)
}

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
                "retry:{}@{}{}{}",
                e.attempt,
                e.next_delay_seconds,
                e.timeout.map(|k| format!(":{k}")).unwrap_or_default(),
                if e.server_directed { ":server" } else { "" }
            ),
            Ok(Resilient::RateLimit(_)) => "rate".into(),
            Ok(Resilient::Circuit(e)) => format!("circuit:{:?}->{:?}", e.from, e.to),
            Ok(_) => "other".into(),
            Err(ResilienceError::Operation { attempts, .. }) => format!("err:{attempts}"),
            Err(ResilienceError::Timeout { source, attempts }) => {
                format!("timeout:{}:{attempts}", source.kind)
            }
            Err(ResilienceError::DeadlineExceeded { attempts, .. }) => {
                format!("deadline:{attempts}")
            }
            Err(ResilienceError::ServerDelayTooLong { delay, .. }) => {
                format!("too-long:{}", delay.as_secs())
            }
            Err(ResilienceError::RetryBudgetExhausted { attempts, .. }) => {
                format!("budget:{attempts}")
            }
            Err(ResilienceError::CircuitOpen(_)) => "open".into(),
            Err(e) => format!("error:{e}"),
        })
        .collect()
        .await
}

// ---- mid-stream policies

#[tokio::test(start_paused = true)]
async fn fail_policy_commits_after_the_first_item() {
    let factory = scripted(vec![(vec!["a"], Some(reset)), (vec!["a", "b"], None)]);
    let config = policy().mid_stream(MidStream::Fail).build().unwrap();
    let items = transcript(retry_stream(factory, config, "op", "llm")).await;
    assert_eq!(items, ["item:a", "err:1"]);

    // Before the first item nothing is committed: it retries.
    let factory = scripted(vec![(vec![], Some(reset)), (vec!["a"], None)]);
    let config = policy().mid_stream(MidStream::Fail).build().unwrap();
    let items = transcript(retry_stream(factory, config, "op", "llm")).await;
    assert_eq!(items, ["retry:1@1", "item:a"]);
}

/// Numbers `cursor.delivered..len`, failing once at each position in `fail_at`.
fn counting(
    len: u64,
    fail_at: Vec<u64>,
) -> impl FnMut(&Cursor<u64>) -> BoxStream<'static, Result<u64, io::Error>> {
    let mut remaining = fail_at;
    move |cursor| {
        let from = cursor.delivered;
        assert_eq!(
            cursor.last,
            from.checked_sub(1),
            "the cursor names the last item"
        );
        let fail = remaining
            .iter()
            .position(|&at| at >= from)
            .map(|i| remaining.remove(i));
        stream::iter(from..len)
            .map(move |n| if Some(n) == fail { Err(reset()) } else { Ok(n) })
            .take_while({
                let mut failed = false;
                move |item| {
                    let keep = !failed;
                    failed |= item.is_err();
                    futures::future::ready(keep)
                }
            })
            .boxed()
    }
}

mod properties {
    use super::*;
    use common::paused;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn resume_delivers_every_item_exactly_once(
            len in 1u64..30,
            fail_at in prop::collection::vec(0u64..30, 0..4),
        ) {
            let mut fail_at: Vec<u64> = fail_at.into_iter().filter(|&n| n < len).collect();
            fail_at.sort();
            let failures = fail_at.len() as u32;
            let items = paused(async move {
                let config = policy().max_attempts(failures + 1).build().unwrap();
                resumable_stream(counting(len, fail_at), config, "op", "custom")
                    .filter_map(|item| async move { item.unwrap().into_item() })
                    .collect::<Vec<_>>()
                    .await
            });
            prop_assert_eq!(items, (0..len).collect::<Vec<_>>());
        }

        #[test]
        fn restart_repeats_each_failed_prefix_then_delivers_all(
            len in 1u64..20,
            fail_at in prop::collection::vec(0u64..20, 0..3),
        ) {
            let fail_at: Vec<u64> = fail_at.into_iter().filter(|&n| n < len).collect();
            let attempts = fail_at.len() as u32 + 1;
            let plan = fail_at.clone();
            let items = paused(async move {
                let mut calls = 0;
                let factory = move || {
                    let fail = plan.get(calls).copied();
                    calls += 1;
                    stream::iter(0..len)
                        .map(move |n| if Some(n) == fail { Err(reset()) } else { Ok(n) })
                        .take_while(move |item| futures::future::ready(item.is_ok() || fail.is_some()))
                        .scan(false, |failed, item| {
                            let out = (!*failed).then_some(item);
                            if let Some(Err(_)) = &out { *failed = true; }
                            futures::future::ready(out)
                        })
                };
                let config = policy().max_attempts(attempts).build().unwrap();
                retry_stream(factory, config, "op", "custom")
                    .filter_map(|item| async move { item.unwrap().into_item() })
                    .collect::<Vec<_>>()
                    .await
            });
            let mut expected: Vec<u64> = fail_at.iter().flat_map(|&at| 0..at).collect();
            expected.extend(0..len);
            prop_assert_eq!(items, expected);
        }

        #[test]
        fn fail_policy_never_repeats_an_item(
            len in 1u64..20,
            fail_at in 0u64..20,
        ) {
            let items = paused(async move {
                let mut calls = 0;
                let factory = move || {
                    calls += 1;
                    let fail = (calls == 1).then_some(fail_at);
                    stream::iter(0..len.max(fail_at + 1))
                        .map(move |n| if Some(n) == fail { Err(reset()) } else { Ok(n) })
                        .take(if calls == 1 { (fail_at + 1) as usize } else { len as usize })
                };
                let config = policy().mid_stream(MidStream::Fail).build().unwrap();
                transcript(retry_stream(factory, config, "op", "custom")).await
            });
            let mut expected: Vec<String> = (0..fail_at).map(|n| format!("item:{n}")).collect();
            if fail_at == 0 {
                expected.push("retry:1@1".into());
                expected.extend((0..len).map(|n| format!("item:{n}")));
            } else {
                expected.push("err:1".into());
            }
            prop_assert_eq!(items, expected);
        }
    }
}

// ---- resumed streams and their attempt count

/// Fails after every `every` items, `len` items in all.
fn breaking_every(
    len: u64,
    every: u64,
) -> impl FnMut(&Cursor<u64>) -> BoxStream<'static, Result<u64, io::Error>> {
    move |cursor| {
        let from = cursor.delivered;
        let to = (from + every).min(len);
        let tail = (to < len).then(reset);
        stream::iter((from..to).map(Ok).chain(tail.map(Err))).boxed()
    }
}

#[tokio::test(start_paused = true)]
async fn progress_can_reset_the_attempt_count_of_a_resumed_stream() {
    let config = |reset| {
        policy()
            .max_attempts(2)
            .reset_on_progress(reset)
            .build()
            .unwrap()
    };
    let items = transcript(resumable_stream(
        breaking_every(6, 2),
        config(false),
        "op",
        "llm",
    ))
    .await;
    assert_eq!(
        items,
        ["item:0", "item:1", "retry:1@1", "item:2", "item:3", "err:2"]
    );

    let start = Instant::now();
    let items = transcript(resumable_stream(
        breaking_every(6, 2),
        config(true),
        "op",
        "llm",
    ))
    .await;
    assert_eq!(
        items,
        [
            "item:0",
            "item:1",
            "retry:1@1",
            "item:2",
            "item:3",
            "retry:1@1",
            "item:4",
            "item:5"
        ]
    );
    assert_eq!(
        start.elapsed(),
        2 * SEC,
        "each series starts from the first delay"
    );

    // An attempt that made no progress still counts.
    let stuck = |cursor: &Cursor<u64>| {
        let first = cursor.delivered == 0;
        stream::iter(first.then_some(Ok(0)).into_iter().chain([Err(reset())])).boxed()
    };
    let items = transcript(resumable_stream(stuck, config(true), "op", "llm")).await;
    assert_eq!(items, ["item:0", "retry:1@1", "err:2"]);

    // A restarted stream's items are no progress.
    let factory = scripted(vec![(vec!["a"], Some(reset))]);
    let config = policy()
        .max_attempts(2)
        .reset_on_progress(true)
        .build()
        .unwrap();
    let items = transcript(retry_stream(factory, config, "op", "llm")).await;
    assert_eq!(items, ["item:a", "retry:1@1", "item:a", "err:2"]);
}

#[tokio::test(start_paused = true)]
async fn a_resumed_stream_retries_whatever_the_mid_stream_policy() {
    let config = policy().mid_stream(MidStream::Fail).build().unwrap();
    let items = transcript(resumable_stream(breaking_every(3, 2), config, "op", "llm")).await;
    assert_eq!(items, ["item:0", "item:1", "retry:1@1", "item:2"]);
}

// ---- the deadline covers waits for tokens

#[tokio::test(start_paused = true)]
async fn a_token_wait_past_the_deadline_fails_at_once_and_takes_nothing() {
    let limiter = common::limiter(0.1, 1);
    assert!(
        limiter.try_acquire(1).await.unwrap(),
        "the next token is 10 s away"
    );
    let once = || stream::iter([Ok::<_, io::Error>("x")]);
    let start = Instant::now();
    let config = policy().max_elapsed(2 * SEC).build().unwrap();
    let mut stream = Box::pin(resilient_stream(
        once,
        Some(config),
        Some(limiter.clone()),
        "op",
        "llm",
    ));
    let Some(Err(error)) = stream.next().await else {
        panic!("the stream fails");
    };
    assert_eq!(start.elapsed(), Duration::ZERO, "without waiting");
    assert!(
        matches!(error, ResilienceError::DeadlineExceeded { attempts: 0, elapsed, .. } if elapsed.is_zero()),
        "{error:?}"
    );
    let chain = std::iter::successors(Some(&error as &dyn std::error::Error), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>();
    assert!(
        chain
            .iter()
            .any(|e| e.contains("10s") && e.contains("deadline")),
        "{chain:?}"
    );
    assert!(stream.next().await.is_none());

    // Its place went back: the token comes when it would have without it.
    tokio::time::advance(10 * SEC).await;
    assert!(limiter.try_acquire(1).await.unwrap());

    // A wait that ends before the deadline is made.
    let config = policy().max_elapsed(20 * SEC).build().unwrap();
    let items = transcript(resilient_stream(
        once,
        Some(config),
        Some(limiter.clone()),
        "op",
        "llm",
    ))
    .await;
    assert_eq!(items, ["rate", "item:x"]);
    assert_eq!(start.elapsed(), 20 * SEC);

    // Before a retry: the first attempt failed, its retry would get a token only past the
    // deadline.
    tokio::time::advance(10 * SEC).await;
    let factory = scripted(vec![(vec![], Some(reset)), (vec!["a"], None)]);
    let config = policy().max_elapsed(5 * SEC).build().unwrap();
    let start = Instant::now();
    let items = transcript(resilient_stream(
        factory,
        Some(config),
        Some(limiter.clone()),
        "op",
        "llm",
    ))
    .await;
    assert_eq!(items, ["rate", "retry:1@1", "deadline:1"]);
    assert_eq!(start.elapsed(), SEC, "only the back-off was waited");
}

// ---- timeouts

/// A stream of `words` with `gap` before each, or stalling forever after `stall_after`.
fn slow(
    words: usize,
    gap: Duration,
    stall_after: Option<usize>,
) -> BoxStream<'static, Result<usize, io::Error>> {
    async_stream::stream! {
        for n in 0..words {
            if stall_after == Some(n) {
                futures::future::pending::<()>().await;
            }
            tokio::time::sleep(gap).await;
            yield Ok(n);
        }
    }
    .boxed()
}

#[tokio::test(start_paused = true)]
async fn first_item_timeout_fails_a_silent_attempt() {
    let start = Instant::now();
    let mut calls = 0;
    let factory = move || {
        calls += 1;
        if calls == 1 {
            slow(2, 10 * SEC, None)
        } else {
            slow(2, Duration::from_millis(100), None)
        }
    };
    let config = policy().first_item_timeout(2 * SEC).build().unwrap();
    let items = transcript(retry_stream(factory, config, "op", "llm")).await;
    assert_eq!(items, ["retry:1@1:first-item", "item:0", "item:1"]);
    assert_eq!(start.elapsed(), 2 * SEC + SEC + Duration::from_millis(200));
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_catches_a_stall_midway() {
    let mut calls = 0;
    let factory = move || {
        calls += 1;
        slow(3, Duration::from_millis(100), (calls == 1).then_some(2))
    };
    let config = policy().idle_timeout(SEC).build().unwrap();
    let items = transcript(retry_stream(factory, config, "op", "llm")).await;
    assert_eq!(
        items,
        [
            "item:0",
            "item:1",
            "retry:1@1:idle",
            "item:0",
            "item:1",
            "item:2"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn attempt_timeout_bounds_a_slow_but_steady_attempt() {
    let factory = || slow(10, Duration::from_millis(400), None);
    let config = policy()
        .max_attempts(2)
        .attempt_timeout(SEC)
        .idle_timeout(SEC)
        .build()
        .unwrap();
    let items = transcript(retry_stream(factory, config, "op", "llm")).await;
    assert_eq!(
        items,
        [
            "item:0",
            "item:1",
            "retry:1@1:attempt",
            "item:0",
            "item:1",
            "timeout:attempt:2"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_deadline_cuts_the_attempt_and_forbids_late_retries() {
    let start = Instant::now();
    // Fails after 1 s each time; back-off 1, 2, 4 s; deadline 5 s: the third retry would
    // start at 1+1+1+2 = 5 s... the second attempt ends at 3 s, its 2 s back-off would end
    // at 5 s, which is not before the deadline.
    let factory = || {
        async_stream::stream! {
            tokio::time::sleep(SEC).await;
            yield Err::<usize, _>(reset());
        }
        .boxed()
    };
    let config = policy()
        .max_attempts(10)
        .max_elapsed(5 * SEC)
        .build()
        .unwrap();
    let items = transcript(retry_stream(factory, config, "op", "llm")).await;
    assert_eq!(items, ["retry:1@1", "deadline:2"]);
    assert_eq!(start.elapsed(), 3 * SEC);

    // An attempt still running at the deadline is cut short.
    let start = Instant::now();
    let factory = || slow(100, SEC, None);
    let config = policy()
        .max_elapsed(Duration::from_millis(2500))
        .build()
        .unwrap();
    let items = transcript(retry_stream(factory, config, "op", "llm")).await;
    assert_eq!(items, ["item:0", "item:1", "deadline:1"]);
    assert_eq!(start.elapsed(), Duration::from_millis(2500));
}

// ---- server-directed delays

#[derive(Debug, thiserror::Error)]
#[error("429 Too Many Requests")]
struct Busy(Option<Duration>);

impl Classify for Busy {
    fn classify(&self) -> Option<RetryDecision> {
        Some(
            self.0
                .map_or(RetryDecision::Retry, RetryDecision::RetryAfter),
        )
    }
}

fn busy_then_ok(
    wait: Option<Duration>,
) -> impl FnMut() -> BoxStream<'static, Result<&'static str, Busy>> {
    let mut calls = 0;
    move || {
        calls += 1;
        if calls == 1 {
            stream::iter([Err(Busy(wait))]).boxed()
        } else {
            stream::iter([Ok("ok")]).boxed()
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_server_delay_wins_when_longer_than_back_off() {
    let config = || {
        policy()
            .retry_on(RetryOn::classified::<Busy>())
            .max_server_delay(Duration::from_secs(60))
            .server_delay_jitter(0.0)
            .build()
            .unwrap()
    };
    let start = Instant::now();
    let items = transcript(retry_stream(
        busy_then_ok(Some(20 * SEC)),
        config(),
        "op",
        "llm",
    ))
    .await;
    assert_eq!(items, ["retry:1@20:server", "item:ok"]);
    assert_eq!(start.elapsed(), 20 * SEC);

    let start = Instant::now();
    let short = Some(Duration::from_millis(300));
    let items = transcript(retry_stream(busy_then_ok(short), config(), "op", "llm")).await;
    assert_eq!(items, ["retry:1@1", "item:ok"], "back-off (1 s) is longer");
    assert_eq!(start.elapsed(), SEC);

    let start = Instant::now();
    let items = transcript(retry_stream(
        busy_then_ok(Some(3600 * SEC)),
        config(),
        "op",
        "llm",
    ))
    .await;
    assert_eq!(
        items,
        ["too-long:3600"],
        "fails instead of sleeping an hour"
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
}

/// The delays a hundred clients told `Retry-After: 2 s` wait, and how long each slept.
async fn waits_after_retry_after_2s(jitter: Option<f64>) -> Vec<(f64, Duration)> {
    let mut waits = Vec::new();
    for _ in 0..100 {
        let mut builder = policy().retry_on(RetryOn::classified::<Busy>());
        if let Some(fraction) = jitter {
            builder = builder.server_delay_jitter(fraction);
        }
        let config = builder.build().unwrap();
        let mut stream = Box::pin(retry_stream(
            busy_then_ok(Some(2 * SEC)),
            config,
            "op",
            "llm",
        ));
        let Some(Ok(Resilient::Retry(event))) = stream.next().await else {
            panic!("a retry event first");
        };
        assert!(event.server_directed);
        let start = Instant::now();
        assert!(matches!(
            stream.next().await,
            Some(Ok(Resilient::Item("ok")))
        ));
        waits.push((event.next_delay_seconds, start.elapsed()));
    }
    waits
}

#[tokio::test(start_paused = true)]
async fn server_delays_are_spread_but_never_shortened() {
    let waits = waits_after_retry_after_2s(None).await;
    for &(announced, slept) in &waits {
        assert!((2.0..=2.2).contains(&announced), "{announced}");
        // The sleep is the announced delay (tokio's timer rounds to the millisecond).
        assert!(
            slept >= 2 * SEC
                && slept <= Duration::from_secs_f64(announced) + Duration::from_millis(1)
        );
    }
    let mut distinct: Vec<u64> = waits
        .iter()
        .map(|&(_, slept)| slept.as_millis() as u64)
        .collect();
    distinct.sort();
    distinct.dedup();
    assert!(
        distinct.len() > 50,
        "clients come back spread out: {distinct:?}"
    );

    for &(announced, _) in &waits_after_retry_after_2s(Some(0.5)).await {
        assert!((2.0..=3.0).contains(&announced), "{announced}");
    }
    for &(announced, slept) in &waits_after_retry_after_2s(Some(0.0)).await {
        assert_eq!((announced, slept), (2.0, 2 * SEC));
    }
    for bad in [-0.1, 1.5, f64::NAN] {
        assert!(policy().server_delay_jitter(bad).build().is_err(), "{bad}");
    }
}

// ---- retry budget

async fn failing_requests(requests: u32, budget: Option<RetryBudget>) -> (u32, u32) {
    let calls = Arc::new(AtomicU32::new(0));
    let mut refused = 0;
    for _ in 0..requests {
        let counter = calls.clone();
        let factory = move || {
            counter.fetch_add(1, Ordering::Relaxed);
            stream::iter([Err::<u8, _>(reset())])
        };
        let mut builder = RetryConfig::builder()
            .max_attempts(3)
            .base_delay(Duration::ZERO)
            .jitter(false);
        if let Some(budget) = &budget {
            builder = builder.budget(budget.clone());
        }
        let stream = retry_stream(factory, builder.build().unwrap(), "op", "custom");
        let last = stream.collect::<Vec<_>>().await.pop().unwrap();
        refused += u32::from(matches!(
            last,
            Err(ResilienceError::RetryBudgetExhausted { .. })
        ));
    }
    (calls.load(Ordering::Relaxed), refused)
}

#[tokio::test(start_paused = true)]
async fn a_budget_keeps_retries_to_a_fraction_of_traffic() {
    let (without, _) = failing_requests(10_000, None).await;
    let budget = RetryBudget::new(0.1)
        .unwrap()
        .min_retries_per_second(10.0)
        .unwrap();
    let (with, refused) = failing_requests(10_000, Some(budget)).await;
    let retries = with - 10_000;
    println!(
        "retry amplification with a 100%-failing upstream: {:.2}x without a budget, {:.3}x with a 10% budget ({retries} retries, {refused} refused)",
        f64::from(without) / 10_000.0,
        f64::from(with) / 10_000.0
    );
    assert_eq!(without, 30_000);
    assert!(retries <= 1_000 + 10, "{retries}");
    assert!(retries >= 1_000);
    assert!(refused > 8_000);
}

// ---- circuit breaker

#[tokio::test(start_paused = true)]
async fn an_open_breaker_fails_fast_and_probes_after_its_open_duration() {
    let breaker = CircuitBreaker::new(CircuitBreakerConfig {
        failure_ratio: 0.5,
        window: 4,
        minimum_calls: 2,
        open_duration: 10 * SEC,
        half_open_probes: 1,
        slow_call: None,
    })
    .unwrap();
    let opened = Arc::new(AtomicU32::new(0));
    let run = |fail: bool| {
        let (breaker, opened) = (breaker.clone(), opened.clone());
        async move {
            let factory = move || {
                opened.fetch_add(1, Ordering::Relaxed);
                stream::iter([if fail { Err(reset()) } else { Ok("ok") }])
            };
            let stream = retry_stream(
                factory,
                policy().max_attempts(1).build().unwrap(),
                "op",
                "llm",
            )
            .with_circuit_breaker(breaker);
            transcript(stream).await
        }
    };
    assert_eq!(run(true).await, ["err:1"]);
    assert_eq!(run(true).await, ["circuit:Closed->Open", "err:1"]);
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(run(false).await, ["open"]);
    assert_eq!(opened.load(Ordering::Relaxed), 2, "no request while open");

    tokio::time::advance(10 * SEC).await;
    assert_eq!(
        run(false).await,
        [
            "circuit:Open->HalfOpen",
            "item:ok",
            "circuit:HalfOpen->Closed"
        ]
    );
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn breaker_events_interleave_with_retries() {
    let breaker = CircuitBreaker::new(CircuitBreakerConfig {
        failure_ratio: 1.0,
        window: 1,
        minimum_calls: 1,
        open_duration: 10 * SEC,
        half_open_probes: 1,
        slow_call: None,
    })
    .unwrap();
    let factory = scripted(vec![(vec![], Some(reset)), (vec!["a"], None)]);
    let stream = resilient_stream(factory, Some(policy().build().unwrap()), None, "op", "llm")
        .with_circuit_breaker(breaker);
    // The failure opens the breaker for 10 s; a retry 1 s later would find it open, so
    // none is announced.
    assert_eq!(transcript(stream).await, ["circuit:Closed->Open", "open"]);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_the_breaker_reopens_for_probes_is_still_made() {
    let breaker = CircuitBreaker::new(CircuitBreakerConfig {
        failure_ratio: 1.0,
        window: 1,
        minimum_calls: 1,
        open_duration: SEC / 2,
        half_open_probes: 1,
        slow_call: None,
    })
    .unwrap();
    let factory = scripted(vec![(vec![], Some(reset)), (vec!["a"], None)]);
    let stream = resilient_stream(factory, Some(policy().build().unwrap()), None, "op", "llm")
        .with_circuit_breaker(breaker);
    assert_eq!(
        transcript(stream).await,
        [
            "circuit:Closed->Open",
            "retry:1@1",
            "circuit:Open->HalfOpen",
            "item:a",
            "circuit:HalfOpen->Closed"
        ]
    );
}

// ---- a 429 drains the shared limiter

#[tokio::test(start_paused = true)]
async fn a_server_delay_empties_the_limiter_for_every_sharer() {
    let shared = common::limiter(10.0, 5);
    let config = policy()
        .retry_on(RetryOn::classified::<Busy>())
        .build()
        .unwrap();
    let mut stream = Box::pin(resilient_stream(
        busy_then_ok(Some(2 * SEC)),
        Some(config),
        Some(shared.clone()),
        "op",
        "llm",
    ));
    assert!(matches!(
        stream.next().await,
        Some(Ok(Resilient::RateLimit(_)))
    ));
    assert!(matches!(stream.next().await, Some(Ok(Resilient::Retry(e))) if e.server_directed));
    assert_eq!(shared.tokens_available(), 4.0);
    // The next poll starts the back-off, which drains the bucket first.
    assert!(futures::poll!(stream.next()).is_pending());
    assert_eq!(shared.tokens_available(), 0.0, "emptied for every sharer");
    assert!(!shared.try_acquire(1).await.unwrap());
    let rest: Vec<_> = stream.collect().await;
    assert!(
        matches!(
            rest[..],
            [Ok(Resilient::RateLimit(_)), Ok(Resilient::Item("ok"))]
        ),
        "{rest:?}"
    );

    let other = common::limiter(10.0, 5);
    other.drain().await.unwrap();
    assert!(!other.try_acquire(1).await.unwrap());
    tokio::time::advance(Duration::from_millis(100)).await;
    assert!(other.try_acquire(1).await.unwrap());
}
