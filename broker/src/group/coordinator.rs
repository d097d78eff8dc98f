//! The group coordinator of Kafka's classic consumer-group protocol: membership, generations,
//! rebalances (members joining, leaving, or dying by missing their session timeout), the
//! leader's assignment handed out through SyncGroup, and the rules for who may commit.
//!
//! The coordinator never looks inside protocol metadata or assignments: clients compute the
//! assignment (eager or cooperative assignors both work), the coordinator only relays bytes.
//! Group membership is in memory only: after a restart, members rejoin (as they do when a
//! Kafka coordinator moves); committed offsets are durable in [`super::OffsetStore`], and so
//! is each group's [`GroupMeta`] (protocol type, generation, protocol): a new generation or
//! a group that became empty marks it dirty, and [`GroupCoordinator::persist_meta`] writes
//! it (after each SyncGroup and from the listener's ticker), so generations keep increasing
//! across restarts and an empty group keeps its protocol type. An empty group stays in
//! memory until its metadata is written.
//!
//! DeleteGroups and OffsetDelete (KIP-496) are decided here ([`GroupCoordinator::deletable`],
//! [`GroupCoordinator::subscribed_topics`]) and carried out by the store: a group with
//! members is not deleted (`NON_EMPTY_GROUP`), nor are the offsets of a topic its members
//! subscribe to (`GROUP_SUBSCRIBED_TO_TOPIC`).
//!
//! On a cluster it serves only the groups whose offsets partition this node leads and has
//! loaded ([`OffsetStore::ownership`]): every group operation of another group is refused
//! with [`GroupError::NotCoordinator`] or [`GroupError::CoordinatorLoadInProgress`] before
//! it touches any state, and [`GroupCoordinator::maintain`] forgets the members of groups
//! whose partition this node stopped leading (their waiters are answered `NotCoordinator`,
//! so the clients find the new coordinator and rejoin there).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::offsets::{GroupMeta, OffsetStore, Ownership};

/// Errors of group operations; the Kafka layer maps each to its protocol error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("unknown member id")]
    UnknownMemberId,
    #[error("the member must rejoin with the member id {0}")]
    MemberIdRequired(String),
    #[error("illegal generation")]
    IllegalGeneration,
    #[error("the group is rebalancing")]
    RebalanceInProgress,
    #[error("the protocol type or protocols are inconsistent with the group's")]
    InconsistentGroupProtocol,
    #[error("session timeout {0} ms is outside the allowed range")]
    InvalidSessionTimeout(i32),
    #[error("invalid group id")]
    InvalidGroupId,
    #[error("this node is not the group's coordinator")]
    NotCoordinator,
    #[error("the group's coordinator is loading its offsets")]
    CoordinatorLoadInProgress,
    #[error("the group has members")]
    NonEmptyGroup,
    #[error("the group does not exist")]
    GroupIdNotFound,
}

/// State of a group, named as Kafka names it in DescribeGroups and ListGroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub fn as_str(&self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// Coordinator settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupConfig {
    /// Smallest session timeout a member may ask for (Kafka: group.min.session.timeout.ms).
    pub min_session_timeout_ms: i32,
    /// Largest session timeout a member may ask for (Kafka: group.max.session.timeout.ms).
    pub max_session_timeout_ms: i32,
    /// How long the first rebalance of an empty group waits for more members
    /// (Kafka: group.initial.rebalance.delay.ms).
    pub initial_rebalance_delay_ms: u64,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 1_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 0,
        }
    }
}

/// A JoinGroup request, decoded.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub group_id: String,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new member first gets an id (MEMBER_ID_REQUIRED), then rejoins.
    pub require_known_member_id: bool,
}

/// One member as the leader sees it in the JoinGroup response.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

/// The JoinGroup answer for one member.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinOutcome {
    pub generation_id: i32,
    pub protocol_type: String,
    pub protocol_name: String,
    pub leader: String,
    pub member_id: String,
    /// Every member with its metadata for the chosen protocol, for the leader only.
    pub members: Vec<JoinedMember>,
}

/// The SyncGroup answer for one member.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncOutcome {
    pub protocol_type: String,
    pub protocol_name: String,
    pub assignment: Bytes,
}

/// One member as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

type JoinTx = oneshot::Sender<Result<JoinOutcome, GroupError>>;
type SyncTx = oneshot::Sender<Result<SyncOutcome, GroupError>>;

struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_seen: Instant,
    join_waiter: Option<JoinTx>,
    sync_waiter: Option<SyncTx>,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

struct Group {
    id: String,
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    /// In join order (the first member becomes leader when there is none).
    members: Vec<Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet joined.
    pending: HashSet<String>,
    rebalance_deadline: Instant,
    not_before: Instant,
    /// The generation or protocol changed since the metadata was last stored.
    meta_dirty: bool,
}

impl Group {
    fn new(id: &str, generation: i32) -> Group {
        let now = Instant::now();
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation,
            meta_dirty: false,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: Vec::new(),
            pending: HashSet::new(),
            rebalance_deadline: now,
            not_before: now,
        }
    }

    fn member(&mut self, id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    fn prepare_rebalance(&mut self, initial_delay: Duration) {
        let now = Instant::now();
        if self.state == GroupState::CompletingRebalance {
            for m in &mut self.members {
                if let Some(tx) = m.sync_waiter.take() {
                    let _ = tx.send(Err(GroupError::RebalanceInProgress));
                }
            }
        }
        let timeout = self
            .members
            .iter()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::from_secs(1));
        self.not_before = if self.state == GroupState::Empty {
            now + initial_delay
        } else {
            now
        };
        self.rebalance_deadline = now + timeout.max(initial_delay);
        self.state = GroupState::PreparingRebalance;
        tracing::debug!(group = %self.id, generation = self.generation, "preparing rebalance");
    }

    /// Completes the join phase if every member has rejoined (or `force`, at the deadline,
    /// dropping those that did not).
    fn try_complete_join(&mut self, force: bool) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined = self.members.iter().all(|m| m.join_waiter.is_some());
        if !force && (!all_joined || Instant::now() < self.not_before) {
            return;
        }
        self.members.retain(|m| m.join_waiter.is_some());
        self.generation = self.generation.wrapping_add(1).max(1);
        self.meta_dirty = true;
        if self.members.is_empty() {
            self.become_empty();
            return;
        }
        let protocol = self.choose_protocol();
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.members.iter().any(|m| &m.id == l))
        {
            self.leader = self.members.first().map(|m| m.id.clone());
        }
        let leader = self.leader.clone().unwrap_or_default();
        let protocol_type = self.protocol_type.clone().unwrap_or_default();
        let all: Vec<JoinedMember> = self
            .members
            .iter()
            .map(|m| JoinedMember {
                member_id: m.id.clone(),
                group_instance_id: m.instance_id.clone(),
                metadata: m.metadata_for(&protocol),
            })
            .collect();
        let now = Instant::now();
        for m in &mut self.members {
            m.assignment = Bytes::new();
            m.last_seen = now;
            if let Some(tx) = m.join_waiter.take() {
                let _ = tx.send(Ok(JoinOutcome {
                    generation_id: self.generation,
                    protocol_type: protocol_type.clone(),
                    protocol_name: protocol.clone(),
                    leader: leader.clone(),
                    member_id: m.id.clone(),
                    members: if m.id == leader {
                        all.clone()
                    } else {
                        Vec::new()
                    },
                }));
            }
        }
        self.protocol = Some(protocol);
        self.state = GroupState::CompletingRebalance;
        tracing::info!(group = %self.id, generation = self.generation, members = self.members.len(), leader = %leader, "rebalance: join complete");
    }

    /// The protocol every member supports that most members list first.
    fn choose_protocol(&self) -> String {
        let Some(first) = self.members.first() else {
            return String::new();
        };
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .iter()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == *n))
            })
            .collect();
        let mut best: Option<(&String, usize)> = None;
        for c in &candidates {
            let votes = self
                .members
                .iter()
                .filter(|m| {
                    m.protocols
                        .iter()
                        .map(|(n, _)| n)
                        .find(|n| candidates.contains(n))
                        == Some(*c)
                })
                .count();
            if best.is_none_or(|(_, v)| votes > v) {
                best = Some((c, votes));
            }
        }
        best.map(|(c, _)| c.clone()).unwrap_or_default()
    }

    fn become_empty(&mut self) {
        for m in &mut self.members {
            if let Some(tx) = m.join_waiter.take() {
                let _ = tx.send(Err(GroupError::UnknownMemberId));
            }
            if let Some(tx) = m.sync_waiter.take() {
                let _ = tx.send(Err(GroupError::UnknownMemberId));
            }
        }
        self.members.clear();
        self.state = GroupState::Empty;
        // As Kafka: an empty group keeps its protocol type, not its protocol.
        self.protocol = None;
        self.leader = None;
        self.meta_dirty = true;
    }

    fn meta(&self) -> GroupMeta {
        GroupMeta {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
        }
    }

    /// After members left or died.
    fn on_members_removed(&mut self, initial_delay: Duration) {
        if self.members.is_empty() {
            if self.state != GroupState::Empty {
                self.generation = self.generation.wrapping_add(1).max(1);
            }
            self.become_empty();
            return;
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(initial_delay)
            }
            GroupState::PreparingRebalance => self.try_complete_join(false),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    fn describe(&self) -> GroupDescription {
        let protocol = self.protocol.clone().unwrap_or_default();
        GroupDescription {
            group_id: self.id.clone(),
            state: self.state,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol: protocol.clone(),
            members: self
                .members
                .iter()
                .map(|m| MemberDescription {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: m.metadata_for(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }
}

/// The coordinator of every group on this node, and their committed offsets.
pub struct GroupCoordinator {
    config: GroupConfig,
    groups: Mutex<HashMap<String, Group>>,
    offsets: OffsetStore,
    ids: AtomicU64,
}

impl GroupCoordinator {
    pub fn new(config: GroupConfig, offsets: OffsetStore) -> GroupCoordinator {
        GroupCoordinator {
            config,
            groups: Mutex::new(HashMap::new()),
            offsets,
            ids: AtomicU64::new(0),
        }
    }

    pub fn offsets(&self) -> &OffsetStore {
        &self.offsets
    }

    /// Whether this node coordinates `group_id` now (always on a single node).
    pub fn check_owner(&self, group_id: &str) -> Result<(), GroupError> {
        match self.offsets.ownership(group_id) {
            Ownership::Owned => Ok(()),
            Ownership::Loading => Err(GroupError::CoordinatorLoadInProgress),
            Ownership::NotOwner => Err(GroupError::NotCoordinator),
        }
    }

    /// Cluster mode: follows this node's leadership of the offsets partitions
    /// ([`OffsetStore::maintain`]) and forgets the groups of partitions it no longer leads
    /// (or leads at a new epoch), answering their waiting members `NotCoordinator`.
    /// Blocking (it may load offsets); call it periodically off the async threads.
    pub fn maintain(&self) {
        let dropped = self.offsets.maintain();
        if dropped.is_empty() {
            return;
        }
        let mut groups = self.lock();
        groups.retain(|id, g| {
            if !dropped.contains(&self.offsets.partition_for(id)) {
                return true;
            }
            for m in &mut g.members {
                if let Some(tx) = m.join_waiter.take() {
                    let _ = tx.send(Err(GroupError::NotCoordinator));
                }
                if let Some(tx) = m.sync_waiter.take() {
                    let _ = tx.send(Err(GroupError::NotCoordinator));
                }
            }
            tracing::info!(group = %id, "group moved to another coordinator");
            false
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn initial_delay(&self) -> Duration {
        Duration::from_millis(self.config.initial_rebalance_delay_ms)
    }

    fn new_member_id(&self, client_id: &str) -> String {
        let n = self.ids.fetch_add(1, Ordering::Relaxed);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let prefix = if client_id.is_empty() {
            "member"
        } else {
            client_id
        };
        format!("{prefix}-{t:x}-{n}")
    }

    /// JoinGroup: returns when the join phase of the next generation completes.
    pub async fn join(&self, req: JoinRequest) -> Result<JoinOutcome, GroupError> {
        if req.group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return Err(GroupError::InvalidSessionTimeout(req.session_timeout_ms));
        }
        if req.protocol_type.is_empty() || req.protocols.is_empty() {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        self.check_owner(&req.group_id)?;
        let rx = {
            let mut groups = self.lock();
            let group = groups.entry(req.group_id.clone()).or_insert_with(|| {
                // Generations go on from the last stored one (a restart, or a group that
                // was empty and forgotten from memory).
                let generation = self.offsets.meta(&req.group_id).map_or(0, |m| m.generation);
                Group::new(&req.group_id, generation)
            });
            if !group.members.is_empty() {
                let same_type = group.protocol_type.as_deref() == Some(req.protocol_type.as_str());
                let common = req.protocols.iter().any(|(p, _)| {
                    group
                        .members
                        .iter()
                        .filter(|m| m.id != req.member_id)
                        .all(|m| m.protocols.iter().any(|(q, _)| q == p))
                });
                if !same_type || !common {
                    return Err(GroupError::InconsistentGroupProtocol);
                }
            }
            let member_id = if req.member_id.is_empty() {
                let id = self.new_member_id(&req.client_id);
                if req.require_known_member_id {
                    group.pending.insert(id.clone());
                    return Err(GroupError::MemberIdRequired(id));
                }
                id
            } else {
                let known = group.members.iter().any(|m| m.id == req.member_id);
                if !known && !group.pending.remove(&req.member_id) {
                    return Err(GroupError::UnknownMemberId);
                }
                req.member_id.clone()
            };
            let (tx, rx) = oneshot::channel();
            let now = Instant::now();
            let session_timeout = Duration::from_millis(req.session_timeout_ms as u64);
            let rebalance_timeout =
                Duration::from_millis(req.rebalance_timeout_ms.max(req.session_timeout_ms) as u64);
            if let Some(m) = group.member(&member_id) {
                m.protocols = req.protocols;
                m.session_timeout = session_timeout;
                m.rebalance_timeout = rebalance_timeout;
                m.last_seen = now;
                m.join_waiter = Some(tx);
            } else {
                group.members.push(Member {
                    id: member_id.clone(),
                    instance_id: req.group_instance_id,
                    client_id: req.client_id,
                    client_host: req.client_host,
                    session_timeout,
                    rebalance_timeout,
                    protocols: req.protocols,
                    assignment: Bytes::new(),
                    last_seen: now,
                    join_waiter: Some(tx),
                    sync_waiter: None,
                });
            }
            group.protocol_type = Some(req.protocol_type);
            if group.state != GroupState::PreparingRebalance {
                group.prepare_rebalance(self.initial_delay());
            }
            group.try_complete_join(false);
            rx
        };
        rx.await.unwrap_or(Err(GroupError::RebalanceInProgress))
    }

    /// SyncGroup: the leader hands in the assignment; everyone gets their part.
    pub async fn sync(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        assignments: Vec<(String, Bytes)>,
    ) -> Result<SyncOutcome, GroupError> {
        self.check_owner(group_id)?;
        let rx = {
            let mut groups = self.lock();
            let group = groups
                .get_mut(group_id)
                .ok_or(GroupError::UnknownMemberId)?;
            if group.member(member_id).is_none() {
                return Err(GroupError::UnknownMemberId);
            }
            if generation != group.generation {
                return Err(GroupError::IllegalGeneration);
            }
            let protocol_type = group.protocol_type.clone().unwrap_or_default();
            let protocol_name = group.protocol.clone().unwrap_or_default();
            match group.state {
                GroupState::Empty | GroupState::Dead => return Err(GroupError::UnknownMemberId),
                GroupState::PreparingRebalance => return Err(GroupError::RebalanceInProgress),
                GroupState::Stable => {
                    let m = group.member(member_id).ok_or(GroupError::UnknownMemberId)?;
                    m.last_seen = Instant::now();
                    return Ok(SyncOutcome {
                        protocol_type,
                        protocol_name,
                        assignment: m.assignment.clone(),
                    });
                }
                GroupState::CompletingRebalance => {}
            }
            let (tx, rx) = oneshot::channel();
            if let Some(m) = group.member(member_id) {
                m.last_seen = Instant::now();
                m.sync_waiter = Some(tx);
            }
            if group.leader.as_deref() == Some(member_id) {
                let mut by_member: HashMap<String, Bytes> = assignments.into_iter().collect();
                for m in &mut group.members {
                    m.assignment = by_member.remove(&m.id).unwrap_or_default();
                }
                group.state = GroupState::Stable;
                for m in &mut group.members {
                    if let Some(tx) = m.sync_waiter.take() {
                        let _ = tx.send(Ok(SyncOutcome {
                            protocol_type: protocol_type.clone(),
                            protocol_name: protocol_name.clone(),
                            assignment: m.assignment.clone(),
                        }));
                    }
                }
                tracing::info!(group = %group_id, generation, "rebalance: group is stable");
            }
            rx
        };
        rx.await.unwrap_or(Err(GroupError::RebalanceInProgress))
    }

    /// Heartbeat: keeps the member's session alive; tells it when to rejoin.
    pub fn heartbeat(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
    ) -> Result<(), GroupError> {
        self.check_owner(group_id)?;
        let mut groups = self.lock();
        let group = groups
            .get_mut(group_id)
            .ok_or(GroupError::UnknownMemberId)?;
        let state = group.state;
        let current = group.generation;
        let m = group.member(member_id).ok_or(GroupError::UnknownMemberId)?;
        m.last_seen = Instant::now();
        if generation != current {
            return Err(GroupError::IllegalGeneration);
        }
        match state {
            GroupState::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            GroupState::Empty | GroupState::Dead => Err(GroupError::UnknownMemberId),
            GroupState::CompletingRebalance | GroupState::Stable => Ok(()),
        }
    }

    /// LeaveGroup: removes members; the rest rebalance. Returns one result per member id.
    pub fn leave(&self, group_id: &str, member_ids: &[String]) -> Vec<Result<(), GroupError>> {
        if let Err(e) = self.check_owner(group_id) {
            return member_ids.iter().map(|_| Err(e.clone())).collect();
        }
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(group_id) else {
            return member_ids
                .iter()
                .map(|_| Err(GroupError::UnknownMemberId))
                .collect();
        };
        let mut removed = false;
        let results = member_ids
            .iter()
            .map(|id| {
                let before = group.members.len();
                group.members.retain(|m| &m.id != id);
                if group.members.len() < before {
                    removed = true;
                    tracing::info!(group = %group_id, member = %id, "member left");
                    Ok(())
                } else {
                    Err(GroupError::UnknownMemberId)
                }
            })
            .collect();
        if removed {
            group.on_members_removed(self.initial_delay());
        }
        results
    }

    /// Whether an OffsetCommit with this generation and member may commit.
    pub fn validate_commit(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
    ) -> Result<(), GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        self.check_owner(group_id)?;
        let mut groups = self.lock();
        let Some(group) = groups.get_mut(group_id) else {
            // No live group: only "simple" commits (no generation) are allowed.
            return if generation < 0 {
                Ok(())
            } else {
                Err(GroupError::IllegalGeneration)
            };
        };
        if generation < 0 && member_id.is_empty() && group.members.is_empty() {
            return Ok(());
        }
        let state = group.state;
        let current = group.generation;
        let m = group.member(member_id).ok_or(GroupError::UnknownMemberId)?;
        m.last_seen = Instant::now();
        if generation != current {
            return Err(GroupError::IllegalGeneration);
        }
        if state == GroupState::CompletingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        Ok(())
    }

    /// Groups with members or committed offsets: (group id, protocol type, state).
    pub fn list(&self) -> Vec<(String, String, GroupState)> {
        let mut out: Vec<(String, String, GroupState)> = {
            let groups = self.lock();
            groups
                .values()
                .map(|g| {
                    (
                        g.id.clone(),
                        g.protocol_type.clone().unwrap_or_else(|| "consumer".into()),
                        g.state,
                    )
                })
                .collect()
        };
        for g in self.offsets.groups() {
            if !out.iter().any(|(id, _, _)| *id == g) {
                let protocol_type = self.stored_protocol_type(&g);
                out.push((g, protocol_type, GroupState::Empty));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// A group's state and members (state `Dead` for a group this node does not know).
    pub fn describe(&self, group_id: &str) -> GroupDescription {
        let groups = self.lock();
        match groups.get(group_id) {
            Some(g) => g.describe(),
            None => {
                let known = self.offsets.meta(group_id).is_some()
                    || !self.offsets.all_for(group_id).is_empty();
                GroupDescription {
                    group_id: group_id.to_string(),
                    state: if known {
                        GroupState::Empty
                    } else {
                        GroupState::Dead
                    },
                    protocol_type: if known {
                        self.stored_protocol_type(group_id)
                    } else {
                        String::new()
                    },
                    protocol: String::new(),
                    members: Vec::new(),
                }
            }
        }
    }

    /// The protocol type of a group not in memory: its stored one, else `consumer` (a group
    /// with offsets committed before metadata was stored was a consumer group).
    fn stored_protocol_type(&self, group_id: &str) -> String {
        self.offsets
            .meta(group_id)
            .map(|m| m.protocol_type)
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "consumer".into())
    }

    /// Whether some group's metadata waits to be stored ([`GroupCoordinator::persist_meta`]).
    pub fn has_dirty_meta(&self) -> bool {
        self.lock().values().any(|g| g.meta_dirty)
    }

    /// Stores the metadata of every group whose generation or protocol changed since it was
    /// last stored. Blocking; call it off the async threads. A failed write is retried on
    /// the next call.
    pub fn persist_meta(&self) {
        let dirty: Vec<(String, GroupMeta)> = {
            let mut groups = self.lock();
            groups
                .values_mut()
                .filter(|g| g.meta_dirty)
                .map(|g| {
                    g.meta_dirty = false;
                    (g.id.clone(), g.meta())
                })
                .collect()
        };
        for (id, meta) in dirty {
            if self.check_owner(&id).is_err() {
                continue;
            }
            if let Err(e) = self.offsets.store_meta(&id, meta) {
                tracing::warn!(group = %id, error = %e, "storing group metadata failed; retrying");
                if let Some(g) = self.lock().get_mut(&id) {
                    g.meta_dirty = true;
                }
            }
        }
    }

    /// DeleteGroups' check: a group with members is refused, an unknown one is not found;
    /// otherwise the group is forgotten from memory and the caller deletes what the store
    /// keeps of it ([`OffsetStore::delete_group`]).
    pub fn deletable(&self, group_id: &str) -> Result<(), GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        self.check_owner(group_id)?;
        let mut groups = self.lock();
        if let Some(g) = groups.get(group_id) {
            if !g.members.is_empty() || g.state != GroupState::Empty {
                return Err(GroupError::NonEmptyGroup);
            }
        } else if self.offsets.meta(group_id).is_none() && self.offsets.all_for(group_id).is_empty()
        {
            return Err(GroupError::GroupIdNotFound);
        }
        groups.remove(group_id);
        Ok(())
    }

    /// OffsetDelete's check: the topics the members of a `consumer` group subscribe to
    /// (empty for an empty group), or why the group's offsets cannot be deleted.
    pub fn subscribed_topics(&self, group_id: &str) -> Result<HashSet<String>, GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        self.check_owner(group_id)?;
        let groups = self.lock();
        let Some(g) = groups.get(group_id) else {
            if self.offsets.meta(group_id).is_none() && self.offsets.all_for(group_id).is_empty() {
                return Err(GroupError::GroupIdNotFound);
            }
            return Ok(HashSet::new());
        };
        let mut topics = HashSet::new();
        if g.protocol_type.as_deref() != Some("consumer") {
            return Ok(topics);
        }
        for m in &g.members {
            // Every protocol a member offers carries its subscription; the chosen one's when
            // there is one.
            let metas: Vec<&Bytes> = match &g.protocol {
                Some(p) => m
                    .protocols
                    .iter()
                    .filter(|(n, _)| n == p)
                    .map(|(_, b)| b)
                    .collect(),
                None => m.protocols.iter().map(|(_, b)| b).collect(),
            };
            for meta in metas {
                topics.extend(decode_subscription(meta));
            }
        }
        Ok(topics)
    }

    /// Expires members whose session timed out and finishes join phases whose deadline
    /// passed. Call periodically (the Kafka server does, every 100 ms).
    pub fn tick(&self) {
        let now = Instant::now();
        let delay = self.initial_delay();
        let mut groups = self.lock();
        for group in groups.values_mut() {
            let before = group.members.len();
            let gid = group.id.clone();
            group.members.retain(|m| {
                let waiting = m.join_waiter.is_some() || m.sync_waiter.is_some();
                let alive = waiting || now.duration_since(m.last_seen) <= m.session_timeout;
                if !alive {
                    tracing::info!(group = %gid, member = %m.id, "member session expired");
                }
                alive
            });
            if group.members.len() < before {
                group.on_members_removed(delay);
            }
            if group.state == GroupState::PreparingRebalance {
                group.try_complete_join(now >= group.rebalance_deadline);
            }
            if group.pending.len() > 10_000 {
                group.pending.clear();
            }
        }
        groups.retain(|_, g| g.state != GroupState::Empty || !g.pending.is_empty() || g.meta_dirty);
    }
}

/// The topics of a `consumer` protocol subscription (a version, then Kafka's
/// `ConsumerProtocolSubscription`); none if the bytes do not decode. Versions above 3 are
/// read as 3, as Kafka's clients do.
fn decode_subscription(bytes: &Bytes) -> Vec<String> {
    use bytes::Buf;
    use kafka_protocol::protocol::Decodable;
    let mut buf = bytes.clone();
    if buf.remaining() < 2 {
        return Vec::new();
    }
    let version = buf.get_i16();
    if version < 0 {
        return Vec::new();
    }
    kafka_protocol::messages::ConsumerProtocolSubscription::decode(&mut buf, version.min(3))
        .map(|s| s.topics.into_iter().map(|t| t.to_string()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Broker, BrokerConfig};
    use std::sync::Arc;

    fn coordinator(dir: &std::path::Path) -> Arc<GroupCoordinator> {
        let b = Broker::open(BrokerConfig::new(dir)).unwrap();
        Arc::new(GroupCoordinator::new(
            GroupConfig::default(),
            OffsetStore::load(b).unwrap(),
        ))
    }

    fn join_req(member: &str, session_ms: i32) -> JoinRequest {
        JoinRequest {
            group_id: "g".into(),
            member_id: member.into(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: session_ms,
            rebalance_timeout_ms: session_ms,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"meta"))],
            require_known_member_id: false,
        }
    }

    #[tokio::test]
    async fn two_members_rebalance_and_a_dead_one_is_expired() {
        let dir = tempfile::tempdir().unwrap();
        let c = coordinator(dir.path());
        // First member: a group of one, generation 1.
        let a = c.join(join_req("", 1000)).await.unwrap();
        assert_eq!(a.generation_id, 1);
        assert_eq!(a.leader, a.member_id);
        assert_eq!(a.members.len(), 1);
        let s = c
            .sync(
                "g",
                1,
                &a.member_id,
                vec![(a.member_id.clone(), Bytes::from_static(b"all"))],
            )
            .await
            .unwrap();
        assert_eq!(&s.assignment[..], b"all");
        assert_eq!(c.heartbeat("g", 1, &a.member_id), Ok(()));

        // A second member joins: the first must rejoin before generation 2 forms.
        let c2 = c.clone();
        let b_join = tokio::spawn(async move { c2.join(join_req("", 1000)).await });
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            c.heartbeat("g", 1, &a.member_id),
            Err(GroupError::RebalanceInProgress)
        );
        let a2 = c.join(join_req(&a.member_id, 1000)).await.unwrap();
        let b = b_join.await.unwrap().unwrap();
        assert_eq!(a2.generation_id, 2);
        assert_eq!(b.generation_id, 2);
        assert_eq!(a2.leader, a.member_id, "the leader stays");
        assert_eq!(a2.members.len(), 2);
        assert!(b.members.is_empty());
        // Offsets cannot be committed until the assignment is synced.
        assert_eq!(
            c.validate_commit("g", 2, &b.member_id),
            Err(GroupError::RebalanceInProgress)
        );
        let c3 = c.clone();
        let bid = b.member_id.clone();
        let b_sync = tokio::spawn(async move { c3.sync("g", 2, &bid, vec![]).await });
        let sa = c
            .sync(
                "g",
                2,
                &a.member_id,
                vec![
                    (a.member_id.clone(), Bytes::from_static(b"p0")),
                    (b.member_id.clone(), Bytes::from_static(b"p1")),
                ],
            )
            .await
            .unwrap();
        assert_eq!(&sa.assignment[..], b"p0");
        assert_eq!(&b_sync.await.unwrap().unwrap().assignment[..], b"p1");
        assert_eq!(c.validate_commit("g", 2, &b.member_id), Ok(()));
        assert_eq!(
            c.validate_commit("g", 1, &b.member_id),
            Err(GroupError::IllegalGeneration)
        );

        // b stops heartbeating: after its session timeout, a is told to rejoin and gets
        // generation 3 alone.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            c.tick();
            if c.heartbeat("g", 2, &a.member_id) == Err(GroupError::RebalanceInProgress) {
                break;
            }
            assert!(Instant::now() < deadline, "b never expired");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let a3 = c.join(join_req(&a.member_id, 1000)).await.unwrap();
        assert_eq!(a3.generation_id, 3);
        assert_eq!(a3.members.len(), 1);
        assert_eq!(c.describe("g").state, GroupState::CompletingRebalance);
        assert_eq!(
            c.leave("g", &[a.member_id.clone(), "nobody".into()]),
            vec![Ok(()), Err(GroupError::UnknownMemberId)]
        );
        assert_eq!(c.describe("g").state, GroupState::Empty);
    }

    #[tokio::test]
    async fn member_id_required_and_inconsistent_protocols() {
        let dir = tempfile::tempdir().unwrap();
        let c = coordinator(dir.path());
        let mut r = join_req("", 1000);
        r.require_known_member_id = true;
        let id = match c.join(r.clone()).await {
            Err(GroupError::MemberIdRequired(id)) => id,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            c.join(join_req("made-up", 1000)).await,
            Err(GroupError::UnknownMemberId)
        );
        let j = c.join(join_req(&id, 1000)).await.unwrap();
        assert_eq!(j.member_id, id);
        let mut other = join_req("", 1000);
        other.protocols = vec![("roundrobin".into(), Bytes::new())];
        assert_eq!(
            c.join(other).await,
            Err(GroupError::InconsistentGroupProtocol)
        );
        assert!(matches!(
            c.join(join_req("", 10)).await,
            Err(GroupError::InvalidSessionTimeout(10))
        ));
    }
}
