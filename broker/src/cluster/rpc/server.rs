//! The server side of the cluster listener: HTTP/2 (hyper) over TCP or TLS, one route
//! (`POST /weir.peer/v1`), every request checked before any service sees it — body size,
//! body read time, protocol version, cluster id, sender id — then [`PeerRequest::Hello`]
//! answered here and every other request handed to the node's [`PeerService`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::message::{
    HelloReply, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, PeerRequest, PeerResponse, Refusal,
    RequestEnvelope, ResponseEnvelope, decode, encode,
};
use super::{
    CONTENT_TYPE_PEER, Io, LocalNode, MAX_FRAME_BYTES, RPC_PATH, SOFTWARE_VERSION, flow_windows,
};
use crate::cluster::NodeId;
use crate::net::{ConnLimiter, ConnLimits, TlsServer};

/// A boxed future of a service's answer.
pub type ServiceFuture<'a> =
    Pin<Box<dyn Future<Output = Result<PeerResponse, Refusal>> + Send + 'a>>;

/// What a node serves to its peers beyond [`PeerRequest::Hello`]: Raft messages, follower
/// fetches, … The RPC layer has already checked the sender's cluster id, protocol version
/// and message size; `from` is the sender's node id *as it claims it* (authenticated only
/// by mTLS when the cluster runs TLS). A request kind the service does not handle gets
/// [`Refusal::NotServed`].
pub trait PeerService: Send + Sync + 'static {
    fn call(&self, from: NodeId, request: PeerRequest) -> ServiceFuture<'_>;
}

/// Serves nothing beyond hello.
#[derive(Debug, Default, Clone, Copy)]
pub struct HelloOnly;

impl PeerService for HelloOnly {
    fn call(&self, _from: NodeId, request: PeerRequest) -> ServiceFuture<'_> {
        Box::pin(async move { Err(Refusal::NotServed(request.kind().to_string())) })
    }
}

/// Inbound greetings, for the liveness view (the peer `from` reached us now).
pub trait InboundHello: Send + Sync + 'static {
    fn greeted_by(&self, from: NodeId, advertised: &str, version: &str);
}

/// Settings of the cluster listener.
#[derive(Clone)]
pub struct ServerConfig {
    pub local: Arc<LocalNode>,
    pub max_message_bytes: usize,
    /// A request body must arrive whole within this time.
    pub body_timeout: Duration,
    /// HTTP/2 pings on idle connections, and how long a ping may go unanswered.
    pub keep_alive_interval: Duration,
    pub keep_alive_timeout: Duration,
    /// Concurrent requests per connection.
    pub max_concurrent_streams: u32,
    pub limits: ConnLimits,
    pub tls: Option<TlsServer>,
    pub inbound: Option<Arc<dyn InboundHello>>,
}

impl ServerConfig {
    pub fn new(local: Arc<LocalNode>, max_message_bytes: usize) -> ServerConfig {
        ServerConfig {
            local,
            max_message_bytes,
            body_timeout: Duration::from_secs(10),
            keep_alive_interval: Duration::from_secs(2),
            keep_alive_timeout: Duration::from_secs(6),
            max_concurrent_streams: 256,
            limits: ConnLimits::default(),
            tls: None,
            inbound: None,
        }
    }
}

struct Shared {
    config: ServerConfig,
    service: Arc<dyn PeerService>,
    stopping: watch::Receiver<bool>,
}

/// Serves peers on `listener` until `shutdown` completes; open connections are then told
/// to go away (in-flight requests finish) and the function returns.
pub async fn serve(
    listener: TcpListener,
    config: ServerConfig,
    service: Arc<dyn PeerService>,
    shutdown: impl Future<Output = ()>,
) {
    let limiter = Arc::new(ConnLimiter::new(config.limits));
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        config,
        service,
        stopping: stop_rx,
    });
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, addr) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "cluster listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let guard = match limiter.try_acquire(addr.ip()) {
            Ok(g) => g,
            Err(refused) => {
                tracing::warn!(%addr, ?refused, "cluster listener: connection cap reached; closing");
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _guard = guard;
            if let Err(e) = connection(tcp, addr, shared).await {
                tracing::debug!(%addr, error = %e, "cluster connection ended");
            }
        });
    }
    let _ = stop_tx.send(true);
}

async fn connection(
    tcp: tokio::net::TcpStream,
    addr: SocketAddr,
    shared: Arc<Shared>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = match &shared.config.tls {
        None => Box::new(tcp),
        Some(tls) => Box::new(tls.accept(tcp).await?.0),
    };
    let c = &shared.config;
    let (stream_window, conn_window) = flow_windows(c.max_message_bytes);
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(c.keep_alive_interval))
        .keep_alive_timeout(c.keep_alive_timeout)
        .max_concurrent_streams(c.max_concurrent_streams)
        .max_header_list_size(16 * 1024)
        .initial_stream_window_size(stream_window)
        .initial_connection_window_size(conn_window)
        .max_frame_size(MAX_FRAME_BYTES)
        .max_send_buf_size(stream_window as usize);
    let handler = shared.clone();
    let svc = hyper::service::service_fn(move |req| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handle(&handler, req).await) }
    });
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    let mut conn = std::pin::pin!(conn);
    let mut stopping = shared.stopping.clone();
    tokio::select! {
        r = conn.as_mut() => return r.map_err(Into::into),
        _ = stopping.wait_for(|s| *s) => {}
    }
    tracing::debug!(%addr, "cluster listener stopping: closing connection");
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
    Ok(())
}

fn reply(status: StatusCode, envelope: &ResponseEnvelope) -> Response<Full<Bytes>> {
    let body = match encode(envelope) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a cluster response");
            Vec::new()
        }
    };
    reply_encoded(status, body)
}

fn reply_encoded(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = CONTENT_TYPE_PEER.parse() {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    r
}

fn refuse(status: StatusCode, refusal: Refusal) -> Response<Full<Bytes>> {
    reply(status, &Err(refusal))
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let limit = shared.config.max_message_bytes;
    if req.method() != Method::POST || req.uri().path() != RPC_PATH {
        return refuse(
            StatusCode::NOT_FOUND,
            Refusal::Malformed(format!("no route {} {}", req.method(), req.uri().path())),
        );
    }
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, Refusal::TooLarge { limit });
    }
    let body = Limited::new(req.into_body(), limit);
    let bytes = match tokio::time::timeout(shared.config.body_timeout, body.collect()).await {
        Err(_) => {
            return refuse(
                StatusCode::REQUEST_TIMEOUT,
                Refusal::Malformed("request body timed out".into()),
            );
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, Refusal::TooLarge { limit });
        }
        Ok(Err(e)) => {
            return refuse(StatusCode::BAD_REQUEST, Refusal::Malformed(e.to_string()));
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    let envelope: RequestEnvelope = match decode(&bytes) {
        Ok(e) => e,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, Refusal::Malformed(e)),
    };
    let answer = match admit(shared, &envelope) {
        Err(refusal) => Err(refusal),
        Ok(()) if *shared.stopping.borrow() => Err(Refusal::ShuttingDown),
        Ok(()) => dispatch(shared, envelope).await,
    };
    // Encoded once: a fetch answer of a few MiB is not copied twice to be measured.
    match encode(&answer) {
        Ok(body) if body.len() > limit => refuse(StatusCode::OK, Refusal::TooLarge { limit }),
        Ok(body) => reply_encoded(StatusCode::OK, body),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a cluster response");
            reply_encoded(StatusCode::OK, Vec::new())
        }
    }
}

/// The checks every request passes before it is served.
fn admit(shared: &Shared, env: &RequestEnvelope) -> Result<(), Refusal> {
    let local = &shared.config.local;
    if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&env.protocol) {
        return Err(Refusal::UnsupportedProtocol {
            min: MIN_PROTOCOL_VERSION,
            max: PROTOCOL_VERSION,
            theirs: env.protocol,
        });
    }
    if env.from == local.node_id() {
        return Err(Refusal::SameNodeId(env.from));
    }
    let ours = local.cluster_id();
    let is_hello = matches!(env.request, PeerRequest::Hello(_));
    let same = match (&ours, &env.cluster_id) {
        (Some(a), Some(b)) => a == b,
        // A joining node that has not learned the id may only greet (and learns it from
        // the reply); a node that does not know its own id serves nothing but greetings.
        (Some(_), None) | (None, _) => is_hello,
    };
    if !same {
        return Err(Refusal::WrongCluster {
            ours,
            theirs: env.cluster_id.clone(),
        });
    }
    if let PeerRequest::Hello(h) = &env.request
        && h.node_id != env.from
    {
        return Err(Refusal::Malformed(format!(
            "hello from node {} sent as node {}",
            h.node_id, env.from
        )));
    }
    Ok(())
}

async fn dispatch(shared: &Shared, env: RequestEnvelope) -> ResponseEnvelope {
    match env.request {
        PeerRequest::Hello(hello) => {
            if let Some(inbound) = &shared.config.inbound {
                inbound.greeted_by(env.from, &hello.advertised, &hello.version);
            }
            let local = &shared.config.local;
            Ok(PeerResponse::Hello(HelloReply {
                cluster_id: local.cluster_id(),
                node_id: local.node_id(),
                version: SOFTWARE_VERSION.to_string(),
                protocol: PROTOCOL_VERSION,
            }))
        }
        #[allow(unreachable_patterns)]
        other => shared.service.call(env.from, other).await,
    }
}
