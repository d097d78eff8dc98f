//! `GET /v1/cluster`: the cluster as this node sees it — its id, this node, and each peer
//! with its cluster address, whether its last greeting was answered and when; with the
//! metadata quorum running (`--peers` or `--join`), also the controller as this node knows it, its Raft
//! term and applied index, the applied metadata's version, and per node whether the
//! metadata registers it, fenced or not, whether it votes, and the Kafka and HTTP addresses
//! it advertises. Nodes the metadata knows but this node has no client for are listed too.
//! A single node (no cluster flags) shows itself alone.
//!
//! On a cluster it also shows, per node, the partitions it leads (applied metadata) and its
//! replication lag: the records its replicas are behind their leaders' log ends, summed over
//! the partitions it follows, as those leaders report them (`null` when a leader did not
//! answer); and the cluster's under-replicated partitions (a leader, and an in-sync set
//! smaller than the replicas) and offline ones (no leader).
//!
//! It also lists the partitions being reassigned (replicas being added and removed: a
//! rebalance onto a joined node or a decommission), and per node whether it is being
//! decommissioned (`draining`) and how many replicas it holds.
//!
//! `POST /v1/cluster/nodes/{id}/decommission` asks the controller to decommission a node:
//! its replicas move to the other nodes (throttled by their `--replication-throttle-bytes`),
//! then it leaves the metadata quorum and its id is retired. `202 Accepted` once the
//! controller has committed the request; progress shows in `GET /v1/cluster`.
//!
//! `GET /v1/cluster/replication` is one node's part of that: the partitions it leads with
//! each follower's log end and lag. `GET /v1/cluster` asks every other node leading a
//! partition for it (bounded by [`LAG_QUERY_TIMEOUT`], the caller's credentials passed on).
//!
//! `GET /v1/cluster/partitions` lists every partition of the applied metadata with its
//! leader, leader epoch, replicas and in-sync set (empty on a single node; under `--auth`
//! only the topics the caller may describe).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use weir_broker::auth::{Op, Resource};
use weir_broker::cluster::applier::ApplierCounters;
use weir_broker::cluster::metadata::{ClusterMetadata, MetadataNode};
use weir_broker::cluster::replication::ReplicaManager;
use weir_broker::cluster::rpc::{ClusterView, NodeStatus};

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;

/// Longest wait for another node's `GET /v1/cluster/replication` (a node whose last
/// greeting went unanswered is not asked).
pub const LAG_QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// This node's replicas and what its metadata applier counted (cluster mode), for
/// `GET /v1/cluster`, `GET /v1/cluster/replication` and metrics.
#[derive(Clone)]
pub struct ReplicationSource {
    pub manager: Arc<ReplicaManager>,
    pub counters: Arc<ApplierCounters>,
}

impl std::fmt::Debug for ReplicationSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationSource").finish_non_exhaustive()
    }
}

/// The answer of `GET /v1/cluster/replication`: the partitions this node leads.
#[derive(Debug, Serialize, Deserialize)]
pub struct LocalReplication {
    pub node_id: u64,
    pub partitions: Vec<LedPartition>,
}

/// One partition this node leads, with its followers' positions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedPartition {
    pub topic: String,
    pub partition: i32,
    pub leader_epoch: i32,
    pub high_watermark: i64,
    pub log_end_offset: i64,
    pub followers: Vec<FollowerLag>,
}

/// A follower as its leader sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FollowerLag {
    pub node: u64,
    /// Its log end offset, as of its last fetch in the leader's current epoch (`None`
    /// before its first).
    pub log_end_offset: Option<i64>,
    /// Records it is behind the leader's log end ([`follower_lag`]).
    pub lag: i64,
}

/// How many records a follower whose last fetch said its log ends at `end` (`-1`: it has
/// not fetched in the leader's current epoch) is behind the leader `s`: the leader's log
/// end minus its own, or, before its first fetch, at least everything appended in this
/// epoch (a dead follower's lag grows as records arrive).
pub fn follower_lag(s: &weir_broker::cluster::replication::ReplicaStatus, end: i64) -> i64 {
    let from = if end >= 0 {
        end
    } else {
        s.epoch_start_offset.max(0)
    };
    (s.log_end_offset - from).max(0)
}

impl ReplicationSource {
    /// The partitions this node leads now (blocking: takes each replica's locks).
    pub fn led(&self) -> Vec<LedPartition> {
        self.manager
            .statuses()
            .into_iter()
            .filter(|(_, s)| s.is_leader)
            .map(|(tp, s)| LedPartition {
                topic: tp.topic,
                partition: tp.partition,
                leader_epoch: s.leader_epoch,
                high_watermark: s.high_watermark,
                log_end_offset: s.log_end_offset,
                followers: s
                    .followers
                    .iter()
                    .map(|&(node, end)| FollowerLag {
                        node,
                        log_end_offset: (end >= 0).then_some(end),
                        lag: follower_lag(&s, end),
                    })
                    .collect(),
            })
            .collect()
    }
}

async fn local_led(state: &AppState) -> Result<Vec<LedPartition>, ApiError> {
    match &state.replication {
        None => Ok(Vec::new()),
        Some(r) => {
            let r = r.clone();
            Ok(tokio::task::spawn_blocking(move || r.led()).await?)
        }
    }
}

/// `GET /v1/cluster/replication`
pub async fn replication(
    State(state): State<AppState>,
) -> Result<Json<LocalReplication>, ApiError> {
    Ok(Json(LocalReplication {
        node_id: state.node_id,
        partitions: local_led(&state).await?,
    }))
}

/// A partition's placement: under-replicated or offline in `GET /v1/cluster`, every one in
/// `GET /v1/cluster/partitions`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionIssue {
    pub topic: String,
    pub partition: i32,
    pub leader: Option<u64>,
    pub leader_epoch: i32,
    pub replicas: Vec<u64>,
    pub isr: Vec<u64>,
}

/// The under-replicated (a leader, fewer in sync than replicas) and offline (no leader)
/// partitions of the applied metadata, in topic then partition order.
pub fn partition_issues(meta: &ClusterMetadata) -> (Vec<PartitionIssue>, Vec<PartitionIssue>) {
    let (mut under, mut offline) = (Vec::new(), Vec::new());
    for (name, t) in &meta.topics {
        for (i, p) in t.partitions.iter().enumerate() {
            let issue = || PartitionIssue {
                topic: name.clone(),
                partition: i as i32,
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                replicas: p.replicas.clone(),
                isr: p.isr.clone(),
            };
            if p.leader.is_none() {
                offline.push(issue());
            } else if p.target_replicas().any(|r| !p.isr.contains(&r)) {
                // A replica of the target not in sync (one a move is adding counts too:
                // the partition has fewer copies in sync than it will have).
                under.push(issue());
            }
        }
    }
    (under, offline)
}

/// A partition being reassigned.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartitionMove {
    pub topic: String,
    pub partition: i32,
    pub leader: Option<u64>,
    pub replicas: Vec<u64>,
    pub isr: Vec<u64>,
    /// Replicas the move adds (they join the in-sync set when caught up).
    pub adding: Vec<u64>,
    /// Replicas it removes once every added one is in sync.
    pub removing: Vec<u64>,
}

/// The partitions being reassigned in the applied metadata, in topic then partition order.
pub fn partition_moves(meta: &ClusterMetadata) -> Vec<PartitionMove> {
    meta.topics
        .iter()
        .flat_map(|(name, t)| {
            t.partitions
                .iter()
                .enumerate()
                .filter(|(_, p)| p.reassigning())
                .map(move |(i, p)| PartitionMove {
                    topic: name.clone(),
                    partition: i as i32,
                    leader: p.leader,
                    replicas: p.replicas.clone(),
                    isr: p.isr.clone(),
                    adding: p.adding.clone(),
                    removing: p.removing.clone(),
                })
        })
        .collect()
}

/// `POST /v1/cluster/nodes/{id}/decommission`
pub async fn decommission(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<(axum::http::StatusCode, Json<serde_json::Value>), ApiError> {
    let node: u64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("'{id}' is not a node id")))?;
    let Some(routing) = &state.routing else {
        return Err(ApiError::bad_request(
            "this node is not part of a cluster: there is nothing to decommission".to_string(),
        ));
    };
    routing.decommission_node(node).await?;
    Ok((
        axum::http::StatusCode::ACCEPTED,
        Json(serde_json::json!({
            "node": node,
            "status": "draining",
            "message": format!(
                "node {node} is being decommissioned: its replicas move to the other nodes, \
                 then it leaves the cluster; GET /v1/cluster shows the progress"
            ),
        })),
    ))
}

/// Every partition of `meta`, in topic then partition order.
pub fn all_partitions(meta: &ClusterMetadata) -> Vec<PartitionIssue> {
    meta.topics
        .iter()
        .flat_map(|(name, t)| {
            t.partitions
                .iter()
                .enumerate()
                .map(move |(i, p)| PartitionIssue {
                    topic: name.clone(),
                    partition: i as i32,
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replicas.clone(),
                    isr: p.isr.clone(),
                })
        })
        .collect()
}

/// The answer of `GET /v1/cluster/partitions`.
#[derive(Debug, Serialize)]
pub struct PartitionMap {
    pub partitions: Vec<PartitionIssue>,
}

/// `GET /v1/cluster/partitions`
pub async fn partitions(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
) -> Json<PartitionMap> {
    let mut partitions = state
        .metadata
        .as_ref()
        .map(|m| all_partitions(&m.current()))
        .unwrap_or_default();
    if let Some(Extension(c)) = &caller {
        let mut allowed: BTreeMap<String, bool> = BTreeMap::new();
        partitions.retain(|p| {
            *allowed
                .entry(p.topic.clone())
                .or_insert_with(|| c.may(Op::Describe, &Resource::Topic(p.topic.clone())))
        });
    }
    Json(PartitionMap { partitions })
}

/// The answer of `GET /v1/cluster`.
#[derive(Debug, Serialize)]
pub struct ClusterStatus {
    pub mode: &'static str,
    pub cluster_id: Option<String>,
    pub node_id: u64,
    /// `None` where no metadata quorum member runs (a single node).
    pub metadata: Option<MetadataStatus>,
    pub nodes: Vec<NodeRow>,
    /// Partitions with a leader and fewer in-sync replicas than replicas (empty on a
    /// single node).
    pub under_replicated: Vec<PartitionIssue>,
    /// Partitions without a leader (empty on a single node).
    pub offline: Vec<PartitionIssue>,
    /// Partitions being reassigned (empty on a single node).
    pub reassigning: Vec<PartitionMove>,
    /// Ids of decommissioned nodes (never used again).
    pub retired: Vec<u64>,
}

/// This node's view of the metadata quorum.
#[derive(Debug, Serialize)]
pub struct MetadataStatus {
    /// The controller (Raft leader) as this node knows it.
    pub controller: Option<u64>,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: String,
    pub term: u64,
    /// The index of the last Raft entry applied on this node.
    pub applied_index: Option<u64>,
    /// The applied metadata's version (the same on every node that applied as much).
    pub version: u64,
    pub voters: Vec<u64>,
}

/// One node: its liveness, and what the metadata says of it (`None` everywhere where no
/// metadata quorum member runs).
#[derive(Debug, Serialize)]
pub struct NodeRow {
    #[serde(flatten)]
    pub status: NodeStatus,
    /// Registered and not fenced: alive as far as the controller's sessions go.
    pub registered: Option<bool>,
    /// Registered but fenced (missed its session, or shut down).
    pub fenced: Option<bool>,
    /// Being decommissioned: its replicas are moving to other nodes.
    pub draining: Option<bool>,
    /// Partitions it holds a replica of (being removed ones included).
    pub replicas: Option<usize>,
    /// A voter of the metadata quorum (else a learner, or not a member).
    pub voter: Option<bool>,
    /// The address Kafka clients are told, as the node advertised it.
    pub kafka_address: Option<String>,
    /// Its HTTP address, as the node advertised it.
    pub http_address: Option<String>,
    /// Partitions it leads in the applied metadata.
    pub partitions_led: Option<usize>,
    /// Records its replicas are behind their leaders' log ends, summed over the partitions
    /// it follows, as the leaders report them (`None`: a leader did not answer, or no
    /// metadata).
    pub replication_lag: Option<i64>,
}

pub async fn status(State(state): State<AppState>, headers: HeaderMap) -> Json<ClusterStatus> {
    let view = match &state.cluster {
        Some(peers) => peers.view(),
        None => ClusterView::single(state.node_id),
    };
    let mut status = combine(view, state.metadata.as_ref());
    if let Some(meta) = state.metadata.as_ref().map(|m| m.current()) {
        let reports = leader_reports(&state, &meta, &headers).await;
        fill_lag(&mut status, &meta, &reports);
    }
    Json(status)
}

/// What the leaders of `meta`'s partitions report of their followers: this node's own
/// report and every other leader's `GET /v1/cluster/replication` (asked concurrently; one
/// that does not answer is left out).
async fn leader_reports(
    state: &AppState,
    meta: &ClusterMetadata,
    headers: &HeaderMap,
) -> BTreeMap<(String, i32), LedPartition> {
    let mut out = BTreeMap::new();
    match local_led(state).await {
        Ok(led) => out.extend(led.into_iter().map(|p| ((p.topic.clone(), p.partition), p))),
        Err(e) => tracing::debug!(error = %e, "reading this node's replicas"),
    }
    let unreachable: Vec<u64> = state.cluster.as_ref().map_or_else(Vec::new, |peers| {
        peers
            .view()
            .nodes
            .into_iter()
            .filter(|n| !n.reachable && !n.is_self)
            .map(|n| n.id)
            .collect()
    });
    let leaders: std::collections::BTreeSet<u64> = meta
        .topics
        .values()
        .flat_map(|t| t.partitions.iter().filter_map(|p| p.leader))
        .filter(|l| *l != state.node_id && !unreachable.contains(l))
        .collect();
    let (Some(forwarder), Some(routing)) = (&state.forwarder, &state.routing) else {
        return out;
    };
    let addrs: BTreeMap<u64, String> = routing
        .brokers()
        .into_iter()
        .map(|(b, _)| (b.id, b.http_addr))
        .collect();
    let auth = headers.get(AUTHORIZATION);
    let asks = leaders.into_iter().filter_map(|leader| {
        let addr = addrs.get(&leader).filter(|a| !a.is_empty())?.clone();
        Some(async move {
            let answer = forwarder
                .get_json::<LocalReplication>(
                    &addr,
                    "/v1/cluster/replication",
                    auth,
                    LAG_QUERY_TIMEOUT,
                )
                .await;
            (leader, answer)
        })
    });
    for (leader, answer) in futures_util::future::join_all(asks).await {
        match answer {
            Ok(r) => out.extend(
                r.partitions
                    .into_iter()
                    .filter(|p| {
                        // Only what the metadata says that node leads, at that epoch.
                        meta.partition(&p.topic, p.partition).is_some_and(|s| {
                            s.leader == Some(leader) && s.leader_epoch == p.leader_epoch
                        })
                    })
                    .map(|p| ((p.topic.clone(), p.partition), p)),
            ),
            Err(e) => tracing::debug!(node = leader, error = %e, "no replication report"),
        }
    }
    out
}

/// Fills in each node's partitions led and replication lag, and the partition issues.
fn fill_lag(
    status: &mut ClusterStatus,
    meta: &ClusterMetadata,
    reports: &BTreeMap<(String, i32), LedPartition>,
) {
    let (under, offline) = partition_issues(meta);
    status.under_replicated = under;
    status.offline = offline;
    status.reassigning = partition_moves(meta);
    status.retired = meta.retired.iter().copied().collect();
    for row in &mut status.nodes {
        let id = row.status.id;
        let mut led = 0usize;
        let mut lag = Some(0i64);
        for (name, t) in &meta.topics {
            for (i, p) in t.partitions.iter().enumerate() {
                if p.leader == Some(id) {
                    led += 1;
                }
                if p.leader.is_none_or(|l| l == id) || !p.replicas.contains(&id) {
                    continue;
                }
                let behind = reports
                    .get(&(name.clone(), i as i32))
                    .and_then(|r| r.followers.iter().find(|f| f.node == id))
                    .map(|f| f.lag);
                lag = lag.zip(behind).map(|(a, b)| a + b);
            }
        }
        row.partitions_led = Some(led);
        row.replicas = Some(
            meta.topics
                .values()
                .flat_map(|t| &t.partitions)
                .filter(|p| p.replicas.contains(&id))
                .count(),
        );
        row.replication_lag = lag;
    }
}

fn combine(view: ClusterView, metadata: Option<&MetadataNode>) -> ClusterStatus {
    let applied = metadata.map(|m| m.current());
    let voters = metadata.map(|m| m.metrics().voters);
    let mut statuses = view.nodes;
    if let Some(applied) = &applied {
        // Nodes the metadata knows that this node has no client for (yet).
        for (id, node) in &applied.nodes {
            if !statuses.iter().any(|s| s.id == *id) {
                statuses.push(NodeStatus {
                    id: *id,
                    address: Some(node.info.cluster_addr.clone()).filter(|a| !a.is_empty()),
                    reachable: false,
                    last_seen_ms: None,
                    error: None,
                    version: None,
                    is_self: false,
                });
            }
        }
        // A decommissioned node is gone from the cluster (listed under `retired`), even
        // while this node's peer list still greets it.
        statuses.retain(|s| !applied.retired.contains(&s.id));
        statuses.sort_by_key(|s| s.id);
    }
    let nonempty = |s: &String| Some(s.clone()).filter(|s| !s.is_empty());
    let nodes = statuses
        .into_iter()
        .map(|status| {
            let known = applied.as_ref().map(|a| a.nodes.get(&status.id));
            NodeRow {
                registered: known.map(|n| n.is_some_and(|n| !n.fenced)),
                fenced: known.map(|n| n.is_some_and(|n| n.fenced)),
                draining: known.map(|n| n.is_some_and(|n| n.draining)),
                replicas: None,
                voter: voters.as_ref().map(|v| v.contains(&status.id)),
                kafka_address: known.flatten().and_then(|n| nonempty(&n.info.kafka_addr)),
                http_address: known.flatten().and_then(|n| nonempty(&n.info.http_addr)),
                partitions_led: None,
                replication_lag: None,
                status,
            }
        })
        .collect();
    let metadata = metadata.zip(applied).map(|(node, applied)| {
        let m = node.metrics();
        MetadataStatus {
            controller: m.controller,
            role: format!("{:?}", m.state).to_lowercase(),
            term: m.term,
            applied_index: m.applied_index,
            version: applied.version,
            voters: m.voters.into_iter().collect(),
        }
    });
    ClusterStatus {
        mode: view.mode,
        cluster_id: view.cluster_id,
        node_id: view.node_id,
        metadata,
        nodes,
        under_replicated: Vec::new(),
        offline: Vec::new(),
        reassigning: Vec::new(),
        retired: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_broker::cluster::metadata::controller::{self, TopicRequest};
    use weir_broker::cluster::metadata::{MetadataCommand, NodeInfo, VersionedCommand};

    /// Three registered nodes and a topic of three partitions on all three.
    fn metadata() -> ClusterMetadata {
        let mut meta = ClusterMetadata::default();
        let mut index = 0;
        let mut apply = |meta: &mut ClusterMetadata, cmd: MetadataCommand| {
            index += 1;
            meta.apply_entry(index, &VersionedCommand::new(cmd))
                .unwrap()
                .unwrap();
        };
        for node in 1..=3 {
            let info = NodeInfo::default();
            apply(&mut meta, MetadataCommand::RegisterNode { node, info });
        }
        let request = TopicRequest {
            name: "t".into(),
            partitions: 3,
            replication_factor: Some(3),
            min_insync_replicas: Some(2),
            config: Default::default(),
            internal_owner: None,
        };
        let create = controller::create_topic_command(&meta, &request).unwrap();
        apply(&mut meta, create);
        meta
    }

    fn row(id: u64) -> NodeRow {
        NodeRow {
            status: NodeStatus {
                id,
                address: None,
                reachable: true,
                last_seen_ms: None,
                error: None,
                version: None,
                is_self: id == 1,
            },
            registered: None,
            fenced: None,
            draining: None,
            replicas: None,
            voter: None,
            kafka_address: None,
            http_address: None,
            partitions_led: None,
            replication_lag: None,
        }
    }

    fn status() -> ClusterStatus {
        ClusterStatus {
            mode: "cluster",
            cluster_id: None,
            node_id: 1,
            metadata: None,
            nodes: (1..=3).map(row).collect(),
            under_replicated: Vec::new(),
            offline: Vec::new(),
            reassigning: Vec::new(),
            retired: Vec::new(),
        }
    }

    /// What the leader of `t`/`partition` reports: `lags` per follower.
    fn report(meta: &ClusterMetadata, partition: i32, lags: &[(u64, i64)]) -> LedPartition {
        let p = meta.partition("t", partition).unwrap();
        LedPartition {
            topic: "t".into(),
            partition,
            leader_epoch: p.leader_epoch,
            high_watermark: 0,
            log_end_offset: 100,
            followers: lags
                .iter()
                .map(|&(node, lag)| FollowerLag {
                    node,
                    log_end_offset: Some(100 - lag),
                    lag,
                })
                .collect(),
        }
    }

    #[test]
    fn partitions_short_of_their_replicas_or_without_a_leader_are_listed() {
        let mut meta = metadata();
        assert_eq!(partition_issues(&meta), (Vec::new(), Vec::new()));
        let t = meta.topics.get_mut("t").unwrap();
        t.partitions[1].isr.retain(|n| *n != 3);
        t.partitions[2].leader = None;
        let (under, offline) = partition_issues(&meta);
        assert_eq!(under.len(), 1);
        assert_eq!((under[0].partition, under[0].isr.len()), (1, 2));
        assert_eq!(offline.len(), 1);
        assert_eq!((offline[0].partition, offline[0].leader), (2, None));
        let all = all_partitions(&meta);
        assert_eq!(all.len(), 3);
        assert_eq!(all[1].isr.len(), 2);
        assert_eq!(all[2].leader, None);
        assert_eq!(all[0].replicas.len(), 3);
    }

    #[test]
    fn each_node_gets_its_partitions_led_and_the_lag_its_leaders_report() {
        let meta = metadata();
        let leaders: Vec<u64> = (0..3)
            .map(|p| meta.partition("t", p).unwrap().leader.unwrap())
            .collect();
        // Every leader reports its followers: node 3 is 7 records behind everywhere it
        // follows, the others caught up.
        let mut reports = BTreeMap::new();
        for (p, leader) in leaders.iter().enumerate() {
            let lags: Vec<(u64, i64)> = (1..=3u64)
                .filter(|n| n != leader)
                .map(|n| (n, if n == 3 { 7 } else { 0 }))
                .collect();
            reports.insert(("t".to_string(), p as i32), report(&meta, p as i32, &lags));
        }
        let mut s = status();
        fill_lag(&mut s, &meta, &reports);
        let led: usize = s.nodes.iter().map(|n| n.partitions_led.unwrap()).sum();
        assert_eq!(led, 3);
        let follows_3 = leaders.iter().filter(|l| **l != 3).count() as i64;
        assert_eq!(s.nodes[2].replication_lag, Some(7 * follows_3));
        assert_eq!(s.nodes[0].replication_lag, Some(0));
        // A leader that did not answer: the lag of its followers is not known.
        reports.remove(&("t".to_string(), 0));
        let mut s = status();
        fill_lag(&mut s, &meta, &reports);
        let followers_of_0: Vec<u64> = (1..=3).filter(|n| *n != leaders[0]).collect();
        for n in followers_of_0 {
            assert_eq!(s.nodes[n as usize - 1].replication_lag, None, "node {n}");
        }
    }
}
