//! `RateLimitLayer` over a Redis-backed limiter: two processes, each with many clones of
//! a layered hyper client, calling one axum upstream on loopback, stay within one limit.
//! Real time and a real redis-server.
#![cfg(all(feature = "tower", feature = "redis"))]

#[allow(dead_code)]
#[path = "common/redis_fleet.rs"]
mod redis_fleet;
#[allow(dead_code)]
#[path = "common/redis_server.rs"]
mod redis_server;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegeantic::integrations::tower::RateLimitLayer;
use aegeantic::resilience::{Event, Observer, RateLimitConfig, RateLimiter};
use axum::extract::State;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt};

use redis_fleet::{child_spec, spawn_child, unix_micros};
use redis_server::RedisServer;

const RATE: f64 = 50.0;
const BURST: u32 = 10;
const RUN: Duration = Duration::from_secs(3);
const TASKS: usize = 8;

fn shared_limit() -> RateLimitConfig {
    RateLimitConfig {
        requests_per_second: Some(RATE),
        burst_size: BURST,
        ..RateLimitConfig::default()
    }
}

/// A worker process: `TASKS` tasks, each with a clone of one layered client, calling the
/// upstream for `RUN`; prints how many calls were admitted and how many fell back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_child_process_entry() {
    let Some((role, url, key)) = child_spec() else {
        return;
    };
    let upstream = role
        .strip_prefix("tower@")
        .expect("a tower worker")
        .to_owned();
    let limiter = RateLimiter::redis(&url, &key, shared_limit()).unwrap();
    let fallbacks = Arc::new(AtomicU64::new(0));
    let counter = fallbacks.clone();
    let observer: Observer = Arc::new(move |event: &Event| {
        if let Event::RateLimit(grant) = event {
            if grant.fallback.is_some() {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let service = ServiceBuilder::new()
        .layer(RateLimitLayer::new(limiter).on_event(observer))
        .service(client);
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (service, upstream) = (service.clone(), upstream.clone());
            tokio::spawn(async move {
                let mut admitted = 0u64;
                while start.elapsed() < RUN {
                    let request = Request::get(&upstream).body(Full::default()).unwrap();
                    let response = service.clone().oneshot(request).await.unwrap();
                    assert_eq!(response.status(), StatusCode::OK);
                    admitted += 1;
                }
                admitted
            })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        admitted += task.await.unwrap();
    }
    println!("ADMITTED {admitted}");
    println!("FALLBACKS {}", fallbacks.load(Ordering::Relaxed));
}

/// The upstream, on its own runtime in a thread of the parent: when each call arrived, in
/// Unix microseconds; its URL.
fn upstream() -> (Arc<Mutex<Vec<u64>>>, String) {
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let state = arrivals.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let app = Router::new()
                .route(
                    "/ok",
                    get(|State(arrivals): State<Arc<Mutex<Vec<u64>>>>| async move {
                        arrivals.lock().unwrap().push(unix_micros());
                        "ok"
                    }),
                )
                .with_state(state);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    let address = rx.recv().unwrap();
    (arrivals, format!("http://{address}/ok"))
}

fn printed(stdout: &str, label: &str) -> u64 {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(label))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("the worker printed no {label}: {stdout}"))
}

#[test]
fn two_processes_of_layered_clones_share_one_limit() {
    let server = RedisServer::start();
    let (arrivals, url) = upstream();
    let started = unix_micros();
    let children: Vec<_> = (0..2)
        .map(|_| spawn_child(&format!("tower@{url}"), &server.url(), "tower-fleet"))
        .collect();
    let mut per_process = Vec::new();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            printed(&stdout, "FALLBACKS "),
            0,
            "Redis decided every grant"
        );
        per_process.push(printed(&stdout, "ADMITTED "));
    }
    let admitted: u64 = per_process.iter().sum();
    let arrivals = arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len() as u64, admitted);
    // Every grant came after `started` and before its call arrived.
    let last = arrivals.iter().copied().max().unwrap();
    let span = (last - started) as f64 / 1e6;
    let bound = f64::from(BURST) + RATE * span;
    println!(
        "2 processes x {TASKS} clones: admitted {admitted} {per_process:?} in {span:.3} s; burst + rate·D = {BURST} + {RATE}·{span:.3} = {bound:.1}"
    );
    assert!(admitted as f64 <= bound, "{admitted} > {bound}");
    let ideal = f64::from(BURST) + RATE * RUN.as_secs_f64();
    assert!(
        admitted as f64 >= 0.8 * ideal,
        "{admitted} < 80% of {ideal}"
    );
    for &n in &per_process {
        assert!(
            n as f64 >= 0.2 * admitted as f64,
            "a process starved: {per_process:?}"
        );
    }
}
