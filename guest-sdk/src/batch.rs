//! The input batch as the guest sees it: a view over the one buffer the host passes to
//! `process`, decoded lazily (a record's fields are read only when asked for; keys, values
//! and headers are borrowed slices, never copied). The encoding is documented on `process` in
//! `wit/processor.wit`.

use crate::Error;

const MAGIC: [u8; 2] = *b"WB";
const VERSION: u8 = 1;
/// Bytes of a record body before its key: topic, partition, offset, timestamp, key length,
/// value length, header count.
const FIXED: usize = 4 + 4 + 8 + 8 + 4 + 4 + 4;

/// A batch of input records, in offset order per input partition.
///
/// ```
/// # use weir_guest::Batch;
/// # fn f(batch: &Batch<'_>) {
/// for record in batch {
///     let value = record.value().unwrap_or_default();
///     let _ = (record.topic(), record.offset(), value.len());
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct Batch<'a> {
    count: u32,
    topics: Vec<&'a str>,
    /// The records, back to back.
    records: &'a [u8],
}

impl<'a> Batch<'a> {
    /// Reads the header and topic table of an encoded batch; records are decoded as they are
    /// iterated.
    pub fn decode(buf: &'a [u8]) -> Result<Batch<'a>, Error> {
        let mut r = Reader(buf);
        let head = r.bytes(4).ok_or_else(|| malformed("header"))?;
        if head[..2] != MAGIC || head[2] != VERSION {
            return Err(Error::new(format!(
                "unsupported batch encoding (header {head:?}; this SDK reads version {VERSION})"
            )));
        }
        let count = r.u32().ok_or_else(|| malformed("record count"))?;
        let topic_count = r.u32().ok_or_else(|| malformed("topic count"))?;
        let mut topics = Vec::with_capacity(topic_count.min(1024) as usize);
        for _ in 0..topic_count {
            let len = r.u32().ok_or_else(|| malformed("topic"))? as usize;
            let name = r.bytes(len).ok_or_else(|| malformed("topic"))?;
            topics.push(std::str::from_utf8(name).map_err(|_| malformed("topic name"))?);
        }
        Ok(Batch {
            count,
            topics,
            records: r.0,
        })
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The records in order.
    pub fn iter(&self) -> Records<'a, '_> {
        Records {
            batch: self,
            rest: self.records,
            left: self.count,
        }
    }

    /// Checks every record's framing. Iteration stops early at a malformed record, which the
    /// engine never produces; this walks the whole batch to tell.
    pub fn validate(&self) -> Result<(), Error> {
        let mut rest = self.records;
        for i in 0..self.count {
            match split_record(&mut rest, &self.topics) {
                Some(_) => {}
                None => return Err(malformed(&format!("record {i}"))),
            }
        }
        Ok(())
    }
}

impl<'a, 'b> IntoIterator for &'b Batch<'a> {
    type Item = Record<'a>;
    type IntoIter = Records<'a, 'b>;
    fn into_iter(self) -> Records<'a, 'b> {
        self.iter()
    }
}

/// Iterator over a batch's records. Stops early at a malformed record (see
/// [`Batch::validate`]).
pub struct Records<'a, 'b> {
    batch: &'b Batch<'a>,
    rest: &'a [u8],
    left: u32,
}

impl<'a> Iterator for Records<'a, '_> {
    type Item = Record<'a>;

    #[inline]
    fn next(&mut self) -> Option<Record<'a>> {
        if self.left == 0 {
            return None;
        }
        match split_record(&mut self.rest, &self.batch.topics) {
            Some(record) => {
                self.left -= 1;
                crate::context::set_current_timestamp(record.timestamp());
                Some(record)
            }
            None => {
                self.left = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left as usize))
    }
}

/// Splits the next record off `rest`, checking its framing.
#[inline]
fn split_record<'a>(rest: &mut &'a [u8], topics: &[&'a str]) -> Option<Record<'a>> {
    let mut r = Reader(rest);
    let size = r.u32()? as usize;
    let body = r.bytes(size)?;
    *rest = r.0;
    if body.len() < FIXED {
        return None;
    }
    let topic_index = le_u32(body, 0)? as usize;
    let topic = *topics.get(topic_index)?;
    let key_len = le_i32(body, 24)?;
    let value_len = le_i32(body, 28)?;
    let mut at = FIXED;
    let key = optional_slice(body, &mut at, key_len)?;
    let value = optional_slice(body, &mut at, value_len)?;
    let headers = body.get(at..)?;
    Some(Record {
        topic,
        fixed: body.get(..FIXED)?,
        key,
        value,
        headers,
    })
}

#[inline]
fn optional_slice<'a>(body: &'a [u8], at: &mut usize, len: i32) -> Option<Option<&'a [u8]>> {
    if len < 0 {
        return Some(None);
    }
    let end = at.checked_add(len as usize)?;
    let s = body.get(*at..end)?;
    *at = end;
    Some(Some(s))
}

/// One input record: borrowed from the batch buffer.
#[derive(Clone, Copy)]
pub struct Record<'a> {
    topic: &'a str,
    /// The fixed-size fields (FIXED bytes).
    fixed: &'a [u8],
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    /// The encoded headers (the rest of the body).
    headers: &'a [u8],
}

impl<'a> Record<'a> {
    /// The topic the record was read from: an input topic, or the processor's repartition
    /// topic (see [`Record::is_repartitioned`]).
    pub fn topic(&self) -> &'a str {
        self.topic
    }

    /// True when the record comes from the processor's own repartition topic, i.e. it was
    /// emitted to the `"repartition"` output (see [`crate::REPARTITION`]).
    pub fn is_repartitioned(&self) -> bool {
        self.topic.ends_with(".repartition")
    }

    pub fn partition(&self) -> i32 {
        le_i32(self.fixed, 4).unwrap_or_default()
    }

    pub fn offset(&self) -> i64 {
        le_i64(self.fixed, 8).unwrap_or_default()
    }

    /// Event time, ms since the Unix epoch.
    pub fn timestamp(&self) -> i64 {
        le_i64(self.fixed, 16).unwrap_or_default()
    }

    pub fn key(&self) -> Option<&'a [u8]> {
        self.key
    }

    pub fn value(&self) -> Option<&'a [u8]> {
        self.value
    }

    /// The key as UTF-8, if present and valid.
    pub fn key_str(&self) -> Option<&'a str> {
        self.key.and_then(|k| std::str::from_utf8(k).ok())
    }

    /// The value as UTF-8, if present and valid.
    pub fn value_str(&self) -> Option<&'a str> {
        self.value.and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The value parsed as JSON.
    pub fn value_json<T: serde::Deserialize<'a>>(&self) -> Result<T, Error> {
        let value = self
            .value
            .ok_or_else(|| Error::new("record has no value"))?;
        Ok(serde_json::from_slice(value)?)
    }

    /// The headers, decoded as they are iterated.
    pub fn headers(&self) -> Headers<'a> {
        Headers {
            rest: self.headers,
            left: le_u32(self.fixed, 32).unwrap_or_default(),
        }
    }

    /// The first header named `name` (its value may be absent).
    pub fn header(&self, name: &str) -> Option<Option<&'a [u8]>> {
        self.headers().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

impl std::fmt::Debug for Record<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("topic", &self.topic)
            .field("partition", &self.partition())
            .field("offset", &self.offset())
            .field("timestamp", &self.timestamp())
            .field("key", &self.key.map(String::from_utf8_lossy))
            .field("value", &self.value.map(String::from_utf8_lossy))
            .finish()
    }
}

/// Iterator over a record's headers: `(name, value)`. Stops at malformed data.
pub struct Headers<'a> {
    rest: &'a [u8],
    left: u32,
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'a str, Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let mut r = Reader(self.rest);
        let parsed = (|| {
            let name_len = r.u32()? as usize;
            let name = std::str::from_utf8(r.bytes(name_len)?).ok()?;
            let value_len = r.i32()?;
            let value = if value_len < 0 {
                None
            } else {
                Some(r.bytes(value_len as usize)?)
            };
            Some((name, value))
        })();
        match parsed {
            Some(item) => {
                self.rest = r.0;
                Some(item)
            }
            None => {
                self.left = 0;
                None
            }
        }
    }
}

/// A cursor over little-endian data.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    #[inline]
    pub(crate) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    #[inline]
    pub(crate) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.bytes(4)?.try_into().ok()?))
    }
    #[inline]
    pub(crate) fn i32(&mut self) -> Option<i32> {
        Some(i32::from_le_bytes(self.bytes(4)?.try_into().ok()?))
    }
}

#[inline]
fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
#[inline]
fn le_i32(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
#[inline]
fn le_i64(b: &[u8], at: usize) -> Option<i64> {
    Some(i64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn malformed(what: &str) -> Error {
    Error::new(format!("malformed batch from the host: bad {what}"))
}

/// Encodes a batch the way the host does (for the tests).
#[cfg(test)]
pub(crate) mod encode {
    /// One record to encode.
    pub struct TestRecord<'a> {
        pub topic: &'a str,
        pub partition: i32,
        pub offset: i64,
        pub timestamp: i64,
        pub key: Option<&'a [u8]>,
        pub value: Option<&'a [u8]>,
        pub headers: &'a [(&'a str, Option<&'a [u8]>)],
    }

    /// Encodes `records` in the batch encoding of `wit/processor.wit`.
    pub fn batch(records: &[TestRecord<'_>]) -> Vec<u8> {
        let mut topics: Vec<&str> = Vec::new();
        for r in records {
            if !topics.contains(&r.topic) {
                topics.push(r.topic);
            }
        }
        let mut out = Vec::new();
        out.extend_from_slice(b"WB\x01\x00");
        out.extend_from_slice(&(records.len() as u32).to_le_bytes());
        out.extend_from_slice(&(topics.len() as u32).to_le_bytes());
        for t in &topics {
            out.extend_from_slice(&(t.len() as u32).to_le_bytes());
            out.extend_from_slice(t.as_bytes());
        }
        for r in records {
            let mut body = Vec::new();
            let topic = topics.iter().position(|t| *t == r.topic).unwrap_or(0) as u32;
            body.extend_from_slice(&topic.to_le_bytes());
            body.extend_from_slice(&r.partition.to_le_bytes());
            body.extend_from_slice(&r.offset.to_le_bytes());
            body.extend_from_slice(&r.timestamp.to_le_bytes());
            let len = |b: Option<&[u8]>| b.map_or(-1i32, |b| b.len() as i32);
            body.extend_from_slice(&len(r.key).to_le_bytes());
            body.extend_from_slice(&len(r.value).to_le_bytes());
            body.extend_from_slice(&(r.headers.len() as u32).to_le_bytes());
            body.extend_from_slice(r.key.unwrap_or_default());
            body.extend_from_slice(r.value.unwrap_or_default());
            for (name, value) in r.headers {
                body.extend_from_slice(&(name.len() as u32).to_le_bytes());
                body.extend_from_slice(name.as_bytes());
                body.extend_from_slice(&len(*value).to_le_bytes());
                body.extend_from_slice(value.unwrap_or_default());
            }
            out.extend_from_slice(&(body.len() as u32).to_le_bytes());
            out.extend_from_slice(&body);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::encode::{TestRecord, batch};
    use super::*;

    #[test]
    fn decodes_what_the_encoder_writes() {
        let buf = batch(&[
            TestRecord {
                topic: "in",
                partition: 3,
                offset: 42,
                timestamp: 1_700_000_000_000,
                key: Some(b"k"),
                value: Some(b"hello"),
                headers: &[("h1", Some(b"v1")), ("h2", None)],
            },
            TestRecord {
                topic: "wc.repartition",
                partition: 3,
                offset: 7,
                timestamp: -5,
                key: None,
                value: None,
                headers: &[],
            },
        ]);
        let b = Batch::decode(&buf).unwrap();
        assert_eq!(b.len(), 2);
        b.validate().unwrap();
        let rs: Vec<_> = b.iter().collect();
        assert_eq!(rs.len(), 2);
        assert_eq!(rs[0].topic(), "in");
        assert_eq!(rs[0].partition(), 3);
        assert_eq!(rs[0].offset(), 42);
        assert_eq!(rs[0].timestamp(), 1_700_000_000_000);
        assert_eq!(rs[0].key(), Some(&b"k"[..]));
        assert_eq!(rs[0].value_str(), Some("hello"));
        let hs: Vec<_> = rs[0].headers().collect();
        assert_eq!(hs, vec![("h1", Some(&b"v1"[..])), ("h2", None)]);
        assert_eq!(rs[0].header("h2"), Some(None));
        assert!(!rs[0].is_repartitioned());
        assert!(rs[1].is_repartitioned());
        assert_eq!(rs[1].key(), None);
        assert_eq!(rs[1].value(), None);
        assert_eq!(rs[1].timestamp(), -5);
    }

    #[test]
    fn malformed_input_never_panics() {
        let good = batch(&[TestRecord {
            topic: "t",
            partition: 0,
            offset: 1,
            timestamp: 2,
            key: Some(b"key"),
            value: Some(b"value"),
            headers: &[("h", Some(b"x"))],
        }]);
        for cut in 0..good.len() {
            if let Ok(b) = Batch::decode(&good[..cut]) {
                let _ = b.validate();
                for r in b.iter() {
                    let _ = (r.key(), r.value(), r.headers().count());
                }
            }
        }
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(Batch::decode(&bad).is_err());
        // A key length pointing past the record.
        let mut bad = good.clone();
        let key_len_at = 4 + 4 + 4 + 4 + 1 + 4 + 24;
        bad[key_len_at..key_len_at + 4].copy_from_slice(&1000i32.to_le_bytes());
        let b = Batch::decode(&bad).unwrap();
        assert_eq!(b.iter().count(), 0);
        assert!(b.validate().is_err());
    }
}
