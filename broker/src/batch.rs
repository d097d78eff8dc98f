//! Kafka RecordBatch v2, the unit the log stores byte for byte.
//!
//! This module owns the batch *framing* the log needs without decoding records (header
//! fields, length and CRC-32C validation, rewriting the base offset on append) and wraps the
//! `kafka-protocol` crate's record codec for building batches from records and decoding them
//! back (including compressed batches). It knows nothing of files or partitions.
//!
//! Layout of the 61-byte header (big-endian): base offset i64, batch length i32 (bytes after
//! this field), partition leader epoch i32, magic i8 (= 2), CRC-32C u32 (over attributes..end),
//! attributes i16, last offset delta i32, base timestamp i64, max timestamp i64, producer id
//! i64, producer epoch i16, base sequence i32, record count i32.

use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::error::{BrokerError, Result};
use crate::types::{Header, StoredRecord};

/// Size of the RecordBatch v2 header.
pub const HEADER_LEN: usize = 61;
/// Bytes before the part counted by the batch length field (base offset + length).
pub const LOG_OVERHEAD: usize = 12;
/// The only record format Weir stores.
pub const MAGIC: i8 = 2;
/// Smallest possible encoded record (attributes, varints, no key/value/headers).
const MIN_RECORD_LEN: usize = 7;
/// Upper bound on the records a compressed batch may claim, to keep a hostile count from
/// allocating without bound before decompression proves it.
const MAX_COMPRESSED_RECORDS: i32 = 4_000_000;

const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;
const BASE_SEQUENCE_OFFSET: usize = 53;

/// The fixed header of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    /// Parses the header from the first [`HEADER_LEN`] bytes of `buf`, checking only that the
    /// bytes are there and that the length field is plausible. Use [`validate`] for a full
    /// check of a complete batch.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader> {
        if buf.len() < HEADER_LEN {
            return Err(BrokerError::CorruptBatch(format!(
                "{} bytes is shorter than a batch header ({HEADER_LEN})",
                buf.len()
            )));
        }
        let h = BatchHeader {
            base_offset: be_i64(buf, 0),
            batch_length: be_i32(buf, 8),
            partition_leader_epoch: be_i32(buf, 12),
            magic: buf[16] as i8,
            crc: be_i32(buf, CRC_OFFSET) as u32,
            attributes: be_i16(buf, ATTRIBUTES_OFFSET),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, 35),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, BASE_SEQUENCE_OFFSET),
            record_count: be_i32(buf, 57),
        };
        if (h.batch_length as i64) < (HEADER_LEN - LOG_OVERHEAD) as i64 {
            return Err(BrokerError::CorruptBatch(format!(
                "batch length {} is shorter than the header",
                h.batch_length
            )));
        }
        if h.magic != MAGIC {
            return Err(BrokerError::CorruptBatch(format!(
                "unsupported magic {} (only RecordBatch v2 is supported)",
                h.magic
            )));
        }
        Ok(h)
    }

    /// Bytes the whole batch occupies, header included.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }

    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    /// Offset after the batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// Compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> i16 {
        self.attributes & 0x7
    }

    /// True for transaction markers.
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_FLAG != 0
    }

    /// True for the batches of a transactional producer (data and markers).
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_FLAG != 0
    }
}

/// Checks a complete batch: exact length, magic, CRC-32C, and sane counts.
pub fn validate(batch: &[u8]) -> Result<BatchHeader> {
    let h = BatchHeader::parse(batch)?;
    if h.total_len() != batch.len() {
        return Err(BrokerError::CorruptBatch(format!(
            "batch length field says {} bytes but {} bytes are present",
            h.total_len(),
            batch.len()
        )));
    }
    let actual = crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..]);
    if actual != h.crc {
        return Err(BrokerError::CorruptBatch(format!(
            "CRC mismatch (stored {:#010x}, computed {actual:#010x})",
            h.crc
        )));
    }
    if h.record_count < 0 || h.last_offset_delta < 0 {
        return Err(BrokerError::CorruptBatch(format!(
            "negative record count {} or offset delta {}",
            h.record_count, h.last_offset_delta
        )));
    }
    if h.compression() > 4 {
        return Err(BrokerError::CorruptBatch(format!(
            "unknown compression codec {}",
            h.compression()
        )));
    }
    let payload = batch.len() - HEADER_LEN;
    let plausible = if h.compression() == 0 {
        (h.record_count as usize).saturating_mul(MIN_RECORD_LEN) <= payload
    } else {
        h.record_count <= MAX_COMPRESSED_RECORDS
    };
    if !plausible {
        return Err(BrokerError::CorruptBatch(format!(
            "record count {} does not fit in {payload} bytes",
            h.record_count
        )));
    }
    Ok(h)
}

/// A batch that passed [`validate_records`] or that `batch_builder` made (the only two ways
/// to get one): the log appends it as it is, without checking it (or computing its CRC) a
/// second time.
#[derive(Debug, Clone)]
pub struct CheckedBatch {
    bytes: Bytes,
    header: BatchHeader,
    null_key: bool,
}

impl CheckedBatch {
    /// A batch `batch_builder` made (valid by construction; its tests check it).
    pub(crate) fn built(bytes: Bytes, null_key: bool) -> Option<CheckedBatch> {
        let header = BatchHeader::parse(&bytes).ok()?;
        Some(CheckedBatch {
            bytes,
            header,
            null_key,
        })
    }

    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// At least one record has a null key (not allowed on compacted topics).
    pub fn null_key(&self) -> bool {
        self.null_key
    }

    /// The same records as a transactional producer's batch: producer id, epoch, base
    /// sequence and the transactional attribute bit set, CRC-32C computed again (the
    /// records are copied once). For a batch of the engine's exactly-once tasks (`txn`).
    pub fn transactional(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> CheckedBatch {
        let mut b = BytesMut::from(&self.bytes[..]);
        let attributes = self.header.attributes | TRANSACTIONAL_FLAG;
        b[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attributes.to_be_bytes());
        b[43..51].copy_from_slice(&producer_id.to_be_bytes());
        b[51..53].copy_from_slice(&producer_epoch.to_be_bytes());
        b[BASE_SEQUENCE_OFFSET..BASE_SEQUENCE_OFFSET + 4]
            .copy_from_slice(&base_sequence.to_be_bytes());
        let crc = crc32c::crc32c(&b[ATTRIBUTES_OFFSET..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        let header = BatchHeader {
            attributes,
            producer_id,
            producer_epoch,
            base_sequence,
            crc,
            ..self.header
        };
        CheckedBatch {
            bytes: b.freeze(),
            header,
            null_key: self.null_key,
        }
    }
}

/// Checks the records inside a batch that [`validate`] accepted, as a Kafka broker does
/// before appending: an uncompressed batch is walked record by record (every length inside
/// the batch, the record count, and the last offset delta must agree), and a compressed one
/// is decompressed and decoded. A producer's CRC only proves the bytes were not changed in
/// flight, not that they parse; this makes sure every stored batch can be read back.
pub fn validate_records(batch: &Bytes) -> Result<CheckedBatch> {
    let h = validate(batch)?;
    let checked = |null_key| CheckedBatch {
        bytes: batch.clone(),
        header: h,
        null_key,
    };
    if h.record_count == 0 || h.last_offset_delta != h.record_count - 1 {
        return Err(BrokerError::CorruptBatch(format!(
            "batch of {} records has last offset delta {}",
            h.record_count, h.last_offset_delta
        )));
    }
    if h.is_control() {
        return Ok(checked(false));
    }
    if h.compression() != 0 {
        let records = decode(batch.clone())?;
        if records.len() != h.record_count as usize {
            return Err(BrokerError::CorruptBatch(format!(
                "batch claims {} records but holds {}",
                h.record_count,
                records.len()
            )));
        }
        return Ok(checked(records.iter().any(|r| r.key.is_none())));
    }
    let mut cur = RecordCursor {
        buf: &batch[HEADER_LEN..],
        pos: 0,
    };
    let mut null_key = false;
    for i in 0..h.record_count {
        let r = cur.record(i, |_, _| Ok(()))?;
        if r.offset_delta != i {
            return Err(BrokerError::CorruptBatch(format!(
                "record {i} has offset delta {}",
                r.offset_delta
            )));
        }
        null_key |= r.key.is_none();
    }
    if cur.pos != cur.buf.len() {
        return Err(BrokerError::CorruptBatch(format!(
            "{} bytes follow the last record",
            cur.buf.len() - cur.pos
        )));
    }
    Ok(checked(null_key))
}

/// Reads the varint-encoded fields of uncompressed records.
struct RecordCursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// The fields of one uncompressed record, borrowed from its batch (headers go to the
/// callback of [`RecordCursor::record`]).
struct RawRecord<'a> {
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
}

impl<'a> RecordCursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| BrokerError::CorruptBatch("record field overruns the batch".into()))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// A zigzag varlong (at most 10 bytes).
    fn varlong(&mut self) -> Result<i64> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.take(1)?[0];
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(((v >> 1) as i64) ^ -((v & 1) as i64));
            }
        }
        Err(BrokerError::CorruptBatch("varint is too long".into()))
    }

    /// Record `i` at the cursor, which moves past it: its framing checked (every field
    /// within the record's length, and that length used exactly), each header handed to
    /// `header` as (name, value). What validation and decoding both walk.
    fn record(
        &mut self,
        i: i32,
        mut header: impl FnMut(&'a [u8], Option<&'a [u8]>) -> Result<()>,
    ) -> Result<RawRecord<'a>> {
        let len = self.varint()?;
        let len = usize::try_from(len)
            .map_err(|_| BrokerError::CorruptBatch(format!("record {i} has length {len}")))?;
        let start = self.pos;
        let end = start
            .checked_add(len)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| BrokerError::CorruptBatch(format!("record {i} overruns the batch")))?;
        let mut r = RecordCursor {
            buf: &self.buf[..end],
            pos: start,
        };
        r.take(1)?; // attributes
        let timestamp_delta = r.varlong()?;
        let offset_delta = r.varint()?;
        let key = r.optional(i)?;
        let value = r.optional(i)?;
        let headers = r.varint()?;
        if headers < 0 {
            return Err(BrokerError::CorruptBatch(format!(
                "record {i} has {headers} headers"
            )));
        }
        for _ in 0..headers {
            let name_len = usize::try_from(r.varint()?).map_err(|_| {
                BrokerError::CorruptBatch(format!("record {i} has a header with a null name"))
            })?;
            let name = r.take(name_len)?;
            header(name, r.optional(i)?)?;
        }
        if r.pos != end {
            return Err(BrokerError::CorruptBatch(format!(
                "record {i} length {len} does not match its fields ({} bytes)",
                r.pos - start
            )));
        }
        self.pos = end;
        Ok(RawRecord {
            timestamp_delta,
            offset_delta,
            key,
            value,
        })
    }

    /// A length-prefixed field of record `i`: length -1 is an absent field, any other
    /// negative length is corrupt.
    fn optional(&mut self, i: i32) -> Result<Option<&'a [u8]>> {
        let len = self.varint()?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| {
            BrokerError::CorruptBatch(format!("record {i} has a field of length {len}"))
        })?;
        self.take(len).map(Some)
    }

    /// A zigzag varint (at most 5 bytes, must fit an i32).
    fn varint(&mut self) -> Result<i32> {
        let start = self.pos;
        let v = self.varlong()?;
        if self.pos - start > 5 {
            return Err(BrokerError::CorruptBatch("varint is too long".into()));
        }
        i32::try_from(v).map_err(|_| BrokerError::CorruptBatch("varint overflows i32".into()))
    }
}

/// Attribute bit of a transactional batch.
pub const TRANSACTIONAL_FLAG: i16 = 0x10;
/// Attribute bit of a control batch (a transaction marker).
pub const CONTROL_FLAG: i16 = 0x20;

/// What a transaction marker says (the `type` of Kafka's control record key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    Abort,
    Commit,
}

/// A transaction marker as Kafka writes it: one control batch (transactional and control
/// attribute bits, the producer's id and epoch, base sequence -1) of one record whose key is
/// the control record key (version 0, type 0 abort / 1 commit) and whose value is the
/// end-transaction marker (version 0, coordinator epoch).
pub fn control_batch(
    producer_id: i64,
    producer_epoch: i16,
    marker: Marker,
    coordinator_epoch: i32,
    timestamp: i64,
) -> Result<CheckedBatch> {
    let kind: i16 = match marker {
        Marker::Abort => 0,
        Marker::Commit => 1,
    };
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&kind.to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let record = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id,
        producer_epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp,
        key: Some(Bytes::from(key)),
        value: Some(Bytes::from(value)),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        std::iter::once(&record),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| BrokerError::InvalidRecord(format!("cannot encode a marker: {e}")))?;
    let checked = validate_records(&buf.freeze())?;
    if !checked.header().is_control() || !checked.header().is_transactional() {
        return Err(BrokerError::InvalidRecord(
            "the encoder lost a marker's attributes".into(),
        ));
    }
    Ok(checked)
}

/// The marker a complete control batch holds (`None` for any other batch, or a control
/// record of a type that is not a transaction marker).
pub fn marker_of(batch: &[u8]) -> Option<Marker> {
    let h = BatchHeader::parse(batch).ok()?;
    if !h.is_control() || h.compression() != 0 || h.record_count < 1 {
        return None;
    }
    let mut cur = RecordCursor {
        buf: batch.get(HEADER_LEN..h.total_len().min(batch.len()))?,
        pos: 0,
    };
    let r = cur.record(0, |_, _| Ok(())).ok()?;
    let key = r.key?;
    if key.len() < 4 {
        return None;
    }
    match i16::from_be_bytes([key[2], key[3]]) {
        0 => Some(Marker::Abort),
        1 => Some(Marker::Commit),
        _ => None,
    }
}

/// Rewrites the base offset of a batch in place (the CRC does not cover it).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// A record to encode, with its absolute offset.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodeRecord {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

/// Encodes records (offsets ascending, gaps allowed) into as few uncompressed v2 batches as
/// the format allows, without producer ids (plain, non-idempotent batches).
/// (`Broker::produce` and the engine's outputs use [`crate::batch_builder`], which writes the
/// same bytes from borrowed fields.)
pub fn encode(records: &[EncodeRecord]) -> Result<BytesMut> {
    let kafka: Vec<Record> = records
        .iter()
        .map(|r| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: r.offset,
            // kafka-protocol starts a new batch whenever `offset - sequence` changes; giving
            // every record `sequence = offset` keeps one batch, and the base sequence is set
            // back to -1 (no producer) below.
            sequence: r.offset as i32,
            timestamp: r.timestamp,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone()))
                .collect(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        kafka.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| BrokerError::InvalidRecord(format!("cannot encode batch: {e}")))?;
    clear_base_sequences(&mut buf)?;
    Ok(buf)
}

/// Sets base sequence -1 on every batch in `buf` and recomputes their CRCs.
fn clear_base_sequences(buf: &mut [u8]) -> Result<()> {
    let mut pos = 0;
    while pos < buf.len() {
        let h = BatchHeader::parse(&buf[pos..])?;
        let end = pos + h.total_len();
        let batch = buf
            .get_mut(pos..end)
            .ok_or_else(|| BrokerError::CorruptBatch("encoder produced a short batch".into()))?;
        batch[BASE_SEQUENCE_OFFSET..BASE_SEQUENCE_OFFSET + 4]
            .copy_from_slice(&(-1i32).to_be_bytes());
        let crc = crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..]);
        batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        pos = end;
    }
    Ok(())
}

/// Decodes every record of one complete batch (decompressing if needed). Control batches
/// (transaction markers) yield no records.
pub fn decode(batch: Bytes) -> Result<Vec<StoredRecord>> {
    let h = validate(&batch)?;
    if h.is_control() {
        return Ok(Vec::new());
    }
    if h.compression() == 0 {
        return decode_plain(&batch, &h);
    }
    decode_with_codec(batch)
}

/// The records of an uncompressed batch that [`validate`] accepted, sliced out of it (a
/// reference count per key and value; nothing copied, no second CRC pass). The same records
/// as kafka-protocol's decoder gives ([`decode_with_codec`], which compressed batches take):
/// offsets and timestamps are the base's plus each record's delta, and a header name repeated
/// within one record keeps its first place and its last value.
fn decode_plain(batch: &Bytes, h: &BatchHeader) -> Result<Vec<StoredRecord>> {
    let records = &batch[HEADER_LEN..];
    let mut cur = RecordCursor {
        buf: records,
        pos: 0,
    };
    // Fields are slices of `records`, so of `batch`: shared, not copied.
    let share = |field: Option<&[u8]>| field.map(|f| batch.slice_ref(f));
    let mut out = Vec::with_capacity((h.record_count as usize).min(records.len()));
    for i in 0..h.record_count {
        let mut headers: Vec<Header> = Vec::new();
        let r = cur.record(i, |name, value| {
            let name = std::str::from_utf8(name).map_err(|_| {
                BrokerError::CorruptBatch(format!("record {i} has a header name that is not UTF-8"))
            })?;
            let value = share(value);
            match headers.iter_mut().find(|(n, _)| n == name) {
                Some(h) => h.1 = value,
                None => headers.push((name.to_string(), value)),
            }
            Ok(())
        })?;
        out.push(StoredRecord {
            offset: h.base_offset.wrapping_add(i64::from(r.offset_delta)),
            timestamp: h.base_timestamp.wrapping_add(r.timestamp_delta),
            key: share(r.key),
            value: share(r.value),
            headers,
        });
    }
    Ok(out)
}

/// Any batch, decoded by kafka-protocol (which decompresses).
fn decode_with_codec(batch: Bytes) -> Result<Vec<StoredRecord>> {
    let mut buf = batch;
    let set = RecordBatchDecoder::decode(&mut buf)
        .map_err(|e| BrokerError::CorruptBatch(format!("cannot decode records: {e}")))?;
    Ok(set
        .records
        .into_iter()
        .map(|r| StoredRecord {
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key,
            value: r.value,
            headers: r
                .headers
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        })
        .collect())
}

/// The whole batches of `bytes` (from a log read) that end below `limit` (a high
/// watermark): a reader never sees a batch the in-sync set does not have in full.
pub fn below(bytes: &Bytes, limit: i64) -> Result<Bytes> {
    let mut keep = 0usize;
    for (h, b) in split(bytes)? {
        if h.last_offset() >= limit {
            break;
        }
        keep += b.len();
    }
    Ok(bytes.slice(..keep))
}

/// Appends to `out` the records of the whole stored batches `bytes` at or after `from`,
/// until `out` holds `max_records`; returns where to read next: past the last record taken,
/// or past the last batch walked whole (so a compaction gap is stepped over).
pub fn take_records(
    bytes: &Bytes,
    from: i64,
    max_records: usize,
    out: &mut Vec<StoredRecord>,
) -> Result<i64> {
    take_records_except(bytes, from, max_records, out, |_| false)
}

/// [`take_records`], passing over (as if they were a gap) the batches `skip` names: a
/// read_committed reader's aborted transactions.
pub fn take_records_except(
    bytes: &Bytes,
    from: i64,
    max_records: usize,
    out: &mut Vec<StoredRecord>,
    skip: impl Fn(&BatchHeader) -> bool,
) -> Result<i64> {
    let mut next = from;
    'batches: for (h, b) in split(bytes)? {
        if skip(&h) {
            if out.len() >= max_records {
                break;
            }
            next = next.max(h.next_offset());
            continue;
        }
        for r in decode(b)? {
            if r.offset < next {
                continue;
            }
            if out.len() >= max_records {
                break 'batches;
            }
            next = r.offset + 1;
            out.push(r);
        }
        next = next.max(h.next_offset());
    }
    Ok(next)
}

/// Splits a buffer of consecutive whole batches into their byte ranges, validating each.
pub fn split(buf: &Bytes) -> Result<Vec<(BatchHeader, Bytes)>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let h = BatchHeader::parse(&buf[pos..])?;
        let end = pos
            .checked_add(h.total_len())
            .filter(|e| *e <= buf.len())
            .ok_or_else(|| BrokerError::CorruptBatch("truncated batch".into()))?;
        out.push((h, buf.slice(pos..end)));
        pos = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn markers_are_kafka_control_batches_that_decode_to_no_records() {
        for marker in [Marker::Commit, Marker::Abort] {
            let b = control_batch(42, 3, marker, 7, 1000).unwrap();
            let h = *b.header();
            assert!(h.is_control() && h.is_transactional());
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (42, 3, -1)
            );
            assert_eq!(h.record_count, 1);
            assert_eq!(marker_of(b.bytes()), Some(marker));
            assert!(decode(b.bytes().clone()).unwrap().is_empty());
            let mut out = Vec::new();
            let next = take_records(b.bytes(), 0, 10, &mut out).unwrap();
            assert!(out.is_empty());
            assert_eq!(next, 1, "readers step over a marker");
        }
        let plain = encode(&[rec(0, Some(b"k"), Some(b"v"))]).unwrap().freeze();
        assert_eq!(marker_of(&plain), None);
    }

    fn rec(offset: i64, key: Option<&[u8]>, value: Option<&[u8]>) -> EncodeRecord {
        EncodeRecord {
            offset,
            timestamp: 1_700_000_000_000 + offset,
            key: key.map(Bytes::copy_from_slice),
            value: value.map(Bytes::copy_from_slice),
            headers: vec![("h".into(), Some(Bytes::from_static(b"x")))],
        }
    }

    #[test]
    fn header_fields_of_an_encoded_batch() {
        let buf = encode(&[rec(5, Some(b"k"), Some(b"v")), rec(6, None, None)]).unwrap();
        let h = validate(&buf).unwrap();
        assert_eq!(h.base_offset, 5);
        assert_eq!(h.last_offset(), 6);
        assert_eq!(h.record_count, 2);
        assert_eq!(h.producer_id, -1);
        assert_eq!(h.base_sequence, -1);
        assert_eq!(h.max_timestamp, 1_700_000_000_006);
    }

    #[test]
    fn gaps_in_offsets_stay_in_one_batch() {
        let buf = encode(&[rec(1, Some(b"a"), None), rec(7, Some(b"b"), None)]).unwrap();
        let parts = split(&buf.freeze()).unwrap();
        assert_eq!(parts.len(), 1);
        let records = decode(parts[0].1.clone()).unwrap();
        assert_eq!(
            records.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![1, 7]
        );
    }

    #[test]
    fn rewriting_base_offset_keeps_crc_valid() {
        let mut buf = encode(&[rec(0, None, Some(b"v"))]).unwrap();
        set_base_offset(&mut buf, 1234);
        let h = validate(&buf).unwrap();
        assert_eq!(h.base_offset, 1234);
        assert_eq!(decode(buf.freeze()).unwrap()[0].offset, 1234);
    }

    #[test]
    fn record_walk_accepts_encoded_batches_and_flags_null_keys() {
        let buf = encode(&[rec(0, Some(b"k"), Some(b"v")), rec(1, Some(b"k2"), None)])
            .unwrap()
            .freeze();
        assert!(!validate_records(&buf).unwrap().null_key());
        let buf = encode(&[rec(0, None, Some(b"v"))]).unwrap().freeze();
        assert!(validate_records(&buf).unwrap().null_key());
    }

    #[test]
    fn record_walk_rejects_records_that_disagree_with_the_header() {
        // One more byte inside the first record's value, CRC recomputed: lengths disagree.
        let mut v = encode(&[rec(0, Some(b"k"), Some(b"value"))])
            .unwrap()
            .to_vec();
        v.insert(HEADER_LEN + 1, 0);
        let total = (v.len() - LOG_OVERHEAD) as i32;
        v[8..12].copy_from_slice(&total.to_be_bytes());
        let crc = crc32c::crc32c(&v[ATTRIBUTES_OFFSET..]);
        v[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        assert!(validate(&v).is_ok());
        assert!(validate_records(&Bytes::from(v)).is_err());
    }

    #[test]
    fn compressed_batches_validate_and_decode() {
        for compression in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let records: Vec<Record> = (0..50)
                .map(|i| Record {
                    transactional: false,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: -1,
                    producer_id: -1,
                    producer_epoch: -1,
                    timestamp_type: TimestampType::Creation,
                    offset: i,
                    sequence: i as i32,
                    timestamp: 1_700_000_000_000 + i,
                    key: Some(Bytes::from(format!("k{i}"))),
                    value: Some(Bytes::from(format!("value {i} ").repeat(20))),
                    headers: Default::default(),
                })
                .collect();
            let mut buf = BytesMut::new();
            RecordBatchEncoder::encode(
                &mut buf,
                records.iter(),
                &RecordEncodeOptions {
                    version: 2,
                    compression,
                },
            )
            .unwrap();
            let buf = buf.freeze();
            assert_eq!(validate(&buf).unwrap().compression(), compression as i16);
            assert!(!validate_records(&buf).unwrap().null_key());
            let decoded = decode(buf).unwrap();
            assert_eq!(decoded.len(), 50, "{compression:?}");
            assert_eq!(decoded[49].value, records[49].value);
        }
    }

    #[test]
    fn rejects_short_and_wrong_magic() {
        assert!(validate(&[0u8; 10]).is_err());
        let mut buf = encode(&[rec(0, None, Some(b"v"))]).unwrap();
        buf[16] = 1;
        assert!(matches!(validate(&buf), Err(BrokerError::CorruptBatch(_))));
    }

    type ArbRecord = (
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        i64,
        Vec<(String, Option<Vec<u8>>)>,
    );

    fn arb_record() -> impl Strategy<Value = ArbRecord> {
        (
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
            0i64..4_000_000_000_000,
            proptest::collection::vec(
                (
                    "[a-z]{1,8}",
                    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..10)),
                ),
                0..3,
            ),
        )
    }

    proptest! {
        /// The uncompressed fast path gives what kafka-protocol's decoder gives, repeated
        /// header names included (BatchBuilder writes them as pushed).
        #[test]
        fn plain_decoding_matches_the_codec(
            base in 0i64..1_000_000_000,
            recs in proptest::collection::vec(arb_record(), 1..30),
            repeat in proptest::collection::vec(any::<bool>(), 30),
        ) {
            let mut b = crate::batch_builder::BatchBuilder::new();
            for (i, (k, v, ts, hs)) in recs.iter().enumerate() {
                let mut hs: Vec<(String, Option<Vec<u8>>)> = hs.clone();
                if repeat[i] && !hs.is_empty() {
                    hs.push((hs[0].0.clone(), Some(b"again".to_vec())));
                }
                b.push(
                    *ts,
                    k.as_deref(),
                    v.as_deref(),
                    hs.iter().map(|(n, v)| (n.as_str(), v.as_deref())),
                );
            }
            let mut bytes = b.finish().unwrap();
            set_base_offset(&mut bytes, base);
            let bytes = bytes.freeze();
            let h = validate(&bytes).unwrap();
            prop_assert_eq!(
                decode_plain(&bytes, &h).unwrap(),
                decode_with_codec(bytes.clone()).unwrap()
            );
        }

        /// Arbitrary bytes behind a valid header and CRC: checking and decoding return
        /// errors, never panic (the fuzz target `record_batch` does the same at length).
        #[test]
        fn decoding_garbage_with_a_right_crc_never_panics(
            count in 0i32..50,
            body in proptest::collection::vec(any::<u8>(), 0..400),
            attributes in prop_oneof![Just(0i16), 0i16..8],
        ) {
            let mut b = vec![0u8; HEADER_LEN];
            b[8..12].copy_from_slice(&((HEADER_LEN - 12 + body.len()) as i32).to_be_bytes());
            b[16] = MAGIC as u8;
            b[21..23].copy_from_slice(&attributes.to_be_bytes());
            b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
            b[57..61].copy_from_slice(&count.to_be_bytes());
            b.extend_from_slice(&body);
            let crc = crc32c::crc32c(&b[ATTRIBUTES_OFFSET..]);
            b[17..21].copy_from_slice(&crc.to_be_bytes());
            let b = Bytes::from(b);
            let _ = validate_records(&b);
            let _ = decode(b);
        }

        #[test]
        fn encode_decode_round_trip(
            base in 0i64..1_000_000_000,
            recs in proptest::collection::vec(arb_record(), 1..30),
            gaps in proptest::collection::vec(1i64..5, 30),
        ) {
            let mut offset = base;
            let mut input = Vec::new();
            for (i, (k, v, ts, hs)) in recs.into_iter().enumerate() {
                // Header names are unique per record in this model (the codec keeps a map).
                let mut hs = hs;
                hs.sort_by(|a, b| a.0.cmp(&b.0));
                hs.dedup_by(|a, b| a.0 == b.0);
                input.push(EncodeRecord {
                    offset,
                    timestamp: ts,
                    key: k.map(Bytes::from),
                    value: v.map(Bytes::from),
                    headers: hs.into_iter().map(|(n, v)| (n, v.map(Bytes::from))).collect(),
                });
                offset += gaps[i];
            }
            let buf = encode(&input).unwrap().freeze();
            let mut decoded = Vec::new();
            for (h, b) in split(&buf).unwrap() {
                prop_assert_eq!(validate(&b).unwrap(), h);
                decoded.extend(decode(b).unwrap());
            }
            prop_assert_eq!(decoded.len(), input.len());
            for (d, i) in decoded.iter().zip(&input) {
                prop_assert_eq!(d.offset, i.offset);
                prop_assert_eq!(d.timestamp, i.timestamp);
                prop_assert_eq!(&d.key, &i.key);
                prop_assert_eq!(&d.value, &i.value);
                prop_assert_eq!(&d.headers, &i.headers);
            }
        }

        #[test]
        fn any_flipped_bit_after_the_length_is_rejected(
            value in proptest::collection::vec(any::<u8>(), 0..100),
            bit in any::<prop::sample::Index>(),
        ) {
            let buf = encode(&[rec(0, Some(b"key"), Some(&value))]).unwrap();
            // Base offset, length and partition leader epoch are outside the CRC (as in
            // Kafka); the magic byte is checked on its own; every later bit is CRC-covered.
            let checked_from = 16;
            let i = checked_from * 8 + bit.index((buf.len() - checked_from) * 8);
            let mut corrupt = buf.to_vec();
            corrupt[i / 8] ^= 1 << (i % 8);
            prop_assert!(validate(&corrupt).is_err());
        }

        #[test]
        fn record_walk_never_panics_on_garbage_records(
            tail in proptest::collection::vec(any::<u8>(), 0..200),
            count in 1i32..10,
        ) {
            let mut v = encode(&[rec(0, None, Some(b"v"))]).unwrap().to_vec();
            v.truncate(HEADER_LEN);
            v.extend_from_slice(&tail);
            let total = (v.len() - LOG_OVERHEAD) as i32;
            v[8..12].copy_from_slice(&total.to_be_bytes());
            v[57..61].copy_from_slice(&count.to_be_bytes());
            v[23..27].copy_from_slice(&(count - 1).to_be_bytes());
            let crc = crc32c::crc32c(&v[ATTRIBUTES_OFFSET..]);
            v[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
            let _ = validate_records(&Bytes::from(v));
        }

        #[test]
        fn validate_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = validate(&bytes);
            let _ = split(&Bytes::from(bytes));
        }
    }
}
