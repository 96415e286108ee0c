//! 10,000 queued waiters: each is admitted in order, at its instant, woken about once.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{limiter, CountPolls};
use tokio::time::Instant;

const WAITERS: u64 = 10_000;

#[tokio::test(start_paused = true)]
async fn ten_thousand_waiters_each_woken_about_once() {
    // 1,000/s with a burst of 1: one grant per millisecond, each on its own timer tick.
    let l = limiter(1000.0, 1);
    assert!(l.try_acquire(1).await.unwrap());
    let start = Instant::now();
    let polls = Arc::new(AtomicU64::new(0));
    let order = Arc::new(Mutex::new(Vec::with_capacity(WAITERS as usize)));
    let mut tasks = Vec::new();
    for i in 0..WAITERS {
        let (l, order) = (l.clone(), order.clone());
        let acquire = CountPolls {
            inner: async move { l.acquire(1, "waiter").await.unwrap() },
            polls: polls.clone(),
        };
        tasks.push(tokio::spawn(async move {
            let got = acquire.await;
            order.lock().unwrap().push((i, start.elapsed()));
            got
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let order = order.lock().unwrap();
    for (k, &(i, at)) in order.iter().enumerate() {
        assert_eq!(i, k as u64, "admitted in arrival order");
        assert_eq!(
            at,
            Duration::from_millis(k as u64 + 1),
            "admitted at its instant"
        );
    }
    let polls = polls.load(Ordering::Relaxed);
    // One poll to queue, one when its timer fires.
    let wakeups_per_waiter = (polls - WAITERS) as f64 / WAITERS as f64;
    println!("{WAITERS} waiters: {polls} polls, {wakeups_per_waiter:.3} wakeups per waiter");
    assert!(wakeups_per_waiter <= 1.05, "{wakeups_per_waiter}");
}
