//! The Redis-backed limiter while Redis is down, against a real redis-server on loopback
//! killed with SIGKILL (real time): the failure policy decides at once, probes bring Redis
//! back, and a sized local fallback keeps a fleet of processes within the shared limit.
#![cfg(feature = "redis")]

// Shared by the Redis test binaries, each using a part.
#[allow(dead_code)]
#[path = "common/redis_fleet.rs"]
mod redis_fleet;
#[allow(dead_code)]
#[path = "common/redis_server.rs"]
mod redis_server;

use std::time::Duration;

use aegeantic::resilience::{
    ConfigError, FailurePolicy, Fallback, RateLimitConfig, RateLimitError, RateLimiter,
    RedisOptions,
};
use redis_fleet::{
    child_spec, config, fleet_child, grants_of, spawn_child, unix_micros, PROCESSES, SHARED,
};
use redis_server::RedisServer;
use tokio::time::Instant;

/// Not a test of its own: the entry point of the worker processes that the multi-process
/// tests start (see `common/redis_fleet.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_child_process_entry() {
    let Some((role, url, key)) = child_spec() else {
        return;
    };
    let options = match role.as_str() {
        "outage-copy" => RedisOptions::default().failure_policy(FailurePolicy::Local),
        "outage-share" => RedisOptions::default().local_fallback(QUARTER),
        other => panic!("unknown child role {other}"),
    };
    let limiter = RateLimiter::redis_with(&url, &key, SHARED, options).unwrap();
    fleet_child(limiter, OUTAGE_RUN, Some(Fallback::Local)).await;
}

/// A quarter of `SHARED`, for each of the `PROCESSES` while Redis is down.
const QUARTER: RateLimitConfig = RateLimitConfig {
    requests_per_second: Some(25.0),
    requests_per_minute: Some(1500.0),
    requests_per_hour: None,
    burst_size: 5,
    name: None,
};
const OUTAGE_RUN: Duration = Duration::from_secs(3);

/// While Redis is down, four processes with the default local fallback admit four times
/// the shared limit; with a quarter each, the fleet keeps to the shared limit.
#[test]
fn a_fleet_keeps_to_the_shared_limit_in_an_outage_with_a_sized_fallback() {
    let mut server = RedisServer::start();
    let url = server.url();
    server.kill();
    let started = unix_micros();
    let copies: Vec<_> = (0..PROCESSES)
        .map(|_| spawn_child("outage-copy", &url, "copies"))
        .collect();
    let shares: Vec<_> = (0..PROCESSES)
        .map(|_| spawn_child("outage-share", &url, "shares"))
        .collect();
    let (copy_grants, copy_last) = grants_of(copies, started);
    let (share_grants, share_last) = grants_of(shares, started);
    // The shared limit over each fleet's span: burst + rate · span.
    let shared_limit = |last: u64| 20.0 + 100.0 * (last - started) as f64 / 1e6;
    let ideal = 20.0 + 100.0 * OUTAGE_RUN.as_secs_f64();
    let copies: usize = copy_grants.iter().sum();
    let shares: usize = share_grants.iter().sum();
    println!(
        "Redis down, {PROCESSES} processes for {OUTAGE_RUN:?}: a full copy each admitted \
         {copies} ({:.2}x the shared limit, per process {copy_grants:?}); a quarter each \
         admitted {shares} ({:.2}x, per process {share_grants:?})",
        copies as f64 / shared_limit(copy_last),
        shares as f64 / shared_limit(share_last),
    );
    assert!(copies as f64 >= 3.0 * ideal, "{copies} < 3 x {ideal}");
    assert!(
        shares as f64 <= shared_limit(share_last),
        "{shares} > {}",
        shared_limit(share_last)
    );
    assert!(shares as f64 >= 0.9 * ideal, "{shares} < 90% of {ideal}");
}

#[test]
fn a_local_fallback_is_checked_when_the_limiter_is_built() {
    let url = "redis://127.0.0.1:1/";
    let no_rate = RateLimitConfig::default();
    let error = RateLimiter::redis_with(
        url,
        "bad",
        SHARED,
        RedisOptions::default().local_fallback(no_rate),
    )
    .unwrap_err();
    assert_eq!(
        error,
        ConfigError::InvalidLocalFallback(Box::new(ConfigError::NoRate))
    );
    let source = std::error::Error::source(&error).expect("the cause is the source");
    assert_eq!(source.to_string(), ConfigError::NoRate.to_string());

    let mut options = RedisOptions::default().local_fallback(QUARTER);
    options.failure_policy = FailurePolicy::FailOpen;
    let error = RateLimiter::redis_with(url, "unused", SHARED, options).unwrap_err();
    assert_eq!(error, ConfigError::LocalFallbackUnused);

    let options = RedisOptions::default().probe_interval(std::time::Duration::ZERO);
    let error = RateLimiter::redis_with(url, "zero", SHARED, options).unwrap_err();
    assert_eq!(
        error,
        ConfigError::ZeroTimeout {
            field: "probe_interval"
        }
    );
}

/// While Redis is down the sized bucket decides: its own burst, its own capacity, and a
/// drain reaches it.
#[tokio::test]
async fn a_sized_fallback_limits_on_its_own_bucket() {
    let mut server = RedisServer::start();
    let url = server.url();
    server.kill();
    let small = config(1.0, 2);
    let options = RedisOptions::default().local_fallback(small);
    let limiter = RateLimiter::redis_with(&url, "sized", config(1000.0, 100), options).unwrap();
    assert!(limiter.try_acquire(2).await.unwrap());
    assert!(
        !limiter.try_acquire(1).await.unwrap(),
        "the small bucket is empty"
    );
    assert_eq!(
        limiter.try_acquire(3).await,
        Err(RateLimitError::InsufficientCapacity {
            requested: 3,
            burst: 2
        })
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(limiter.drain().await.is_err(), "Redis is down");
    assert!(
        !limiter.try_acquire(1).await.unwrap(),
        "the drain reached it"
    );
}

async fn outage(policy: FailurePolicy) {
    let mut server = RedisServer::start();
    let options = RedisOptions::default()
        .failure_policy(policy)
        .call_timeout(Duration::from_millis(200));
    let limiter =
        RateLimiter::redis_with(&server.url(), "outage", config(5.0, 2), options).unwrap();
    assert_eq!(limiter.acquire(1, "up").await.unwrap().fallback, None);

    server.kill();
    for _ in 0..3 {
        let start = Instant::now();
        let result = tokio::time::timeout(Duration::from_secs(2), limiter.acquire(1, "down"))
            .await
            .expect("no hang past the call timeout");
        let fast = start.elapsed() < Duration::from_millis(800);
        match policy {
            FailurePolicy::FailClosed => {
                assert!(
                    matches!(result, Err(RateLimitError::Backend { .. })),
                    "{result:?}"
                );
                assert!(fast);
            }
            FailurePolicy::FailOpen => {
                assert_eq!(result.unwrap().fallback, Some(Fallback::FailOpen));
                assert!(fast);
            }
            FailurePolicy::Local => {
                assert_eq!(result.unwrap().fallback, Some(Fallback::Local));
            }
        }
    }
    if policy == FailurePolicy::Local {
        // The local bucket (burst 2, 5/s) really limits: three grants took at least ~200 ms.
        assert!(!limiter.try_acquire(2).await.unwrap());
    }

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let result = limiter.acquire(1, "back").await;
        if matches!(&result, Ok(acquired) if acquired.fallback.is_none()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "admission did not resume: {result:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn redis_down_fail_closed() {
    outage(FailurePolicy::FailClosed).await;
}

#[tokio::test]
async fn redis_down_fail_open() {
    outage(FailurePolicy::FailOpen).await;
}

#[tokio::test]
async fn redis_down_local_fallback() {
    outage(FailurePolicy::Local).await;
}

/// One decision seen by `kill_and_restart`: when it started, how long it took, whether
/// Redis made it.
struct Decision {
    started: Instant,
    took: Duration,
    from_redis: bool,
}

/// The `q`-quantile of `values`, sorted.
fn quantile(values: &[Duration], q: f64) -> Duration {
    values[((values.len() - 1) as f64 * q).round() as usize]
}

/// Decisions from four tasks, one every millisecond or so each, while Redis is killed with
/// SIGKILL and restarted on the same port: during the outage the failure policy decides
/// without waiting for Redis, and once Redis answers again the next probe brings it back.
async fn kill_and_restart(policy: FailurePolicy) {
    let mut server = RedisServer::start();
    let options = RedisOptions::default().failure_policy(policy);
    let probe_interval = options.probe_interval;
    // A bucket that never runs dry here, so that the local fallback never waits either.
    let limiter =
        RateLimiter::redis_with(&server.url(), "killed", config(100_000.0, 100_000), options)
            .unwrap();
    for _ in 0..8 {
        assert_eq!(limiter.acquire(1, "warm").await.unwrap().fallback, None);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (limiter, stop) = (limiter.clone(), stop.clone());
            tokio::spawn(async move {
                let mut decisions = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let started = Instant::now();
                    let result = limiter.acquire(1, "decision").await;
                    let took = started.elapsed();
                    let from_redis = match (policy, result) {
                        (FailurePolicy::FailClosed, Err(RateLimitError::Backend { .. })) => false,
                        (_, Ok(acquired)) => {
                            let expected = match policy {
                                FailurePolicy::FailOpen => Some(Fallback::FailOpen),
                                FailurePolicy::Local => Some(Fallback::Local),
                                _ => None,
                            };
                            let fallback = acquired.fallback;
                            assert!(fallback.is_none() || fallback == expected, "{acquired:?}");
                            fallback.is_none()
                        }
                        (_, Err(error)) => panic!("{error:?}"),
                    };
                    decisions.push(Decision {
                        started,
                        took,
                        from_redis,
                    });
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                decisions
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = Instant::now();
    server.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let restarting = Instant::now();
    let server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .unwrap();
    // `restart` returns once the server has answered a PING.
    let answering = Instant::now();
    tokio::time::sleep(Duration::from_millis(600)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut decisions = Vec::new();
    for task in tasks {
        decisions.extend(task.await.unwrap());
    }
    drop(server);

    let during: Vec<&Decision> = decisions
        .iter()
        .filter(|d| d.started >= killed && d.started + d.took < restarting)
        .collect();
    assert!(
        during.iter().all(|d| !d.from_redis),
        "the failure policy decided"
    );
    let mut outage: Vec<Duration> = during.iter().map(|d| d.took).collect();
    outage.sort();
    let (p50, p99) = (quantile(&outage, 0.5), quantile(&outage, 0.99));
    let back = decisions
        .iter()
        .filter(|d| d.started >= restarting && d.from_redis)
        .map(|d| d.started + d.took)
        .min()
        .expect("Redis never decided again");
    // From the restart command: an upper bound on the time since Redis could answer.
    let recovery = back - restarting;
    let started_up = answering - restarting;
    let fallbacks_after = decisions
        .iter()
        .filter(|d| d.started > back && !d.from_redis)
        .count();
    println!(
        "{policy:?}: {} decisions during the outage, p50 {p50:?}, p99 {p99:?}, max {:?}; \
         Redis deciding again {recovery:?} after the restart command (whose PING got an \
         answer after {started_up:?}; probe interval {probe_interval:?})",
        outage.len(),
        outage.last().unwrap(),
    );
    assert!(outage.len() > 500, "{} decisions", outage.len());
    assert!(p99 < Duration::from_millis(5), "p99 {p99:?}");
    assert!(
        recovery < probe_interval + Duration::from_millis(150),
        "back after {recovery:?}"
    );
    assert_eq!(fallbacks_after, 0, "Redis decides again for good");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_fail_open_decides_fast_and_recovers() {
    kill_and_restart(FailurePolicy::FailOpen).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_local_decides_fast_and_recovers() {
    kill_and_restart(FailurePolicy::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_fail_closed_decides_fast_and_recovers() {
    kill_and_restart(FailurePolicy::FailClosed).await;
}

#[tokio::test]
async fn a_limiter_can_be_created_while_redis_is_down() {
    let mut server = RedisServer::start();
    server.kill();
    let limiter = RateLimiter::redis(&server.url(), "late", config(5.0, 2)).unwrap();
    assert!(matches!(
        limiter.acquire(1, "op").await,
        Err(RateLimitError::Backend { .. })
    ));
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(5);
    while limiter.try_acquire(1).await.is_err() {
        assert!(Instant::now() < deadline, "never connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
