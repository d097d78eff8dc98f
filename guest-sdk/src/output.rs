//! Records the guest emits: the [`Emit`] builder and the output buffer that the SDK sends to
//! the host in one `emit-batch` call (the encoding is documented on `emit-batch` in
//! `wit/processor.wit`).

/// A record to emit, built up by chained calls and passed to
/// [`Context::emit`](crate::Context::emit). Borrowed data is copied into the output buffer
/// when emitted.
///
/// ```
/// # use weir_guest::Emit;
/// let word = "hello";
/// let e = Emit::to("repartition").key(word).value("1").header("source", "demo");
/// # let _ = e;
/// let e = Emit::new().value(b"to the default output".as_slice()).timestamp(1_700_000_000_000);
/// # let _ = e;
/// ```
#[derive(Debug, Clone, Default)]
pub struct Emit<'a> {
    pub(crate) output: &'a str,
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) value: Option<&'a [u8]>,
    pub(crate) timestamp: Option<i64>,
    pub(crate) headers: Vec<(&'a str, Option<&'a [u8]>)>,
}

impl<'a> Emit<'a> {
    /// A record for the processor's default output (the first output of its spec).
    pub fn new() -> Emit<'a> {
        Emit::default()
    }

    /// A record for the named output: one of the spec's outputs, `""` for the default one, or
    /// [`REPARTITION`](crate::REPARTITION).
    pub fn to(output: &'a str) -> Emit<'a> {
        Emit {
            output,
            ..Emit::default()
        }
    }

    pub fn key<K: AsRef<[u8]> + ?Sized>(mut self, key: &'a K) -> Self {
        self.key = Some(key.as_ref());
        self
    }

    pub fn value<V: AsRef<[u8]> + ?Sized>(mut self, value: &'a V) -> Self {
        self.value = Some(value.as_ref());
        self
    }

    /// Sets the key, or clears it with `None`.
    pub fn key_opt(mut self, key: Option<&'a [u8]>) -> Self {
        self.key = key;
        self
    }

    /// Sets the value, or clears it with `None` (a tombstone on a compacted topic).
    pub fn value_opt(mut self, value: Option<&'a [u8]>) -> Self {
        self.value = value;
        self
    }

    /// Event time of the record (ms). Without one, the SDK uses the timestamp of the input
    /// record last taken from the batch (or the timer's time in `on_timer`).
    pub fn timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    pub fn header<V: AsRef<[u8]> + ?Sized>(mut self, name: &'a str, value: &'a V) -> Self {
        self.headers.push((name, Some(value.as_ref())));
        self
    }

    /// A header without a value.
    pub fn null_header(mut self, name: &'a str) -> Self {
        self.headers.push((name, None));
        self
    }
}

/// Encoded records waiting to be sent to the host.
#[derive(Default)]
pub(crate) struct OutputBuffer {
    buf: Vec<u8>,
    records: usize,
}

const HEADER: &[u8; 4] = b"WO\x01\x00";

impl OutputBuffer {
    #[inline]
    pub(crate) fn push(&mut self, e: &Emit<'_>, default_timestamp: Option<i64>) {
        self.push_with(e, default_timestamp, None::<fn(&mut Vec<u8>)>);
    }

    /// Encodes `e`; with `fill`, the value is what `fill` appends to the buffer instead of
    /// `e`'s (see [`Context::emit_with`](crate::Context::emit_with)).
    #[inline]
    pub(crate) fn push_with(
        &mut self,
        e: &Emit<'_>,
        default_timestamp: Option<i64>,
        fill: Option<impl FnOnce(&mut Vec<u8>)>,
    ) {
        if self.buf.is_empty() {
            self.buf.extend_from_slice(HEADER);
        }
        let value = if fill.is_some() { None } else { e.value };
        let b = &mut self.buf;
        b.reserve(
            4 + e.output.len() + 25 + e.key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len),
        );
        b.extend_from_slice(&(e.output.len() as u32).to_le_bytes());
        if !e.output.is_empty() {
            append(b, e.output.as_bytes());
        }
        // flags, timestamp, key length, value length, header count: one block.
        let (flags, ts) = match e.timestamp.or(default_timestamp) {
            Some(ts) => (1u8, ts),
            None => (0u8, 0),
        };
        let mut fixed = [0u8; 21];
        fixed[0] = flags;
        fixed[1..9].copy_from_slice(&ts.to_le_bytes());
        fixed[9..13].copy_from_slice(&len(e.key).to_le_bytes());
        fixed[13..17].copy_from_slice(&len(value).to_le_bytes());
        fixed[17..21].copy_from_slice(&(e.headers.len() as u32).to_le_bytes());
        let value_len_at = b.len() + 13;
        b.extend_from_slice(&fixed);
        if let Some(k) = e.key {
            append(b, k);
        }
        if let Some(v) = value {
            append(b, v);
        }
        if let Some(fill) = fill {
            let start = b.len();
            fill(b);
            let n = (b.len() - start) as i32;
            b[value_len_at..value_len_at + 4].copy_from_slice(&n.to_le_bytes());
        }
        for (name, value) in &e.headers {
            b.extend_from_slice(&(name.len() as u32).to_le_bytes());
            append(b, name.as_bytes());
            b.extend_from_slice(&len(*value).to_le_bytes());
            if let Some(v) = value {
                append(b, v);
            }
        }
        self.records += 1;
    }

    /// Whether the buffer is big enough to send now rather than at the end of the call (kept
    /// small enough to stay in cache; a host call costs well under a microsecond).
    pub(crate) fn should_flush(&self) -> bool {
        self.records >= 1024 || self.buf.len() >= 256 << 10
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The encoded buffer (empty when no record is waiting).
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.records = 0;
    }
}

/// Appends `src`.
#[inline]
fn append(buf: &mut Vec<u8>, src: &[u8]) {
    buf.extend_from_slice(src);
}

fn len(b: Option<&[u8]>) -> i32 {
    b.map_or(-1, |b| b.len() as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_documented_layout() {
        let mut out = OutputBuffer::default();
        out.push(&Emit::to("o").key("k").value("vv").header("h", "x"), None);
        out.push(&Emit::new(), Some(7));
        let mut want = Vec::new();
        want.extend_from_slice(b"WO\x01\x00");
        want.extend_from_slice(&1u32.to_le_bytes());
        want.extend_from_slice(b"o");
        want.push(0);
        want.extend_from_slice(&0i64.to_le_bytes());
        want.extend_from_slice(&1i32.to_le_bytes());
        want.extend_from_slice(&2i32.to_le_bytes());
        want.extend_from_slice(&1u32.to_le_bytes());
        want.extend_from_slice(b"kvv");
        want.extend_from_slice(&1u32.to_le_bytes());
        want.extend_from_slice(b"h");
        want.extend_from_slice(&1i32.to_le_bytes());
        want.extend_from_slice(b"x");
        want.extend_from_slice(&0u32.to_le_bytes());
        want.push(1);
        want.extend_from_slice(&7i64.to_le_bytes());
        want.extend_from_slice(&(-1i32).to_le_bytes());
        want.extend_from_slice(&(-1i32).to_le_bytes());
        want.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(out.bytes(), &want[..]);
        out.clear();
        assert!(out.is_empty());
        // A written value, and long fields (copied with extend_from_slice).
        let long = vec![b'z'; 300];
        out.push_with(
            &Emit::new().key(&long[..17]),
            None,
            Some(|b: &mut Vec<u8>| b.extend_from_slice(b"abc")),
        );
        out.push(&Emit::new().value(&long), None);
        let mut want = Vec::new();
        want.extend_from_slice(b"WO\x01\x00");
        want.extend_from_slice(&0u32.to_le_bytes());
        want.push(0);
        want.extend_from_slice(&0i64.to_le_bytes());
        want.extend_from_slice(&17i32.to_le_bytes());
        want.extend_from_slice(&3i32.to_le_bytes());
        want.extend_from_slice(&0u32.to_le_bytes());
        want.extend_from_slice(&long[..17]);
        want.extend_from_slice(b"abc");
        want.extend_from_slice(&0u32.to_le_bytes());
        want.push(0);
        want.extend_from_slice(&0i64.to_le_bytes());
        want.extend_from_slice(&(-1i32).to_le_bytes());
        want.extend_from_slice(&300i32.to_le_bytes());
        want.extend_from_slice(&0u32.to_le_bytes());
        want.extend_from_slice(&long);
        assert_eq!(out.bytes(), &want[..]);
        out.clear();
        assert!(out.bytes().is_empty());
    }
}
