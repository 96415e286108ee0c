//! The primitives the bucket's shared state is made of: std's, or loom's when the
//! interleaving tests are built (`--cfg aegeantic_loom` in a test build, see
//! `loom_tests.rs`), so that loom sees and permutes every access.

#[cfg(all(test, aegeantic_loom))]
pub(super) use loom::sync::{
    atomic::{AtomicU64, Ordering},
    Mutex, MutexGuard,
};
#[cfg(not(all(test, aegeantic_loom)))]
pub(super) use std::sync::{
    atomic::{AtomicU64, Ordering},
    Mutex, MutexGuard,
};
