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
    let cluster = ctx.config.cluster.clone();
    let mut names: Vec<String> = match &requested {
        None => ctx
            .broker
            .list_topics()
            .into_iter()
            .map(|t| t.name)
            .collect(),
        Some(n) => n.clone(),
    };
    if let Some(c) = &cluster {
        if requested.is_none() {
            names.extend(c.topics());
            names.sort();
            names.dedup();
        } else if allow_create {
            for name in &names {
                if ctx.broker.topic_info(name).is_err() && c.routes(name).is_none() {
                    super::produce::auto_create_in_cluster(ctx, c, name).await;
                }
            }
        }
    }
    let c = ctx.clone();
    let topics = blocking(move || {
        names
            .into_iter()
            .map(
                |name| match c.config.cluster.as_ref().and_then(|r| r.routes(&name)) {
                    Some(routes) => replicated_topic_metadata(&c, &name, &routes),
                    None => {
                        topic_metadata(&c, &name, allow_create && c.config.cluster.is_none(), node)
                    }
                },
            )
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let (brokers, controller) = brokers_and_controller(ctx, conn);
    let brokers = brokers
        .into_iter()
        .map(|(id, h, p)| {
            MetadataResponseBroker::default()
                .with_node_id(id)
                .with_host(str_bytes(h))
                .with_port(p)
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(str_bytes(ctx.config.cluster_id.clone())))
        .with_controller_id(controller)
        .with_topics(topics)
}

/// The brokers clients may connect to, as (id, host, port), and the controller: this node
/// alone on a single node; on a cluster the live brokers with a Kafka address and the
/// metadata quorum's controller (`-1` while there is none). Metadata and DescribeCluster.
pub(super) fn brokers_and_controller(
    ctx: &Ctx,
    conn: &Conn,
) -> (Vec<(BrokerId, String, i32)>, BrokerId) {
    let node = BrokerId(ctx.config.node_id);
    let (host, port) = ctx.advertised(conn);
    match &ctx.config.cluster {
        None => (vec![(node, host, port)], node),
        Some(c) => {
            let brokers = c
                .live_brokers()
                .into_iter()
                .filter_map(|b| {
                    let id = BrokerId(i32::try_from(b.id).ok()?);
                    let (h, p) = if b.id == c.node() {
                        (host.clone(), port)
                    } else {
                        split_host_port(&b.kafka_addr)?
                    };
                    Some((id, h, p))
                })
                .collect();
            let controller = c
                .controller()
                .and_then(|id| i32::try_from(id).ok())
                .map_or(BrokerId(-1), BrokerId);
            (brokers, controller)
        }
    }
}

/// `host:port` (IPv6 hosts in brackets) as Kafka's Metadata carries it.
pub(super) fn split_host_port(addr: &str) -> Option<(String, i32)> {
    let (host, port) = addr.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| (host.to_string(), i32::from(port)))
}

fn broker_id(n: u64) -> BrokerId {
    BrokerId(i32::try_from(n).unwrap_or(-1))
}

/// A replicated topic as the applied metadata routes it: the leader (or
/// `LEADER_NOT_AVAILABLE` while there is none), its epoch, replicas, in-sync set and the
/// replicas on fenced nodes as offline.
fn replicated_topic_metadata(
    ctx: &Ctx,
    name: &str,
    routes: &[crate::cluster::routing::Route],
) -> MetadataResponseTopic {
    let internal = ctx
        .broker
        .topic_info(name)
        .is_ok_and(|info| info.internal.is_some());
    let live: Vec<u64> = ctx
        .config
        .cluster
        .as_ref()
        .map(|c| c.live_brokers().into_iter().map(|b| b.id).collect())
        .unwrap_or_default();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(name))))
        .with_is_internal(internal)
        .with_partitions(
            routes
                .iter()
                .enumerate()
                .map(|(p, r)| {
                    let m = MetadataResponsePartition::default()
                        .with_partition_index(p as i32)
                        .with_leader_epoch(r.leader_epoch)
                        .with_replica_nodes(r.replicas.iter().map(|n| broker_id(*n)).collect())
                        .with_isr_nodes(r.isr.iter().map(|n| broker_id(*n)).collect())
                        .with_offline_replicas(
                            r.replicas
                                .iter()
                                .filter(|n| !live.contains(n))
                                .map(|n| broker_id(*n))
                                .collect(),
                        );
                    match r.leader {
                        Some(l) => m.with_leader_id(broker_id(l)),
                        None => m
                            .with_leader_id(BrokerId(-1))
                            .with_error_code(ResponseError::LeaderNotAvailable.code()),
                    }
                })
                .collect(),
        )
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
