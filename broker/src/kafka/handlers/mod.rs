//! One handler per Kafka API. Each takes a decoded request body (and its version) and returns
//! the response body; none of them touches bytes on the wire (that is the codec) or sockets
//! (that is the server). This module holds the dispatch, the shared context, and the mapping
//! of broker and group errors to Kafka error codes. Under `--auth` the dispatch is also the
//! one gate: before a connection authenticates only ApiVersions and the SASL APIs are
//! served (anything else closes it), and afterwards [`authz`] takes out of each request what
//! the user may not do and answers it with Kafka's authorization errors.

mod admin;
pub mod api_versions;
mod authz;
mod configs;
mod fetch;
mod groups;
mod leader_epoch;
mod list_offsets;
mod metadata;
mod offsets;
mod produce;
mod producer_id;
mod sasl;
mod topics;
mod txn;

use std::net::SocketAddr;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use super::KafkaConfig;
use super::codec::Request;
use super::producer::{ProducerIds, ProducerStates};
use crate::Broker;
use crate::auth::{Op, Resource};
use crate::error::BrokerError;
use crate::group::{GroupCoordinator, GroupError};
use authz::Authz;
pub use sasl::SaslState;

/// What every handler may use.
pub struct Ctx {
    pub broker: Broker,
    pub config: KafkaConfig,
    /// Validated `advertised` address, if configured.
    pub advertised: Option<(String, u16)>,
    pub groups: Arc<GroupCoordinator>,
    pub producers: Arc<ProducerStates>,
    pub producer_ids: Arc<ProducerIds>,
    /// The transaction coordinator (`None` on a cluster: transactions are not served).
    pub txn: Option<Arc<crate::txn::TxnCoordinator>>,
}

/// The connection a request came on, and its authentication state.
pub struct Conn {
    pub peer: SocketAddr,
    /// The address the client connected to (advertised when none is configured).
    pub local: Option<SocketAddr>,
    /// The verified client-certificate CN of a TLS connection: the connection's user when
    /// it did not authenticate with SASL (a user of that name must exist to be allowed
    /// anything).
    pub tls_principal: Option<String>,
    /// Where the connection is in its SASL exchange.
    pub sasl: SaslState,
    /// Set by a handler: close the connection once the current response is written.
    pub close: bool,
}

impl Conn {
    pub fn new(peer: SocketAddr, local: Option<SocketAddr>) -> Self {
        Conn {
            peer,
            local,
            tls_principal: None,
            sasl: SaslState::Start,
            close: false,
        }
    }

    /// The connection's user: the SASL-authenticated one, else the client certificate's.
    pub fn user(&self) -> Option<&str> {
        match &self.sasl {
            SaslState::Done(u) => Some(u),
            _ => self.tls_principal.as_deref(),
        }
    }
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

/// Runs the handler for `req`. `None` means "send no response" (Produce with acks=0, or a
/// request refused before authentication, which also sets [`Conn::close`]).
pub async fn handle(ctx: &Arc<Ctx>, conn: &mut Conn, req: Request) -> Option<ResponseKind> {
    let v = req.version;
    let api = req.api_key;
    let client_id = req.client_id().to_string();
    tracing::trace!(?api, version = v, client = %client_id, "Kafka request");
    let authz = match &ctx.config.auth {
        None => None,
        Some(_)
            if matches!(
                api,
                ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
            ) =>
        {
            None
        }
        Some(store) => match conn.user() {
            Some(user) => Some(Authz {
                store: store.clone(),
                user: user.to_string(),
            }),
            None => {
                tracing::warn!(peer = %conn.peer, ?api, "closing Kafka connection: request before authentication");
                conn.close = true;
                return None;
            }
        },
    };
    let Some(authz) = authz else {
        return dispatch(ctx, conn, &client_id, req.body, v).await;
    };
    let b = &ctx.broker;
    Some(match req.body {
        RequestKind::Metadata(mut r) => {
            let (denied, all) = authz.metadata(b, &mut r, v);
            let mut resp = metadata::handle(ctx, conn, r, v).await;
            if all {
                resp.topics.retain(|t| authz.visible(t));
            }
            resp.topics.extend(denied);
            ResponseKind::Metadata(resp)
        }
        RequestKind::Produce(mut r) => {
            let denied = authz.produce(b, &mut r);
            return produce::handle(ctx, r, v).await.map(|mut resp| {
                resp.responses.extend(denied);
                ResponseKind::Produce(resp)
            });
        }
        RequestKind::Fetch(mut r) => {
            let denied = authz.fetch(&mut r);
            let mut resp = fetch::handle(ctx, r, v).await;
            resp.responses.extend(denied);
            ResponseKind::Fetch(resp)
        }
        RequestKind::ListOffsets(mut r) => {
            let denied = authz.list_offsets(&mut r);
            let mut resp = list_offsets::handle(ctx, r, v).await;
            resp.topics.extend(denied);
            ResponseKind::ListOffsets(resp)
        }
        RequestKind::CreateTopics(mut r) => {
            let denied = authz.create_topics(&mut r);
            let mut resp = topics::create(ctx, r, v).await;
            resp.topics.extend(denied);
            ResponseKind::CreateTopics(resp)
        }
        RequestKind::DeleteTopics(mut r) => {
            let denied = authz.delete_topics(&mut r);
            let mut resp = topics::delete(ctx, r, v).await;
            resp.responses.extend(denied);
            ResponseKind::DeleteTopics(resp)
        }
        RequestKind::DescribeConfigs(mut r) => {
            let denied = authz.describe_configs(&mut r);
            let mut resp = configs::describe(ctx, r, v);
            resp.results.extend(denied);
            ResponseKind::DescribeConfigs(resp)
        }
        RequestKind::FindCoordinator(mut r) => {
            if v < 4
                && let Some(refused) = authz.find_coordinator(&r)
            {
                return Some(ResponseKind::FindCoordinator(refused));
            }
            let denied = authz.find_coordinators(&mut r);
            let mut resp = groups::find_coordinator(ctx, conn, r, v).await;
            resp.coordinators.extend(denied);
            ResponseKind::FindCoordinator(resp)
        }
        RequestKind::JoinGroup(r) if !authz.group_member(&r.group_id) => ResponseKind::JoinGroup(
            kafka_protocol::messages::JoinGroupResponse::default()
                .with_error_code(ResponseError::GroupAuthorizationFailed.code())
                .with_generation_id(-1),
        ),
        RequestKind::SyncGroup(r) if !authz.group_member(&r.group_id) => ResponseKind::SyncGroup(
            kafka_protocol::messages::SyncGroupResponse::default()
                .with_error_code(ResponseError::GroupAuthorizationFailed.code()),
        ),
        RequestKind::Heartbeat(r) if !authz.group_member(&r.group_id) => ResponseKind::Heartbeat(
            kafka_protocol::messages::HeartbeatResponse::default()
                .with_error_code(ResponseError::GroupAuthorizationFailed.code()),
        ),
        RequestKind::LeaveGroup(r) if !authz.group_member(&r.group_id) => ResponseKind::LeaveGroup(
            kafka_protocol::messages::LeaveGroupResponse::default()
                .with_error_code(ResponseError::GroupAuthorizationFailed.code()),
        ),
        RequestKind::OffsetCommit(r) => match authz.offset_commit(&r) {
            Some(refused) => ResponseKind::OffsetCommit(refused),
            None => ResponseKind::OffsetCommit(offsets::commit(ctx, r, v).await),
        },
        RequestKind::OffsetFetch(mut r) => match authz.offset_fetch(&mut r) {
            Some(refused) => ResponseKind::OffsetFetch(refused),
            None => {
                let mut resp = offsets::fetch(ctx, r, v);
                resp.topics.retain(|t| authz.topic_visible(&t.name));
                ResponseKind::OffsetFetch(resp)
            }
        },
        RequestKind::OffsetForLeaderEpoch(mut r) => {
            let denied = authz.offset_for_leader_epoch(&mut r);
            let mut resp = leader_epoch::handle(ctx, r, v);
            resp.topics.extend(denied);
            ResponseKind::OffsetForLeaderEpoch(resp)
        }
        RequestKind::ListGroups(r) => {
            let mut resp = groups::list(ctx, r, v);
            resp.groups.retain(|g| authz.group_visible(&g.group_id));
            ResponseKind::ListGroups(resp)
        }
        RequestKind::DescribeGroups(mut r) => {
            let denied = authz.describe_groups(&mut r);
            let mut resp = groups::describe(ctx, r, v);
            resp.groups.extend(denied);
            ResponseKind::DescribeGroups(resp)
        }
        RequestKind::InitProducerId(r) => match authz.init_producer_id() {
            Some(refused) => ResponseKind::InitProducerId(refused),
            None => ResponseKind::InitProducerId(producer_id::init(ctx, r, v).await),
        },
        // Transactions: writers (Write on the cluster, as InitProducerId), who may write
        // each topic they add and read the group they commit for.
        RequestKind::AddPartitionsToTxn(r) => {
            if !authz.allows(Op::Write, Resource::Cluster) {
                return Some(ResponseKind::AddPartitionsToTxn(
                    txn::refused_add_partitions(&r),
                ));
            }
            ResponseKind::AddPartitionsToTxn(
                txn::add_partitions(ctx, r, v, |t| {
                    authz.allows(Op::Write, Resource::Topic(t.0.to_string()))
                })
                .await,
            )
        }
        RequestKind::AddOffsetsToTxn(r) => {
            if !authz.allows(Op::Write, Resource::Cluster) || !authz.group_member(&r.group_id) {
                return Some(ResponseKind::AddOffsetsToTxn(
                    kafka_protocol::messages::AddOffsetsToTxnResponse::default()
                        .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code()),
                ));
            }
            ResponseKind::AddOffsetsToTxn(txn::add_offsets(ctx, r, v).await)
        }
        RequestKind::TxnOffsetCommit(r) => {
            if !authz.allows(Op::Write, Resource::Cluster) || !authz.group_member(&r.group_id) {
                return Some(ResponseKind::TxnOffsetCommit(txn::refused_offset_commit(r)));
            }
            ResponseKind::TxnOffsetCommit(txn::txn_offset_commit(ctx, r, v).await)
        }
        RequestKind::EndTxn(r) => {
            if !authz.allows(Op::Write, Resource::Cluster) {
                return Some(ResponseKind::EndTxn(
                    kafka_protocol::messages::EndTxnResponse::default()
                        .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code())
                        .with_producer_id(kafka_protocol::messages::ProducerId(-1))
                        .with_producer_epoch(-1),
                ));
            }
            ResponseKind::EndTxn(txn::end_txn(ctx, r, v).await)
        }
        RequestKind::DescribeTransactions(r) => {
            let may = authz.allows(Op::Write, Resource::Cluster);
            ResponseKind::DescribeTransactions(txn::describe(ctx, r, |_| may).await)
        }
        RequestKind::ListTransactions(r) => {
            let may = authz.allows(Op::Write, Resource::Cluster);
            ResponseKind::ListTransactions(txn::list(ctx, r, |_| may).await)
        }
        // Admin APIs: deleting records and adding partitions need Admin on the topic.
        RequestKind::DeleteRecords(r) => ResponseKind::DeleteRecords(
            admin::delete_records(ctx, r, |t| {
                authz.allows(Op::Admin, Resource::Topic(t.0.to_string()))
            })
            .await,
        ),
        RequestKind::CreatePartitions(r) => ResponseKind::CreatePartitions(
            admin::create_partitions(ctx, r, |t| {
                authz.allows(Op::Admin, Resource::Topic(t.0.to_string()))
            })
            .await,
        ),
        RequestKind::IncrementalAlterConfigs(r) => ResponseKind::IncrementalAlterConfigs(
            configs::incremental_alter(ctx, r, |t| {
                authz.allows(Op::Admin, Resource::Topic(t.to_string()))
            })
            .await,
        ),
        RequestKind::DeleteGroups(r) => ResponseKind::DeleteGroups(
            groups::delete_groups(ctx, r, |g| {
                authz.allows(Op::Admin, Resource::Group(g.0.to_string()))
            })
            .await,
        ),
        RequestKind::OffsetDelete(r) => {
            if !authz.allows(Op::Admin, Resource::Group(r.group_id.0.to_string())) {
                return Some(ResponseKind::OffsetDelete(
                    kafka_protocol::messages::OffsetDeleteResponse::default()
                        .with_error_code(ResponseError::GroupAuthorizationFailed.code()),
                ));
            }
            ResponseKind::OffsetDelete(groups::offset_delete(ctx, r).await)
        }
        body => return dispatch(ctx, conn, &client_id, body, v).await,
    })
}

/// Runs the handler for one request body, without authorization.
async fn dispatch(
    ctx: &Arc<Ctx>,
    conn: &mut Conn,
    client_id: &str,
    body: RequestKind,
    v: i16,
) -> Option<ResponseKind> {
    Some(match body {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions::response()),
        RequestKind::SaslHandshake(r) => {
            ResponseKind::SaslHandshake(sasl::handshake(ctx, conn, r, v))
        }
        RequestKind::SaslAuthenticate(r) => {
            ResponseKind::SaslAuthenticate(sasl::authenticate(ctx, conn, r, v).await)
        }
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
            ResponseKind::FindCoordinator(groups::find_coordinator(ctx, conn, r, v).await)
        }
        RequestKind::JoinGroup(r) => {
            ResponseKind::JoinGroup(groups::join(ctx, conn, client_id, r, v).await)
        }
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(groups::sync(ctx, r, v).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(groups::heartbeat(ctx, r, v)),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(groups::leave(ctx, r, v)),
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(groups::list(ctx, r, v)),
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(leader_epoch::handle(ctx, r, v))
        }
        RequestKind::DescribeGroups(r) => ResponseKind::DescribeGroups(groups::describe(ctx, r, v)),
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(offsets::commit(ctx, r, v).await)
        }
        RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(offsets::fetch(ctx, r, v)),
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(producer_id::init(ctx, r, v).await)
        }
        RequestKind::AddPartitionsToTxn(r) => {
            ResponseKind::AddPartitionsToTxn(txn::add_partitions(ctx, r, v, |_| true).await)
        }
        RequestKind::AddOffsetsToTxn(r) => {
            ResponseKind::AddOffsetsToTxn(txn::add_offsets(ctx, r, v).await)
        }
        RequestKind::TxnOffsetCommit(r) => {
            ResponseKind::TxnOffsetCommit(txn::txn_offset_commit(ctx, r, v).await)
        }
        RequestKind::EndTxn(r) => ResponseKind::EndTxn(txn::end_txn(ctx, r, v).await),
        RequestKind::DescribeTransactions(r) => {
            ResponseKind::DescribeTransactions(txn::describe(ctx, r, |_| true).await)
        }
        RequestKind::ListTransactions(r) => {
            ResponseKind::ListTransactions(txn::list(ctx, r, |_| true).await)
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(admin::delete_records(ctx, r, |_| true).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(admin::create_partitions(ctx, r, |_| true).await)
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(admin::describe_cluster(ctx, conn, r))
        }
        RequestKind::IncrementalAlterConfigs(r) => ResponseKind::IncrementalAlterConfigs(
            configs::incremental_alter(ctx, r, |_| true).await,
        ),
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(groups::delete_groups(ctx, r, |_| true).await)
        }
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(groups::offset_delete(ctx, r).await)
        }
        _ => {
            // The codec only lets through APIs listed in `versions`; this is a bug.
            tracing::error!(version = v, "no handler for this API");
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
        BrokerError::InvalidPartitions(_) => ResponseError::InvalidPartitions.code(),
        BrokerError::InvalidRecord(_) => ResponseError::InvalidRecord.code(),
        BrokerError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange.code(),
        BrokerError::BatchTooLarge { .. } => ResponseError::MessageTooLarge.code(),
        BrokerError::CorruptBatch(_) => ResponseError::CorruptMessage.code(),
        BrokerError::Io { .. }
        | BrokerError::CorruptFile { .. }
        | BrokerError::DataDirLocked(_) => ResponseError::KafkaStorageError.code(),
        BrokerError::ShuttingDown => ResponseError::NotLeaderOrFollower.code(),
        BrokerError::OffsetNotAvailable { .. } => ResponseError::OffsetNotAvailable.code(),
        BrokerError::PolicyViolation(_) => ResponseError::PolicyViolation.code(),
        BrokerError::PartitionOffline { .. } => ResponseError::KafkaStorageError.code(),
        // As Kafka answers a produce to its own internal topics.
        BrokerError::InternalTopic { .. } => ResponseError::InvalidTopicException.code(),
        BrokerError::TopicInUse { .. } | BrokerError::TopicConflict { .. } => {
            ResponseError::PolicyViolation.code()
        }
        // Retriable: the client refreshes its metadata and finds the current leader.
        BrokerError::ReplicaConflict(_) | BrokerError::NotLeader { .. } => {
            ResponseError::NotLeaderOrFollower.code()
        }
        BrokerError::NotEnoughReplicas { .. } => ResponseError::NotEnoughReplicas.code(),
        BrokerError::NotEnoughReplicasAfterAppend { .. } => {
            ResponseError::NotEnoughReplicasAfterAppend.code()
        }
        BrokerError::ReplicationTimeout { .. } => ResponseError::RequestTimedOut.code(),
        BrokerError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor.code(),
        BrokerError::ClusterUnavailable(_) => ResponseError::NotController.code(),
        // Node administration is not served over Kafka (no decommission API there).
        BrokerError::ClusterRefused(_) => ResponseError::InvalidRequest.code(),
        // Owners' requests between nodes; not a client's.
        BrokerError::PeerRefused { .. } | BrokerError::TaskFenced(_) => {
            ResponseError::UnknownServerError.code()
        }
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
        GroupError::NotCoordinator => ResponseError::NotCoordinator.code(),
        GroupError::CoordinatorLoadInProgress => ResponseError::CoordinatorLoadInProgress.code(),
        GroupError::NonEmptyGroup => ResponseError::NonEmptyGroup.code(),
        GroupError::GroupIdNotFound => ResponseError::GroupIdNotFound.code(),
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
