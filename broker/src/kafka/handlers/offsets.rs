//! OffsetCommit and OffsetFetch: committed offsets of consumer groups, checked against the
//! group's generation and membership by the coordinator and stored durably by
//! [`crate::group::OffsetStore`]. On a cluster only the group's coordinator answers them
//! (`NOT_COORDINATOR` elsewhere), and a commit that the in-sync set did not confirm is
//! answered with a retriable coordinator error, as Kafka maps it.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};

use super::{Ctx, blocking, broker_error_code, group_error_code, str_bytes};
use crate::error::BrokerError;
use crate::group::CommittedOffset;
use crate::log::now_ms;

pub async fn commit(
    ctx: &Arc<Ctx>,
    req: OffsetCommitRequest,
    _version: i16,
) -> OffsetCommitResponse {
    let group = req.group_id.0.as_str().to_string();
    let allowed = ctx.groups.validate_commit(
        &group,
        req.generation_id_or_member_epoch,
        req.member_id.as_str(),
    );
    let now = now_ms();
    // (topic, partition, error code) in request order; valid ones are stored together.
    let mut results: Vec<(TopicName, Vec<(i32, i16)>)> = Vec::new();
    let mut to_store = Vec::new();
    for t in req.topics {
        let topic = t.name.0.as_str().to_string();
        // On a cluster the coordinator need not hold a copy of the topic.
        let count = match ctx.config.cluster.as_ref().and_then(|c| c.routes(&topic)) {
            Some(routes) => Ok(routes.len() as i32),
            None => ctx.broker.partition_count(&topic),
        };
        let mut parts = Vec::new();
        for p in t.partitions {
            let code = match (&allowed, &count) {
                (Err(e), _) => group_error_code(e),
                (Ok(()), Err(e)) => broker_error_code(e),
                (Ok(()), Ok(n)) if p.partition_index < 0 || p.partition_index >= *n => {
                    ResponseError::UnknownTopicOrPartition.code()
                }
                (Ok(()), Ok(_)) => {
                    to_store.push((
                        topic.clone(),
                        p.partition_index,
                        CommittedOffset {
                            offset: p.committed_offset,
                            leader_epoch: p.committed_leader_epoch,
                            metadata: p.committed_metadata.map(|m| m.as_str().to_string()),
                            commit_timestamp: now,
                        },
                    ));
                    0
                }
            };
            parts.push((p.partition_index, code));
        }
        results.push((t.name, parts));
    }
    if !to_store.is_empty() {
        let c = ctx.clone();
        let g = group.clone();
        let stored = blocking(move || c.groups.offsets().commit(&g, to_store)).await;
        let failure = match stored {
            Ok(Ok(())) => None,
            Ok(Err(e)) => {
                tracing::warn!(group = %group, error = %e, "storing committed offsets failed");
                Some(store_error_code(&e))
            }
            Err(e) => Some(broker_error_code(&e)),
        };
        if let Some(code) = failure {
            for (_, parts) in &mut results {
                for (_, c) in parts.iter_mut().filter(|(_, c)| *c == 0) {
                    *c = code;
                }
            }
        }
    }
    OffsetCommitResponse::default().with_topics(
        results
            .into_iter()
            .map(|(name, parts)| {
                OffsetCommitResponseTopic::default()
                    .with_name(name)
                    .with_partitions(
                        parts
                            .into_iter()
                            .map(|(p, code)| {
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

/// The code for a commit the store could not make durable: as Kafka's group coordinator
/// maps an append to its offsets topic (the client finds the coordinator again and retries).
pub(super) fn store_error_code(e: &BrokerError) -> i16 {
    match e {
        BrokerError::NotLeader { .. } | BrokerError::ReplicaConflict(_) => {
            ResponseError::NotCoordinator.code()
        }
        BrokerError::NotEnoughReplicas { .. }
        | BrokerError::NotEnoughReplicasAfterAppend { .. }
        | BrokerError::ReplicationTimeout { .. } => ResponseError::CoordinatorNotAvailable.code(),
        e => broker_error_code(e),
    }
}

pub fn fetch(ctx: &Arc<Ctx>, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    let group = req.group_id.0.as_str();
    if let Err(e) = ctx.groups.check_owner(group) {
        let code = group_error_code(&e);
        let topics = req
            .topics
            .unwrap_or_default()
            .into_iter()
            .map(|t| {
                OffsetFetchResponseTopic::default()
                    .with_partitions(
                        t.partition_indexes
                            .into_iter()
                            .map(|p| {
                                OffsetFetchResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(-1)
                                    .with_committed_leader_epoch(-1)
                                    .with_metadata(Some(str_bytes("")))
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
                    .with_name(t.name)
            })
            .collect();
        // v1 has per-partition codes only.
        let top = if version >= 2 { code } else { 0 };
        return OffsetFetchResponse::default()
            .with_error_code(top)
            .with_topics(topics);
    }
    let store = ctx.groups.offsets();
    let partition = |p: i32, c: Option<CommittedOffset>| {
        let r = OffsetFetchResponsePartition::default().with_partition_index(p);
        match c {
            Some(c) => r
                .with_committed_offset(c.offset)
                .with_committed_leader_epoch(c.leader_epoch)
                .with_metadata(Some(str_bytes(c.metadata.unwrap_or_default()))),
            None => r
                .with_committed_offset(-1)
                .with_committed_leader_epoch(-1)
                .with_metadata(Some(str_bytes(""))),
        }
    };
    let topics = match req.topics {
        Some(topics) => topics
            .into_iter()
            .map(|t| {
                let name = t.name.0.as_str().to_string();
                OffsetFetchResponseTopic::default()
                    .with_partitions(
                        t.partition_indexes
                            .into_iter()
                            .map(|p| partition(p, store.get(group, &name, p)))
                            .collect(),
                    )
                    .with_name(t.name)
            })
            .collect(),
        None => {
            let mut out: Vec<OffsetFetchResponseTopic> = Vec::new();
            for (t, p, c) in store.all_for(group) {
                if out.last().is_none_or(|l| l.name.0.as_str() != t) {
                    out.push(
                        OffsetFetchResponseTopic::default().with_name(TopicName(str_bytes(t))),
                    );
                }
                if let Some(l) = out.last_mut() {
                    l.partitions.push(partition(p, Some(c)));
                }
            }
            out
        }
    };
    OffsetFetchResponse::default().with_topics(topics)
}
