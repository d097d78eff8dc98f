//! The group APIs of the classic consumer protocol: FindCoordinator, JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup, ListGroups, DescribeGroups, and the group admin APIs DeleteGroups
//! and OffsetDelete. Each decodes the request into plain values for
//! [`crate::group::GroupCoordinator`] and maps its answer and errors back.
//!
//! The coordinator of a group is this node on a single node; on a cluster it is the leader
//! of the group's partition of the replicated `__consumer_offsets` (created through the
//! controller on the first FindCoordinator, as Kafka does), `COORDINATOR_NOT_AVAILABLE`
//! while that partition has no leader. A node that is not (yet) the coordinator answers the
//! group APIs `NOT_COORDINATOR` (`COORDINATOR_LOAD_IN_PROGRESS` while it loads), so
//! clients look for it again.
//!
//! FindCoordinator for a transactional id (key type 1) names this node on a single node
//! (it coordinates every transaction); a cluster answers `TRANSACTIONAL_ID_AUTHORIZATION_FAILED`,
//! fatal for clients, since it does not serve transactions yet.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetDeleteRequest,
    OffsetDeleteResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};

use super::{Conn, Ctx, blocking, group_error_code, str_bytes};
use crate::error::BrokerError;
use crate::group::{
    GroupError, GroupState, JoinRequest, OFFSETS_PARTITIONS, OFFSETS_TOPIC, OffsetStore,
    offsets_partition,
};

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// Where a group's coordinator is: (node, host, port), or why it is not available.
type Located = Result<(BrokerId, String, i32), String>;

/// The coordinator of `group` (see the module docs).
async fn coordinator(ctx: &Ctx, conn: &Conn, group: &str) -> Located {
    let Some(cluster) = &ctx.config.cluster else {
        let (host, port) = ctx.advertised(conn);
        return Ok((BrokerId(ctx.config.node_id), host, port));
    };
    let routes = match cluster.routes(OFFSETS_TOPIC) {
        Some(r) => r,
        None => {
            match cluster.create_topic(&OffsetStore::cluster_spec()).await {
                Ok(()) | Err(BrokerError::TopicExists(_)) => {}
                Err(e) => return Err(format!("cannot create {OFFSETS_TOPIC} yet: {e}")),
            }
            cluster
                .routes(OFFSETS_TOPIC)
                .ok_or_else(|| format!("{OFFSETS_TOPIC} is not applied here yet"))?
        }
    };
    if routes.len() != OFFSETS_PARTITIONS as usize {
        return Err(format!(
            "{OFFSETS_TOPIC} has {} partitions, not {OFFSETS_PARTITIONS}",
            routes.len()
        ));
    }
    let partition = offsets_partition(group);
    let leader = routes
        .get(partition as usize)
        .and_then(|r| r.leader)
        .ok_or_else(|| format!("{OFFSETS_TOPIC} partition {partition} has no leader"))?;
    let id = BrokerId(i32::try_from(leader).map_err(|e| e.to_string())?);
    if leader == cluster.node() {
        let (host, port) = ctx.advertised(conn);
        return Ok((id, host, port));
    }
    let b = cluster
        .live_brokers()
        .into_iter()
        .find(|b| b.id == leader && !b.kafka_addr.is_empty())
        .ok_or_else(|| format!("the address of node {leader} is not known"))?;
    let (host, port) = super::metadata::split_host_port(&b.kafka_addr)
        .ok_or_else(|| format!("bad Kafka address of node {leader}"))?;
    Ok((id, host, port))
}

/// The FindCoordinator answer for one key: the coordinator, or the error code and why.
async fn locate(
    ctx: &Ctx,
    conn: &Conn,
    key_type: i8,
    key: &str,
) -> Result<(BrokerId, String, i32), (i16, String)> {
    match key_type {
        KEY_TYPE_GROUP => coordinator(ctx, conn, key)
            .await
            .map_err(|m| (ResponseError::CoordinatorNotAvailable.code(), m)),
        // A transactional id's coordinator is this node on a single node. A cluster does
        // not serve transactions yet: refused with an error clients give up on at once
        // (COORDINATOR_NOT_AVAILABLE would be retried until the client's timeout).
        KEY_TYPE_TRANSACTION if ctx.txn.is_some() => {
            let (host, port) = ctx.advertised(conn);
            Ok((BrokerId(ctx.config.node_id), host, port))
        }
        KEY_TYPE_TRANSACTION => Err((
            super::txn::NOT_SERVED,
            "transactions are served on a single node only, not on a cluster yet".into(),
        )),
        _ => Err((
            ResponseError::InvalidRequest.code(),
            format!("unknown coordinator key type {key_type}"),
        )),
    }
}

pub async fn find_coordinator(
    ctx: &Arc<Ctx>,
    conn: &Conn,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let r = FindCoordinatorResponse::default();
    if version >= 4 {
        let mut coordinators = Vec::with_capacity(req.coordinator_keys.len());
        for key in req.coordinator_keys {
            let located = locate(ctx, conn, req.key_type, key.as_str()).await;
            let c = Coordinator::default().with_key(key);
            coordinators.push(match located {
                Ok((node, host, port)) => c
                    .with_node_id(node)
                    .with_host(str_bytes(host))
                    .with_port(port),
                Err((code, msg)) => {
                    tracing::debug!(error = %msg, "FindCoordinator: coordinator not available");
                    c.with_node_id(BrokerId(-1))
                        .with_port(-1)
                        .with_error_code(code)
                        .with_error_message(Some(str_bytes(msg)))
                }
            });
        }
        return r.with_coordinators(coordinators);
    }
    match locate(ctx, conn, req.key_type, req.key.as_str()).await {
        Ok((node, host, port)) => r
            .with_node_id(node)
            .with_host(str_bytes(host))
            .with_port(port),
        Err((code, msg)) => {
            tracing::debug!(error = %msg, "FindCoordinator: coordinator not available");
            // v0 has no error message.
            let message = (version >= 1).then(|| str_bytes(msg));
            r.with_error_code(code)
                .with_error_message(message)
                .with_node_id(BrokerId(-1))
                .with_port(-1)
        }
    }
}

pub async fn join(
    ctx: &Arc<Ctx>,
    conn: &Conn,
    client_id: &str,
    req: JoinGroupRequest,
    version: i16,
) -> JoinGroupResponse {
    let member_id = req.member_id.as_str().to_string();
    let protocol_type = req.protocol_type.as_str().to_string();
    let join = JoinRequest {
        group_id: req.group_id.0.as_str().to_string(),
        member_id: member_id.clone(),
        group_instance_id: req
            .group_instance_id
            .as_ref()
            .map(|s| s.as_str().to_string()),
        client_id: client_id.to_string(),
        client_host: format!("/{}", conn.peer.ip()),
        session_timeout_ms: req.session_timeout_ms,
        // v0 has no rebalance timeout (it is the session timeout).
        rebalance_timeout_ms: if version >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        protocol_type: protocol_type.clone(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| (p.name.as_str().to_string(), p.metadata))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let r = JoinGroupResponse::default();
    match ctx.groups.join(join).await {
        Ok(o) => r
            .with_generation_id(o.generation_id)
            .with_protocol_type(Some(str_bytes(o.protocol_type)))
            .with_protocol_name(Some(str_bytes(o.protocol_name)))
            .with_leader(str_bytes(o.leader))
            .with_member_id(str_bytes(o.member_id))
            .with_members(
                o.members
                    .into_iter()
                    .map(|m| {
                        JoinGroupResponseMember::default()
                            .with_member_id(str_bytes(m.member_id))
                            .with_group_instance_id(m.group_instance_id.map(str_bytes))
                            .with_metadata(m.metadata)
                    })
                    .collect(),
            ),
        Err(e) => {
            let id = match &e {
                GroupError::MemberIdRequired(id) => id.clone(),
                _ => member_id,
            };
            r.with_error_code(group_error_code(&e))
                .with_generation_id(-1)
                .with_protocol_type(Some(str_bytes(protocol_type)))
                .with_protocol_name(Some(str_bytes("")))
                .with_member_id(str_bytes(id))
        }
    }
}

pub async fn sync(ctx: &Arc<Ctx>, req: SyncGroupRequest, _version: i16) -> SyncGroupResponse {
    let assignments = req
        .assignments
        .into_iter()
        .map(|a| (a.member_id.as_str().to_string(), a.assignment))
        .collect();
    let r = SyncGroupResponse::default();
    let synced = ctx
        .groups
        .sync(
            req.group_id.0.as_str(),
            req.generation_id,
            req.member_id.as_str(),
            assignments,
        )
        .await;
    // The new generation is stored before the members go on (a restart continues after it).
    if synced.is_ok() && ctx.groups.has_dirty_meta() {
        let c = ctx.clone();
        let _ = blocking(move || c.groups.persist_meta()).await;
    }
    match synced {
        Ok(o) => r
            .with_protocol_type(Some(str_bytes(o.protocol_type)))
            .with_protocol_name(Some(str_bytes(o.protocol_name)))
            .with_assignment(o.assignment),
        Err(e) => r
            .with_error_code(group_error_code(&e))
            .with_assignment(Bytes::new()),
    }
}

pub fn heartbeat(ctx: &Arc<Ctx>, req: HeartbeatRequest, _version: i16) -> HeartbeatResponse {
    let code = match ctx.groups.heartbeat(
        req.group_id.0.as_str(),
        req.generation_id,
        req.member_id.as_str(),
    ) {
        Ok(()) => 0,
        Err(e) => group_error_code(&e),
    };
    HeartbeatResponse::default().with_error_code(code)
}

pub fn leave(ctx: &Arc<Ctx>, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let group = req.group_id.0.as_str().to_string();
    if version < 3 {
        let ids = [req.member_id.as_str().to_string()];
        let code = match ctx.groups.leave(&group, &ids).pop() {
            Some(Err(e)) => group_error_code(&e),
            _ => 0,
        };
        return LeaveGroupResponse::default().with_error_code(code);
    }
    let ids: Vec<String> = req
        .members
        .iter()
        .map(|m| m.member_id.as_str().to_string())
        .collect();
    let results = ctx.groups.leave(&group, &ids);
    let members = req
        .members
        .into_iter()
        .zip(results)
        .map(|(m, r)| {
            MemberResponse::default()
                .with_member_id(m.member_id)
                .with_group_instance_id(m.group_instance_id)
                .with_error_code(r.err().map_or(0, |e| group_error_code(&e)))
        })
        .collect();
    LeaveGroupResponse::default().with_members(members)
}

pub fn list(ctx: &Arc<Ctx>, req: ListGroupsRequest, _version: i16) -> ListGroupsResponse {
    let filter: Vec<String> = req
        .states_filter
        .iter()
        .map(|s| s.as_str().to_string())
        .collect();
    let groups = ctx
        .groups
        .list()
        .into_iter()
        .filter(|(_, _, state)| filter.is_empty() || filter.iter().any(|f| f == state.as_str()))
        .map(|(id, protocol_type, state)| {
            ListedGroup::default()
                .with_group_id(GroupId(str_bytes(id)))
                .with_protocol_type(str_bytes(protocol_type))
                .with_group_state(str_bytes(state.as_str()))
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

pub fn describe(
    ctx: &Arc<Ctx>,
    req: DescribeGroupsRequest,
    _version: i16,
) -> DescribeGroupsResponse {
    let groups = req
        .groups
        .into_iter()
        .map(|g| {
            if let Err(e) = ctx.groups.check_owner(g.0.as_str()) {
                return DescribedGroup::default()
                    .with_group_id(g)
                    .with_error_code(group_error_code(&e))
                    .with_group_state(str_bytes(""))
                    .with_protocol_type(str_bytes(""))
                    .with_protocol_data(str_bytes(""))
                    .with_authorized_operations(i32::MIN);
            }
            let d = ctx.groups.describe(g.0.as_str());
            DescribedGroup::default()
                .with_group_id(g)
                .with_group_state(str_bytes(d.state.as_str()))
                .with_protocol_type(str_bytes(d.protocol_type))
                .with_protocol_data(str_bytes(if d.state == GroupState::Dead {
                    String::new()
                } else {
                    d.protocol
                }))
                .with_authorized_operations(i32::MIN)
                .with_members(
                    d.members
                        .into_iter()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(str_bytes(m.member_id))
                                .with_group_instance_id(m.group_instance_id.map(str_bytes))
                                .with_client_id(str_bytes(m.client_id))
                                .with_client_host(str_bytes(m.client_host))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(m.assignment)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

/// DeleteGroups (API 42): each group's committed offsets and metadata are deleted, unless
/// it has members (`NON_EMPTY_GROUP`) or does not exist (`GROUP_ID_NOT_FOUND`). `allowed`
/// says whether the connection's user may delete a group.
pub async fn delete_groups(
    ctx: &Arc<Ctx>,
    req: DeleteGroupsRequest,
    allowed: impl Fn(&GroupId) -> bool,
) -> DeleteGroupsResponse {
    let too_many = req.groups_names.len() > super::admin::MAX_ITEMS;
    let mut results = Vec::with_capacity(req.groups_names.len());
    for g in req.groups_names {
        let code = if too_many {
            ResponseError::InvalidRequest.code()
        } else if !allowed(&g) {
            ResponseError::GroupAuthorizationFailed.code()
        } else {
            match ctx.groups.deletable(g.0.as_str()) {
                Err(e) => group_error_code(&e),
                Ok(()) => {
                    let (c, id) = (ctx.clone(), g.0.to_string());
                    match blocking(move || c.groups.offsets().delete_group(&id))
                        .await
                        .and_then(|r| r)
                    {
                        Ok(()) => {
                            tracing::info!(group = %g.0, "deleted consumer group");
                            0
                        }
                        Err(e) => super::offsets::store_error_code(&e),
                    }
                }
            }
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(g)
                .with_error_code(code),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}

/// OffsetDelete (API 47, KIP-496): deletes a group's committed offsets of the partitions
/// named, except those of topics the group's members subscribe to
/// (`GROUP_SUBSCRIBED_TO_TOPIC` per partition). A group that does not exist is
/// `GROUP_ID_NOT_FOUND` for the whole request. At most [`super::admin::MAX_ITEMS`]
/// partitions (more: `INVALID_REQUEST`, nothing deleted).
pub async fn offset_delete(ctx: &Arc<Ctx>, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group = req.group_id.0.to_string();
    let total: usize = req.topics.iter().map(|t| t.partitions.len()).sum();
    if total > super::admin::MAX_ITEMS {
        return OffsetDeleteResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code());
    }
    let subscribed = match ctx.groups.subscribed_topics(&group) {
        Ok(s) => s,
        Err(e) => return OffsetDeleteResponse::default().with_error_code(group_error_code(&e)),
    };
    let mut to_delete = Vec::new();
    let mut topics: Vec<(TopicName, Vec<(i32, i16)>)> = Vec::new();
    for t in req.topics {
        let name = t.name.0.to_string();
        let busy = subscribed.contains(&name);
        let parts = t
            .partitions
            .iter()
            .map(|p| {
                if busy {
                    (
                        p.partition_index,
                        ResponseError::GroupSubscribedToTopic.code(),
                    )
                } else {
                    to_delete.push((name.clone(), p.partition_index));
                    (p.partition_index, 0)
                }
            })
            .collect();
        topics.push((t.name, parts));
    }
    let c = ctx.clone();
    let g = group.clone();
    let stored = blocking(move || c.groups.offsets().delete_offsets(&g, &to_delete))
        .await
        .and_then(|r| r);
    if let Err(e) = stored {
        tracing::warn!(group = %group, error = %e, "deleting committed offsets failed");
        let code = super::offsets::store_error_code(&e);
        for (_, parts) in &mut topics {
            for (_, c) in parts.iter_mut().filter(|(_, c)| *c == 0) {
                *c = code;
            }
        }
    }
    OffsetDeleteResponse::default().with_topics(
        topics
            .into_iter()
            .map(|(name, parts)| {
                OffsetDeleteResponseTopic::default()
                    .with_name(name)
                    .with_partitions(
                        parts
                            .into_iter()
                            .map(|(p, code)| {
                                OffsetDeleteResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}
