//! Admitted acquires per second through the Redis backend, against `redis-benchmark`
//! running the same script with EVALSHA at the same concurrency, on the same server.
//!
//! `cargo bench -p aegeantic-bench --bench redis_throughput --features redis` (needs
//! redis-server and redis-benchmark, from the Debian package redis-server).

#[allow(dead_code)]
#[path = "../tests/common/redis_server.rs"]
mod redis_server;

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aegeantic::resilience::{RateLimitConfig, RateLimiter};
use redis_server::RedisServer;

/// Three windows, all far above what one Redis can serve: every request is admitted, so
/// the figure is the cost of a decision.
const CONFIG: RateLimitConfig = RateLimitConfig {
    requests_per_second: Some(1e6),
    requests_per_minute: Some(6e7),
    requests_per_hour: Some(3.6e9),
    burst_size: 1_000_000,
    name: None,
};
const RUN: Duration = Duration::from_secs(3);
const SCRIPT: &str = include_str!("../src/resilience/limiter/redis/gcra.lua");

fn main() {
    let server = RedisServer::start();
    let sha = server.command(&format!("SCRIPT LOAD \"{}\"", escape(SCRIPT)));
    let sha = sha
        .lines()
        .nth(1)
        .expect("SCRIPT LOAD answers with the sha")
        .to_owned();
    println!("| concurrency | aegeantic acquires/s | redis-benchmark EVALSHA/s | ratio |");
    println!("|---|---|---|---|");
    for concurrency in [1usize, 8, 64] {
        let baseline = redis_benchmark(&server, &sha, concurrency);
        let ours = aegeantic(&server, concurrency);
        println!(
            "| {concurrency} | {ours:.0} | {baseline:.0} | {:.2}x |",
            ours / baseline
        );
    }
}

fn aegeantic(server: &RedisServer, concurrency: usize) -> f64 {
    // One client thread, as redis-benchmark has: the other core is the server's.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let limiter =
            RateLimiter::redis(&server.url(), &format!("ours-{concurrency}"), CONFIG).unwrap();
        limiter.acquire(1, "warm-up").await.unwrap();
        let admitted = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let (limiter, admitted) = (limiter.clone(), admitted.clone());
                tokio::spawn(async move {
                    while start.elapsed() < RUN {
                        limiter.acquire(1, "bench").await.unwrap();
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        admitted.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
    })
}

fn redis_benchmark(server: &RedisServer, sha: &str, concurrency: usize) -> f64 {
    let key = format!("aegeantic:{{theirs-{concurrency}}}");
    // The arguments our client sends: cost, max_wait, now (-1: server clock), then interval
    // and tolerance per window, in microseconds.
    let mut args: Vec<String> = vec![
        "EVALSHA".into(),
        sha.into(),
        "1".into(),
        key,
        "1".into(),
        (1u64 << 52).to_string(),
        "-1".into(),
    ];
    for _ in 0..3 {
        args.push("1".into());
        args.push("1000000".into());
    }
    let output = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &server.port.to_string()])
        .args(["-c", &concurrency.to_string(), "-n", "40000", "--csv"])
        .args(&args)
        .output()
        .expect("redis-benchmark must be installed");
    let csv = String::from_utf8_lossy(&output.stdout);
    let row = csv.lines().last().expect("redis-benchmark printed a row");
    row.split(',')
        .nth(1)
        .and_then(|field| field.trim_matches('"').parse().ok())
        .unwrap_or_else(|| panic!("unexpected redis-benchmark output: {csv}"))
}

/// The script as one inline-command argument.
fn escape(script: &str) -> String {
    script
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
