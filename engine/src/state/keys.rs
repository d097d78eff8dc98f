//! How a task's stores share one keyspace (a RocksDB column family, or one in-memory map):
//! every user key is prefixed by its store's name, `[name length: u8][name][key]`, and the
//! engine's own bookkeeping (checkpoints, the dirty flag) lives under `[0][meta name]`. Store
//! names are 1..=100 bytes of `[A-Za-z0-9_-]`, so the first byte of any key is at most 100
//! and a prefix never matches another store's keys.

use super::StateError;

/// Longest store name.
pub const MAX_STORE_NAME: usize = 100;

/// Prefix of the stores the engine keeps for itself (timers); guests cannot open them.
pub const INTERNAL_PREFIX: &str = "__";

/// Checks a store name (internal names allowed).
pub fn check_store_name(name: &str) -> Result<(), StateError> {
    let invalid = |reason| StateError::InvalidStoreName {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() || name.len() > MAX_STORE_NAME {
        return Err(invalid("must be 1 to 100 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(invalid("may contain only letters, digits, '_' and '-'"));
    }
    Ok(())
}

/// Checks a store name a guest asked for: a valid name that is not internal.
pub fn check_user_store_name(name: &str) -> Result<(), StateError> {
    check_store_name(name)?;
    if name.starts_with(INTERNAL_PREFIX) {
        return Err(StateError::InvalidStoreName {
            name: name.to_string(),
            reason: "names starting with '__' are reserved for the engine",
        });
    }
    Ok(())
}

/// `[len][name]`: the prefix of every key of `store`.
pub fn store_prefix(store: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + store.len());
    k.push(store.len() as u8);
    k.extend_from_slice(store.as_bytes());
    k
}

/// The physical key of `key` in `store`.
pub fn data_key(store: &str, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + store.len() + key.len());
    k.push(store.len() as u8);
    k.extend_from_slice(store.as_bytes());
    k.extend_from_slice(key);
    k
}

/// The physical key of an engine bookkeeping entry.
pub fn meta_key(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(0);
    k.extend_from_slice(name.as_bytes());
    k
}

/// Physical bounds `[lower, upper)` of `start <= key < end` in `store`.
pub fn range_bounds(store: &str, start: Option<&[u8]>, end: Option<&[u8]>) -> (Vec<u8>, Vec<u8>) {
    let prefix = store_prefix(store);
    let lower = match start {
        Some(s) => data_key(store, s),
        None => prefix.clone(),
    };
    let upper = match end {
        Some(e) => data_key(store, e),
        None => successor(&prefix),
    };
    (lower, upper)
}

/// The smallest key greater than every key starting with `prefix`. Store prefixes end in an
/// ASCII byte, so incrementing the last byte is enough.
fn successor(prefix: &[u8]) -> Vec<u8> {
    let mut s = prefix.to_vec();
    while let Some(last) = s.pop() {
        if last < u8::MAX {
            s.push(last + 1);
            return s;
        }
    }
    vec![u8::MAX]
}

/// Bounds covering every key of a task (data and meta).
pub const ALL_LOWER: &[u8] = &[0];
pub const ALL_UPPER: &[u8] = &[u8::MAX];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_store_name("counts").is_ok());
        assert!(check_store_name("__timers").is_ok());
        assert!(check_user_store_name("__timers").is_err());
        assert!(check_store_name("").is_err());
        assert!(check_store_name("a.b").is_err());
        assert!(check_store_name(&"x".repeat(101)).is_err());
    }

    #[test]
    fn prefixes_keep_stores_apart() {
        let (lo, hi) = range_bounds("a", None, None);
        let ab = data_key("ab", b"");
        assert!(!(lo.as_slice() <= ab.as_slice() && ab.as_slice() < hi.as_slice()));
        let k = data_key("a", &[0xff, 0xff]);
        assert!(lo.as_slice() <= k.as_slice() && k.as_slice() < hi.as_slice());
        assert!(meta_key("x").as_slice() < lo.as_slice());
    }
}
