//! What the client-facing edges (the Kafka handlers here, the HTTP API in the binary) need
//! from the cluster: the live brokers and their addresses, each partition's leader,
//! replicas and in-sync set as this node last applied them, and topic creation and deletion
//! through the controller. It reads applied metadata and proposes commands; it owns no
//! state and decides nothing the controller decides (assignment is computed here from the
//! node's current view, and the state machine refuses it if the view was stale).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::NodeId;
use super::applier::{ProposeFailure, Proposer};
use super::metadata::controller::{self, TopicRequest};
use super::metadata::{
    ClusterMetadata, MetadataCommand, MetadataError, MetadataResponse, TopicConfig,
};
use crate::error::BrokerError;
use crate::types::TopicSpec;

/// How long a topic change waits to be applied on this node after the controller committed.
const APPLY_WAIT: Duration = Duration::from_secs(10);

/// A broker clients can reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerEndpoint {
    pub id: NodeId,
    /// `host:port` of its Kafka listener (empty until the node reported it).
    pub kafka_addr: String,
    /// `host:port` of its HTTP listener (empty until the node reported it).
    pub http_addr: String,
}

/// One partition's replication as this node last applied it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub leader: Option<NodeId>,
    pub leader_epoch: i32,
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
}

/// The cluster as the edges see it. Cheap to clone.
#[derive(Clone)]
pub struct ClusterRouting {
    node: NodeId,
    versions: watch::Receiver<Arc<ClusterMetadata>>,
    proposer: Arc<dyn Proposer>,
    controller: Arc<dyn Fn() -> Option<NodeId> + Send + Sync>,
    /// Partition replicas one node admits (its `--max-partitions`): a topic that would put
    /// more on any node is refused before it is proposed.
    partition_budget: usize,
}

/// Two handles are equal when they route for the same node through the same proposer.
impl PartialEq for ClusterRouting {
    fn eq(&self, other: &Self) -> bool {
        self.node == other.node && Arc::ptr_eq(&self.proposer, &other.proposer)
    }
}

impl std::fmt::Debug for ClusterRouting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterRouting")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// The edge's error for a proposal that did not commit or was refused.
pub fn broker_error(e: ProposeFailure) -> BrokerError {
    match e {
        ProposeFailure::Unavailable(m) => BrokerError::ClusterUnavailable(m),
        ProposeFailure::Refused(e) => match e {
            MetadataError::InvalidReplicationFactor { .. }
            | MetadataError::InvalidMinInsync { .. } => {
                BrokerError::InvalidReplicationFactor(e.to_string())
            }
            MetadataError::TopicExists(name) => BrokerError::TopicExists(name),
            MetadataError::UnknownTopic(name) => BrokerError::UnknownTopic(name),
            MetadataError::UnknownPartition { topic, partition } => {
                BrokerError::UnknownPartition { topic, partition }
            }
            other => BrokerError::InvalidConfig(other.to_string()),
        },
    }
}

impl ClusterRouting {
    pub fn new(
        node: NodeId,
        versions: watch::Receiver<Arc<ClusterMetadata>>,
        proposer: Arc<dyn Proposer>,
        controller: Arc<dyn Fn() -> Option<NodeId> + Send + Sync>,
    ) -> ClusterRouting {
        ClusterRouting {
            node,
            versions,
            proposer,
            controller,
            partition_budget: usize::MAX,
        }
    }

    /// Refuses topics that would put more than `budget` partition replicas on a node.
    pub fn with_partition_budget(mut self, budget: usize) -> ClusterRouting {
        self.partition_budget = budget;
        self
    }

    /// This node's id.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The controller, if this node knows one.
    pub fn controller(&self) -> Option<NodeId> {
        (self.controller)()
    }

    /// The metadata this node applied last.
    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        self.versions.borrow().clone()
    }

    /// Registered, unfenced brokers, by id.
    pub fn live_brokers(&self) -> Vec<BrokerEndpoint> {
        self.brokers()
            .into_iter()
            .filter(|(_, fenced)| !fenced)
            .map(|(b, _)| b)
            .collect()
    }

    /// Every registered broker (fenced or not), by id.
    pub fn brokers(&self) -> Vec<(BrokerEndpoint, bool)> {
        let meta = self.metadata();
        meta.nodes
            .iter()
            .map(|(&id, n)| {
                let e = BrokerEndpoint {
                    id,
                    kafka_addr: n.info.kafka_addr.clone(),
                    http_addr: n.info.http_addr.clone(),
                };
                (e, n.fenced)
            })
            .collect()
    }

    /// The routes of a replicated topic's partitions, or `None` when the metadata has no
    /// such topic.
    pub fn routes(&self, topic: &str) -> Option<Vec<Route>> {
        let meta = self.metadata();
        let t = meta.topics.get(topic)?;
        Some(
            t.partitions
                .iter()
                .map(|p| Route {
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replicas.clone(),
                    isr: p.isr.clone(),
                })
                .collect(),
        )
    }

    /// The replicated topics' names, sorted.
    pub fn topics(&self) -> Vec<String> {
        self.metadata().topics.keys().cloned().collect()
    }

    /// Creates a replicated topic through the controller and waits until this node has
    /// applied it. The spec is checked by the caller (name, settings); the replication
    /// factor defaults to min(3, live nodes), min in-sync to min(2, factor); a factor above
    /// the live nodes is refused ([`BrokerError::InvalidReplicationFactor`]).
    pub async fn create_topic(&self, spec: &TopicSpec) -> Result<(), BrokerError> {
        let request = TopicRequest {
            name: spec.name.clone(),
            partitions: spec.partitions,
            replication_factor: spec.replication_factor,
            min_insync_replicas: spec.min_insync_replicas,
            config: TopicConfig::from_spec(spec),
            internal_owner: spec.internal.as_ref().map(|i| i.owner.clone()),
        };
        let command = {
            let meta = self.metadata();
            if meta.topics.contains_key(&spec.name) {
                return Err(BrokerError::TopicExists(spec.name.clone()));
            }
            let command = controller::create_topic_command(&meta, &request)
                .map_err(|e| broker_error(ProposeFailure::Refused(e)))?;
            self.check_budget(&meta, &command)?;
            command
        };
        let proposed = self.proposer.propose(command).await.map_err(broker_error);
        let name = spec.name.clone();
        match proposed {
            Ok(_) => {
                self.wait_applied(move |m| m.topics.contains_key(&name))
                    .await
            }
            // Created meanwhile by another node: answered once this node has it too, so
            // that the caller finds the topic it was told exists.
            Err(BrokerError::TopicExists(existing)) => {
                self.wait_applied(move |m| m.topics.contains_key(&name))
                    .await?;
                Err(BrokerError::TopicExists(existing))
            }
            Err(e) => Err(e),
        }
    }

    /// Refuses a topic that would bring a node over its partition budget (clients may create
    /// topics, auto-create included: the metadata must stay bounded).
    fn check_budget(
        &self,
        meta: &ClusterMetadata,
        command: &MetadataCommand,
    ) -> Result<(), BrokerError> {
        let MetadataCommand::CreateTopic(create) = command else {
            return Ok(());
        };
        let mut per_node: std::collections::BTreeMap<NodeId, usize> = Default::default();
        let existing = meta
            .topics
            .values()
            .flat_map(|t| &t.partitions)
            .map(|p| &p.replicas);
        for replicas in existing.chain(create.assignment.iter()) {
            for n in replicas {
                *per_node.entry(*n).or_default() += 1;
            }
        }
        match per_node
            .into_iter()
            .find(|(_, n)| *n > self.partition_budget)
        {
            Some((node, n)) => Err(BrokerError::PolicyViolation(format!(
                "topic '{}' would bring node {node} to {n} partition replicas, over its limit \
                 of {} (--max-partitions)",
                create.name, self.partition_budget
            ))),
            None => Ok(()),
        }
    }

    /// Deletes a replicated topic through the controller and waits until this node has
    /// applied it.
    pub async fn delete_topic(&self, name: &str) -> Result<(), BrokerError> {
        self.proposer
            .propose(MetadataCommand::DeleteTopic {
                name: name.to_string(),
            })
            .await
            .map_err(broker_error)?;
        let name = name.to_string();
        self.wait_applied(move |m| !m.topics.contains_key(&name))
            .await
    }

    /// Decommissions `node` (`weir cluster decommission`): the controller marks it draining
    /// and moves its replicas away, then removes it. Returns once the mark is committed;
    /// the moves follow (`GET /v1/cluster` shows them).
    pub async fn decommission_node(&self, node: NodeId) -> Result<(), BrokerError> {
        match self
            .proposer
            .propose(MetadataCommand::DecommissionNode { node })
            .await
        {
            Ok(_) => Ok(()),
            Err(ProposeFailure::Refused(e)) => Err(BrokerError::ClusterRefused(e)),
            Err(e) => Err(broker_error(e)),
        }
    }

    /// A block of producer ids for this node from the controller (KIP-730): `(first,
    /// count)`, never handed to another node.
    pub async fn allocate_producer_ids(&self) -> Result<(i64, i64), BrokerError> {
        let response = self
            .proposer
            .propose(MetadataCommand::AllocateProducerIds { node: self.node })
            .await
            .map_err(broker_error)?;
        match response {
            MetadataResponse::ProducerIds { first, count } => Ok((first, count)),
            other => Err(BrokerError::ClusterUnavailable(format!(
                "unexpected answer to a producer-id allocation: {other:?}"
            ))),
        }
    }

    /// The applied metadata as it changes (each new version once applied here).
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterMetadata>> {
        self.versions.clone()
    }

    /// Proposes a change of the engine's catalog (a processor deployed, redeployed,
    /// paused or deleted) through the controller and waits until this node has applied a
    /// metadata version where `done` holds. A refusal is the state machine's
    /// ([`BrokerError::ClusterRefused`]).
    pub async fn propose_catalog(
        &self,
        command: MetadataCommand,
        done: impl Fn(&ClusterMetadata) -> bool,
    ) -> Result<MetadataResponse, BrokerError> {
        let response = match self.proposer.propose(command).await {
            Ok(r) => r,
            Err(ProposeFailure::Refused(e)) => return Err(BrokerError::ClusterRefused(e)),
            Err(e) => return Err(broker_error(e)),
        };
        self.wait_applied(done).await?;
        Ok(response)
    }

    async fn wait_applied(
        &self,
        done: impl Fn(&ClusterMetadata) -> bool,
    ) -> Result<(), BrokerError> {
        let mut versions = self.versions.clone();
        match tokio::time::timeout(APPLY_WAIT, versions.wait_for(|m| done(m))).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(BrokerError::ShuttingDown),
            Err(_) => Err(BrokerError::ClusterUnavailable(
                "the change was committed but this node has not applied it yet".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::metadata::{NodeInfo, VersionedCommand};
    use futures_util::future::BoxFuture;

    /// Commits to a shared metadata at once, as a controller would.
    struct Instant(std::sync::Mutex<(ClusterMetadata, watch::Sender<Arc<ClusterMetadata>>)>);

    impl Proposer for Instant {
        fn propose(
            &self,
            command: MetadataCommand,
        ) -> BoxFuture<'_, Result<MetadataResponse, ProposeFailure>> {
            Box::pin(async move {
                let mut g = self.0.lock().unwrap();
                let index = g.0.version + 1;
                let r =
                    g.0.apply_entry(index, &VersionedCommand::new(command))
                        .unwrap();
                let meta = Arc::new(g.0.clone());
                g.1.send_replace(meta);
                r.map_err(ProposeFailure::Refused)
            })
        }
    }

    fn routing(budget: usize) -> ClusterRouting {
        let mut meta = ClusterMetadata::default();
        for (i, node) in (1..=3).enumerate() {
            let cmd = MetadataCommand::RegisterNode {
                node,
                info: NodeInfo::default(),
            };
            meta.apply_entry(i as u64 + 1, &VersionedCommand::new(cmd))
                .unwrap()
                .unwrap();
        }
        let (tx, rx) = watch::channel(Arc::new(meta.clone()));
        let proposer = Arc::new(Instant(std::sync::Mutex::new((meta, tx))));
        ClusterRouting::new(1, rx, proposer, Arc::new(|| Some(1))).with_partition_budget(budget)
    }

    #[tokio::test]
    async fn topics_are_created_through_the_proposer_within_the_partition_budget() {
        let r = routing(10);
        let mut spec = TopicSpec::new("a", 6);
        spec.replication_factor = Some(3);
        r.create_topic(&spec).await.unwrap();
        assert_eq!(r.routes("a").unwrap().len(), 6);
        assert!(matches!(
            r.create_topic(&spec).await,
            Err(BrokerError::TopicExists(_))
        ));
        // 6 + 5 replicas on every node would pass the budget of 10: refused, nothing proposed.
        let too_many = TopicSpec {
            replication_factor: Some(3),
            ..TopicSpec::new("b", 5)
        };
        match r.create_topic(&too_many).await {
            Err(BrokerError::PolicyViolation(m)) => assert!(m.contains("over its limit"), "{m}"),
            other => panic!("over the budget was not refused: {other:?}"),
        }
        assert!(r.routes("b").is_none());
        let wide = TopicSpec {
            replication_factor: Some(4),
            ..TopicSpec::new("c", 1)
        };
        assert!(matches!(
            r.create_topic(&wide).await,
            Err(BrokerError::InvalidReplicationFactor(_))
        ));
    }

    /// Another node created the topic first: the proposal is refused, and this node
    /// applies the other's creation only a little later.
    struct CreatedElsewhere {
        controller: std::sync::Mutex<ClusterMetadata>,
        local: watch::Sender<Arc<ClusterMetadata>>,
    }

    impl Proposer for CreatedElsewhere {
        fn propose(
            &self,
            command: MetadataCommand,
        ) -> BoxFuture<'_, Result<MetadataResponse, ProposeFailure>> {
            Box::pin(async move {
                let applied = {
                    let mut m = self.controller.lock().unwrap();
                    let index = m.version + 1;
                    let r = m
                        .apply_entry(index, &VersionedCommand::new(command))
                        .unwrap();
                    (r, Arc::new(m.clone()))
                };
                let local = self.local.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    local.send_replace(applied.1);
                });
                applied.0.map_err(ProposeFailure::Refused)
            })
        }
    }

    #[tokio::test]
    async fn a_topic_another_node_created_meanwhile_is_answered_exists_once_applied_here() {
        let mut meta = ClusterMetadata::default();
        let cmd = MetadataCommand::RegisterNode {
            node: 1,
            info: NodeInfo::default(),
        };
        meta.apply_entry(1, &VersionedCommand::new(cmd))
            .unwrap()
            .unwrap();
        let (tx, rx) = watch::channel(Arc::new(meta.clone()));
        let spec = TopicSpec::new("a", 2);
        let request = TopicRequest {
            name: "a".into(),
            partitions: 2,
            ..TopicRequest::default()
        };
        let mut controller = meta.clone();
        let created = controller::create_topic_command(&controller, &request).unwrap();
        controller
            .apply_entry(2, &VersionedCommand::new(created))
            .unwrap()
            .unwrap();
        let proposer = Arc::new(CreatedElsewhere {
            controller: std::sync::Mutex::new(controller),
            local: tx,
        });
        let r = ClusterRouting::new(1, rx, proposer, Arc::new(|| Some(1)));
        assert!(r.routes("a").is_none(), "not applied here yet");
        assert!(matches!(
            r.create_topic(&spec).await,
            Err(BrokerError::TopicExists(_))
        ));
        assert_eq!(r.routes("a").map(|p| p.len()), Some(2));
    }

    #[tokio::test]
    async fn producer_id_blocks_come_from_the_controller_and_never_overlap() {
        let r = routing(10);
        let (a, n) = r.allocate_producer_ids().await.unwrap();
        let (b, m) = r.allocate_producer_ids().await.unwrap();
        assert!(n > 0 && m > 0);
        assert!(a + n <= b, "blocks ({a}, {n}) and ({b}, {m}) overlap");
    }
}
