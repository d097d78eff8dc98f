//! ListOffsets: earliest (-2), latest (-1), or the first offset whose timestamp is at or after
//! the given one, with that record's timestamp. Latest under `isolation_level=read_committed`
//! is the last stable offset (the first offset of the oldest open transaction).

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::{Ctx, blocking, broker_error_code};
use crate::Broker;
use crate::error::BrokerError;
use crate::kafka::producer;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

pub async fn handle(ctx: &Arc<Ctx>, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let broker = ctx.broker.clone();
    let producers = ctx.producers.clone();
    let committed = version >= 2 && req.isolation_level == 1;
    let topics = blocking(move || {
        req.topics
            .into_iter()
            .map(|t| {
                let topic = t.name.0.to_string();
                let partitions = t
                    .partitions
                    .into_iter()
                    .map(|p| {
                        let r = ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index);
                        let found = lookup(&broker, &topic, p.partition_index, p.timestamp).map(
                            |(ts, offset)| {
                                if !committed || p.timestamp != LATEST {
                                    return (ts, offset);
                                }
                                let state = producers.partition(&topic, p.partition_index);
                                let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
                                producer::load(&broker, &topic, p.partition_index, &mut state);
                                (
                                    ts,
                                    state
                                        .first_unstable_offset()
                                        .map_or(offset, |o| o.min(offset)),
                                )
                            },
                        );
                        match found {
                            // The leader epoch exists from v4 on (encoding fails if set before).
                            Ok((ts, offset)) => {
                                let epoch =
                                    broker.leader_epoch(&topic, p.partition_index).unwrap_or(0);
                                r.with_timestamp(ts)
                                    .with_offset(offset)
                                    .with_leader_epoch(if version >= 4 { epoch } else { -1 })
                            }
                            Err(code) => r.with_error_code(code).with_timestamp(-1).with_offset(-1),
                        }
                    })
                    .collect();
                ListOffsetsTopicResponse::default()
                    .with_name(t.name)
                    .with_partitions(partitions)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    ListOffsetsResponse::default().with_topics(topics)
}

/// `(timestamp, offset)` for one partition.
fn lookup(broker: &Broker, topic: &str, partition: i32, timestamp: i64) -> Result<(i64, i64), i16> {
    let code = |e: BrokerError| broker_error_code(&e);
    broker.check_leader(topic, partition).map_err(code)?;
    if timestamp == EARLIEST {
        let (start, _) = broker.partition_offsets(topic, partition).map_err(code)?;
        return Ok((-1, start));
    }
    // The end, and any offset found by time, only once a new leader knows its end (Kafka
    // answers `OFFSET_NOT_AVAILABLE`, retriable, meanwhile).
    let (_, end) = broker.known_offsets(topic, partition).map_err(code)?;
    match timestamp {
        LATEST => Ok((-1, end)),
        ts if ts >= 0 => match broker
            .offset_for_timestamp(topic, partition, ts)
            .map_err(code)?
        {
            None => Ok((-1, -1)),
            Some(o) => {
                let found = broker.read(topic, partition, o, 1, 1).map_err(code)?;
                let rec = found.records.first();
                Ok((rec.map_or(ts, |r| r.timestamp), rec.map_or(o, |r| r.offset)))
            }
        },
        _ => Err(ResponseError::InvalidRequest.code()),
    }
}
