//! Guest output to the server log: WASI stdout/stderr as `tracing` events with target
//! `weir::guest`, tagged with the instance's label (`processor/partition`); `context.log`
//! messages go to the task (`TaskHost::log`) but count against the same budget.
//! Output is split into lines, capped per call (a guest printing in a loop cannot flood the
//! log), and the tail of stderr is kept so that a trap's error can quote the guest's panic
//! message.

use std::sync::{Arc, Mutex, MutexGuard};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Bytes of guest log output (all streams) written to the server log per call; the rest is
/// dropped with one warning.
pub const LOG_BYTES_PER_CALL: usize = 64 * 1024;
/// Longest line kept; longer lines are cut.
const MAX_LINE: usize = 4096;
/// Bytes of stderr kept for error messages.
const TAIL: usize = 1024;

/// Shared by an instance's stdout, stderr and `context.log`.
#[derive(Clone)]
pub struct GuestLog {
    inner: Arc<Mutex<LogState>>,
}

struct LogState {
    label: Arc<str>,
    stdout_line: Vec<u8>,
    stderr_line: Vec<u8>,
    /// Bytes logged in the current call.
    written: usize,
    truncated: bool,
    /// The last bytes written to stderr in the current call.
    stderr_tail: Vec<u8>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

impl GuestLog {
    pub fn new(label: &str) -> GuestLog {
        GuestLog {
            inner: Arc::new(Mutex::new(LogState {
                label: Arc::from(label),
                stdout_line: Vec::new(),
                stderr_line: Vec::new(),
                written: 0,
                truncated: false,
                stderr_tail: Vec::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        // A poisoned lock only means a panic elsewhere while logging: the state is still
        // usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a call: resets the per-call budget and the stderr tail.
    pub fn begin_call(&self) {
        let mut s = self.lock();
        s.written = 0;
        s.truncated = false;
        s.stderr_tail.clear();
    }

    /// Ends a call: writes out partial lines.
    pub fn end_call(&self) {
        let mut s = self.lock();
        for stream in [Stream::Stdout, Stream::Stderr] {
            let line = std::mem::take(s.line(stream));
            if !line.is_empty() {
                s.emit_line(stream, &line);
            }
        }
    }

    /// The last line(s) the guest wrote to stderr during the current call, trimmed.
    pub fn stderr_tail(&self) -> Option<String> {
        let s = self.lock();
        let text = String::from_utf8_lossy(&s.stderr_tail);
        let text = text.trim();
        (!text.is_empty()).then(|| text.to_string())
    }

    /// Counts a `context.log` message against the call's budget: false when it must be
    /// dropped. (The message itself goes to the task's `TaskHost::log`.)
    pub fn admit(&self, message: &str) -> bool {
        self.lock().charge(message.len())
    }

    fn write(&self, stream: Stream, bytes: &[u8]) {
        let mut s = self.lock();
        if stream == Stream::Stderr {
            s.stderr_tail.extend_from_slice(bytes);
            let excess = s.stderr_tail.len().saturating_sub(TAIL);
            s.stderr_tail.drain(..excess);
        }
        let mut rest = bytes;
        while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
            let (head, tail) = rest.split_at(nl);
            let mut line = std::mem::take(s.line(stream));
            line.extend_from_slice(&head[..head.len().min(MAX_LINE.saturating_sub(line.len()))]);
            s.emit_line(stream, &line);
            rest = &tail[1..];
        }
        let line = s.line(stream);
        let room = MAX_LINE.saturating_sub(line.len());
        line.extend_from_slice(&rest[..rest.len().min(room)]);
    }
}

impl LogState {
    fn line(&mut self, stream: Stream) -> &mut Vec<u8> {
        match stream {
            Stream::Stdout => &mut self.stdout_line,
            Stream::Stderr => &mut self.stderr_line,
        }
    }

    /// Counts `n` bytes against the call's budget; false when over it.
    fn charge(&mut self, n: usize) -> bool {
        if self.written >= LOG_BYTES_PER_CALL {
            if !self.truncated {
                self.truncated = true;
                tracing::warn!(target: "weir::guest", instance = %self.label,
                    "guest log output over {LOG_BYTES_PER_CALL} bytes in one call: the rest of this call's output is dropped");
            }
            return false;
        }
        self.written += n;
        true
    }

    fn emit_line(&mut self, stream: Stream, line: &[u8]) {
        if !self.charge(line.len()) {
            return;
        }
        let text = cut(line);
        match stream {
            Stream::Stdout => {
                tracing::info!(target: "weir::guest", instance = %self.label, stream = "stdout", "{text}")
            }
            Stream::Stderr => {
                tracing::warn!(target: "weir::guest", instance = %self.label, stream = "stderr", "{text}")
            }
        }
    }
}

fn cut(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_LINE)]);
    s.trim_end_matches('\r').to_string()
}

/// The WASI stdout or stderr of an instance.
pub struct GuestPipe {
    log: GuestLog,
    stream: Stream,
}

impl GuestPipe {
    pub fn stdout(log: &GuestLog) -> GuestPipe {
        GuestPipe {
            log: log.clone(),
            stream: Stream::Stdout,
        }
    }

    pub fn stderr(log: &GuestLog) -> GuestPipe {
        GuestPipe {
            log: log.clone(),
            stream: Stream::Stderr,
        }
    }
}

impl IsTerminal for GuestPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(GuestPipe {
            log: self.log.clone(),
            stream: self.stream,
        })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(GuestPipe {
            log: self.log.clone(),
            stream: self.stream,
        })
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestPipe {
    async fn ready(&mut self) {}
}

impl OutputStream for GuestPipe {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), StreamError> {
        self.log.write(self.stream, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for GuestPipe {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.log.write(self.stream, buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_stderr_tail_of_the_call() {
        let log = GuestLog::new("p/0");
        log.begin_call();
        log.write(
            Stream::Stderr,
            b"thread 'main' panicked at src/lib.rs:3:5:\nboom\n",
        );
        log.write(Stream::Stdout, b"partial");
        assert_eq!(
            log.stderr_tail().as_deref(),
            Some("thread 'main' panicked at src/lib.rs:3:5:\nboom")
        );
        log.end_call();
        log.begin_call();
        assert_eq!(log.stderr_tail(), None);
        let big = vec![b'x'; 5000];
        log.write(Stream::Stderr, &big);
        assert_eq!(log.stderr_tail().map(|t| t.len()), Some(TAIL));
    }

    #[test]
    fn output_is_capped_per_call() {
        let log = GuestLog::new("p/0");
        log.begin_call();
        let line = [b'y'; 1000];
        for _ in 0..200 {
            log.write(Stream::Stdout, &line);
            log.write(Stream::Stdout, b"\n");
        }
        let s = log.lock();
        assert!(s.truncated);
        assert!(s.written <= LOG_BYTES_PER_CALL + MAX_LINE);
    }
}
