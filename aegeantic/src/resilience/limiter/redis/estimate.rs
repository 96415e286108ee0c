//! The local estimate of a Redis bucket behind `tokens_available()`.
//!
//! Every script reply says how many tokens the bucket holds at some instant: an admitted
//! request's reply speaks of its booked instant, which lies `wait` after the reply, and a
//! refused one's says that its `cost` tokens exist `wait` after the reply. The estimate is
//! that count at that instant, plus refill after it and minus the refill still to come
//! before it: a bucket booked ahead reads 0 until its last booked instant.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::gcra::Reply;

pub(crate) struct Estimate {
    /// Microseconds per token of the slowest window.
    slowest_us: f64,
    burst: f64,
    last: Mutex<Reading>,
}

#[derive(Clone, Copy)]
struct Reading {
    /// Tokens in the bucket at `at`.
    tokens: f64,
    at: Instant,
    /// When the reply that gave it arrived, and the server's clock when it was made: a
    /// reply to a call sent before that arrival may be older, and wins only if the server
    /// made it later.
    received: Instant,
    server_now_us: u64,
}

impl Estimate {
    pub(crate) fn new(slowest_us: u64, burst: u32) -> Self {
        let now = Instant::now();
        Estimate {
            slowest_us: slowest_us as f64,
            burst: f64::from(burst),
            last: Mutex::new(Reading {
                tokens: f64::from(burst),
                at: now,
                received: now,
                server_now_us: 0,
            }),
        }
    }

    /// Records `reply` to a request of `cost` tokens sent at `sent`, received at `received`.
    pub(crate) fn record(&self, reply: &Reply, cost: u32, sent: Instant, received: Instant) {
        let tokens = if reply.admitted {
            reply.remaining
        } else {
            f64::from(cost)
        };
        let at = received
            .checked_add(Duration::from_micros(reply.wait_us))
            .unwrap_or(received);
        let mut last = self.lock();
        // Replies on different connections may arrive out of order: keep the newest.
        if sent < last.received && reply.now_us < last.server_now_us {
            return;
        }
        *last = Reading {
            tokens,
            at,
            received,
            server_now_us: reply.now_us,
        };
    }

    /// Lowers the estimate to at most `tokens` now (a cap): only replies to calls sent
    /// after it may replace it.
    pub(crate) fn cap(&self, tokens: u32) {
        let estimate = f64::from(tokens).min(self.tokens_available());
        let now = Instant::now();
        *self.lock() = Reading {
            tokens: estimate,
            at: now,
            received: now,
            server_now_us: u64::MAX,
        };
    }

    /// The estimate now, between 0 and the burst.
    pub(crate) fn tokens_available(&self) -> f64 {
        let last = *self.lock();
        let now = Instant::now();
        let micros = |span: Duration| span.as_micros() as f64;
        let refill = if now >= last.at {
            micros(now - last.at)
        } else {
            -micros(last.at - now)
        } / self.slowest_us;
        (last.tokens + refill).clamp(0.0, self.burst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Reading> {
        self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
