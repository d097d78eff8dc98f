//! One conformance suite for every [`StateBackend`]: the RocksDB and the in-memory backends
//! must behave the same way (`run_all` is called from each backend's tests).

use bytes::Bytes;

use super::{StateBackend, StateStore, StoreBatch, StoreWrites};
use crate::task_id::TaskId;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn put(store: &dyn StateStore, name: &str, entries: &[(&str, Option<&str>)]) {
    store
        .write(&StoreBatch {
            stores: vec![StoreWrites {
                store: name.into(),
                entries: entries.iter().map(|(k, v)| (b(k), v.map(b))).collect(),
            }],
            meta: vec![],
        })
        .unwrap();
}

fn keys(v: Vec<(Bytes, Bytes)>) -> Vec<String> {
    v.into_iter()
        .map(|(k, _)| String::from_utf8(k.to_vec()).unwrap())
        .collect()
}

/// Runs every check against `backend` (which must start empty).
pub(crate) fn run_all(backend: &dyn StateBackend) {
    get_put_delete(backend);
    ranges(backend);
    stores_and_tasks_are_isolated(backend);
    meta_and_batches(backend);
    clear_and_destroy(backend);
}

fn get_put_delete(backend: &dyn StateBackend) {
    let s = backend.open(&TaskId::new("gpd", 0)).unwrap();
    assert_eq!(s.get("a", b"k").unwrap(), None);
    put(&*s, "a", &[("k", Some("1"))]);
    assert_eq!(s.get("a", b"k").unwrap(), Some(b("1")));
    put(&*s, "a", &[("k", Some("2"))]);
    assert_eq!(s.get("a", b"k").unwrap(), Some(b("2")));
    put(&*s, "a", &[("k", None), ("gone", None)]);
    assert_eq!(s.get("a", b"k").unwrap(), None);
    // Empty keys and values, binary keys.
    put(&*s, "a", &[("", Some(""))]);
    assert_eq!(s.get("a", b"").unwrap(), Some(b("")));
    s.write(&StoreBatch {
        stores: vec![StoreWrites {
            store: "a".into(),
            entries: vec![(Bytes::from_static(&[0, 255, 1]), Some(b("bin")))],
        }],
        meta: vec![],
    })
    .unwrap();
    assert_eq!(s.get("a", &[0, 255, 1]).unwrap(), Some(b("bin")));
    // Reopening the same task sees the same data.
    let again = backend.open(&TaskId::new("gpd", 0)).unwrap();
    assert_eq!(again.get("a", b"").unwrap(), Some(b("")));
}

fn ranges(backend: &dyn StateBackend) {
    let s = backend.open(&TaskId::new("rng", 0)).unwrap();
    put(
        &*s,
        "r",
        &[
            ("b", Some("2")),
            ("a", Some("1")),
            ("d", Some("4")),
            ("c", Some("3")),
            ("ca", Some("x")),
        ],
    );
    assert_eq!(
        keys(s.range("r", None, None, 100).unwrap()),
        ["a", "b", "c", "ca", "d"]
    );
    assert_eq!(
        keys(s.range("r", Some(b"b"), Some(b"d"), 100).unwrap()),
        ["b", "c", "ca"]
    );
    assert_eq!(
        keys(s.range("r", Some(b"c"), None, 100).unwrap()),
        ["c", "ca", "d"]
    );
    assert_eq!(keys(s.range("r", None, Some(b"b"), 100).unwrap()), ["a"]);
    assert_eq!(keys(s.range("r", None, None, 2).unwrap()), ["a", "b"]);
    assert!(s.range("r", None, None, 0).unwrap().is_empty());
    assert!(s.range("r", Some(b"d"), Some(b"a"), 10).unwrap().is_empty());
    let all = s.range("r", Some(b"a"), Some(b"b"), 10).unwrap();
    assert_eq!(all, vec![(b("a"), b("1"))]);
    assert!(s.range("empty", None, None, 10).unwrap().is_empty());
}

fn stores_and_tasks_are_isolated(backend: &dyn StateBackend) {
    let t0 = backend.open(&TaskId::new("iso", 0)).unwrap();
    let t1 = backend.open(&TaskId::new("iso", 1)).unwrap();
    let other = backend.open(&TaskId::new("iso2", 0)).unwrap();
    put(&*t0, "a", &[("k", Some("t0-a"))]);
    put(&*t0, "ab", &[("k", Some("t0-ab"))]);
    put(&*t1, "a", &[("k", Some("t1-a"))]);
    assert_eq!(t0.get("a", b"k").unwrap(), Some(b("t0-a")));
    assert_eq!(t0.get("ab", b"k").unwrap(), Some(b("t0-ab")));
    assert_eq!(t1.get("a", b"k").unwrap(), Some(b("t1-a")));
    assert_eq!(t1.get("ab", b"k").unwrap(), None);
    assert_eq!(other.get("a", b"k").unwrap(), None);
    // A store's scan never reaches a store whose name extends it ("a" vs "ab").
    assert_eq!(keys(t0.range("a", None, None, 10).unwrap()), ["k"]);
    // Bookkeeping is not a store entry.
    t0.write(&StoreBatch {
        stores: vec![],
        meta: vec![("m".into(), Some(b("v")))],
    })
    .unwrap();
    assert_eq!(keys(t0.range("a", None, None, 10).unwrap()), ["k"]);
    assert_eq!(t1.meta("m").unwrap(), None);
}

fn meta_and_batches(backend: &dyn StateBackend) {
    let s = backend.open(&TaskId::new("meta", 0)).unwrap();
    assert_eq!(s.meta("checkpoint").unwrap(), None);
    s.write(&StoreBatch {
        stores: vec![
            StoreWrites {
                store: "x".into(),
                entries: vec![(b("1"), Some(b("one")))],
            },
            StoreWrites {
                store: "y".into(),
                entries: vec![(b("2"), Some(b("two")))],
            },
        ],
        meta: vec![("checkpoint".into(), Some(b("5")))],
    })
    .unwrap();
    assert_eq!(s.meta("checkpoint").unwrap(), Some(b("5")));
    assert_eq!(s.get("y", b"2").unwrap(), Some(b("two")));
    s.write_unlogged(&StoreBatch {
        stores: vec![StoreWrites {
            store: "x".into(),
            entries: vec![(b("1"), None), (b("3"), Some(b("three")))],
        }],
        meta: vec![("checkpoint".into(), None)],
    })
    .unwrap();
    s.flush().unwrap();
    assert_eq!(s.get("x", b"1").unwrap(), None);
    assert_eq!(s.get("x", b"3").unwrap(), Some(b("three")));
    assert_eq!(s.meta("checkpoint").unwrap(), None);
    // Invalid store names are refused.
    let bad = s.write(&StoreBatch {
        stores: vec![StoreWrites {
            store: "no.dots".into(),
            entries: vec![(b("k"), Some(b("v")))],
        }],
        meta: vec![],
    });
    assert_eq!(bad.unwrap_err().code(), "invalid_store_name");
}

fn clear_and_destroy(backend: &dyn StateBackend) {
    let id = TaskId::new("gone", 3);
    let s = backend.open(&id).unwrap();
    put(&*s, "a", &[("k", Some("v"))]);
    s.write(&StoreBatch {
        stores: vec![],
        meta: vec![("m".into(), Some(b("v")))],
    })
    .unwrap();
    s.clear().unwrap();
    assert_eq!(s.get("a", b"k").unwrap(), None);
    assert_eq!(s.meta("m").unwrap(), None);
    put(&*s, "a", &[("k", Some("again"))]);
    assert!(backend.tasks().unwrap().contains(&id));

    backend.destroy(&id).unwrap();
    assert!(!backend.tasks().unwrap().contains(&id));
    assert_eq!(s.get("a", b"k").unwrap_err().code(), "task_removed");
    backend.destroy(&id).unwrap();
    // A new task of the same name starts empty.
    let fresh = backend.open(&id).unwrap();
    assert_eq!(fresh.get("a", b"k").unwrap(), None);
}
