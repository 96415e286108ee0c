//! Every interleaving of the bucket's concurrent protocol, explored by loom: the lock-free
//! grant (a compare-exchange on `tat`), booking a place in the queue (a compare-exchange
//! under the queue lock), giving a place back and refunding a reservation (both moves of
//! `tat` under the lock).
//!
//! Run with `RUSTFLAGS="--cfg aegeantic_loom" cargo test -p aegeantic --lib loom --release`.
//! The models are small enough for loom to try every interleaving, unbounded, in well
//! under a second; each was checked to fail with the protocol broken (a plain store for the
//! grant's compare-exchange, the booking's compare-exchange outside the lock, the give-back
//! after unlocking). The last model found a real fault: the give-back was an unconditional
//! subtraction, which refunded tokens a grant had already counted as taken.
//!
//! Every request here is made at instant 0 of a bucket that refills one token an hour, so
//! the state each interleaving ends in can be stated exactly: `tat` is one interval per
//! token granted or still queued, and the queue's waiters are due one interval apart, in
//! the order they were queued, the last at the instant `tat` says the bucket is booked to.
//! (Cancellation reads the real clock, microseconds into an hour-long interval: every
//! place given back is still ahead.)

use std::task::Waker;

use loom::thread;

use super::{Booked, RateLimitConfig, RateLimiter};

/// Nanoseconds per token at one token an hour.
const T: u64 = 3_600_000_000_000;

fn hourly(burst: u32) -> RateLimiter {
    RateLimiter::new(RateLimitConfig {
        requests_per_hour: Some(1.0),
        burst_size: burst,
        ..RateLimitConfig::default()
    })
    .unwrap()
}

/// One token and two racing takers: exactly one wins it.
#[test]
fn loom_two_grants_never_share_the_last_token() {
    loom::model(|| {
        let l = hourly(1);
        let other = {
            let l = l.clone();
            thread::spawn(move || l.try_take(1, 0).is_some())
        };
        let mine = l.try_take(1, 0).is_some();
        let theirs = other.join().unwrap();
        assert!(mine ^ theirs, "granted to both or neither: {mine} {theirs}");
        assert_eq!(l.shared.tat.0.load(super::Ordering::Relaxed), T);
    });
}

/// With the bucket empty, two requests queue while one of them gives its place back and a
/// caller that does not queue tries its luck: the survivor ends up first in line, due at
/// the next token, and nobody got a token the bucket did not have.
#[test]
fn loom_booking_and_giving_back_keep_the_queue_and_the_bucket_in_step() {
    loom::model(|| {
        let l = hourly(1);
        assert!(l.try_take(1, 0).is_some(), "the only token, taken first");
        let cancelling = {
            let l = l.clone();
            thread::spawn(move || match l.book(1, 0, u64::MAX, Waker::noop()) {
                Booked::Later { id, .. } => l.cancel(id),
                Booked::Now { .. } | Booked::TooLate { .. } => {
                    panic!("an unbounded request on an empty bucket is queued")
                }
            })
        };
        let trying = {
            let l = l.clone();
            thread::spawn(move || l.try_take(1, 0).is_some())
        };
        let staying = match l.book(1, 0, u64::MAX, Waker::noop()) {
            Booked::Later { id, .. } => id,
            Booked::Now { .. } | Booked::TooLate { .. } => {
                panic!("an unbounded request on an empty bucket is queued")
            }
        };
        cancelling.join().unwrap();
        assert!(!trying.join().unwrap(), "took a token promised to a waiter");
        // One token granted, one place still held.
        assert_eq!(l.shared.tat.0.load(super::Ordering::Relaxed), 2 * T);
        assert_eq!(
            l.admit_at(staying, Waker::noop()),
            Some(T),
            "the waiter left is first in line"
        );
    });
}

/// Two waiters queue behind a third that gives its place back: they keep their order and
/// both move up by exactly the place given back.
#[test]
fn loom_waiters_behind_a_cancelled_one_move_up_in_order() {
    loom::model(|| {
        let l = hourly(1);
        assert!(l.try_take(1, 0).is_some(), "the only token, taken first");
        let Booked::Later { id: first, .. } = l.book(1, 0, u64::MAX, Waker::noop()) else {
            panic!("granted from an empty bucket");
        };
        let queue = |l: RateLimiter| {
            thread::spawn(move || match l.book(1, 0, u64::MAX, Waker::noop()) {
                Booked::Later { id, .. } => id,
                Booked::Now { .. } | Booked::TooLate { .. } => {
                    panic!("an unbounded request on an empty bucket is queued")
                }
            })
        };
        let (a, b) = (queue(l.clone()), queue(l.clone()));
        l.cancel(first);
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        // Queued first (the lower id), due first.
        let (earlier, later) = if a < b { (a, b) } else { (b, a) };
        assert_eq!(l.shared.tat.0.load(super::Ordering::Relaxed), 3 * T);
        assert_eq!(l.admit_at(earlier, Waker::noop()), Some(T));
        assert_eq!(l.admit_at(later, Waker::noop()), Some(2 * T));
    });
}

/// A waiter gives its place back on a clock reading taken before its instant, while a
/// caller whose reading is past that instant takes a token without the lock. Whichever
/// lands first, the bucket grants one token at that later instant, not two: handing back
/// tokens after a grant that already counted them as taken would let the next caller take
/// them again.
#[test]
fn loom_a_late_give_back_does_not_refund_tokens_already_counted_as_taken() {
    loom::model(|| {
        let l = hourly(1);
        assert!(l.try_take(1, 0).is_some(), "the only token, taken first");
        let Booked::Later { id, .. } = l.book(1, 0, u64::MAX, Waker::noop()) else {
            panic!("granted from an empty bucket");
        };
        let cancelling = {
            let l = l.clone();
            thread::spawn(move || l.cancel(id))
        };
        // Two intervals on: the waiter's token came due at T, the next one at 2T.
        let first = l.try_take(1, 2 * T).is_some();
        cancelling.join().unwrap();
        let second = l.try_take(1, 2 * T).is_some();
        assert!(
            first ^ second,
            "a burst of 1 granted {} tokens at one instant",
            u8::from(first) + u8::from(second)
        );
    });
}

/// A reservation of one token from a bucket of two is refunded (under the queue lock)
/// while another caller takes the other token without the lock. Whichever lands first,
/// neither update is lost: the bucket ends booked one token (the racing grant's) or a
/// little more (the refund gives back its token less the microseconds its clock reading
/// was into the hour), never less.
#[test]
fn loom_a_refund_racing_a_grant_loses_neither() {
    loom::model(|| {
        let l = hourly(2);
        let Some(booked_until) = l.try_take(1, 0) else {
            panic!("a full bucket refused");
        };
        let taking = {
            let l = l.clone();
            thread::spawn(move || l.try_take(1, 0).is_some())
        };
        l.refund_local(1, booked_until, 0);
        assert!(
            taking.join().unwrap(),
            "the second token was there all along"
        );
        let tat = l.shared.tat.0.load(super::Ordering::Relaxed);
        assert!(tat >= T, "booked to {tat} ns: the racing grant was lost");
    });
}
