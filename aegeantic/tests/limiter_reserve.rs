//! Reservations settled against real use, and caps from an upstream's quota, on a paused
//! clock.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{limiter, paused};
use proptest::prelude::*;
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn settling_below_the_reservation_refunds_the_rest() {
    let l = limiter(10.0, 100);
    let reservation = l.reserve(60, "llm").await.unwrap();
    assert_eq!(reservation.tokens(), 60);
    assert_eq!(l.tokens_available(), 40.0);
    reservation.settle(15).await.unwrap();
    assert_eq!(l.tokens_available(), 85.0);
}

#[tokio::test(start_paused = true)]
async fn a_refund_never_fills_the_bucket_past_its_burst() {
    let l = limiter(10.0, 100);
    let reservation = l.reserve(50, "llm").await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await; // 40 of the 50 are back already
    reservation.settle(0).await.unwrap();
    assert_eq!(l.tokens_available(), 100.0);
    assert!(l.try_acquire(100).await.unwrap());
    assert!(!l.try_acquire(1).await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn use_beyond_the_reservation_is_charged_and_later_requests_wait_for_it() {
    let l = limiter(10.0, 100);
    let reservation = l.reserve(100, "llm").await.unwrap();
    reservation.settle(130).await.unwrap(); // 30 tokens of debt
    assert_eq!(l.tokens_available(), 0.0);
    let start = Instant::now();
    l.acquire(10, "next").await.unwrap();
    // 30 owed plus the 10 asked for, at 10 per second.
    assert_eq!(start.elapsed(), Duration::from_secs(4));
}

#[tokio::test(start_paused = true)]
async fn an_unsettled_reservation_stays_spent() {
    let l = limiter(10.0, 100);
    drop(l.reserve(70, "llm").await.unwrap());
    assert_eq!(l.tokens_available(), 30.0);
}

#[tokio::test(start_paused = true)]
async fn a_refund_moves_queued_waiters_up_in_order() {
    let l = limiter(10.0, 10);
    let reservation = l.reserve(10, "big").await.unwrap();
    let start = Instant::now();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for (name, tokens) in [("a", 4), ("b", 4)] {
        let (l, order) = (l.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            l.acquire(tokens, name).await.unwrap();
            order.lock().unwrap().push((name, start.elapsed()));
        }));
        tokio::task::yield_now().await;
    }
    // a is due at 0.4 s and b at 0.8 s. At 0.1 s, 8 of the reserved 10 come back: 0.8 s
    // earlier for both, so a goes at once and b at the 0.1 s it would have had anyway.
    tokio::time::sleep(Duration::from_millis(100)).await;
    reservation.settle(2).await.unwrap();
    for task in tasks {
        task.await.unwrap();
    }
    let order = order.lock().unwrap().clone();
    assert_eq!(
        order,
        vec![
            ("a", Duration::from_millis(100)),
            ("b", Duration::from_millis(100))
        ]
    );
    // Nothing was created: 10 + 1 refilled = 2 used + 4 + 4 + 1 left.
    assert_eq!(l.tokens_available(), 1.0);
}

/// The bucket was full again while the reservation was out (its booked time had elapsed),
/// and others have taken from it since: the reservation's unused tokens are already back,
/// spent by those others, and a refund now would hand them out a second time.
#[tokio::test(start_paused = true)]
async fn a_refund_gives_back_nothing_once_its_booked_time_has_elapsed() {
    let l = limiter(1.0, 1);
    let reservation = l.reserve(1, "held").await.unwrap();
    let waiter = {
        let l = l.clone();
        tokio::spawn(async move { l.acquire(1, "queued").await.unwrap() })
    };
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    waiter.await.unwrap();
    assert!(l.try_acquire(1).await.unwrap(), "the token of second 2");
    reservation.settle(0).await.unwrap();
    assert!(
        !l.try_acquire(1).await.unwrap(),
        "a second token at second 2 from a bucket of 1"
    );
}

/// Part of the booked time elapsed: only the rest comes back.
#[tokio::test(start_paused = true)]
async fn a_refund_gives_back_only_the_booked_time_still_ahead() {
    let l = limiter(10.0, 10);
    let reservation = l.reserve(10, "held").await.unwrap(); // books 0 s to 1 s
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        l.try_acquire(3).await.unwrap(),
        "the 3 refilled; booked to 1.3 s"
    );
    reservation.settle(0).await.unwrap();
    // 0.7 s of the reservation's second was still ahead: 7 tokens back.
    assert_eq!(l.tokens_available(), 7.0);
}

#[tokio::test(start_paused = true)]
async fn a_cap_lowers_the_bucket_and_never_raises_it() {
    let l = limiter(10.0, 100);
    l.cap_available(30).await.unwrap();
    assert_eq!(l.tokens_available(), 30.0);
    l.cap_available(80).await.unwrap();
    assert_eq!(l.tokens_available(), 30.0);
    l.cap_available(500).await.unwrap();
    assert_eq!(l.tokens_available(), 30.0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(l.tokens_available(), 40.0);
    l.cap_available(0).await.unwrap();
    assert!(!l.try_acquire(1).await.unwrap());
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Reservations held while others take tokens, then settled at or below their size, in
    /// any order: over any span [a, b], the tokens kept by grants in it (reserved minus
    /// refunded) stay within `burst + rate · (b - a)`.
    #[test]
    fn refunds_keep_the_bound_on_what_is_kept(
        burst in 2u32..20,
        ms in 1u64..40,
        steps in prop::collection::vec((0u64..60, 0u8..3, 1u32..20, 0u32..20), 1..60),
    ) {
        let kept = paused(async move {
            let l = limiter(1000.0 / ms as f64, burst);
            let start = Instant::now();
            let mut held = Vec::new();
            let mut kept = Vec::new();
            for (gap, action, tokens, used) in steps {
                tokio::time::sleep(Duration::from_millis(gap)).await;
                let tokens = tokens.min(burst);
                let at = || start.elapsed().as_millis() as u64;
                match action {
                    0 => {
                        let reservation = l.reserve(tokens, "prop").await.unwrap();
                        kept.push((at(), u64::from(used.min(tokens))));
                        held.push((reservation, used.min(tokens)));
                    }
                    1 if !held.is_empty() => {
                        let last = if tokens > 10 { held.len() - 1 } else { 0 };
                        let (reservation, used) = held.remove(last);
                        reservation.settle(u64::from(used)).await.unwrap();
                    }
                    _ => {
                        if l.try_acquire(tokens).await.unwrap() {
                            kept.push((at(), u64::from(tokens)));
                        }
                    }
                }
                if held.len() > 1 && action == 2 {
                    let (reservation, used) = held.remove(0);
                    reservation.settle(u64::from(used)).await.unwrap();
                }
            }
            for (reservation, used) in held {
                reservation.settle(u64::from(used)).await.unwrap();
            }
            kept.sort_by_key(|&(at, _)| at);
            kept
        });
        for (i, &(a, _)) in kept.iter().enumerate() {
            let mut taken = 0;
            for &(b, tokens) in &kept[i..] {
                taken += tokens;
                prop_assert!(
                    taken * ms <= u64::from(burst) * ms + (b - a),
                    "{taken} tokens kept in [{a}, {b}] ms: {kept:?}"
                );
            }
        }
    }
}
