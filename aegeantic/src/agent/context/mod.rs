//! The agent's context: a versioned key-value store the agent reads its inputs from and
//! writes what its steps produced to, with an iteration counter the runner advances once
//! per step.
//!
//! | file     | concern                                                  |
//! |----------|----------------------------------------------------------|
//! | `value`  | [`ContextValue`], [`ContextEntry`], [`ContextError`]     |
//! | `memory` | [`InMemoryContext`], the default                         |
//! | `redb`   | [`RedbContext`], one file on disk (feature `context-redb`) |
//!
//! Every backend keeps each key's versions: [`set`](Context::set) writes version 1, 2, 3,
//! ...; [`update`](Context::update) overwrites the latest; [`delete`](Context::delete)
//! writes a tombstone version, so the history stays readable.
//!
//! ```
//! use aegeantic::agent::{Context, InMemoryContext};
//! use serde_json::json;
//!
//! let store = InMemoryContext::new();
//! assert_eq!(store.set("plan", json!("draft").into())?, 1);
//! assert_eq!(store.set("plan", json!("final").into())?, 2);
//! store.delete("plan")?;
//! assert_eq!(store.get("plan")?, None);
//! let history = store.history("plan", 10)?;
//! assert_eq!(history.len(), 3, "newest first: the tombstone, final, draft");
//! assert!(history[0].is_deleted());
//! assert_eq!(history[2].value, Some(json!("draft").into()));
//! # Ok::<(), aegeantic::agent::ContextError>(())
//! ```

mod memory;
#[cfg(feature = "context-redb")]
mod redb;
mod value;

use std::sync::Arc;

pub use memory::InMemoryContext;
#[cfg(feature = "context-redb")]
pub use redb::RedbContext;
pub use value::{ContextEntry, ContextError, ContextValue};

/// A versioned key-value store with an iteration counter.
///
/// The calls are synchronous: a backend may do blocking I/O, and the runner calls it from
/// tokio's blocking threads (`spawn_blocking`), never from its async task. Implementations
/// must be safe to share between runners: each call is atomic.
pub trait Context: Send + Sync {
    /// Writes `value` as a new version of `key` and returns its number (1 for a new key).
    fn set(&self, key: &str, value: ContextValue) -> Result<u64, ContextError>;

    /// Overwrites the latest version of `key` and returns its number; for a key that is
    /// absent or deleted, writes a new version as [`set`](Context::set) does.
    fn update(&self, key: &str, value: ContextValue) -> Result<u64, ContextError>;

    /// The latest value of `key`; `None` when it is absent or deleted.
    fn get(&self, key: &str) -> Result<Option<ContextValue>, ContextError>;

    /// Version `version` of `key` (a tombstone for a delete), if it exists.
    fn get_version(&self, key: &str, version: u64) -> Result<Option<ContextEntry>, ContextError>;

    /// Writes a tombstone as a new version of `key` and returns its number; `None`, and
    /// nothing written, when the key is absent or already deleted.
    fn delete(&self, key: &str) -> Result<Option<u64>, ContextError>;

    /// The keys starting with `prefix` whose latest version is not a tombstone, in order.
    fn list_keys(&self, prefix: &str) -> Result<Vec<String>, ContextError>;

    /// Up to `max_versions` versions of `key`, newest first, tombstones included.
    fn history(&self, key: &str, max_versions: usize) -> Result<Vec<ContextEntry>, ContextError>;

    /// Removes every key and its history; the iteration counter stays.
    fn clear(&self) -> Result<(), ContextError>;

    /// The iteration counter: how many steps have begun on this store (0 for a new one).
    fn iteration(&self) -> Result<u64, ContextError>;

    /// Advances the iteration counter and returns its new value. Two runners sharing the
    /// store never get the same number.
    fn next_iteration(&self) -> Result<u64, ContextError>;
}

/// A shared store is a store, so that runners can share one: `Arc::new(store)` in each.
impl<C: Context + ?Sized> Context for Arc<C> {
    fn set(&self, key: &str, value: ContextValue) -> Result<u64, ContextError> {
        (**self).set(key, value)
    }
    fn update(&self, key: &str, value: ContextValue) -> Result<u64, ContextError> {
        (**self).update(key, value)
    }
    fn get(&self, key: &str) -> Result<Option<ContextValue>, ContextError> {
        (**self).get(key)
    }
    fn get_version(&self, key: &str, version: u64) -> Result<Option<ContextEntry>, ContextError> {
        (**self).get_version(key, version)
    }
    fn delete(&self, key: &str) -> Result<Option<u64>, ContextError> {
        (**self).delete(key)
    }
    fn list_keys(&self, prefix: &str) -> Result<Vec<String>, ContextError> {
        (**self).list_keys(prefix)
    }
    fn history(&self, key: &str, max_versions: usize) -> Result<Vec<ContextEntry>, ContextError> {
        (**self).history(key, max_versions)
    }
    fn clear(&self) -> Result<(), ContextError> {
        (**self).clear()
    }
    fn iteration(&self) -> Result<u64, ContextError> {
        (**self).iteration()
    }
    fn next_iteration(&self) -> Result<u64, ContextError> {
        (**self).next_iteration()
    }
}

#[cfg(test)]
pub(crate) mod conformance;
