//! Kafka framing: every request and response is a big-endian `i32` length followed by that
//! many bytes. This module owns splitting a byte stream into frames (with a size limit) and
//! prefixing outgoing frames with their length. It knows nothing of what is inside a frame
//! (that is [`super::codec`]) nor of sockets (that is [`super::server`]).

use bytes::{Buf, Bytes, BytesMut};

/// Why a frame could not be taken from the stream. Either way the connection must close:
/// after a bad length prefix the stream has no recoverable frame boundary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {0} is negative")]
    Negative(i32),
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
}

/// Takes one whole frame (without its length prefix) off the front of `buf`, or returns
/// `Ok(None)` if `buf` does not hold a whole frame yet (then it reserves room for the rest).
pub fn decode_frame(buf: &mut BytesMut, max_frame: usize) -> Result<Option<Bytes>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let size = usize::try_from(len).map_err(|_| FrameError::Negative(len))?;
    if size > max_frame {
        return Err(FrameError::TooLarge {
            size,
            limit: max_frame,
        });
    }
    if buf.len() < 4 + size {
        buf.reserve(4 + size - buf.len());
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
    let len = i32::try_from(body).map_err(|_| FrameError::TooLarge {
        size: body,
        limit: i32::MAX as usize,
    })?;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(())
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
