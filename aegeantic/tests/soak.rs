//! The short soak: the example's run for 30 s with 500 streams at once (15 s through the
//! in-process limiter, 15 s through Redis, killed once 8 s in), which must PASS every check.
//! Real time, real HTTP on 127.0.0.1, a real redis-server; the bounds allow for a loaded
//! 2-core machine running an unoptimised build.

#[path = "../examples/soak/soak/mod.rs"]
mod soak;

// The leak check reads the live heap this allocator counts.
#[global_allocator]
static HEAP: soak::Counting = soak::Counting;

use std::time::{Duration, Instant};

#[test]
fn a_30_second_soak_of_500_streams_passes_every_check() {
    let mut options = soak::Options::new(Duration::from_secs(30), 500);
    options.rate = 300.0;
    options.burst = 30;
    options.deadline = Duration::from_secs(20);
    options.redis_every = Duration::from_secs(8);
    options.redis_outage = Duration::from_millis(500);
    let started = Instant::now();
    let summary = soak::run(&options).expect("the soak runs");
    println!("{}", summary.report);
    assert!(summary.failures.is_empty(), "FAIL: {:#?}", summary.failures);
    assert!(
        started.elapsed() < Duration::from_secs(58),
        "{:?}",
        started.elapsed()
    );
}
