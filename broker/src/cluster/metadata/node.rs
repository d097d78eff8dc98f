//! [`MetadataNode`]: one node's member of the metadata quorum — its Raft instance over the
//! on-disk log and state machine, with what the rest of Weir needs: propose a command (only
//! on the controller), read the applied metadata and follow its changes, see the Raft
//! metrics, answer the Raft RPCs that arrive from peers, shut down.
//!
//! A node started with a set of initial voters that contains it initializes the cluster with
//! exactly that set if its log is empty; every voter does the same, which openraft makes safe
//! (the same membership entry at the same log position), so nodes may start in any order and
//! the quorum forms as soon as a majority runs. A node whose log is not empty ignores the
//! voters (the log holds the membership).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    CheckIsLeaderError, ClientWriteError, InitializeError, InstallSnapshotError, RaftError,
};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{ChangeMembers, Config, ServerState, SnapshotPolicy};
use tokio::sync::watch;

use super::error::NodeError;
use super::log_store::{LogClosed, LogStore};
use super::network::{AppendResult, MetadataTransport, NetworkFactory, SnapshotResult, VoteResult};
use super::state::ClusterMetadata;
use super::state_machine::StateMachineStore;
use super::types::{MetadataCommand, MetadataRaft, MetadataResponse, NodeInfo, VersionedCommand};
use crate::cluster::NodeId;

/// The longest [`MetadataNode::shutdown`] waits for the log to close after Raft stopped.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// Timing and log-compaction settings of the metadata quorum.
#[derive(Debug, Clone)]
pub struct MetadataConfig {
    /// The controller's heartbeat to the other voters.
    pub heartbeat_interval: Duration,
    /// A follower that hears no heartbeat for a random time in this range starts an election.
    /// openraft 0.9 adds a leader lease of `election_timeout_max` while it knows a leader
    /// (a voter refuses to vote while its leader's lease runs), so after a controller's
    /// death the election starts `election_timeout_max` + a random time in the range later.
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// A snapshot is taken every this many applied entries.
    pub snapshot_every: u64,
    /// Entries kept in the log behind the last snapshot (for peers that lag a little).
    pub keep_behind_snapshot: u64,
    /// How long [`MetadataNode::propose`] waits for its command to be applied.
    pub propose_timeout: Duration,
    /// The pause before retrying a peer that could not be reached.
    pub unreachable_backoff: Duration,
}

impl Default for MetadataConfig {
    /// Production defaults: an election 1.8–2.4 s after the controller's last heartbeat
    /// (lease 1.2 s + 0.6–1.2 s; KRaft's election is about 1 s), so that with the new
    /// controller's dated sessions (control.rs invariant 5) partitions the dead controller
    /// led are led again within the 5 s goal. Eight heartbeats fit in the shortest timeout.
    /// (1–2 s, the earlier setting, meant 3–4 s to an election with the lease.)
    fn default() -> Self {
        MetadataConfig {
            heartbeat_interval: Duration::from_millis(150),
            election_timeout_min: Duration::from_millis(600),
            election_timeout_max: Duration::from_millis(1200),
            snapshot_every: 5_000,
            keep_behind_snapshot: 1_000,
            propose_timeout: Duration::from_secs(10),
            unreachable_backoff: Duration::from_millis(250),
        }
    }
}

impl MetadataConfig {
    fn raft_config(&self) -> Result<Config, NodeError> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let config = Config {
            cluster_name: "weir-metadata".to_string(),
            heartbeat_interval: ms(self.heartbeat_interval),
            election_timeout_min: ms(self.election_timeout_min),
            election_timeout_max: ms(self.election_timeout_max),
            install_snapshot_timeout: ms(self.election_timeout_max).max(1000),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every.max(1)),
            max_in_snapshot_log_to_keep: self.keep_behind_snapshot,
            ..Config::default()
        };
        config
            .validate()
            .map_err(|e| NodeError::Config(e.to_string()))
    }
}

/// The Raft-level view of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataMetrics {
    pub node: NodeId,
    pub term: u64,
    /// The controller as this node knows it.
    pub controller: Option<NodeId>,
    pub state: ServerState,
    /// The index of the last entry in this node's log.
    pub last_log_index: Option<u64>,
    /// The index of the last entry applied (all applied entries are committed; openraft 0.9
    /// does not export the commit index itself, which is at least this).
    pub applied_index: Option<u64>,
    /// The last entry covered by this node's snapshot.
    pub snapshot_index: Option<u64>,
    /// The voters of the current membership.
    pub voters: BTreeSet<NodeId>,
    /// This node leads and a quorum acknowledged its leadership within the leader lease
    /// (`election_timeout_max`). A node restarted with its own committed vote on disk is a
    /// Raft leader for a moment before it hears of the newer term; it is not acknowledged,
    /// so it never acts as the controller on its stale metadata.
    pub acknowledged: bool,
}

/// A member of the metadata quorum. Cheap to clone: clones share the node.
#[derive(Clone)]
pub struct MetadataNode {
    id: NodeId,
    raft: MetadataRaft,
    applied: watch::Receiver<Arc<ClusterMetadata>>,
    propose_timeout: Duration,
    /// How recent a quorum's acknowledgement of this node's leadership must be for it to act
    /// as the controller (see [`MetadataMetrics::acknowledged`]).
    lease: Duration,
    log_closed: LogClosed,
}

impl std::fmt::Debug for MetadataNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataNode")
            .field("id", &self.id)
            .finish()
    }
}

impl MetadataNode {
    /// Starts node `id` over the log and snapshots under `dir`, reaching peers through
    /// `transport`. `voters` is the initial voter set (the `--peers` list); see the module
    /// docs for when it is used.
    pub async fn start(
        id: NodeId,
        dir: &Path,
        transport: Arc<dyn MetadataTransport>,
        voters: &BTreeMap<NodeId, NodeInfo>,
        config: &MetadataConfig,
    ) -> Result<MetadataNode, NodeError> {
        let raft_config = Arc::new(config.raft_config()?);
        let storage_err = |reason: String| NodeError::Storage {
            path: dir.display().to_string(),
            reason,
        };
        let log_store = LogStore::open(dir).map_err(storage_err)?;
        let log_closed = log_store.closed_watch();
        let state_machine = StateMachineStore::open(dir).map_err(storage_err)?;
        let applied = state_machine.subscribe();
        let network = NetworkFactory {
            from: id,
            transport,
            backoff: config.unreachable_backoff,
        };
        let raft = MetadataRaft::new(id, raft_config, network, log_store, state_machine)
            .await
            .map_err(|e| NodeError::Stopped(e.to_string()))?;
        let node = MetadataNode {
            id,
            raft,
            applied,
            propose_timeout: config.propose_timeout,
            lease: config.election_timeout_max,
            log_closed,
        };
        if voters.contains_key(&id) {
            node.initialize(voters).await?;
        }
        Ok(node)
    }

    async fn initialize(&self, voters: &BTreeMap<NodeId, NodeInfo>) -> Result<(), NodeError> {
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| NodeError::Stopped(e.to_string()))?;
        if initialized {
            return Ok(());
        }
        match self.raft.initialize(voters.clone()).await {
            Ok(()) => Ok(()),
            // Another voter's leader reached us first: the cluster is already formed.
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(RaftError::APIError(e)) => Err(NodeError::Config(e.to_string())),
            Err(RaftError::Fatal(f)) => Err(NodeError::Stopped(f.to_string())),
        }
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Proposes `command`. Only the controller may (invariant 1): elsewhere it fails at once
    /// with [`NodeError::NotController`] naming the controller when known. Returns once the
    /// command is committed and applied on this node, with its outcome; a command the state
    /// machine refused is [`NodeError::Rejected`] (committed as a no-op everywhere). If the
    /// outcome is not known within the propose timeout: [`NodeError::Unknown`].
    pub async fn propose(&self, command: MetadataCommand) -> Result<MetadataResponse, NodeError> {
        let write = self.raft.client_write(VersionedCommand::new(command));
        let result = tokio::time::timeout(self.propose_timeout, write)
            .await
            .map_err(|_| {
                NodeError::Unknown(format!(
                    "not applied within {:?} (no quorum?)",
                    self.propose_timeout
                ))
            })?;
        match result {
            Ok(resp) => resp.data.map_err(NodeError::Rejected),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(NodeError::NotController {
                    leader: f.leader_id,
                })
            }
            Err(RaftError::APIError(e)) => Err(NodeError::Unknown(e.to_string())),
            Err(RaftError::Fatal(f)) => Err(NodeError::Stopped(f.to_string())),
        }
    }

    /// The metadata applied on this node (it may trail the controller's).
    pub fn current(&self) -> Arc<ClusterMetadata> {
        self.applied.borrow().clone()
    }

    /// A receiver that sees every newly applied state (`changed().await`, then `borrow()`).
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterMetadata>> {
        self.applied.clone()
    }

    /// Waits until the applied metadata satisfies `pred`, at most `timeout`; returns it, or
    /// `None` on timeout.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&ClusterMetadata) -> bool,
    ) -> Option<Arc<ClusterMetadata>> {
        let mut rx = self.applied.clone();
        let wait = async {
            loop {
                let current = rx.borrow_and_update().clone();
                if pred(&current) {
                    return Some(current);
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }

    /// The applied metadata as of now, linearizably: only on the controller, after it has
    /// confirmed with a quorum that it still leads and applied everything committed before
    /// this call (what a decision that must not act on stale metadata reads).
    pub async fn read_linearizable(&self) -> Result<Arc<ClusterMetadata>, NodeError> {
        let barrier = tokio::time::timeout(self.propose_timeout, self.raft.ensure_linearizable())
            .await
            .map_err(|_| NodeError::Unknown("leadership not confirmed in time".to_string()))?;
        match barrier {
            Ok(_) => Ok(self.current()),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(NodeError::NotController {
                    leader: f.leader_id,
                })
            }
            Err(RaftError::APIError(e)) => Err(NodeError::Unknown(e.to_string())),
            Err(RaftError::Fatal(f)) => Err(NodeError::Stopped(f.to_string())),
        }
    }

    /// Whether this node is the controller: the Raft leader, acknowledged by a quorum within
    /// the lease ([`MetadataMetrics::acknowledged`]).
    pub fn is_controller(&self) -> bool {
        let m = self.metrics();
        m.state == ServerState::Leader && m.controller == Some(self.id) && m.acknowledged
    }

    fn acknowledged(&self, m: &openraft::RaftMetrics<NodeId, NodeInfo>) -> bool {
        m.running_state.is_ok()
            && m.state == ServerState::Leader
            && m.millis_since_quorum_ack
                .is_some_and(|ms| u128::from(ms) <= self.lease.as_millis())
    }

    /// The controller as this node knows it.
    pub fn controller(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// Term, controller, log and apply positions of this node.
    pub fn metrics(&self) -> MetadataMetrics {
        let rx = self.raft.metrics();
        // A Raft core stopped by a fatal error, or gone with a panic (its metrics sender is
        // dropped, the last values stay), keeps its last state in the metrics; it is shown
        // as what it is.
        let stopped = rx.has_changed().is_err();
        let m = rx.borrow();
        let running = m.running_state.is_ok() && !stopped;
        MetadataMetrics {
            node: self.id,
            term: m.current_term,
            controller: m.current_leader,
            state: if running {
                m.state
            } else {
                ServerState::Shutdown
            },
            last_log_index: m.last_log_index,
            applied_index: m.last_applied.as_ref().map(|l| l.index),
            snapshot_index: m.snapshot.as_ref().map(|l| l.index),
            voters: m.membership_config.voter_ids().collect(),
            acknowledged: running && self.acknowledged(&m),
        }
    }

    /// A receiver of openraft's own metrics, for whoever exports them.
    pub fn raft_metrics(&self) -> watch::Receiver<openraft::RaftMetrics<NodeId, NodeInfo>> {
        self.raft.metrics()
    }

    /// Adds `id` as a learner (it receives the log but does not vote) and waits until it has
    /// caught up. Only on the controller.
    pub async fn add_learner(&self, id: NodeId, info: NodeInfo) -> Result<(), NodeError> {
        self.membership_result(self.raft.add_learner(id, info, true).await)
    }

    /// Makes `voters` the voter set (joint consensus; nodes not named stay learners). Only on
    /// the controller; every new voter must be a learner already.
    pub async fn change_voters(&self, voters: BTreeSet<NodeId>) -> Result<(), NodeError> {
        self.membership_result(
            self.raft
                .change_membership(ChangeMembers::ReplaceAllVoters(voters), true)
                .await,
        )
    }

    /// Removes `id` from the Raft membership: a voter leaves the voter set (replaced by the
    /// learner `promote`, if given) and is dropped; a learner is dropped. Only on the
    /// controller. Refused if no voter would remain.
    pub async fn remove_member(
        &self,
        id: NodeId,
        promote: Option<NodeId>,
    ) -> Result<(), NodeError> {
        let voters: BTreeSet<NodeId> = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .voter_ids()
            .collect();
        if voters.contains(&id) {
            let mut next = voters;
            next.remove(&id);
            next.extend(promote);
            if next.is_empty() {
                return Err(NodeError::Config(format!(
                    "removing node {id} would leave the metadata quorum without a voter"
                )));
            }
            self.membership_result(
                self.raft
                    .change_membership(ChangeMembers::ReplaceAllVoters(next), false)
                    .await,
            )?;
        }
        let member = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .nodes()
            .any(|(n, _)| *n == id);
        if member {
            self.membership_result(
                self.raft
                    .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                    .await,
            )?;
        }
        Ok(())
    }

    /// Makes the learner `id` a voter. Only on the controller.
    pub async fn promote_learner(&self, id: NodeId) -> Result<(), NodeError> {
        self.membership_result(
            self.raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                .await,
        )
    }

    fn membership_result<T>(
        &self,
        r: Result<T, RaftError<NodeId, ClientWriteError<NodeId, NodeInfo>>>,
    ) -> Result<(), NodeError> {
        match r {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(NodeError::NotController {
                    leader: f.leader_id,
                })
            }
            Err(RaftError::APIError(e)) => Err(NodeError::Config(e.to_string())),
            Err(RaftError::Fatal(f)) => Err(NodeError::Stopped(f.to_string())),
        }
    }

    /// Answers a peer's `append_entries` (called by the cluster RPC server).
    pub async fn handle_append_entries(
        &self,
        req: AppendEntriesRequest<super::TypeConfig>,
    ) -> AppendResult {
        self.raft.append_entries(req).await
    }

    /// Answers a peer's `vote`.
    pub async fn handle_vote(&self, req: VoteRequest<NodeId>) -> VoteResult {
        self.raft.vote(req).await
    }

    /// Answers a peer's `install_snapshot` chunk.
    pub async fn handle_install_snapshot(
        &self,
        req: InstallSnapshotRequest<super::TypeConfig>,
    ) -> SnapshotResult {
        let r: Result<_, RaftError<NodeId, InstallSnapshotError>> =
            self.raft.install_snapshot(req).await;
        r
    }

    /// Stops Raft on this node and waits until its log is closed (so the directory can be
    /// opened again), at most [`SHUTDOWN_WAIT`]. Other clones of this handle then fail with
    /// [`NodeError::Stopped`].
    pub async fn shutdown(&self) -> Result<(), NodeError> {
        self.raft
            .shutdown()
            .await
            .map_err(|e| NodeError::Stopped(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + SHUTDOWN_WAIT;
        while !self.log_closed.is_closed() {
            if tokio::time::Instant::now() >= deadline {
                return Err(NodeError::Stopped(
                    "the Raft log is still open after shutdown".to_string(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }
}
