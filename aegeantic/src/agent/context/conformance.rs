//! What every backend must do, checked against each one.

use serde_json::json;

use super::{Context, ContextValue};

/// Runs the shared checks on an empty `store`.
pub(crate) fn check(store: &dyn Context) {
    let json = |value| ContextValue::Json(value);
    assert_eq!(store.get("a").unwrap(), None);
    assert_eq!(store.iteration().unwrap(), 0);

    // set: a new version each time.
    assert_eq!(store.set("a", json(json!(1))).unwrap(), 1);
    assert_eq!(store.set("a", json(json!(2))).unwrap(), 2);
    assert_eq!(store.get("a").unwrap(), Some(json(json!(2))));
    assert_eq!(
        store.get_version("a", 1).unwrap().unwrap().value,
        Some(json(json!(1)))
    );
    assert_eq!(store.get_version("a", 3).unwrap(), None);
    assert_eq!(store.get_version("a", 0).unwrap(), None);
    assert_eq!(store.get_version("a", u64::MAX).unwrap(), None);

    // update: the latest version, overwritten.
    assert_eq!(store.update("a", json(json!(3))).unwrap(), 2);
    assert_eq!(store.get("a").unwrap(), Some(json(json!(3))));
    assert_eq!(store.update("new", "first".into()).unwrap(), 1);

    // delete: a tombstone; the history stays.
    assert_eq!(store.delete("a").unwrap(), Some(3));
    assert_eq!(store.delete("a").unwrap(), None, "already deleted");
    assert_eq!(store.delete("absent").unwrap(), None);
    assert_eq!(store.get("a").unwrap(), None);
    assert!(store.get_version("a", 3).unwrap().unwrap().is_deleted());
    let history = store.history("a", 10).unwrap();
    let versions: Vec<u64> = history.iter().map(|entry| entry.version).collect();
    assert_eq!(versions, [3, 2, 1], "newest first");
    assert_eq!(history[1].value, Some(json(json!(3))));
    assert_eq!(store.history("a", 2).unwrap().len(), 2);
    assert_eq!(store.history("a", 0).unwrap(), []);
    assert_eq!(store.history("absent", 5).unwrap(), []);
    // update after a delete writes a new version.
    assert_eq!(store.update("a", json(json!(4))).unwrap(), 4);
    assert_eq!(store.delete("a").unwrap(), Some(5));

    // Bytes, and keys by prefix.
    store.set("tool:1:x", vec![0u8, 159, 255].into()).unwrap();
    store.set("tool:1:y", json(json!({"k": "v"}))).unwrap();
    store.set("tool:2", json(json!(null))).unwrap();
    store.set("tools", json(json!(0))).unwrap();
    store.set("to", json(json!(0))).unwrap();
    store.delete("tool:1:y").unwrap();
    assert_eq!(
        store.get("tool:1:x").unwrap(),
        Some(ContextValue::Bytes(vec![0, 159, 255]))
    );
    assert_eq!(store.list_keys("tool:").unwrap(), ["tool:1:x", "tool:2"]);
    assert_eq!(
        store.list_keys("").unwrap(),
        ["new", "to", "tool:1:x", "tool:2", "tools"]
    );
    assert_eq!(store.list_keys("zz").unwrap(), Vec::<String>::new());

    // The iteration counter, kept by clear.
    assert_eq!(store.next_iteration().unwrap(), 1);
    assert_eq!(store.next_iteration().unwrap(), 2);
    store.clear().unwrap();
    assert_eq!(store.iteration().unwrap(), 2);
    assert_eq!(store.list_keys("").unwrap(), Vec::<String>::new());
    assert_eq!(store.history("a", 10).unwrap(), []);
    assert_eq!(store.set("a", json(json!("again"))).unwrap(), 1);
}
