//! The fault server's random mode: each request's reply drawn from a seeded mix of faults.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use serde_json::Value;

use super::fault_server::{Reply, StreamEnd};

/// One kind of reply the random mode serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RandomFault {
    /// A full text answer ending in `data: [DONE]`.
    Complete,
    /// `429` with `retry-after`.
    RateLimited,
    /// `429` without `retry-after`.
    RateLimitedBare,
    /// `500`.
    Internal,
    /// `503`.
    Unavailable,
    /// The connection closed after the request, before any header.
    Reset,
    /// Some of the answer, then the connection aborted mid-event.
    CutBody,
    /// Some of the answer, then silence for the mix's stall time, then the end.
    Stall,
    /// The whole answer without `data: [DONE]`.
    MissingDone,
    /// Some of the answer, then an in-stream error event (a `server_error`).
    ErrorEvent,
}

impl RandomFault {
    /// Every kind, in a fixed order.
    pub const ALL: [RandomFault; 10] = [
        RandomFault::Complete,
        RandomFault::RateLimited,
        RandomFault::RateLimitedBare,
        RandomFault::Internal,
        RandomFault::Unavailable,
        RandomFault::Reset,
        RandomFault::CutBody,
        RandomFault::Stall,
        RandomFault::MissingDone,
        RandomFault::ErrorEvent,
    ];
}

/// The mix the random mode draws from: a weight per [`RandomFault`], the answers' shape,
/// and the seed.
///
/// By default three answers in four are complete and the nine faults share the rest
/// evenly; an answer is 3 to 8 random text pieces 10 ms apart; `retry-after` is `1`; a
/// stall lasts 30 s (long past any sensible idle timeout, and bounded so that a long run
/// does not pile up stalled connections).
#[derive(Clone, Debug)]
pub struct FaultMix {
    seed: u64,
    weights: [u32; 10],
    pieces: (usize, usize),
    gap: Duration,
    retry_after: String,
    stall: Duration,
}

impl FaultMix {
    /// The default mix, drawing from `seed`.
    pub fn seeded(seed: u64) -> Self {
        FaultMix {
            seed,
            weights: [27, 1, 1, 1, 1, 1, 1, 1, 1, 1],
            pieces: (3, 8),
            gap: Duration::from_millis(10),
            retry_after: "1".to_owned(),
            stall: Duration::from_secs(30),
        }
    }

    /// Sets the weight of `fault`; zero never serves it.
    #[must_use]
    pub fn weight(mut self, fault: RandomFault, weight: u32) -> Self {
        let at = RandomFault::ALL.iter().position(|f| *f == fault);
        self.weights[at.expect("ALL lists every fault")] = weight;
        self
    }

    /// Answers of `min` to `max` text pieces (`max` below `min` reads as `min`).
    #[must_use]
    pub fn pieces(mut self, min: usize, max: usize) -> Self {
        self.pieces = (min, max.max(min));
        self
    }

    /// The silence before each piece.
    #[must_use]
    pub fn gap(mut self, gap: Duration) -> Self {
        self.gap = gap;
        self
    }

    /// The `retry-after` value of [`RandomFault::RateLimited`].
    #[must_use]
    pub fn retry_after(mut self, value: &str) -> Self {
        value.clone_into(&mut self.retry_after);
        self
    }

    /// How long a [`RandomFault::Stall`] stays silent before the body ends.
    #[must_use]
    pub fn stall(mut self, stall: Duration) -> Self {
        self.stall = stall;
        self
    }
}

/// What the random mode served to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    /// The fault drawn.
    pub fault: RandomFault,
    /// The text the reply's pieces carry, in order: the whole answer for
    /// [`RandomFault::Complete`] and [`RandomFault::MissingDone`], what came before the
    /// fault for the faults that come mid-stream, empty for the others.
    pub text: String,
}

/// The generator and the replies served per key, shared by the requests.
pub(crate) struct RandomMode {
    mix: FaultMix,
    state: Mutex<ModeState>,
}

struct ModeState {
    rng: Xoshiro256PlusPlus,
    served: HashMap<String, Vec<Served>>,
}

impl RandomMode {
    pub(crate) fn new(mix: FaultMix) -> Self {
        let rng = Xoshiro256PlusPlus::seed_from_u64(mix.seed);
        RandomMode {
            mix,
            state: Mutex::new(ModeState {
                rng,
                served: HashMap::new(),
            }),
        }
    }

    /// Draws the reply to a request for `key`, and records it under the key.
    pub(crate) fn draw(&self, key: String) -> Reply {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let total: u32 = self.mix.weights.iter().sum();
        let mut pick = state.rng.random_range(0..total.max(1));
        let mut fault = RandomFault::Complete;
        for (candidate, weight) in RandomFault::ALL.into_iter().zip(self.mix.weights) {
            if pick < weight {
                fault = candidate;
                break;
            }
            pick -= weight;
        }
        let (min, max) = self.mix.pieces;
        let count = state.rng.random_range(min..=max);
        let pieces: Vec<String> = (0..count)
            .map(|_| format!("{:08x} ", state.rng.random::<u32>()))
            .collect();
        // A fault mid-stream comes after a random part of the answer.
        let before_fault = state.rng.random_range(0..=count);
        let (reply, sent) = self.reply(fault, &pieces, before_fault);
        let text = pieces[..sent].concat();
        state
            .served
            .entry(key)
            .or_default()
            .push(Served { fault, text });
        reply
    }

    /// The reply of `fault`, and how many of `pieces` it carries.
    fn reply(&self, fault: RandomFault, pieces: &[String], before_fault: usize) -> (Reply, usize) {
        let text = |n: usize| {
            let pieces: Vec<&str> = pieces[..n].iter().map(String::as_str).collect();
            Reply::text(&pieces, self.mix.gap)
        };
        match fault {
            RandomFault::Complete => (text(pieces.len()), pieces.len()),
            RandomFault::MissingDone => (
                text(pieces.len()).ending(StreamEnd::MissingDone),
                pieces.len(),
            ),
            RandomFault::RateLimited => (Reply::rate_limited(&self.mix.retry_after), 0),
            RandomFault::RateLimitedBare => (Reply::status(429, "rate_limit_exceeded"), 0),
            RandomFault::Internal => (Reply::status(500, "server_error"), 0),
            RandomFault::Unavailable => (Reply::status(503, "overloaded"), 0),
            RandomFault::Reset => (Reply::Reset, 0),
            RandomFault::CutBody => (text(before_fault).ending(StreamEnd::Cut), before_fault),
            RandomFault::Stall => (
                text(before_fault).ending(StreamEnd::StallFor(self.mix.stall)),
                before_fault,
            ),
            RandomFault::ErrorEvent => {
                let error = serde_json::json!({ "message": "fault server: overloaded",
                    "type": "server_error", "code": "server_error" });
                (
                    text(before_fault).ending(StreamEnd::ErrorEvent(error)),
                    before_fault,
                )
            }
        }
    }

    /// Takes what was served for `key`, in order.
    pub(crate) fn take(&self, key: &str) -> Vec<Served> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.served.remove(key).unwrap_or_default()
    }

    /// How many keys have replies not taken yet.
    pub(crate) fn untaken(&self) -> usize {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.served.len()
    }
}

/// The key a request's replies are recorded under: its last message's content.
pub(crate) fn key(body: &[u8]) -> String {
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let last = body["messages"]
        .as_array()
        .and_then(|messages| messages.last());
    last.and_then(|message| message["content"].as_str())
        .unwrap_or_default()
        .to_owned()
}
