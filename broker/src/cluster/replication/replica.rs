//! One partition's replica on this node: its role (leader at an epoch, follower of a leader
//! at an epoch, or neither), its high watermark, and the operations each role allows — a
//! leader's produce and its answers to follower fetches, a follower's fetch requests and
//! what it does with the answers. It owns the rules between the role and the partition log;
//! it does not choose roles (the caller applies the controller's decisions) and sends
//! nothing (the fetcher and the RPC layer do).
//!
//! Locks: the replica's state, then the partition log, never the other way round. Methods
//! that touch the log are blocking (call them from `spawn_blocking` in async code); the
//! waits ([`PartitionReplica::wait_replicated`]) are async.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use super::ReplicationError;
use super::leader::{IsrProposal, LeaderState};
use super::messages::{
    EpochEndOffset, FetchError, FetchedData, PartitionFetch, PartitionFetchResponse, TopicPartition,
};
use crate::batch::{self, CheckedBatch};
use crate::cluster::NodeId;
use crate::log::PartitionLog;

/// How many replicas must have a produced batch before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// `acks=0` or `acks=1`: once the leader has it.
    Leader,
    /// `acks=all` (`-1`): once the high watermark covers it and the in-sync set has at
    /// least `min_insync_replicas` members.
    All,
}

/// Where a leader put a produced batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The epoch the batch was written under (an acks=all wait fails if it changes).
    pub leader_epoch: i32,
}

/// A replica's leadership, as the controller decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderAndIsr {
    pub leader: NodeId,
    pub leader_epoch: i32,
    /// Every assigned replica, leader included.
    pub replicas: Vec<NodeId>,
    /// The committed in-sync set.
    pub isr: Vec<NodeId>,
}

/// What waiters watch: changes of role, epoch, high watermark, log end and in-sync set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub leader_epoch: i32,
    pub is_leader: bool,
    pub high_watermark: i64,
    pub log_end_offset: i64,
    pub isr_len: usize,
    pub min_insync: usize,
    /// When leading: where this leader's epoch starts (its log end when it took the
    /// epoch); `-1` otherwise. While the high watermark is below it, the end of the log is
    /// not known yet (see [`Progress::end_known`]).
    pub epoch_start_offset: i64,
}

impl Progress {
    /// Whether the high watermark is the partition's end as clients were told it. A new
    /// leader starts with the high watermark it had as a follower, which can be below what
    /// its predecessor acknowledged (Kafka KIP-207): until its followers have fetched past
    /// the epoch's start (or left the in-sync set) that watermark is only a lower bound, and
    /// an end offset handed out from it would go backwards.
    pub fn end_known(&self) -> bool {
        !self.is_leader || self.high_watermark >= self.epoch_start_offset
    }
}

/// The replica's role.
#[derive(Debug, Clone)]
pub enum Role {
    /// Neither leader nor follower (not yet told, or removed).
    None,
    Leader(LeaderState),
    Follower {
        leader: NodeId,
    },
}

/// A replica's state for describe and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub leader: Option<NodeId>,
    pub leader_epoch: i32,
    pub is_leader: bool,
    /// The committed in-sync set (empty unless this replica leads).
    pub isr: Vec<NodeId>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// Per follower (when leading): its log end offset, `-1` if unknown.
    pub followers: Vec<(NodeId, i64)>,
    /// When leading: where this leader's epoch starts in the log (a follower that has not
    /// fetched in this epoch lacks at least everything from here); `-1` otherwise.
    pub epoch_start_offset: i64,
}

/// What a follower did with one fetch answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowerOutcome {
    /// Records appended (possibly none) and the high watermark taken.
    Appended,
    /// The log was truncated to this offset (divergence, or out of range).
    Truncated(i64),
    /// The leader refused the fetch; retry after a pause (new metadata may be needed).
    Refused,
    /// The answer was for a role or epoch this replica no longer has; dropped.
    Stale,
}

#[derive(Debug)]
struct State {
    role: Role,
    /// The newest leader epoch this replica was told of.
    epoch: i32,
    high_watermark: i64,
    min_insync: usize,
    lag_ms: u64,
}

/// One partition's replica on this node.
#[derive(Debug)]
pub struct PartitionReplica {
    tp: TopicPartition,
    node: NodeId,
    log: Arc<Mutex<PartitionLog>>,
    state: Mutex<State>,
    progress: watch::Sender<Progress>,
    /// A reassignment is adding this replica: its fetches share the replication throttle.
    throttled: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PartitionReplica {
    /// A replica with no role yet over `log`.
    pub fn new(
        tp: TopicPartition,
        node: NodeId,
        log: Arc<Mutex<PartitionLog>>,
        min_insync: usize,
        lag: Duration,
    ) -> PartitionReplica {
        let end = lock(&log).end_offset();
        let (progress, _) = watch::channel(Progress {
            leader_epoch: -1,
            is_leader: false,
            high_watermark: 0,
            log_end_offset: end,
            isr_len: 0,
            min_insync: min_insync.max(1),
            epoch_start_offset: -1,
        });
        PartitionReplica {
            tp,
            node,
            log,
            state: Mutex::new(State {
                role: Role::None,
                epoch: -1,
                high_watermark: 0,
                min_insync: min_insync.max(1),
                lag_ms: lag.as_millis() as u64,
            }),
            progress,
            throttled: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn topic_partition(&self) -> &TopicPartition {
        &self.tp
    }

    /// Marks whether a reassignment is adding this replica (its fetches are throttled).
    pub fn set_throttled(&self, throttled: bool) {
        self.throttled
            .store(throttled, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_throttled(&self) -> bool {
        self.throttled.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The partition log (for reads that need no replication rule, e.g. describe).
    pub fn log(&self) -> &Arc<Mutex<PartitionLog>> {
        &self.log
    }

    /// A receiver of every change of role, epoch, high watermark and log end.
    pub fn subscribe(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    pub fn progress(&self) -> Progress {
        *self.progress.borrow()
    }

    pub fn high_watermark(&self) -> i64 {
        lock(&self.state).high_watermark
    }

    /// The leader epoch this replica last applied.
    pub fn leader_epoch(&self) -> i32 {
        lock(&self.state).epoch
    }

    pub fn set_min_insync(&self, min_insync: usize) {
        let mut state = lock(&self.state);
        state.min_insync = min_insync.max(1);
        self.publish(&state, lock(&self.log).end_offset());
    }

    fn publish(&self, state: &State, log_end_offset: i64) {
        let (is_leader, isr_len, epoch_start_offset) = match &state.role {
            Role::Leader(l) => (true, l.isr().len(), l.epoch_start_offset()),
            _ => (false, 0, -1),
        };
        self.progress.send_replace(Progress {
            leader_epoch: state.epoch,
            is_leader,
            high_watermark: state.high_watermark,
            log_end_offset,
            isr_len,
            min_insync: state.min_insync,
            epoch_start_offset,
        });
    }

    fn check_new_epoch(&self, state: &State, epoch: i32) -> Result<(), ReplicationError> {
        if epoch < state.epoch {
            return Err(ReplicationError::StaleLeaderEpoch {
                tp: self.tp.clone(),
                epoch,
                current: state.epoch,
            });
        }
        Ok(())
    }

    /// Makes this replica the leader at `change.leader_epoch` (the controller's decision).
    /// The log records the epoch starting at its end and stamps it on every later batch;
    /// followers are unknown until they fetch; the high watermark stays where this replica
    /// had it (it only grows). Applying the same epoch again only updates the in-sync set
    /// and the replica list (a reassignment).
    pub fn become_leader(&self, change: &LeaderAndIsr, now: u64) -> Result<(), ReplicationError> {
        if change.leader != self.node {
            return Err(ReplicationError::NotLeaderOrFollower(self.tp.clone()));
        }
        let mut state = lock(&self.state);
        self.check_new_epoch(&state, change.leader_epoch)?;
        let mut log = lock(&self.log);
        let end = log.end_offset();
        if let Role::Leader(l) = &mut state.role
            && l.epoch() == change.leader_epoch
        {
            l.apply_isr(&change.isr, now);
            l.set_replicas(&change.replicas);
        } else {
            log.set_leader_epoch(change.leader_epoch)?;
            state.role = Role::Leader(LeaderState::new(
                self.node,
                change.leader_epoch,
                end,
                &change.replicas,
                &change.isr,
                now,
            ));
            state.epoch = change.leader_epoch;
            state.high_watermark = state.high_watermark.min(end);
        }
        drop(log);
        self.advance_high_watermark(&mut state, end, now);
        self.publish(&state, end);
        Ok(())
    }

    /// Makes this replica a follower of `leader` at `epoch`. Writes stop at once (waiting
    /// acks=all produces fail); the log is not truncated here: the first fetch finds where
    /// it diverges (fetch-based truncation, as Kafka since 2.7).
    pub fn become_follower(&self, leader: NodeId, epoch: i32) -> Result<(), ReplicationError> {
        if leader == self.node {
            return Err(ReplicationError::NotLeaderOrFollower(self.tp.clone()));
        }
        let mut state = lock(&self.state);
        self.check_new_epoch(&state, epoch)?;
        let mut log = lock(&self.log);
        log.clear_leader_epoch();
        let end = log.end_offset();
        drop(log);
        state.role = Role::Follower { leader };
        state.epoch = epoch;
        state.high_watermark = state.high_watermark.min(end);
        self.publish(&state, end);
        Ok(())
    }

    /// Drops the role (the partition moved away or is being deleted): writes and fetches
    /// stop; the epoch is kept so an older decision cannot be applied after this.
    pub fn stop(&self) {
        let mut state = lock(&self.state);
        lock(&self.log).clear_leader_epoch();
        state.role = Role::None;
        let end = lock(&self.log).end_offset();
        self.publish(&state, end);
    }

    /// The current leader, if known.
    pub fn leader(&self) -> Option<NodeId> {
        match &lock(&self.state).role {
            Role::None => None,
            Role::Leader(_) => Some(self.node),
            Role::Follower { leader } => Some(*leader),
        }
    }

    /// Installs an in-sync set the controller committed for `leader_epoch`. Refused unless
    /// this replica leads at exactly that epoch (a change made under another epoch is not
    /// ours to apply).
    pub fn apply_isr(
        &self,
        leader_epoch: i32,
        isr: &[NodeId],
        now: u64,
    ) -> Result<(), ReplicationError> {
        let mut state = lock(&self.state);
        let current = state.epoch;
        let Role::Leader(l) = &mut state.role else {
            return Err(ReplicationError::NotLeaderOrFollower(self.tp.clone()));
        };
        if l.epoch() != leader_epoch {
            return Err(ReplicationError::StaleLeaderEpoch {
                tp: self.tp.clone(),
                epoch: leader_epoch,
                current,
            });
        }
        l.apply_isr(isr, now);
        let end = lock(&self.log).end_offset();
        self.advance_high_watermark(&mut state, end, now);
        self.publish(&state, end);
        Ok(())
    }

    /// The in-sync set change this leader wants now, if any (see
    /// [`LeaderState::isr_change_wanted`]); the caller sends it to the controller. Called
    /// periodically, it also recomputes the high watermark: a follower outside the set that
    /// stops fetching holds it back only until its lag time has passed.
    pub fn isr_change_wanted(&self, now: u64) -> Option<IsrProposal> {
        let mut state = lock(&self.state);
        let hw = state.high_watermark;
        let lag = state.lag_ms;
        let Role::Leader(l) = &mut state.role else {
            return None;
        };
        let end = lock(&self.log).end_offset();
        let proposal = l.isr_change_wanted(end, hw, now, lag);
        self.advance_high_watermark(&mut state, end, now);
        if state.high_watermark != hw {
            self.publish(&state, end);
        }
        proposal
    }

    /// Moves the high watermark up to what the in-sync set has (never down).
    fn advance_high_watermark(&self, state: &mut State, leader_end: i64, now: u64) {
        let lag = state.lag_ms;
        if let Role::Leader(l) = &state.role {
            let candidate = l.high_watermark_candidate(leader_end, now, lag);
            if candidate > state.high_watermark {
                state.high_watermark = candidate;
            }
        }
    }

    /// Appends a produced batch as the leader (blocking). `acks=all` is refused with
    /// `NOT_ENOUGH_REPLICAS` before anything is written when fewer than
    /// `min_insync_replicas` members of the committed in-sync set are in sync now
    /// ([`LeaderState::in_sync_now`]: a member silent past the lag time does not count even
    /// before the controller commits its removal). The batch carries this leader's epoch.
    pub fn append_as_leader(
        &self,
        batch: &CheckedBatch,
        acks: Acks,
        now: u64,
    ) -> Result<Appended, ReplicationError> {
        self.append_as_leader_at(batch, acks, now, None)
    }

    /// [`append_as_leader`](Self::append_as_leader), refused unless this replica leads at
    /// exactly `expected_epoch` (when given): checked under the replica's lock with the
    /// append, so an owner that loaded state at one epoch never writes under another (the
    /// group coordinator's fence).
    pub fn append_as_leader_at(
        &self,
        batch: &CheckedBatch,
        acks: Acks,
        now: u64,
        expected_epoch: Option<i32>,
    ) -> Result<Appended, ReplicationError> {
        let mut state = lock(&self.state);
        let Role::Leader(l) = &state.role else {
            return Err(ReplicationError::NotLeaderOrFollower(self.tp.clone()));
        };
        let epoch = l.epoch();
        if expected_epoch.is_some_and(|e| e != epoch) {
            return Err(ReplicationError::NotLeaderOrFollower(self.tp.clone()));
        }
        let mut log = lock(&self.log);
        if acks == Acks::All {
            self.check_in_sync(&state, l, log.end_offset(), now)?;
        }
        if log.leader_epoch() != epoch {
            // Only this type sets the epoch on a replicated log; a mismatch is a bug upstream.
            return Err(ReplicationError::NotLeaderOrFollower(self.tp.clone()));
        }
        let (base_offset, last_offset) = log.append_checked(batch)?;
        let end = log.end_offset();
        drop(log);
        self.advance_high_watermark(&mut state, end, now);
        self.publish(&state, end);
        Ok(Appended {
            base_offset,
            last_offset,
            leader_epoch: epoch,
        })
    }

    /// Whether an `acks=all` append would be accepted now: this replica leads and enough
    /// of its in-sync set is in sync ([`append_as_leader`](Self::append_as_leader)'s first
    /// check). The Kafka edge asks this *before* it checks an idempotent producer's
    /// sequence numbers, as Kafka checks the in-sync set first: a batch pipelined behind
    /// one refused `NOT_ENOUGH_REPLICAS` must get the same retriable answer, not
    /// `OUT_OF_ORDER_SEQUENCE_NUMBER`, which makes librdkafka bump its epoch and resend
    /// possibly-stored batches under new sequence numbers (duplicates; found by the
    /// randomized fault runner).
    pub fn check_acks_all(&self, now: u64) -> Result<(), ReplicationError> {
        let state = lock(&self.state);
        let Role::Leader(l) = &state.role else {
            return Err(ReplicationError::NotLeaderOrFollower(self.tp.clone()));
        };
        let end = lock(&self.log).end_offset();
        self.check_in_sync(&state, l, end, now)
    }

    fn check_in_sync(
        &self,
        state: &State,
        leader: &LeaderState,
        leader_end: i64,
        now: u64,
    ) -> Result<(), ReplicationError> {
        let isr = leader.in_sync_now(leader_end, now, state.lag_ms);
        if isr < state.min_insync {
            return Err(ReplicationError::NotEnoughReplicas {
                tp: self.tp.clone(),
                isr,
                min_insync: state.min_insync,
            });
        }
        Ok(())
    }

    /// Waits until `appended` may be acknowledged at `acks=all`: the high watermark is past
    /// it and the in-sync set still has `min_insync_replicas` members
    /// (`NOT_ENOUGH_REPLICAS_AFTER_APPEND` otherwise). Fails with `NOT_LEADER_OR_FOLLOWER`
    /// as soon as this replica stops leading at the batch's epoch, and with
    /// `REQUEST_TIMED_OUT` after `timeout`. Never acknowledges what the in-sync set lacks.
    pub async fn wait_replicated(
        &self,
        appended: Appended,
        timeout: Duration,
    ) -> Result<(), ReplicationError> {
        let mut rx = self.progress.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let p = *rx.borrow_and_update();
            if !p.is_leader || p.leader_epoch != appended.leader_epoch {
                return Err(ReplicationError::NotLeaderOrFollower(self.tp.clone()));
            }
            if p.high_watermark > appended.last_offset {
                if p.isr_len < p.min_insync {
                    return Err(ReplicationError::NotEnoughReplicasAfterAppend {
                        tp: self.tp.clone(),
                        isr: p.isr_len,
                        min_insync: p.min_insync,
                    });
                }
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(ReplicationError::NotLeaderOrFollower(self.tp.clone())),
                Err(_) => return Err(ReplicationError::RequestTimedOut(self.tp.clone())),
            }
        }
    }

    /// [`append_as_leader`](Self::append_as_leader) then, for `acks=all`,
    /// [`wait_replicated`](Self::wait_replicated). The append runs on this thread.
    pub async fn produce(
        &self,
        batch: &CheckedBatch,
        acks: Acks,
        now: u64,
        timeout: Duration,
    ) -> Result<Appended, ReplicationError> {
        let appended = self.append_as_leader(batch, acks, now)?;
        if acks == Acks::All {
            self.wait_replicated(appended, timeout).await?;
        }
        Ok(appended)
    }

    /// A consumer's read on the leader (blocking): whole batches from `offset`, about
    /// `max_bytes`, none at or past the high watermark, and the high watermark. An offset
    /// past the log end is out of range; one between the high watermark and the log end
    /// reads nothing yet.
    pub fn read_committed(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> Result<(Bytes, i64), ReplicationError> {
        let state = lock(&self.state);
        if !matches!(state.role, Role::Leader(_)) {
            return Err(ReplicationError::NotLeaderOrFollower(self.tp.clone()));
        }
        let hw = state.high_watermark;
        let log = lock(&self.log);
        let (start, end) = (log.start_offset(), log.end_offset());
        if offset < start || offset > end {
            return Err(ReplicationError::Log(
                crate::error::BrokerError::OffsetOutOfRange {
                    topic: self.tp.topic.clone(),
                    partition: self.tp.partition,
                    offset,
                    start,
                    end,
                },
            ));
        }
        if offset >= hw {
            return Ok((Bytes::new(), hw));
        }
        let bytes = log.read(offset, max_bytes)?;
        drop(log);
        drop(state);
        Ok((below(&bytes, hw)?, hw))
    }

    /// OffsetForLeaderEpoch as the leader answers it (Kafka's API 23): refused unless this
    /// replica leads, and, when the caller gives its `current_leader_epoch`, leads at it.
    pub fn offset_for_leader_epoch(
        &self,
        current_leader_epoch: Option<i32>,
        epoch: i32,
    ) -> Result<EpochEndOffset, ReplicationError> {
        let state = lock(&self.state);
        let Role::Leader(l) = &state.role else {
            return Err(ReplicationError::NotLeaderOrFollower(self.tp.clone()));
        };
        if let Some(e) = current_leader_epoch {
            self.check_request_epoch(l.epoch(), e)
                .map_err(|e| ReplicationError::Fetch(self.tp.clone(), e))?;
        }
        let (epoch, end_offset) = lock(&self.log).end_offset_for_epoch(epoch);
        Ok(EpochEndOffset { epoch, end_offset })
    }

    fn check_request_epoch(&self, current: i32, request: i32) -> Result<(), FetchError> {
        if request < current {
            return Err(FetchError::FencedLeaderEpoch { request, current });
        }
        if request > current {
            return Err(FetchError::UnknownLeaderEpoch { request, current });
        }
        Ok(())
    }

    /// Answers one partition of a follower's fetch as the leader (blocking): refused unless
    /// this replica leads at the follower's epoch and the follower is an assigned replica; a
    /// diverging epoch when the follower's last fetched epoch does not end at or after its
    /// fetch offset in this log (then the follower's position is not recorded); else the
    /// follower's log end is recorded, the high watermark advanced, and records from the
    /// fetch offset returned with the high watermark.
    pub fn serve_fetch(
        &self,
        follower: NodeId,
        req: &PartitionFetch,
        now: u64,
    ) -> PartitionFetchResponse {
        let result = self.serve_fetch_inner(follower, req, now);
        PartitionFetchResponse {
            tp: self.tp.clone(),
            result,
        }
    }

    fn serve_fetch_inner(
        &self,
        follower: NodeId,
        req: &PartitionFetch,
        now: u64,
    ) -> Result<FetchedData, FetchError> {
        let mut state = lock(&self.state);
        let Role::Leader(l) = &mut state.role else {
            return Err(FetchError::NotLeaderOrFollower);
        };
        self.check_request_epoch(l.epoch(), req.current_leader_epoch)?;
        if !l.is_replica(follower) || follower == self.node {
            return Err(FetchError::NotLeaderOrFollower);
        }
        let log = lock(&self.log);
        let (start, end) = (log.start_offset(), log.end_offset());
        let hw = state.high_watermark;
        if let Some(last_epoch) = req.last_fetched_epoch {
            let (epoch, end_offset) = log.end_offset_for_epoch(last_epoch);
            if epoch < last_epoch || end_offset < req.fetch_offset {
                return Ok(FetchedData {
                    high_watermark: hw,
                    log_start_offset: start,
                    log_end_offset: end,
                    diverging_epoch: Some(EpochEndOffset { epoch, end_offset }),
                    records: Bytes::new(),
                });
            }
        }
        if req.fetch_offset < start || req.fetch_offset > end {
            return Err(FetchError::OffsetOutOfRange {
                offset: req.fetch_offset,
                log_start_offset: start,
                log_end_offset: end,
            });
        }
        let records = log
            .read(req.fetch_offset, req.max_bytes.max(1))
            .map_err(|e| FetchError::Storage(e.to_string()))?;
        drop(log);
        if let Role::Leader(l) = &mut state.role {
            l.record_fetch(follower, req.fetch_offset, end, now);
        }
        let before = state.high_watermark;
        self.advance_high_watermark(&mut state, end, now);
        if state.high_watermark != before {
            self.publish(&state, end);
        }
        Ok(FetchedData {
            high_watermark: state.high_watermark,
            log_start_offset: start,
            log_end_offset: end,
            diverging_epoch: None,
            records,
        })
    }

    /// The fetch this replica sends to `leader`, or `None` unless it follows `leader` now.
    pub fn follower_fetch(&self, leader: NodeId, max_bytes: usize) -> Option<PartitionFetch> {
        let state = lock(&self.state);
        match state.role {
            Role::Follower { leader: l } if l == leader => {}
            _ => return None,
        }
        let log = lock(&self.log);
        Some(PartitionFetch {
            tp: self.tp.clone(),
            current_leader_epoch: state.epoch,
            fetch_offset: log.end_offset(),
            last_fetched_epoch: log.latest_epoch(),
            high_watermark: state.high_watermark,
            max_bytes,
        })
    }

    /// Applies the leader's answer to `req` (blocking), if this replica still follows
    /// `leader` at the request's epoch and its log still ends where the request said:
    /// truncates on a diverging epoch (to the end of the last epoch both logs share) or an
    /// out-of-range answer, else appends the records keeping the leader's offsets and epochs
    /// and takes the leader's high watermark (bounded by its own log end).
    pub fn apply_fetch(
        &self,
        leader: NodeId,
        req: &PartitionFetch,
        result: &Result<FetchedData, FetchError>,
    ) -> Result<FollowerOutcome, ReplicationError> {
        let mut state = lock(&self.state);
        let follows = matches!(state.role, Role::Follower { leader: l } if l == leader);
        if !follows || state.epoch != req.current_leader_epoch {
            return Ok(FollowerOutcome::Stale);
        }
        let mut log = lock(&self.log);
        if log.end_offset() != req.fetch_offset {
            return Ok(FollowerOutcome::Stale);
        }
        let outcome = match result {
            Ok(data) => match data.diverging_epoch {
                Some(diverging) => {
                    let target = truncation_offset(&log, diverging, state.high_watermark);
                    tracing::info!(
                        partition = %self.tp,
                        leader,
                        epoch = diverging.epoch,
                        leader_end = diverging.end_offset,
                        from = log.end_offset(),
                        to = target,
                        "log diverges from the leader's: truncating"
                    );
                    FollowerOutcome::Truncated(log.truncate_to(target)?)
                }
                None => {
                    if !data.records.is_empty() {
                        log.append_as_follower(&data.records)?;
                    }
                    let end = log.end_offset();
                    state.high_watermark = data.high_watermark.min(end).max(0);
                    FollowerOutcome::Appended
                }
            },
            Err(FetchError::OffsetOutOfRange {
                log_start_offset,
                log_end_offset,
                ..
            }) => {
                let end = log.end_offset();
                if end > *log_end_offset {
                    FollowerOutcome::Truncated(log.truncate_to(*log_end_offset)?)
                } else {
                    log.truncate_fully_and_start_at(*log_start_offset)?;
                    FollowerOutcome::Truncated(*log_start_offset)
                }
            }
            Err(_) => FollowerOutcome::Refused,
        };
        let end = log.end_offset();
        drop(log);
        state.high_watermark = state.high_watermark.min(end);
        self.publish(&state, end);
        Ok(outcome)
    }

    /// The replica's state for describe and metrics.
    pub fn status(&self) -> ReplicaStatus {
        let state = lock(&self.state);
        let log = lock(&self.log);
        let (leader, is_leader, isr, followers, epoch_start_offset) = match &state.role {
            Role::None => (None, false, Vec::new(), Vec::new(), -1),
            Role::Follower { leader } => (Some(*leader), false, Vec::new(), Vec::new(), -1),
            Role::Leader(l) => (
                Some(self.node),
                true,
                l.isr().iter().copied().collect(),
                l.followers()
                    .iter()
                    .map(|(id, f)| (*id, f.log_end_offset))
                    .collect(),
                l.epoch_start_offset(),
            ),
        };
        ReplicaStatus {
            leader,
            leader_epoch: state.epoch,
            is_leader,
            isr,
            high_watermark: state.high_watermark,
            log_start_offset: log.start_offset(),
            log_end_offset: log.end_offset(),
            followers,
            epoch_start_offset,
        }
    }
}

/// Where a follower truncates when the leader says its log diverges (Kafka's
/// `getOffsetTruncationState`): to the end of the diverging epoch in both logs when this log
/// has that epoch; to the end of its own largest epoch below it otherwise (the next fetch
/// then checks that one); to the high watermark when the leader knows no epoch at all.
fn truncation_offset(log: &PartitionLog, diverging: EpochEndOffset, high_watermark: i64) -> i64 {
    let end = log.end_offset();
    if diverging.epoch < 0 || diverging.end_offset < 0 {
        return high_watermark.min(end);
    }
    let (epoch, own_end) = log.end_offset_for_epoch(diverging.epoch);
    if epoch < 0 || own_end < 0 {
        diverging.end_offset.min(end)
    } else if epoch == diverging.epoch {
        own_end.min(diverging.end_offset).min(end)
    } else {
        own_end.min(end)
    }
}

/// The whole batches of `bytes` that end before `limit`.
fn below(bytes: &Bytes, limit: i64) -> Result<Bytes, ReplicationError> {
    Ok(batch::below(bytes, limit)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::EncodeRecord;
    use crate::config::FsyncPolicy;
    use crate::log::PartitionSettings;

    fn replica(dir: &std::path::Path) -> PartitionReplica {
        let settings = PartitionSettings {
            segment_bytes: 1 << 20,
            segment_ms: i64::MAX / 2,
            index_interval_bytes: 4096,
            fsync: FsyncPolicy::Os,
            max_batch_bytes: 1 << 20,
            retention_ms: None,
            retention_bytes: None,
            compacted: false,
            delete_retention_ms: 0,
        };
        let log = Arc::new(Mutex::new(PartitionLog::open(dir, settings).unwrap()));
        PartitionReplica::new(
            TopicPartition::new("t", 0),
            1,
            log,
            1,
            Duration::from_secs(10),
        )
    }

    fn batch(n: usize) -> CheckedBatch {
        let recs: Vec<EncodeRecord> = (0..n)
            .map(|i| EncodeRecord {
                offset: i as i64,
                timestamp: 1,
                key: None,
                value: Some(Bytes::from_static(b"v")),
                headers: vec![],
            })
            .collect();
        batch::validate_records(&batch::encode(&recs).unwrap().freeze()).unwrap()
    }

    fn leadership(epoch: i32, isr: &[NodeId]) -> LeaderAndIsr {
        LeaderAndIsr {
            leader: 1,
            leader_epoch: epoch,
            replicas: vec![1, 2],
            isr: isr.to_vec(),
        }
    }

    #[test]
    fn offset_for_leader_epoch_is_answered_by_the_leader_at_its_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let r = replica(dir.path());
        assert!(matches!(
            r.offset_for_leader_epoch(None, 0),
            Err(ReplicationError::NotLeaderOrFollower(_))
        ));
        r.become_leader(&leadership(2, &[1]), 0).unwrap();
        r.append_as_leader(&batch(3), Acks::Leader, 0).unwrap();
        r.become_leader(&leadership(5, &[1]), 0).unwrap();
        r.append_as_leader(&batch(2), Acks::Leader, 0).unwrap();
        let answer = |epoch| r.offset_for_leader_epoch(Some(5), epoch).unwrap();
        assert_eq!(
            answer(2),
            EpochEndOffset {
                epoch: 2,
                end_offset: 3
            }
        );
        assert_eq!(
            answer(4),
            EpochEndOffset {
                epoch: 2,
                end_offset: 3
            }
        );
        assert_eq!(
            answer(5),
            EpochEndOffset {
                epoch: 5,
                end_offset: 5
            }
        );
        assert!(matches!(
            r.offset_for_leader_epoch(Some(4), 2),
            Err(ReplicationError::Fetch(
                _,
                FetchError::FencedLeaderEpoch { .. }
            ))
        ));
        assert!(matches!(
            r.offset_for_leader_epoch(Some(6), 2),
            Err(ReplicationError::Fetch(
                _,
                FetchError::UnknownLeaderEpoch { .. }
            ))
        ));
        // With one in-sync replica and no caught-up follower, the watermark is the log end.
        assert_eq!(r.high_watermark(), 5);
        let (bytes, hw) = r.read_committed(0, 1 << 20).unwrap();
        assert_eq!((batch::split(&bytes).unwrap().len(), hw), (2, 5));
    }

    #[test]
    fn roles_never_go_back_in_epochs_and_a_follower_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let r = replica(dir.path());
        r.become_follower(2, 3).unwrap();
        assert!(matches!(
            r.append_as_leader(&batch(1), Acks::Leader, 0),
            Err(ReplicationError::NotLeaderOrFollower(_))
        ));
        assert!(matches!(
            r.become_leader(&leadership(2, &[1]), 0),
            Err(ReplicationError::StaleLeaderEpoch { .. })
        ));
        r.become_leader(&leadership(4, &[1, 2]), 0).unwrap();
        assert!(
            r.apply_isr(3, &[1], 0).is_err(),
            "an in-sync set of another epoch"
        );
        r.apply_isr(4, &[1], 0).unwrap();
        assert_eq!(r.status().isr, vec![1]);
        assert!(matches!(
            r.become_follower(2, 3),
            Err(ReplicationError::StaleLeaderEpoch { .. })
        ));
        assert_eq!(r.leader(), Some(1));
    }
}
