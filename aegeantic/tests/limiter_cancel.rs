//! A queue abandoned from the front: the waiters that stay move up to exact instants, and
//! each is woken a bounded number of times however many gave up ahead of it.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{limiter, CountPolls};
use tokio::time::Instant;

const QUEUED: u64 = 2_000;

#[tokio::test(start_paused = true)]
async fn waiters_behind_a_thousand_cancellations_are_woken_about_twice() {
    // 1,000/s with a burst of 1: one token a millisecond, the bucket empty.
    let l = limiter(1000.0, 1);
    assert!(l.try_acquire(1).await.unwrap());
    let start = Instant::now();
    let polls = Arc::new(AtomicU64::new(0));
    let mut tasks: Vec<_> = (0..QUEUED)
        .map(|_| {
            let l = l.clone();
            tokio::spawn(CountPolls {
                inner: async move {
                    l.acquire(1, "waiter").await.unwrap();
                    start.elapsed()
                },
                polls: polls.clone(),
            })
        })
        .collect();
    tokio::task::yield_now().await; // every task queues
    let staying = tasks.split_off(QUEUED as usize / 2);
    for task in &tasks {
        task.abort();
        tokio::task::yield_now().await; // let the cancellation and its wake-ups run
    }
    let queued_polls = polls.load(Ordering::Relaxed);
    // Each cancellation wakes at most the one waiter directly behind it.
    assert!(
        queued_polls < QUEUED + QUEUED / 2 + 10,
        "{queued_polls} polls while the front of the queue gave up"
    );
    for (k, task) in (1..).zip(staying) {
        let at = task.await.unwrap();
        assert_eq!(
            at,
            Duration::from_millis(k),
            "moved up by every cancelled token"
        );
    }
    let survivors = QUEUED / 2;
    let after = (polls.load(Ordering::Relaxed) - queued_polls) as f64 / survivors as f64;
    // Queueing polled every task once. After that a survivor is polled to re-arm its timer
    // when the waiter ahead leaves, and once more when the timer fires.
    assert!(
        after <= 2.05,
        "{after:.3} polls per survivor after queueing"
    );
}
