//! CreateTopics and DeleteTopics. Kafka topic configs map onto Weir's topic spec
//! ([`super::configs::set_topic_config`]: `cleanup.policy`, `retention.ms`,
//! `retention.bytes`, `segment.bytes`, `segment.ms`, `delete.retention.ms`,
//! `min.insync.replicas`); other configs are accepted and ignored; replication factors above
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
use crate::cluster::routing::ClusterRouting;
use crate::error::BrokerError;
use crate::topic;

/// A spec from a CreateTopics entry, or (error code, message).
fn spec_for(
    t: &CreatableTopic,
    default_partitions: i32,
    clustered: bool,
) -> Result<TopicSpec, (i16, String)> {
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
    if clustered {
        if t.replication_factor == 0 || t.replication_factor < -1 {
            return Err((
                ResponseError::InvalidReplicationFactor.code(),
                format!("invalid replication factor {}", t.replication_factor),
            ));
        }
    } else if !(t.replication_factor == -1 || t.replication_factor == 1) {
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
    if clustered && t.replication_factor > 0 {
        spec.replication_factor = u16::try_from(t.replication_factor).ok();
    }
    for c in &t.configs {
        let key = c.name.as_str();
        // A null value leaves the default, as Kafka does.
        let Some(value) = c.value.as_ref().map(|v| v.as_str()) else {
            continue;
        };
        match super::configs::set_topic_config(&mut spec, key, Some(value)) {
            Ok(true) => {}
            Ok(false) => tracing::debug!(config = key, "ignoring unsupported topic config"),
            Err(e) => return Err((ResponseError::InvalidConfig.code(), e.to_string())),
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
    if let Some(cluster) = ctx.config.cluster.clone() {
        return create_in_cluster(ctx, &cluster, req).await;
    }
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
                let result = spec_for(&t, default_partitions, false).and_then(|spec| {
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

/// CreateTopics on a cluster: each topic through the controller (checked here first).
async fn create_in_cluster(
    ctx: &Arc<Ctx>,
    cluster: &ClusterRouting,
    req: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let r = CreatableTopicResult::default()
            .with_name(t.name.clone())
            .with_num_partitions(-1)
            .with_replication_factor(-1);
        let spec = spec_for(&t, ctx.config.default_partitions, true).and_then(|spec| {
            crate::guard::check_client_spec(&spec)
                .and_then(|()| ctx.broker.check_topic_spec(&spec))
                .map(|_| spec)
                .map_err(|e| (broker_error_code(&e), e.to_string()))
        });
        let result = match spec {
            Err(e) => Err(e),
            Ok(spec) if req.validate_only => Ok(spec.partitions),
            Ok(spec) => cluster
                .create_topic(&spec)
                .await
                .map(|()| spec.partitions)
                .map_err(|e| (broker_error_code(&e), e.to_string())),
        };
        let rf = cluster
            .routes(t.name.as_str())
            .and_then(|r| r.first().map(|p| p.replicas.len() as i16))
            .unwrap_or(-1);
        topics.push(match result {
            Ok(n) => r.with_num_partitions(n).with_replication_factor(rf),
            Err((code, msg)) => r
                .with_error_code(code)
                .with_error_message(Some(str_bytes(msg))),
        });
    }
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
    if let Some(cluster) = ctx.config.cluster.clone() {
        let mut responses = Vec::with_capacity(names.len());
        for name in names {
            let r = DeletableTopicResult::default().with_name(Some(name.clone()));
            let topic = name.0.to_string();
            let replicated = cluster.routes(&topic).is_some();
            let result = if replicated {
                match ctx.broker.check_client_delete(&topic) {
                    Ok(()) | Err(BrokerError::UnknownTopic(_)) => {
                        cluster.delete_topic(&topic).await
                    }
                    Err(e) => Err(e),
                }
            } else {
                let b = ctx.broker.clone();
                let t = topic.clone();
                blocking(move || b.delete_topic(&t)).await.and_then(|r| r)
            };
            responses.push(match result {
                Ok(()) => {
                    ctx.producers.forget_topic(&topic);
                    // Replicated: deleted through the controller, not `Broker::delete_topic`
                    // (which runs the hooks itself). Only the groups this node coordinates
                    // lose their offsets of it here.
                    if replicated {
                        let (b, t) = (ctx.broker.clone(), topic.clone());
                        let _ = blocking(move || b.topic_deleted_by_client(&t)).await;
                    }
                    r
                }
                Err(e) => r
                    .with_error_code(broker_error_code(&e))
                    .with_error_message(Some(str_bytes(e.to_string()))),
            });
        }
        return DeleteTopicsResponse::default().with_responses(responses);
    }
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
