//! What the scraped metrics say beside what the inline events said, fact by fact.

use std::fmt;

use crate::fleet::{Tally, LIMITER, OPERATION, OPERATION_TYPE};
use crate::scrape::Scrape;

/// One fact, counted both ways.
#[derive(Clone, Debug)]
pub struct Fact {
    pub what: &'static str,
    pub events: f64,
    pub metrics: f64,
    /// How far apart they may be: 0 for counts, half a millisecond for the sum of waits
    /// (equal to the millisecond).
    pub tolerance: f64,
}

impl Fact {
    pub fn agrees(&self) -> bool {
        (self.events - self.metrics).abs() <= self.tolerance
    }
}

impl fmt::Display for Fact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.agrees() { "=" } else { "≠" };
        write!(
            f,
            "{:<34} events {:>10.3}  {mark}  metrics {:>10.3}",
            self.what, self.events, self.metrics
        )
    }
}

/// The facts of the fleet's operation: attempts (all, and by outcome), retries (all, and
/// server-directed), grants and the sum of their waits in seconds.
pub fn facts(tally: &Tally, scrape: &Scrape) -> Vec<Fact> {
    let op = [("operation", OPERATION), ("operation_type", OPERATION_TYPE)];
    let with = |extra: (&'static str, &'static str)| [op[0], op[1], extra];
    let limiter = [("limiter", LIMITER)];
    let attempts = "aegeantic_attempts_total";
    let retries = "aegeantic_retries_total";
    let count = |what, events: usize, metrics| Fact {
        what,
        events: events as f64,
        metrics,
        tolerance: 0.0,
    };
    let server_directed = tally.retries.iter().filter(|r| r.server_directed).count();
    let retried = tally.retries.len();
    vec![
        count(
            "attempts",
            tally.attempts as usize,
            scrape.sum(attempts, &op),
        ),
        count(
            "attempts that succeeded",
            tally.succeeded as usize,
            scrape.sum(attempts, &with(("outcome", "success"))),
        ),
        count(
            "attempts that were retried",
            retried,
            scrape.sum(attempts, &with(("outcome", "retried"))),
        ),
        count(
            "attempts that failed the call",
            tally.failed as usize,
            scrape.sum(attempts, &with(("outcome", "failed"))),
        ),
        count("retries", retried, scrape.sum(retries, &op)),
        count(
            "retries the server timed",
            server_directed,
            scrape.sum(retries, &with(("server_directed", "true"))),
        ),
        count(
            "waits for a token",
            tally.grants.len(),
            scrape.sum("aegeantic_rate_limit_wait_count", &limiter),
        ),
        Fact {
            what: "seconds waited for tokens",
            events: tally.waited().as_secs_f64(),
            metrics: scrape.sum("aegeantic_rate_limit_wait_sum", &limiter),
            tolerance: 0.0005,
        },
    ]
}
