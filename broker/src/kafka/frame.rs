//! Kafka framing: every request and response is a big-endian `i32` length followed by that
//! many bytes. This module owns splitting a byte stream into frames (with a size limit) and
//! prefixing outgoing frames with their length. It knows nothing of what is inside a frame
//! (that is [`super::codec`]) nor of sockets (that is [`super::server`]).

use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;

/// Why a frame could not be taken from the stream. Either way the connection must close:
/// after a bad length prefix the stream has no recoverable frame boundary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {0} is negative")]
    Negative(i32),
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
}

/// The body size announced by the length prefix at the front of `buf` (`Ok(None)` while
/// fewer than 4 bytes are there), checked against `max_frame`.
pub fn announced_size(buf: &[u8], max_frame: usize) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let len = i32::from_be_bytes(*prefix);
    let size = usize::try_from(len).map_err(|_| FrameError::Negative(len))?;
    if size > max_frame {
        return Err(FrameError::TooLarge {
            size,
            limit: max_frame,
        });
    }
    Ok(Some(size))
}

/// Takes one whole frame (without its length prefix) off the front of `buf`, or returns
/// `Ok(None)` if `buf` does not hold a whole frame yet. It never reserves room for the
/// announced size: memory follows the bytes that arrived, not what a peer claims.
pub fn decode_frame(buf: &mut BytesMut, max_frame: usize) -> Result<Option<Bytes>, FrameError> {
    let Some(size) = announced_size(buf, max_frame)? else {
        return Ok(None);
    };
    if buf.len() < 4 + size {
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(size).freeze()))
}

/// Starts an outgoing frame: reserves the 4-byte length prefix that [`finish_frame`] fills.
pub fn start_frame(capacity: usize) -> BytesMut {
    let mut buf = BytesMut::with_capacity(capacity + 4);
    buf.extend_from_slice(&[0u8; 4]);
    buf
}

/// Writes the length prefix of a frame begun with [`start_frame`].
pub fn finish_frame(buf: &mut BytesMut) -> Result<(), FrameError> {
    let body = buf.len().saturating_sub(4);
    buf[0..4].copy_from_slice(&frame_len(body)?.to_be_bytes());
    Ok(())
}

fn frame_len(body: usize) -> Result<i32, FrameError> {
    i32::try_from(body).map_err(|_| FrameError::TooLarge {
        size: body,
        limit: i32::MAX as usize,
    })
}

/// Smallest field a [`FrameWriter`] keeps as a chunk of its own instead of copying it.
pub const SPLICE_MIN: usize = 16 << 10;

/// An outgoing frame as chunks to write in order (length prefix included): what the encoder
/// wrote, with the large fields it was told about (fetched record batches) left as the
/// buffers they were read into rather than copied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutFrame {
    chunks: Vec<Bytes>,
}

impl OutFrame {
    pub fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }

    /// A frame made of `chunks` as they are (the first holds the length prefix).
    pub fn from_chunks(chunks: Vec<Bytes>) -> OutFrame {
        OutFrame { chunks }
    }

    /// Bytes on the wire, prefix included.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The frame in one buffer (copies; for tests and small frames).
    pub fn to_bytes(&self) -> Bytes {
        match self.chunks.as_slice() {
            [one] => one.clone(),
            chunks => {
                let mut all = BytesMut::with_capacity(self.len());
                for c in chunks {
                    all.extend_from_slice(c);
                }
                all.freeze()
            }
        }
    }
}

/// The buffer a response is encoded into. Writes of at least [`SPLICE_MIN`] bytes that are
/// exactly one of the `splice` buffers (same memory) are not copied: the buffer ends a chunk
/// there and references it instead. Offsets (`ByteBufMut::offset`) count from the start of
/// the body; `seek` and `range` (used by encoders that patch lengths in afterwards) work
/// within what was written since the last spliced field, which is all a response needs.
pub struct FrameWriter<'a> {
    done: Vec<Bytes>,
    done_len: usize,
    cur: BytesMut,
    splice: &'a [Bytes],
}

impl<'a> FrameWriter<'a> {
    pub fn new(capacity: usize, splice: &'a [Bytes]) -> FrameWriter<'a> {
        FrameWriter {
            done: Vec::new(),
            done_len: 0,
            cur: BytesMut::with_capacity(capacity),
            splice,
        }
    }

    /// The whole frame, its length prefix first.
    pub fn finish(mut self) -> Result<OutFrame, FrameError> {
        let body = self.done_len + self.cur.len();
        let prefix = frame_len(body)?.to_be_bytes();
        let mut chunks = Vec::with_capacity(self.done.len() + 2);
        if self.done.is_empty() {
            // One chunk: the prefix goes in front of the body (a copy of a small body).
            let mut one = BytesMut::with_capacity(4 + self.cur.len());
            one.extend_from_slice(&prefix);
            one.extend_from_slice(&self.cur);
            chunks.push(one.freeze());
        } else {
            chunks.push(Bytes::copy_from_slice(&prefix));
            chunks.append(&mut self.done);
            if !self.cur.is_empty() {
                chunks.push(self.cur.freeze());
            }
        }
        Ok(OutFrame { chunks })
    }

    fn spliceable(&self, src: &[u8]) -> Option<&'a Bytes> {
        if src.len() < SPLICE_MIN {
            return None;
        }
        self.splice
            .iter()
            .find(|b| b.len() == src.len() && std::ptr::eq(b.as_ptr(), src.as_ptr()))
    }
}

// SAFETY: every method delegates to `cur`, a `BytesMut`, whose `BufMut` implementation upholds
// the trait's contract; `put_slice` either delegates too or does not touch `cur`'s memory.
unsafe impl BufMut for FrameWriter<'_> {
    fn remaining_mut(&self) -> usize {
        self.cur.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller's guarantee (cnt bytes of `chunk_mut` initialized) is about
        // `cur`'s chunk, which is what `chunk_mut` returned.
        unsafe { self.cur.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.cur.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        match self.spliceable(src) {
            Some(b) => {
                let head = self.cur.split().freeze();
                if !head.is_empty() {
                    self.done_len += head.len();
                    self.done.push(head);
                }
                self.done_len += b.len();
                self.done.push(b.clone());
            }
            None => self.cur.extend_from_slice(src),
        }
    }
}

impl ByteBufMut for FrameWriter<'_> {
    fn offset(&self) -> usize {
        self.done_len + self.cur.len()
    }

    fn seek(&mut self, offset: usize) {
        self.cur.resize(offset.saturating_sub(self.done_len), 0);
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        let base = self.done_len;
        &mut self.cur[r.start.saturating_sub(base)..r.end.saturating_sub(base)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn framed(bodies: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for b in bodies {
            let mut f = start_frame(b.len());
            f.extend_from_slice(b);
            finish_frame(&mut f).unwrap();
            out.extend_from_slice(&f);
        }
        out
    }

    #[test]
    fn rejects_negative_and_oversized_lengths() {
        let mut b = BytesMut::from(&(-1i32).to_be_bytes()[..]);
        assert_eq!(decode_frame(&mut b, 100), Err(FrameError::Negative(-1)));
        let mut b = BytesMut::from(&101i32.to_be_bytes()[..]);
        assert_eq!(
            decode_frame(&mut b, 100),
            Err(FrameError::TooLarge {
                size: 101,
                limit: 100
            })
        );
        // "GET " read as a length: an HTTP client on the Kafka port.
        let mut b = BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]);
        assert!(matches!(
            decode_frame(&mut b, 100 << 20),
            Err(FrameError::TooLarge { .. })
        ));
    }

    /// A peer announcing a huge frame gets no allocation of that size.
    #[test]
    fn an_announced_size_is_not_allocated() {
        let mut b = BytesMut::with_capacity(16);
        b.extend_from_slice(&(100_000_000i32).to_be_bytes());
        b.extend_from_slice(b"abc");
        assert_eq!(decode_frame(&mut b, 100 << 20), Ok(None));
        assert!(b.capacity() < 1 << 20, "reserved {} bytes", b.capacity());
        assert_eq!(announced_size(&b, 100 << 20), Ok(Some(100_000_000)));
        assert_eq!(announced_size(&b[..3], 100 << 20), Ok(None));
    }

    proptest! {
        /// Frames come back whole and in order however the stream is cut into reads.
        #[test]
        fn frames_survive_any_chunking(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..12),
            cuts in proptest::collection::vec(1usize..64, 1..40),
        ) {
            let stream = framed(&bodies);
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            let mut pos = 0;
            let mut i = 0;
            while pos < stream.len() {
                let n = cuts[i % cuts.len()].min(stream.len() - pos);
                i += 1;
                buf.extend_from_slice(&stream[pos..pos + n]);
                pos += n;
                while let Some(f) = decode_frame(&mut buf, 1024).unwrap() {
                    out.push(f.to_vec());
                }
            }
            prop_assert!(buf.is_empty());
            prop_assert_eq!(out, bodies);
        }

        /// Garbage never panics; it yields frames, waits for more, or a clear error.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(f)) = decode_frame(&mut buf, 64) {
                prop_assert!(f.len() <= 64);
            }
        }
    }
}
