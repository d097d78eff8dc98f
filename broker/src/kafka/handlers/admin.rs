//! The admin APIs of topics and the cluster that Kafka tools call: DeleteRecords (the log
//! start offset moves up), CreatePartitions (grow only) and DescribeCluster (KIP-700).
//! IncrementalAlterConfigs is in `configs.rs`, the group admin APIs in `groups.rs`.
//!
//! Each request is answered per item (topic or partition) and an item's error never touches
//! another's. Every request names at most [`MAX_ITEMS`] partitions or topics; a larger one is
//! answered `INVALID_REQUEST` for every item and changes nothing. On a cluster, the topic APIs
//! are not served yet for replicated topics (the metadata has no command for them):
//! they answer `POLICY_VIOLATION` with a message saying so.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, DeleteRecordsRequest, DeleteRecordsResponse,
    DescribeClusterRequest, DescribeClusterResponse, TopicName,
};

use super::{Conn, Ctx, blocking, broker_error_code, str_bytes};

/// The most partitions (DeleteRecords) or topics (CreatePartitions, IncrementalAlterConfigs,
/// DeleteGroups) one request may name.
pub const MAX_ITEMS: usize = 10_000;

const TOPIC_DENIED: i16 = ResponseError::TopicAuthorizationFailed.code();

/// On a cluster, the refusal of an admin change to a replicated topic (this node may hold
/// no copy of it, so the broker could not tell): `POLICY_VIOLATION` saying why.
pub fn refused_on_cluster(ctx: &Ctx, topic: &str, what: &str) -> Option<(i16, String)> {
    let cluster = ctx.config.cluster.as_ref()?;
    cluster.routes(topic)?;
    Some((
        ResponseError::PolicyViolation.code(),
        format!("{what} of the replicated topic '{topic}' is not served on a cluster yet"),
    ))
}

/// DeleteRecords (API 21): for each partition, its log start offset moves to the offset
/// asked (`-1`: the high watermark); the answer is the new low watermark. `allowed` says
/// whether the connection's user may delete records of a topic.
pub async fn delete_records(
    ctx: &Arc<Ctx>,
    req: DeleteRecordsRequest,
    allowed: impl Fn(&TopicName) -> bool,
) -> DeleteRecordsResponse {
    let total: usize = req.topics.iter().map(|t| t.partitions.len()).sum();
    let too_many = total > MAX_ITEMS;
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let denied = !allowed(&t.name);
        let name = t.name.0.to_string();
        let asks: Vec<(i32, i64)> = t
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.offset))
            .collect();
        let on_cluster = refused_on_cluster(ctx, &name, "deleting records");
        let results: Vec<DeleteRecordsPartitionResult> = if too_many
            || denied
            || on_cluster.is_some()
        {
            let code = if denied {
                TOPIC_DENIED
            } else if too_many {
                ResponseError::InvalidRequest.code()
            } else {
                ResponseError::PolicyViolation.code()
            };
            asks.iter()
                .map(|(p, _)| {
                    DeleteRecordsPartitionResult::default()
                        .with_partition_index(*p)
                        .with_low_watermark(-1)
                        .with_error_code(code)
                })
                .collect()
        } else {
            let b = ctx.broker.clone();
            blocking(move || {
                asks.into_iter()
                    .map(|(p, offset)| {
                        let r = DeleteRecordsPartitionResult::default().with_partition_index(p);
                        match b.delete_records(&name, p, offset) {
                            Ok(start) => r.with_low_watermark(start),
                            Err(e) => {
                                tracing::debug!(topic = %name, partition = p, offset, error = %e, "DeleteRecords refused");
                                r.with_low_watermark(-1)
                                    .with_error_code(broker_error_code(&e))
                            }
                        }
                    })
                    .collect()
            })
            .await
            .unwrap_or_default()
        };
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(results),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

/// CreatePartitions (API 37): grows each topic to `count` partitions. A count below the
/// current one is `INVALID_PARTITIONS`, the same count too (as Kafka answers it); manual
/// assignments are refused (`INVALID_REQUEST`: one node places every partition).
pub async fn create_partitions(
    ctx: &Arc<Ctx>,
    req: CreatePartitionsRequest,
    allowed: impl Fn(&TopicName) -> bool,
) -> CreatePartitionsResponse {
    let too_many = req.topics.len() > MAX_ITEMS;
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        let refused = |code: i16, msg: String| {
            r.clone()
                .with_error_code(code)
                .with_error_message(Some(str_bytes(msg)))
        };
        if too_many {
            results.push(refused(
                ResponseError::InvalidRequest.code(),
                format!("a request may name at most {MAX_ITEMS} topics"),
            ));
            continue;
        }
        if !allowed(&t.name) {
            results.push(refused(TOPIC_DENIED, "topic authorization failed".into()));
            continue;
        }
        if t.assignments.as_ref().is_some_and(|a| !a.is_empty()) {
            results.push(refused(
                ResponseError::InvalidRequest.code(),
                "manual replica assignments are not supported".into(),
            ));
            continue;
        }
        let name = t.name.0.to_string();
        if let Some((code, msg)) = refused_on_cluster(ctx, &name, "adding partitions") {
            results.push(refused(code, msg));
            continue;
        }
        let (b, count, validate_only) = (ctx.broker.clone(), t.count, req.validate_only);
        let done = blocking(move || b.create_partitions(&name, count, validate_only))
            .await
            .and_then(|r| r);
        results.push(match done {
            Ok(()) => r,
            Err(e) => refused(broker_error_code(&e), e.to_string()),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}

/// DescribeCluster (API 60, KIP-700): the cluster id, the controller and the brokers, as
/// Metadata reports them. Only the brokers endpoint type (1) is served.
pub fn describe_cluster(
    ctx: &Arc<Ctx>,
    conn: &Conn,
    req: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let r = DescribeClusterResponse::default()
        .with_endpoint_type(req.endpoint_type)
        .with_cluster_id(str_bytes(ctx.config.cluster_id.clone()))
        .with_cluster_authorized_operations(i32::MIN);
    if req.endpoint_type != 1 {
        return r
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(str_bytes(format!(
                "endpoint type {} is not served (only brokers, 1)",
                req.endpoint_type
            ))))
            .with_controller_id(kafka_protocol::messages::BrokerId(-1));
    }
    let (brokers, controller) = super::metadata::brokers_and_controller(ctx, conn);
    r.with_controller_id(controller).with_brokers(
        brokers
            .into_iter()
            .map(|(id, host, port)| {
                DescribeClusterBroker::default()
                    .with_broker_id(id)
                    .with_host(str_bytes(host))
                    .with_port(port)
            })
            .collect(),
    )
}
