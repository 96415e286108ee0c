//! A discrete-event model of Brooker's "Exponential Backoff and Jitter" experiment: N
//! clients update one row with optimistic concurrency (read the version, write if it is
//! unchanged); a client whose write loses backs off and starts over.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use aegeantic::resilience::{Backoff, Jitter};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// The strategies compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    NoBackoff,
    Exponential,
    EqualJitter,
    FullJitter,
    Decorrelated,
}

impl Strategy {
    pub const ALL: [Strategy; 5] = [
        Strategy::NoBackoff,
        Strategy::Exponential,
        Strategy::EqualJitter,
        Strategy::FullJitter,
        Strategy::Decorrelated,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::NoBackoff => "no backoff",
            Strategy::Exponential => "exponential, no jitter",
            Strategy::EqualJitter => "equal jitter",
            Strategy::FullJitter => "full jitter",
            Strategy::Decorrelated => "decorrelated jitter",
        }
    }

    /// The sleep before retry `retry` (counting from 1), given the previous sleep.
    fn sleep(self, retry: u32, previous: Option<Duration>, rng: &mut StdRng) -> Duration {
        let (base, cap) = (BASE, CAP);
        // The study sleeps `base · 2^n` before retry n; the library's schedule is
        // `base · 2^(k-1)` after failed attempt k, and retry n follows attempt n + 1.
        let exponential = Backoff::Exponential.delay(retry + 1, base, cap);
        match self {
            Strategy::NoBackoff => Duration::ZERO,
            Strategy::Exponential => exponential,
            Strategy::EqualJitter => Jitter::Equal.apply(exponential, previous, base, cap, rng),
            Strategy::FullJitter => Jitter::Full.apply(exponential, previous, base, cap, rng),
            Strategy::Decorrelated => {
                Jitter::Decorrelated.apply(exponential, previous, base, cap, rng)
            }
        }
    }
}

pub const BASE: Duration = Duration::from_millis(5);
pub const CAP: Duration = Duration::from_secs(2);

/// The averages over trials of one configuration.
#[derive(Clone, Copy, Debug, Default)]
pub struct Outcome {
    /// Read-then-write attempts until every client has written (the study's "calls").
    pub calls: f64,
    /// Time until the last client has written, in seconds.
    pub completion: f64,
}

/// Runs `trials` trials of `clients` clients and averages them.
pub fn simulate(strategy: Strategy, clients: usize, trials: u32, seed: u64) -> Outcome {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut total = Outcome::default();
    for _ in 0..trials {
        let trial = trial(strategy, clients, &mut rng);
        total.calls += trial.calls;
        total.completion += trial.completion;
    }
    Outcome {
        calls: total.calls / f64::from(trials),
        completion: total.completion / f64::from(trials),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    /// The read reaches the database.
    Read,
    /// The conditional write reaches the database.
    Write,
    /// The client hears whether its write won.
    Outcome,
}

struct Client {
    seen_version: u64,
    won: bool,
    retries: u32,
    previous_sleep: Option<Duration>,
}

/// Network delay of one message: |N(10 ms, 2 ms)|, in nanoseconds.
fn network(rng: &mut StdRng) -> u64 {
    // Box-Muller: two uniforms give one standard normal.
    let (u1, u2): (f64, f64) = (rng.random_range(f64::EPSILON..1.0), rng.random());
    let normal = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    ((10.0 + 2.0 * normal).abs() * 1e6) as u64
}

fn trial(strategy: Strategy, clients: usize, rng: &mut StdRng) -> Outcome {
    let mut version = 0u64;
    let mut calls = 0u64;
    let mut last_done = 0u64;
    let mut state: Vec<Client> = (0..clients)
        .map(|_| Client {
            seen_version: 0,
            won: false,
            retries: 0,
            previous_sleep: None,
        })
        .collect();
    // (time in ns, sequence for stable order, client, step)
    let mut events = BinaryHeap::new();
    let mut sequence = 0u64;
    let mut schedule = |events: &mut BinaryHeap<_>, at: u64, client: usize, step: Step| {
        sequence += 1;
        events.push(Reverse((at, sequence, client, step)));
    };
    for client in 0..clients {
        schedule(&mut events, network(rng), client, Step::Read);
    }
    while let Some(Reverse((now, _, client, step))) = events.pop() {
        match step {
            Step::Read => {
                state[client].seen_version = version;
                let back_and_forth = network(rng) + network(rng);
                schedule(&mut events, now + back_and_forth, client, Step::Write);
            }
            Step::Write => {
                calls += 1;
                let won = version == state[client].seen_version;
                if won {
                    version += 1;
                }
                state[client].won = won;
                schedule(&mut events, now + network(rng), client, Step::Outcome);
            }
            Step::Outcome => {
                let c = &mut state[client];
                if c.won {
                    last_done = last_done.max(now);
                    continue;
                }
                c.retries += 1;
                let sleep = strategy.sleep(c.retries, c.previous_sleep, rng);
                c.previous_sleep = Some(sleep);
                let start = now + sleep.as_nanos() as u64;
                schedule(&mut events, start + network(rng), client, Step::Read);
            }
        }
    }
    Outcome {
        calls: calls as f64,
        completion: last_done as f64 / 1e9,
    }
}
