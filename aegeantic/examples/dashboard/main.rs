//! A fleet of tasks sharing one rate limiter against a flaky upstream, with its metrics
//! served to Prometheus and a chart at the end.
//!
//! `cargo run --example dashboard --features metrics,http [-- --seconds 20 --tasks 30
//! --rate 40 --out target/dashboard.svg]`
//!
//! The upstream is a loopback HTTP server that answers some requests with 503 and some
//! with 429 and `retry-after-ms`. Tasks join over the first half of the run, so the demand
//! climbs past the limiter's rate; every task calls the upstream in a loop under
//! `aegeantic::resilience::resilient`, each attempt taking a token from the one shared
//! `RateLimiter`. While it runs, `http://127.0.0.1:PORT/metrics` (printed) serves the
//! Prometheus text; at the end the example scrapes it, sets what it says beside what the
//! inline events said, and writes an SVG chart of requests admitted per second against the
//! configured rate, the waits for tokens and the retries.

mod agreement;
mod chart;
mod exporter;
mod fleet;
mod scrape;
mod upstream;

use std::path::PathBuf;
use std::time::Duration;

use aegeantic::report::Report;
use exporter::Endpoint;
use fleet::Fleet;
use scrape::Scrape;
use upstream::Upstream;

/// What the command line asks for.
struct Args {
    fleet: Fleet,
    out: PathBuf,
}

/// A command line that cannot be run.
#[derive(Debug, thiserror::Error)]
enum ArgError {
    #[error("{flag} needs a value")]
    Missing { flag: String },
    #[error("{flag} {value:?} is not {wanted}")]
    Invalid {
        flag: String,
        value: String,
        wanted: &'static str,
    },
    #[error("unknown argument {0:?} (known: --seconds, --tasks, --rate, --out)")]
    Unknown(String),
}

/// The metrics disagree with the events.
#[derive(Debug, thiserror::Error)]
#[error("the scraped metrics disagree with the inline events: {0}")]
struct Disagreement(String);

impl Args {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Self, ArgError> {
        let mut parsed = Args {
            fleet: Fleet {
                tasks: 30,
                rate: 40.0,
                burst: 10,
                run_for: Duration::from_secs(20),
                ramp: Duration::from_secs(10),
                think: Duration::from_millis(500),
            },
            out: PathBuf::from("target/dashboard.svg"),
        };
        while let Some(flag) = args.next() {
            let value = match flag.as_str() {
                "--seconds" | "--tasks" | "--rate" | "--out" => args
                    .next()
                    .ok_or_else(|| ArgError::Missing { flag: flag.clone() })?,
                _ => return Err(ArgError::Unknown(flag)),
            };
            let invalid = |wanted| ArgError::Invalid {
                flag: flag.clone(),
                value: value.clone(),
                wanted,
            };
            match flag.as_str() {
                "--seconds" => {
                    let seconds: u64 = value.parse().map_err(|_| invalid("whole seconds"))?;
                    parsed.fleet.run_for = Duration::from_secs(seconds);
                    parsed.fleet.ramp = parsed.fleet.run_for / 2;
                }
                "--tasks" => {
                    parsed.fleet.tasks = value
                        .parse()
                        .ok()
                        .filter(|&tasks| tasks > 0)
                        .ok_or_else(|| invalid("a positive number of tasks"))?;
                }
                "--rate" => {
                    // The limiter checks the rate itself; this only reads the number.
                    parsed.fleet.rate = value.parse().map_err(|_| invalid("a number"))?;
                }
                _ => parsed.out = PathBuf::from(value),
            }
        }
        Ok(parsed)
    }
}

#[tokio::main]
async fn main() -> Result<(), Report> {
    let Args { fleet, out } = Args::parse(std::env::args().skip(1))?;
    let handle = exporter::install()?;
    let endpoint = Endpoint::serve(handle).await?;
    let upstream = Upstream::start().await?;
    println!("Prometheus metrics: {}", endpoint.url());
    println!("upstream: {}", upstream.url());
    println!(
        "{} tasks joining over {:?}, each pausing {:?} between calls; one limiter at {}/s \
         (burst {}); for {:?}",
        fleet.tasks, fleet.ramp, fleet.think, fleet.rate, fleet.burst, fleet.run_for
    );

    let client = reqwest::Client::new();
    let progress = tokio::spawn(progress(client.clone(), endpoint.url()));
    let tally = fleet::run(&fleet, &upstream.url()).await;
    progress.abort();
    let tally = tally?;

    let scrape = Scrape::fetch(&client, &endpoint.url()).await?;
    println!("\nScraped at the end (aegeantic_attempts, _retries, _rate_limit_wait):");
    for line in [
        "aegeantic_attempts",
        "aegeantic_retries",
        "aegeantic_rate_limit_wait_",
    ]
    .into_iter()
    .flat_map(|prefix| scrape.excerpt(prefix))
    .filter(|line| !line.contains("_bucket"))
    {
        println!("  {line}");
    }
    println!("\nInline events beside the metrics:");
    let facts = agreement::facts(&tally, &scrape);
    for fact in &facts {
        println!("  {fact}");
    }

    if let Some(dir) = out.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    chart::write(&out, &tally, fleet.rate)?;
    println!("\nchart: {}", out.display());

    let wrong: Vec<String> = facts
        .iter()
        .filter(|fact| !fact.agrees())
        .map(|fact| fact.what.to_owned())
        .collect();
    if !wrong.is_empty() {
        return Err(Disagreement(wrong.join(", ")).into());
    }
    Ok(())
}

/// Every five seconds, what the endpoint says so far.
async fn progress(client: reqwest::Client, url: String) {
    let mut every = tokio::time::interval(Duration::from_secs(5));
    every.tick().await;
    loop {
        every.tick().await;
        match Scrape::fetch(&client, &url).await {
            Ok(scrape) => println!(
                "  so far: {} attempts, {} retries, {:.1} s waited for tokens",
                scrape.sum("aegeantic_attempts_total", &[]),
                scrape.sum("aegeantic_retries_total", &[]),
                scrape.sum("aegeantic_rate_limit_wait_sum", &[]),
            ),
            Err(error) => eprintln!("  scrape failed: {}", Report::from(error)),
        }
    }
}
