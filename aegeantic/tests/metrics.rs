//! The metrics, read back from the `metrics` facade's own debugging recorder: the same
//! attempts, retries, waits and breaker changes as the inline events said, under names and
//! labels the README lists, and no error text in any label. Paused clock.
#![cfg(feature = "metrics")]

mod common;
#[cfg(feature = "redis")]
#[allow(dead_code)]
#[path = "common/redis_server.rs"]
mod redis_server;

use std::collections::BTreeMap;
use std::future::ready;
use std::io;
use std::time::Duration;

use aegeantic::resilience::{
    resilient_stream, retry, CircuitBreaker, CircuitBreakerConfig, RateLimitConfig, RateLimiter,
    Resilient, RetryConfig,
};
use common::{denied, reset, scripted};
use futures::{stream, StreamExt};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;

/// What was recorded, by `name{label=value,...}` with the labels sorted.
type Recorded = BTreeMap<String, DebugValue>;

/// Runs `body` on a paused current-thread runtime with a fresh recorder, and returns what
/// it recorded.
fn recorded<F: std::future::Future>(body: impl FnOnce() -> F) -> (F::Output, Recorded) {
    recorded_on(
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap(),
        body,
    )
}

/// [`recorded`] on `runtime`.
fn recorded_on<F: std::future::Future>(
    runtime: tokio::runtime::Runtime,
    body: impl FnOnce() -> F,
) -> (F::Output, Recorded) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let output = metrics::with_local_recorder(&recorder, || runtime.block_on(body()));
    let values = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let (kind, key) = key.into_parts();
            let mut labels: Vec<String> = key
                .labels()
                .map(|label| format!("{}={}", label.key(), label.value()))
                .collect();
            labels.sort();
            let kind = match kind {
                MetricKind::Counter => "counter",
                MetricKind::Gauge => "gauge",
                MetricKind::Histogram => "histogram",
            };
            (
                format!("{kind} {}{{{}}}", key.name(), labels.join(",")),
                value,
            )
        })
        .collect();
    (output, values)
}

fn counter(recorded: &Recorded, key: &str) -> u64 {
    match recorded.get(&format!("counter {key}")) {
        Some(DebugValue::Counter(n)) => *n,
        None => 0,
        other => panic!("{key}: {other:?}"),
    }
}

/// The samples of the histogram `key`; fails, showing everything, when there is none.
fn samples(recorded: &Recorded, key: &str) -> Vec<f64> {
    match recorded.get(&format!("histogram {key}")) {
        Some(DebugValue::Histogram(samples)) => samples.iter().map(|s| s.into_inner()).collect(),
        other => panic!("{key}: {other:?} in {recorded:#?}"),
    }
}

#[test]
fn a_stream_s_attempts_retries_and_waits_are_counted_as_its_events_say() {
    let ((waits, left), recorded) = recorded(|| async {
        let limiter = RateLimiter::new(RateLimitConfig {
            requests_per_second: Some(1.0),
            burst_size: 1,
            name: Some("chat-quota".into()),
            ..RateLimitConfig::default()
        })
        .unwrap();
        let config = RetryConfig::builder()
            .base_delay(Duration::from_millis(100))
            .jitter(false)
            .first_item_timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        // A stall (first-item timeout), a reset, then the answer.
        let mut calls = 0;
        let factory = move || {
            calls += 1;
            let items: Vec<Result<&str, io::Error>> = match calls {
                1 => return stream::pending().boxed(),
                2 => vec![Err(reset())],
                _ => vec![Ok("a"), Ok("b")],
            };
            stream::iter(items).boxed()
        };
        let mut stream = resilient_stream(factory, Some(config), Some(limiter), "chat", "llm");
        let (mut waits, mut left) = (Vec::new(), Vec::new());
        while let Some(item) = stream.next().await {
            if let Resilient::RateLimit(event) = item.unwrap() {
                waits.push(event.waited);
                left.push(event.tokens_remaining);
            }
        }
        (waits, left)
    });

    let op = "operation=chat,operation_type=llm";
    assert_eq!(
        counter(
            &recorded,
            &format!("aegeantic.attempts{{{op},outcome=retried,timeout=first_item}}")
        ),
        1,
        "{recorded:#?}"
    );
    assert_eq!(
        counter(
            &recorded,
            &format!("aegeantic.attempts{{{op},outcome=retried}}")
        ),
        1
    );
    assert_eq!(
        counter(
            &recorded,
            &format!("aegeantic.attempts{{{op},outcome=success}}")
        ),
        1
    );
    assert_eq!(
        counter(
            &recorded,
            &format!("aegeantic.retries{{cause=first_item,{op},server_directed=false}}")
        ),
        1
    );
    assert_eq!(
        counter(
            &recorded,
            &format!("aegeantic.retries{{cause=error,{op},server_directed=false}}")
        ),
        1
    );
    let samples = samples(&recorded, "aegeantic.rate_limit.wait{limiter=chat-quota}");
    let from_events: Vec<f64> = waits.iter().map(Duration::as_secs_f64).collect();
    assert_eq!(
        samples, from_events,
        "one sample a grant, each its event's wait"
    );
    assert!(
        samples.iter().sum::<f64>() > 0.5,
        "the 1/s bucket made the retries wait"
    );
    assert_eq!(
        recorded.get("gauge aegeantic.rate_limit.tokens_available{limiter=chat-quota}"),
        Some(&DebugValue::Gauge((*left.last().unwrap()).into()))
    );
}

/// A limiter reports its grants and refusals whoever calls it, under its own name, into
/// the recorder current at each grant, even one installed after the limiter was made.
#[test]
fn a_limiter_reports_every_grant_by_its_name() {
    let limiter = RateLimiter::new(RateLimitConfig {
        requests_per_second: Some(10.0),
        burst_size: 2,
        name: Some("search".into()),
        ..RateLimitConfig::default()
    })
    .unwrap();
    let unnamed = RateLimiter::new(RateLimitConfig {
        requests_per_second: Some(10.0),
        burst_size: 2,
        ..RateLimitConfig::default()
    })
    .unwrap();
    let ((), recorded) = recorded(|| async {
        limiter.acquire(1, "direct").await.unwrap();
        assert!(limiter.try_acquire(1).await.unwrap());
        // Empty: waits 100 ms on the paused clock.
        limiter.acquire(1, "direct").await.unwrap();
        assert!(
            !limiter.try_acquire(1).await.unwrap(),
            "a try that finds no token"
        );
        limiter.acquire(3, "direct").await.unwrap_err();
        limiter.try_acquire(0).await.unwrap_err();
        unnamed.acquire(1, "other").await.unwrap();
    });
    let waits = samples(&recorded, "aegeantic.rate_limit.wait{limiter=search}");
    assert_eq!(
        waits.len(),
        2,
        "one sample per acquire, none per try: {waits:?}"
    );
    assert_eq!(waits[0], 0.0);
    assert!((waits[1] - 0.1).abs() < 0.005, "{waits:?}");
    assert_eq!(
        recorded.get("gauge aegeantic.rate_limit.tokens_available{limiter=search}"),
        Some(&DebugValue::Gauge(0.0.into())),
        "the last grant left nothing"
    );
    for reason in ["insufficient_capacity", "zero_tokens"] {
        assert_eq!(
            counter(
                &recorded,
                &format!("aegeantic.rate_limit.refusals{{limiter=search,reason={reason}}}")
            ),
            1,
            "{recorded:#?}"
        );
    }
    assert!(
        recorded.contains_key("histogram aegeantic.rate_limit.wait{limiter=default}"),
        "{recorded:#?}"
    );
    assert!(
        !recorded
            .keys()
            .any(|key| key.contains("direct") || key.contains("other")),
        "operation names label attempts, not the limiter's metrics: {recorded:#?}"
    );
}

#[test]
fn how_a_call_ends_is_its_last_attempt_s_outcome() {
    let ((), recorded) = recorded(|| async {
        let config = RetryConfig::builder()
            .base_delay(Duration::from_millis(1))
            .max_attempts(2)
            .build()
            .unwrap();
        // Succeeds at once, outside the state machine.
        retry(|| ready(Ok::<_, io::Error>(1)), config.clone())
            .await
            .unwrap();
        // Not retried.
        retry(|| ready(Err::<u32, _>(denied())), config.clone())
            .await
            .unwrap_err();
        // Succeeds at its second attempt, in the state machine.
        let mut calls = 0;
        let flaky = move || {
            calls += 1;
            ready(if calls == 1 { Err(reset()) } else { Ok(calls) })
        };
        retry(flaky, config.clone()).await.unwrap();
        // Retried, then out of attempts.
        let factory = scripted(vec![(vec![], Some(reset))]);
        let mut stream = aegeantic::resilience::retry_stream(factory, config, "op", "tool");
        while let Some(item) = stream.next().await {
            if item.is_err() {
                break;
            }
        }
    });
    let call = "operation=call,operation_type=custom";
    assert_eq!(
        counter(
            &recorded,
            &format!("aegeantic.attempts{{{call},outcome=success}}")
        ),
        2,
        "one outside the state machine, one in it"
    );
    assert_eq!(
        counter(
            &recorded,
            &format!("aegeantic.attempts{{{call},outcome=retried}}")
        ),
        1
    );
    assert_eq!(
        counter(
            &recorded,
            &format!("aegeantic.attempts{{{call},outcome=failed}}")
        ),
        1
    );
    let op = "operation=op,operation_type=tool";
    assert_eq!(
        counter(
            &recorded,
            &format!("aegeantic.attempts{{{op},outcome=retried}}")
        ),
        1
    );
    assert_eq!(
        counter(
            &recorded,
            &format!("aegeantic.attempts{{{op},outcome=failed}}")
        ),
        1
    );
    for key in recorded.keys() {
        assert!(
            !key.contains("reset") && !key.contains("denied"),
            "error text in a label: {key}"
        );
    }
}

#[test]
fn a_breaker_s_state_is_a_gauge_and_its_changes_a_counter() {
    let ((), recorded) = recorded(|| async {
        let breaker = CircuitBreaker::new(CircuitBreakerConfig {
            failure_ratio: 0.5,
            window: 1,
            minimum_calls: 1,
            ..CircuitBreakerConfig::default()
        })
        .unwrap();
        let config = RetryConfig::builder()
            .base_delay(Duration::from_millis(1))
            .max_attempts(3)
            .build()
            .unwrap();
        let error = retry(|| ready(Err::<u32, _>(reset())), config)
            .with_circuit_breaker(breaker)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("circuit"), "{error}");
    });
    assert_eq!(
        counter(
            &recorded,
            "aegeantic.circuit.transitions{from=closed,operation=call,to=open}"
        ),
        1,
        "{recorded:#?}"
    );
    assert_eq!(
        recorded.get("gauge aegeantic.circuit.state{operation=call}"),
        Some(&DebugValue::Gauge(2.0.into()))
    );
    assert_eq!(
        counter(
            &recorded,
            "aegeantic.attempts{operation=call,operation_type=custom,outcome=circuit_open}"
        ),
        1
    );
}

/// A model that answers after 100 ms, then reports its usage.
#[cfg(feature = "llm")]
struct Slow;

#[cfg(feature = "llm")]
impl aegeantic::llm::LlmProvider for Slow {
    fn stream(&self, _request: &aegeantic::llm::LlmRequest) -> aegeantic::llm::LlmStream {
        use aegeantic::llm::{FinishReason, LlmChunk, Usage};
        Box::pin(
            stream::once(tokio::time::sleep(Duration::from_millis(100))).flat_map(|()| {
                stream::iter([
                    Ok(LlmChunk::Text("hi".into())),
                    Ok(LlmChunk::Text(" there".into())),
                    Ok(LlmChunk::Usage(Usage {
                        prompt_tokens: 12,
                        completion_tokens: 5,
                    })),
                    Ok(LlmChunk::Finish(FinishReason::Stop)),
                ])
            }),
        )
    }

    fn provider_name(&self) -> &str {
        "test"
    }

    fn default_model(&self) -> Option<&str> {
        Some("m1")
    }
}

#[cfg(feature = "llm")]
#[test]
fn a_model_call_records_the_gen_ai_metrics() {
    use aegeantic::llm::{LlmProvider, LlmRequest, ResilientProvider};
    let ((), recorded) = recorded(|| async {
        let provider = ResilientProvider::new(Slow);
        let mut events = provider.stream_events(&LlmRequest::default());
        while let Some(event) = events.next().await {
            event.unwrap();
        }
        let request = LlmRequest {
            model: Some("m2".into()),
            ..LlmRequest::default()
        };
        let mut events = provider.stream_events(&request);
        while let Some(event) = events.next().await {
            event.unwrap();
        }
    });
    let labels = "gen_ai.operation.name=chat,gen_ai.provider.name=test,gen_ai.request.model=m1";
    let histogram = |key: String| samples(&recorded, &key);
    assert_eq!(
        histogram(format!(
            "gen_ai.client.token.usage{{{labels},gen_ai.token.type=input}}"
        )),
        [12.0]
    );
    assert_eq!(
        histogram(format!(
            "gen_ai.client.token.usage{{{labels},gen_ai.token.type=output}}"
        )),
        [5.0]
    );
    assert_eq!(
        histogram(format!(
            "gen_ai.client.operation.time_to_first_chunk{{{labels}}}"
        )),
        [0.1]
    );
    assert_eq!(
        histogram(format!("gen_ai.client.operation.duration{{{labels}}}")),
        [0.1]
    );
    let m2 = labels.replace("m1", "m2");
    assert_eq!(
        histogram(format!("gen_ai.client.operation.duration{{{m2}}}")),
        [0.1],
        "the request's own model"
    );
}

/// Real time and a real redis-server: every script call is timed, and a grant the failure
/// policy made while Redis was down is a fallback.
#[cfg(feature = "redis")]
#[test]
fn redis_calls_and_fallbacks_are_measured() {
    use aegeantic::resilience::{FailurePolicy, RedisOptions};
    let mut server = redis_server::RedisServer::start();
    let url = server.url();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ((), recorded) = recorded_on(runtime, || async move {
        let limiter = RateLimiter::redis_with(
            &url,
            "metrics-test",
            RateLimitConfig {
                requests_per_second: Some(100.0),
                burst_size: 10,
                name: Some("shared".into()),
                ..RateLimitConfig::default()
            },
            RedisOptions::default()
                .failure_policy(FailurePolicy::FailOpen)
                .call_timeout(Duration::from_millis(300)),
        )
        .unwrap();
        let run = |limiter: RateLimiter| async move {
            let once = || stream::iter([Ok::<_, io::Error>(1)]);
            let mut stream = resilient_stream(once, None, Some(limiter), "fetch", "custom");
            while let Some(item) = stream.next().await {
                item.unwrap();
            }
        };
        run(limiter.clone()).await;
        server.kill();
        run(limiter).await;
    });
    let ok = samples(
        &recorded,
        "aegeantic.redis.call.duration{outcome=ok,script=gcra}",
    );
    assert_eq!(ok.len(), 1, "the grant while Redis answered");
    assert_eq!(
        counter(
            &recorded,
            "aegeantic.rate_limit.fallbacks{limiter=shared,policy=fail_open}"
        ),
        1,
        "{recorded:#?}"
    );
    assert!(
        recorded.contains_key("histogram aegeantic.redis.call.duration{outcome=error,script=gcra}"),
        "the failed call is timed too: {recorded:#?}"
    );
}
