//! The two buffer encodings of the `weir:processor` WIT contract (documented in
//! `wit/processor.wit`): input batches (host → guest, `process(batch: list<u8>)`) and emitted
//! records (guest → host, `emit-batch(records: list<u8>)`). Nothing here knows wasmtime; the
//! guest SDK (`guest-sdk/src/batch.rs`, `output.rs`) implements the other half of each.

use crate::host::{InputRecord, OutputRef};

const BATCH_MAGIC: &[u8; 4] = b"WB\x01\x00";
const OUTPUT_MAGIC: &[u8; 4] = b"WO\x01\x00";

/// Encodes `batch` into `out` (cleared first; reuse it across calls to avoid allocating).
pub fn encode_batch(batch: &[InputRecord], out: &mut Vec<u8>) {
    out.clear();
    // Topic table: a batch rarely has more than a few topics, and consecutive records
    // usually share one, so the last match is tried first.
    let mut topics: Vec<&str> = Vec::new();
    let mut size = 12usize;
    let mut last = 0usize;
    for r in batch {
        topic_index(&mut topics, &mut last, &r.topic);
        size += 4 + body_size(r);
    }
    size += topics.iter().map(|t| 4 + t.len()).sum::<usize>();
    out.reserve(size);
    out.extend_from_slice(BATCH_MAGIC);
    put_u32(out, batch.len() as u32);
    put_u32(out, topics.len() as u32);
    for t in &topics {
        put_u32(out, t.len() as u32);
        out.extend_from_slice(t.as_bytes());
    }
    let mut last = 0usize;
    for r in batch {
        let topic = topic_index(&mut topics, &mut last, &r.topic);
        // size, then the 36 fixed bytes of the body, written as one block.
        let mut head = [0u8; 40];
        head[0..4].copy_from_slice(&(body_size(r) as u32).to_le_bytes());
        head[4..8].copy_from_slice(&(topic as u32).to_le_bytes());
        head[8..12].copy_from_slice(&r.partition.to_le_bytes());
        head[12..20].copy_from_slice(&r.offset.to_le_bytes());
        head[20..28].copy_from_slice(&r.timestamp.to_le_bytes());
        head[28..32].copy_from_slice(&opt_len(r.key.as_deref()).to_le_bytes());
        head[32..36].copy_from_slice(&opt_len(r.value.as_deref()).to_le_bytes());
        head[36..40].copy_from_slice(&(r.headers.len() as u32).to_le_bytes());
        out.extend_from_slice(&head);
        if let Some(k) = &r.key {
            out.extend_from_slice(k);
        }
        if let Some(v) = &r.value {
            out.extend_from_slice(v);
        }
        for (name, value) in &r.headers {
            put_u32(out, name.len() as u32);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&opt_len(value.as_deref()).to_le_bytes());
            if let Some(v) = value {
                out.extend_from_slice(v);
            }
        }
    }
}

/// The index of `topic` in `topics` (added if new); `last` is the previous answer.
#[inline]
fn topic_index<'a>(topics: &mut Vec<&'a str>, last: &mut usize, topic: &'a str) -> usize {
    if topics
        .get(*last)
        .is_some_and(|t| same_bytes(t.as_bytes(), topic.as_bytes()))
    {
        return *last;
    }
    *last = match topics.iter().position(|t| *t == topic) {
        Some(i) => i,
        None => {
            topics.push(topic);
            topics.len() - 1
        }
    };
    *last
}

/// `a == b`, without a `memcmp` call for the short names compared once per record.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if std::ptr::eq(a.as_ptr(), b.as_ptr()) {
        return true;
    }
    if a.len() > 32 {
        return a == b;
    }
    a.iter().zip(b).all(|(x, y)| x == y)
}

/// Bytes of a record's body (after its size field).
#[inline]
fn body_size(r: &InputRecord) -> usize {
    let mut n =
        36 + r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len());
    for (name, value) in &r.headers {
        n += 8 + name.len() + value.as_ref().map_or(0, |v| v.len());
    }
    n
}

/// A malformed `emit-batch` buffer (the message goes back to the guest).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed emit-batch buffer: {0}")]
pub struct DecodeError(pub String);

/// Decodes an `emit-batch` buffer, calling `emit(output, record)` for each record in order.
/// Records borrow from `buf` (nothing is copied or counted per field). Stops at the first
/// error of `emit` (returned as `Ok(Err(e))`) or at malformed data (`Err`), after emitting
/// the records before it.
pub fn decode_outputs<E>(
    buf: &[u8],
    mut emit: impl FnMut(&str, OutputRef<'_>) -> Result<(), E>,
) -> Result<Result<(), E>, DecodeError> {
    let mut r = Reader { buf, at: 0 };
    if buf.is_empty() {
        return Ok(Ok(()));
    }
    if r.bytes(4)? != OUTPUT_MAGIC {
        return Err(DecodeError(
            "bad header (expected \"WO\", version 1)".to_string(),
        ));
    }
    let mut index = 0usize;
    // Consecutive records usually go to the same output: validate its name once.
    let mut last_output: (&[u8], &str) = (b"", "");
    // Reused for every record's headers.
    let mut headers: Vec<(&str, Option<&[u8]>)> = Vec::new();
    while r.at < buf.len() {
        let output_len = r.u32()? as usize;
        let name = r.bytes(output_len)?;
        let output = if same_bytes(name, last_output.0) {
            last_output.1
        } else {
            let output = std::str::from_utf8(name)
                .map_err(|_| DecodeError(format!("record {index}: output name is not UTF-8")))?;
            last_output = (name, output);
            output
        };
        let fixed = r.array::<21>()?;
        let flags = fixed[0];
        let ts = i64::from_le_bytes(sub(&fixed, 1));
        let key_len = i32::from_le_bytes(sub(&fixed, 9));
        let value_len = i32::from_le_bytes(sub(&fixed, 13));
        let header_count = u32::from_le_bytes(sub(&fixed, 17));
        let key = r.optional(key_len)?;
        let value = r.optional(value_len)?;
        // Each header takes at least 8 bytes: bound the allocation by what is left.
        if header_count as usize > (buf.len() - r.at) / 8 {
            return Err(DecodeError(format!("record {index}: bad header count")));
        }
        headers.clear();
        for _ in 0..header_count {
            let name_len = r.u32()? as usize;
            let name = std::str::from_utf8(r.bytes(name_len)?)
                .map_err(|_| DecodeError(format!("record {index}: header name is not UTF-8")))?;
            let value_len = r.i32()?;
            headers.push((name, r.optional(value_len)?));
        }
        let record = OutputRef {
            key,
            value,
            headers: &headers,
            timestamp: (flags & 1 == 1).then_some(ts),
        };
        if let Err(e) = emit(output, record) {
            return Ok(Err(e));
        }
        index += 1;
    }
    Ok(Ok(()))
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or_else(|| DecodeError(format!("truncated at byte {}", self.at)))?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array::<4>()?))
    }

    fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_le_bytes(self.array::<4>()?))
    }

    /// A field of `len` bytes (-1: absent).
    fn optional(&mut self, len: i32) -> Result<Option<&'a [u8]>, DecodeError> {
        if len < 0 {
            return Ok(None);
        }
        self.bytes(len as usize).map(Some)
    }
}

/// `N` bytes of `a` from `at` (in bounds by construction at every call site).
#[inline]
fn sub<const N: usize>(a: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&a[at..at + N]);
    out
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn opt_len(b: Option<&[u8]>) -> i32 {
    b.map_or(-1, |b| b.len() as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::OutputRecord;
    use bytes::Bytes;

    fn input(topic: &str, offset: i64, key: Option<&str>, value: Option<&str>) -> InputRecord {
        InputRecord {
            topic: topic.into(),
            partition: 2,
            offset,
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            headers: vec![],
            timestamp: 1000 + offset,
        }
    }

    #[test]
    fn batch_layout_matches_the_wit_documentation() {
        let mut r = input("t", 5, Some("k"), Some("vv"));
        r.headers = vec![
            ("h".into(), Some(Bytes::from_static(b"x"))),
            ("n".into(), None),
        ];
        let mut out = Vec::new();
        encode_batch(&[r], &mut out);
        let mut want = Vec::new();
        want.extend_from_slice(b"WB\x01\x00");
        want.extend_from_slice(&1u32.to_le_bytes());
        want.extend_from_slice(&1u32.to_le_bytes());
        want.extend_from_slice(&1u32.to_le_bytes());
        want.extend_from_slice(b"t");
        let body_len = 36 + 1 + 2 + (4 + 1 + 4 + 1) + (4 + 1 + 4);
        want.extend_from_slice(&(body_len as u32).to_le_bytes());
        want.extend_from_slice(&0u32.to_le_bytes());
        want.extend_from_slice(&2i32.to_le_bytes());
        want.extend_from_slice(&5i64.to_le_bytes());
        want.extend_from_slice(&1005i64.to_le_bytes());
        want.extend_from_slice(&1i32.to_le_bytes());
        want.extend_from_slice(&2i32.to_le_bytes());
        want.extend_from_slice(&2u32.to_le_bytes());
        want.extend_from_slice(b"kvv");
        want.extend_from_slice(&1u32.to_le_bytes());
        want.extend_from_slice(b"h");
        want.extend_from_slice(&1i32.to_le_bytes());
        want.extend_from_slice(b"x");
        want.extend_from_slice(&1u32.to_le_bytes());
        want.extend_from_slice(b"n");
        want.extend_from_slice(&(-1i32).to_le_bytes());
        assert_eq!(out, want);
    }

    #[test]
    fn topics_are_interned() {
        let mut out = Vec::new();
        encode_batch(
            &[
                input("a", 0, None, None),
                input("b", 1, None, None),
                input("a", 2, None, None),
            ],
            &mut out,
        );
        // header 12 + topic table 2 × 5 + 3 records × (4 + 36)
        assert_eq!(out.len(), 12 + 10 + 3 * 40);
        assert_eq!(&out[8..12], &2u32.to_le_bytes());
    }

    fn output_buffer() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"WO\x01\x00");
        // record 1: output "o", timestamp 7, key "k", value "vv", header h=x
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(b"o");
        b.push(1);
        b.extend_from_slice(&7i64.to_le_bytes());
        b.extend_from_slice(&1i32.to_le_bytes());
        b.extend_from_slice(&2i32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(b"kvv");
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(b"h");
        b.extend_from_slice(&1i32.to_le_bytes());
        b.extend_from_slice(b"x");
        // record 2: default output, no timestamp, no key/value
        b.extend_from_slice(&0u32.to_le_bytes());
        b.push(0);
        b.extend_from_slice(&0i64.to_le_bytes());
        b.extend_from_slice(&(-1i32).to_le_bytes());
        b.extend_from_slice(&(-1i32).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b
    }

    #[test]
    fn decodes_outputs() {
        let mut got = Vec::new();
        let buf = output_buffer();
        let r = decode_outputs::<()>(&buf, |o, r| {
            got.push((o.to_string(), r.to_owned_record(), r.payload_bytes()));
            Ok(())
        });
        assert_eq!(r, Ok(Ok(())));
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, "o");
        assert_eq!(got[0].1.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(got[0].1.value.as_deref(), Some(&b"vv"[..]));
        assert_eq!(got[0].1.timestamp, Some(7));
        assert_eq!(
            got[0].1.headers,
            vec![("h".to_string(), Some(Bytes::from_static(b"x")))]
        );
        assert_eq!(got[1].0, "");
        assert_eq!(got[1].1, OutputRecord::default());
        assert_eq!(got[0].2, 1 + 2 + 1 + 1);
    }

    #[test]
    fn malformed_outputs_are_errors_not_panics() {
        let good = output_buffer();
        for cut in 1..good.len() {
            let mut n = 0;
            let r = decode_outputs::<()>(&good[..cut], |_, _| {
                n += 1;
                Ok(())
            });
            // Cuts at record boundaries leave valid buffers (none or one record).
            if cut == 4 || cut == good.len() - 25 {
                assert_eq!(r, Ok(Ok(())));
            } else {
                assert!(r.is_err(), "cut at {cut}");
            }
        }
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(decode_outputs::<()>(&bad, |_, _| Ok(())).is_err());
        // A huge header count does not allocate.
        let mut bad = good.clone();
        let at = 4 + 4 + 1 + 1 + 8 + 4 + 4;
        bad[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_outputs::<()>(&bad, |_, _| Ok(())).is_err());
        // Negative lengths other than -1 are "absent" too, never a panic.
        let mut odd = good.clone();
        odd[4 + 4 + 1 + 1 + 8..4 + 4 + 1 + 1 + 8 + 4].copy_from_slice(&(-7i32).to_le_bytes());
        let _ = decode_outputs::<()>(&odd, |_, _| Ok(()));
    }

    #[test]
    fn emit_errors_stop_decoding() {
        let mut n = 0;
        let r = decode_outputs(&output_buffer(), |_, _| {
            n += 1;
            Err("full")
        });
        assert_eq!(r, Ok(Err("full")));
        assert_eq!(n, 1);
    }
}
