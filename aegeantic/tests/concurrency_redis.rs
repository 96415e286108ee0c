//! `ConcurrencyLimiter::redis` against a real redis-server on loopback (real time): one cap
//! shared by processes, FIFO waiting, leases that come back when their process is killed,
//! the failure policy when Redis is killed, and the stream and tower adapters on it; and
//! `ConcurrencyLimiter::redis_cluster` on a real Redis Cluster, across processes and
//! through a failover.
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

use std::io::{BufRead, BufReader};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegeantic::resilience::{
    resilient_stream, ConcurrencyLimiter, FailurePolicy, RedisConcurrencyOptions, Resilient,
};
use futures::StreamExt;
use redis_cluster::RedisCluster;
use redis_fleet::{child_spec, spawn_child, unix_micros, PROCESSES, TASKS};
use redis_server::RedisServer;
use tokio::time::Instant;

/// The fleet's cap, and how long each fleet process asks for slots.
const MAX: usize = 8;
const FLEET_RUN: Duration = Duration::from_secs(4);
/// The lease of the kill test: short, so that it ends soon after the kill.
const SHORT_LEASE: Duration = Duration::from_millis(600);

/// Not a test of its own: the entry point of the worker processes that the multi-process
/// tests start (see `common/redis_fleet.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_child_process_entry() {
    let Some((role, url, key)) = child_spec() else {
        return;
    };
    let options = RedisConcurrencyOptions::default;
    match role.as_str() {
        "fleet" => {
            fleet_child(ConcurrencyLimiter::redis(&url, &key, MAX, options()).unwrap()).await
        }
        "fleet-cluster" => {
            let nodes: Vec<&str> = url.split(',').collect();
            let limiter = ConcurrencyLimiter::redis_cluster(&nodes, &key, MAX, options()).unwrap();
            fleet_child(limiter).await;
        }
        "holder" => {
            let options = RedisConcurrencyOptions::default().lease(SHORT_LEASE);
            let limiter = ConcurrencyLimiter::redis(&url, &key, MAX, options).unwrap();
            let mut permits = Vec::new();
            for _ in 0..MAX / 2 {
                permits.push(limiter.acquire().await);
            }
            println!("HELD");
            // Renewing until killed.
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        other => panic!("unknown child role {other}"),
    }
}

/// `TASKS` tasks taking a slot at a time for `FLEET_RUN`, each holding it 10 to 60 ms;
/// prints each hold's interval, taken inside the permit's life.
async fn fleet_child(limiter: ConcurrencyLimiter) {
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                let mut holds = Vec::new();
                while start.elapsed() < FLEET_RUN {
                    let permit = limiter.acquire().await;
                    let from = unix_micros();
                    let hold = rand::random_range(10..60);
                    tokio::time::sleep(Duration::from_millis(hold)).await;
                    holds.push((from, unix_micros()));
                    drop(permit);
                }
                holds
            })
        })
        .collect();
    for task in tasks {
        for (from, to) in task.await.unwrap() {
            println!("HOLD {from} {to}");
        }
    }
}

/// The most intervals that overlap at any instant.
fn most_at_once(holds: &[(u64, u64)]) -> usize {
    let mut edges: Vec<(u64, i32)> = holds
        .iter()
        .flat_map(|&(from, to)| [(from, 1), (to, -1)])
        .collect();
    // At a tie an end comes first: a slot handed over at that instant is not two.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    most as usize
}

/// Redis calls of `names` since the stats were reset.
fn calls(server: &RedisServer, names: &[&str]) -> f64 {
    let stats = server.command("INFO commandstats");
    names
        .iter()
        .filter_map(|name| stats.split(&format!("cmdstat_{name}:calls=")).nth(1))
        .map(|rest| rest.split(',').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

/// Runs `PROCESSES` fleet children of `role` on `url` and checks the cap, the use of the
/// capacity, and the Redis calls per grant, counted on every one of `servers`.
fn a_fleet_keeps_the_cap(role: &str, url: &str, servers: &[RedisServer]) {
    for server in servers {
        server.command("CONFIG RESETSTAT");
    }
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| spawn_child(role, url, "fleet"))
        .collect();
    let mut holds = Vec::new();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            if let Some(rest) = line.strip_prefix("HOLD ") {
                let (from, to) = rest.split_once(' ').unwrap();
                holds.push((from.parse::<u64>().unwrap(), to.parse::<u64>().unwrap()));
            }
        }
    }
    let most = most_at_once(&holds);
    // Demand exceeds the cap from the first grant to the last request: each process alone
    // has twice as many tasks as the fleet has slots.
    let first = holds.iter().map(|h| h.0).min().unwrap();
    let last = holds.iter().map(|h| h.0).max().unwrap();
    let held: u64 = holds
        .iter()
        .map(|&(from, to)| to.min(last).saturating_sub(from.max(first)))
        .sum();
    let used = held as f64 / (MAX as f64 * (last - first) as f64);
    let grants = holds.len() as f64;
    let count = |names: &[&str]| {
        servers
            .iter()
            .map(|server| calls(server, names))
            .sum::<f64>()
    };
    let scripts = count(&["evalsha", "eval"]);
    let pops = count(&["blpop"]);
    // Every grant is released by one script call; the rest got the slots and kept them.
    let per_grant = (scripts + pops - grants) / grants;
    println!(
        "{role}: {} holds by {PROCESSES} processes x {TASKS} tasks, cap {MAX}: at most {most} \
         at once, {:.1}% of the capacity used; {scripts} script calls and {pops} BLPOPs: \
         {:.2} calls per grant besides its release ({:.2} with it)",
        holds.len(),
        100.0 * used,
        per_grant,
        (scripts + pops) / grants,
    );
    assert!(most <= MAX, "{most} held at once");
    assert!(used >= 0.9, "{:.1}% of the capacity used", 100.0 * used);
    // One call to ask and, when it had to wait, one wake-up; lease upkeep that no
    // acquisition carried (a renewal alone, a wait ended by it) adds a little.
    assert!(per_grant <= 2.05, "{per_grant} calls per grant");
}

#[test]
fn four_processes_never_hold_more_than_the_cap_and_use_it() {
    let server = RedisServer::start();
    let url = server.url();
    a_fleet_keeps_the_cap("fleet", &url, std::slice::from_ref(&server));
}

/// The same fleet on a Redis Cluster of three masters: the slots' keys share one hash tag,
/// so one master serves them, the BLPOP included.
#[test]
fn on_a_cluster_four_processes_keep_the_cap_and_use_it() {
    let cluster = RedisCluster::start(0);
    a_fleet_keeps_the_cap("fleet-cluster", &cluster.urls().join(","), &cluster.nodes);
}

/// Kills the master that serves the slots while 16 tasks take and release them: until a
/// replica is promoted the failure policy (fail closed) grants nothing, then Redis grants
/// again, and over the whole run no more than the cap are held at once, but for grants
/// the promoted replica may have lost (at most the cap's worth, as documented).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_the_limiter_serves_again_after_a_failover() {
    let mut cluster = RedisCluster::start(1);
    let options = RedisConcurrencyOptions::default()
        .lease(Duration::from_secs(2))
        .call_timeout(Duration::from_millis(200));
    let limiter =
        ConcurrencyLimiter::redis_cluster(&cluster.urls(), "failover", MAX, options).unwrap();
    let run = Duration::from_secs(7);
    let start = Instant::now();
    let holds = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..2 * MAX)
        .map(|_| {
            let (limiter, holds) = (limiter.clone(), holds.clone());
            tokio::spawn(async move {
                while start.elapsed() < run {
                    // Fail closed (the default): while no master serves the slots, this
                    // waits, asking again every probe interval.
                    let permit = limiter.acquire().await;
                    let from = unix_micros();
                    tokio::time::sleep(Duration::from_millis(rand::random_range(5..30))).await;
                    holds.lock().unwrap().push((from, unix_micros()));
                    drop(permit);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let master = cluster.master_of("aegeantic:slots:{failover}:held");
    let killed = unix_micros();
    cluster.node(master).kill();
    for task in tasks {
        task.await.unwrap();
    }
    let holds = std::mem::take(&mut *holds.lock().unwrap());
    let before = holds.iter().filter(|h| h.0 < killed).count();
    let back = holds
        .iter()
        .map(|h| h.0)
        .filter(|&from| from > killed)
        .min()
        .expect("granted again after the failover");
    let most = most_at_once(&holds);
    let promoted = cluster.master_of("aegeantic:slots:{failover}:held");
    println!(
        "failover: master {master} killed; {before} holds before, {} after; granted again \
         {:.2} s after the kill by {promoted}; at most {most} held at once (cap {MAX})",
        holds.len() - before,
        (back - killed) as f64 / 1e6,
    );
    assert_ne!(promoted, master);
    assert!(back - killed < 4_000_000, "{} us", back - killed);
    assert!(most <= 2 * MAX, "{most} held at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_are_served_in_order_of_arrival() {
    let server = RedisServer::start();
    let url = server.url();
    let options = RedisConcurrencyOptions::default;
    let ours = ConcurrencyLimiter::redis(&url, "fifo", 1, options()).unwrap();
    let theirs = ConcurrencyLimiter::redis(&url, "fifo", 1, options()).unwrap();
    let first = ours.acquire().await;
    assert!(theirs.try_acquire().await.is_none(), "held");
    assert_eq!(theirs.available(), 0);

    let order = Arc::new(Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for n in 0..6 {
        // Alternating between the two limiters, as two processes would.
        let limiter = if n % 2 == 0 {
            ours.clone()
        } else {
            theirs.clone()
        };
        let order = Arc::clone(&order);
        waiters.push(tokio::spawn(async move {
            let permit = limiter.acquire().await;
            order.lock().unwrap().push(n);
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(permit);
        }));
        // Each reaches Redis before the next.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    drop(first);
    for waiter in waiters {
        waiter.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4, 5]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(ours.try_acquire().await.is_some(), "given back");
}

/// A dropped waiter leaves the queue: the slot goes to the one behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_waiter_gives_its_place_back() {
    let server = RedisServer::start();
    let options = RedisConcurrencyOptions::default();
    let limiter = ConcurrencyLimiter::redis(&server.url(), "drop", 1, options).unwrap();
    let held = limiter.acquire().await;
    let gone = tokio::time::timeout(Duration::from_millis(100), limiter.acquire()).await;
    assert!(gone.is_err(), "no slot while one is held");
    let next = tokio::spawn({
        let limiter = limiter.clone();
        async move { limiter.acquire().await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(held);
    let permit = tokio::time::timeout(Duration::from_secs(1), next)
        .await
        .expect("the second waiter got the slot")
        .unwrap();
    drop(permit);
}

#[test]
fn a_killed_holder_s_slots_come_back_after_the_lease() {
    let server = RedisServer::start();
    let url = server.url();
    let mut child = spawn_child("holder", &url, "killed");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.any(|line| line.unwrap() == "HELD"));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let options = RedisConcurrencyOptions::default().lease(SHORT_LEASE);
        let limiter = ConcurrencyLimiter::redis(&url, "killed", MAX, options).unwrap();
        let mut ours = Vec::new();
        for _ in 0..MAX / 2 {
            ours.push(limiter.try_acquire().await.expect("the other half is free"));
        }
        assert!(
            limiter.try_acquire().await.is_none(),
            "the child holds half"
        );
        // Let the child renew at least once more, so that its leases outlive the kill.
        tokio::time::sleep(SHORT_LEASE).await;
        assert!(limiter.try_acquire().await.is_none(), "renewed");
        let waiters: Vec<_> = (0..MAX / 2)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    let permit = limiter.acquire().await;
                    (Instant::now(), permit)
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let killed = Instant::now();
        child.kill().unwrap();
        child.wait().unwrap();
        let mut back = Duration::ZERO;
        for waiter in waiters {
            let (at, permit) = waiter.await.unwrap();
            back = back.max(at - killed);
            ours.push(permit);
        }
        println!(
            "a holder of {} slots killed: all back {back:?} after the kill (lease {SHORT_LEASE:?})",
            MAX / 2
        );
        assert!(back <= SHORT_LEASE + Duration::from_millis(100), "{back:?}");
        assert_eq!(ours.len(), MAX);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_the_failure_policy_decides() {
    let mut server = RedisServer::start();
    let url = server.url();
    let policy = |policy| RedisConcurrencyOptions::default().failure_policy(policy);
    let closed = ConcurrencyLimiter::redis(&url, "down", 2, policy(FailurePolicy::FailClosed));
    let closed = closed.unwrap();
    let open = ConcurrencyLimiter::redis(&url, "down", 2, policy(FailurePolicy::FailOpen)).unwrap();
    let local_options = RedisConcurrencyOptions::default().local_max(1);
    let local = ConcurrencyLimiter::redis(&url, "down", 2, local_options).unwrap();
    let held = closed.acquire().await;
    server.kill();

    assert!(closed.try_acquire().await.is_none(), "fail closed: none");
    let waiting = tokio::spawn({
        let closed = closed.clone();
        async move {
            let permit = closed.acquire().await;
            (Instant::now(), permit)
        }
    });
    let opened: Vec<_> = futures::future::join_all((0..5).map(|_| open.acquire())).await;
    assert_eq!(opened.len(), 5, "fail open: all, at once");
    let first = local.acquire().await;
    assert!(
        local.try_acquire().await.is_none(),
        "local: one slot in-process"
    );
    drop(first);
    assert!(local.try_acquire().await.is_some());

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "fail closed: waits while Redis is down"
    );
    server.restart();
    let restarted = Instant::now();
    let (granted, _permit) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("granted once Redis is back")
        .unwrap();
    println!(
        "fail closed: the waiter got its slot {:?} after Redis restarted",
        granted - restarted
    );
    drop(held);
}

/// The stream adapter and the tower layer take their slots from the Redis backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_adapter_holds_a_shared_slot_per_attempt() {
    let server = RedisServer::start();
    let options = RedisConcurrencyOptions::default;
    let slots = ConcurrencyLimiter::redis(&server.url(), "stream", 1, options()).unwrap();
    let other = ConcurrencyLimiter::redis(&server.url(), "stream", 1, options()).unwrap();
    let attempts = || futures::stream::iter([Ok::<_, std::io::Error>(1), Ok(2)]);
    let mut stream = std::pin::pin!(
        resilient_stream(attempts, None, None, "op", "llm").with_concurrency(slots.clone())
    );
    let mut items = Vec::new();
    while let Some(item) = stream.next().await {
        if let Resilient::Item(n) = item.unwrap() {
            assert!(other.try_acquire().await.is_none(), "the attempt holds it");
            items.push(n);
        }
    }
    assert_eq!(items, [1, 2]);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(other.try_acquire().await.is_some(), "given back at the end");
}

/// The tower layer's requests hold a fleet slot until their body ends.
#[cfg(feature = "tower")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tower_layer_holds_a_shared_slot_until_the_body_ends() {
    use aegeantic::integrations::tower::ConcurrencyLimitLayer;
    use http_body_util::{BodyExt, Full};
    use tower::{service_fn, ServiceBuilder, ServiceExt};

    let server = RedisServer::start();
    let options = RedisConcurrencyOptions::default;
    let slots = ConcurrencyLimiter::redis(&server.url(), "tower", 1, options()).unwrap();
    let other = ConcurrencyLimiter::redis(&server.url(), "tower", 1, options()).unwrap();
    let upstream = service_fn(|_: http::Request<()>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(bytes::Bytes::from(
            "an answer",
        ))))
    });
    let service = ServiceBuilder::new()
        .layer(ConcurrencyLimitLayer::new(slots))
        .service(upstream);
    let response = service.oneshot(http::Request::new(())).await.unwrap();
    assert!(other.try_acquire().await.is_none(), "the body holds it");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "an answer");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        other.try_acquire().await.is_some(),
        "given back with the body"
    );
}

/// Options that cannot work are refused; durations beyond the clock work as "no limit".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_are_checked_and_durations_beyond_the_clock_never_panic() {
    use aegeantic::resilience::ConfigError;

    let url = "redis://127.0.0.1:1/";
    let make = |max, options| ConcurrencyLimiter::redis(url, "bad", max, options).unwrap_err();
    let defaults = RedisConcurrencyOptions::default;
    assert!(matches!(
        make(0, defaults()),
        ConfigError::InvalidConcurrency { value: 0, .. }
    ));
    assert_eq!(
        make(2, defaults().lease(Duration::ZERO)),
        ConfigError::ZeroTimeout { field: "lease" }
    );
    assert_eq!(
        make(2, defaults().call_timeout(Duration::ZERO)),
        ConfigError::ZeroCallTimeout
    );
    let mut unused = defaults().local_max(1);
    unused.failure_policy = FailurePolicy::FailOpen;
    assert_eq!(make(2, unused), ConfigError::LocalFallbackUnused);
    assert!(matches!(
        make(2, defaults().local_max(0)),
        ConfigError::InvalidConcurrency { value: 0, .. }
    ));
    assert_eq!(
        ConcurrencyLimiter::redis("redis://:hidden@[::1", "x", 2, defaults()).unwrap_err(),
        ConfigError::InvalidRedisUrl
    );

    let server = RedisServer::start();
    let edges = defaults()
        .lease(Duration::MAX)
        .call_timeout(Duration::MAX)
        .probe_interval(Duration::MAX);
    let limiter = ConcurrencyLimiter::redis(&server.url(), "edges", 1, edges).unwrap();
    let held = limiter.acquire().await;
    let waiter = tokio::spawn({
        let limiter = limiter.clone();
        async move { limiter.acquire().await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(held);
    let permit = tokio::time::timeout(Duration::from_secs(2), waiter)
        .await
        .expect("handed over")
        .unwrap();
    drop(permit);
}
