//! The live heap: a global allocator that forwards to the system's and counts the bytes and
//! blocks the program holds. Unlike RSS it does not include what the allocator keeps after
//! a free, so it is what a leak check can compare exactly. The binary that runs the soak
//! installs it (`#[global_allocator] static HEAP: Counting = Counting;`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

/// Forwards to [`System`]; counts what is live.
pub struct Counting;

static LIVE_BYTES: AtomicU64 = AtomicU64::new(0);
static LIVE_BLOCKS: AtomicU64 = AtomicU64::new(0);
/// The most `LIVE_BYTES` has been since [`take_peak`] last read it.
static PEAK_BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call forwards to `System` with the caller's layout and pointer; the counts
// are side effects only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc`, passed on.
        let block = unsafe { System.alloc(layout) };
        if !block.is_null() {
            grew(layout.size());
        }
        block
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        let block = unsafe { System.alloc_zeroed(layout) };
        if !block.is_null() {
            grew(layout.size());
        }
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        // SAFETY: `block` came from this allocator, that is from `System`, with `layout`.
        unsafe { System.dealloc(block, layout) };
        LIVE_BYTES.fetch_sub(size(layout.size()), Ordering::Relaxed);
        LIVE_BLOCKS.fetch_sub(1, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as `dealloc`, and `new_size` is the caller's.
        let moved = unsafe { System.realloc(block, layout, new_size) };
        if !moved.is_null() {
            let live = LIVE_BYTES.fetch_add(size(new_size), Ordering::Relaxed) + size(new_size);
            raise_peak(live);
            LIVE_BYTES.fetch_sub(size(layout.size()), Ordering::Relaxed);
        }
        moved
    }
}

fn grew(bytes: usize) {
    let bytes = size(bytes);
    let live = LIVE_BYTES.fetch_add(bytes, Ordering::Relaxed) + bytes;
    LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed);
    raise_peak(live);
}

fn raise_peak(live: u64) {
    // A plain load first: the peak is rarely beaten, and a load costs less than the
    // read-modify-write on a line the other threads also write.
    if live > PEAK_BYTES.load(Ordering::Relaxed) {
        PEAK_BYTES.fetch_max(live, Ordering::Relaxed);
    }
}

fn size(bytes: usize) -> u64 {
    u64::try_from(bytes).unwrap_or(u64::MAX)
}

/// What the program holds now: the bytes it asked for (not the allocator's rounding and
/// headers) and the number of blocks. Both 0 when [`Counting`] is not the global allocator.
pub fn live() -> (u64, u64) {
    (
        LIVE_BYTES.load(Ordering::Relaxed),
        LIVE_BLOCKS.load(Ordering::Relaxed),
    )
}

/// The most live bytes since the last call (or the start), and a new interval begun.
pub fn take_peak() -> u64 {
    PEAK_BYTES.swap(LIVE_BYTES.load(Ordering::Relaxed), Ordering::Relaxed)
}
