//! No input crashes a stream: server headers of any bytes, configurations and durations at
//! the edges of what the types hold. Everything runs on a paused clock.
#![cfg(feature = "http")]

mod common;

use std::time::Duration;

use aegeantic::resilience::{
    classify_http, resilient_stream, retry_stream, HttpError, Jitter, RateLimitConfig, RateLimiter,
    ResilienceError, Resilient, RetryConfig, RetryDecision, RetryOn,
};
use common::paused;
use futures::stream::{self, BoxStream, StreamExt};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use proptest::prelude::*;

/// A 429 with `headers`, then a success.
fn busy_then_ok(
    headers: HeaderMap,
) -> impl FnMut() -> BoxStream<'static, Result<&'static str, HttpError>> {
    let mut calls = 0;
    move || {
        calls += 1;
        let reply = if calls == 1 {
            Err(HttpError {
                status: StatusCode::TOO_MANY_REQUESTS,
                headers: headers.clone(),
            })
        } else {
            Ok("ok")
        };
        stream::iter([reply]).boxed()
    }
}

fn one_header(name: &'static str, value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(name, HeaderValue::from_str(value).unwrap());
    headers
}

/// How a stream with `config` ends after a 429 carrying `headers`.
fn outcome(config: RetryConfig, headers: HeaderMap) -> String {
    paused(async move {
        let stream = retry_stream(busy_then_ok(headers), config, "op", "http");
        let last = stream.collect::<Vec<_>>().await.pop().unwrap();
        match last {
            Ok(Resilient::Item(item)) => item.to_owned(),
            Err(ResilienceError::ServerDelayTooLong { .. }) => "too-long".into(),
            Err(ResilienceError::DeadlineExceeded { .. }) => "deadline".into(),
            other => format!("{other:?}"),
        }
    })
}

fn http_retry() -> aegeantic::resilience::RetryConfigBuilder {
    RetryConfig::builder()
        .retry_on(RetryOn::classified::<HttpError>())
        .base_delay(Duration::from_millis(10))
        .jitter(false)
}

#[test]
fn a_retry_after_too_large_for_any_clock_is_a_delay_too_long() {
    for (name, value) in [
        ("retry-after", "99999999999999999999999"),
        ("retry-after", "18446744073709551615"),
        ("retry-after-ms", "1e30"),
        ("retry-after-ms", "1e300"),
    ] {
        let ending = outcome(http_retry().build().unwrap(), one_header(name, value));
        assert_eq!(ending, "too-long", "{name}: {value}");
    }
}

#[test]
fn the_longest_delays_with_a_deadline_end_on_the_deadline() {
    // Back-off at Duration::MAX.
    let config = RetryConfig::builder()
        .base_delay(Duration::MAX)
        .max_delay(Duration::MAX)
        .max_elapsed(Duration::from_secs(1))
        .build()
        .unwrap();
    let ending = paused(async move {
        let factory = common::scripted(vec![(vec![], Some(common::reset))]);
        let last = retry_stream(factory, config, "op", "llm")
            .collect::<Vec<_>>()
            .await;
        format!("{:?}", last.last().unwrap())
    });
    assert!(ending.contains("DeadlineExceeded"), "{ending}");

    // A server delay of u64::MAX seconds honoured in full.
    let config = http_retry()
        .max_server_delay(Duration::MAX)
        .max_elapsed(Duration::from_secs(1))
        .build()
        .unwrap();
    let headers = one_header("retry-after", "18446744073709551615");
    assert_eq!(outcome(config, headers), "deadline");
}

fn any_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::MAX),
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        (0u64..10_000_000).prop_map(Duration::from_micros),
    ]
}

fn any_rate() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(-1.0),
        Just(0.0),
        Just(1e-6),
        Just(1e6),
        Just(f64::MIN_POSITIVE),
        Just(f64::MAX),
        1e-7f64..1e7,
    ]
}

/// Header values a server could send: numbers of every shape, and arbitrary bytes.
fn any_header_value() -> impl Strategy<Value = Vec<u8>> {
    let shaped = prop_oneof![
        Just("".to_owned()),
        Just("inf".to_owned()),
        Just("-inf".to_owned()),
        Just("NaN".to_owned()),
        Just("1e308".to_owned()),
        Just("1e309".to_owned()),
        Just("-0".to_owned()),
        Just("Wed, 21 Oct 2015 07:28:00 GMT".to_owned()),
        Just("Fri, 31 Dec 9999 23:59:59 GMT".to_owned()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|n| n.to_string()),
        "[0-9]{1,40}(\\.[0-9]{0,12})?",
    ];
    prop_oneof![
        shaped.prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..40),
    ]
}

fn any_headers() -> impl Strategy<Value = HeaderMap> {
    let names = prop::sample::select(vec![
        "retry-after",
        "retry-after-ms",
        "grpc-retry-pushback-ms",
        "x-should-retry",
    ]);
    prop::collection::vec((names, any_header_value()), 0..4).prop_map(|pairs| {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                headers.append(HeaderName::from_static(name), value);
            }
        }
        headers
    })
}

fn any_jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![
        Just(Jitter::None),
        (0.0f64..=1.0).prop_map(Jitter::Proportional),
        Just(Jitter::Proportional(f64::NAN)),
        Just(Jitter::Full),
        Just(Jitter::Equal),
        Just(Jitter::Decorrelated),
    ]
}

#[derive(Debug, Clone)]
struct Extremes {
    attempts: u32,
    base: Duration,
    max: Duration,
    jitter: Jitter,
    first_item: Option<Duration>,
    idle: Option<Duration>,
    attempt: Option<Duration>,
    max_elapsed: Option<Duration>,
    max_server_delay: Duration,
    server_jitter: f64,
    rate: Option<(f64, u32)>,
    gap: Duration,
    headers: HeaderMap,
    status: u16,
}

fn extremes() -> impl Strategy<Value = Extremes> {
    let retry = (
        1u32..5,
        any_duration(),
        any_duration(),
        any_jitter(),
        prop::option::of(any_duration()),
        prop::option::of(any_duration()),
        prop::option::of(any_duration()),
        prop::option::of(any_duration()),
        any_duration(),
        prop_oneof![Just(0.0), Just(1.0), 0.0f64..1.0],
    );
    let world = (
        prop::option::of((any_rate(), any::<u32>())),
        any_duration(),
        any_headers(),
        prop::sample::select(vec![200u16, 408, 429, 500, 503]),
    );
    (retry, world).prop_map(|(retry, world)| Extremes {
        attempts: retry.0,
        // Mostly in order, so that most cases get past the builder.
        base: retry.1.min(retry.2),
        max: retry.1.max(retry.2),
        jitter: retry.3,
        first_item: retry.4,
        idle: retry.5,
        attempt: retry.6,
        max_elapsed: retry.7,
        max_server_delay: retry.8,
        server_jitter: retry.9,
        rate: world.0,
        gap: world.1,
        headers: world.2,
        status: world.3,
    })
}

/// How many generated cases got past the builders and ran.
static RAN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

#[test]
fn most_extreme_configurations_are_built_and_run() {
    extreme_configurations_run_to_an_end();
    let ran = RAN.load(std::sync::atomic::Ordering::Relaxed);
    assert!(ran >= 64, "only {ran} of 256 cases ran a stream");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn classify_http_takes_any_headers(
        headers in any_headers(),
        status in prop_oneof![Just(429u16), Just(503), 100u16..1000],
    ) {
        let status = StatusCode::from_u16(status).unwrap();
        if let RetryDecision::RetryAfter(delay) = classify_http(status, &headers) {
            // Any delay is representable; the retry layer bounds it.
            prop_assert!(delay <= Duration::MAX);
        }
    }

    /// Whatever the configuration, the server's headers and the timing, a stream either
    /// refuses its configuration or runs to an end: no panic, no overflow.
    #[test]
    fn extreme_configurations_run_to_an_end(x in extremes()) {
        let mut builder = RetryConfig::builder()
            .max_attempts(x.attempts)
            .base_delay(x.base)
            .max_delay(x.max)
            .jitter_strategy(x.jitter)
            .retry_on(RetryOn::classified::<HttpError>().or(RetryOn::transient()))
            .max_server_delay(x.max_server_delay)
            .server_delay_jitter(x.server_jitter);
        if let Some(d) = x.first_item { builder = builder.first_item_timeout(d); }
        if let Some(d) = x.idle { builder = builder.idle_timeout(d); }
        if let Some(d) = x.attempt { builder = builder.attempt_timeout(d); }
        if let Some(d) = x.max_elapsed { builder = builder.max_elapsed(d); }
        let Ok(config) = builder.build() else { return Ok(()); };
        let limiter = match x.rate {
            None => None,
            Some((rate, burst)) => match RateLimiter::new(RateLimitConfig {
                requests_per_second: Some(rate),
                burst_size: burst,
                ..RateLimitConfig::default()
            }) {
                Ok(limiter) => Some(limiter),
                Err(_) => return Ok(()),
            },
        };
        let (gap, headers, status) = (x.gap, x.headers.clone(), x.status);
        RAN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let items = paused(async move {
            let factory = move || {
                let headers = headers.clone();
                stream::once(async move {
                    tokio::time::sleep(gap).await;
                    match StatusCode::from_u16(status).unwrap() {
                        StatusCode::OK => Ok("ok"),
                        status => Err(HttpError { status, headers }),
                    }
                })
                .boxed()
            };
            resilient_stream(factory, Some(config), limiter, "op", "http")
                .take(100)
                .collect::<Vec<_>>()
                .await
        });
        prop_assert!(!items.is_empty());
    }
}

#[cfg(feature = "llm")]
mod sse {
    use aegeantic::llm::sse::SseParser;
    use proptest::prelude::*;

    /// Bytes that look like an event stream often enough to reach every branch.
    fn body() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"data: ".to_vec()),
            Just(b"event: error".to_vec()),
            Just(b": comment".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\r".to_vec()),
            Just("é€😀".as_bytes().to_vec()),
            Just(vec![0xff, 0xfe, 0xc3]),
            prop::collection::vec(any::<u8>(), 0..16),
        ];
        prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        /// Any bytes, cut anywhere, parse without a panic into the same events as in one
        /// piece.
        #[test]
        fn any_bytes_cut_anywhere_parse_alike(body in body(), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8)) {
            let whole = SseParser::new().push(&body);
            let mut at: Vec<usize> = cuts.iter().map(|cut| cut.index(body.len() + 1)).collect();
            at.sort();
            let mut parser = SseParser::new();
            let mut events = Vec::new();
            let mut from = 0;
            for to in at.into_iter().chain([body.len()]) {
                events.extend(parser.push(&body[from..to]));
                from = to;
            }
            prop_assert_eq!(events, whole);
        }
    }
}
