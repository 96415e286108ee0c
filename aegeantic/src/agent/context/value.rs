//! What a context stores, and how its calls fail.

use std::error::Error;

use serde_json::Value;

/// A stored value: JSON, or raw bytes.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum ContextValue {
    /// A JSON value.
    Json(Value),
    /// Bytes, stored as they are.
    Bytes(Vec<u8>),
}

impl ContextValue {
    /// The JSON value, if it is one.
    pub fn as_json(&self) -> Option<&Value> {
        match self {
            ContextValue::Json(value) => Some(value),
            ContextValue::Bytes(_) => None,
        }
    }

    /// The bytes, if they are bytes.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            ContextValue::Bytes(bytes) => Some(bytes),
            ContextValue::Json(_) => None,
        }
    }

    /// The value as a person would read it: JSON as JSON text, bytes as text where they
    /// are UTF-8 (replaced where not).
    pub fn to_text(&self) -> String {
        match self {
            ContextValue::Json(Value::String(text)) => text.clone(),
            ContextValue::Json(value) => value.to_string(),
            ContextValue::Bytes(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        }
    }
}

impl From<Value> for ContextValue {
    fn from(value: Value) -> Self {
        ContextValue::Json(value)
    }
}

impl From<Vec<u8>> for ContextValue {
    fn from(bytes: Vec<u8>) -> Self {
        ContextValue::Bytes(bytes)
    }
}

impl From<&str> for ContextValue {
    fn from(text: &str) -> Self {
        ContextValue::Json(Value::String(text.to_owned()))
    }
}

impl From<String> for ContextValue {
    fn from(text: String) -> Self {
        ContextValue::Json(Value::String(text))
    }
}

/// One version of a key.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ContextEntry {
    /// Its number, from 1.
    pub version: u64,
    /// The value; `None` for the tombstone a delete wrote.
    pub value: Option<ContextValue>,
    /// When it was written (or last updated), in Unix seconds.
    pub timestamp: f64,
}

impl ContextEntry {
    /// Whether this version is a delete's tombstone.
    pub fn is_deleted(&self) -> bool {
        self.value.is_none()
    }
}

/// Why a context call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    /// The storage underneath failed (the database's error is the source).
    #[error("the context store failed")]
    Storage(#[source] Box<dyn Error + Send + Sync>),
    /// A stored entry cannot be read back: the file was changed outside this crate.
    #[error("the stored version {version} of {key:?} is unreadable: {reason}")]
    Corrupt {
        /// The key.
        key: String,
        /// The version.
        version: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A key or the iteration counter is at `u64::MAX`; nothing was written.
    #[error("{what} cannot count past u64::MAX")]
    Exhausted {
        /// The key, or "the iteration counter".
        what: String,
    },
    /// The blocking thread the runner ran the call on did not finish it (it panicked).
    #[error("the context call did not finish")]
    Interrupted(#[source] tokio::task::JoinError),
}

impl ContextError {
    pub(crate) fn exhausted_key(key: &str) -> Self {
        ContextError::Exhausted {
            what: format!("the versions of {key:?}"),
        }
    }

    pub(crate) fn exhausted_iteration() -> Self {
        ContextError::Exhausted {
            what: "the iteration counter".to_owned(),
        }
    }
}
