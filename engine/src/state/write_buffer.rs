//! A task's uncommitted writes, in two layers: `staged`, the writes of the processor call in
//! progress (dropped if the call fails, so a failed record leaves no trace), and `pending`,
//! the writes of the calls that succeeded since the last commit (written to the store and
//! its changelog at the next commit). Reads look at staged, then pending, then the store.
//! Repeated writes of a key collapse, so a commit writes each changed key once.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;

type Layer = BTreeMap<Bytes, Option<Bytes>>;

/// Uncommitted writes of one task, per store (indexed by the task's store handle).
#[derive(Debug, Default)]
pub struct WriteBuffer {
    staged: Vec<Layer>,
    pending: Vec<Layer>,
    staged_len: usize,
}

fn layer(layers: &mut Vec<Layer>, store: usize) -> &mut Layer {
    if layers.len() <= store {
        layers.resize_with(store + 1, Layer::new);
    }
    &mut layers[store]
}

fn bounds<'a>(
    start: Option<&'a [u8]>,
    end: Option<&'a [u8]>,
) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    (
        start.map_or(Bound::Unbounded, Bound::Included),
        end.map_or(Bound::Unbounded, Bound::Excluded),
    )
}

impl WriteBuffer {
    pub fn new() -> Self {
        WriteBuffer::default()
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
        for (store, staged) in self.staged.iter_mut().enumerate() {
            if staged.is_empty() {
                continue;
            }
            let staged = std::mem::take(staged);
            let pending = layer(&mut self.pending, store);
            if pending.is_empty() {
                *pending = staged;
            } else {
                pending.extend(staged);
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
                for (k, v) in l.range::<[u8], _>(bounds(start, end)) {
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

    /// Takes the pending writes of every store (index = store handle), leaving none.
    pub fn take_pending(&mut self) -> Vec<Vec<(Bytes, Option<Bytes>)>> {
        self.pending
            .iter_mut()
            .map(|l| std::mem::take(l).into_iter().collect())
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
