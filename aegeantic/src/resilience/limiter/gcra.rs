//! The token bucket, as GCRA arithmetic in integer nanoseconds.
//!
//! GCRA ("generic cell rate algorithm") stores one number per bucket, the *theoretical
//! arrival time* `tat`: the instant at which the bucket would be full again if nothing else
//! were taken. With `T` nanoseconds per token and capacity `B`, the tolerance is `τ = B·T`
//! and at instant `now` the bucket holds `B - (max(tat, now) - now) / T` tokens.
//!
//! A request for `n` tokens moves `tat` to `max(tat, now) + n·T` and may proceed at
//! `admit_at = new_tat - τ`: immediately when that is not after `now` (the tokens are there),
//! otherwise at that future instant, when the refill has produced them. Booking the future
//! instant straight away is what makes waiting first come, first served: a later request
//! books after the earlier one's `tat` and so cannot overtake it.
//!
//! Integer nanoseconds keep the arithmetic exact; `T` is rounded up to a whole microsecond,
//! so rounding can only make the limiter stricter, never looser.

use crate::resilience::{ConfigError, RateLimitConfig};

/// The fixed parameters of one bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Gcra {
    /// Nanoseconds per token (`T`).
    interval: u64,
    /// `B·T`: how far `tat` may run ahead of `now` with the request still admitted now.
    tolerance: u64,
    burst: u32,
}

/// Where a request lands: its new `tat` and the instant it may proceed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Booking {
    pub(crate) tat: u64,
    pub(crate) admit_at: u64,
}

/// Larger than a century in nanoseconds; well inside `u64` so sums cannot overflow.
const MAX_TOLERANCE: u64 = 1 << 62;

impl Gcra {
    pub(crate) fn new(config: &RateLimitConfig) -> Result<Self, ConfigError> {
        let interval = config.emission_interval()?;
        let tolerance = u64::from(config.burst_size)
            .checked_mul(interval)
            .filter(|&tolerance| tolerance <= MAX_TOLERANCE)
            .ok_or(ConfigError::BucketTooLarge {
                burst_size: config.burst_size,
                rate_per_second: 1e9 / interval as f64,
            })?;
        Ok(Gcra {
            interval,
            tolerance,
            burst: config.burst_size,
        })
    }

    #[inline]
    pub(crate) fn burst(&self) -> u32 {
        self.burst
    }

    #[inline]
    pub(crate) fn interval(&self) -> u64 {
        self.interval
    }

    /// `B·T`: a `tat` this far ahead of `now` means an empty bucket.
    pub(crate) fn tolerance(&self) -> u64 {
        self.tolerance
    }

    /// The booking for `tokens` (at most `burst`) requested at `now`.
    #[inline]
    pub(crate) fn book(&self, tat: u64, now: u64, tokens: u32) -> Booking {
        let tat = tat.max(now) + u64::from(tokens) * self.interval;
        Booking {
            tat,
            admit_at: tat.saturating_sub(self.tolerance),
        }
    }

    /// Tokens in the bucket at `now`; negative while queued requests owe the bucket tokens.
    #[inline]
    pub(crate) fn tokens(&self, tat: u64, now: u64) -> f64 {
        let owed = tat.max(now) - now;
        // Through `i64`: converting a signed integer is one instruction, an unsigned one
        // several, and every grant that waits for nothing reports this. Both values fit:
        // the tolerance is at most 2^62 and a debt past 2^63 ns is clamped.
        let owed = owed.min(i64::MAX as u64) as i64 as f64;
        (self.tolerance as i64 as f64 - owed) / self.interval as i64 as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gcra(per_second: f64, burst: u32) -> Gcra {
        Gcra::new(&RateLimitConfig {
            requests_per_second: Some(per_second),
            burst_size: burst,
            ..RateLimitConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn a_full_bucket_admits_a_burst_then_spaces_requests() {
        let g = gcra(10.0, 3);
        let mut tat = 0;
        for _ in 0..3 {
            let booking = g.book(tat, 0, 1);
            assert_eq!(booking.admit_at, 0);
            tat = booking.tat;
        }
        assert_eq!(g.tokens(tat, 0), 0.0);
        let fourth = g.book(tat, 0, 1);
        assert_eq!(fourth.admit_at, 100_000_000);
        assert_eq!(g.tokens(fourth.tat, 0), -1.0);
    }

    #[test]
    fn an_idle_bucket_refills_to_its_capacity_and_no_further() {
        let g = gcra(10.0, 3);
        assert_eq!(g.tokens(0, 0), 3.0);
        assert_eq!(g.tokens(0, 10_000_000_000), 3.0);
        assert_eq!(g.tokens(300_000_000, 150_000_000), 1.5);
    }

    /// Why every grant reads the clock: a bucket whose `tat` is ahead of the last reading
    /// may have been idle past it since, and booking from `tat` instead of `max(tat, now)`
    /// would credit the idle time beyond the burst.
    #[test]
    fn booking_from_a_stale_reading_would_over_credit_an_idle_bucket() {
        let g = gcra(10.0, 2);
        // Both tokens taken at 0: `tat` is 200 ms, ahead of that reading.
        let tat = g.book(g.book(0, 0, 1).tat, 0, 1).tat;
        assert_eq!(tat, 200_000_000);
        // Idle until 1 s: a full bucket of 2 and not one token more.
        let now = 1_000_000_000;
        let after_two = g.book(tat, now, 2);
        assert!(after_two.admit_at <= now);
        assert!(
            g.book(after_two.tat, now, 1).admit_at > now,
            "a third is refused"
        );
        // Booked as if `tat` were still ahead (the stale reading 0 said so), the same two
        // tokens leave room for a third at once: three tokens from a bucket of two.
        let stale = g.book(tat, 0, 2);
        assert!(g.book(stale.tat, now, 1).admit_at <= now);
    }

    proptest::proptest! {
        /// Concurrent grants commit in an order (that of their compare-exchanges) that need
        /// not be the order of their clock readings: two cores read the counter, the later
        /// reading wins the race or not. Whatever the order, the tokens granted to requests
        /// whose readings fall in any span `[a, b]` stay within `burst + (b - a) / T`.
        #[test]
        fn the_bound_holds_whatever_order_the_readings_commit_in(
            burst in 1u32..6,
            requests in proptest::collection::vec((0u64..2_000, 1u32..6), 1..40),
        ) {
            let g = gcra(1000.0, burst); // T = 1 ms; readings in µs below
            let mut tat = 0;
            let mut granted = Vec::new();
            for (now_us, tokens) in requests {
                let (now, tokens) = (now_us * 1000, tokens.min(burst));
                let booking = g.book(tat, now, tokens);
                if booking.admit_at <= now {
                    tat = booking.tat;
                    granted.push((now, u64::from(tokens)));
                }
            }
            granted.sort_unstable();
            for (i, &(a, _)) in granted.iter().enumerate() {
                let mut taken = 0;
                for &(b, tokens) in &granted[i..] {
                    taken += tokens;
                    proptest::prop_assert!(
                        taken * 1_000_000 <= u64::from(burst) * 1_000_000 + (b - a),
                        "{taken} tokens in [{a}, {b}] ns: {granted:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn intervals_round_up() {
        assert_eq!(gcra(3.0, 1).interval(), 333_334_000);
    }
}
