//! The soak: K streams at once through one shared limiter (in-process, then Redis that is
//! killed and restarted), against the fault server in random mode, with the checks that
//! decide PASS or FAIL. The example's `main` and `tests/soak.rs` both run [`run`].

mod admissions;
mod bound;
mod heap;
mod memory;
mod redis;
mod stream;
mod tally;
mod timeline;

use std::error::Error;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aegeantic::llm::{llm_retry_on, OpenAiCompatible, OpenAiConfig};
use aegeantic::resilience::{
    CircuitBreaker, CircuitBreakerConfig, RateLimitConfig, RateLimiter, RedisOptions, RetryConfig,
};
use aegeantic::testing::{FaultMix, FaultServer};
use rand::rngs::Xoshiro256PlusPlus;
use rand::SeedableRng;
use tokio::task::JoinSet;
use tokio::time::Instant;

use self::admissions::Admissions;
use self::bound::BoundCheck;
pub use self::heap::Counting;
use self::memory::{glibc_free_bytes, mib};
use self::redis::RedisProcess;
use self::stream::Shared;
use self::tally::Tally;
use self::timeline::{Sample, Timeline};

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// The whole run, split evenly between the in-process and the Redis phase.
    pub duration: Duration,
    /// Streams at once.
    pub streams: usize,
    /// The shared limit: tokens per second and burst.
    pub rate: f64,
    pub burst: u32,
    /// Each stream's `max_elapsed`.
    pub deadline: Duration,
    /// How often Redis is killed, and how long it stays down.
    pub redis_every: Duration,
    pub redis_outage: Duration,
    pub seed: u64,
    /// The phases to run, in order.
    pub backends: Vec<Backend>,
    /// How far a grant's timestamp may be from the bucket's instant (timers fire late on a
    /// loaded machine): the bound is checked as `burst + rate · (D + 2 · skew)`.
    pub skew: Duration,
}

impl Options {
    pub fn new(duration: Duration, streams: usize) -> Self {
        Options {
            duration,
            streams,
            rate: 1000.0,
            burst: 100,
            deadline: Duration::from_secs(60),
            redis_every: Duration::from_secs(60),
            redis_outage: Duration::from_secs(1),
            seed: 16,
            backends: vec![Backend::InProcess, Backend::Redis],
            skew: Duration::from_millis(100),
        }
    }
}

/// What the run printed at the end, and the checks that failed.
pub struct Summary {
    pub report: String,
    pub failures: Vec<String>,
}

/// Where the shared limiter's bucket lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    InProcess,
    Redis,
}

/// Runs the soak on runtimes of its own: one worker for the fault server, two for the
/// streams.
pub fn run(options: &Options) -> Result<Summary, Box<dyn Error>> {
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("fault-server")
        .enable_all()
        .build()?;
    let mix = FaultMix::seeded(options.seed).stall(Duration::from_secs(10));
    let server = Arc::new(server_runtime.block_on(FaultServer::random(mix))?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut report = String::new();
    let mut failures = Vec::new();
    let (mut items, mut completed, mut seconds, mut peak) = (0, 0, 0.0, 0);
    for &backend in &options.backends {
        let outcome = runtime.block_on(phase(backend, options, Arc::clone(&server)))?;
        report.push_str(&outcome.report);
        failures.extend(outcome.failures);
        items += outcome.items;
        completed += outcome.completed;
        seconds += outcome.seconds;
        peak = peak.max(outcome.peak_rss);
    }
    drop(runtime);
    drop(server);
    server_runtime.shutdown_timeout(Duration::from_secs(1));
    let _ = writeln!(
        report,
        "== total: {items} items, {completed} completed streams in {seconds:.1} s: \
         {:.0} items/s, {:.1} streams/s; peak RSS {:.1} MiB",
        items as f64 / seconds,
        completed as f64 / seconds,
        mib(peak)
    );
    Ok(Summary { report, failures })
}

struct PhaseOutcome {
    report: String,
    failures: Vec<String>,
    items: u64,
    completed: u64,
    seconds: f64,
    peak_rss: u64,
}

async fn phase(
    backend: Backend,
    options: &Options,
    server: Arc<FaultServer>,
) -> Result<PhaseOutcome, Box<dyn Error>> {
    let name = match backend {
        Backend::InProcess => "in-process",
        Backend::Redis => "redis",
    };
    let config = RateLimitConfig {
        requests_per_second: Some(options.rate),
        burst_size: options.burst,
        ..RateLimitConfig::default()
    };
    let fallback_config = RateLimitConfig {
        requests_per_second: Some(options.rate / 2.0),
        burst_size: (options.burst / 2).max(1),
        ..RateLimitConfig::default()
    };
    let mut redis = None;
    let limiter = match backend {
        Backend::InProcess => RateLimiter::new(config.clone())?,
        Backend::Redis => {
            let process = RedisProcess::start()?;
            let redis_options = RedisOptions::default().local_fallback(fallback_config.clone());
            let key = format!("soak-{}", options.seed);
            let limiter =
                RateLimiter::redis_with(&process.url(), &key, config.clone(), redis_options)?;
            redis = Some(process);
            limiter
        }
    };
    let admissions = Arc::new(Admissions::new(
        BoundCheck::new(options.rate, options.burst),
        BoundCheck::new(options.rate / 2.0, fallback_config.burst_size),
    ));
    // A few grants first, so that all the limiter's connections exist before the task
    // baseline.
    for _ in 0..2 * RedisOptions::default().connections {
        let warm = limiter.acquire(1, "warm-up").await?;
        admissions.record(now_unix(), warm.fallback.is_some());
    }
    let metrics = tokio::runtime::Handle::current().metrics();
    let baseline_tasks = metrics.num_alive_tasks();
    let heap_before = heap::live().0;

    let breaker = CircuitBreaker::new(CircuitBreakerConfig {
        failure_ratio: 0.8,
        window: 200,
        minimum_calls: 100,
        open_duration: Duration::from_secs(1),
        half_open_probes: 5,
        slow_call: None,
    })?;
    let provider_config = OpenAiConfig {
        connect_timeout: Duration::from_secs(5),
        response_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(5),
        ..OpenAiConfig::new(server.base_url(), "soak")
    };
    let retry = RetryConfig::builder()
        .max_attempts(10)
        .base_delay(Duration::from_millis(50))
        .max_delay(Duration::from_secs(2))
        .max_server_delay(Duration::from_secs(2))
        .first_item_timeout(Duration::from_secs(3))
        .idle_timeout(Duration::from_secs(2))
        .max_elapsed(options.deadline)
        .retry_on(llm_retry_on())
        .build()?;
    let tally = Arc::new(Tally::default());
    let shared = Arc::new(Shared {
        provider: Arc::new(OpenAiCompatible::new(provider_config)?),
        limiter: limiter.clone(),
        breaker: breaker.clone(),
        retry,
        server: Arc::clone(&server),
        tally: Arc::clone(&tally),
        admissions: Arc::clone(&admissions),
        deadline: options.deadline,
        grace: Duration::from_secs(5),
        drop_fraction: 0.05,
    });

    let stop_monkey = Arc::new(AtomicBool::new(false));
    let monkey = redis.as_ref().map(|process| {
        process.chaos_monkey(
            options.redis_every,
            options.redis_outage,
            Arc::clone(&stop_monkey),
        )
    });

    let length = options.duration / 2;
    let start = Instant::now();
    let stop_at = start + length;
    // Warm-up: a third of the phase, at least 8 s (the allocator's and the connection
    // pool's first growth) and at most a minute; with Redis its first outage too, whose
    // burst of connections sets the pool's high-water mark.
    let mut warm_up = (length / 3).clamp(Duration::from_secs(8), Duration::from_secs(60));
    if backend == Backend::Redis {
        warm_up = warm_up.max(options.redis_every + options.redis_outage + Duration::from_secs(2));
    }
    let mut slots = JoinSet::new();
    for slot in 0..options.streams {
        let shared = Arc::clone(&shared);
        let seed = options.seed ^ (slot as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        slots.spawn(async move {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
            let mut n = 0u64;
            while Instant::now() < stop_at {
                stream::one(&shared, format!("{name}-{slot}-{n}"), &mut rng).await;
                n += 1;
            }
        });
    }
    drop(shared);

    // Memory ten times a second, so that the leak check's means smooth over the streams'
    // churn even in a short run; the status line once a second.
    let per_second = 10;
    let mut timeline = Timeline::new((length.as_secs() as usize + 200) * per_second);
    let mut tick = tokio::time::interval(Duration::from_secs(1) / per_second as u32);
    tick.tick().await;
    let (mut ticks, mut second_peak) = (0, 0);
    loop {
        tokio::select! {
            joined = slots.join_next() => match joined {
                Some(result) => result?,
                None => break,
            },
            _ = tick.tick() => {
                let sample = Sample::now(start.elapsed().as_secs_f64());
                timeline.push(sample);
                second_peak = second_peak.max(sample.heap_peak);
                ticks += 1;
                if ticks % per_second == 0 {
                    admissions.settle(false);
                    let second = Sample { heap_peak: second_peak, ..sample };
                    second_peak = 0;
                    println!("{}", status(name, &second, &tally, metrics.num_alive_tasks(), redis.as_deref()));
                }
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    // The leak check's windows: the first half of what lies between warm-up and the stop,
    // and the second half, each at most 30 s.
    let (warm, stop) = (warm_up.min(length).as_secs_f64(), length.as_secs_f64());
    let window = ((stop - warm) / 2.0).min(30.0);
    let after_warm_up = timeline.means(warm, warm + window);
    let before_stop = timeline.means(stop - window, stop);
    let (rss_growth, heap_growth, blocks_growth) = after_warm_up.growth_to(&before_stop);
    stop_monkey.store(true, Ordering::Relaxed);
    if let Some(monkey) = monkey {
        monkey
            .join()
            .map_err(|_| "the redis restart thread panicked")??;
    }
    admissions.settle(true);

    // Leaks: the tasks (streams, connections) gone, the limiter's queue and the breaker's
    // probe slots free.
    let settle_until = Instant::now() + Duration::from_secs(15);
    while metrics.num_alive_tasks() > baseline_tasks && Instant::now() < settle_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let end_tasks = metrics.num_alive_tasks();
    let heap_after = heap::live().0;
    tokio::time::sleep(Duration::from_secs_f64(
        f64::from(options.burst) / options.rate + 0.2,
    ))
    .await;
    let limiter_free = limiter.try_acquire(1).await;
    if breaker.state() != aegeantic::resilience::CircuitState::Closed {
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let probe = breaker.try_call();
    let breaker_state = breaker.state();
    let probe_free = probe.is_ok();
    if let Ok((call, _)) = probe {
        call.success();
    }
    let untaken = server.untaken_keys();
    drop(redis);

    let mut failures = Vec::new();
    let mut fail = |check: bool, why: String| {
        if !check {
            failures.push(format!("{name}: {why}"));
        }
    };
    let get = Tally::get;
    let (started, completed, failed, dropped, hung) = (
        get(&tally.started),
        get(&tally.completed),
        get(&tally.failed),
        get(&tally.dropped),
        get(&tally.hung),
    );
    let samples = tally.samples.lock().unwrap().join("; ");
    fail(
        get(&tally.mismatched) == 0,
        format!(
            "{} completed streams differ from the server's answer: {samples}",
            get(&tally.mismatched)
        ),
    );
    fail(
        started == completed + failed + dropped + hung,
        format!("{started} started but {completed} completed, {failed} failed, {dropped} dropped, {hung} hung"),
    );
    fail(
        untaken == 0,
        format!("{untaken} keys served but never accounted for"),
    );
    let skew = options.skew.as_secs_f64();
    let (bound_lines, bound_ok) = admissions.with_checks(|checks| {
        let lines = format!(
            "shared bucket: {} grants, worst window {:+.1} tokens against burst + rate·D \
             (allowed {:.1} for {:.0} ms timestamp skew, {} late); fallback bucket: {} grants, \
             worst {:+.1} (allowed {:.1})",
            checks.shared.admissions(),
            checks.shared.worst_excess,
            options.rate * 2.0 * skew,
            skew * 1e3,
            checks.shared.late + checks.fallback.late,
            checks.fallback.admissions(),
            checks.fallback.worst_excess.max(0.0),
            options.rate / 2.0 * 2.0 * skew,
        );
        let ok = checks.shared.worst_excess <= options.rate * 2.0 * skew + 1e-6
            && checks.fallback.worst_excess <= options.rate / 2.0 * 2.0 * skew + 1e-6;
        (lines, ok)
    });
    fail(
        bound_ok,
        format!("the limiter's bound was exceeded: {bound_lines}"),
    );
    fail(
        after_warm_up.samples > 0 && before_stop.samples > 0 && after_warm_up.heap > 0.0,
        format!(
            "the live heap was not measured ({} and {} samples; is soak::Counting the global \
             allocator?)",
            after_warm_up.samples, before_stop.samples
        ),
    );
    fail(
        heap_growth < 0.05 && blocks_growth < 0.05,
        format!(
            "the live heap grew {:.1} % after warm-up ({:.2} -> {:.2} MiB), its blocks {:.1} %",
            heap_growth * 100.0,
            mib(after_warm_up.heap as u64),
            mib(before_stop.heap as u64),
            blocks_growth * 100.0,
        ),
    );
    fail(
        end_tasks <= baseline_tasks,
        format!("{end_tasks} tasks alive at the end, {baseline_tasks} before the streams"),
    );
    fail(
        matches!(limiter_free, Ok(true)),
        format!("the limiter still has waiters or is unreachable: {limiter_free:?}"),
    );
    fail(
        probe_free,
        format!("the breaker's probe slots are taken (state {breaker_state:?})"),
    );
    fail(
        hung == 0 && get(&tally.overdue) == 0,
        format!(
            "{hung} streams hung, {} ended past their deadline: {samples}",
            get(&tally.overdue)
        ),
    );

    let items = get(&tally.items);
    let mut report = String::new();
    let _ = writeln!(
        report,
        "== {name} phase: {seconds:.1} s, {} streams at once",
        options.streams
    );
    let _ = writeln!(
        report,
        "streams {started}: completed {completed}, typed errors {failed}, dropped by the consumer {dropped}, hung {hung}"
    );
    let _ = writeln!(
        report,
        "items {items} ({:.0}/s), streams {:.1}/s",
        items as f64 / seconds,
        completed as f64 / seconds
    );
    let _ = writeln!(report, "retries {}", tally.retries_line());
    let errors: Vec<String> = tally
        .errors
        .lock()
        .unwrap()
        .iter()
        .map(|(k, n)| format!("{n}× {k}"))
        .collect();
    let _ = writeln!(
        report,
        "errors: {}",
        if errors.is_empty() {
            "none".into()
        } else {
            errors.join("; ")
        }
    );
    let waits = get(&tally.waits);
    let _ = writeln!(
        report,
        "waits {waits} (mean {:.0} ms), fallbacks {}, circuit events {}, slowest stream {:.1} s (deadline {:?})",
        get(&tally.wait_micros) as f64 / 1e3 / waits.max(1) as f64,
        get(&tally.fallbacks),
        get(&tally.circuit_events),
        get(&tally.slowest_micros) as f64 / 1e6,
        options.deadline,
    );
    let _ = writeln!(report, "limiter: {bound_lines}");
    let _ = writeln!(
        report,
        "memory, means of {} and {} samples over {:.0} s after warm-up ({warm:.0} s) and before the \
         stop ({stop:.0} s): \
         live heap {:.2} -> {:.2} MiB ({:+.1} %), blocks {:.0} -> {:.0} ({:+.1} %), \
         RSS {:.1} -> {:.1} MiB ({:+.1} %); peak RSS {:.1} MiB; live heap {:.2} MiB before the \
         streams, {:.2} MiB once they ended; tasks {end_tasks} at the end, {baseline_tasks} before",
        after_warm_up.samples,
        before_stop.samples,
        window,
        mib(after_warm_up.heap as u64),
        mib(before_stop.heap as u64),
        heap_growth * 100.0,
        after_warm_up.blocks,
        before_stop.blocks,
        blocks_growth * 100.0,
        mib(after_warm_up.rss as u64),
        mib(before_stop.rss as u64),
        rss_growth * 100.0,
        mib(timeline.peak_rss()),
        mib(heap_before),
        mib(heap_after),
    );
    let steps: Vec<String> = timeline
        .steps(30.0)
        .iter()
        .map(|s| {
            format!(
                "{:.0} s {:.1}/{:.1}/{:.1}",
                s.at,
                mib(s.rss),
                mib(s.heap),
                mib(s.heap_peak)
            )
        })
        .collect();
    let _ = writeln!(
        report,
        "memory every 30 s, RSS/live heap/peak heap in MiB: {}",
        steps.join(", ")
    );
    Ok(PhaseOutcome {
        report,
        failures,
        items,
        completed,
        seconds,
        peak_rss: timeline.peak_rss(),
    })
}

fn status(
    name: &str,
    memory: &Sample,
    tally: &Tally,
    tasks: usize,
    redis: Option<&RedisProcess>,
) -> String {
    let get = Tally::get;
    let redis = redis.map_or(String::new(), |process| {
        let up = if process.up.load(Ordering::Relaxed) {
            "up"
        } else {
            "DOWN"
        };
        format!(
            " | redis {up}, {} restarts",
            process.restarts.load(Ordering::Relaxed)
        )
    });
    let glibc = glibc_free_bytes().map_or(String::new(), |free| {
        format!(", glibc keeps {:.1} free", mib(free))
    });
    format!(
        "[{:>5.0}s {name}] done {} (ok {}, err {}, dropped {}) | items {} | retries {} | waits {} | fallbacks {} | rss {:.1} MiB | heap {:.1} MiB (peak {:.1}) in {} blocks{glibc} | tasks {tasks}{redis}",
        memory.at,
        get(&tally.completed) + get(&tally.failed) + get(&tally.dropped),
        get(&tally.completed),
        get(&tally.failed),
        get(&tally.dropped),
        get(&tally.items),
        tally.retries_line(),
        get(&tally.waits),
        get(&tally.fallbacks),
        mib(memory.rss),
        mib(memory.heap),
        mib(memory.heap_peak),
        memory.blocks,
    )
}

fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}
