//! Typed access to the task's state stores (`weir:processor/state`): bytes, UTF-8 strings and
//! serde JSON values, and range scans.

use crate::bindings::weir::processor::state;
use crate::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// One named state store of this task. Open it once (usually in
/// [`Processor::init`](crate::Processor::init)) and keep it.
///
/// Values written with [`put_json`](Store::put_json) are JSON text: a count stored with
/// `put_json(key, &42u64)` reads back as the bytes `42`, which is also what the engine's
/// interactive queries show.
///
/// ```no_run
/// # use weir_guest::{Store, Result};
/// # fn f() -> Result<()> {
/// let counts = Store::open("counts")?;
/// let n: u64 = counts.get_json("hello")?.unwrap_or(0);
/// counts.put_json("hello", &(n + 1))?;
/// for entry in counts.scan_prefix("he")? {
///     let (key, value) = entry?;
///     # let _ = (key, value);
/// }
/// # Ok(()) }
/// ```
pub struct Store {
    name: String,
    inner: state::Store,
}

impl Store {
    /// Opens (creating if needed) this task's store `name`.
    pub fn open(name: &str) -> Result<Store> {
        let inner = state::Store::open(name).map_err(|e| host_error(name, "open", e))?;
        Ok(Store {
            name: name.to_string(),
            inner,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        self.inner
            .get(key.as_ref())
            .map_err(|e| host_error(&self.name, "get", e))
    }

    pub fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        self.inner
            .put(key.as_ref(), value.as_ref())
            .map_err(|e| host_error(&self.name, "put", e))
    }

    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<()> {
        self.inner
            .delete(key.as_ref())
            .map_err(|e| host_error(&self.name, "delete", e))
    }

    /// The value at `key` as UTF-8 (an error if it is not).
    pub fn get_string(&self, key: impl AsRef<[u8]>) -> Result<Option<String>> {
        match self.get(key)? {
            None => Ok(None),
            Some(v) => Ok(Some(String::from_utf8(v)?)),
        }
    }

    /// The value at `key` parsed from JSON.
    pub fn get_json<T: DeserializeOwned>(&self, key: impl AsRef<[u8]>) -> Result<Option<T>> {
        match self.get(key)? {
            None => Ok(None),
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
        }
    }

    /// Sets `key` to `value` as JSON.
    pub fn put_json<T: Serialize + ?Sized>(&self, key: impl AsRef<[u8]>, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value)?;
        self.put(key, bytes)
    }

    /// Entries with `start <= key < end` (unbounded where `None`), in key order.
    pub fn scan(&self, start: Option<&[u8]>, end: Option<&[u8]>) -> Result<Scan> {
        let entries = self
            .inner
            .scan(start, end)
            .map_err(|e| host_error(&self.name, "scan", e))?;
        Ok(Scan {
            store: self.name.clone(),
            entries,
            page: Vec::new().into_iter(),
            done: false,
        })
    }

    /// Entries whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Result<Scan> {
        let prefix = prefix.as_ref();
        let end = prefix_end(prefix);
        self.scan(Some(prefix), end.as_deref())
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("name", &self.name).finish()
    }
}

/// The smallest key greater than every key starting with `prefix` (`None`: no bound).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// A range scan: yields `(key, value)` pairs, fetched from the host a page at a time.
pub struct Scan {
    store: String,
    entries: state::Entries,
    page: std::vec::IntoIter<(Vec<u8>, Vec<u8>)>,
    done: bool,
}

/// Entries fetched per host call.
const PAGE: u32 = 256;

impl Iterator for Scan {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(entry) = self.page.next() {
            return Some(Ok(entry));
        }
        if self.done {
            return None;
        }
        match self.entries.next(PAGE) {
            Ok(page) if page.is_empty() => {
                self.done = true;
                None
            }
            Ok(page) => {
                self.page = page.into_iter();
                self.page.next().map(Ok)
            }
            Err(e) => {
                self.done = true;
                Some(Err(host_error(&self.store, "scan", e)))
            }
        }
    }
}

fn host_error(store: &str, op: &str, message: String) -> Error {
    Error::new(format!("store `{store}`: {op}: {message}"))
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_is_the_next_key() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }
}
