//! Fetch: whole stored batches from each requested offset, returned as the log holds them
//! (never re-encoded; the first batch may start before the requested offset, as in Kafka),
//! within the request's and each partition's byte limits. Long poll: when fewer than
//! `min_bytes` are available the handler waits on the partitions' end-offset watches until
//! enough arrives or `max_wait_ms` passes. Fetch sessions are not kept (session id 0: clients
//! send full requests).
//!
//! `isolation_level=read_committed` (1) reads below the partition's last stable offset only
//! (the first offset of its oldest open transaction, `kafka::producer`) and lists the
//! aborted transactions the returned batches overlap, so the client drops their records;
//! markers are returned as stored (clients skip control batches). An open transaction the
//! coordinator no longer has in flight is closed first (`TxnCoordinator::close_stale`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::select_all;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ProducerId};
use tokio::sync::watch;

use super::{Ctx, blocking, broker_error_code};
use crate::batch;

/// One partition to read: (topic, partition, offset, partition byte limit).
type Wanted = (String, i32, i64, usize);

pub async fn handle(ctx: &Arc<Ctx>, req: FetchRequest, version: i16) -> FetchResponse {
    let committed = version >= 4 && req.isolation_level == 1;
    let max_wait =
        Duration::from_millis((req.max_wait_ms.max(0) as u64).min(ctx.config.max_fetch_wait_ms));
    let deadline = Instant::now() + max_wait;
    let min_bytes = req.min_bytes.max(0) as usize;
    let max_bytes = if req.max_bytes <= 0 {
        i32::MAX as usize
    } else {
        req.max_bytes as usize
    };
    let wanted: Vec<(kafka_protocol::messages::TopicName, Vec<Wanted>)> = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.topic.0.to_string();
            let parts = t
                .partitions
                .into_iter()
                .map(|p| {
                    (
                        name.clone(),
                        p.partition,
                        p.fetch_offset,
                        p.partition_max_bytes.max(0) as usize,
                    )
                })
                .collect();
            (t.topic, parts)
        })
        .collect();
    // Subscribe before the first read so that an append between the read and the wait is
    // not missed.
    let mut watches: Vec<watch::Receiver<i64>> = wanted
        .iter()
        .flat_map(|(_, parts)| parts.iter())
        .filter_map(|(t, p, _, _)| ctx.broker.watch_end(t, *p).ok())
        .collect();
    for w in &mut watches {
        w.borrow_and_update();
    }
    let wanted = Arc::new(wanted);
    loop {
        let c = ctx.clone();
        let w = wanted.clone();
        let read = blocking(move || read_all(&c, &w, max_bytes, committed)).await;
        let (responses, total, any_error) = match read {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "fetch task failed");
                return FetchResponse::default()
                    .with_error_code(ResponseError::UnknownServerError.code());
            }
        };
        let now = Instant::now();
        if total >= min_bytes || any_error || now >= deadline || watches.is_empty() {
            if watches.is_empty() && !any_error && total < min_bytes && now < deadline {
                // Nothing to watch (an empty fetch): wait as Kafka does, without spinning.
                tokio::time::sleep(deadline - now).await;
            }
            return FetchResponse::default()
                .with_session_id(0)
                .with_responses(responses);
        }
        let closed = {
            let changed = select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
            match tokio::time::timeout(deadline - now, changed).await {
                Err(_) => None, // Deadline: one last read, then answer.
                Ok((Ok(()), _, _)) => None,
                Ok((Err(_), i, _)) => Some(i),
            }
        };
        if let Some(i) = closed {
            // The topic was deleted: the next read reports it.
            drop(watches.remove(i));
        }
        for w in &mut watches {
            w.borrow_and_update();
        }
    }
}

/// Reads every wanted partition; returns the topic responses, the bytes of records in them,
/// and whether any partition has an error.
fn read_all(
    ctx: &Ctx,
    wanted: &[(kafka_protocol::messages::TopicName, Vec<Wanted>)],
    max_bytes: usize,
    committed: bool,
) -> (Vec<FetchableTopicResponse>, usize, bool) {
    let mut remaining = max_bytes;
    let mut total = 0usize;
    let mut any_error = false;
    let topics = wanted
        .iter()
        .map(|(name, parts)| {
            let partitions = parts
                .iter()
                .map(|(topic, partition, offset, pmax)| {
                    let base = PartitionData::default()
                        .with_partition_index(*partition)
                        .with_preferred_read_replica(BrokerId(-1))
                        .with_aborted_transactions(Some(Vec::new()));
                    let offsets = ctx
                        .broker
                        .check_leader(topic, *partition)
                        .and_then(|()| ctx.broker.partition_offsets(topic, *partition));
                    let (start, end) = match offsets {
                        Ok(o) => o,
                        Err(e) => {
                            any_error = true;
                            return base
                                .with_error_code(broker_error_code(&e))
                                .with_high_watermark(-1)
                                .with_last_stable_offset(-1)
                                .with_log_start_offset(-1)
                                .with_records(Some(Bytes::new()));
                        }
                    };
                    let lso = if committed {
                        // Closes a transaction left open without its marker first
                        // (`txn::committed`, shared with every committed reader).
                        ctx.broker.last_stable_offset(topic, *partition, end)
                    } else {
                        end
                    };
                    let base = base
                        .with_high_watermark(end)
                        .with_last_stable_offset(lso)
                        .with_log_start_offset(start);
                    // Out of range only past the log's end: between the high watermark
                    // and the log end (a new leader's high watermark can lag the old one's
                    // for a fetch round) there is nothing to read yet.
                    let past_log_end = *offset > end
                        && *offset
                            > ctx
                                .broker
                                .local_log_end(topic, *partition)
                                .unwrap_or(end)
                                .max(end);
                    if *offset < start || past_log_end {
                        any_error = true;
                        return base
                            .with_error_code(ResponseError::OffsetOutOfRange.code())
                            .with_records(Some(Bytes::new()));
                    }
                    if *offset >= lso || remaining == 0 || *pmax == 0 {
                        return base.with_records(Some(Bytes::new()));
                    }
                    let limit = (*pmax).min(remaining);
                    let read = ctx
                        .broker
                        .read_batches(topic, *partition, *offset, limit)
                        .and_then(|(bytes, _)| {
                            if !committed {
                                return Ok((bytes, Vec::new()));
                            }
                            let bytes = if lso < end {
                                batch::below(&bytes, lso)?
                            } else {
                                bytes
                            };
                            let last = batch::split(&bytes)?.last().map(|(h, _)| h.last_offset());
                            let aborted = match last {
                                None => Vec::new(),
                                Some(last) => {
                                    let state = ctx.producers.partition(topic, *partition);
                                    let state = state.lock().unwrap_or_else(|p| p.into_inner());
                                    state
                                        .aborted_between(*offset, last)
                                        .into_iter()
                                        .map(|a| {
                                            AbortedTransaction::default()
                                                .with_producer_id(ProducerId(a.producer_id))
                                                .with_first_offset(a.first_offset)
                                        })
                                        .collect()
                                }
                            };
                            Ok((bytes, aborted))
                        });
                    match read {
                        Ok((bytes, aborted)) => {
                            let base = if committed {
                                base.with_aborted_transactions(Some(aborted))
                            } else {
                                base
                            };
                            remaining = remaining.saturating_sub(bytes.len());
                            total += bytes.len();
                            base.with_records(Some(bytes))
                        }
                        Err(e) => {
                            any_error = true;
                            base.with_error_code(broker_error_code(&e))
                                .with_records(Some(Bytes::new()))
                        }
                    }
                })
                .collect();
            FetchableTopicResponse::default()
                .with_topic(name.clone())
                .with_partitions(partitions)
        })
        .collect();
    (topics, total, any_error)
}
