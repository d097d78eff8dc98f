//! Reads request frames off one connection without trusting the peer: a frame's buffer
//! grows only as its bytes arrive (never allocated at the announced size), a frame larger
//! than the read-ahead buffer first takes its size from the node-wide [`MemoryPool`], the
//! wait for a frame's first byte is bounded by the idle timeout (Kafka's
//! `connections.max.idle.ms`) and a started frame must arrive whole within the frame
//! timeout. Knows nothing of what a frame holds ([`super::codec`]) nor of responses.

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::frame::{self, FrameError};
use super::pool::{MemoryPool, PoolPermit};

/// Size of a connection's read-ahead buffer: frames up to this size are read (and
/// pipelined) through it without touching the pool.
pub const READ_AHEAD: usize = 16 * 1024;
/// Smallest step a large frame's buffer grows by.
const MIN_GROWTH: usize = 64 * 1024;

/// Why no frame came.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("peer closed the connection")]
    Closed,
    #[error("peer closed the connection with {0} bytes of a frame pending")]
    ClosedMidFrame(usize),
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("no request for {0:?} (idle timeout)")]
    Idle(Duration),
    #[error("a started request did not arrive whole within {0:?}")]
    Stalled(Duration),
    #[error("the listener is shutting down")]
    Stopped,
}

/// Frame-reading state of one connection.
pub struct FrameReader {
    buf: BytesMut,
    max_frame: usize,
    pool: MemoryPool,
    idle: Duration,
    frame_timeout: Duration,
}

impl FrameReader {
    pub fn new(
        max_frame: usize,
        pool: MemoryPool,
        idle: Duration,
        frame_timeout: Duration,
    ) -> FrameReader {
        FrameReader {
            buf: BytesMut::with_capacity(READ_AHEAD),
            max_frame,
            pool,
            idle,
            frame_timeout,
        }
    }

    /// The next frame's body and the pool budget it holds (drop it once the request has
    /// been handled).
    pub async fn next<R: AsyncRead + Unpin>(
        &mut self,
        rd: &mut R,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(Bytes, PoolPermit), ReadError> {
        let idle_deadline = Instant::now() + self.idle;
        let mut frame_deadline =
            (!self.buf.is_empty()).then(|| Instant::now() + self.frame_timeout);
        // The length prefix, through the read-ahead buffer.
        let size = loop {
            if let Some(size) = frame::announced_size(&self.buf, self.max_frame)? {
                break size;
            }
            if self.buf.capacity() - self.buf.len() < READ_AHEAD / 2 {
                self.buf.reserve(READ_AHEAD);
            }
            let (deadline, on_timeout) = match frame_deadline {
                Some(d) => (d, ReadError::Stalled(self.frame_timeout)),
                None => (idle_deadline, ReadError::Idle(self.idle)),
            };
            read_some(rd, &mut self.buf, deadline, on_timeout, stop).await?;
            frame_deadline.get_or_insert_with(|| Instant::now() + self.frame_timeout);
        };
        if let Some(f) = frame::decode_frame(&mut self.buf, self.max_frame)? {
            return Ok((f, PoolPermit::unaccounted()));
        }
        if 4 + size <= READ_AHEAD {
            // Small: finish it in the read-ahead buffer.
            let deadline = frame_deadline.unwrap_or_else(|| Instant::now() + self.frame_timeout);
            loop {
                self.buf.reserve(4 + size - self.buf.len());
                read_some(
                    rd,
                    &mut self.buf,
                    deadline,
                    ReadError::Stalled(self.frame_timeout),
                    stop,
                )
                .await?;
                if let Some(f) = frame::decode_frame(&mut self.buf, self.max_frame)? {
                    return Ok((f, PoolPermit::unaccounted()));
                }
            }
        }
        // Large: wait for budget (bounded by the idle timeout), then read straight into a
        // buffer of its own that doubles as bytes arrive, up to the announced size.
        let permit = tokio::select! {
            p = self.pool.acquire(size) => p,
            () = tokio::time::sleep(self.idle) => return Err(ReadError::Stalled(self.idle)),
            _ = stop.changed() => return Err(ReadError::Stopped),
        };
        let deadline = Instant::now() + self.frame_timeout;
        let mut body = Vec::with_capacity(size.min(MIN_GROWTH.max(self.buf.len())));
        body.extend_from_slice(&self.buf[4..]);
        self.buf.clear();
        if self.buf.capacity() > 4 * READ_AHEAD {
            self.buf = BytesMut::with_capacity(READ_AHEAD);
        }
        while body.len() < size {
            if body.len() == body.capacity() {
                let target = size.min((body.len() * 2).max(MIN_GROWTH));
                body.reserve_exact(target - body.len());
            }
            read_some(
                rd,
                &mut body,
                deadline,
                ReadError::Stalled(self.frame_timeout),
                stop,
            )
            .await
            .map_err(|e| match e {
                ReadError::Closed => ReadError::ClosedMidFrame(4 + body.len()),
                e => e,
            })?;
        }
        Ok((Bytes::from(body), permit))
    }
}

/// One read into `buf`'s spare capacity, bounded by `deadline` and the stop signal.
async fn read_some<R: AsyncRead + Unpin, B: bytes::BufMut>(
    rd: &mut R,
    buf: &mut B,
    deadline: Instant,
    on_timeout: ReadError,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), ReadError> {
    tokio::select! {
        r = rd.read_buf(buf) => match r {
            Ok(0) => Err(ReadError::Closed),
            Ok(_) => Ok(()),
            Err(e) => Err(ReadError::Io(e)),
        },
        () = tokio::time::sleep_until(deadline) => Err(on_timeout),
        _ = stop.changed() => Err(ReadError::Stopped),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn reader(pool: &MemoryPool) -> FrameReader {
        FrameReader::new(
            100 << 20,
            pool.clone(),
            Duration::from_secs(60),
            Duration::from_millis(300),
        )
    }

    /// A 100 MB frame announced and trickled: the buffer follows the bytes, the pool holds
    /// the announced size, and the stalled frame ends with a timeout.
    #[tokio::test]
    async fn a_trickled_huge_frame_is_not_preallocated_and_times_out() {
        let pool = MemoryPool::new(200 << 20);
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        let (_tx, mut stop) = watch::channel(false);
        let mut r = reader(&pool);
        let writer = tokio::spawn(async move {
            client
                .write_all(&100_000_000i32.to_be_bytes())
                .await
                .unwrap();
            client.write_all(&[7u8; 100_000]).await.unwrap();
            client
        });
        let got = r.next(&mut server, &mut stop).await;
        let _client = writer.await.unwrap();
        assert!(matches!(got, Err(ReadError::Stalled(_))), "{got:?}");
        assert!(r.buf.capacity() < 1 << 20);
        assert_eq!(pool.available(), 200 << 20, "budget given back");
    }

    /// Pipelined small frames and one large frame arrive whole and in order.
    #[tokio::test]
    async fn small_and_large_frames_arrive_whole() {
        let pool = MemoryPool::new(10 << 20);
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        let (_tx, mut stop) = watch::channel(false);
        let mut r = reader(&pool);
        let large = vec![9u8; 3 << 20];
        let writer = tokio::spawn(async move {
            for body in [&b"one"[..], &b"two"[..], &large[..], &b"three"[..]] {
                client
                    .write_all(&(body.len() as i32).to_be_bytes())
                    .await
                    .unwrap();
                client.write_all(body).await.unwrap();
            }
            client
        });
        let mut got = Vec::new();
        for _ in 0..4 {
            let (f, permit) = r.next(&mut server, &mut stop).await.unwrap();
            got.push(f.len());
            drop(permit);
        }
        let _client = writer.await.unwrap();
        assert_eq!(got, vec![3, 3, 3 << 20, 5]);
        assert_eq!(pool.available(), 10 << 20);
    }

    /// A connection that sends nothing is closed after the idle timeout.
    #[tokio::test]
    async fn an_idle_connection_times_out() {
        let pool = MemoryPool::new(1 << 20);
        let (_client, mut server) = tokio::io::duplex(64);
        let (_tx, mut stop) = watch::channel(false);
        let mut r = FrameReader::new(
            1 << 20,
            pool,
            Duration::from_millis(100),
            Duration::from_secs(60),
        );
        let got = r.next(&mut server, &mut stop).await;
        assert!(matches!(got, Err(ReadError::Idle(_))), "{got:?}");
    }
}
