//! A task's uncommitted writes, in two layers: `staged`, the writes of the processor call in
//! progress (dropped if the call fails, so a failed record leaves no trace), and `pending`,
//! the writes of the calls that succeeded since the last commit (written to the store and
//! its changelog at the next commit). Reads look at staged, then pending, then the store.
//! Repeated writes of a key collapse, so a commit writes each changed key once.
//!
//! Below them, a bounded cache of committed values (`clean`: what the store holds, absent
//! keys included) saves store reads of hot keys; it is filled by reads that reach the store
//! and by committed writes, and only ever holds what the store holds, since only the task
//! writes its store.
//!
//! Layers are hash maps (point reads and writes are the hot path); range scans sort what
//! they find.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};

use bytes::Bytes;

/// A fast hasher for short keys (Fx-style multiply-rotate) with a per-process random seed.
#[derive(Clone, Copy)]
pub struct KeyHasher(u64);

const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl KeyHasher {
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
    }
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 56));
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        // Mix the high bits down: hashbrown uses the top 7 bits and the low bits.
        let h = self.0;
        h ^ (h >> 29) ^ (h >> 47)
    }
}

/// Builds [`KeyHasher`]s seeded once per process.
#[derive(Clone, Copy)]
pub struct KeyHash(u64);

impl Default for KeyHash {
    fn default() -> Self {
        static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        KeyHash(
            *SEED.get_or_init(|| {
                std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64)
            }),
        )
    }
}

impl BuildHasher for KeyHash {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(self.0)
    }
}

type Layer = HashMap<Bytes, Option<Bytes>, KeyHash>;

/// Default budget of the committed-value cache, per task.
pub const DEFAULT_CACHE_BYTES: usize = 16 << 20;

/// Bookkeeping bytes counted per cached entry on top of its key and value.
const ENTRY_OVERHEAD: usize = 64;

/// Uncommitted writes of one task, per store (indexed by the task's store handle), and a
/// cache of committed values.
pub struct WriteBuffer {
    staged: Vec<Layer>,
    pending: Vec<Layer>,
    staged_len: usize,
    clean: Vec<Layer>,
    clean_bytes: usize,
    cache_budget: usize,
}

impl Default for WriteBuffer {
    fn default() -> Self {
        WriteBuffer::with_cache(DEFAULT_CACHE_BYTES)
    }
}

fn entry_bytes(k: &Bytes, v: &Option<Bytes>) -> usize {
    k.len() + v.as_ref().map_or(0, |v| v.len()) + ENTRY_OVERHEAD
}

fn layer(layers: &mut Vec<Layer>, store: usize) -> &mut Layer {
    if layers.len() <= store {
        layers.resize_with(store + 1, Layer::default);
    }
    &mut layers[store]
}

fn in_range(k: &[u8], start: Option<&[u8]>, end: Option<&[u8]>) -> bool {
    start.is_none_or(|s| k >= s) && end.is_none_or(|e| k < e)
}

impl WriteBuffer {
    pub fn new() -> Self {
        WriteBuffer::default()
    }

    /// A buffer whose committed-value cache holds about `cache_bytes` (0: no cache).
    pub fn with_cache(cache_bytes: usize) -> Self {
        WriteBuffer {
            staged: Vec::new(),
            pending: Vec::new(),
            staged_len: 0,
            clean: Vec::new(),
            clean_bytes: 0,
            cache_budget: cache_bytes,
        }
    }

    /// The committed value of `key` if it is cached: `Some(None)` means known absent.
    pub fn cached(&self, store: usize, key: &[u8]) -> Option<Option<Bytes>> {
        self.clean.get(store)?.get(key).cloned()
    }

    /// Remembers the committed value of `key` (read from the store, or just committed).
    pub fn remember(&mut self, store: usize, key: Bytes, value: Option<Bytes>) {
        if self.cache_budget == 0 {
            return;
        }
        let added = entry_bytes(&key, &value);
        let map = layer(&mut self.clean, store);
        if let Some(old) = map.insert(key.clone(), value) {
            self.clean_bytes -= entry_bytes(&key, &old);
        }
        self.clean_bytes += added;
        if self.clean_bytes > self.cache_budget {
            self.evict();
        }
    }

    /// Drops about half of the cache (an arbitrary half: hash order).
    fn evict(&mut self) {
        let mut keep = false;
        let mut bytes = 0;
        for map in &mut self.clean {
            map.retain(|k, v| {
                keep = !keep;
                if keep {
                    bytes += entry_bytes(k, v);
                }
                keep
            });
        }
        self.clean_bytes = bytes;
    }

    /// The buffered state of `key`: `None` if it is not buffered, `Some(None)` if it is
    /// deleted, `Some(Some(v))` if it is set.
    pub fn get(&self, store: usize, key: &[u8]) -> Option<Option<Bytes>> {
        for layers in [&self.staged, &self.pending] {
            if let Some(v) = layers.get(store).and_then(|l| l.get(key)) {
                return Some(v.clone());
            }
        }
        None
    }

    /// Writes into the call in progress (`None` deletes).
    pub fn stage(&mut self, store: usize, key: Bytes, value: Option<Bytes>) {
        if layer(&mut self.staged, store).insert(key, value).is_none() {
            self.staged_len += 1;
        }
    }

    /// Writes straight into the pending layer (survives a failed call).
    pub fn write_pending(&mut self, store: usize, key: Bytes, value: Option<Bytes>) {
        layer(&mut self.pending, store).insert(key, value);
    }

    /// The call succeeded: its writes join the pending ones.
    pub fn promote(&mut self) {
        if self.staged_len == 0 {
            return;
        }
        for store in 0..self.staged.len() {
            if self.staged[store].is_empty() {
                continue;
            }
            let pending = layer(&mut self.pending, store);
            if pending.is_empty() {
                std::mem::swap(pending, &mut self.staged[store]);
            } else {
                pending.extend(self.staged[store].drain());
            }
        }
        self.staged_len = 0;
    }

    /// The call failed: its writes are dropped.
    pub fn discard(&mut self) {
        for l in &mut self.staged {
            l.clear();
        }
        self.staged_len = 0;
    }

    /// Buffered entries (tombstones included) with `start <= key < end`, staged over
    /// pending, in key order.
    pub fn range(
        &self,
        store: usize,
        start: Option<&[u8]>,
        end: Option<&[u8]>,
    ) -> Vec<(Bytes, Option<Bytes>)> {
        if matches!((start, end), (Some(s), Some(e)) if s >= e) {
            return Vec::new();
        }
        let mut merged: BTreeMap<Bytes, Option<Bytes>> = BTreeMap::new();
        for layers in [&self.pending, &self.staged] {
            if let Some(l) = layers.get(store) {
                for (k, v) in l.iter().filter(|(k, _)| in_range(k, start, end)) {
                    merged.insert(k.clone(), v.clone());
                }
            }
        }
        merged.into_iter().collect()
    }

    /// Whether anything is waiting for a commit.
    pub fn has_pending(&self) -> bool {
        self.pending.iter().any(|l| !l.is_empty())
    }

    /// Takes the pending writes of every store (index = store handle), each sorted by key,
    /// leaving none.
    pub fn take_pending(&mut self) -> Vec<Vec<(Bytes, Option<Bytes>)>> {
        self.pending
            .iter_mut()
            .map(|l| {
                let mut v: Vec<(Bytes, Option<Bytes>)> = l.drain().collect();
                v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                v
            })
            .collect()
    }
}

/// Merges committed entries (`store`, sorted) with buffered ones (`buffered`, sorted,
/// tombstones included): buffered entries win, tombstones hide, at most `limit` returned.
pub fn merge_range(
    store: Vec<(Bytes, Bytes)>,
    buffered: Vec<(Bytes, Option<Bytes>)>,
    limit: usize,
) -> Vec<(Bytes, Bytes)> {
    let mut out = Vec::with_capacity(limit.min(store.len() + buffered.len()));
    let mut a = store.into_iter().peekable();
    let mut b = buffered.into_iter().peekable();
    while out.len() < limit {
        let take_buffered = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some((ka, _)), Some((kb, _))) => {
                if ka == kb {
                    a.next();
                    true
                } else {
                    kb < ka
                }
            }
        };
        if take_buffered {
            if let Some((k, Some(v))) = b.next() {
                out.push((k, v));
            }
        } else if let Some(e) = a.next() {
            out.push(e);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn layers_shadow_and_roll_back() {
        let mut w = WriteBuffer::new();
        assert_eq!(w.get(0, b"k"), None);
        w.stage(0, b("k"), Some(b("1")));
        assert_eq!(w.get(0, b"k"), Some(Some(b("1"))));
        w.discard();
        assert_eq!(w.get(0, b"k"), None);
        w.stage(0, b("k"), Some(b("1")));
        w.promote();
        w.stage(0, b("k"), None);
        assert_eq!(w.get(0, b"k"), Some(None));
        w.discard();
        assert_eq!(w.get(0, b"k"), Some(Some(b("1"))));
        assert_eq!(w.get(1, b"k"), None);
        w.stage(2, b("z"), Some(b("2")));
        w.promote();
        assert!(w.has_pending());
        let p = w.take_pending();
        assert_eq!(p[0], vec![(b("k"), Some(b("1")))]);
        assert!(p[1].is_empty());
        assert_eq!(p[2], vec![(b("z"), Some(b("2")))]);
        assert!(!w.has_pending());
    }

    #[test]
    fn the_cache_remembers_committed_values_within_its_budget() {
        let mut w = WriteBuffer::with_cache(10 * (ENTRY_OVERHEAD + 2));
        assert_eq!(w.cached(0, b"k"), None);
        w.remember(0, b("k"), None);
        assert_eq!(w.cached(0, b"k"), Some(None));
        w.remember(0, b("k"), Some(b("1")));
        assert_eq!(w.cached(0, b"k"), Some(Some(b("1"))));
        for i in 0..100 {
            w.remember(1, b(&format!("{i:02}")), None);
        }
        assert!(w.clean_bytes <= 10 * (ENTRY_OVERHEAD + 2));
        let left: usize = w.clean.iter().map(|m| m.len()).sum();
        assert!(left > 0 && left <= 10, "{left}");
        let mut off = WriteBuffer::with_cache(0);
        off.remember(0, b("k"), None);
        assert_eq!(off.cached(0, b"k"), None);
    }

    #[test]
    fn ranges_merge_with_the_store() {
        let mut w = WriteBuffer::new();
        w.stage(0, b("b"), None);
        w.stage(0, b("c"), Some(b("new")));
        w.promote();
        w.stage(0, b("e"), Some(b("5")));
        let buffered = w.range(0, Some(b"a"), None);
        assert_eq!(buffered.len(), 3);
        let store = vec![
            (b("a"), b("1")),
            (b("b"), b("2")),
            (b("c"), b("3")),
            (b("d"), b("4")),
        ];
        let merged = merge_range(store.clone(), buffered.clone(), 10);
        assert_eq!(
            merged,
            vec![
                (b("a"), b("1")),
                (b("c"), b("new")),
                (b("d"), b("4")),
                (b("e"), b("5"))
            ]
        );
        assert_eq!(merge_range(store, buffered, 2).len(), 2);
        assert!(w.range(0, Some(b"x"), Some(b"a")).is_empty());
    }
}
