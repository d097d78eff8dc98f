//! Produce: validates each partition's record batches as a Kafka broker does (magic, sizes,
//! CRC, the records inside, keys on compacted topics), applies idempotent-producer sequence
//! checks, and appends the batches byte for byte. Transactional batches are appended only
//! into a partition their producer's ongoing transaction holds (KIP-890 part 1, checked by
//! [`crate::txn`]); control batches (markers) are refused. A partition's batches are all appended or
//! none is. `acks=0` gets no response; `acks=1` and `acks=all` are answered once the append is
//! durable under the topic's fsync policy (one node: the leader is every replica).

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use super::metadata::auto_create;
use super::{Ctx, blocking, broker_error_code};
use crate::TopicSpec;
use crate::batch::{self, BatchHeader, MAGIC};
use crate::cluster::routing::ClusterRouting;
use crate::error::BrokerError;
use crate::kafka::producer::{self, SequenceCheck, last_sequence};
use crate::topic::PendingReplication;

pub async fn handle(ctx: &Arc<Ctx>, req: ProduceRequest, _version: i16) -> Option<ProduceResponse> {
    let acks = req.acks;
    if let Some(cluster) = &ctx.config.cluster
        && ctx.config.auto_create_topics
    {
        for t in &req.topic_data {
            let name = t.name.0.to_string();
            if ctx.broker.topic_info(&name).is_err() && cluster.routes(&name).is_none() {
                auto_create_in_cluster(ctx, cluster, &name).await;
            }
        }
    }
    let c = ctx.clone();
    let appended = blocking(move || {
        req.topic_data
            .into_iter()
            .map(|t| {
                let topic = t.name.0.to_string();
                let partitions = t
                    .partition_data
                    .into_iter()
                    .map(|p| {
                        let r = if !matches!(acks, -1..=1) {
                            Err(ResponseError::InvalidRequiredAcks.code())
                        } else {
                            produce_partition(&c, &topic, p.index, p.records, acks == -1)
                        };
                        (p.index, r)
                    })
                    .collect::<Vec<_>>();
                (t.name, topic, partitions)
            })
            .collect::<Vec<_>>()
    })
    .await;
    if acks == 0 {
        return None;
    }
    let appended = match appended {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "produce task failed");
            Vec::new()
        }
    };
    // acks=all on replicated partitions: answered once the in-sync set has the batches.
    let mut responses = Vec::with_capacity(appended.len());
    for (name, topic, partitions) in appended {
        let mut out = Vec::with_capacity(partitions.len());
        for (index, r) in partitions {
            let r = match r {
                Ok((base, pending)) => wait_all(pending).await.map(|()| base),
                Err(code) => Err(code),
            };
            out.push(partition_response(ctx, &topic, index, r));
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(name)
                .with_partition_responses(out),
        );
    }
    Some(ProduceResponse::default().with_responses(responses))
}

/// How long an acks=all produce waits for the in-sync set (Kafka's request timeout).
const REPLICATION_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

async fn wait_all(pending: Vec<PendingReplication>) -> Result<(), i16> {
    for p in pending {
        p.wait(REPLICATION_WAIT)
            .await
            .map_err(|e| broker_error_code(&e))?;
    }
    Ok(())
}

/// Creates an unknown topic through the controller (auto.create.topics.enable); a failure
/// is answered later as the unknown topic it still is.
pub async fn auto_create_in_cluster(ctx: &Ctx, cluster: &ClusterRouting, name: &str) {
    let spec = TopicSpec::new(name, ctx.config.default_partitions);
    if ctx.broker.check_topic_spec(&spec).is_err() {
        return;
    }
    match cluster.create_topic(&spec).await {
        Ok(()) => tracing::info!(topic = %name, "auto-created topic for a Kafka client"),
        Err(BrokerError::TopicExists(_)) => {}
        Err(e) => tracing::debug!(topic = %name, error = %e, "auto-create failed"),
    }
}

fn partition_response(
    ctx: &Ctx,
    topic: &str,
    partition: i32,
    result: Result<i64, i16>,
) -> PartitionProduceResponse {
    let r = PartitionProduceResponse::default()
        .with_index(partition)
        .with_log_append_time_ms(-1);
    match result {
        Ok(base) => {
            let start = ctx
                .broker
                .partition_offsets(topic, partition)
                .map_or(-1, |(s, _)| s);
            r.with_base_offset(base).with_log_start_offset(start)
        }
        Err(code) => r
            .with_error_code(code)
            .with_base_offset(-1)
            .with_log_start_offset(-1),
    }
}

/// Appends one partition's records; returns the base offset of the first batch and, for
/// `acks_all` on a replicated partition, what is left to wait for.
fn produce_partition(
    ctx: &Ctx,
    topic: &str,
    partition: i32,
    records: Option<Bytes>,
    acks_all: bool,
) -> Result<(i64, Vec<PendingReplication>), i16> {
    let code = |e: BrokerError| broker_error_code(&e);
    let mut info = ctx.broker.topic_info(topic);
    if matches!(info, Err(BrokerError::UnknownTopic(_)))
        && ctx.config.auto_create_topics
        && ctx.config.cluster.is_none()
    {
        info = auto_create(&ctx.broker, topic, ctx.config.default_partitions)
            .and_then(|()| ctx.broker.topic_info(topic));
    }
    let info = info.map_err(code)?;
    if partition < 0 || partition >= info.partitions {
        return Err(ResponseError::UnknownTopicOrPartition.code());
    }
    let records = records.unwrap_or_default();
    if records.is_empty() {
        return Err(ResponseError::InvalidRecord.code());
    }
    let max_batch = ctx.broker.config().log.max_batch_bytes;
    let mut batches = Vec::new();
    let mut txn_batches: Vec<(i64, i16)> = Vec::new();
    let mut pos = 0;
    while pos < records.len() {
        let rest = &records[pos..];
        if rest.len() > 16 && rest[16] as i8 != MAGIC {
            // Produce v3+ must carry RecordBatch v2 (Kafka answers the same).
            return Err(ResponseError::InvalidRecord.code());
        }
        let header = BatchHeader::parse(rest).map_err(code)?;
        let end = pos
            .checked_add(header.total_len())
            .filter(|e| *e <= records.len())
            .ok_or(ResponseError::CorruptMessage.code())?;
        if header.total_len() > max_batch {
            return Err(ResponseError::MessageTooLarge.code());
        }
        let bytes = records.slice(pos..end);
        let checked = batch::validate_records(&bytes).map_err(code)?;
        if info.compacted && checked.null_key() {
            return Err(ResponseError::InvalidRecord.code());
        }
        if header.is_control() {
            // Markers are the transaction coordinator's alone.
            return Err(ResponseError::InvalidRecord.code());
        }
        if header.is_transactional() {
            if header.producer_id < 0 || header.base_sequence < 0 {
                return Err(ResponseError::InvalidRecord.code());
            }
            txn_batches.push((header.producer_id, header.producer_epoch));
        }
        batches.push(checked);
        pos = end;
    }
    ctx.broker.check_leader(topic, partition).map_err(code)?;
    if acks_all {
        // Before the sequence check, as Kafka: see `PartitionReplica::check_acks_all`.
        ctx.broker.check_acks_all(topic, partition).map_err(code)?;
    }
    // Transactional batches only into a partition of their producer's ongoing
    // transaction, checked under the coordinator's lock, held across the append (KIP-890
    // part 1; lock order: coordinator, then the partition's producer state).
    let _verified = if txn_batches.is_empty() {
        None
    } else {
        txn_batches.dedup();
        let Some(txn) = &ctx.txn else {
            return Err(super::txn::NOT_SERVED);
        };
        match txn.verify(&txn_batches, topic, partition) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::debug!(topic, partition, error = %e, "transactional batch refused");
                return Err(super::txn::txn_error_code(&e, 0, i16::MAX));
            }
        }
    };
    let state = ctx.producers.partition(topic, partition);
    let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
    let epoch = ctx.broker.leader_epoch(topic, partition);
    let mut first_base = None;
    let mut pending = Vec::new();
    for b in batches {
        let h = *b.header();
        let idempotent = h.producer_id >= 0 && h.base_sequence >= 0;
        let last_seq = last_sequence(h.base_sequence, h.last_offset_delta);
        if idempotent && !state.is_loaded(epoch) {
            producer::load(&ctx.broker, topic, partition, &mut state);
        }
        if idempotent {
            match state.check(h.producer_id, h.producer_epoch, h.base_sequence, last_seq) {
                SequenceCheck::Append => {}
                SequenceCheck::Duplicate { base_offset } => {
                    tracing::debug!(
                        topic,
                        partition,
                        producer = h.producer_id,
                        seq = h.base_sequence,
                        "duplicate batch not appended"
                    );
                    // A retry of a batch this leader appended: answered (acks=all) only once
                    // the in-sync set has it, like the first attempt.
                    if acks_all {
                        let last = base_offset + i64::from(h.last_offset_delta);
                        pending.extend(ctx.broker.pending_replication(
                            topic,
                            partition,
                            base_offset,
                            last,
                        ));
                    }
                    first_base.get_or_insert(base_offset);
                    continue;
                }
                SequenceCheck::StaleEpoch => {
                    return Err(ResponseError::InvalidProducerEpoch.code());
                }
                SequenceCheck::OutOfOrder { expected, got } => {
                    tracing::debug!(
                        topic,
                        partition,
                        producer = h.producer_id,
                        expected,
                        got,
                        "out-of-order sequence"
                    );
                    return Err(ResponseError::OutOfOrderSequenceNumber.code());
                }
            }
        }
        let appended = ctx
            .broker
            .append_client(topic, partition, &b, acks_all)
            .map_err(code)?;
        let base = appended.first;
        pending.extend(appended.pending);
        if idempotent {
            state.record(
                h.producer_id,
                h.producer_epoch,
                h.base_sequence,
                last_seq,
                base,
            );
        }
        if h.is_transactional() {
            state.begin_txn(h.producer_id, base);
        }
        first_base.get_or_insert(base);
    }
    drop(state);
    first_base
        .map(|b| (b, pending))
        .ok_or(ResponseError::InvalidRecord.code())
}
