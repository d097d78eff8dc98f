//! CreateTopics and DeleteTopics. Kafka topic configs map onto Weir's topic spec
//! (`cleanup.policy`, `retention.ms`, `retention.bytes`, `segment.bytes`, `segment.ms`,
//! `delete.retention.ms`); other configs are accepted and ignored; replication factors above
//! 1 are refused (one node).

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
};

use super::{Ctx, blocking, broker_error_code, str_bytes};
use crate::TopicSpec;
use crate::topic;

/// A spec from a CreateTopics entry, or (error code, message).
fn spec_for(t: &CreatableTopic, default_partitions: i32) -> Result<TopicSpec, (i16, String)> {
    let name = t.name.0.to_string();
    let partitions = if t.num_partitions == -1 {
        default_partitions
    } else {
        t.num_partitions
    };
    if !(1..=10_000).contains(&partitions) {
        return Err((
            ResponseError::InvalidPartitions.code(),
            format!("partitions must be between 1 and 10000, got {partitions}"),
        ));
    }
    if !(t.replication_factor == -1 || t.replication_factor == 1) {
        return Err((
            ResponseError::InvalidReplicationFactor.code(),
            format!(
                "replication factor {} is larger than the number of brokers (1)",
                t.replication_factor
            ),
        ));
    }
    if !t.assignments.is_empty() {
        return Err((
            ResponseError::InvalidRequest.code(),
            "manual replica assignments are not supported".into(),
        ));
    }
    let mut spec = TopicSpec::new(name, partitions);
    for c in &t.configs {
        let key = c.name.as_str();
        let Some(value) = c.value.as_ref().map(|v| v.as_str().to_string()) else {
            continue;
        };
        let bad = || {
            (
                ResponseError::InvalidConfig.code(),
                format!("invalid value '{value}' for {key}"),
            )
        };
        let int = |v: &str| v.trim().parse::<i64>().map_err(|_| bad());
        match key {
            "cleanup.policy" => {
                let policies: Vec<&str> = value.split(',').map(str::trim).collect();
                if policies.iter().any(|p| *p != "compact" && *p != "delete") {
                    return Err(bad());
                }
                spec.compacted = policies.contains(&"compact");
            }
            "retention.ms" => spec.retention_ms = Some(int(&value)?).filter(|v| *v >= 0),
            "retention.bytes" => spec.retention_bytes = Some(int(&value)?).filter(|v| *v >= 0),
            "segment.bytes" => {
                spec.segment_bytes = Some(u64::try_from(int(&value)?).map_err(|_| bad())?)
            }
            "segment.ms" => spec.segment_ms = Some(int(&value)?),
            "delete.retention.ms" => spec.delete_retention_ms = Some(int(&value)?),
            other => tracing::debug!(config = other, "ignoring unsupported topic config"),
        }
    }
    topic::validate_name(&spec.name).map_err(|e| (broker_error_code(&e), e.to_string()))?;
    Ok(spec)
}

pub async fn create(
    ctx: &Arc<Ctx>,
    req: CreateTopicsRequest,
    _version: i16,
) -> CreateTopicsResponse {
    let broker = ctx.broker.clone();
    let default_partitions = ctx.config.default_partitions;
    let topics = blocking(move || {
        req.topics
            .into_iter()
            .map(|t| {
                let r = CreatableTopicResult::default()
                    .with_name(t.name.clone())
                    .with_num_partitions(-1)
                    .with_replication_factor(-1);
                let result = spec_for(&t, default_partitions).and_then(|spec| {
                    let partitions = spec.partitions;
                    if req.validate_only {
                        return broker
                            .check_new_topic(&spec)
                            .map(|()| partitions)
                            .map_err(|e| (broker_error_code(&e), e.to_string()));
                    }
                    broker
                        .create_topic(spec)
                        .map(|i| i.partitions)
                        .map_err(|e| (broker_error_code(&e), e.to_string()))
                });
                match result {
                    Ok(n) => r.with_num_partitions(n).with_replication_factor(1),
                    Err((code, msg)) => r
                        .with_error_code(code)
                        .with_error_message(Some(str_bytes(msg))),
                }
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    CreateTopicsResponse::default().with_topics(topics)
}

pub async fn delete(
    ctx: &Arc<Ctx>,
    req: DeleteTopicsRequest,
    _version: i16,
) -> DeleteTopicsResponse {
    let c = ctx.clone();
    let mut names: Vec<_> = req.topic_names;
    names.extend(req.topics.into_iter().filter_map(|t| t.name));
    let responses = blocking(move || {
        names
            .into_iter()
            .map(|name| {
                let r = DeletableTopicResult::default().with_name(Some(name.clone()));
                match c.broker.delete_topic(name.0.as_str()) {
                    Ok(()) => {
                        c.producers.forget_topic(name.0.as_str());
                        r
                    }
                    Err(e) => r
                        .with_error_code(broker_error_code(&e))
                        .with_error_message(Some(str_bytes(e.to_string()))),
                }
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    DeleteTopicsResponse::default().with_responses(responses)
}
