//! A context in one file, on the redb embedded database (feature `context-redb`).
//!
//! Three tables: every version of every key under `(key, version)`, each key's latest
//! version and whether it is live, and the iteration counter. Every call is one redb
//! transaction, so a crash leaves the file as it was before or after the call, and
//! runners in several processes may share the file (redb's multi-writer mode).

use std::path::Path;

use redb::{
    ConcurrencyMode, Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use serde_json::Value;

use super::{Context, ContextEntry, ContextError, ContextValue};
use crate::events::unix_now;

const VERSIONS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("context_versions");
const LATEST: TableDefinition<&str, (u64, bool)> = TableDefinition::new("context_latest");
const META: TableDefinition<&str, u64> = TableDefinition::new("context_meta");
const ITERATION: &str = "iteration";

/// A [`Context`] stored in one redb file: everything survives the process, and several
/// processes (or runners) may use the file at once.
///
/// ```no_run
/// use aegeantic::agent::{Context, RedbContext};
///
/// let store = RedbContext::open("agent.redb")?;
/// store.set("plan", "reopened tomorrow, still here".into())?;
/// # Ok::<(), aegeantic::agent::ContextError>(())
/// ```
pub struct RedbContext {
    db: Database,
}

impl std::fmt::Debug for RedbContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbContext").finish_non_exhaustive()
    }
}

fn storage(error: impl Into<redb::Error>) -> ContextError {
    ContextError::Storage(Box::new(error.into()))
}

impl RedbContext {
    /// Opens the store at `path`, creating the file if there is none. The file's integrity
    /// is checked as it opens, so a damaged file is an error rather than a crash; other
    /// processes may have it open at the same time.
    ///
    /// # Errors
    /// [`ContextError::Storage`] when the file cannot be opened or is not a redb database.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ContextError> {
        let db = Database::builder()
            .set_concurrency_mode(ConcurrencyMode::MultiWriter)
            .set_check_integrity_on_open(true)
            .create(path)
            .map_err(storage)?;
        let store = RedbContext { db };
        // Create the tables, so that reads of a new file find them.
        store.write(|txn| {
            txn.open_table(VERSIONS).map_err(storage)?;
            txn.open_table(LATEST).map_err(storage)?;
            txn.open_table(META).map_err(storage)?;
            Ok(())
        })?;
        Ok(store)
    }

    /// Runs `change` in a write transaction and commits it if it succeeds.
    fn write<T>(
        &self,
        change: impl FnOnce(&WriteTransaction) -> Result<T, ContextError>,
    ) -> Result<T, ContextError> {
        let txn = self.db.begin_write().map_err(storage)?;
        let out = change(&txn)?;
        txn.commit().map_err(storage)?;
        Ok(out)
    }

    /// Writes a new version of `key`: `value`, or a tombstone.
    fn push(
        txn: &WriteTransaction,
        key: &str,
        value: Option<&ContextValue>,
    ) -> Result<u64, ContextError> {
        let mut latest = txn.open_table(LATEST).map_err(storage)?;
        let version = match latest.get(key).map_err(storage)? {
            Some(guard) => guard
                .value()
                .0
                .checked_add(1)
                .ok_or_else(|| ContextError::exhausted_key(key))?,
            None => 1,
        };
        let mut versions = txn.open_table(VERSIONS).map_err(storage)?;
        versions
            .insert((key, version), encode(value).as_slice())
            .map_err(storage)?;
        latest
            .insert(key, (version, value.is_some()))
            .map_err(storage)?;
        Ok(version)
    }

    fn latest(&self, key: &str) -> Result<Option<(u64, bool)>, ContextError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let latest = txn.open_table(LATEST).map_err(storage)?;
        Ok(latest.get(key).map_err(storage)?.map(|guard| guard.value()))
    }
}

impl Context for RedbContext {
    fn set(&self, key: &str, value: ContextValue) -> Result<u64, ContextError> {
        self.write(|txn| Self::push(txn, key, Some(&value)))
    }

    fn update(&self, key: &str, value: ContextValue) -> Result<u64, ContextError> {
        self.write(|txn| {
            let live = {
                let latest = txn.open_table(LATEST).map_err(storage)?;
                let found = latest.get(key).map_err(storage)?;
                found.map(|guard| guard.value())
            };
            match live {
                Some((version, true)) => {
                    let mut versions = txn.open_table(VERSIONS).map_err(storage)?;
                    versions
                        .insert((key, version), encode(Some(&value)).as_slice())
                        .map_err(storage)?;
                    Ok(version)
                }
                _ => Self::push(txn, key, Some(&value)),
            }
        })
    }

    fn get(&self, key: &str) -> Result<Option<ContextValue>, ContextError> {
        match self.latest(key)? {
            Some((version, true)) => Ok(self
                .get_version(key, version)?
                .and_then(|entry| entry.value)),
            _ => Ok(None),
        }
    }

    fn get_version(&self, key: &str, version: u64) -> Result<Option<ContextEntry>, ContextError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let versions = txn.open_table(VERSIONS).map_err(storage)?;
        let found = versions.get((key, version)).map_err(storage)?;
        found
            .map(|guard| decode(key, version, guard.value()))
            .transpose()
    }

    fn delete(&self, key: &str) -> Result<Option<u64>, ContextError> {
        self.write(|txn| {
            let live = {
                let latest = txn.open_table(LATEST).map_err(storage)?;
                let found = latest.get(key).map_err(storage)?;
                found.is_some_and(|guard| guard.value().1)
            };
            if live {
                Self::push(txn, key, None).map(Some)
            } else {
                Ok(None)
            }
        })
    }

    fn list_keys(&self, prefix: &str) -> Result<Vec<String>, ContextError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let latest = txn.open_table(LATEST).map_err(storage)?;
        let mut keys = Vec::new();
        for row in latest.range(prefix..).map_err(storage)? {
            let (key, state) = row.map_err(storage)?;
            let key = key.value();
            if !key.starts_with(prefix) {
                break;
            }
            if state.value().1 {
                keys.push(key.to_owned());
            }
        }
        Ok(keys)
    }

    fn history(&self, key: &str, max_versions: usize) -> Result<Vec<ContextEntry>, ContextError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let versions = txn.open_table(VERSIONS).map_err(storage)?;
        let mut entries = Vec::new();
        let rows = versions
            .range((key, 0)..=(key, u64::MAX))
            .map_err(storage)?;
        for row in rows.rev().take(max_versions) {
            let (id, bytes) = row.map_err(storage)?;
            entries.push(decode(key, id.value().1, bytes.value())?);
        }
        Ok(entries)
    }

    fn clear(&self) -> Result<(), ContextError> {
        self.write(|txn| {
            txn.open_table(VERSIONS)
                .map_err(storage)?
                .retain(|_, _| false)
                .map_err(storage)?;
            txn.open_table(LATEST)
                .map_err(storage)?
                .retain(|_, _| false)
                .map_err(storage)?;
            Ok(())
        })
    }

    fn iteration(&self) -> Result<u64, ContextError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let meta = txn.open_table(META).map_err(storage)?;
        Ok(meta
            .get(ITERATION)
            .map_err(storage)?
            .map_or(0, |guard| guard.value()))
    }

    fn next_iteration(&self) -> Result<u64, ContextError> {
        self.write(|txn| {
            let mut meta = txn.open_table(META).map_err(storage)?;
            let current = meta
                .get(ITERATION)
                .map_err(storage)?
                .map_or(0, |guard| guard.value());
            let next = current
                .checked_add(1)
                .ok_or_else(ContextError::exhausted_iteration)?;
            meta.insert(ITERATION, next).map_err(storage)?;
            Ok(next)
        })
    }
}

// An entry on disk: a tag (0 tombstone, 1 JSON text, 2 bytes), the timestamp as 8
// little-endian bytes of an f64, then the payload.
const TOMBSTONE: u8 = 0;
const JSON: u8 = 1;
const BYTES: u8 = 2;

fn encode(value: Option<&ContextValue>) -> Vec<u8> {
    let (tag, payload) = match value {
        None => (TOMBSTONE, Vec::new()),
        Some(ContextValue::Json(value)) => (JSON, value.to_string().into_bytes()),
        Some(ContextValue::Bytes(bytes)) => (BYTES, bytes.clone()),
    };
    let mut out = Vec::with_capacity(9 + payload.len());
    out.push(tag);
    out.extend_from_slice(&unix_now().to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

fn decode(key: &str, version: u64, bytes: &[u8]) -> Result<ContextEntry, ContextError> {
    let corrupt = |reason: String| ContextError::Corrupt {
        key: key.to_owned(),
        version,
        reason,
    };
    let (Some(&tag), Some(stamp)) = (bytes.first(), bytes.get(1..9)) else {
        return Err(corrupt(format!("{} bytes is too short", bytes.len())));
    };
    let mut timestamp = [0; 8];
    timestamp.copy_from_slice(stamp);
    let payload = &bytes[9..];
    let value = match tag {
        TOMBSTONE => None,
        JSON => Some(ContextValue::Json(
            serde_json::from_slice::<Value>(payload)
                .map_err(|error| corrupt(format!("not JSON: {error}")))?,
        )),
        BYTES => Some(ContextValue::Bytes(payload.to_vec())),
        other => return Err(corrupt(format!("unknown tag {other}"))),
    };
    Ok(ContextEntry {
        version,
        value,
        timestamp: f64::from_le_bytes(timestamp),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!(
            "aegeantic-{name}-{}-{:x}.redb",
            std::process::id(),
            rand::random::<u64>()
        ));
        let _ = std::fs::remove_file(&path);
        path
    }

    #[test]
    fn the_shared_semantics_hold() {
        let path = temp_path("conformance");
        super::super::conformance::check(&RedbContext::open(&path).unwrap());
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn entries_round_trip_and_damaged_ones_are_errors() {
        for value in [
            None,
            Some(ContextValue::Json(serde_json::json!({"a": [1, "x"]}))),
            Some(ContextValue::Bytes(vec![0, 255, 7])),
            Some(ContextValue::Bytes(Vec::new())),
        ] {
            let entry = decode("k", 3, &encode(value.as_ref())).unwrap();
            assert_eq!((entry.version, entry.value), (3, value));
        }
        for bytes in [
            &b""[..],
            &[1, 0, 0],
            &[9; 12],
            &[1, 0, 0, 0, 0, 0, 0, 0, 0, b'{'],
        ] {
            let error = decode("k", 1, bytes).unwrap_err();
            assert!(matches!(error, ContextError::Corrupt { .. }), "{error}");
        }
    }

    #[test]
    fn a_file_that_is_not_a_database_is_an_error() {
        let path = temp_path("garbage");
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        let error = RedbContext::open(&path).unwrap_err();
        assert!(matches!(error, ContextError::Storage(_)), "{error}");
        std::fs::remove_file(path).unwrap();
    }
}
