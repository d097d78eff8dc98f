//! The client side: one [`PeerClient`] per peer address, holding at most one HTTP/2
//! connection that every caller shares (requests are multiplexed as streams). A call
//! connects if there is no live connection (connect + TLS + HTTP/2 handshake bounded by the
//! connect timeout); a connection that fails (a transport error, or keep-alive pings left
//! unanswered) is dropped, and the next call dials again. A call that times out does not
//! drop the connection its neighbours share. Calls are never retried here: whether a request may be repeated
//! is the caller's decision (Raft and fetch both are idempotent by their own rules).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http2::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use super::message::{
    Hello, HelloReply, PROTOCOL_VERSION, PeerRequest, PeerResponse, Refusal, RequestEnvelope,
    ResponseEnvelope, decode, encode,
};
use super::tls::server_name;
use super::{
    CONTENT_TYPE_PEER, Io, LocalNode, MAX_FRAME_BYTES, RPC_PATH, SOFTWARE_VERSION, flow_windows,
};
use crate::ErrorKind;

/// Why a call did not get an answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RpcError {
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("{addr}: no answer within {0:?}", .timeout)]
    Timeout { addr: String, timeout: Duration },
    #[error("{addr}: connection failed: {reason}")]
    Transport { addr: String, reason: String },
    #[error("{addr}: message of {size} bytes is larger than the limit of {limit}")]
    TooLarge {
        addr: String,
        size: usize,
        limit: usize,
    },
    #[error("{addr}: undecodable answer: {reason}")]
    Decode { addr: String, reason: String },
    #[error("{addr} refused: {refusal}")]
    Refused { addr: String, refusal: Refusal },
    #[error("{addr} answered {got} to a {sent} request")]
    Mismatch {
        addr: String,
        sent: &'static str,
        got: String,
    },
}

impl RpcError {
    pub fn code(&self) -> &'static str {
        match self {
            RpcError::Connect { .. } => "peer_connect",
            RpcError::Timeout { .. } => "peer_timeout",
            RpcError::Transport { .. } => "peer_transport",
            RpcError::TooLarge { .. } => "peer_too_large",
            RpcError::Decode { .. } | RpcError::Mismatch { .. } => "peer_protocol",
            RpcError::Refused { refusal, .. } => refusal.code(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            RpcError::Connect { .. } | RpcError::Timeout { .. } | RpcError::Transport { .. } => {
                ErrorKind::Unavailable
            }
            RpcError::TooLarge { .. } => ErrorKind::TooLarge,
            RpcError::Decode { .. } | RpcError::Mismatch { .. } => ErrorKind::Internal,
            RpcError::Refused { refusal, .. } => match refusal {
                Refusal::ShuttingDown => ErrorKind::Unavailable,
                Refusal::TooLarge { .. } => ErrorKind::TooLarge,
                Refusal::WrongCluster { .. } | Refusal::SameNodeId(_) => ErrorKind::Conflict,
                _ => ErrorKind::Internal,
            },
        }
    }

    /// Whether the peer could not be reached at all (as opposed to answering badly).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            RpcError::Connect { .. } | RpcError::Timeout { .. } | RpcError::Transport { .. }
        )
    }
}

/// Timeouts and bounds of a client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_message_bytes: usize,
    pub keep_alive_interval: Duration,
    pub keep_alive_timeout: Duration,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl ClientConfig {
    pub fn new(max_message_bytes: usize) -> ClientConfig {
        ClientConfig {
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
            max_message_bytes,
            keep_alive_interval: Duration::from_secs(2),
            keep_alive_timeout: Duration::from_secs(6),
            tls: None,
        }
    }
}

/// A client of one peer. Cheap to share (`Arc`); calls from many tasks run concurrently
/// over one connection.
pub struct PeerClient {
    addr: String,
    local: Arc<LocalNode>,
    config: ClientConfig,
    conn: tokio::sync::Mutex<Option<SendRequest<Full<Bytes>>>>,
}

impl std::fmt::Debug for PeerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerClient")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl PeerClient {
    pub fn new(addr: impl Into<String>, local: Arc<LocalNode>, config: ClientConfig) -> Self {
        PeerClient {
            addr: addr.into(),
            local,
            config,
            conn: tokio::sync::Mutex::new(None),
        }
    }

    /// The peer's cluster address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `request` and waits for its answer, within the configured request timeout.
    pub async fn call(&self, request: PeerRequest) -> Result<PeerResponse, RpcError> {
        self.call_with_timeout(request, self.config.request_timeout)
            .await
    }

    /// [`call`](Self::call) with the caller's own timeout (e.g. a long-polling fetch).
    pub async fn call_with_timeout(
        &self,
        request: PeerRequest,
        timeout: Duration,
    ) -> Result<PeerResponse, RpcError> {
        let envelope = RequestEnvelope {
            protocol: PROTOCOL_VERSION,
            cluster_id: self.local.cluster_id(),
            from: self.local.node_id(),
            request,
        };
        let body = encode(&envelope).map_err(|reason| RpcError::Decode {
            addr: self.addr.clone(),
            reason,
        })?;
        self.send_bytes(body, timeout).await
    }

    /// Sends an encoded envelope (tests use it to send what a correct client would not).
    pub(crate) async fn send_bytes(
        &self,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<PeerResponse, RpcError> {
        if body.len() > self.config.max_message_bytes {
            return Err(RpcError::TooLarge {
                addr: self.addr.clone(),
                size: body.len(),
                limit: self.config.max_message_bytes,
            });
        }
        match tokio::time::timeout(timeout, self.round_trip(body)).await {
            Ok(Ok(answer)) => answer.map_err(|refusal| RpcError::Refused {
                addr: self.addr.clone(),
                refusal,
            }),
            Ok(Err(e)) => {
                if e.is_unreachable() {
                    self.reset().await;
                }
                Err(e)
            }
            Err(_) => {
                // The connection stays: other calls share it, and a dead one is closed by
                // the HTTP/2 keep-alive pings (unanswered for `keep_alive_timeout`).
                Err(RpcError::Timeout {
                    addr: self.addr.clone(),
                    timeout,
                })
            }
        }
    }

    /// Greets the peer (within the request timeout).
    pub async fn hello(&self) -> Result<HelloReply, RpcError> {
        self.hello_within(self.config.request_timeout).await
    }

    /// Greets the peer within `timeout`.
    pub async fn hello_within(&self, timeout: Duration) -> Result<HelloReply, RpcError> {
        let request = PeerRequest::Hello(Hello {
            cluster_id: self.local.cluster_id(),
            node_id: self.local.node_id(),
            version: SOFTWARE_VERSION.to_string(),
            advertised: self.local.advertised().to_string(),
        });
        match self.call_with_timeout(request, timeout).await? {
            PeerResponse::Hello(reply) => Ok(reply),
            #[allow(unreachable_patterns)]
            other => Err(RpcError::Mismatch {
                addr: self.addr.clone(),
                sent: "hello",
                got: format!("{other:?}"),
            }),
        }
    }

    /// Drops the connection; the next call dials again.
    pub async fn reset(&self) {
        *self.conn.lock().await = None;
    }

    async fn round_trip(&self, body: Vec<u8>) -> Result<ResponseEnvelope, RpcError> {
        let mut sender = self.sender().await?;
        let transport = |e: hyper::Error| RpcError::Transport {
            addr: self.addr.clone(),
            reason: e.to_string(),
        };
        sender.ready().await.map_err(transport)?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("http://{}{RPC_PATH}", self.addr))
            .header(CONTENT_TYPE, CONTENT_TYPE_PEER)
            .header(HOST, &self.addr)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| RpcError::Transport {
                addr: self.addr.clone(),
                reason: e.to_string(),
            })?;
        let response = sender.send_request(request).await.map_err(transport)?;
        let limit = self.config.max_message_bytes;
        let bytes = Limited::new(response.into_body(), limit)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    RpcError::TooLarge {
                        addr: self.addr.clone(),
                        size: limit + 1,
                        limit,
                    }
                } else {
                    RpcError::Transport {
                        addr: self.addr.clone(),
                        reason: e.to_string(),
                    }
                }
            })?
            .to_bytes();
        decode::<ResponseEnvelope>(&bytes).map_err(|reason| RpcError::Decode {
            addr: self.addr.clone(),
            reason,
        })
    }

    /// The live connection, dialling one if there is none.
    async fn sender(&self) -> Result<SendRequest<Full<Bytes>>, RpcError> {
        let mut conn = self.conn.lock().await;
        if let Some(s) = conn.as_ref()
            && !s.is_closed()
        {
            return Ok(s.clone());
        }
        *conn = None;
        let connect_timeout = self.config.connect_timeout;
        let sender = tokio::time::timeout(connect_timeout, self.dial())
            .await
            .map_err(|_| RpcError::Connect {
                addr: self.addr.clone(),
                reason: format!("timed out after {connect_timeout:?}"),
            })??;
        *conn = Some(sender.clone());
        Ok(sender)
    }

    async fn dial(&self) -> Result<SendRequest<Full<Bytes>>, RpcError> {
        let err = |reason: String| RpcError::Connect {
            addr: self.addr.clone(),
            reason,
        };
        let tcp = TcpStream::connect(&self.addr)
            .await
            .map_err(|e| err(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match &self.config.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let name = server_name(&self.addr).map_err(err)?;
                let connector = tokio_rustls::TlsConnector::from(tls.clone());
                Box::new(
                    connector
                        .connect(name, tcp)
                        .await
                        .map_err(|e| err(format!("TLS: {e}")))?,
                )
            }
        };
        let (stream_window, conn_window) = flow_windows(self.config.max_message_bytes);
        let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .keep_alive_interval(self.config.keep_alive_interval)
            .keep_alive_timeout(self.config.keep_alive_timeout)
            .keep_alive_while_idle(true)
            .max_header_list_size(16 * 1024)
            .initial_stream_window_size(stream_window)
            .initial_connection_window_size(conn_window)
            .max_frame_size(MAX_FRAME_BYTES)
            .max_send_buf_size(stream_window as usize);
        let (sender, connection) = builder
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| err(format!("HTTP/2 handshake: {e}")))?;
        let addr = self.addr.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%addr, error = %e, "cluster connection to peer ended");
            }
        });
        Ok(sender)
    }
}
