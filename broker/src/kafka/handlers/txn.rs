//! The transaction APIs (KIP-98, KIP-664): AddPartitionsToTxn (v0–v3, the client versions),
//! AddOffsetsToTxn, TxnOffsetCommit, EndTxn, DescribeTransactions, ListTransactions. Each
//! decodes its request into plain values for [`crate::txn::TxnCoordinator`] and maps
//! [`TxnError`] to Kafka's codes; the coordinator's calls block, so they run off the async
//! threads. On a cluster (no coordinator) every request is answered
//! `TRANSACTIONAL_ID_AUTHORIZATION_FAILED`, which clients treat as fatal rather than retry.

use std::collections::HashMap;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedState;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, DescribeTransactionsRequest, DescribeTransactionsResponse,
    EndTxnRequest, EndTxnResponse, ListTransactionsRequest, ListTransactionsResponse, ProducerId,
    TopicName, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};

use super::{Ctx, blocking, group_error_code, str_bytes};
use crate::txn::{PendingOffset, TxnCoordinator, TxnError, TxnStatus};

/// The code answered on a cluster, where transactions are not served yet.
pub const NOT_SERVED: i16 = ResponseError::TransactionalIdAuthorizationFailed.code();

/// Kafka's code for `e` in an API whose versions below `fenced_from` predate
/// `PRODUCER_FENCED` (they get `INVALID_PRODUCER_EPOCH`, as Kafka answers them).
pub fn txn_error_code(e: &TxnError, version: i16, fenced_from: i16) -> i16 {
    match e {
        TxnError::ProducerFenced if version >= fenced_from => ResponseError::ProducerFenced.code(),
        TxnError::ProducerFenced | TxnError::InvalidProducerEpoch => {
            ResponseError::InvalidProducerEpoch.code()
        }
        TxnError::InvalidProducerIdMapping => ResponseError::InvalidProducerIdMapping.code(),
        TxnError::InvalidTxnState(_) => ResponseError::InvalidTxnState.code(),
        TxnError::InvalidTimeout => ResponseError::InvalidTransactionTimeout.code(),
        TxnError::TooLarge(_) | TxnError::TooManyIds => ResponseError::PolicyViolation.code(),
        TxnError::Loading => ResponseError::CoordinatorLoadInProgress.code(),
        // Retriable: the client looks for the coordinator again.
        TxnError::Broker(_) => ResponseError::CoordinatorNotAvailable.code(),
    }
}

fn log_refusal(api: &str, id: &str, e: &TxnError) {
    match e {
        TxnError::Broker(_) => {
            tracing::warn!(api, transactional_id = %id, error = %e, "transaction request failed")
        }
        _ => {
            tracing::debug!(api, transactional_id = %id, error = %e, "transaction request refused")
        }
    }
}

/// Runs `f` on the coordinator off the async threads; `None` on a cluster.
async fn with_txn<T: Send + 'static>(
    ctx: &Arc<Ctx>,
    f: impl FnOnce(&TxnCoordinator) -> T + Send + 'static,
) -> Option<Result<T, TxnError>> {
    let txn = ctx.txn.clone()?;
    Some(blocking(move || f(&txn)).await.map_err(TxnError::Broker))
}

/// Runs one coordinator transition for `api` on transactional id `id` and answers its
/// error code: 0, [`NOT_SERVED`] without a coordinator, or the refusal's code for `version`
/// (`PRODUCER_FENCED` from version `fenced_from`), the refusal logged.
async fn transition_code(
    ctx: &Arc<Ctx>,
    api: &str,
    id: &str,
    version: i16,
    fenced_from: i16,
    f: impl FnOnce(&TxnCoordinator) -> Result<(), TxnError> + Send + 'static,
) -> i16 {
    match with_txn(ctx, f).await {
        None => NOT_SERVED,
        Some(Ok(Ok(()))) => 0,
        Some(Ok(Err(e)) | Err(e)) => {
            log_refusal(api, id, &e);
            txn_error_code(&e, version, fenced_from)
        }
    }
}

/// The error code of each partition of an AddPartitionsToTxn answer.
type CodeOf = Box<dyn Fn(&TopicName, i32) -> i16 + Send>;

/// AddPartitionsToTxn v0–v3. `writable` says which topics the user may write (`--auth`).
pub async fn add_partitions(
    ctx: &Arc<Ctx>,
    req: AddPartitionsToTxnRequest,
    version: i16,
    writable: impl Fn(&TopicName) -> bool,
) -> AddPartitionsToTxnResponse {
    let id = req.v3_and_below_transactional_id.0.to_string();
    let pid = req.v3_and_below_producer_id.0;
    let epoch = req.v3_and_below_producer_epoch;
    // Per partition: the code when the whole request is refused for one of them.
    let mut refused: Vec<(TopicName, i32, i16)> = Vec::new();
    let mut wanted: Vec<(String, i32)> = Vec::new();
    for t in &req.v3_and_below_topics {
        let name = t.name.0.to_string();
        let code = if !writable(&t.name) {
            Some(ResponseError::TopicAuthorizationFailed.code())
        } else {
            match ctx.broker.topic_info(&name) {
                Err(_) => Some(ResponseError::UnknownTopicOrPartition.code()),
                Ok(info) if info.internal.is_some() => {
                    Some(ResponseError::TopicAuthorizationFailed.code())
                }
                Ok(info) => {
                    for p in &t.partitions {
                        if *p < 0 || *p >= info.partitions {
                            refused.push((
                                t.name.clone(),
                                *p,
                                ResponseError::UnknownTopicOrPartition.code(),
                            ));
                        } else {
                            wanted.push((name.clone(), *p));
                        }
                    }
                    None
                }
            }
        };
        if let Some(code) = code {
            refused.extend(t.partitions.iter().map(|p| (t.name.clone(), *p, code)));
        }
    }
    // One code per partition, answered per topic in request order (linear in the request:
    // its size is the client's).
    let code_of: CodeOf = if !refused.is_empty() {
        // Kafka adds none of them then: the others are OPERATION_NOT_ATTEMPTED.
        let refused: HashMap<(TopicName, i32), i16> =
            refused.into_iter().map(|(t, p, c)| ((t, p), c)).collect();
        Box::new(move |t, p| {
            refused
                .get(&(t.clone(), p))
                .copied()
                .unwrap_or(ResponseError::OperationNotAttempted.code())
        })
    } else {
        let id2 = id.clone();
        let code = transition_code(ctx, "AddPartitionsToTxn", &id, version, 2, move |c| {
            c.add_partitions(&id2, pid, epoch, &wanted)
        })
        .await;
        Box::new(move |_, _| code)
    };
    let topics = req
        .v3_and_below_topics
        .iter()
        .map(|t| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(
                    t.partitions
                        .iter()
                        .map(|p| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(*p)
                                .with_partition_error_code(code_of(&t.name, *p))
                        })
                        .collect(),
                )
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics)
}

pub async fn add_offsets(
    ctx: &Arc<Ctx>,
    req: AddOffsetsToTxnRequest,
    version: i16,
) -> AddOffsetsToTxnResponse {
    let id = req.transactional_id.0.to_string();
    let group = req.group_id.0.to_string();
    let (pid, epoch) = (req.producer_id.0, req.producer_epoch);
    let id2 = id.clone();
    let code = transition_code(ctx, "AddOffsetsToTxn", &id, version, 2, move |c| {
        c.add_offsets(&id2, pid, epoch, &group)
    })
    .await;
    AddOffsetsToTxnResponse::default().with_error_code(code)
}

pub async fn txn_offset_commit(
    ctx: &Arc<Ctx>,
    req: TxnOffsetCommitRequest,
    version: i16,
) -> TxnOffsetCommitResponse {
    let id = req.transactional_id.0.to_string();
    let group = req.group_id.0.to_string();
    let (pid, epoch) = (req.producer_id.0, req.producer_epoch);
    // A member of a live group commits only for its generation (v3+ carries it).
    let generation_check = if version >= 3 && req.generation_id >= 0 {
        ctx.groups
            .validate_commit(&group, req.generation_id, req.member_id.as_str())
            .err()
            .map(|e| group_error_code(&e))
    } else {
        ctx.groups
            .check_owner(&group)
            .err()
            .map(|e| group_error_code(&e))
    };
    let offsets: Vec<(String, i32, PendingOffset)> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.name.0.to_string(),
                    p.partition_index,
                    PendingOffset {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                    },
                )
            })
        })
        .collect();
    let code = match generation_check {
        Some(code) => code,
        None => {
            let id2 = id.clone();
            // The group coordinator fences with INVALID_PRODUCER_EPOCH in Kafka.
            transition_code(ctx, "TxnOffsetCommit", &id, version, i16::MAX, move |c| {
                c.commit_offsets(&id2, pid, epoch, &group, offsets)
            })
            .await
        }
    };
    offset_commit_answer(req, code)
}

/// The TxnOffsetCommit answer giving every partition of `req` the same error `code`.
fn offset_commit_answer(req: TxnOffsetCommitRequest, code: i16) -> TxnOffsetCommitResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

pub async fn end_txn(ctx: &Arc<Ctx>, req: EndTxnRequest, version: i16) -> EndTxnResponse {
    let id = req.transactional_id.0.to_string();
    let (pid, epoch, commit) = (req.producer_id.0, req.producer_epoch, req.committed);
    let id2 = id.clone();
    let code = transition_code(ctx, "EndTxn", &id, version, 2, move |c| {
        c.end(&id2, pid, epoch, commit)
    })
    .await;
    EndTxnResponse::default()
        .with_error_code(code)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}

/// DescribeTransactions (KIP-664). `visible` says which ids the user may describe.
pub async fn describe(
    ctx: &Arc<Ctx>,
    req: DescribeTransactionsRequest,
    visible: impl Fn(&str) -> bool,
) -> DescribeTransactionsResponse {
    let states = req
        .transactional_ids
        .into_iter()
        .map(|id| {
            let s = TransactionState::default().with_transactional_id(id.clone());
            if ctx.txn.is_none() {
                return s.with_error_code(NOT_SERVED);
            }
            if !visible(id.0.as_str()) {
                return s.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
            }
            match ctx.txn.as_ref().and_then(|t| t.get(id.0.as_str())) {
                None => s.with_error_code(ResponseError::TransactionalIdNotFound.code()),
                Some(m) => {
                    // Partitions come sorted by topic: one entry per run.
                    let mut topics: Vec<TopicData> = Vec::new();
                    for (t, p) in &m.partitions {
                        match topics
                            .last_mut()
                            .filter(|d| d.topic.0.as_str() == t.as_str())
                        {
                            Some(d) => d.partitions.push(*p),
                            None => topics.push(
                                TopicData::default()
                                    .with_topic(TopicName(str_bytes(t.clone())))
                                    .with_partitions(vec![*p]),
                            ),
                        }
                    }
                    s.with_transaction_state(str_bytes(m.status.as_str()))
                        .with_transaction_timeout_ms(m.timeout_ms)
                        .with_transaction_start_time_ms(m.start_ms)
                        .with_producer_id(ProducerId(m.producer_id))
                        .with_producer_epoch(m.epoch)
                        .with_topics(topics)
                }
            }
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

/// ListTransactions (KIP-664), with its state and producer-id filters.
pub async fn list(
    ctx: &Arc<Ctx>,
    req: ListTransactionsRequest,
    visible: impl Fn(&str) -> bool,
) -> ListTransactionsResponse {
    let Some(txn) = &ctx.txn else {
        return ListTransactionsResponse::default().with_error_code(NOT_SERVED);
    };
    const STATES: [TxnStatus; 6] = [
        TxnStatus::Empty,
        TxnStatus::Ongoing,
        TxnStatus::PrepareCommit,
        TxnStatus::PrepareAbort,
        TxnStatus::CompleteCommit,
        TxnStatus::CompleteAbort,
    ];
    let unknown: Vec<_> = req
        .state_filters
        .iter()
        .filter(|f| !STATES.iter().any(|s| s.as_str() == f.as_str()))
        .cloned()
        .collect();
    let now = crate::log::now_ms();
    let states = txn
        .all()
        .into_iter()
        .filter(|(id, m)| {
            visible(id)
                && (req.state_filters.is_empty()
                    || req
                        .state_filters
                        .iter()
                        .any(|f| f.as_str() == m.status.as_str()))
                && (req.producer_id_filters.is_empty()
                    || req.producer_id_filters.iter().any(|p| p.0 == m.producer_id))
                && (req.duration_filter < 0
                    || (m.status == TxnStatus::Ongoing
                        && now.saturating_sub(m.start_ms) >= req.duration_filter))
        })
        .map(|(id, m)| {
            ListedState::default()
                .with_transactional_id(kafka_protocol::messages::TransactionalId(str_bytes(id)))
                .with_producer_id(ProducerId(m.producer_id))
                .with_transaction_state(str_bytes(m.status.as_str()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(states)
}

/// AddPartitionsToTxn refused as a whole (`--auth`: the user may not write transactionally).
pub fn refused_add_partitions(req: &AddPartitionsToTxnRequest) -> AddPartitionsToTxnResponse {
    let code = ResponseError::TransactionalIdAuthorizationFailed.code();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(
        req.v3_and_below_topics
            .iter()
            .map(|t| {
                AddPartitionsToTxnTopicResult::default()
                    .with_name(t.name.clone())
                    .with_results_by_partition(
                        t.partitions
                            .iter()
                            .map(|p| {
                                AddPartitionsToTxnPartitionResult::default()
                                    .with_partition_index(*p)
                                    .with_partition_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

/// TxnOffsetCommit refused as a whole (`--auth`).
pub fn refused_offset_commit(req: TxnOffsetCommitRequest) -> TxnOffsetCommitResponse {
    offset_commit_answer(req, ResponseError::GroupAuthorizationFailed.code())
}
