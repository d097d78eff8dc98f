//! The Kafka listener: accepts connections, runs one task per connection that reads frames,
//! decodes them, calls the handler and writes responses in request order (one request at a
//! time per connection, as a Kafka broker does), and shuts everything down on request.
//! Bad input closes the connection with a log line; it never takes the server down.
//! Connections over the caps (`KafkaConfig::limits`) are closed at once; with TLS configured
//! each connection completes a rustls handshake first and the verified client certificate's
//! CN becomes [`Conn::tls_principal`]. The loop is generic over the stream (plain TCP or TLS).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, ResponseKind};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::codec::{self, DecodeError};
use super::frame::OutFrame;
use super::handlers::{self, Conn, Ctx};
use super::pool::MemoryPool;
use super::producer::ProducerIds;
use super::reader::{FrameReader, ReadError};
use super::{KafkaConfig, KafkaError};
use crate::Broker;
use crate::group::{GroupCoordinator, GroupsView, OffsetStore};
use crate::net::{ConnGuard, ConnLimiter};
use crate::txn::TxnCoordinator;

/// How long shutdown waits for connections to finish their current request.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often the group coordinator expires sessions and rebalance deadlines.
const GROUP_TICK: Duration = Duration::from_millis(100);
/// Transaction timeouts are checked every this many group ticks (1 s).
const TXN_TICK_EVERY: u64 = 10;

/// Serves the Kafka protocol on `listener` until `shutdown` completes, then stops accepting,
/// lets connections finish the request in hand (up to 5 s) and returns.
///
/// Loads committed offsets from the internal offsets topic first (on a cluster: follows the
/// offsets partitions this node leads, loading each as it becomes their leader); returns an
/// error only if the config is invalid or that load fails.
pub async fn serve(
    broker: Broker,
    listener: TcpListener,
    config: KafkaConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), KafkaError> {
    let view = GroupsView::new(u64::try_from(config.node_id).unwrap_or(0));
    serve_with_groups(broker, listener, config, view, shutdown).await
}

/// [`serve`], publishing the group coordinator into `groups` once committed offsets are
/// loaded (for the HTTP API's read-only view of consumer groups).
pub async fn serve_with_groups(
    broker: Broker,
    listener: TcpListener,
    config: KafkaConfig,
    groups_view: GroupsView,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), KafkaError> {
    let advertised = config.validate()?;
    let clustered = config.cluster.is_some();
    let offsets = {
        let b = broker.clone();
        tokio::task::spawn_blocking(move || {
            if clustered {
                OffsetStore::replicated(b)
            } else {
                OffsetStore::load(b)
            }
        })
        .await
        .map_err(|e| KafkaError::Io(std::io::Error::other(e)))??
    };
    let groups = Arc::new(GroupCoordinator::new(config.group.clone(), offsets));
    groups_view.publish(groups.clone());
    let producer_ids = match &config.cluster {
        Some(_) => Arc::new(ProducerIds::cluster()),
        None => broker.producer_ids(),
    };
    let producers = broker.producer_states();
    // Transactions: a single node's coordinator, its state read back (and what was in
    // flight completed or aborted) before the first client connects; the one the node
    // opened for its engine (`TxnCoordinator::open_local`) if there is one.
    let txn = if clustered {
        None
    } else if let Some(t) = broker.txn_coordinator() {
        t.attach_groups(groups.clone());
        Some(t)
    } else {
        let t = Arc::new(TxnCoordinator::new(
            broker.clone(),
            producers.clone(),
            groups.clone(),
        ));
        let (t2, ids) = (t.clone(), producer_ids.clone());
        tokio::task::spawn_blocking(move || t2.load(&|| ids.allocate_local()))
            .await
            .map_err(|e| KafkaError::Io(std::io::Error::other(e)))?
            .map_err(|e| KafkaError::Io(std::io::Error::other(e.to_string())))?;
        broker.set_txn_coordinator(&t);
        Some(t)
    };
    // A topic a client deletes takes its committed offsets with it (a recreated topic
    // starts clean). Weak: the broker must not keep the coordinator (and itself) alive.
    let weak = Arc::downgrade(&groups);
    broker.on_client_topic_deleted(Arc::new(move |topic: &str| {
        if let Some(g) = weak.upgrade() {
            g.offsets().forget_topic(topic);
        }
    }));
    let ctx = Arc::new(Ctx {
        broker,
        config,
        advertised,
        groups: groups.clone(),
        producers,
        producer_ids: producer_ids.clone(),
        txn: txn.clone(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let ticker = {
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(GROUP_TICK);
            let mut ticks: u64 = 0;
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        groups.tick();
                        ticks += 1;
                        if groups.has_dirty_meta() {
                            // New generations and groups that became empty, stored.
                            let g = groups.clone();
                            let _ = tokio::task::spawn_blocking(move || g.persist_meta()).await;
                        }
                        if let Some(t) = &txn
                            && ticks.is_multiple_of(TXN_TICK_EVERY)
                        {
                            // Transaction timeouts (and prepared transactions to finish).
                            let (t, ids) = (t.clone(), producer_ids.clone());
                            let _ = tokio::task::spawn_blocking(move || {
                                t.tick(&|| ids.allocate_local())
                            })
                            .await;
                        }
                        if clustered {
                            // Follows the offsets partitions this node leads (may load).
                            let g = groups.clone();
                            let _ = tokio::task::spawn_blocking(move || g.maintain()).await;
                        }
                    }
                    _ = stop.changed() => break,
                }
            }
        })
    };
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, tls = ctx.config.tls.is_some(), "Kafka listener started");
    }
    let limiter = ConnLimiter::new(ctx.config.limits);
    let pool = MemoryPool::new(ctx.config.queued_max_request_bytes);
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match limiter.try_acquire(peer.ip()) {
                    Ok(guard) => {
                        conns.spawn(accept_one(
                            ctx.clone(),
                            stream,
                            peer,
                            guard,
                            pool.clone(),
                            stop_rx.clone(),
                        ));
                    }
                    Err(over) => {
                        // Closed at once: a refused connection is never queued.
                        tracing::debug!(%peer, ?over, "Kafka connection refused: connection cap reached");
                        drop(stream);
                    }
                },
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "Kafka accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(done) = conns.join_next(), if !conns.is_empty() => {
                if let Err(e) = done
                    && e.is_panic()
                {
                    tracing::error!(error = %e, "Kafka connection task panicked");
                }
            }
        }
    }
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("Kafka connections did not finish in time; closing them");
        conns.abort_all();
    }
    let _ = ticker.await;
    tracing::info!("Kafka listener stopped");
    Ok(())
}

/// Sets up one admitted connection (the TLS handshake when the listener has TLS) and runs
/// it; `_guard` holds its place under the connection caps until it ends.
async fn accept_one(
    ctx: Arc<Ctx>,
    stream: TcpStream,
    peer: SocketAddr,
    _guard: ConnGuard,
    pool: MemoryPool,
    stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().ok();
    match ctx.config.tls.clone() {
        None => {
            let conn = Conn::new(peer, local);
            connection(ctx, stream, conn, pool, stop).await;
        }
        Some(tls) => match tls.accept(stream).await {
            Ok((stream, cert)) => {
                let mut conn = Conn::new(peer, local);
                conn.tls_principal = cert.cn;
                connection(ctx, stream, conn, pool, stop).await;
            }
            Err(e) => tracing::debug!(%peer, error = %e, "Kafka TLS handshake failed"),
        },
    }
}

/// Serves requests on one connection, plain or TLS, one at a time, until the peer leaves,
/// a read times out or fails, or the listener stops.
async fn connection<S>(
    ctx: Arc<Ctx>,
    mut stream: S,
    mut conn: Conn,
    pool: MemoryPool,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let peer = conn.peer;
    let idle = Duration::from_millis(ctx.config.idle_timeout_ms);
    let mut reader = FrameReader::new(
        ctx.config.max_request_bytes,
        pool,
        idle,
        Duration::from_millis(ctx.config.frame_timeout_ms),
    );
    tracing::debug!(%peer, tls_principal = ?conn.tls_principal, "Kafka connection opened");
    loop {
        // `_budget` holds the request's bytes in the pool until it has been answered.
        let (frame, _budget) = match reader.next(&mut stream, &mut stop).await {
            Ok(f) => f,
            Err(ReadError::Closed | ReadError::Stopped) => break,
            Err(e @ ReadError::Frame(_)) => {
                tracing::warn!(%peer, error = %e, "closing Kafka connection: bad frame");
                break;
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "closing Kafka connection");
                break;
            }
        };
        let response = match codec::decode_request(frame) {
            Ok(req) => {
                let (api, version, corr) = (req.api_key, req.version, req.correlation_id());
                match handlers::handle(&ctx, &mut conn, req).await {
                    Some(resp) => codec::encode_response(corr, api, version, &resp),
                    None if conn.close => break, // Refused before authentication.
                    None => continue,            // Produce with acks=0: no response.
                }
            }
            Err(DecodeError::UnsupportedVersion {
                api: ApiKey::ApiVersions,
                version,
                correlation_id,
            }) => {
                // Kafka answers an ApiVersions it cannot parse with a v0 response carrying
                // UNSUPPORTED_VERSION and the versions it does support; clients then retry.
                tracing::debug!(%peer, version, "ApiVersions version not supported; answering v0");
                let mut body: ApiVersionsResponse = handlers::api_versions::response();
                body.error_code = kafka_protocol::ResponseError::UnsupportedVersion.code();
                codec::encode_response(
                    correlation_id,
                    ApiKey::ApiVersions,
                    0,
                    &ResponseKind::ApiVersions(body),
                )
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "closing Kafka connection: bad request");
                break;
            }
        };
        match response {
            Ok(frame) => {
                // A peer that stops reading responses is dropped after the idle timeout.
                match tokio::time::timeout(idle, send_frame(&mut stream, &frame)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "Kafka connection write failed");
                        break;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "closing Kafka connection: response not read in time");
                        break;
                    }
                }
                if conn.close {
                    break; // A failed login: the error went out, now the connection closes.
                }
            }
            Err(e) => {
                tracing::error!(%peer, error = %e, "closing Kafka connection: cannot encode response");
                break;
            }
        }
    }
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, stream.shutdown()).await;
    tracing::debug!(%peer, "Kafka connection closed");
}

/// Writes `frame` and flushes it: over TLS the last records can still be queued in rustls
/// when the socket was full, and nothing else would send them while the connection waits
/// for the next request (the client, waiting for this response, stalls).
async fn send_frame(
    wr: &mut (impl tokio::io::AsyncWrite + Unpin),
    frame: &OutFrame,
) -> std::io::Result<()> {
    write_frame(wr, frame).await?;
    wr.flush().await
}

/// Writes every chunk of `frame`, gathering them into as few `writev` calls as the socket
/// takes.
async fn write_frame(
    wr: &mut (impl tokio::io::AsyncWrite + Unpin),
    frame: &OutFrame,
) -> std::io::Result<()> {
    let chunks = frame.chunks();
    if let [one] = chunks {
        return wr.write_all(one).await;
    }
    let (mut i, mut at) = (0usize, 0usize);
    while i < chunks.len() {
        let mut slices = Vec::with_capacity(chunks.len() - i);
        slices.push(std::io::IoSlice::new(&chunks[i][at..]));
        slices.extend(chunks[i + 1..].iter().map(|c| std::io::IoSlice::new(c)));
        let mut n = wr.write_vectored(&slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while i < chunks.len() && n > 0 {
            let left = chunks[i].len() - at;
            if n >= left {
                n -= left;
                i += 1;
                at = 0;
            } else {
                at += n;
                n = 0;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::test_pki::TestPki;
    use crate::net::tls::tests::client_config;
    use crate::net::{TlsFiles, TlsServer};
    use bytes::Bytes;
    use rustls::pki_types::ServerName;
    use tokio::io::AsyncReadExt;

    /// Over TLS a response larger than the socket takes at once arrives whole although the
    /// connection then waits for the next request without writing: `send_frame` flushes the
    /// records rustls still holds (without it the client stalled until it sent something
    /// else; seen as consumers stuck for 30 s against the release server).
    #[tokio::test]
    async fn a_tls_response_is_sent_whole_before_the_next_request() {
        let pki = TestPki::generate();
        let dir = tempfile::tempdir().unwrap();
        let files = pki.write(dir.path());
        let files = TlsFiles {
            cert: files.cert,
            key: files.key,
            client_ca: None,
        };
        let server = TlsServer::load(&files, &[]).unwrap();
        let (c, s) = tokio::io::duplex(4096);
        let connector = tokio_rustls::TlsConnector::from(client_config(&pki, false));
        let body = vec![7u8; 32 * 1024];
        let client = tokio::spawn(async move {
            let name = ServerName::try_from("localhost").unwrap();
            let mut tls = connector.connect(name, c).await.unwrap();
            let mut got = vec![0u8; 4 + 32 * 1024];
            let read = tokio::time::timeout(Duration::from_secs(10), tls.read_exact(&mut got));
            let read = read.await.map(|r| r.map(|_| got));
            (read, tls)
        });
        let (mut tls, _) = server.accept(s).await.unwrap();
        let frame = OutFrame::from_chunks(vec![
            Bytes::copy_from_slice(&(body.len() as i32).to_be_bytes()),
            Bytes::from(body.clone()),
        ]);
        send_frame(&mut tls, &frame).await.unwrap();
        // Like the connection loop, `tls` is now only read from (here: not touched at all).
        let (read, _client) = client.await.unwrap();
        let got = read.expect("the end of the response never came").unwrap();
        assert_eq!(&got[4..], &body[..]);
        drop(tls);
    }

    /// Chunks arrive whole and in order even when the peer takes a few bytes at a time.
    #[tokio::test]
    async fn frames_are_written_whole_through_short_writes() {
        let mut chunks = vec![Bytes::from_static(b"\0\0\0\x0b")];
        chunks.push(Bytes::from_static(b"abc"));
        chunks.push(Bytes::from(vec![b'x'; 5]));
        chunks.push(Bytes::from_static(b"def"));
        let frame = OutFrame::from_chunks(chunks);
        let (mut a, mut b) = tokio::io::duplex(3);
        let writer = tokio::spawn(async move { write_frame(&mut a, &frame).await });
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap().unwrap();
        assert_eq!(got, b"\0\0\0\x0babcxxxxxdef");
    }
}
