//! The controller side of the cluster over the peer RPC: proposals from any node
//! ([`Proposer`], [`ControlRequest::Propose`]), broker sessions kept by the controller from
//! every node's heartbeats ([`Controller`], [`run_heartbeats`]) with the fencing, unfencing
//! and elections they lead to, and the admission of a `--join` node as a Raft learner
//! ([`ControlRequest::Join`], [`join_cluster`]). [`ControlPlane`] starts all of it for one
//! node.
//!
//! It owns the *decisions to propose* and when; the decisions themselves are the pure
//! functions of `metadata::controller`, the consensus and the checks of every command are the
//! metadata plane's (`ClusterMetadata::apply`), the transport is `rpc`. It does not touch
//! partition data, the broker's files or HTTP.
//!
//! # Invariants
//!
//! 1. **Only the controller proposes** (cluster invariant 1). A node that wants a change
//!    proposes through [`Proposer`]: locally when it is the controller, else it sends
//!    [`ControlRequest::Propose`] to the controller, which proposes it as its own. A node that
//!    receives a proposal but is not the controller answers [`ControlReply::NotController`]
//!    (never forwards it again: one hop, no loops); the proposer follows the redirect until
//!    its deadline ([`ControlSettings::propose_deadline`]). A forwarded proposal whose answer
//!    is lost is reported as *unknown*, never retried blindly (it may have committed); one
//!    refused before it was sent (no connection, not the controller) is retried.
//! 2. **Peers may propose only what a broker may decide**: what its users ask for, their
//!    permission checked at the edge that took the request (topics: `CreateTopic`,
//!    `DeleteTopic`; `DecommissionNode`; users, tokens and ACLs: `Auth`; the engine's
//!    catalog: `UpsertProcessor`, `DeleteProcessor`, `SetProcessorPaused`, its functions and
//!    SQL catalog: `UpsertFunction`, `DeleteFunction`, `UpsertSqlSource`, `DeleteSqlSource`,
//!    `UpsertSqlQuery`, `DeleteSqlQuery`), an in-sync-set
//!    change of a partition *it leads* (`AlterPartition` whose `leader` is the sender; the
//!    state machine then checks leader and epochs) and producer-id blocks *for itself*
//!    (`AllocateProducerIds` naming the sender), alone or in a batch of such. Node
//!    management (`RegisterNode`, `FenceNode`, `UnregisterNode`), elections (`ElectLeader`),
//!    replica moves (`ReassignPartition`, `CompleteReassignment`) and task assignments
//!    (`AssignTasks`) are the controller's own decisions and are refused from any peer
//!    ([`ControlReply::Refused`], code `forbidden`): a peer cannot fence or unfence another
//!    node, move a leadership, or take a task. (The sender id is the envelope's,
//!    authenticated only under mutual TLS.)
//! 3. **Sessions live in the controller's memory, not in the log** (as in KRaft): every node
//!    sends [`ControlRequest::Heartbeat`] with its advertised addresses every
//!    [`ControlSettings::heartbeat_interval`]; the controller keeps the last one per node
//!    ([`Sessions`]) and itself is always alive. Only members of the metadata quorum (voters,
//!    and learners admitted by `Join`) get a session: a heartbeat from anyone else is refused.
//! 4. **Consequences are commands, decided on applied metadata and re-checked when applied**:
//!    a node whose session is older than [`ControlSettings::session_timeout`] and that the
//!    metadata shows live is fenced, in one batch with the re-election of every partition it
//!    led or was in-sync for (`controller::fence_node_commands`, leaders from the in-sync
//!    set); a node with a live session that the metadata shows missing, fenced or at other
//!    addresses is registered (`RegisterNode`: unfenced, addresses updated); partitions
//!    without a leader are elected once a replica of their in-sync set is live again
//!    (`controller::elect_offline_commands`). A decision taken on metadata that moved is
//!    refused by the state machine (epochs) and taken again on the next tick.
//! 5. **A new controller assumes everyone alive it can reach**: when a node becomes
//!    controller (a new Raft term), it forgets what an earlier term heard and starts a fresh
//!    session for every node in the metadata, so a controller change never fences a reachable
//!    broker by itself. A node its peer RPC already finds unreachable (typically the old
//!    controller, whose death caused the election) gets a session dated from when it was
//!    last heard, but never less than [`ControlSettings::heartbeat_interval`] × 3 of it left
//!    ([`Controller::with_liveness`]): a node that is gone is fenced that much sooner (the
//!    failover after a controller's death is not one Raft election *plus* a whole session),
//!    while a live node whose hello merely failed still has several heartbeats' time to
//!    reach the new controller.
//! 6. **A joining node is a learner first**: `Join` makes the controller add it to the Raft
//!    membership as a learner (it receives the log, never votes) and waits until it has
//!    caught up (bounded); it then heartbeats like any node and is registered as a broker. A
//!    node id that is already a member at another cluster address is refused, never taken
//!    over (node ids are never reused silently).
//! 7. **A controlled shutdown fences at once** (SIGTERM): the node stops heartbeating, then
//!    sends [`ControlRequest::Shutdown`]; the controller forgets its session and proposes the
//!    same fence-and-re-elect batch as for an expired session, so its leaderships move to
//!    in-sync replicas before the node stops serving. Heartbeats that were already in flight
//!    are ignored for a short grace ([`ControlSettings::heartbeat_interval`] × 4), so they do
//!    not unfence it; after that a heartbeat (a restart) registers it again. When the
//!    controller itself shuts down it fences itself the same way and stops renewing its own
//!    session. The node waits for this at most a few seconds ([`SHUTDOWN_WAIT`]).
//! 8. **A node acts on its metadata only once it has caught up** ([`wait_caught_up`]): after
//!    a start its local metadata log may be stale (it missed its own fencing and the
//!    elections that followed), so its applier waits until the controller has answered a
//!    heartbeat with "registered" and the local metadata has applied the controller's
//!    version at that moment. "The controller" is a Raft leader whose leadership a quorum
//!    acknowledged within the lease ([`MetadataMetrics::acknowledged`]): a node restarted
//!    with its own committed vote on disk is a Raft leader for a moment before it hears of
//!    the newer term, and must not answer its own heartbeat "registered" on its stale
//!    metadata (found by the e2e failover test: a restarted old controller applied its old
//!    leaderships for ~0.1 s).
//!
//! 9. **Replicas move only by reassignment, decided by the controller** (`metadata::balance`,
//!    applied by `metadata::reassignment`): completions of moves whose new replicas are in
//!    sync first, then moves off decommissioned (draining) nodes, then — while every node is
//!    live and none draining, and [`ControlSettings::auto_rebalance`] — moves that even out
//!    replica counts (a joined node gets its share), and once the cluster has been settled
//!    for [`ControlSettings::leader_balance_delay`], leadership balancing (replica lists
//!    reordered so preferred leaders are spread, then preferred-leader elections); at most
//!    [`ControlSettings::max_moves_in_flight`] partitions at once. A drained node (no
//!    replica left) leaves the Raft membership — a voter replaced by a live learner when
//!    there is one, and learners are promoted while there are fewer than [`MIN_VOTERS`]
//!    voters — and is then unregistered, its id retired (`Join` and registration of it are
//!    refused). A decommissioned controller removes itself from the quorum (openraft steps
//!    a leader down once the membership without it is committed) and the next controller
//!    unregisters it.
//! 10. **Tasks are placed by the controller alone** (`metadata::placement`, applied by
//!     `metadata::catalog`): on every tick, after elections and before replica moves, it
//!     proposes the `AssignTasks` placement returns — the tasks of a fenced, draining or
//!     unregistered node move at once (to a standby when one is assignable), a new
//!     processor's tasks are assigned, a joined or returning node gets its share — at most
//!     [`ControlSettings::max_task_moves`] tasks per decision, within each node's
//!     [`ControlSettings::task_capacity`]. A settled assignment is a fixed point: nothing
//!     moves on an unchanged cluster. Each owner change bumps the task's assignment epoch,
//!     which fences the previous owner's commits. A decommissioned node leaves only once it
//!     owns no task (`balance::drained_nodes`). Placement reads what the live nodes last
//!     reported of their copies of task state ([`TaskCopyReport`], carried by heartbeats;
//!     the controller's own from its [`NodeReportBoard`]), held in memory like sessions: a
//!     dead owner's task goes to the most caught-up copy, and a task with state moves off a
//!     live owner only onto a copy within its `acceptable_recovery_lag` (else that node
//!     warms up first). Reports only order and delay moves; they never make one unsafe
//!     (epochs still fence). A graceful move its live owner has not released within
//!     [`ControlSettings::release_timeout`] is forced (`TaskMove::force`: the epoch moves at
//!     once, fencing the owner), so a stuck owner cannot hold a task forever.
//!
//! [`MetadataMetrics::acknowledged`]: super::metadata::MetadataMetrics::acknowledged

use crate::cluster::applier::ProposeFailure;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::NodeId;
use super::metadata::balance::{
    DEFAULT_MAX_MOVES_IN_FLIGHT, completion_commands, decommission_moves, drained_nodes,
    preferred_leader_elections, preferred_reorders, rebalance_moves, settled,
};
use super::metadata::controller::{Sessions, elect_offline_commands, fence_node_commands};
use super::metadata::placement::{
    DEFAULT_MAX_TASK_MOVES, TaskCapacity, TaskCopies, capacity_from_budgets, merge_capacity,
    placement_commands,
};
use super::metadata::{
    ClusterMetadata, MetadataCommand, MetadataError, MetadataNode, MetadataResponse, NodeBudget,
    NodeError, NodeInfo, NodeState, TaskMove,
};
use super::rpc::{
    ControlRequest, Json, PeerClient, PeerRequest, PeerResponse, Peers, Refusal, RpcError,
};
use crate::ErrorKind;

/// How long a live owner has to release a task moved off it (it commits first, usually
/// well under a second) before the controller forces the move.
pub const DEFAULT_RELEASE_TIMEOUT: Duration = Duration::from_secs(30);

/// Default broker session timeout (`--broker-session-timeout-ms`): well under Kafka's 9 s,
/// so that a killed node's partitions are led again within the 5 s goal.
pub const DEFAULT_SESSION_TIMEOUT_MS: u64 = 3_000;
/// Shortest session timeout accepted (a few heartbeats must fit in it).
pub const MIN_SESSION_TIMEOUT_MS: u64 = 1_000;
/// Longest session timeout accepted.
pub const MAX_SESSION_TIMEOUT_MS: u64 = 300_000;
/// How long a proposal through [`Proposer`] may take, redirects included.
pub const PROPOSE_DEADLINE: Duration = Duration::from_secs(10);
/// How long the controller waits for a joining learner to catch up.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a node waits for its controlled shutdown before it stops anyway.
pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);
/// The most proposals the controller makes in one tick (the rest wait for the next).
const MAX_PROPOSALS_PER_TICK: usize = 64;
/// The controller promotes live learners while the metadata quorum has fewer voters.
pub const MIN_VOTERS: usize = 3;
/// Default [`ControlSettings::leader_balance_delay`] (`--leader-balance-delay-ms`).
pub const DEFAULT_LEADER_BALANCE_DELAY: Duration = Duration::from_secs(30);
/// The most leaderships one decision moves to preferred replicas.
const MAX_LEADER_MOVES: usize = 16;

/// Why a control setting is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid control setting: {0}")]
pub struct SettingsError(pub String);

/// Timing of sessions and proposals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlSettings {
    /// A node not heard from for longer is fenced.
    pub session_timeout: Duration,
    /// How often each node heartbeats to the controller.
    pub heartbeat_interval: Duration,
    /// How often the controller looks for sessions to expire and nodes to (re)register.
    pub tick: Duration,
    /// The bound on one [`Proposer::propose`], redirects included.
    pub propose_deadline: Duration,
    /// The bound on the controller's wait for a joining learner to catch up.
    pub join_timeout: Duration,
    /// Whether the controller evens out replica counts by itself (onto a joined node).
    pub auto_rebalance: bool,
    /// Partitions reassigned at once (decommission and rebalancing).
    pub max_moves_in_flight: usize,
    /// How long the cluster must have been settled (every node live, nothing moving, every
    /// in-sync set full) before the controller balances leaderships (with `auto_rebalance`).
    pub leader_balance_delay: Duration,
    /// Tasks one placement decision moves at most.
    pub max_task_moves: usize,
    /// The most tasks each node may own (a node absent has no limit); each node is also
    /// held within the Wasm budget it reports (`placement::capacity_from_budgets`).
    pub task_capacity: TaskCapacity,
    /// How long a live owner has to release a task moved off it gracefully before the move
    /// is forced (the epoch bumped, fencing the owner).
    pub release_timeout: Duration,
}

impl ControlSettings {
    /// Settings for a session timeout of `timeout_ms` (checked): heartbeats every sixth of
    /// it, at most every 500 ms; the controller's tick at half that.
    pub fn with_session_timeout_ms(timeout_ms: u64) -> Result<ControlSettings, SettingsError> {
        if !(MIN_SESSION_TIMEOUT_MS..=MAX_SESSION_TIMEOUT_MS).contains(&timeout_ms) {
            return Err(SettingsError(format!(
                "the broker session timeout must be between {MIN_SESSION_TIMEOUT_MS} and \
                 {MAX_SESSION_TIMEOUT_MS} ms, not {timeout_ms}"
            )));
        }
        Ok(ControlSettings::unchecked(Duration::from_millis(
            timeout_ms,
        )))
    }

    /// Settings for any session timeout (tests use short ones).
    pub fn unchecked(session_timeout: Duration) -> ControlSettings {
        let heartbeat_interval = (session_timeout / 6).min(Duration::from_millis(500));
        ControlSettings {
            session_timeout,
            heartbeat_interval,
            tick: heartbeat_interval / 2,
            propose_deadline: PROPOSE_DEADLINE,
            join_timeout: JOIN_TIMEOUT,
            auto_rebalance: true,
            max_moves_in_flight: DEFAULT_MAX_MOVES_IN_FLIGHT,
            leader_balance_delay: DEFAULT_LEADER_BALANCE_DELAY,
            max_task_moves: DEFAULT_MAX_TASK_MOVES,
            task_capacity: TaskCapacity::new(),
            release_timeout: DEFAULT_RELEASE_TIMEOUT,
        }
    }
}

impl Default for ControlSettings {
    fn default() -> Self {
        ControlSettings::unchecked(Duration::from_millis(DEFAULT_SESSION_TIMEOUT_MS))
    }
}

/// The answer to every [`ControlRequest`], carried as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlReply {
    /// The proposal committed: the state machine's answer (its refusal, too).
    Proposed {
        outcome: Result<MetadataResponse, MetadataError>,
    },
    /// The heartbeat renewed the session; `registered`: the applied metadata shows the node
    /// live at the addresses it sent (else the controller registers it shortly).
    Heartbeat {
        registered: bool,
        /// The controller's applied metadata version when it answered: a node that was
        /// told `registered` acts on its own metadata only once it has applied this far
        /// (its local log may be stale after a restart).
        #[serde(default)]
        version: u64,
    },
    /// The node is a learner of the metadata quorum (now or already).
    Joined,
    /// The node is fenced and leads nothing (controlled shutdown done).
    ShutDown,
    /// The answering node is not the controller; `leader` is, when known, at `addr`.
    NotController {
        leader: Option<NodeId>,
        addr: Option<String>,
    },
    /// The request is not allowed (invariants 2, 3, 6).
    Refused { code: String, message: String },
    /// The controller could not complete it; `unknown`: a proposal may still commit.
    Failed {
        code: String,
        message: String,
        unknown: bool,
    },
}

/// Why a [`Proposer::propose`] did not give the state machine's answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProposeError {
    /// The state machine refused the command (committed as a no-op).
    #[error(transparent)]
    Rejected(#[from] MetadataError),
    /// No controller took the proposal before the deadline (none elected, unreachable).
    #[error("no controller took the proposal within {waited:?}: {last}")]
    NoController { waited: Duration, last: String },
    /// The proposal may or may not have committed (an answer was lost, or the wait for it
    /// timed out): read the metadata before retrying.
    #[error("the outcome of the proposal is unknown: {0}")]
    Unknown(String),
    /// The controller refused to propose it for this node.
    #[error("the controller refused the proposal: {code}: {message}")]
    Refused { code: String, message: String },
    /// The metadata plane is stopped on this node (shutting down).
    #[error("the metadata plane is stopped: {0}")]
    Stopped(String),
    /// A message could not be encoded or decoded.
    #[error("control message: {0}")]
    Protocol(String),
}

impl ProposeError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ProposeError::Rejected(e) => e.code(),
            ProposeError::NoController { .. } => "not_controller",
            ProposeError::Unknown(_) => "request_timed_out",
            ProposeError::Refused { .. } => "forbidden",
            ProposeError::Stopped(_) => "shutting_down",
            ProposeError::Protocol(_) => "peer_protocol",
        }
    }

    /// Coarse class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ProposeError::Rejected(e) => e.kind(),
            ProposeError::NoController { .. }
            | ProposeError::Unknown(_)
            | ProposeError::Stopped(_) => ErrorKind::Unavailable,
            ProposeError::Refused { .. } => ErrorKind::Forbidden,
            ProposeError::Protocol(_) => ErrorKind::Internal,
        }
    }
}

/// Whether peer `from` may have the controller propose `cmd` (invariant 2).
pub fn peer_may_propose(from: NodeId, cmd: &MetadataCommand) -> Result<(), String> {
    match cmd {
        // A user's requests that any node takes (the edge checked the user's permission).
        MetadataCommand::CreateTopic(_)
        | MetadataCommand::DeleteTopic { .. }
        | MetadataCommand::DecommissionNode { .. }
        | MetadataCommand::Auth { .. }
        | MetadataCommand::UpsertProcessor { .. }
        | MetadataCommand::DeleteProcessor { .. }
        | MetadataCommand::SetProcessorPaused { .. }
        | MetadataCommand::UpsertFunction { .. }
        | MetadataCommand::DeleteFunction { .. }
        | MetadataCommand::UpsertSqlSource { .. }
        | MetadataCommand::DeleteSqlSource { .. }
        | MetadataCommand::UpsertSqlQuery { .. }
        | MetadataCommand::DeleteSqlQuery { .. }
        | MetadataCommand::CreateSqlSource { .. }
        | MetadataCommand::CreateSqlQuery { .. }
        | MetadataCommand::PutArtifact { .. } => Ok(()),
        MetadataCommand::AlterPartition { leader, .. } if *leader == from => Ok(()),
        MetadataCommand::AlterPartition { leader, .. } => Err(format!(
            "node {from} may not change the in-sync set of a partition led by node {leader}"
        )),
        MetadataCommand::AllocateProducerIds { node } if *node == from => Ok(()),
        // A task's owner releases it (a graceful move), for itself only.
        MetadataCommand::ReleaseTask { node, .. } if *node == from => Ok(()),
        MetadataCommand::ReleaseTask { node, .. } => Err(format!(
            "node {from} may not release a task for node {node}"
        )),
        MetadataCommand::AllocateProducerIds { node } => Err(format!(
            "node {from} may not allocate producer ids for node {node}"
        )),
        MetadataCommand::Batch { commands } => {
            commands.iter().try_for_each(|c| peer_may_propose(from, c))
        }
        MetadataCommand::RegisterNode { .. }
        | MetadataCommand::FenceNode { .. }
        | MetadataCommand::UnregisterNode { .. }
        | MetadataCommand::ElectLeader { .. }
        | MetadataCommand::ReassignPartition { .. }
        | MetadataCommand::CompleteReassignment { .. }
        | MetadataCommand::AssignTasks { .. } => Err(format!(
            "node {from} may not propose {}: only the controller decides node sessions, \
             elections, replica moves and task assignments",
            command_name(cmd)
        )),
    }
}

fn command_name(cmd: &MetadataCommand) -> &'static str {
    match cmd {
        MetadataCommand::RegisterNode { .. } => "register_node",
        MetadataCommand::FenceNode { .. } => "fence_node",
        MetadataCommand::UnregisterNode { .. } => "unregister_node",
        MetadataCommand::DecommissionNode { .. } => "decommission_node",
        MetadataCommand::Auth { .. } => "auth",
        MetadataCommand::ReassignPartition { .. } => "reassign_partition",
        MetadataCommand::CompleteReassignment { .. } => "complete_reassignment",
        MetadataCommand::CreateTopic(_) => "create_topic",
        MetadataCommand::DeleteTopic { .. } => "delete_topic",
        MetadataCommand::ElectLeader { .. } => "elect_leader",
        MetadataCommand::AlterPartition { .. } => "alter_partition",
        MetadataCommand::AllocateProducerIds { .. } => "allocate_producer_ids",
        MetadataCommand::UpsertProcessor { .. } => "upsert_processor",
        MetadataCommand::DeleteProcessor { .. } => "delete_processor",
        MetadataCommand::SetProcessorPaused { .. } => "set_processor_paused",
        MetadataCommand::AssignTasks { .. } => "assign_tasks",
        MetadataCommand::ReleaseTask { .. } => "release_task",
        MetadataCommand::UpsertFunction { .. } => "upsert_function",
        MetadataCommand::DeleteFunction { .. } => "delete_function",
        MetadataCommand::UpsertSqlSource { .. } => "upsert_sql_source",
        MetadataCommand::DeleteSqlSource { .. } => "delete_sql_source",
        MetadataCommand::UpsertSqlQuery { .. } => "upsert_sql_query",
        MetadataCommand::DeleteSqlQuery { .. } => "delete_sql_query",
        MetadataCommand::CreateSqlSource { .. } => "create_sql_source",
        MetadataCommand::CreateSqlQuery { .. } => "create_sql_query",
        MetadataCommand::PutArtifact { .. } => "put_artifact",
        MetadataCommand::Batch { .. } => "batch",
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The cluster address of node `id` as this node knows it: its Raft membership entry, else
/// its registration in the metadata.
pub fn member_addr(node: &MetadataNode, id: NodeId) -> Option<String> {
    let from_membership = node
        .raft_metrics()
        .borrow()
        .membership_config
        .nodes()
        .find(|(n, _)| **n == id)
        .map(|(_, info)| info.cluster_addr.clone());
    from_membership
        .or_else(|| {
            node.current()
                .nodes
                .get(&id)
                .map(|n| n.info.cluster_addr.clone())
        })
        .filter(|a| !a.is_empty())
}

/// The client of node `id`: a known peer, else one dialed at its member address.
fn client_of(node: &MetadataNode, peers: &Peers, id: NodeId) -> Option<Arc<PeerClient>> {
    peers
        .client(id)
        .or_else(|| member_addr(node, id).and_then(|addr| peers.upsert(id, &addr)))
}

/// What the controller remembers of the current term (invariant 5).
#[derive(Default)]
struct Term {
    /// The Raft term these sessions belong to.
    term: Option<u64>,
    sessions: Sessions,
    /// The addresses each node sent in its last heartbeat of this term.
    reported: BTreeMap<NodeId, NodeInfo>,
    /// The task copies each node reported in its last heartbeat of this term.
    copies: BTreeMap<NodeId, Vec<TaskCopyReport>>,
    /// The Wasm budget each node reported in its last heartbeat of this term.
    budgets: BTreeMap<NodeId, NodeBudget>,
    /// Graceful task moves waiting for their owner's release, and since when this term has
    /// seen each: (processor, partition, epoch, target).
    releases: BTreeMap<(String, i32, u64, NodeId), Instant>,
    /// Nodes that shut down, and when: their late heartbeats are ignored for a grace.
    left: BTreeMap<NodeId, Instant>,
    /// Since when the applied metadata has been settled (`balance::settled`), this term.
    settled_since: Option<Instant>,
}

/// The controller's side of sessions, proposals and joins, on every node: it acts only while
/// its node is the controller and answers [`ControlReply::NotController`] otherwise.
pub struct Controller {
    node: MetadataNode,
    /// This node's own addresses (the controller registers itself).
    local: NodeInfo,
    settings: ControlSettings,
    term: Mutex<Term>,
    wake: Notify,
    /// This node is shutting down: it no longer renews its own session.
    leaving: std::sync::atomic::AtomicBool,
    /// How long a node has been silent to this node's peer RPC (`None`: reachable), used to
    /// date the sessions a new term starts with (invariant 5).
    liveness: Option<Liveness>,
    /// This node's own task copies (the controller does not heartbeat to itself).
    local_copies: NodeReportBoard,
}

/// See [`Controller::with_liveness`].
pub type Liveness = Arc<dyn Fn(NodeId) -> Option<Duration> + Send + Sync>;

/// Most task copies one heartbeat reports (the rest are left out: their moves are not
/// warmed up).
pub const MAX_REPORTED_COPIES: usize = 10_000;

/// What a node reports of its copy of one task's state with its heartbeat (KIP-441): the
/// task it runs (lag 0) or keeps a standby or warm-up of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCopyReport {
    pub processor: String,
    pub partition: i32,
    /// Changelog records the copy is behind; `None` while the copy is first being made.
    pub lag: Option<u64>,
    /// Whether the task has state (changelogs).
    pub stateful: bool,
}

/// A broker heartbeat: the node's addresses (as [`NodeInfo`], flattened, so that an older
/// controller reads it as before) and its task copies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatBody {
    #[serde(flatten)]
    pub info: NodeInfo,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<TaskCopyReport>,
    /// The node's Wasm budget for tasks (placement keeps the node within it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<NodeBudget>,
}

/// What this node's engine last reported — its task copies and its Wasm budget — read by
/// its heartbeats and, on the controller, by placement. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct NodeReportBoard(Arc<Mutex<NodeReport>>);

type NodeReport = (Arc<Vec<TaskCopyReport>>, Option<NodeBudget>);

impl NodeReportBoard {
    /// Replaces the copies (at most [`MAX_REPORTED_COPIES`] are kept).
    pub fn set(&self, mut copies: Vec<TaskCopyReport>) {
        copies.truncate(MAX_REPORTED_COPIES);
        self.0.lock().unwrap_or_else(|p| p.into_inner()).0 = Arc::new(copies);
    }

    pub fn get(&self) -> Arc<Vec<TaskCopyReport>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).0.clone()
    }

    pub fn set_budget(&self, budget: NodeBudget) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).1 = Some(budget);
    }

    pub fn budget(&self) -> Option<NodeBudget> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).1
    }
}

impl Controller {
    pub fn new(node: MetadataNode, local: NodeInfo, settings: ControlSettings) -> Controller {
        Controller {
            node,
            local,
            settings,
            term: Mutex::new(Term::default()),
            wake: Notify::new(),
            leaving: std::sync::atomic::AtomicBool::new(false),
            liveness: None,
            local_copies: NodeReportBoard::default(),
        }
    }

    /// Reads this node's own task copies from `board` (what its heartbeats carry).
    pub fn with_task_copies(mut self, board: NodeReportBoard) -> Controller {
        self.local_copies = board;
        self
    }

    /// Dates the sessions of a new term from `silent_for` (invariant 5): for each node it
    /// returns `None` while the node is reachable, else how long it has been silent.
    pub fn with_liveness(mut self, silent_for: Liveness) -> Controller {
        self.liveness = Some(silent_for);
        self
    }

    /// When the session of `node` starts in a new term that begins at `now` (invariant 5).
    fn session_start(&self, node: NodeId, now: Instant) -> Instant {
        let silent = match (&self.liveness, node == self.node.id()) {
            (Some(silent_for), false) => silent_for(node),
            _ => None,
        };
        dated_session_start(&self.settings, now, silent)
    }

    pub fn settings(&self) -> &ControlSettings {
        &self.settings
    }

    /// The Raft term if this node is the controller (acknowledged by a quorum within the
    /// lease, invariant 8).
    fn controller_term(&self) -> Option<u64> {
        let m = self.node.metrics();
        (m.state == openraft::ServerState::Leader
            && m.controller == Some(self.node.id())
            && m.acknowledged)
            .then_some(m.term)
    }

    /// The redirect to the controller as this node knows it.
    fn not_controller(&self) -> ControlReply {
        let leader = self.node.controller().filter(|l| *l != self.node.id());
        ControlReply::NotController {
            leader,
            addr: leader.and_then(|l| member_addr(&self.node, l)),
        }
    }

    /// Locks the current term's state, starting fresh sessions if this node became
    /// controller in a new term (invariant 5); `None` if it is not the controller.
    fn begin(&self, now: Instant) -> Option<MutexGuard<'_, Term>> {
        let term = self.controller_term()?;
        let mut state = lock(&self.term);
        if state.term != Some(term) {
            let meta = self.node.current();
            let mut nodes: Vec<NodeId> = meta.nodes.keys().copied().collect();
            nodes.push(self.node.id());
            state.sessions.reset(Vec::new(), now);
            let mut silent = Vec::new();
            for id in nodes {
                let start = self.session_start(id, now);
                if start < now {
                    silent.push(id);
                }
                state.sessions.heartbeat(id, start);
            }
            state.reported.clear();
            state.copies.clear();
            state.budgets.clear();
            state.releases.clear();
            state.left.clear();
            state.settled_since = None;
            state.term = Some(term);
            tracing::info!(
                term,
                nodes = meta.nodes.len(),
                ?silent,
                "became controller: every broker starts a session (shorter for the silent ones)"
            );
        }
        Some(state)
    }

    fn is_member(&self, id: NodeId) -> bool {
        self.node
            .raft_metrics()
            .borrow()
            .membership_config
            .nodes()
            .any(|(n, _)| *n == id)
    }

    /// A broker's heartbeat (invariant 3).
    pub fn heartbeat(&self, from: NodeId, body: HeartbeatBody) -> ControlReply {
        let HeartbeatBody {
            info,
            mut copies,
            budget,
        } = body;
        copies.truncate(MAX_REPORTED_COPIES);
        let now = Instant::now();
        if !self.is_member(from) {
            if self.controller_term().is_none() {
                return self.not_controller();
            }
            if self.node.current().retired.contains(&from) {
                return ControlReply::Refused {
                    code: "node_retired".into(),
                    message: format!(
                        "node {from} was decommissioned and is no longer part of the cluster; \
                         stop it"
                    ),
                };
            }
            return ControlReply::Refused {
                code: "not_member".into(),
                message: format!(
                    "node {from} is not a member of the metadata quorum; start it with --join"
                ),
            };
        }
        let Some(mut state) = self.begin(now) else {
            return self.not_controller();
        };
        let grace = self.settings.heartbeat_interval * 4;
        if let Some(left) = state.left.get(&from).copied() {
            if now.saturating_duration_since(left) < grace {
                // Sent before its controlled shutdown, arrived after: not a restart.
                return ControlReply::Heartbeat {
                    registered: false,
                    version: 0,
                };
            }
            state.left.remove(&from);
        }
        state.sessions.heartbeat(from, now);
        let current = self.node.current();
        let registered = is_registered_as(&current, from, &info);
        let version = current.version;
        state.reported.insert(from, info);
        state.copies.insert(from, copies);
        match budget {
            Some(b) => state.budgets.insert(from, b),
            None => state.budgets.remove(&from),
        };
        drop(state);
        if !registered {
            self.wake.notify_one();
        }
        ControlReply::Heartbeat {
            registered,
            version,
        }
    }

    /// A proposal from peer `from` (invariants 1 and 2).
    pub async fn propose_for_peer(&self, from: NodeId, cmd: MetadataCommand) -> ControlReply {
        if let Err(message) = peer_may_propose(from, &cmd) {
            tracing::warn!(peer = from, %message, "refused a peer's proposal");
            return ControlReply::Refused {
                code: "forbidden".into(),
                message,
            };
        }
        match self.node.propose(cmd).await {
            Ok(r) => ControlReply::Proposed { outcome: Ok(r) },
            Err(NodeError::Rejected(e)) => ControlReply::Proposed { outcome: Err(e) },
            Err(NodeError::NotController { .. }) => self.not_controller(),
            Err(e @ NodeError::Unknown(_)) => ControlReply::Failed {
                code: e.code().into(),
                message: e.to_string(),
                unknown: true,
            },
            Err(e) => ControlReply::Failed {
                code: e.code().into(),
                message: e.to_string(),
                unknown: false,
            },
        }
    }

    /// A `--join` node asks to become a learner (invariant 6).
    pub async fn join(&self, from: NodeId, info: NodeInfo) -> ControlReply {
        if self.controller_term().is_none() {
            return self.not_controller();
        }
        if let Err(e) = super::config::check_addr(&info.cluster_addr) {
            return ControlReply::Refused {
                code: "invalid_address".into(),
                message: e.to_string(),
            };
        }
        let existing = {
            let metrics = self.node.raft_metrics();
            let metrics = metrics.borrow();
            metrics
                .membership_config
                .nodes()
                .find(|(n, _)| **n == from)
                .map(|(_, i)| i.cluster_addr.clone())
        };
        let registered = self
            .node
            .current()
            .nodes
            .get(&from)
            .map(|n| n.info.cluster_addr.clone())
            .filter(|a| !a.is_empty());
        if self.node.current().retired.contains(&from) {
            return ControlReply::Refused {
                code: "node_retired".into(),
                message: format!(
                    "node id {from} was decommissioned; node ids are never reused: start the \
                     node with a new --node-id and an empty data directory"
                ),
            };
        }
        if let Some(addr) = existing.as_ref().or(registered.as_ref())
            && *addr != info.cluster_addr
        {
            return ControlReply::Refused {
                code: "node_id_in_use".into(),
                message: format!(
                    "node id {from} is already a member at {addr}, not {}; node ids are never \
                     reused",
                    info.cluster_addr
                ),
            };
        }
        if existing.is_some() {
            return ControlReply::Joined;
        }
        tracing::info!(node = from, %info, "adding a joining node as a learner");
        let added = tokio::time::timeout(
            self.settings.join_timeout,
            self.node.add_learner(from, info),
        )
        .await;
        match added {
            Ok(Ok(())) => {
                tracing::info!(node = from, "the joining node is a learner");
                ControlReply::Joined
            }
            Ok(Err(NodeError::NotController { .. })) => self.not_controller(),
            Ok(Err(e)) => ControlReply::Failed {
                code: e.code().into(),
                message: e.to_string(),
                unknown: true,
            },
            Err(_) => ControlReply::Failed {
                code: "request_timed_out".into(),
                message: format!(
                    "the learner did not catch up within {:?}",
                    self.settings.join_timeout
                ),
                unknown: true,
            },
        }
    }

    /// Node `from` shuts down (invariant 7): forget its session and fence it, moving its
    /// leaderships to in-sync replicas. Retries a few times when the metadata moved under
    /// the decision.
    pub async fn shutdown_node(&self, from: NodeId) -> ControlReply {
        if !self.is_member(from) {
            if self.controller_term().is_none() {
                return self.not_controller();
            }
            return ControlReply::Refused {
                code: "not_member".into(),
                message: format!("node {from} is not a member of the metadata quorum"),
            };
        }
        {
            let now = Instant::now();
            let Some(mut state) = self.begin(now) else {
                return self.not_controller();
            };
            state.sessions.remove(from);
            state.reported.remove(&from);
            state.copies.remove(&from);
            state.budgets.remove(&from);
            state.left.insert(from, now);
        }
        if from == self.node.id() {
            self.leaving
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let mut last = String::new();
        for _ in 0..5 {
            let meta = self.node.current();
            if !meta.is_live(from) {
                return ControlReply::ShutDown;
            }
            match self.node.propose(fence_node_commands(&meta, from)).await {
                Ok(_) => {
                    tracing::info!(
                        node = from,
                        "controlled shutdown: fenced, leaderships moved"
                    );
                    return ControlReply::ShutDown;
                }
                Err(NodeError::Rejected(e)) => last = e.to_string(),
                Err(NodeError::NotController { .. }) => return self.not_controller(),
                Err(e) => {
                    return ControlReply::Failed {
                        code: e.code().into(),
                        message: e.to_string(),
                        unknown: true,
                    };
                }
            }
        }
        ControlReply::Failed {
            code: "conflict".into(),
            message: format!("the metadata kept moving under the shutdown of node {from}: {last}"),
            unknown: false,
        }
    }

    /// The next command the controller should propose now, with why (invariant 4); `None`
    /// when there is nothing to do or this node is not the controller.
    fn next_decision(&self, now: Instant) -> Option<(MetadataCommand, String)> {
        let mut state = self.begin(now)?;
        let me = self.node.id();
        if !self.leaving.load(std::sync::atomic::Ordering::SeqCst) {
            state.sessions.heartbeat(me, now);
            state.reported.insert(me, self.local.clone());
        }
        let meta = self.node.current();
        let timeout = self.settings.session_timeout;
        for (&id, info) in &state.reported {
            if meta.retired.contains(&id) {
                continue;
            }
            if state.sessions.is_alive(id, now, timeout) && !is_registered_as(&meta, id, info) {
                let why = match meta.nodes.get(&id) {
                    None => format!("node {id} registers ({info})"),
                    Some(n) if n.fenced => format!("node {id} is back: unfenced ({info})"),
                    Some(_) => format!("node {id} changed its addresses ({info})"),
                };
                return Some((
                    MetadataCommand::RegisterNode {
                        node: id,
                        info: info.clone(),
                    },
                    why,
                ));
            }
        }
        for id in state.sessions.expired(now, timeout) {
            if meta.is_live(id) {
                return Some((
                    fence_node_commands(&meta, id),
                    format!("node {id} missed its session ({timeout:?}): fenced"),
                ));
            }
        }
        for &id in meta.nodes.keys() {
            // A node known to the metadata but without a session (registered by this term's
            // log after `begin`): it gets one now, like everyone at the start of a term.
            if !state.sessions.contains(id) {
                state.sessions.heartbeat(id, now);
            }
        }
        let settled_for = if settled(&meta) {
            now.saturating_duration_since(*state.settled_since.get_or_insert(now))
        } else {
            state.settled_since = None;
            Duration::ZERO
        };
        // What the live nodes (this one included) last reported of their task copies.
        let mut copies = TaskCopies::default();
        let own = self.local_copies.get();
        let reports = state
            .copies
            .iter()
            .filter(|(id, _)| **id != me && state.sessions.is_alive(**id, now, timeout))
            .map(|(id, c)| (*id, c.as_slice()))
            .chain(std::iter::once((me, own.as_slice())));
        for (id, reported) in reports {
            for c in reported {
                copies.add(id, &c.processor, c.partition, c.lag, c.stateful);
            }
        }
        // Each node's capacity: the configured one, within its reported Wasm budget.
        let mut budgets = state.budgets.clone();
        if let Some(b) = self.local_copies.budget() {
            budgets.insert(me, b);
        }
        let capacity = merge_capacity(
            &self.settings.task_capacity,
            &capacity_from_budgets(&meta, &budgets),
        );
        // Graceful moves whose live owner has not released the task in time are forced.
        let waiting: BTreeSet<(String, i32, u64, NodeId)> = meta
            .all_tasks()
            .filter_map(|(p, i, t)| Some((p.to_string(), i, t.epoch, t.moving_to?)))
            .collect();
        state.releases.retain(|k, _| waiting.contains(k));
        for k in waiting {
            state.releases.entry(k).or_insert(now);
        }
        let overdue: Vec<(String, i32, u64, NodeId)> = state
            .releases
            .iter()
            .filter(|(_, since)| {
                now.saturating_duration_since(**since) > self.settings.release_timeout
            })
            .map(|(k, _)| k.clone())
            .collect();
        drop(state);
        if let Some(c) = forced_release_commands(&meta, &overdue) {
            return Some((
                c,
                format!("{} task(s) not released in time: moved", overdue.len()),
            ));
        }
        if let Some(c) = elect_offline_commands(&meta) {
            return Some((
                c,
                "partitions without a leader have a live in-sync replica".into(),
            ));
        }
        if let Some(d) = self.placement_decision(&meta, &copies, &capacity) {
            return Some(d);
        }
        self.move_decision(&meta, settled_for)
    }

    /// The next task assignments (invariant 10), as one batch; `None` when the assignment is
    /// settled.
    fn placement_decision(
        &self,
        meta: &ClusterMetadata,
        copies: &TaskCopies,
        capacity: &TaskCapacity,
    ) -> Option<(MetadataCommand, String)> {
        let commands = placement_commands(meta, capacity, copies, self.settings.max_task_moves);
        if commands.is_empty() {
            return None;
        }
        let tasks: usize = commands
            .iter()
            .map(|c| match c {
                MetadataCommand::AssignTasks { assignments, .. } => assignments.len(),
                _ => 0,
            })
            .sum();
        let why = format!(
            "{tasks} task(s) of {} processor(s) assigned",
            commands.len()
        );
        Some((MetadataCommand::Batch { commands }, why))
    }

    /// The next replica move (invariant 9): completions first, then moves off draining
    /// nodes, then rebalancing, then — once the cluster has been settled for
    /// [`ControlSettings::leader_balance_delay`] — leadership balancing.
    fn move_decision(
        &self,
        meta: &ClusterMetadata,
        settled_for: Duration,
    ) -> Option<(MetadataCommand, String)> {
        if let Some(c) = completion_commands(meta) {
            return Some((
                c,
                "reassignments whose new replicas caught up complete".into(),
            ));
        }
        let max = self.settings.max_moves_in_flight;
        let moves = decommission_moves(meta, max);
        if !moves.is_empty() {
            let why = format!("{} replica(s) move off decommissioned nodes", moves.len());
            return Some((MetadataCommand::Batch { commands: moves }, why));
        }
        if self.settings.auto_rebalance {
            let moves = rebalance_moves(meta, max);
            if !moves.is_empty() {
                let why = format!("{} replica(s) move to even out replica counts", moves.len());
                return Some((MetadataCommand::Batch { commands: moves }, why));
            }
            if settled_for >= self.settings.leader_balance_delay {
                let reorders = preferred_reorders(meta, MAX_LEADER_MOVES);
                if !reorders.is_empty() {
                    let why = format!(
                        "{} replica list(s) reordered to even out preferred leaders",
                        reorders.len()
                    );
                    return Some((MetadataCommand::Batch { commands: reorders }, why));
                }
                if let Some(c) = preferred_leader_elections(meta, MAX_LEADER_MOVES) {
                    return Some((c, "leaderships go back to preferred replicas".into()));
                }
            }
        }
        None
    }

    /// Removes the decommissioned nodes that hold no replica any more from the metadata
    /// quorum (a voter is replaced by a live learner when there is one) and unregisters them,
    /// retiring their ids (invariant 9). The controller may remove itself: openraft steps
    /// a leader down once the membership without it is committed, and the next controller
    /// unregisters it.
    async fn retire_drained(&self) {
        if self.controller_term().is_none() {
            return;
        }
        let meta = self.node.current();
        for id in drained_nodes(&meta) {
            if self.is_member(id) {
                let promote = self.learner_to_promote(&meta, id);
                let voters = self.node.metrics().voters;
                if promote.is_none() && voters.contains(&id) && voters.len() <= MIN_VOTERS {
                    tracing::warn!(
                        node = id,
                        voters = voters.len() - 1,
                        "decommission: no learner can take the voter's place; the metadata \
                         quorum shrinks (join a node to restore its fault tolerance)"
                    );
                }
                let removed = tokio::time::timeout(
                    self.settings.propose_deadline,
                    self.node.remove_member(id, promote),
                )
                .await;
                match removed {
                    Ok(Ok(())) if id == self.node.id() => {
                        tracing::info!(
                            promoted = ?promote,
                            "decommission: this controller left the metadata quorum; the next \
                             controller retires its id"
                        );
                        return;
                    }
                    Ok(Ok(())) => tracing::info!(
                        node = id,
                        promoted = ?promote,
                        "decommission: the node left the metadata quorum"
                    ),
                    Ok(Err(e)) => {
                        tracing::warn!(node = id, error = %e, "decommission: cannot remove the node from the quorum yet");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(
                            node = id,
                            "decommission: removing the node from the quorum timed out"
                        );
                        return;
                    }
                }
            }
            match self
                .node
                .propose(MetadataCommand::UnregisterNode { node: id })
                .await
            {
                Ok(_) => tracing::info!(node = id, "decommission done: node id retired"),
                Err(e) => {
                    tracing::warn!(node = id, error = %e, "decommission: cannot unregister the node yet");
                    return;
                }
            }
            lock(&self.term).sessions.remove(id);
        }
        self.promote_learners(&meta).await;
    }

    /// A live learner (registered, not draining, not `leaving`) to make a voter in place of
    /// `leaving`, if there is one (lowest id).
    fn learner_to_promote(&self, meta: &ClusterMetadata, leaving: NodeId) -> Option<NodeId> {
        let metrics = self.node.raft_metrics();
        let metrics = metrics.borrow();
        let voters: Vec<NodeId> = metrics.membership_config.voter_ids().collect();
        metrics
            .membership_config
            .nodes()
            .map(|(n, _)| *n)
            .filter(|n| *n != leaving && !voters.contains(n) && meta.is_assignable(*n))
            .min()
    }

    /// Keeps at least [`MIN_VOTERS`] voters when there are enough members: a live learner
    /// is promoted while there are fewer (after a decommission left the quorum small).
    async fn promote_learners(&self, meta: &ClusterMetadata) {
        let voters = self.node.metrics().voters.len();
        if voters >= MIN_VOTERS {
            return;
        }
        let Some(learner) = self.learner_to_promote(meta, self.node.id()) else {
            return;
        };
        let promoted = tokio::time::timeout(
            self.settings.propose_deadline,
            self.node.promote_learner(learner),
        )
        .await;
        match promoted {
            Ok(Ok(())) => tracing::info!(
                node = learner,
                "a learner became a voter of the metadata quorum"
            ),
            Ok(Err(e)) => {
                tracing::warn!(node = learner, error = %e, "cannot promote the learner yet")
            }
            Err(_) => tracing::warn!(node = learner, "promoting the learner timed out"),
        }
    }

    /// One round of the controller's duties: proposes every decision, one at a time, each on
    /// the metadata the previous one left; stops at the first failure (retried next tick).
    pub async fn tick(&self) {
        for _ in 0..MAX_PROPOSALS_PER_TICK {
            let Some((command, why)) = self.next_decision(Instant::now()) else {
                return;
            };
            match self.node.propose(command).await {
                Ok(_) => tracing::info!("controller: {why}"),
                Err(NodeError::NotController { .. }) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "controller: proposing failed ({why}); retrying");
                    return;
                }
            }
        }
    }

    /// Runs [`tick`](Self::tick) every [`ControlSettings::tick`] (sooner after a heartbeat
    /// that needs a registration) until `stop` turns true.
    ///
    /// Membership changes after a decommission ([`Controller::retire_drained`]) run in a
    /// task of their own, one at a time: a Raft membership change can wait for its joint
    /// quorum, and the sessions and elections of the tick must not wait with it.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut membership: Option<JoinHandle<()>> = None;
        loop {
            self.tick().await;
            if membership.as_ref().is_none_or(JoinHandle::is_finished)
                && self.controller_term().is_some()
            {
                let me = Arc::clone(&self);
                membership = Some(tokio::spawn(async move { me.retire_drained().await }));
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                () = tokio::time::sleep(self.settings.tick) => {}
                () = self.wake.notified() => {}
            }
        }
        if let Some(task) = membership {
            task.abort();
        }
    }

    /// Serves one control request from peer `from`.
    pub async fn serve(
        &self,
        from: NodeId,
        request: ControlRequest,
    ) -> Result<ControlReply, Refusal> {
        let malformed = Refusal::Malformed;
        Ok(match request {
            ControlRequest::Propose(cmd) => {
                self.propose_for_peer(from, cmd.decode().map_err(malformed)?)
                    .await
            }
            ControlRequest::Heartbeat(info) => {
                self.heartbeat(from, info.decode().map_err(malformed)?)
            }
            ControlRequest::Join(info) => self.join(from, info.decode().map_err(malformed)?).await,
            ControlRequest::Shutdown => self.shutdown_node(from).await,
        })
    }
}

/// The forced moves of graceful task moves whose owner did not release them in time
/// (`overdue`: processor, partition, epoch, target), one `AssignTasks` per processor in a
/// batch; `None` when none is still pending as it was.
fn forced_release_commands(
    meta: &ClusterMetadata,
    overdue: &[(String, i32, u64, NodeId)],
) -> Option<MetadataCommand> {
    let mut moves: BTreeMap<&str, Vec<TaskMove>> = BTreeMap::new();
    for (processor, partition, epoch, target) in overdue {
        let Some(t) = meta.task(processor, *partition) else {
            continue;
        };
        if t.epoch != *epoch || t.moving_to != Some(*target) {
            continue;
        }
        tracing::warn!(
            processor, partition, owner = ?t.owner, target,
            "the owner did not release a task moved off it in time; forcing the move"
        );
        moves.entry(processor).or_default().push(TaskMove {
            partition: *partition,
            epoch: *epoch,
            owner: *target,
            standbys: t.standbys.iter().copied().filter(|s| s != target).collect(),
            warmups: Vec::new(),
            force: true,
        });
    }
    let commands: Vec<MetadataCommand> = moves
        .into_iter()
        .map(|(processor, assignments)| MetadataCommand::AssignTasks {
            processor: processor.to_string(),
            version: None,
            assignments,
        })
        .collect();
    (!commands.is_empty()).then_some(MetadataCommand::Batch { commands })
}

/// When a session that a new term starts at `now` begins for a node silent for `silent`
/// (`None`: reachable): at `now` for a reachable node, else when it was last heard, but
/// leaving it at least three heartbeat intervals before it expires (invariant 5).
pub(super) fn dated_session_start(
    settings: &ControlSettings,
    now: Instant,
    silent: Option<Duration>,
) -> Instant {
    let Some(silent) = silent else { return now };
    let credit = settings
        .session_timeout
        .saturating_sub(settings.heartbeat_interval * 3);
    now.checked_sub(silent.min(credit)).unwrap_or(now)
}

/// Whether the metadata shows `id` live at exactly `info`.
fn is_registered_as(meta: &ClusterMetadata, id: NodeId, info: &NodeInfo) -> bool {
    meta.nodes
        .get(&id)
        .is_some_and(|n: &NodeState| !n.fenced && n.info == *info)
}

/// Sends `request` to the controller as `node` knows it, following one redirect. `None`
/// when no controller is known or reachable.
async fn call_controller(
    node: &MetadataNode,
    peers: &Peers,
    request: PeerRequest,
    timeout: Duration,
) -> Option<Result<ControlReply, RpcError>> {
    let mut target = node.controller().filter(|c| *c != node.id())?;
    for _ in 0..2 {
        let client = client_of(node, peers, target)?;
        let reply = call(&client, request.clone(), timeout).await;
        match &reply {
            Ok(ControlReply::NotController {
                leader: Some(l),
                addr,
            }) if *l != target && *l != node.id() => {
                if let Some(addr) = addr {
                    peers.upsert(*l, addr);
                }
                target = *l;
            }
            _ => return Some(reply),
        }
    }
    None
}

async fn call(
    client: &PeerClient,
    request: PeerRequest,
    timeout: Duration,
) -> Result<ControlReply, RpcError> {
    match client.call_with_timeout(request, timeout).await? {
        PeerResponse::Control(reply) => reply.decode().map_err(|reason| RpcError::Decode {
            addr: client.addr().to_string(),
            reason,
        }),
        other => Err(RpcError::Mismatch {
            addr: client.addr().to_string(),
            sent: "control",
            got: format!("{other:?}"),
        }),
    }
}

/// Sends this node's heartbeat to the controller every [`ControlSettings::heartbeat_interval`]
/// until `stop` turns true (the controller keeps its own session).
pub async fn run_heartbeats(
    node: MetadataNode,
    peers: Arc<Peers>,
    info: NodeInfo,
    copies: NodeReportBoard,
    settings: ControlSettings,
    caught_up: watch::Sender<Option<u64>>,
    mut stop: watch::Receiver<bool>,
) {
    // A heartbeat slower than this is as good as missed.
    let timeout = (settings.heartbeat_interval * 2).max(Duration::from_millis(200));
    let mut last_error = String::new();
    loop {
        let body = HeartbeatBody {
            info: info.clone(),
            copies: copies.get().as_ref().clone(),
            budget: copies.budget(),
        };
        let Ok(json) = Json::encode(&body) else {
            tracing::error!("cannot encode this node's heartbeat; no heartbeats");
            return;
        };
        let request = PeerRequest::Control(ControlRequest::Heartbeat(json));
        let outcome = call_controller(&node, &peers, request, timeout).await;
        if node.is_controller() && caught_up.borrow().is_none() {
            // The controller is its own authority: caught up once it sees itself registered.
            // Only a controller a quorum acknowledged (invariant 8): a restarted node that
            // is Raft leader of its old vote for a moment is not.
            let current = node.current();
            if is_registered_as(&current, node.id(), &info) {
                caught_up.send_replace(Some(current.version));
            }
        }
        if let Some(Ok(ControlReply::Heartbeat {
            registered: true,
            version,
        })) = &outcome
            && caught_up.borrow().is_none()
        {
            // The first time the controller says this node is registered: from then on
            // the node may act on metadata at or past that version (invariant 8).
            caught_up.send_replace(Some(*version));
        }
        let error = match outcome {
            None | Some(Ok(ControlReply::Heartbeat { .. })) => String::new(),
            Some(Ok(other)) => format!("{other:?}"),
            Some(Err(e)) => e.to_string(),
        };
        if !error.is_empty() && error != last_error {
            tracing::warn!(%error, "heartbeat to the controller failed");
        }
        last_error = error;
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(settings.heartbeat_interval) => {}
        }
    }
}

/// Keeps a client for every node the metadata registers (so that a joined node greets and
/// is greeted, and replication can reach it) and none for a retired one, until `stop` turns
/// true.
pub async fn sync_peers(node: MetadataNode, peers: Arc<Peers>, mut stop: watch::Receiver<bool>) {
    let mut applied = node.subscribe();
    loop {
        let meta = applied.borrow_and_update().clone();
        for (id, n) in &meta.nodes {
            if !n.info.cluster_addr.is_empty() && *id != node.id() {
                peers.upsert(*id, &n.info.cluster_addr);
            }
        }
        // A decommissioned node is gone: no more greetings (it may still run until stopped).
        for id in &meta.retired {
            peers.remove(*id);
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            changed = applied.changed() => if changed.is_err() { return },
        }
    }
}

/// The joining node's side of `--join` (invariant 6): once the cluster id is known (the
/// greeter learns it from `join_addr`), asks the controller, through `join_addr` and its
/// redirects, to add this node as a learner; retries until it is a member or `stop`.
pub async fn join_cluster(
    node: MetadataNode,
    peers: Arc<Peers>,
    join_addr: String,
    info: NodeInfo,
    mut stop: watch::Receiver<bool>,
) {
    let Ok(json) = Json::encode(&info) else {
        tracing::error!("cannot encode this node's addresses; not joining");
        return;
    };
    let request = PeerRequest::Control(ControlRequest::Join(json));
    let mut target = peers.dial(&join_addr);
    let mut last_error = String::new();
    let pause = Duration::from_millis(500);
    loop {
        let member = node
            .raft_metrics()
            .borrow()
            .membership_config
            .nodes()
            .any(|(n, _)| *n == node.id());
        if member {
            tracing::info!("this node is a learner of the metadata quorum");
            return;
        }
        if peers.local().cluster_id().is_some() {
            let error = match call(&target, request.clone(), JOIN_TIMEOUT + pause).await {
                Ok(ControlReply::Joined) => {
                    tracing::info!(via = target.addr(), "joined the cluster as a learner");
                    return;
                }
                Ok(ControlReply::NotController {
                    addr: Some(addr), ..
                }) => {
                    target = peers.dial(&addr);
                    continue;
                }
                Ok(other) => format!("{other:?}"),
                Err(e) => e.to_string(),
            };
            if error != last_error {
                tracing::warn!(%error, via = target.addr(), "joining the cluster failed; retrying");
            }
            last_error = error;
            target = peers.dial(&join_addr);
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// Proposes metadata commands from any node (invariant 1). Cheap to clone.
#[derive(Clone)]
pub struct Proposer {
    node: MetadataNode,
    peers: Arc<Peers>,
    deadline: Duration,
}

impl std::fmt::Debug for Proposer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proposer")
            .field("node", &self.node.id())
            .finish_non_exhaustive()
    }
}

/// The applier and the client-facing edges propose through the same handle.
impl crate::cluster::applier::Proposer for Proposer {
    fn propose(
        &self,
        command: MetadataCommand,
    ) -> futures_util::future::BoxFuture<'_, Result<MetadataResponse, ProposeFailure>> {
        Box::pin(async move {
            Proposer::propose(self, command).await.map_err(|e| match e {
                ProposeError::Rejected(e) => ProposeFailure::Refused(e),
                other => ProposeFailure::Unavailable(other.to_string()),
            })
        })
    }
}

impl Proposer {
    pub fn new(node: MetadataNode, peers: Arc<Peers>, deadline: Duration) -> Proposer {
        Proposer {
            node,
            peers,
            deadline,
        }
    }

    /// The node's applied metadata (what decisions like replica assignment start from).
    pub fn current(&self) -> Arc<ClusterMetadata> {
        self.node.current()
    }

    /// Proposes `cmd` on the controller, wherever it is, and returns the state machine's
    /// answer; within the deadline, following redirects.
    pub async fn propose(&self, cmd: MetadataCommand) -> Result<MetadataResponse, ProposeError> {
        let started = Instant::now();
        let deadline = started + self.deadline;
        let me = self.node.id();
        let mut target = self.node.controller();
        let mut last = "no controller elected".to_string();
        let json = Json::encode(&cmd).map_err(ProposeError::Protocol)?;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let previous = target;
            match target {
                Some(t) if t == me => match self.node.propose(cmd.clone()).await {
                    Ok(r) => return Ok(r),
                    Err(NodeError::Rejected(e)) => return Err(ProposeError::Rejected(e)),
                    Err(NodeError::NotController { leader }) => {
                        last = "this node is no longer the controller".into();
                        target = leader.filter(|l| *l != me);
                    }
                    Err(e @ NodeError::Unknown(_)) => {
                        return Err(ProposeError::Unknown(e.to_string()));
                    }
                    Err(e) => return Err(ProposeError::Stopped(e.to_string())),
                },
                Some(t) => {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    let Some(client) = client_of(&self.node, &self.peers, t) else {
                        last = format!("no address known for controller {t}");
                        target = None;
                        continue;
                    };
                    let request = PeerRequest::Control(ControlRequest::Propose(json.clone()));
                    match call(&client, request, remaining.max(Duration::from_millis(100))).await {
                        Ok(ControlReply::Proposed { outcome }) => {
                            return outcome.map_err(ProposeError::Rejected);
                        }
                        Ok(ControlReply::NotController { leader, addr }) => {
                            last = format!("node {t} is not the controller");
                            if let (Some(l), Some(addr)) = (leader, &addr) {
                                self.peers.upsert(l, addr);
                            }
                            target = leader;
                        }
                        Ok(ControlReply::Refused { code, message }) => {
                            return Err(ProposeError::Refused { code, message });
                        }
                        Ok(ControlReply::Failed {
                            message,
                            unknown: true,
                            ..
                        }) => return Err(ProposeError::Unknown(message)),
                        Ok(ControlReply::Failed { message, .. }) => {
                            last = message;
                            target = None;
                        }
                        Ok(other) => {
                            return Err(ProposeError::Protocol(format!(
                                "unexpected answer {other:?}"
                            )));
                        }
                        // Not sent, or refused before any service saw it: safe to retry.
                        Err(e)
                            if matches!(e, RpcError::Connect { .. })
                                || matches!(
                                    &e,
                                    RpcError::Refused {
                                        refusal: Refusal::NotServed(_) | Refusal::ShuttingDown,
                                        ..
                                    }
                                ) =>
                        {
                            last = e.to_string();
                            target = None;
                        }
                        Err(e) => return Err(ProposeError::Unknown(e.to_string())),
                    }
                }
                None => {}
            }
            if Instant::now() >= deadline {
                return Err(ProposeError::NoController {
                    waited: started.elapsed(),
                    last,
                });
            }
            if target.is_none() || target == previous || attempts > 2 {
                // Wait for an election (or for stale views to catch up) before asking again:
                // nodes that disagree on the controller never make this spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                if target.is_none() {
                    target = self.node.controller();
                }
            }
        }
    }
}

/// Everything one node runs of the control plane: the controller's loop (acting while this
/// node is the controller), its heartbeats, the peer list kept from the metadata and, for a
/// `--join` node, the join.
pub struct ControlPlane {
    pub controller: Arc<Controller>,
    pub proposer: Proposer,
    /// `Some(v)` once the controller answered a heartbeat saying this node is registered,
    /// `v` being the controller's applied version then (see [`wait_caught_up`]).
    pub registered_at: watch::Receiver<Option<u64>>,
    /// This node's task copies: the engine writes them, heartbeats and placement read them.
    pub task_copies: NodeReportBoard,
    node: MetadataNode,
    peers: Arc<Peers>,
    heartbeats: Mutex<Option<JoinHandle<()>>>,
    /// The outcome of the controlled shutdown, once attempted.
    shut_down: tokio::sync::Mutex<Option<bool>>,
    tasks: Vec<JoinHandle<()>>,
}

impl ControlPlane {
    /// Starts the tasks for `node`, whose addresses are `local`, until `stop` turns true.
    pub fn start(
        node: MetadataNode,
        peers: Arc<Peers>,
        local: NodeInfo,
        settings: ControlSettings,
        join: Option<String>,
        stop: watch::Receiver<bool>,
    ) -> ControlPlane {
        let silent_peers = peers.clone();
        let task_copies = NodeReportBoard::default();
        let controller = Arc::new(
            Controller::new(node.clone(), local.clone(), settings.clone())
                .with_liveness(Arc::new(move |id| silent_peers.silent_for(id)))
                .with_task_copies(task_copies.clone()),
        );
        let proposer = Proposer::new(node.clone(), peers.clone(), settings.propose_deadline);
        let (caught_up, registered_at) = watch::channel(None);
        let heartbeats = tokio::spawn(run_heartbeats(
            node.clone(),
            peers.clone(),
            local.clone(),
            task_copies.clone(),
            settings,
            caught_up,
            stop.clone(),
        ));
        let mut tasks = vec![
            tokio::spawn(controller.clone().run(stop.clone())),
            tokio::spawn(sync_peers(node.clone(), peers.clone(), stop.clone())),
        ];
        if let Some(addr) = join {
            tasks.push(tokio::spawn(join_cluster(
                node.clone(),
                peers.clone(),
                addr,
                local,
                stop,
            )));
        }
        ControlPlane {
            controller,
            proposer,
            registered_at,
            task_copies,
            node,
            peers,
            heartbeats: Mutex::new(Some(heartbeats)),
            shut_down: tokio::sync::Mutex::new(None),
            tasks,
        }
    }

    /// A controlled shutdown (invariant 7): stops this node's heartbeats, then has the
    /// controller (itself, or over the RPC) fence it and move its leaderships away. Waits
    /// at most `within`; returns whether the controller confirmed it. Done once: a second
    /// call returns the first one's outcome.
    pub async fn shutdown(&self, within: Duration) -> bool {
        let mut outcome = self.shut_down.lock().await;
        if let Some(done) = *outcome {
            return done;
        }
        let done = self.shutdown_once(within).await;
        *outcome = Some(done);
        done
    }

    async fn shutdown_once(&self, within: Duration) -> bool {
        let heartbeats = lock(&self.heartbeats).take();
        if let Some(h) = heartbeats {
            h.abort();
            let _ = h.await;
        }
        let me = self.node.id();
        let attempt = async {
            loop {
                let reply = if self.node.is_controller() {
                    Some(Ok(self.controller.shutdown_node(me).await))
                } else {
                    let request = PeerRequest::Control(ControlRequest::Shutdown);
                    call_controller(&self.node, &self.peers, request, within).await
                };
                match reply {
                    Some(Ok(ControlReply::ShutDown)) => return true,
                    Some(Ok(ControlReply::Refused { code, message })) => {
                        tracing::warn!(%code, %message, "controlled shutdown refused");
                        return false;
                    }
                    other => tracing::debug!(?other, "controlled shutdown: retrying"),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let done = tokio::time::timeout(within, attempt).await.unwrap_or(false);
        if done {
            tracing::info!("controlled shutdown: this node is fenced and leads nothing");
        } else {
            tracing::warn!(
                "controlled shutdown not confirmed within {within:?}; stopping anyway (the \
                 controller fences this node when its session expires)"
            );
        }
        done
    }

    /// Stops the tasks (a proposal in flight commits or not; the next controller decides
    /// again on what it applied).
    pub async fn stop(self) {
        let heartbeats = lock(&self.heartbeats).take();
        if let Some(h) = heartbeats {
            h.abort();
            let _ = h.await;
        }
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Waits until this node may act on its applied metadata (invariant 8): the controller has
/// said it is registered (live at its addresses) and the local metadata has applied at least
/// the version the controller had then. A node restarted on an old metadata log would
/// otherwise act for a moment on what it knew before it died (lead at an epoch long
/// replaced) — as a KRaft broker waits for its metadata catch-up before it serves.
pub async fn wait_caught_up(
    node: &MetadataNode,
    mut registered_at: watch::Receiver<Option<u64>>,
) -> bool {
    let Ok(version) = registered_at
        .wait_for(Option::is_some)
        .await
        .map(|v| v.unwrap_or(0))
    else {
        return false;
    };
    let mut applied = node.subscribe();
    applied.wait_for(|m| m.version >= version).await.is_ok()
}
