//! The Redis-backed limiter on a real Redis Cluster on loopback (real time): three masters
//! shared by four processes, a script flush on the key's master, and a failover after the
//! key's master is killed with SIGKILL.
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

use std::time::Duration;

use aegeantic::resilience::{RateLimitError, RateLimiter};
use redis_cluster::RedisCluster;
use redis_fleet::{
    child_spec, config, fleet_child, grants_of, spawn_child, unix_micros, PROCESSES, RUN, SHARED,
};
use tokio::time::Instant;

/// Not a test of its own: the entry point of the worker processes that the multi-process
/// tests start (see `common/redis_fleet.rs`). The URL is the nodes' URLs, comma-separated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_child_process_entry() {
    let Some((role, urls, key)) = child_spec() else {
        return;
    };
    assert_eq!(role, "fleet", "unknown child role {role}");
    let nodes: Vec<&str> = urls.split(',').collect();
    let limiter = RateLimiter::redis_cluster(&nodes, &key, SHARED).unwrap();
    fleet_child(limiter, RUN, None).await;
}

/// EVALSHA and EVAL calls a node has served since its stats were reset.
fn script_calls(stats: &str) -> f64 {
    ["cmdstat_evalsha:calls=", "cmdstat_eval:calls="]
        .iter()
        .filter_map(|prefix| stats.split(prefix).nth(1))
        .map(|rest| rest.split(',').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[test]
fn four_processes_share_one_limit_on_a_cluster() {
    let cluster = RedisCluster::start(0);
    for node in &cluster.nodes {
        node.command("CONFIG RESETSTAT");
    }
    let urls = cluster.urls().join(",");
    let started = unix_micros();
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| spawn_child("fleet", &urls, "fleet"))
        .collect();
    let (per_process, last) = grants_of(children, started);
    let total: usize = per_process.iter().sum();
    let span = (last - started) as f64 / 1e6;
    let allowed = 20.0 + 100.0 * span;
    let ideal = 20.0 + 100.0 * RUN.as_secs_f64();
    let calls: f64 = cluster
        .nodes
        .iter()
        .map(|node| script_calls(&node.command("INFO commandstats")))
        .sum();
    println!(
        "cluster: {total} grants in {span:.2}s (allowed {allowed:.0}, ideal {ideal:.0}); per process {per_process:?}; {:.3} Redis calls per grant",
        calls / total as f64
    );
    assert!(total as f64 <= allowed, "{total} > {allowed}");
    assert!(total as f64 >= 0.95 * ideal, "{total} < 95% of {ideal}");
    for &n in &per_process {
        assert!(
            n as f64 >= 0.15 * total as f64,
            "a process starved: {per_process:?}"
        );
    }
    assert!(
        calls / (total as f64) <= 1.2,
        "{calls} calls for {total} grants"
    );
}

/// The master that serves the key forgets the scripts: the next call sends the script in
/// full to it and goes on.
#[tokio::test]
async fn a_node_without_the_script_gets_it_in_full() {
    let cluster = RedisCluster::start(0);
    let limiter = RateLimiter::redis_cluster(&cluster.urls(), "flushed", config(0.01, 10)).unwrap();
    assert!(limiter.try_acquire(1).await.unwrap());
    let master = cluster.master_of("aegeantic:{flushed}");
    let node = cluster.nodes.iter().find(|n| n.port == master).unwrap();
    node.command("SCRIPT FLUSH");
    assert!(limiter.try_acquire(9).await.unwrap(), "ran after NOSCRIPT");
    assert!(!limiter.try_acquire(1).await.unwrap(), "on the same bucket");
    assert!(node.command("EXISTS aegeantic:{flushed}").contains(":1"));

    let none: [&str; 0] = [];
    assert!(RateLimiter::redis_cluster(&none, "x", config(1.0, 1)).is_err());
}

/// Kills the master that serves the key while 16 tasks acquire: until the replica is
/// promoted the failure policy (fail closed) refuses, then Redis serves again, and over the
/// whole run the grants keep within the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limiter_serves_again_after_a_failover() {
    let mut cluster = RedisCluster::start(1);
    let limiter = RateLimiter::redis_cluster(&cluster.urls(), "failover", SHARED).unwrap();
    let run = Duration::from_secs(7);
    let kill_after = Duration::from_secs(2);
    let start = Instant::now();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                let (mut grants, mut refusals) = (Vec::new(), Vec::new());
                while start.elapsed() < run {
                    match limiter.acquire(1, "failover").await {
                        Ok(acquired) => {
                            assert_eq!(acquired.fallback, None);
                            grants.push(start.elapsed());
                        }
                        Err(RateLimitError::Backend { .. }) => {
                            refusals.push(start.elapsed());
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        Err(other) => panic!("{other:?}"),
                    }
                }
                (grants, refusals)
            })
        })
        .collect();
    tokio::time::sleep(kill_after).await;
    let master = cluster.master_of("aegeantic:{failover}");
    let killed = start.elapsed();
    cluster.node(master).kill();

    let (mut grants, mut refusals) = (Vec::new(), Vec::new());
    for task in tasks {
        let (g, r) = task.await.unwrap();
        grants.extend(g);
        refusals.extend(r);
    }
    grants.sort();
    refusals.sort();
    let first_refusal = refusals.first().copied().expect("refused while no master");
    let last_refusal = refusals.last().copied().unwrap();
    let back = grants
        .iter()
        .copied()
        .find(|&at| at > killed && at > last_refusal)
        .expect("served again after the failover");
    let promoted = cluster.master_of("aegeantic:{failover}");
    let span = grants.last().unwrap().as_secs_f64();
    let allowed = 20.0 + 100.0 * span;
    println!(
        "failover: master {master} killed at {killed:?}; {} refusals from {first_refusal:?} to \
         {last_refusal:?}; served again {:?} after the kill by {promoted}; {} grants in \
         {span:.2}s (allowed {allowed:.0})",
        refusals.len(),
        back - killed,
        grants.len(),
    );
    assert_ne!(promoted, master);
    assert!(first_refusal >= killed, "refused before the kill");
    assert!(
        back - killed < Duration::from_secs(4),
        "{:?}",
        back - killed
    );
    assert!(
        grants.len() as f64 <= allowed,
        "{} > {allowed}",
        grants.len()
    );
}
