//! The storage format of `__transaction_state`: one record per change of a transactional
//! id's state, keyed by the id so compaction keeps the latest. The key is Kafka's
//! `TransactionLogKey` v0 (version i16 = 0, transactional id string). The value starts with
//! the fields of Kafka's `TransactionLogValue` v0 (producer id i64, producer epoch i16,
//! timeout i32, status i8, partitions `[topic string, [partition i32]]`, last update i64,
//! start i64) under Weir's own version number [`VALUE_VERSION`], then Weir's additions: the
//! groups added with AddOffsetsToTxn and the offsets TxnOffsetCommit gave, which become
//! visible in their groups when the transaction commits. Nothing else here: no I/O.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{BufMut, Bytes, BytesMut};

use super::{PendingOffset, TxnMeta, TxnStatus};
use crate::be_reader::Reader;

/// Weir's value version (Kafka's own are 0 and 1; their readers skip this one).
pub const VALUE_VERSION: i16 = 100;

fn put_str(b: &mut BytesMut, s: &str) {
    let n = s.len().min(i16::MAX as usize);
    b.put_i16(n as i16);
    b.put_slice(&s.as_bytes()[..n]);
}

fn put_opt_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

pub fn encode_key(transactional_id: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + transactional_id.len());
    b.put_i16(0);
    put_str(&mut b, transactional_id);
    b.freeze()
}

pub fn encode_value(m: &TxnMeta) -> Bytes {
    let mut b = BytesMut::with_capacity(64);
    b.put_i16(VALUE_VERSION);
    b.put_i64(m.producer_id);
    b.put_i16(m.epoch);
    b.put_i32(m.timeout_ms);
    b.put_i8(m.status as i8);
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in &m.partitions {
        by_topic.entry(t.as_str()).or_default().push(*p);
    }
    b.put_i32(by_topic.len() as i32);
    for (t, ps) in by_topic {
        put_str(&mut b, t);
        b.put_i32(ps.len() as i32);
        for p in ps {
            b.put_i32(p);
        }
    }
    b.put_i64(m.update_ms);
    b.put_i64(m.start_ms);
    b.put_i32(m.groups.len() as i32);
    for g in &m.groups {
        put_str(&mut b, g);
    }
    b.put_i32(m.offsets.len() as i32);
    for ((g, t, p), o) in &m.offsets {
        put_str(&mut b, g);
        put_str(&mut b, t);
        b.put_i32(*p);
        b.put_i64(o.offset);
        b.put_i32(o.leader_epoch);
        put_opt_str(&mut b, o.metadata.as_deref());
    }
    b.freeze()
}

pub fn decode_key(key: &[u8]) -> Option<String> {
    let mut r = Reader(key);
    if r.i16()? != 0 {
        return None;
    }
    r.str()
}

pub fn decode_value(value: &[u8]) -> Option<TxnMeta> {
    let mut r = Reader(value);
    if r.i16()? != VALUE_VERSION {
        return None;
    }
    let producer_id = r.i64()?;
    let epoch = r.i16()?;
    let timeout_ms = r.i32()?;
    let status = TxnStatus::from_i8(r.i8()?)?;
    let mut partitions = BTreeSet::new();
    for _ in 0..r.count()? {
        let t = r.str()?;
        for _ in 0..r.count()? {
            partitions.insert((t.clone(), r.i32()?));
        }
    }
    let update_ms = r.i64()?;
    let start_ms = r.i64()?;
    let mut groups = BTreeSet::new();
    for _ in 0..r.count()? {
        groups.insert(r.str()?);
    }
    let mut offsets = BTreeMap::new();
    for _ in 0..r.count()? {
        let g = r.str()?;
        let t = r.str()?;
        let p = r.i32()?;
        let offset = r.i64()?;
        let leader_epoch = r.i32()?;
        let metadata = r.opt_str()?;
        offsets.insert(
            (g, t, p),
            PendingOffset {
                offset,
                leader_epoch,
                metadata,
            },
        );
    }
    Some(TxnMeta {
        producer_id,
        epoch,
        timeout_ms,
        status,
        partitions,
        groups,
        offsets,
        start_ms,
        update_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips() {
        let mut m = TxnMeta::new(77, 60_000, 5);
        m.epoch = 3;
        m.status = TxnStatus::PrepareCommit;
        m.partitions.insert(("a".into(), 0));
        m.partitions.insert(("a".into(), 2));
        m.partitions.insert(("b".into(), 1));
        m.groups.insert("g".into());
        m.offsets.insert(
            ("g".into(), "in".into(), 4),
            PendingOffset {
                offset: 99,
                leader_epoch: -1,
                metadata: None,
            },
        );
        assert_eq!(decode_value(&encode_value(&m)), Some(m));
        assert_eq!(decode_key(&encode_key("tx-1")), Some("tx-1".into()));
        assert_eq!(decode_value(&[0, 100, 1]), None);
        // A hostile count does not allocate: it is refused.
        let mut bad = encode_value(&TxnMeta::new(1, 1, 1)).to_vec();
        bad[17..21].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(decode_value(&bad), None);
    }
}
