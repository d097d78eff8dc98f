//! One handler per Kafka API. Each takes a decoded request body (and its version) and returns
//! the response body; none of them touches bytes on the wire (that is the codec) or sockets
//! (that is the server). This module holds the dispatch, the shared context, and the mapping
//! of broker and group errors to Kafka error codes.

pub mod api_versions;
mod configs;
mod fetch;
mod groups;
mod list_offsets;
mod metadata;
mod offsets;
mod produce;
mod producer_id;
mod topics;

use std::net::SocketAddr;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use super::KafkaConfig;
use super::codec::Request;
use super::producer::{ProducerIds, ProducerStates};
use crate::Broker;
use crate::error::BrokerError;
use crate::group::{GroupCoordinator, GroupError};

/// What every handler may use.
pub struct Ctx {
    pub broker: Broker,
    pub config: KafkaConfig,
    /// Validated `advertised` address, if configured.
    pub advertised: Option<(String, u16)>,
    pub groups: Arc<GroupCoordinator>,
    pub producers: Arc<ProducerStates>,
    pub producer_ids: Arc<ProducerIds>,
}

/// The connection a request came on.
pub struct Conn {
    pub peer: SocketAddr,
    /// The address the client connected to (advertised when none is configured).
    pub local: Option<SocketAddr>,
    /// Subject CN of the client's verified TLS certificate (mTLS, `--tls-client-ca`): the
    /// connection's principal for authentication. `None` on plain connections and TLS
    /// without client certificates.
    pub tls_cn: Option<String>,
}

impl Ctx {
    /// The host and port clients should connect to.
    pub fn advertised(&self, conn: &Conn) -> (String, i32) {
        match (&self.advertised, conn.local) {
            (Some((h, p)), _) => (h.clone(), *p as i32),
            (None, Some(a)) => (a.ip().to_string(), a.port() as i32),
            (None, None) => ("127.0.0.1".into(), 9092),
        }
    }
}

/// Runs the handler for `req`. `None` means "send no response" (Produce with acks=0).
pub async fn handle(ctx: &Arc<Ctx>, conn: &Conn, req: Request) -> Option<ResponseKind> {
    let v = req.version;
    let api = req.api_key;
    let client_id = req.client_id().to_string();
    tracing::trace!(?api, version = v, client = %client_id, "Kafka request");
    Some(match req.body {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions::response()),
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata::handle(ctx, conn, r, v).await),
        RequestKind::Produce(r) => {
            return produce::handle(ctx, r, v).await.map(ResponseKind::Produce);
        }
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::handle(ctx, r, v).await),
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(list_offsets::handle(ctx, r, v).await)
        }
        RequestKind::CreateTopics(r) => ResponseKind::CreateTopics(topics::create(ctx, r, v).await),
        RequestKind::DeleteTopics(r) => ResponseKind::DeleteTopics(topics::delete(ctx, r, v).await),
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(configs::describe(ctx, r, v))
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(groups::find_coordinator(ctx, conn, r, v))
        }
        RequestKind::JoinGroup(r) => {
            ResponseKind::JoinGroup(groups::join(ctx, conn, &client_id, r, v).await)
        }
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(groups::sync(ctx, r, v).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(groups::heartbeat(ctx, r, v)),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(groups::leave(ctx, r, v)),
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(groups::list(ctx, r, v)),
        RequestKind::DescribeGroups(r) => ResponseKind::DescribeGroups(groups::describe(ctx, r, v)),
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(offsets::commit(ctx, r, v).await)
        }
        RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(offsets::fetch(ctx, r, v)),
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(producer_id::init(ctx, r, v))
        }
        _ => {
            // The codec only lets through APIs listed in `versions`; this is a bug.
            tracing::error!(?api, version = v, "no handler for this API");
            return None;
        }
    })
}

/// The Kafka error code for a broker error.
pub fn broker_error_code(e: &BrokerError) -> i16 {
    match e {
        BrokerError::UnknownTopic(_) | BrokerError::UnknownPartition { .. } => {
            ResponseError::UnknownTopicOrPartition.code()
        }
        BrokerError::TopicExists(_) => ResponseError::TopicAlreadyExists.code(),
        BrokerError::InvalidTopicName { .. } => ResponseError::InvalidTopicException.code(),
        BrokerError::InvalidConfig(_) => ResponseError::InvalidConfig.code(),
        BrokerError::InvalidRecord(_) => ResponseError::InvalidRecord.code(),
        BrokerError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange.code(),
        BrokerError::BatchTooLarge { .. } => ResponseError::MessageTooLarge.code(),
        BrokerError::CorruptBatch(_) => ResponseError::CorruptMessage.code(),
        BrokerError::Io { .. }
        | BrokerError::CorruptFile { .. }
        | BrokerError::DataDirLocked(_) => ResponseError::KafkaStorageError.code(),
        BrokerError::ShuttingDown => ResponseError::NotLeaderOrFollower.code(),
        BrokerError::PolicyViolation(_) => ResponseError::PolicyViolation.code(),
        BrokerError::PartitionOffline { .. } => ResponseError::KafkaStorageError.code(),
        // As Kafka answers a produce to its own internal topics.
        BrokerError::InternalTopic { .. } => ResponseError::InvalidTopicException.code(),
        BrokerError::TopicInUse { .. } => ResponseError::PolicyViolation.code(),
    }
}

/// The Kafka error code for a group error.
pub fn group_error_code(e: &GroupError) -> i16 {
    match e {
        GroupError::UnknownMemberId => ResponseError::UnknownMemberId.code(),
        GroupError::MemberIdRequired(_) => ResponseError::MemberIdRequired.code(),
        GroupError::IllegalGeneration => ResponseError::IllegalGeneration.code(),
        GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress.code(),
        GroupError::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol.code(),
        GroupError::InvalidSessionTimeout(_) => ResponseError::InvalidSessionTimeout.code(),
        GroupError::InvalidGroupId => ResponseError::InvalidGroupId.code(),
    }
}

/// Runs blocking broker work off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, BrokerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| BrokerError::ShuttingDown)
}

pub fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}
