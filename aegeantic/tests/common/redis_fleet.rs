//! Worker processes for the multi-process Redis tests: a test binary runs itself again
//! with `CHILD_ENV` set, and its `redis_child_process_entry` test plays the role named
//! there.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aegeantic::resilience::{Fallback, RateLimitConfig, RateLimiter};
use tokio::time::Instant;

/// A one-window limit.
pub fn config(per_second: f64, burst: u32) -> RateLimitConfig {
    RateLimitConfig {
        requests_per_second: Some(per_second),
        burst_size: burst,
        ..RateLimitConfig::default()
    }
}

/// Wall-clock microseconds, comparable across processes.
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// The limit a fleet shares: 100 per second (and 6000 per minute), bursts of 20.
pub const SHARED: RateLimitConfig = RateLimitConfig {
    requests_per_second: Some(100.0),
    requests_per_minute: Some(6000.0),
    requests_per_hour: None,
    burst_size: 20,
    name: None,
};
/// Processes in a fleet, tasks in each, and how long a shared-limit fleet runs.
pub const PROCESSES: usize = 4;
pub const TASKS: usize = 16;
pub const RUN: Duration = Duration::from_secs(10);
/// Set in a worker process's environment: `role|url|key`.
pub const CHILD_ENV: &str = "AEGEANTIC_REDIS_CHILD";

/// Runs this test binary again as a worker process of `role`.
pub fn spawn_child(role: &str, url: &str, key: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "redis_child_process_entry", "--nocapture"])
        .env(CHILD_ENV, format!("{role}|{url}|{key}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// `TASKS` tasks acquiring one token at a time for `run`, each grant admitted as `expected`
/// says; prints the grants' times.
pub async fn fleet_child(limiter: RateLimiter, run: Duration, expected: Option<Fallback>) {
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                let mut grants = Vec::new();
                while start.elapsed() < run {
                    let acquired = limiter.acquire(1, "child").await.unwrap();
                    assert_eq!(acquired.fallback, expected);
                    grants.push(unix_micros());
                }
                grants
            })
        })
        .collect();
    for task in tasks {
        for grant in task.await.unwrap() {
            println!("GRANT {grant}");
        }
    }
}

/// Waits for the children of a fleet: how many grants each printed, and the latest grant
/// (or `started`, if none).
pub fn grants_of(children: Vec<Child>, started: u64) -> (Vec<usize>, u64) {
    let mut per_process = Vec::new();
    let mut last = started;
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        let grants: Vec<u64> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.strip_prefix("GRANT "))
            .map(|t| t.parse().unwrap())
            .collect();
        last = last.max(grants.iter().copied().max().unwrap_or(started));
        per_process.push(grants.len());
    }
    (per_process, last)
}

/// The role, URL and key a worker process was started with; `None` in the parent.
pub fn child_spec() -> Option<(String, String, String)> {
    let spec = std::env::var(CHILD_ENV).ok()?;
    let mut parts = spec.splitn(3, '|').map(str::to_owned);
    Some((parts.next()?, parts.next()?, parts.next()?))
}
