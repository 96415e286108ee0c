//! The default context: a map in memory, gone with the process.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{Context, ContextEntry, ContextError, ContextValue};
use crate::events::unix_now;

/// A [`Context`] in memory, shared by whoever holds it (wrap it in an `Arc`). What an agent
/// uses when it is given no other.
#[derive(Debug, Default)]
pub struct InMemoryContext {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    keys: BTreeMap<String, Vec<ContextEntry>>,
    iteration: u64,
}

impl InMemoryContext {
    /// An empty store, its iteration counter at 0.
    pub fn new() -> Self {
        InMemoryContext::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every change is one push or one assignment: a panic elsewhere leaves no half
        // write behind.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn push(
    versions: &mut Vec<ContextEntry>,
    key: &str,
    value: Option<ContextValue>,
) -> Result<u64, ContextError> {
    let version = match versions.last() {
        Some(last) => last
            .version
            .checked_add(1)
            .ok_or_else(|| ContextError::exhausted_key(key))?,
        None => 1,
    };
    versions.push(ContextEntry {
        version,
        value,
        timestamp: unix_now(),
    });
    Ok(version)
}

impl Context for InMemoryContext {
    fn set(&self, key: &str, value: ContextValue) -> Result<u64, ContextError> {
        let mut state = self.state();
        push(
            state.keys.entry(key.to_owned()).or_default(),
            key,
            Some(value),
        )
    }

    fn update(&self, key: &str, value: ContextValue) -> Result<u64, ContextError> {
        let mut state = self.state();
        let versions = state.keys.entry(key.to_owned()).or_default();
        match versions.last_mut() {
            Some(last) if !last.is_deleted() => {
                last.value = Some(value);
                last.timestamp = unix_now();
                Ok(last.version)
            }
            _ => push(versions, key, Some(value)),
        }
    }

    fn get(&self, key: &str) -> Result<Option<ContextValue>, ContextError> {
        let state = self.state();
        Ok(state
            .keys
            .get(key)
            .and_then(|versions| versions.last())
            .and_then(|last| last.value.clone()))
    }

    fn get_version(&self, key: &str, version: u64) -> Result<Option<ContextEntry>, ContextError> {
        let state = self.state();
        let Some(versions) = state.keys.get(key) else {
            return Ok(None);
        };
        // Versions are 1, 2, 3, ... in order.
        let found = usize::try_from(version)
            .ok()
            .and_then(|version| version.checked_sub(1))
            .and_then(|index| versions.get(index));
        Ok(found.cloned())
    }

    fn delete(&self, key: &str) -> Result<Option<u64>, ContextError> {
        let mut state = self.state();
        match state.keys.get_mut(key) {
            Some(versions) if versions.last().is_some_and(|last| !last.is_deleted()) => {
                push(versions, key, None).map(Some)
            }
            _ => Ok(None),
        }
    }

    fn list_keys(&self, prefix: &str) -> Result<Vec<String>, ContextError> {
        let state = self.state();
        Ok(state
            .keys
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(key, _)| key.starts_with(prefix))
            .filter(|(_, versions)| versions.last().is_some_and(|last| !last.is_deleted()))
            .map(|(key, _)| key.clone())
            .collect())
    }

    fn history(&self, key: &str, max_versions: usize) -> Result<Vec<ContextEntry>, ContextError> {
        let state = self.state();
        Ok(state
            .keys
            .get(key)
            .map(|versions| versions.iter().rev().take(max_versions).cloned().collect())
            .unwrap_or_default())
    }

    fn clear(&self) -> Result<(), ContextError> {
        self.state().keys.clear();
        Ok(())
    }

    fn iteration(&self) -> Result<u64, ContextError> {
        Ok(self.state().iteration)
    }

    fn next_iteration(&self) -> Result<u64, ContextError> {
        let mut state = self.state();
        state.iteration = state
            .iteration
            .checked_add(1)
            .ok_or_else(ContextError::exhausted_iteration)?;
        Ok(state.iteration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_semantics_hold() {
        super::super::conformance::check(&InMemoryContext::new());
    }
}
