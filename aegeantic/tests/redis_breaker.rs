//! `CircuitBreaker::redis` against a real redis-server on loopback, and
//! `CircuitBreaker::redis_cluster` against a real three-master cluster (real time): one
//! state for every breaker on the key, heard by breakers that make no call, the fleet's
//! probes capped as one breaker's, the fallback while Redis is down and the events that
//! show it, and the requests a fleet of processes sends to an upstream that is down for
//! 10 s, with a breaker per process, one shared breaker, and one process alone.
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

use aegeantic::events::CircuitEvent;
use aegeantic::resilience::{
    retry, CircuitBreaker, CircuitBreakerConfig, CircuitState, Fallback, RedisBreakerOptions,
    ResilienceError, Resilient, RetryConfig,
};
use redis_cluster::RedisCluster;
use redis_fleet::{child_spec, spawn_child, unix_micros, PROCESSES, TASKS};
use redis_server::RedisServer;

/// Opens at half of 10 calls failing; probes 3 after 2 s.
fn config() -> CircuitBreakerConfig {
    CircuitBreakerConfig {
        window: 20,
        minimum_calls: 10,
        failure_ratio: 0.5,
        open_duration: Duration::from_secs(2),
        half_open_probes: 3,
        slow_call: None,
    }
}

/// The upstream is down for this long, from `BEFORE` into the run; the run ends `AFTER`
/// it is back.
const OUTAGE: Duration = Duration::from_secs(10);
const BEFORE: Duration = Duration::from_millis(500);
const AFTER: Duration = Duration::from_millis(2500);
/// Each call of the upstream takes this long.
const LATENCY: Duration = Duration::from_millis(20);
/// A fleet's tasks are `PROCESSES` groups of `TASKS`, one a process, or all in one process
/// for the single breaker: the same load for every fleet. Each task calls again as soon
/// as a call ends; `ALIGN` before the outage, each waits once for its group's phase, so
/// that a group's calls start together, `STAGGER` after the previous group's (modulo
/// `LATENCY`). The groups of a fleet of processes are then apart by far more than the
/// time an opening takes to reach every process (a Redis hop), and the test measures that
/// it does reach them in time: two processes whose calls fail within that hop of each
/// other could each start calls before it, as the README says. With
/// `AEGEANTIC_TEST_RANDOM_PHASES` set in the environment, the tasks keep the phases they
/// start with, for that figure (the assertions may then fail).
const ALIGN: u64 = 100_000;
const RANDOM_PHASES: &str = "AEGEANTIC_TEST_RANDOM_PHASES";
const STAGGER: u64 = 5_000;

/// Not a test of its own: the entry point of the worker processes that the multi-process
/// tests start (see `common/redis_fleet.rs`). The key is `<key>@<outage start, unix
/// us>@<group>`: the process's group of tasks (the single breaker's process has them all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_child_process_entry() {
    let Some((role, url, spec)) = child_spec() else {
        return;
    };
    let mut spec = spec.split('@');
    let (key, start, group) = (
        spec.next().unwrap(),
        spec.next().unwrap(),
        spec.next().unwrap(),
    );
    let (down_from, group): (u64, usize) = (start.parse().unwrap(), group.parse().unwrap());
    let (breaker, groups) = match role.as_str() {
        "per-process" => (CircuitBreaker::new(config()).unwrap(), group..group + 1),
        "shared" => {
            let options = RedisBreakerOptions::default();
            (
                CircuitBreaker::redis(&url, key, config(), options).unwrap(),
                group..group + 1,
            )
        }
        // One process with the whole fleet's tasks and one breaker.
        "alone" => (CircuitBreaker::new(config()).unwrap(), 0..PROCESSES),
        other => panic!("unknown child role {other}"),
    };
    let (reached, later) = call_the_upstream(breaker, groups, down_from).await;
    println!("REACHED {reached} {later}");
}

/// The first second of the outage, when the breakers open; the probes come after.
const FIRST_SECOND: u64 = 1_000_000;

/// The first time from `now` on that is `phase` plus or minus a whole number of call
/// latencies.
fn next_phase(phase: u64, now: u64) -> u64 {
    let period = LATENCY.as_micros() as u64;
    if now < phase {
        phase - (phase - now) / period * period
    } else {
        phase + (now - phase).div_ceil(period) * period
    }
}

/// The `groups` of `TASKS` tasks calling through `breaker` an upstream that fails every
/// call that arrives in the outage; the calls that reached it then, and those of them
/// after its first second.
async fn call_the_upstream(
    breaker: CircuitBreaker,
    groups: std::ops::Range<usize>,
    down_from: u64,
) -> (u64, u64) {
    let down_until = down_from + OUTAGE.as_micros() as u64;
    let end = down_until + AFTER.as_micros() as u64;
    let (reached, later) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let tasks: Vec<_> = groups
        .flat_map(|group| std::iter::repeat_n(group, TASKS))
        .map(|group| {
            let (breaker, reached, later) =
                (breaker.clone(), Arc::clone(&reached), Arc::clone(&later));
            // The group's phase; the outage starts between two groups' calls.
            let phase = down_from + STAGGER / 2 + group as u64 * STAGGER;
            tokio::spawn(async move {
                let mut to_align = std::env::var_os(RANDOM_PHASES).is_none();
                while unix_micros() < end {
                    let now = unix_micros();
                    if to_align && now + ALIGN >= down_from {
                        to_align = false;
                        let at = next_phase(phase, now);
                        tokio::time::sleep(Duration::from_micros(at - now)).await;
                    }
                    let Ok((call, _)) = breaker.try_call() else {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    };
                    let arrived = unix_micros();
                    let down = (down_from..down_until).contains(&arrived);
                    reached.fetch_add(u64::from(down), Ordering::Relaxed);
                    if down && arrived >= down_from + FIRST_SECOND {
                        later.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(LATENCY).await;
                    let _ = if down { call.failure() } else { call.success() };
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    (
        reached.load(Ordering::Relaxed),
        later.load(Ordering::Relaxed),
    )
}

#[test]
fn a_shared_breaker_probes_a_dead_upstream_as_one_breaker_would() {
    let server = RedisServer::start();
    let url = server.url();
    let down_from = unix_micros() + BEFORE.as_micros() as u64;
    let spawn = |role: &str, count: usize| -> Vec<_> {
        (0..count)
            .map(|group| spawn_child(role, &url, &format!("{role}@{down_from}@{group}")))
            .collect()
    };
    // The three fleets run at once, against the same outage.
    let fleets = [
        spawn("per-process", PROCESSES),
        spawn("shared", PROCESSES),
        spawn("alone", 1),
    ];
    let [per_process, shared, alone] = fleets.map(|children| {
        children
            .into_iter()
            .map(|child| {
                let output = child.wait_with_output().unwrap();
                assert!(output.status.success());
                let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
                let line = stdout
                    .lines()
                    .find_map(|line| line.strip_prefix("REACHED "))
                    .expect("the child reported");
                let (all, later) = line.split_once(' ').unwrap();
                (all.parse::<u64>().unwrap(), later.parse::<u64>().unwrap())
            })
            .fold((0, 0), |(all, later), (a, l)| (all + a, later + l))
    });
    println!(
        "upstream down {OUTAGE:?}, calls of {LATENCY:?}; calls that reached it (of them after \
         the outage's first second, the probes): {PROCESSES} processes x {TASKS} tasks with a \
         breaker each {per_process:?}, with one shared breaker {shared:?}; one process of {} \
         tasks with one breaker {alone:?}",
        PROCESSES * TASKS
    );
    // The fleet sends what one breaker does: the calls in flight when the upstream fell,
    // those that the tasks of the first failures start before the failure that opens the
    // breaker, and the probes (granted by the script: the fleet's are one breaker's).
    assert!(shared.0 <= alone.0, "{shared:?} vs {alone:?}");
    assert!(shared.1 <= alone.1, "{shared:?} vs {alone:?}");
    // A breaker per process sends N times the probes.
    assert!(per_process.1 >= 3 * alone.1, "{per_process:?} vs {alone:?}");
}

/// Polls `reached` every millisecond for up to a second: how long it took.
async fn within_a_second(reached: impl Fn() -> bool) -> Duration {
    let start = std::time::Instant::now();
    while !reached() {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "not within a second"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    start.elapsed()
}

/// The breakers of one key: one state for them all, heard by those that make no call,
/// and the fleet's probes capped as one breaker's.
async fn the_fleet_changes_state_once(on: &str, fleet: Vec<CircuitBreaker>) {
    for breaker in &fleet {
        // A permission dropped unreported counts for nothing; it starts the tasks.
        drop(breaker.try_call().unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(fleet.iter().all(CircuitBreaker::is_shared));
    // Ten failures through the first open the breaker for all: the others make no call
    // (`state` asks Redis nothing) and hear the opening as the script publishes it.
    for _ in 0..10 {
        let (call, _) = fleet[0].try_call().unwrap();
        assert_eq!(call.failure(), None, "reported with a later permission");
    }
    let heard = within_a_second(|| fleet.iter().all(|b| b.state() == CircuitState::Open)).await;
    println!("{on}: every breaker heard the opening {heard:?} after the last failure");
    for breaker in &fleet {
        let open = breaker.try_call().unwrap_err();
        assert!(open.retry_in > Duration::from_secs(1), "{open:?}");
    }

    // Once open_duration has passed, the four together get 3 probes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut probes = Vec::new();
    for _ in 0..20 {
        for breaker in &fleet {
            if let Ok((call, _)) = breaker.try_call() {
                probes.push(call);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(probes.len(), 3, "the fleet's probes");
    for call in probes {
        let _ = call.success();
    }
    within_a_second(|| fleet.iter().all(|b| b.state() == CircuitState::Closed)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_changes_state_once_and_probes_as_one_breaker() {
    let server = RedisServer::start();
    let options = RedisBreakerOptions::default;
    let fleet = (0..4)
        .map(|_| CircuitBreaker::redis(&server.url(), "one", config(), options()).unwrap())
        .collect();
    the_fleet_changes_state_once("one node", fleet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_too() {
    let cluster = RedisCluster::start(0);
    let urls = cluster.urls();
    let options = RedisBreakerOptions::default;
    // Each breaker knows another node first: its subscription is there.
    let fleet = (0..4)
        .map(|n| {
            let mut nodes = urls.clone();
            nodes.rotate_left(n % urls.len());
            CircuitBreaker::redis_cluster(&nodes, "one", config(), options()).unwrap()
        })
        .collect();
    the_fleet_changes_state_once("cluster", fleet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_the_in_process_breaker_decides_and_says_so() {
    let mut server = RedisServer::start();
    let breaker = CircuitBreaker::redis(
        &server.url(),
        "down",
        config(),
        RedisBreakerOptions::default(),
    )
    .unwrap();
    let (call, _) = breaker.try_call().unwrap();
    let _ = call.success();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(breaker.is_shared());
    server.kill();
    let (call, transition) = breaker.try_call().unwrap();
    assert_eq!(transition, None, "the fleet's state decided");
    let _ = call.failure();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!breaker.is_shared(), "the in-process breaker decides");
    // The switch is reported with the next permission: from the fleet's state to the
    // in-process breaker's.
    let (call, switch) = breaker.try_call().unwrap();
    let switch = switch.expect("the switch to the fallback is reported");
    assert_eq!(
        (switch.from, switch.to, switch.fallback),
        (
            CircuitState::Closed,
            CircuitState::Closed,
            Some(Fallback::Local)
        )
    );
    let mut opened = call.failure();
    for _ in 0..9 {
        let (call, transition) = breaker.try_call().unwrap();
        assert_eq!(transition, None);
        opened = opened.or(call.failure());
    }
    let opened = opened.expect("the in-process breaker opens");
    assert_eq!(
        (opened.to, opened.fallback),
        (CircuitState::Open, Some(Fallback::Local))
    );
    assert_eq!(breaker.state(), CircuitState::Open, "in-process, at once");
    let refused = breaker.try_call().unwrap_err();
    assert_eq!(refused.fallback, Some(Fallback::Local), "{refused:?}");

    server.restart();
    let back = std::time::Instant::now();
    while !breaker.is_shared() {
        assert!(back.elapsed() < Duration::from_secs(2), "Redis is back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        breaker.state(),
        CircuitState::Closed,
        "the fleet's state again"
    );
    // The return is reported with the next permission, once: from the in-process
    // breaker's state to the fleet's.
    let (call, returned) = breaker.try_call().unwrap();
    let returned = returned.expect("the return to the fleet's state is reported");
    assert_eq!(
        (returned.from, returned.to, returned.fallback),
        (CircuitState::Open, CircuitState::Closed, None)
    );
    let _ = call.success();
    let (_, after) = breaker.try_call().unwrap();
    assert_eq!(after, None);
}

/// One call of `outcome` through `breaker`, without retries: how it ended and the circuit
/// events it emitted.
async fn call_through(
    breaker: &CircuitBreaker,
    outcome: Result<(), io::ErrorKind>,
) -> (Result<(), ResilienceError<io::Error>>, Vec<CircuitEvent>) {
    let config = RetryConfig::builder().max_attempts(1).build().unwrap();
    let mut events = Vec::new();
    let ended = retry(|| async move { outcome.map_err(io::Error::from) }, config)
        .with_circuit_breaker(breaker.clone())
        .on_event(|event| {
            if let Resilient::Circuit(event) = event {
                events.push(event.clone());
            }
        })
        .await;
    (ended, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_events_show_the_fallback_and_the_return() {
    let mut server = RedisServer::start();
    let options = RedisBreakerOptions::default();
    let breaker = CircuitBreaker::redis(&server.url(), "events", config(), options).unwrap();
    let reset = Err(io::ErrorKind::ConnectionReset);
    let (ended, events) = call_through(&breaker, Ok(())).await;
    assert!(ended.is_ok() && events.is_empty(), "{events:?}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(breaker.is_shared());

    server.kill();
    // The failure's report finds Redis gone.
    let (_, events) = call_through(&breaker, reset).await;
    assert!(events.is_empty(), "{events:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!breaker.is_shared());
    let mut seen = Vec::new();
    for _ in 0..10 {
        let (ended, events) = call_through(&breaker, reset).await;
        assert!(ended.is_err());
        seen.extend(events);
    }
    let states: Vec<_> = seen.iter().map(|e| (e.from, e.to, e.fallback)).collect();
    assert_eq!(
        states,
        [
            // The switch to the in-process breaker, then its opening.
            (
                CircuitState::Closed,
                CircuitState::Closed,
                Some(Fallback::Local)
            ),
            (
                CircuitState::Closed,
                CircuitState::Open,
                Some(Fallback::Local)
            ),
        ]
    );
    let (ended, events) = call_through(&breaker, Ok(())).await;
    assert!(events.is_empty(), "{events:?}");
    match ended {
        Err(ResilienceError::CircuitOpen(open)) => {
            assert_eq!(open.fallback, Some(Fallback::Local), "{open:?}")
        }
        other => panic!("refused by the in-process breaker: {other:?}"),
    }

    server.restart();
    let back = std::time::Instant::now();
    while !breaker.is_shared() {
        assert!(back.elapsed() < Duration::from_secs(2), "Redis is back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (ended, events) = call_through(&breaker, Ok(())).await;
    assert!(ended.is_ok(), "{ended:?}");
    let states: Vec<_> = events.iter().map(|e| (e.from, e.to, e.fallback)).collect();
    assert_eq!(
        states,
        [(CircuitState::Open, CircuitState::Closed, None)],
        "the fleet's state decides again"
    );
    let (_, events) = call_through(&breaker, Ok(())).await;
    assert!(events.is_empty(), "{events:?}");
}
