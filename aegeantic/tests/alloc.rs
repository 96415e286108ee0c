//! The hot paths allocate nothing: a counting global allocator watches them.
//!
//! Counts are per thread, so tests running side by side do not see each other's
//! allocations.
//!
//! Built without the `metrics` feature: the facade builds each metric's key, labels and
//! all, on the heap. `./test.sh` runs these in a build of their own for that reason.
#![cfg(not(feature = "metrics"))]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::{ready, Future};
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use aegeantic::events::OperationType;
use aegeantic::resilience::{resilient_stream, retry_stream, RetryConfig};
use common::limiter;
use futures::stream::{self, Stream};
use futures::FutureExt;

struct Counting;

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

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by this thread while `f` runs.
fn allocations<R>(f: impl FnOnce() -> R) -> (u64, R) {
    let before = ALLOCATIONS.with(Cell::get);
    let result = f();
    (ALLOCATIONS.with(Cell::get) - before, result)
}

fn poll_once<F: Future>(future: F) -> Poll<F::Output> {
    pin!(future).poll(&mut Context::from_waker(Waker::noop()))
}

/// Polls a stream that never waits to its end; returns how many items it yielded.
fn drain<S: Stream>(stream: S) -> u64 {
    let mut stream = pin!(stream);
    let mut cx = Context::from_waker(Waker::noop());
    let mut count = 0;
    loop {
        match stream.as_mut().poll_next(&mut cx) {
            Poll::Ready(Some(_)) => count += 1,
            Poll::Ready(None) => return count,
            Poll::Pending => panic!("a ready stream returned Pending"),
        }
    }
}

#[test]
fn try_acquire_allocates_nothing_admitted_or_refused() {
    // A burst of 1,000 and a refill far slower than the calls: the rest are refused.
    let l = limiter(1000.0, 1000);
    let (allocated, admitted) = allocations(|| {
        (0..10_000)
            .filter(|_| l.try_acquire(1).now_or_never().unwrap().unwrap())
            .count()
    });
    assert!((1000..10_000).contains(&admitted), "{admitted}");
    assert_eq!(allocated, 0);
}

#[test]
fn acquire_with_tokens_there_allocates_nothing() {
    let l = limiter(1e6, 1_000_000);
    let (allocated, ready) = allocations(|| {
        (0..10_000)
            .filter(|_| matches!(poll_once(l.acquire(1, "op")), Poll::Ready(Ok(_))))
            .count()
    });
    // Polled outside any runtime, where no timer can be made (a queued acquire fails with
    // `NoRuntime`): ready on the first poll means no timer was registered either.
    assert_eq!(ready, 10_000, "no call waits");
    assert_eq!(allocated, 0);
}

#[test]
fn a_wrapped_stream_allocates_nothing_per_item() {
    const ITEMS: u64 = 1_000_000;
    let retry = RetryConfig::builder().build().unwrap();
    let l = limiter(1e6, 10);
    let stream = resilient_stream(
        || stream::iter((0..ITEMS).map(Ok::<u64, io::Error>)),
        Some(retry),
        Some(l),
        "op",
        "llm",
    );
    // Setting up may allocate (the operation name); a million items must not.
    let (allocated, yielded) = allocations(|| drain(stream));
    assert_eq!(yielded, ITEMS + 1, "one rate-limit event, then the items");
    assert_eq!(allocated, 0);
}

#[test]
fn retrying_a_stream_that_succeeds_allocates_nothing() {
    let config = RetryConfig::builder().build().unwrap();
    let name: Arc<str> = "op".into();
    let (allocated, items) = allocations(|| {
        (0..1000)
            .map(|_| {
                let once = || stream::once(ready(Ok::<u32, io::Error>(1)));
                drain(retry_stream(
                    once,
                    config.clone(),
                    name.clone(),
                    OperationType::Llm,
                ))
            })
            .sum::<u64>()
    });
    assert_eq!(items, 1000);
    assert_eq!(allocated, 0);
}

#[test]
fn retrying_a_future_that_succeeds_allocates_nothing() {
    let config = RetryConfig::builder().build().unwrap();
    let (allocated, succeeded) = allocations(|| {
        (0..1000)
            .filter(|_| {
                let call = || ready(Ok::<u32, io::Error>(1));
                let retried = aegeantic::resilience::retry(call, config.clone());
                matches!(poll_once(retried), Poll::Ready(Ok(1)))
            })
            .count()
    });
    assert_eq!(succeeded, 1000);
    assert_eq!(
        allocated, 0,
        "the state machine is built only for a failure"
    );
}

#[test]
fn a_literal_operation_name_is_not_copied_until_an_event_needs_it() {
    let config = RetryConfig::builder().build().unwrap();
    let (allocated, items) = allocations(|| {
        (0..1000)
            .map(|_| {
                let once = || stream::once(ready(Ok::<u32, io::Error>(1)));
                drain(retry_stream(once, config.clone(), "op", "llm"))
            })
            .sum::<u64>()
    });
    assert_eq!(items, 1000);
    assert_eq!(allocated, 0);
}
