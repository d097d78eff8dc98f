//! The HTTP listener loop (instead of `axum::serve`, which has no timeouts): accepts TCP
//! connections under the connection caps (over a cap: closed at once), runs the TLS
//! handshake when configured, and serves each connection with hyper's HTTP/1 server with a
//! header-read timeout, an idle timeout between requests, and a per-frame timeout on
//! request bodies. Every request carries a [`PeerIdentity`] extension (client address and
//! the CN of a verified TLS client certificate) for the layers above; this module does not
//! authenticate or authorize. Graceful shutdown: stop accepting, let each connection finish
//! the request in hand, then close it.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower_http::timeout::TimeoutBody;
use tower_service::Service;
use weir_broker::net::{ConnGuard, ConnLimiter, ConnLimits, TlsServer};

/// Default of [`ServeConfig::header_timeout`].
pub const DEFAULT_HEADER_TIMEOUT_MS: u64 = 10_000;
/// Default of [`ServeConfig::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 60_000;
/// Default of [`ServeConfig::body_timeout`].
pub const DEFAULT_BODY_TIMEOUT_MS: u64 = 30_000;

/// Who is on the other end of the connection a request came on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub addr: SocketAddr,
    /// Subject CN of the verified TLS client certificate (`--tls-client-ca`), if any.
    pub tls_cn: Option<String>,
}

/// Connection-level settings of the HTTP listener.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// A request's headers must arrive whole within this time (from the connection's start
    /// or, on a kept-alive connection, from the request's first byte).
    pub header_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// A request body that sends no data for this long fails (the handler sees an error).
    pub body_timeout: Duration,
    pub limits: ConnLimits,
    /// HTTPS when set.
    pub tls: Option<TlsServer>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            header_timeout: Duration::from_millis(DEFAULT_HEADER_TIMEOUT_MS),
            idle_timeout: Duration::from_millis(DEFAULT_IDLE_TIMEOUT_MS),
            body_timeout: Duration::from_millis(DEFAULT_BODY_TIMEOUT_MS),
            limits: ConnLimits::default(),
            tls: None,
        }
    }
}

impl ServeConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.header_timeout.is_zero()
            || self.idle_timeout.is_zero()
            || self.body_timeout.is_zero()
        {
            return Err("HTTP header, idle and body timeouts must be positive".into());
        }
        self.limits.validate()
    }
}

/// Serves `app` on `listener` until `shutdown` turns `true`; then stops accepting and
/// returns once every connection has finished its request in hand.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: ServeConfig,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let limiter = ConnLimiter::new(config.limits);
    let config = Arc::new(config);
    let mut conns = JoinSet::new();
    let conn_stop = shutdown.clone();
    loop {
        tokio::select! {
            () = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match limiter.try_acquire(peer.ip()) {
                    Ok(guard) => {
                        conns.spawn(accept_one(
                            stream,
                            peer,
                            guard,
                            app.clone(),
                            config.clone(),
                            conn_stop.clone(),
                        ));
                    }
                    Err(over) => {
                        tracing::debug!(%peer, ?over, "HTTP connection refused: connection cap reached");
                        drop(stream);
                    }
                },
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(done) = conns.join_next(), if !conns.is_empty() => {
                if let Err(e) = done
                    && e.is_panic()
                {
                    tracing::error!(error = %e, "HTTP connection task panicked");
                }
            }
        }
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
    Ok(())
}

/// Resolves once `stop` turns `true` (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn accept_one(
    stream: TcpStream,
    addr: SocketAddr,
    _guard: ConnGuard,
    app: Router,
    config: Arc<ServeConfig>,
    stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    match config.tls.clone() {
        None => {
            let peer = PeerIdentity { addr, tls_cn: None };
            connection(stream, peer, app, config, stop).await;
        }
        Some(tls) => match tls.accept(stream).await {
            Ok((stream, cert)) => {
                let peer = PeerIdentity {
                    addr,
                    tls_cn: cert.cn,
                };
                connection(stream, peer, app, config, stop).await;
            }
            Err(e) => tracing::debug!(peer = %addr, error = %e, "HTTPS handshake failed"),
        },
    }
}

/// Requests in flight on one connection and when the last one ended.
struct Activity {
    in_flight: AtomicUsize,
    last_done: Mutex<Instant>,
}

impl Activity {
    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(
            self.last_done
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .elapsed(),
        )
    }
}

/// One request in flight: from the call until its response body is dropped.
struct Busy(Arc<Activity>);

impl Busy {
    fn new(a: &Arc<Activity>) -> Busy {
        a.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(a.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.last_done.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn connection<S>(
    io: S,
    peer: PeerIdentity,
    app: Router,
    config: Arc<ServeConfig>,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity {
        in_flight: AtomicUsize::new(0),
        last_done: Mutex::new(Instant::now()),
    });
    let body_timeout = config.body_timeout;
    let addr = peer.addr;
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let busy = Busy::new(&activity);
            let mut app = app.clone();
            let (mut parts, body) = req.into_parts();
            parts.extensions.insert(peer.clone());
            let req = Request::from_parts(parts, Body::new(TimeoutBody::new(body_timeout, body)));
            async move {
                let response = app.call(req).await?;
                // The request stays in flight (not idle) until its response body is done.
                Ok::<_, Infallible>(response.map(|b| {
                    Body::new(b.map_frame(move |f| {
                        let _ = &busy;
                        f
                    }))
                }))
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut tick = tokio::time::interval((config.idle_timeout / 4).max(Duration::from_millis(50)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = false;
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!(peer = %addr, error = %e, "HTTP connection ended");
                }
                return;
            }
            () = stopped(&mut stop), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tick.tick() => {
                if activity.idle_for().is_some_and(|d| d >= config.idle_timeout) {
                    tracing::debug!(peer = %addr, "closing idle HTTP connection");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Extension;
    use axum::routing::get;
    use weir_broker::net::TlsFiles;

    use crate::test_pki::TestPki;

    async fn who(Extension(p): Extension<PeerIdentity>) -> String {
        format!("{} {}", p.addr.ip(), p.tls_cn.as_deref().unwrap_or("-"))
    }

    async fn start(config: ServeConfig) -> (SocketAddr, watch::Sender<bool>) {
        let app = Router::new().route("/who", get(who));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = watch::channel(false);
        tokio::spawn(serve(listener, app, config, rx));
        (addr, tx)
    }

    /// Handlers see the client's address, and under mTLS its certificate's CN.
    #[tokio::test]
    async fn requests_carry_the_peer_identity() {
        weir_broker::net::tls::install_default_provider();
        let (addr, _stop) = start(ServeConfig::default()).await;
        let body = reqwest::get(format!("http://{addr}/who"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, "127.0.0.1 -");

        let pki = TestPki::generate();
        let dir = tempfile::tempdir().unwrap();
        let written = pki.write(dir.path());
        let files = TlsFiles {
            cert: written.cert,
            key: written.key,
            client_ca: Some(written.ca),
        };
        let config = ServeConfig {
            tls: Some(TlsServer::load(&files, &[b"http/1.1"]).unwrap()),
            ..ServeConfig::default()
        };
        let (addr, _stop) = start(config).await;
        let identity = reqwest::Identity::from_pem(
            format!("{}{}", pki.client_cert, pki.client_key).as_bytes(),
        )
        .unwrap();
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(pki.ca.as_bytes()).unwrap())
            .identity(identity)
            .build()
            .unwrap();
        let body = client
            .get(format!("https://{addr}/who"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, "127.0.0.1 alice");
    }

    /// A connection idle past the idle timeout is closed; one under the header timeout
    /// that never finishes its headers too.
    #[tokio::test]
    async fn idle_and_slow_connections_are_closed() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let config = ServeConfig {
            header_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(300),
            ..ServeConfig::default()
        };
        let (addr, _stop) = start(config).await;
        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /who HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "slow headers were not timed out");

        let mut kept = tokio::net::TcpStream::connect(addr).await.unwrap();
        kept.write_all(b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let read = tokio::time::timeout(Duration::from_secs(10), kept.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "an idle kept-alive connection was not closed");
        assert!(String::from_utf8_lossy(&buf).contains("127.0.0.1 -"));
    }
}
