//! Allocations on the hot paths in this build, counted by the global allocator: the bench
//! is built as production builds are, so this checks the production clock's path, where
//! `tests/alloc.rs` checks the test build's.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::ready;
use std::io;
use std::sync::Arc;
use std::task::Poll;

use aegeantic::events::OperationType;
use aegeantic::resilience::{
    resilient_stream, retry_stream, RateLimitConfig, RateLimiter, RetryConfig,
};
use futures::stream;
use futures::FutureExt;

use crate::hot::poll_once;
use crate::record::put;
use crate::streams::drain;

/// Counts this thread's allocations; everything else goes to the system allocator as is.
pub struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to the system allocator unchanged; counting touches only
// a thread-local `Cell`, which needs no allocation.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations per operation while `ops` operations run in `f`.
fn per_op(ops: u64, f: impl FnOnce()) -> f64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    (ALLOCATIONS.with(Cell::get) - before) as f64 / ops as f64
}

fn limiter(per_second: f64, burst: u32) -> RateLimiter {
    RateLimiter::new(RateLimitConfig {
        requests_per_second: Some(per_second),
        burst_size: burst,
        ..RateLimitConfig::default()
    })
    .expect("valid config")
}

pub fn all() {
    const N: u64 = 100_000;
    let l = limiter(1000.0, 1000);
    let admitted = per_op(N, || {
        for _ in 0..N {
            std::hint::black_box(
                l.try_acquire(1)
                    .now_or_never()
                    .expect("the in-process limiter answers at once")
                    .unwrap(),
            );
        }
    });
    put("allocs/try_acquire", admitted);

    let l = limiter(1e6, 1_000_000_000);
    put(
        "allocs/acquire_ready",
        per_op(N, || {
            for _ in 0..N {
                assert!(matches!(poll_once(l.acquire(1, "op")), Poll::Ready(Ok(_))));
            }
        }),
    );

    let items = 1_000_000;
    let stream = resilient_stream(
        move || stream::iter((0..items).map(Ok::<u64, io::Error>)),
        Some(RetryConfig::default()),
        Some(l.clone()),
        "op",
        OperationType::Llm,
    );
    put(
        "allocs/stream_item",
        per_op(items, || assert_eq!(drain(stream), items + 1)),
    );

    let config = RetryConfig::default();
    let name: Arc<str> = "op".into();
    put(
        "allocs/retry_one_shot",
        per_op(N, || {
            for _ in 0..N {
                let once = || stream::once(ready(Ok::<u64, io::Error>(1)));
                let retried = retry_stream(once, config.clone(), name.clone(), OperationType::Llm);
                assert_eq!(drain(retried), 1);
            }
        }),
    );
    put(
        "allocs/retry_future",
        per_op(N, || {
            for _ in 0..N {
                let call = || ready(Ok::<u64, io::Error>(1));
                let retried = aegeantic::resilience::retry(call, config.clone());
                assert!(matches!(poll_once(retried), Poll::Ready(Ok(1))));
            }
        }),
    );
}
