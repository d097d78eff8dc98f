//! OffsetForLeaderEpoch (API 23, KIP-101/279/320): for each partition, the end offset of
//! the largest leader epoch at or below the one asked for, from the leader's epoch cache
//! ([`crate::Broker::offset_for_leader_epoch`]). Consumers use it to detect a log truncated
//! under them after a leader change. A node that does not lead the partition answers
//! `NOT_LEADER_OR_FOLLOWER`; a `current_leader_epoch` older or newer than the leader's gets
//! `FENCED_LEADER_EPOCH` / `UNKNOWN_LEADER_EPOCH`.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::{Ctx, broker_error_code};
use crate::cluster::replication::ReplicationError;
use crate::cluster::replication::messages::FetchError;
use crate::error::BrokerError;

fn code(e: &ReplicationError) -> i16 {
    match e {
        ReplicationError::Fetch(_, FetchError::FencedLeaderEpoch { .. }) => {
            ResponseError::FencedLeaderEpoch.code()
        }
        ReplicationError::Fetch(_, FetchError::UnknownLeaderEpoch { .. }) => {
            ResponseError::UnknownLeaderEpoch.code()
        }
        ReplicationError::Log(e) => broker_error_code(e),
        _ => ResponseError::NotLeaderOrFollower.code(),
    }
}

pub fn handle(
    ctx: &Arc<Ctx>,
    req: OffsetForLeaderEpochRequest,
    _version: i16,
) -> OffsetForLeaderEpochResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.topic.0.as_str().to_string();
            // On a cluster a replicated topic this node holds no copy of is led elsewhere.
            let elsewhere = ctx
                .config
                .cluster
                .as_ref()
                .is_some_and(|c| c.routes(&name).is_some());
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let current = (p.current_leader_epoch >= 0).then_some(p.current_leader_epoch);
                    let r = EpochEndOffset::default().with_partition(p.partition);
                    match ctx.broker.offset_for_leader_epoch(
                        &name,
                        p.partition,
                        current,
                        p.leader_epoch,
                    ) {
                        Ok((epoch, end)) => r.with_leader_epoch(epoch).with_end_offset(end),
                        Err(ReplicationError::Log(BrokerError::UnknownTopic(_))) if elsewhere => r
                            .with_error_code(ResponseError::NotLeaderOrFollower.code())
                            .with_leader_epoch(-1)
                            .with_end_offset(-1),
                        Err(e) => r
                            .with_error_code(code(&e))
                            .with_leader_epoch(-1)
                            .with_end_offset(-1),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
