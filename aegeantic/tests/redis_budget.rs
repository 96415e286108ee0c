//! `RetryBudget::redis` against a real redis-server on loopback (real time): the retry
//! amplification of a fleet of processes at 100 % failure, with no budget, with a budget
//! per process and with one shared budget; the failure policy when Redis is killed, and
//! the events and errors that show it; and `RetryBudget::redis_cluster` on a real
//! three-master cluster.
#![cfg(feature = "redis")]

// Shared by the Redis test binaries, each using a part.
#[allow(dead_code)]
#[path = "common/redis_cluster.rs"]
mod redis_cluster;
#[allow(dead_code)]
#[path = "common/redis_fleet.rs"]
mod redis_fleet;
#[allow(dead_code)]
#[path = "common/redis_server.rs"]
mod redis_server;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aegeantic::events::RetryEvent;
use aegeantic::resilience::{
    retry, FailurePolicy, Fallback, RedisBudgetOptions, ResilienceError, Resilient, RetryBudget,
    RetryConfig,
};
use redis_cluster::RedisCluster;
use redis_fleet::{child_spec, spawn_child, PROCESSES, TASKS};
use redis_server::RedisServer;
use tokio::time::Instant;

/// How long each process sends requests to the failing upstream.
const BUDGET_RUN: Duration = Duration::from_secs(2);
/// Retries worth 10 % of the requests.
const RATIO: f64 = 0.1;

/// Not a test of its own: the entry point of the worker processes that the multi-process
/// tests start (see `common/redis_fleet.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_child_process_entry() {
    let Some((role, url, key)) = child_spec() else {
        return;
    };
    let budget = match role.as_str() {
        "none" => None,
        "local" => Some(RetryBudget::new(RATIO).unwrap()),
        "shared" => {
            Some(RetryBudget::redis(&url, &key, RATIO, RedisBudgetOptions::default()).unwrap())
        }
        other => panic!("unknown child role {other}"),
    };
    let (requests, attempts) = failing_fleet(budget).await;
    println!("SENT {requests} {attempts}");
}

/// `TASKS` tasks calling an upstream that always fails, 3 attempts each at most, for
/// `BUDGET_RUN`: the requests made and the attempts that reached the upstream.
async fn failing_fleet(budget: Option<RetryBudget>) -> (u64, u64) {
    let mut config = RetryConfig::builder()
        .max_attempts(3)
        .base_delay(Duration::from_millis(2))
        .jitter(false);
    if let Some(budget) = budget {
        config = config.budget(budget);
    }
    let config = config.build().unwrap();
    let (requests, attempts) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (config, requests, attempts) =
                (config.clone(), Arc::clone(&requests), Arc::clone(&attempts));
            tokio::spawn(async move {
                while start.elapsed() < BUDGET_RUN {
                    requests.fetch_add(1, Ordering::Relaxed);
                    // An upstream that answers each call with an error after 1 ms.
                    let upstream = || {
                        attempts.fetch_add(1, Ordering::Relaxed);
                        async {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                            Err::<(), _>(io::Error::from(io::ErrorKind::ConnectionReset))
                        }
                    };
                    let _ = retry(upstream, config.clone()).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    (
        requests.load(Ordering::Relaxed),
        attempts.load(Ordering::Relaxed),
    )
}

/// Runs a fleet of `role` and returns its amplification: attempts per request.
fn fleet(url: &str, role: &str) -> (f64, u64) {
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| spawn_child(role, url, role))
        .collect();
    let (mut requests, mut attempts) = (0u64, 0u64);
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout
            .lines()
            .find_map(|line| line.strip_prefix("SENT "))
            .expect("the child reported");
        let (r, a) = line.split_once(' ').unwrap();
        requests += r.parse::<u64>().unwrap();
        attempts += a.parse::<u64>().unwrap();
    }
    (attempts as f64 / requests as f64, requests)
}

#[test]
fn a_shared_budget_keeps_the_fleet_s_retries_to_its_ratio() {
    let server = RedisServer::start();
    let url = server.url();
    let (none, none_requests) = fleet(&url, "none");
    let (local, local_requests) = fleet(&url, "local");
    server.command("CONFIG RESETSTAT");
    let (shared, shared_requests) = fleet(&url, "shared");
    let stats = server.command("INFO commandstats");
    let calls: f64 = ["cmdstat_evalsha:calls=", "cmdstat_eval:calls="]
        .iter()
        .filter_map(|prefix| stats.split(prefix).nth(1))
        .map(|rest| rest.split(',').next().unwrap().parse::<f64>().unwrap())
        .sum();
    println!(
        "{PROCESSES} processes x {TASKS} tasks, 100 % failure, 3 attempts, {BUDGET_RUN:?}: \
         amplification {none:.3}x with no budget ({none_requests} requests), {local:.3}x \
         with a 10 % budget per process ({local_requests}), {shared:.3}x with one shared \
         10 % budget ({shared_requests}; {calls} Redis calls)"
    );
    assert!(none > 2.95, "{none}");
    assert!(shared <= 1.12, "{shared}");
    assert!(
        shared >= 1.05,
        "the shared budget allowed its retries: {shared}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_the_failure_policy_decides() {
    let mut server = RedisServer::start();
    let url = server.url();
    let options = |policy| RedisBudgetOptions::default().failure_policy(policy);
    let local = RetryBudget::redis(&url, "down", 1.0, options(FailurePolicy::Local))
        .unwrap()
        .min_retries_per_second(0.0)
        .unwrap();
    let closed = RetryBudget::redis(&url, "down", 1.0, options(FailurePolicy::FailClosed)).unwrap();
    let open = RetryBudget::redis(&url, "down", 0.0, options(FailurePolicy::FailOpen))
        .unwrap()
        .min_retries_per_second(0.0)
        .unwrap();
    for _ in 0..3 {
        local.deposit();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(local.is_shared());
    assert!(local.try_withdraw(), "earned in Redis");

    server.kill();
    // Each budget learns of the outage from its next call, which a deposit starts.
    for budget in [&local, &closed, &open] {
        budget.deposit();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!local.is_shared() && !closed.is_shared() && !open.is_shared());
    // The in-process budget saw 4 deposits at 1.0: 4 retries, none of them taken here.
    let here: usize = (0..10).filter(|_| local.try_withdraw()).count();
    assert_eq!(here, 4, "local: the in-process budget decides");
    assert!(!closed.try_withdraw(), "fail closed: no retry");
    assert!(
        (0..10).all(|_| open.try_withdraw()),
        "fail open: every retry"
    );

    server.restart();
    local.deposit();
    let back = Instant::now();
    while !local.is_shared() {
        assert!(back.elapsed() < Duration::from_secs(2), "Redis is back");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One request through `config` against an upstream that always fails, with 2 attempts
/// at most: how it ended and the retry events it emitted.
async fn fail_through(config: &RetryConfig) -> (ResilienceError<io::Error>, Vec<RetryEvent>) {
    let mut events = Vec::new();
    let upstream = || async { Err::<(), _>(io::Error::from(io::ErrorKind::ConnectionReset)) };
    let ended = retry(upstream, config.clone())
        .on_event(|event| {
            if let Resilient::Retry(event) = event {
                events.push(event.clone());
            }
        })
        .await;
    (ended.unwrap_err(), events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_events_and_errors_show_the_fallback() {
    let mut server = RedisServer::start();
    let url = server.url();
    let options = || RedisBudgetOptions::default().failure_policy(FailurePolicy::Local);
    let config = |budget: &RetryBudget| {
        RetryConfig::builder()
            .max_attempts(2)
            .base_delay(Duration::from_millis(1))
            .jitter(false)
            .budget(budget.clone())
            .build()
            .unwrap()
    };
    // Earns a retry per request; one that earns none, to be refused.
    let earning = RetryBudget::redis(&url, "events", 1.0, options()).unwrap();
    let spent = RetryBudget::redis(&url, "events-spent", 0.0, options())
        .unwrap()
        .min_retries_per_second(0.0)
        .unwrap();
    let (earning_config, spent_config) = (config(&earning), config(&spent));
    // Retries earned in Redis, and fetched ahead.
    for _ in 0..3 {
        earning.deposit();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (_, events) = fail_through(&earning_config).await;
    assert!(earning.is_shared());
    assert_eq!(
        events.iter().map(|e| e.budget_fallback).collect::<Vec<_>>(),
        [None],
        "the shared budget decides"
    );

    server.kill();
    // Each budget learns of the outage from its next call, which a deposit starts.
    for budget in [&earning, &spent] {
        budget.deposit();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!earning.is_shared() && !spent.is_shared());
    let (_, events) = fail_through(&earning_config).await;
    assert_eq!(
        events.iter().map(|e| e.budget_fallback).collect::<Vec<_>>(),
        [Some(Fallback::Local)],
        "the in-process budget allowed the retry"
    );
    match fail_through(&spent_config).await {
        (ResilienceError::RetryBudgetExhausted { fallback, .. }, events) => {
            assert_eq!(fallback, Some(Fallback::Local), "refused in-process");
            assert!(events.is_empty(), "{events:?}");
        }
        other => panic!("refused by the in-process budget: {other:?}"),
    }

    server.restart();
    earning.deposit();
    let back = Instant::now();
    while !earning.is_shared() {
        assert!(back.elapsed() < Duration::from_secs(2), "Redis is back");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The shared budget decides again: a retry it allows says so, as does a refusal.
    match fail_through(&earning_config).await {
        (_, events) if !events.is_empty() => assert_eq!(events[0].budget_fallback, None),
        (ResilienceError::RetryBudgetExhausted { fallback, .. }, _) => assert_eq!(fallback, None),
        other => panic!("retried or refused by the shared budget: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_is_shared_on_a_cluster_too() {
    let cluster = RedisCluster::start(0);
    let urls = cluster.urls();
    // A process holds at most 2 retries fetched ahead.
    let options = || RedisBudgetOptions::default().prefetch(2);
    let budget = |nodes: &[String]| {
        RetryBudget::redis_cluster(nodes, "cluster", 1.0, options())
            .unwrap()
            .min_retries_per_second(0.0)
            .unwrap()
    };
    let mut others = urls.clone();
    others.rotate_left(1);
    let (earning, spending) = (budget(&urls), budget(&others));
    // What one process's requests earn, another's retries may spend: 3 retries in all.
    for _ in 0..3 {
        earning.deposit();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(earning.is_shared());
    // The earning process holds at most 2: the other gets the rest.
    let spent_elsewhere = take_for(&[&spending], Duration::from_millis(300)).await;
    assert!(spent_elsewhere >= 1, "retries earned elsewhere");
    // Together they take the 3, no more.
    let rest = take_for(&[&spending, &earning], Duration::from_millis(300)).await;
    assert!(spending.is_shared());
    assert_eq!(spent_elsewhere + rest, 3);
}

/// The retries `budgets` take, each trying every 10 ms, for `span`.
async fn take_for(budgets: &[&RetryBudget], span: Duration) -> usize {
    let start = Instant::now();
    let mut taken = 0;
    while start.elapsed() < span {
        taken += budgets
            .iter()
            .filter(|budget| budget.try_withdraw())
            .count();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    taken
}
