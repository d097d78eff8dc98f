//! Building uncompressed RecordBatch v2 bytes record by record from borrowed keys, values and
//! headers, for appends whose records live in someone else's buffer (a processor's output).
//!
//! kafka-protocol's encoder (used by [`crate::batch::encode`]) only takes owned `Record`s,
//! whose fields are `Bytes`: building one per field costs an allocation or a reference count
//! per record, which is most of what a small record costs. This builder copies each record's
//! bytes once, straight into the batch. It writes the same bytes as `batch::encode` for the
//! same records (tested below, byte for byte); it does not compress, and it knows nothing of
//! partitions or files (the log assigns offsets on append).

use bytes::{BufMut, BytesMut};

use crate::batch::{CheckedBatch, HEADER_LEN, MAGIC};

/// Bytes of the header before the part the CRC covers (up to and including the CRC).
const CRC_END: usize = 21;

/// A batch being built. Records get offset deltas 0, 1, 2… in the order they are pushed.
#[derive(Debug)]
pub struct BatchBuilder {
    /// Header space (filled by [`finish`](Self::finish)) followed by the encoded records.
    buf: BytesMut,
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    /// Some record so far has no key.
    null_key: bool,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        BatchBuilder::new()
    }
}

impl BatchBuilder {
    pub fn new() -> BatchBuilder {
        BatchBuilder {
            buf: BytesMut::new(),
            count: 0,
            base_timestamp: 0,
            max_timestamp: i64::MIN,
            null_key: false,
        }
    }

    /// Records pushed since the last [`finish`](Self::finish).
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes the batch would have if finished now.
    pub fn size(&self) -> usize {
        self.buf.len().max(HEADER_LEN)
    }

    /// Appends one record. `headers` is iterated twice (once to size the record).
    pub fn push<'h, H>(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: H,
    ) where
        H: Iterator<Item = (&'h str, Option<&'h [u8]>)> + Clone,
    {
        if self.count == 0 {
            self.null_key = false;
            self.buf.clear();
            self.buf.put_bytes(0, HEADER_LEN);
            // Later records may be earlier: their deltas are negative, as Kafka allows.
            self.base_timestamp = timestamp;
            self.max_timestamp = timestamp;
        }
        let ts_delta = timestamp.wrapping_sub(self.base_timestamp);
        self.null_key |= key.is_none();
        let offset_delta = self.count;
        let mut header_count = 0i32;
        let mut header_bytes = 0usize;
        for (name, v) in headers.clone() {
            header_count += 1;
            header_bytes += varint_len(name.len() as i64)
                + name.len()
                + varint_len(opt_len(v))
                + v.map_or(0, <[u8]>::len);
        }
        let body = 1
            + varint_len(ts_delta)
            + varint_len(i64::from(offset_delta))
            + varint_len(opt_len(key))
            + key.map_or(0, <[u8]>::len)
            + varint_len(opt_len(value))
            + value.map_or(0, <[u8]>::len)
            + varint_len(i64::from(header_count))
            + header_bytes;
        let b = &mut self.buf;
        b.reserve(body + 5);
        // Length, attributes, deltas and key length go out as one small block.
        let mut head = Varints::default();
        head.put(body as i64);
        head.push(0); // attributes
        head.put(ts_delta);
        head.put(i64::from(offset_delta));
        head.put(opt_len(key));
        b.put_slice(head.bytes());
        if let Some(k) = key {
            b.put_slice(k);
        }
        let mut mid = Varints::default();
        mid.put(opt_len(value));
        b.put_slice(mid.bytes());
        if let Some(v) = value {
            b.put_slice(v);
        }
        let mut tail = Varints::default();
        tail.put(i64::from(header_count));
        b.put_slice(tail.bytes());
        for (name, v) in headers {
            put_varint(b, name.len() as i64);
            b.put_slice(name.as_bytes());
            put_opt(b, v);
        }
        self.count += 1;
        self.max_timestamp = self.max_timestamp.max(timestamp);
    }

    /// [`finish`](Self::finish), as a batch the log appends without checking it again (it
    /// is valid by construction).
    pub fn finish_checked(&mut self) -> Option<CheckedBatch> {
        let null_key = self.null_key;
        let bytes = self.finish()?.freeze();
        CheckedBatch::built(bytes, null_key)
    }

    /// The finished batch (base offset 0: the log sets it on append), or `None` if no record
    /// was pushed. The builder is empty again afterwards.
    pub fn finish(&mut self) -> Option<BytesMut> {
        if self.count == 0 {
            return None;
        }
        let mut batch = std::mem::take(&mut self.buf);
        let batch_length = (batch.len() - 12) as i32;
        let mut h = [0u8; HEADER_LEN];
        // base offset 0 (h[0..8])
        h[8..12].copy_from_slice(&batch_length.to_be_bytes());
        h[12..16].copy_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
        h[16] = MAGIC as u8;
        // CRC (h[17..21]) after the rest; attributes 0 (h[21..23])
        h[23..27].copy_from_slice(&(self.count - 1).to_be_bytes());
        h[27..35].copy_from_slice(&self.base_timestamp.to_be_bytes());
        h[35..43].copy_from_slice(&self.max_timestamp.to_be_bytes());
        h[43..51].copy_from_slice(&(-1i64).to_be_bytes()); // producer id
        h[51..53].copy_from_slice(&(-1i16).to_be_bytes()); // producer epoch
        h[53..57].copy_from_slice(&(-1i32).to_be_bytes()); // base sequence
        h[57..61].copy_from_slice(&self.count.to_be_bytes());
        batch[..HEADER_LEN].copy_from_slice(&h);
        let crc = crc32c::crc32c(&batch[CRC_END..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        self.count = 0;
        self.max_timestamp = i64::MIN;
        Some(batch)
    }
}

/// Up to five varints encoded on the stack, written with one copy.
struct Varints {
    buf: [u8; 50],
    len: usize,
}

impl Default for Varints {
    fn default() -> Self {
        Varints {
            buf: [0; 50],
            len: 0,
        }
    }
}

impl Varints {
    fn push(&mut self, byte: u8) {
        self.buf[self.len] = byte;
        self.len += 1;
    }

    /// Kafka's varint/varlong: zigzag, then 7 bits per byte, low first.
    fn put(&mut self, v: i64) {
        let mut z = zigzag(v);
        while z >= 0x80 {
            self.push((z as u8) | 0x80);
            z >>= 7;
        }
        self.push(z as u8);
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

fn opt_len(b: Option<&[u8]>) -> i64 {
    b.map_or(-1, |b| b.len() as i64)
}

fn put_opt(buf: &mut BytesMut, b: Option<&[u8]>) {
    put_varint(buf, opt_len(b));
    if let Some(b) = b {
        buf.put_slice(b);
    }
}

fn put_varint(buf: &mut BytesMut, v: i64) {
    let mut one = Varints::default();
    one.put(v);
    buf.put_slice(one.bytes());
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn varint_len(v: i64) -> usize {
    let bits = 64 - (zigzag(v) | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{self, EncodeRecord};
    use bytes::Bytes;
    use proptest::prelude::*;

    type Rec = (
        i64,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        Vec<(String, Option<Vec<u8>>)>,
    );

    fn build(records: &[Rec]) -> BytesMut {
        let mut b = BatchBuilder::new();
        for (ts, k, v, h) in records {
            b.push(
                *ts,
                k.as_deref(),
                v.as_deref(),
                h.iter().map(|(n, v)| (n.as_str(), v.as_deref())),
            );
        }
        assert_eq!(b.len(), records.len());
        b.finish().unwrap()
    }

    fn arb_bytes() -> impl Strategy<Value = Option<Vec<u8>>> {
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300))
    }

    fn arb_record(ts: impl Strategy<Value = i64>) -> impl Strategy<Value = Rec> {
        (
            ts,
            arb_bytes(),
            arb_bytes(),
            // Distinct names: kafka-protocol keeps headers in a map.
            proptest::collection::btree_map("[a-z.]{0,12}", arb_bytes(), 0..3)
                .prop_map(|h| h.into_iter().collect()),
        )
    }

    #[test]
    fn varints_match_kafka() {
        for (v, want) in [
            (0i64, vec![0u8]),
            (-1, vec![1]),
            (1, vec![2]),
            (63, vec![0x7e]),
            (64, vec![0x80, 0x01]),
            (-65, vec![0x81, 0x01]),
            (300, vec![0xd8, 0x04]),
        ] {
            let mut b = BytesMut::new();
            put_varint(&mut b, v);
            assert_eq!(&b[..], &want[..], "{v}");
            assert_eq!(varint_len(v), want.len(), "{v}");
        }
        for v in [i64::MIN, i64::MAX, i32::MIN as i64, 1 << 40] {
            let mut b = BytesMut::new();
            put_varint(&mut b, v);
            assert_eq!(varint_len(v), b.len(), "{v}");
        }
    }

    #[test]
    fn finishing_resets_and_empty_builders_give_nothing() {
        let mut b = BatchBuilder::new();
        assert!(b.finish().is_none());
        b.push(5, Some(b"k"), None, std::iter::empty());
        let one = b.finish().unwrap();
        assert!(b.is_empty());
        b.push(5, Some(b"k"), None, std::iter::empty());
        assert_eq!(b.finish().unwrap(), one);
        batch::validate(&one).unwrap();
    }

    proptest! {
        /// With timestamps in order, the bytes are exactly kafka-protocol's (through
        /// `batch::encode`, which the rest of the broker uses).
        #[test]
        fn same_bytes_as_kafka_protocol(
            start in 0i64..1_000_000_000_000,
            steps in proptest::collection::vec(0i64..100_000, 1..20),
            records in proptest::collection::vec(arb_record(Just(0i64)), 20),
        ) {
            let mut ts = start;
            let recs: Vec<Rec> = steps
                .iter()
                .zip(records)
                .map(|(step, (_, k, v, h))| {
                    ts += step;
                    (ts, k, v, h)
                })
                .collect();
            let ours = build(&recs);
            let theirs = batch::encode(
                &recs
                    .iter()
                    .enumerate()
                    .map(|(i, (ts, k, v, h))| EncodeRecord {
                        offset: i as i64,
                        timestamp: *ts,
                        key: k.clone().map(Bytes::from),
                        value: v.clone().map(Bytes::from),
                        headers: h
                            .iter()
                            .map(|(n, v)| (n.clone(), v.clone().map(Bytes::from)))
                            .collect(),
                    })
                    .collect::<Vec<_>>(),
            )
            .unwrap();
            prop_assert_eq!(&ours[..], &theirs[..]);
        }

        /// A checked batch is what `validate_records` would make of the same bytes, batch
        /// after batch from one builder (the null-key flag starts afresh with each batch).
        #[test]
        fn checked_batches_agree_with_validation(
            batches in proptest::collection::vec(
                proptest::collection::vec(arb_record(0i64..i64::MAX / 4), 1..8),
                1..4,
            ),
        ) {
            let mut b = BatchBuilder::new();
            for recs in &batches {
                for (ts, k, v, h) in recs {
                    b.push(
                        *ts,
                        k.as_deref(),
                        v.as_deref(),
                        h.iter().map(|(n, v)| (n.as_str(), v.as_deref())),
                    );
                }
                let checked = b.finish_checked().unwrap();
                let validated = batch::validate_records(checked.bytes()).unwrap();
                prop_assert_eq!(checked.header(), validated.header());
                prop_assert_eq!(checked.null_key(), validated.null_key());
                prop_assert_eq!(checked.null_key(), recs.iter().any(|r| r.1.is_none()));
            }
            prop_assert!(b.finish_checked().is_none());
        }

        /// In any timestamp order, the batch validates and decodes back to what was pushed.
        #[test]
        fn decodes_back_in_any_order(
            recs in proptest::collection::vec(arb_record(0i64..i64::MAX / 4), 1..20),
        ) {
            let built = build(&recs);
            let header = batch::validate(&built).unwrap();
            prop_assert_eq!(header.record_count as usize, recs.len());
            prop_assert_eq!(header.max_timestamp, recs.iter().map(|r| r.0).max().unwrap());
            let decoded = batch::decode(built.freeze()).unwrap();
            prop_assert_eq!(decoded.len(), recs.len());
            for (i, (d, (ts, k, v, h))) in decoded.iter().zip(&recs).enumerate() {
                prop_assert_eq!(d.offset, i as i64);
                prop_assert_eq!(d.timestamp, *ts);
                prop_assert_eq!(d.key.as_deref(), k.as_deref());
                prop_assert_eq!(d.value.as_deref(), v.as_deref());
                let want: Vec<(String, Option<Bytes>)> = h
                    .iter()
                    .map(|(n, v)| (n.clone(), v.clone().map(Bytes::from)))
                    .collect();
                prop_assert_eq!(&d.headers, &want);
            }
        }
    }
}
