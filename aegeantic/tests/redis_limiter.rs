//! The Redis-backed limiter against a real redis-server on loopback (real time): one bucket
//! shared by clones, limiters and processes. Outages are in `redis_outage.rs`.
#![cfg(feature = "redis")]

// Shared by the Redis test binaries, each using a part.
#[allow(dead_code)]
#[path = "common/redis_fleet.rs"]
mod redis_fleet;
#[allow(dead_code)]
#[path = "common/redis_server.rs"]
mod redis_server;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use aegeantic::resilience::{
    rate_limited_stream, resilient_stream, AttemptError, RateLimitConfig, RateLimitError,
    RateLimiter, RedisOptions, ResilienceError, Resilient, RetryConfig,
};
use futures::StreamExt;
use redis_fleet::{
    child_spec, config, fleet_child, grants_of, spawn_child, unix_micros, PROCESSES, RUN, SHARED,
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
    match role.as_str() {
        "fleet" => {
            let limiter = RateLimiter::redis(&url, &key, SHARED).unwrap();
            fleet_child(limiter, RUN, None).await;
        }
        "waiter" => waiter_child(&url, &key).await,
        other => panic!("unknown child role {other}"),
    }
}

#[test]
fn four_processes_share_one_limit() {
    let server = RedisServer::start();
    server.command("CONFIG RESETSTAT");
    let url = server.url();
    let started = unix_micros();
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| spawn_child("fleet", &url, "fleet"))
        .collect();
    let (per_process, last) = grants_of(children, started);
    let total: usize = per_process.iter().sum();
    // Every grant lies in [started, last]: the bucket allows at most burst + rate · span.
    let span = (last - started) as f64 / 1e6;
    let allowed = 20.0 + 100.0 * span;
    let ideal = 20.0 + 100.0 * RUN.as_secs_f64();
    let stats = server.command("INFO commandstats");
    let calls: f64 = ["cmdstat_evalsha:calls=", "cmdstat_eval:calls="]
        .iter()
        .filter_map(|prefix| stats.split(prefix).nth(1))
        .map(|rest| rest.split(',').next().unwrap().parse::<f64>().unwrap())
        .sum();
    println!(
        "{total} grants in {span:.2}s (allowed {allowed:.0}, ideal {ideal:.0}); per process {per_process:?}; {:.3} Redis calls per grant",
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

/// 10 tokens at 10 per second: an empty bucket owes a request of 10 a whole second.
const WAITED: RateLimitConfig = RateLimitConfig {
    requests_per_second: Some(10.0),
    requests_per_minute: None,
    requests_per_hour: None,
    burst_size: 10,
    name: None,
};

/// Empties the bucket, then waits for 10 tokens, reading its own estimate meanwhile.
async fn waiter_child(url: &str, key: &str) {
    let limiter = RateLimiter::redis(url, key, WAITED).unwrap();
    assert!(limiter.try_acquire(10).await.unwrap());
    println!("EMPTIED");
    let (most, acquired) = while_pending(&limiter, limiter.acquire(10, "waiter")).await;
    let after = limiter.tokens_available();
    let waited = acquired.unwrap().waited.as_secs_f64();
    println!("WAITED {waited} DURING {most} AFTER {after}");
}

/// Runs `future`, reading `limiter.tokens_available()` every 5 ms until it completes: the
/// largest reading taken while it was still pending, and its output.
async fn while_pending<F: std::future::Future>(
    limiter: &RateLimiter,
    future: F,
) -> (f64, F::Output) {
    let mut future = std::pin::pin!(future);
    let mut most = 0.0f64;
    loop {
        let reading = limiter.tokens_available();
        tokio::select! {
            biased;
            output = &mut future => return (most, output),
            () = tokio::time::sleep(Duration::from_millis(5)) => most = most.max(reading),
        }
    }
}

/// Reads the child's stdout up to the line starting with `prefix`.
fn read_until(lines: &mut impl Iterator<Item = std::io::Result<String>>, prefix: &str) -> String {
    lines
        .map(Result::unwrap)
        .find(|line| line.starts_with(prefix))
        .unwrap_or_else(|| panic!("the child never said {prefix}"))
}

/// One process empties the bucket and waits a second for 10 tokens; another shares the
/// key. Neither estimate may show tokens that `try_acquire` would not get.
#[test]
fn tokens_available_counts_a_booked_wait_across_processes() {
    let server = RedisServer::start();
    let url = server.url();
    let mut child = spawn_child("waiter", &url, "booked");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    read_until(&mut lines, "EMPTIED");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ours = RateLimiter::redis(&url, "booked", WAITED).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!ours.try_acquire(1).await.unwrap(), "the child booked them");
        // The refused request learnt when a token comes: not before the child's grant.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let estimate = ours.tokens_available();
        assert!(estimate < 1.0, "reads {estimate} while a waiter is owed");
        assert!(!ours.try_acquire(1).await.unwrap());
    });

    let report = read_until(&mut lines, "WAITED");
    assert!(child.wait().unwrap().success());
    let numbers: Vec<f64> = report
        .split_whitespace()
        .skip(1)
        .step_by(2)
        .map(|n| n.parse().unwrap())
        .collect();
    let [waited, during, after] = numbers[..] else {
        panic!("{report}")
    };
    println!("{report}");
    assert!(waited > 0.8, "{report}");
    assert!(
        during < 1.0,
        "the waiter read {during} tokens while it waited"
    );
    assert!(
        after < 1.0,
        "the waiter read {after} tokens right after its grant"
    );
}

/// 64 requests queue on an empty bucket: while any of them waits, the estimate is 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_available_is_zero_while_anyone_waits() {
    let server = RedisServer::start();
    let limiter = RateLimiter::redis(&server.url(), "queued", config(40.0, 10)).unwrap();
    assert!(limiter.try_acquire(10).await.unwrap());
    let started = Instant::now();
    let waiters: Vec<_> = (0..64)
        .map(|_| {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                limiter.acquire(1, "queued").await.unwrap();
                Instant::now()
            })
        })
        .collect();
    let all = futures::future::join_all(waiters);
    let (samples, finished) = {
        let mut all = std::pin::pin!(all);
        let mut samples = Vec::new();
        loop {
            let reading = (Instant::now(), limiter.tokens_available());
            tokio::select! {
                biased;
                finished = &mut all => break (samples, finished),
                () = tokio::time::sleep(Duration::from_millis(5)) => samples.push(reading),
            }
        }
    };
    let last = finished.into_iter().map(Result::unwrap).max().unwrap();
    // 64 tokens at 40 per second: 1.6 s. Readings well before the last grant were taken
    // while it was still owed its token, however late its timer fired.
    assert!(last - started > Duration::from_millis(1400));
    let owed: Vec<f64> = samples
        .iter()
        .filter(|(at, _)| *at + Duration::from_millis(100) < last)
        .map(|&(_, tokens)| tokens)
        .collect();
    let most = owed.iter().copied().fold(0.0, f64::max);
    println!(
        "{} readings while waiters queued, the largest {most}",
        owed.len()
    );
    assert!(owed.len() > 100);
    assert!(most < 1.0, "read {most} tokens while waiters queued");
}

#[tokio::test]
async fn limits_like_the_in_memory_bucket_and_streams_unchanged() {
    let server = RedisServer::start();
    let limiter = RateLimiter::redis(&server.url(), "basic", config(10.0, 3)).unwrap();
    assert!(limiter.try_acquire(2).await.unwrap());
    assert!(limiter.try_acquire(1).await.unwrap());
    assert!(!limiter.try_acquire(1).await.unwrap());
    assert_eq!(
        limiter.try_acquire(4).await,
        Err(RateLimitError::InsufficientCapacity {
            requested: 4,
            burst: 3
        })
    );
    // The next token is ~100 ms away: acquire sleeps for it, once.
    let got = limiter.acquire(1, "op").await.unwrap();
    assert!(got.waited >= Duration::from_millis(50), "{got:?}");
    assert!(got.waited < Duration::from_millis(1000), "{got:?}");
    assert_eq!(got.fallback, None);

    let items: Vec<_> = rate_limited_stream(
        || futures::stream::iter([Ok::<_, std::io::Error>(1), Ok(2)]),
        limiter.clone(),
        "stream",
    )
    .map(Result::unwrap)
    .collect()
    .await;
    assert!(matches!(items[0], Resilient::RateLimit(_)));
    assert_eq!(items.len(), 3);
}

#[tokio::test]
async fn a_wait_past_max_wait_fails_at_once_and_takes_nothing() {
    let server = RedisServer::start();
    let options = RedisOptions::default().max_wait(Duration::from_millis(150));
    let limiter =
        RateLimiter::redis_with(&server.url(), "bounded", config(2.0, 1), options).unwrap();
    limiter.acquire(1, "first").await.unwrap();
    let start = Instant::now();
    // The next token is 500 ms away.
    let error = limiter.acquire(1, "second").await.unwrap_err();
    assert!(
        matches!(error, RateLimitError::WaitTooLong { wait, .. } if wait > Duration::from_millis(300)),
        "{error:?}"
    );
    assert!(
        start.elapsed() < Duration::from_millis(300),
        "refused without waiting"
    );
    tokio::time::sleep(Duration::from_millis(550)).await;
    assert!(
        limiter.try_acquire(1).await.unwrap(),
        "the refused request booked nothing"
    );
}

/// Options at the edges of what a `Duration` holds work as "no limit", against a live
/// server and a dead one, through a stream with a deadline just as far away.
#[tokio::test]
async fn durations_beyond_the_clock_in_the_options_never_panic() {
    use aegeantic::resilience::FailurePolicy;

    let server = RedisServer::start();
    let refused = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!(
            "redis://127.0.0.1:{}/",
            listener.local_addr().unwrap().port()
        )
    };
    let options = RedisOptions::default()
        .call_timeout(Duration::MAX)
        .max_wait(Duration::MAX)
        .probe_interval(Duration::MAX)
        .failure_policy(FailurePolicy::FailOpen);
    for url in [server.url(), refused] {
        let limiter =
            RateLimiter::redis_with(&url, "edges", config(1000.0, 2), options.clone()).unwrap();
        for _ in 0..3 {
            let items: Vec<_> = bounded_stream(&limiter, Duration::MAX).collect().await;
            assert!(
                matches!(
                    items[..],
                    [Ok(Resilient::RateLimit(_)), Ok(Resilient::Item(1))]
                ),
                "{url}: {items:?}"
            );
        }
        assert!(limiter.tokens_available().is_finite());
    }
}

/// A stream that takes a token, then yields one item, bounded by `max_elapsed`.
fn bounded_stream(
    limiter: &RateLimiter,
    max_elapsed: Duration,
) -> impl futures::Stream<Item = Result<Resilient<u8>, ResilienceError<std::io::Error>>> {
    let retry = RetryConfig::builder()
        .max_elapsed(max_elapsed)
        .build()
        .unwrap();
    resilient_stream(
        || futures::stream::iter([Ok(1)]),
        Some(retry),
        Some(limiter.clone()),
        "bounded",
        "llm",
    )
}

/// `max_elapsed` bounds the wait for tokens too: a token 10 s away with 2 s left ends the
/// operation at once, and Redis books nothing for it.
#[tokio::test]
async fn a_token_past_max_elapsed_fails_at_once_and_books_nothing() {
    let server = RedisServer::start();
    let limiter = RateLimiter::redis(&server.url(), "deadline", config(0.1, 1)).unwrap();
    assert!(limiter.try_acquire(1).await.unwrap());
    let booked = server.command("HGET aegeantic:{deadline} 1");

    let start = Instant::now();
    let mut stream = std::pin::pin!(bounded_stream(&limiter, Duration::from_secs(2)));
    let first = stream.next().await.unwrap();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(1), "waited {took:?}");
    match first {
        Err(ResilienceError::DeadlineExceeded {
            source: AttemptError::RateLimit(RateLimitError::PastDeadline { wait, remaining }),
            attempts: 0,
            ..
        }) => {
            assert!(wait > Duration::from_secs(9), "{wait:?}");
            assert!(remaining <= Duration::from_secs(2), "{remaining:?}");
            assert!(remaining > Duration::from_secs(1), "{remaining:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(stream.next().await.is_none());
    assert_eq!(
        server.command("HGET aegeantic:{deadline} 1"),
        booked,
        "the refused request booked nothing"
    );
}

/// A Redis call that has not answered by the deadline is abandoned there, however long the
/// call timeout.
#[tokio::test]
async fn a_redis_call_is_cut_at_the_deadline() {
    let server = RedisServer::start();
    let options = RedisOptions::default().call_timeout(Duration::from_secs(3));
    let limiter =
        RateLimiter::redis_with(&server.url(), "paused", config(10.0, 5), options).unwrap();
    assert!(limiter.try_acquire(1).await.unwrap());
    // The server holds every client's commands for 2 s.
    server.command("CLIENT PAUSE 2000");

    let start = Instant::now();
    let mut stream = std::pin::pin!(bounded_stream(&limiter, Duration::from_millis(300)));
    let first = stream.next().await.unwrap();
    let took = start.elapsed();
    assert!(
        matches!(
            first,
            Err(ResilienceError::DeadlineExceeded {
                source: AttemptError::RateLimit(RateLimitError::PastDeadline { .. }),
                ..
            })
        ),
        "{first:?}"
    );
    assert!(took >= Duration::from_millis(290), "{took:?}");
    assert!(took < Duration::from_millis(1000), "{took:?}");
}

#[tokio::test]
async fn idle_keys_expire() {
    let server = RedisServer::start();
    let limiter = RateLimiter::redis(&server.url(), "idle", config(10.0, 1)).unwrap();
    limiter.acquire(1, "op").await.unwrap();
    assert!(server.command("EXISTS aegeantic:{idle}").contains(":1"));
    let ttl: i64 = server
        .command("PTTL aegeantic:{idle}")
        .trim()
        .trim_start_matches(':')
        .parse()
        .unwrap();
    assert!((0..=1100).contains(&ttl), "ttl {ttl} ms");
    tokio::time::sleep(Duration::from_millis(ttl as u64 + 200)).await;
    assert!(server.command("EXISTS aegeantic:{idle}").contains(":0"));
}

#[tokio::test]
async fn survives_a_script_flush() {
    let server = RedisServer::start();
    let limiter = RateLimiter::redis(&server.url(), "flush", config(100.0, 10)).unwrap();
    assert!(limiter.try_acquire(1).await.unwrap());
    server.command("SCRIPT FLUSH");
    assert!(
        limiter.try_acquire(1).await.unwrap(),
        "reloaded on NOSCRIPT"
    );
}

#[tokio::test]
async fn the_password_never_shows() {
    let server = RedisServer::start_with_password("right-secret-41");
    let wrong = format!("redis://:wrong-secret-42@127.0.0.1:{}/", server.port);
    let limiter = RateLimiter::redis(&wrong, "auth", config(5.0, 2)).unwrap();
    let error = limiter.acquire(1, "op").await.unwrap_err();
    let shown = format!("{error} {error:?} {limiter:?}");
    assert!(matches!(error, RateLimitError::Backend { .. }));
    assert!(!shown.contains("wrong-secret-42"), "{shown}");

    let right = RateLimiter::redis(&server.url(), "auth", config(5.0, 2)).unwrap();
    assert!(right.try_acquire(1).await.unwrap());
    assert!(!format!("{right:?}").contains("right-secret-41"));

    let unparsable =
        RateLimiter::redis("redis://:hidden-43@[::1", "x", config(5.0, 2)).unwrap_err();
    assert!(!format!("{unparsable} {unparsable:?}").contains("hidden-43"));
}

#[tokio::test]
async fn drain_empties_the_shared_bucket_for_every_process() {
    let server = RedisServer::start();
    let ours = RateLimiter::redis(&server.url(), "drained", config(10.0, 5)).unwrap();
    let theirs = RateLimiter::redis(&server.url(), "drained", config(10.0, 5)).unwrap();
    assert!(theirs.try_acquire(1).await.unwrap());
    ours.drain().await.unwrap();
    assert!(
        !theirs.try_acquire(1).await.unwrap(),
        "the other process sees it empty"
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(theirs.try_acquire(1).await.unwrap(), "and refilling");
}

/// A slow rate (one token in 1000 s) so that refill during the test cannot blur the counts.
#[tokio::test]
async fn reservations_settle_and_caps_apply_in_the_shared_bucket() {
    let server = RedisServer::start();
    let slow = config(0.001, 100);
    let ours = RateLimiter::redis(&server.url(), "tpm", slow.clone()).unwrap();
    let theirs = RateLimiter::redis(&server.url(), "tpm", slow).unwrap();

    let reservation = ours.reserve(80, "llm").await.unwrap();
    assert!(!theirs.try_acquire(21).await.unwrap(), "80 of 100 reserved");
    reservation.settle(30).await.unwrap();
    assert!(theirs.try_acquire(70).await.unwrap(), "50 came back");
    assert!(!theirs.try_acquire(1).await.unwrap());

    let fresh = RateLimiter::redis(&server.url(), "capped", config(0.001, 100)).unwrap();
    fresh.cap_available(10).await.unwrap();
    assert!(!fresh.try_acquire(11).await.unwrap(), "capped at 10");
    assert!(fresh.try_acquire(10).await.unwrap());

    // Once the reservation's booked half second has passed, its token is back by refill
    // and taken by another: the refund must not hand it out again.
    let late = RateLimiter::redis(&server.url(), "late", config(2.0, 1)).unwrap();
    let reservation = late.reserve(1, "llm").await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(late.try_acquire(1).await.unwrap());
    reservation.settle(0).await.unwrap();
    assert!(
        !late.try_acquire(1).await.unwrap(),
        "a token given out twice"
    );

    let debt = RateLimiter::redis(&server.url(), "debt", config(10.0, 10)).unwrap();
    debt.reserve(10, "llm")
        .await
        .unwrap()
        .settle(15)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    debt.acquire(1, "after").await.unwrap();
    let waited = started.elapsed();
    // 5 owed plus 1: 0.6 s at 10 per second.
    assert!(waited >= Duration::from_millis(550), "{waited:?}");
}
