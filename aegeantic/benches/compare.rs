//! Aegeantic against governor, leaky-bucket and backon, side by side in one run.
//!
//! `cargo bench --bench compare` runs the criterion benchmarks, then two real-time runs
//! (10,000 waiters on a 1,000/s limiter; release accuracy of a 100/s limiter), then prints
//! a table of ratios, ours over theirs, each measured in this same run. The machine may be
//! shared: absolute numbers move with its load, ratios much less.
//!
//! A filter (`cargo bench --bench compare -- try_acquire`) runs the matching criterion
//! benchmarks; the real-time runs take part when the filter names them (`waiting`,
//! `accuracy`) or when there is no filter. Under `cargo test --benches` every part runs
//! briefly, as a smoke test.
//!
//! The cost of aegeantic's metrics takes two builds, since a feature is on or off for a
//! whole binary: `AEGEANTIC_BENCH_SAVE=FILE` writes this run's results to `FILE`, and a
//! build with this package's `metrics` feature (which installs the `metrics` facade's
//! no-op recorder) run with `AEGEANTIC_BENCH_BASELINE=FILE` adds rows comparing itself
//! with that run. `./bench.sh` does both; BENCHMARKS.md ("Metrics") says how the rows are
//! made.

// A bench target's root resolves modules beside itself; its parts live in `compare/`.
#[path = "compare/accuracy.rs"]
mod accuracy;
#[path = "compare/allocs.rs"]
mod allocs;
#[path = "compare/hot.rs"]
mod hot;
#[path = "compare/record.rs"]
mod record;
#[path = "compare/streams.rs"]
mod streams;
#[path = "compare/table.rs"]
mod table;
#[path = "compare/waiting.rs"]
mod waiting;

use std::path::PathBuf;
use std::time::Duration;

use aegeantic::resilience::{RateLimitConfig, RateLimiter};
use criterion::Criterion;

#[global_allocator]
static ALLOCATOR: allocs::Counting = allocs::Counting;

/// What this run measures: a full benchmark, or a quick smoke test under `cargo test`;
/// and the filter, if any.
pub struct Run {
    benchmarking: bool,
    filter: Option<String>,
}

impl Run {
    fn from_args() -> Self {
        let args: Vec<String> = std::env::args().skip(1).collect();
        Run {
            benchmarking: args.iter().any(|a| a == "--bench")
                && !args.iter().any(|a| a == "--test"),
            filter: args.into_iter().find(|a| !a.starts_with('-')),
        }
    }

    /// Whether the part `id` runs: no filter, or one of the filter's `|`-separated
    /// alternatives is part of `id` (criterion reads the filter as a regex; plain names and
    /// `a|b` mean the same to both).
    pub fn wants(&self, id: &str) -> bool {
        self.filter
            .as_deref()
            .is_none_or(|filter| filter.split('|').any(|part| id.contains(part)))
    }

    /// A pair budget: `total` and `block` when benchmarking, a token one otherwise.
    pub fn budget(&self, total: Duration, block: Duration) -> record::PairBudget {
        record::PairBudget::new(self.benchmarking, total, block)
    }

    /// `full` of real time when benchmarking, a fifth of a second otherwise.
    fn real_time(&self, full: Duration) -> Duration {
        if self.benchmarking {
            full
        } else {
            Duration::from_millis(200)
        }
    }
}

/// Where this run's results go, if anywhere.
const SAVE: &str = "AEGEANTIC_BENCH_SAVE";
/// A saved run (of the build without `metrics`) to compare with.
const BASELINE: &str = "AEGEANTIC_BENCH_BASELINE";

fn main() {
    report_clock();
    report_metrics();
    if let Some(path) = std::env::var_os(BASELINE).map(PathBuf::from) {
        if let Err(error) = record::load(&path, table::BASELINE_PREFIX) {
            eprintln!("{BASELINE}: cannot read {}: {error}", path.display());
            std::process::exit(1);
        }
    }
    let run = Run::from_args();
    let mut c = Criterion::default()
        .sample_size(record::SAMPLES)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .configure_from_args();

    hot::try_acquire(&mut c, &run);
    hot::contended(&mut c, &run);
    hot::acquire_ready(&mut c, &run);
    streams::per_item(&mut c, &run);
    streams::retry_once(&mut c, &run);
    c.final_summary();

    if run.wants("allocs") {
        allocs::all();
    }
    waiting::all(&run, run.real_time(Duration::from_secs(5)));
    accuracy::all(&run, run.real_time(Duration::from_secs(10)));
    table::print(run.benchmarking);
    if let Some(path) = std::env::var_os(SAVE).map(PathBuf::from) {
        if let Err(error) = record::save(&path) {
            eprintln!("{SAVE}: cannot write {}: {error}", path.display());
            std::process::exit(1);
        }
    }
}

/// With this package's `metrics` feature, aegeantic records its metrics into the facade's
/// no-op recorder: the cost of making each measurement and handing it on, without a
/// recorder's own (an application's exporter adds its own on top).
#[cfg(feature = "metrics")]
fn report_metrics() {
    if metrics::set_global_recorder(metrics::NoopRecorder).is_err() {
        eprintln!("a metrics recorder was installed before the benchmark's own");
        std::process::exit(1);
    }
    println!("aegeantic metrics: on, into the no-op recorder");
}

#[cfg(not(feature = "metrics"))]
fn report_metrics() {
    println!("aegeantic metrics: off (feature not built)");
}

/// Says which clock the limiter runs on in this build: the cycle counter, as in a user's
/// release build, unless tokio was built with `test-util` (the limiter then follows tokio's
/// pausable clock, and the numbers are not the production ones).
fn report_clock() {
    // The first limiter of a process calibrates the cycle counter.
    let started = std::time::Instant::now();
    let limiter = RateLimiter::new(RateLimitConfig {
        requests_per_second: Some(1.0),
        ..RateLimitConfig::default()
    })
    .expect("valid config");
    let first_new = started.elapsed();
    let debug = format!("{limiter:?}");
    if debug.contains("Counter") {
        println!(
            "limiter clock: CPU cycle counter (as in production builds); the first \
             RateLimiter::new took {first_new:?}, calibration included"
        );
    } else {
        println!(
            "WARNING: tokio has `test-util` in this build, so the limiter runs on tokio's \
             clock and these are not production numbers; run ./bench.sh"
        );
    }
}
