use super::*;

fn breaker(window: usize, minimum_calls: usize, probes: u32) -> CircuitBreaker {
    CircuitBreaker::new(CircuitBreakerConfig {
        failure_ratio: 0.5,
        window,
        minimum_calls,
        open_duration: Duration::from_secs(10),
        half_open_probes: probes,
        slow_call: Some(Duration::from_secs(2)),
    })
    .unwrap()
}

fn call(breaker: &CircuitBreaker, fail: bool) -> Option<Transition> {
    let (call, opened) = breaker.try_call().expect("closed");
    assert_eq!(opened, None);
    if fail {
        call.failure()
    } else {
        call.success()
    }
}

#[tokio::test(start_paused = true)]
async fn opens_at_the_failure_ratio_once_enough_calls_are_in() {
    let b = breaker(10, 4, 1);
    assert_eq!(call(&b, true), None);
    assert_eq!(call(&b, true), None);
    assert_eq!(call(&b, true), None, "three calls are below the minimum");
    let opened = call(&b, false).expect("3 of 4 failed");
    assert_eq!(opened.from, CircuitState::Closed);
    assert_eq!(opened.to, CircuitState::Open);
    assert_eq!(opened.failure_ratio, Some(0.75));
    assert_eq!(b.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn the_window_slides() {
    let b = breaker(4, 4, 1);
    for fail in [true, false, false, false, true, false, false] {
        assert_eq!(call(&b, fail), None, "never 2 failures in the last 4");
    }
    // The last four are now: failure, success, success, failure.
    let opened = call(&b, true).expect("2 of the last 4 failed");
    assert_eq!(opened.failure_ratio, Some(0.5));
}

#[tokio::test(start_paused = true)]
async fn an_open_duration_beyond_the_clock_keeps_it_open() {
    let b = CircuitBreaker::new(CircuitBreakerConfig {
        failure_ratio: 0.5,
        window: 1,
        minimum_calls: 1,
        open_duration: Duration::MAX,
        half_open_probes: 1,
        slow_call: Some(Duration::MAX),
    })
    .unwrap();
    assert!(call(&b, true).is_some());
    assert_eq!(b.try_call().unwrap_err().retry_in, Duration::MAX);
    tokio::time::advance(Duration::from_secs(100 * 365 * 86_400)).await;
    assert_eq!(b.state(), CircuitState::Open);
    assert!(b.open_past(Duration::from_secs(1)).is_some());
}

#[tokio::test(start_paused = true)]
async fn open_fails_fast_then_probes_then_closes() {
    let b = breaker(2, 2, 2);
    call(&b, true);
    assert!(call(&b, true).is_some());
    let refused = b.try_call().unwrap_err();
    assert_eq!(refused.retry_in, Duration::from_secs(10));
    tokio::time::advance(Duration::from_secs(4)).await;
    assert_eq!(b.try_call().unwrap_err().retry_in, Duration::from_secs(6));

    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(b.state(), CircuitState::HalfOpen);
    let (first, half_open) = b.try_call().unwrap();
    assert_eq!(half_open.map(|t| t.to), Some(CircuitState::HalfOpen));
    let (second, none) = b.try_call().unwrap();
    assert_eq!(none, None);
    assert!(b.try_call().is_err(), "only two probes at a time");
    assert_eq!(first.success(), None);
    let closed = second.success().expect("both probes succeeded");
    assert_eq!(
        (closed.from, closed.to),
        (CircuitState::HalfOpen, CircuitState::Closed)
    );
    assert_eq!(call(&b, true), None, "a fresh window");
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_opens_again() {
    let b = breaker(1, 1, 3);
    assert!(call(&b, true).is_some());
    tokio::time::advance(Duration::from_secs(10)).await;
    let (probe, _) = b.try_call().unwrap();
    let reopened = probe.failure().unwrap();
    assert_eq!(
        (reopened.from, reopened.to),
        (CircuitState::HalfOpen, CircuitState::Open)
    );
    assert!(b.try_call().is_err());
}

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_frees_its_slot() {
    let b = breaker(1, 1, 1);
    assert!(call(&b, true).is_some());
    tokio::time::advance(Duration::from_secs(10)).await;
    let (probe, _) = b.try_call().unwrap();
    assert!(b.try_call().is_err());
    drop(probe);
    let (probe, _) = b.try_call().expect("the slot came back");
    assert!(probe.success().is_some());
    assert_eq!(b.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn slow_successes_count_as_failures() {
    let b = breaker(2, 2, 1);
    let (slow, _) = b.try_call().unwrap();
    tokio::time::advance(Duration::from_secs(3)).await;
    assert_eq!(slow.success(), None);
    let (slow, _) = b.try_call().unwrap();
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(slow.success().is_some(), "two slow calls of two");
}

#[tokio::test(start_paused = true)]
async fn outcomes_from_an_earlier_period_are_ignored() {
    let b = breaker(1, 1, 1);
    let (late, _) = b.try_call().unwrap();
    assert!(call(&b, true).is_some());
    assert_eq!(late.failure(), None, "reported after the breaker opened");
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(b.state(), CircuitState::HalfOpen);
}

#[test]
fn bad_configs_name_their_field() {
    let bad = |config: CircuitBreakerConfig| match CircuitBreaker::new(config) {
        Err(ConfigError::InvalidCircuitBreaker { field }) => field,
        other => panic!("{other:?}"),
    };
    let base = CircuitBreakerConfig::default;
    assert_eq!(
        bad(CircuitBreakerConfig {
            failure_ratio: 0.0,
            ..base()
        }),
        "failure_ratio"
    );
    assert_eq!(
        bad(CircuitBreakerConfig {
            failure_ratio: f64::NAN,
            ..base()
        }),
        "failure_ratio"
    );
    assert_eq!(
        bad(CircuitBreakerConfig {
            window: 0,
            ..base()
        }),
        "window"
    );
    assert_eq!(
        bad(CircuitBreakerConfig {
            minimum_calls: 21,
            ..base()
        }),
        "minimum_calls"
    );
    assert_eq!(
        bad(CircuitBreakerConfig {
            open_duration: Duration::ZERO,
            ..base()
        }),
        "open_duration"
    );
    assert_eq!(
        bad(CircuitBreakerConfig {
            half_open_probes: 0,
            ..base()
        }),
        "half_open_probes"
    );
    assert_eq!(
        bad(CircuitBreakerConfig {
            slow_call: Some(Duration::ZERO),
            ..base()
        }),
        "slow_call"
    );
}
