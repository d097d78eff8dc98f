//! Metadata: this node as the only broker, leader of every partition; the topics asked for
//! (or all), auto-creating unknown ones when the client and the config allow it. A topic is
//! `is_internal` when it carries the internal-topic marker (`__consumer_offsets`, and every
//! changelog, offsets, repartition or query topic the engine or SQL owns), as Kafka flags
//! its own internal topics.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};

use super::{Conn, Ctx, blocking, broker_error_code, str_bytes};
use crate::error::BrokerError;
use crate::{Broker, TopicSpec};

/// Creates `name` with the default partition count if auto-creation is on; a topic created
/// concurrently by someone else counts as success.
pub fn auto_create(broker: &Broker, name: &str, partitions: i32) -> Result<(), BrokerError> {
    match broker.create_topic(TopicSpec::new(name, partitions)) {
        Ok(_) => {
            tracing::info!(topic = %name, partitions, "auto-created topic for a Kafka client");
            Ok(())
        }
        Err(BrokerError::TopicExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

pub async fn handle(
    ctx: &Arc<Ctx>,
    conn: &Conn,
    req: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let node = BrokerId(ctx.config.node_id);
    let (host, port) = ctx.advertised(conn);
    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let requested: Option<Vec<String>> = match req.topics {
        None => None,
        Some(t) if t.is_empty() && version == 0 => None,
        Some(t) => Some(
            t.into_iter()
                .filter_map(|t| t.name.map(|n| n.0.to_string()))
                .collect(),
        ),
    };
    let allow_create =
        ctx.config.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
    let names: Vec<String> = match &requested {
        None => ctx
            .broker
            .list_topics()
            .into_iter()
            .map(|t| t.name)
            .collect(),
        Some(n) => n.clone(),
    };
    let c = ctx.clone();
    let topics = blocking(move || {
        names
            .into_iter()
            .map(|name| topic_metadata(&c, &name, allow_create, node))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    MetadataResponse::default()
        .with_brokers(vec![
            MetadataResponseBroker::default()
                .with_node_id(node)
                .with_host(str_bytes(host))
                .with_port(port),
        ])
        .with_cluster_id(Some(str_bytes(ctx.config.cluster_id.clone())))
        .with_controller_id(node)
        .with_topics(topics)
}

fn topic_metadata(
    ctx: &Ctx,
    name: &str,
    allow_create: bool,
    node: BrokerId,
) -> MetadataResponseTopic {
    let t = MetadataResponseTopic::default().with_name(Some(TopicName(str_bytes(name))));
    let mut count = ctx.broker.partition_count(name);
    if matches!(count, Err(BrokerError::UnknownTopic(_))) && allow_create {
        count = auto_create(&ctx.broker, name, ctx.config.default_partitions)
            .and_then(|()| ctx.broker.partition_count(name));
    }
    match count {
        Ok(n) => {
            let internal = ctx
                .broker
                .topic_info(name)
                .is_ok_and(|info| info.internal.is_some());
            let t = t.with_is_internal(internal);
            // A partition that could not be opened at start has no leader until fixed.
            let offline = ctx.broker.offline_partitions(name).unwrap_or_default();
            t.with_partitions(
                (0..n)
                    .map(|p| {
                        let m = MetadataResponsePartition::default()
                            .with_partition_index(p)
                            .with_leader_epoch(0)
                            .with_replica_nodes(vec![node]);
                        if offline.contains(&p) {
                            m.with_error_code(ResponseError::KafkaStorageError.code())
                                .with_leader_id(BrokerId(-1))
                                .with_offline_replicas(vec![node])
                        } else {
                            m.with_leader_id(node).with_isr_nodes(vec![node])
                        }
                    })
                    .collect(),
            )
        }
        Err(BrokerError::InvalidTopicName { .. }) => {
            t.with_error_code(ResponseError::InvalidTopicException.code())
        }
        Err(e) => t.with_error_code(broker_error_code(&e)),
    }
}
