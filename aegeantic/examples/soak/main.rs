//! A soak of the whole stack: K resilient streams at once, through one shared limiter
//! (in-process, then Redis killed with SIGKILL and restarted every minute), against the
//! fault server drawing its faults at random, with consumers that drop 5 % of the streams
//! mid-way. A status line once a second; at the end a summary and PASS or FAIL.
//!
//! `cargo run --release --example soak --features openai,fault-server,redis -- --minutes 10 --streams 10000`
//!
//! Options: `--minutes N` (fractions allowed), `--streams K`, `--rate R` and `--burst B`
//! (the shared limit), `--deadline-secs S` (each stream's deadline), `--redis-restart-secs
//! S`, `--seed N`, `--phases in-process,redis` (which phases, in order; each gets half of
//! `--minutes`). Needs `redis-server` on the PATH.
//!
//! Memory is measured two ways. The live heap is what the program holds: this binary's
//! global allocator is `soak::Counting`, the system allocator with relaxed atomic counts
//! of the bytes and blocks allocated and not yet freed (and of the highest byte count
//! each second). RSS is what the process has resident: the live heap, plus what the
//! allocator keeps after frees (glibc keeps whatever the highest transient peak touched,
//! so RSS climbs in steps at each new peak and rarely comes down), plus code and stacks.
//! The leak check is on the live heap, which is exact and does not depend on the
//! allocator: its mean over a window right after warm-up against its mean over a window
//! before the stop, both in bytes and in blocks, must grow by less than 5 %. RSS is
//! printed beside it, once a second and in the summary, with glibc's free-but-kept bytes,
//! so that a gap between the two is seen for what it is.

mod soak;

#[global_allocator]
static HEAP: soak::Counting = soak::Counting;

use std::process::ExitCode;
use std::time::Duration;

use aegeantic::report::DisplayChain;

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(problem) => {
            eprintln!("soak: {problem}");
            return ExitCode::from(2);
        }
    };
    println!("soak: {options:?}");
    match soak::run(&options) {
        Ok(summary) => {
            print!("{}", summary.report);
            if summary.failures.is_empty() {
                println!("PASS");
                ExitCode::SUCCESS
            } else {
                for failure in &summary.failures {
                    println!("FAIL: {failure}");
                }
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("soak: FAIL: {}", DisplayChain(&*error));
            ExitCode::FAILURE
        }
    }
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<soak::Options, String> {
    let mut options = soak::Options::new(Duration::from_secs(60), 1000);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |value: &str| {
            value
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n > 0.0)
                .ok_or_else(|| format!("{flag}: {value:?} is not a positive number"))
        };
        let seconds = |value: &str| {
            number(value)
                .and_then(|n| Duration::try_from_secs_f64(n).map_err(|e| format!("{flag}: {e}")))
        };
        match flag.as_str() {
            "--minutes" => options.duration = seconds(&value).map(|d| d * 60)?,
            "--streams" => options.streams = number(&value)? as usize,
            "--rate" => options.rate = number(&value)?,
            "--burst" => options.burst = number(&value)? as u32,
            "--deadline-secs" => options.deadline = seconds(&value)?,
            "--redis-restart-secs" => options.redis_every = seconds(&value)?,
            "--phases" => {
                options.backends = value
                    .split(',')
                    .map(|phase| match phase {
                        "in-process" => Ok(soak::Backend::InProcess),
                        "redis" => Ok(soak::Backend::Redis),
                        other => Err(format!("--phases: {other:?} is not in-process or redis")),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--seed" => options.seed = value.parse().map_err(|_| format!("--seed: {value:?}"))?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(options)
}
