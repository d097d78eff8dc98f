//! A partition leader's bookkeeping, without I/O: its epoch, the in-sync set the controller
//! committed, each follower's log end offset and when it was last caught up, the high
//! watermark rule, and which in-sync set changes it wants (Kafka's `Partition` leader state,
//! KIP-841's maximal in-sync set). It decides nothing about the log and sends nothing.
//!
//! Rules (the replication module's invariants 2-4):
//! - a follower's log end offset is taken only from a fetch the leader accepted (current
//!   epoch, no divergence), so it is an offset up to which the follower's log equals ours;
//! - the high watermark candidate is the smallest log end offset over the *maximal* in-sync
//!   set (committed set plus members a pending proposal adds) and over caught-up followers
//!   outside it; the caller keeps the high watermark monotonic;
//! - the in-sync set changes only in [`LeaderState::apply_isr`], with the epoch it was
//!   committed under; proposals are only returned.

use std::collections::{BTreeMap, BTreeSet};

use crate::cluster::NodeId;

/// A change of the in-sync set the leader asks the controller for (an `AlterPartition`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    pub leader: NodeId,
    pub leader_epoch: i32,
    /// The whole wanted set, sorted.
    pub isr: Vec<NodeId>,
}

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerState {
    /// `-1` until the follower's first accepted fetch under this epoch.
    pub log_end_offset: i64,
    pub last_fetch_ms: u64,
    /// The leader's log end offset when that fetch arrived.
    pub last_fetch_leader_end: i64,
    /// Last time the follower had everything the leader had (Kafka's `lastCaughtUpTimeMs`);
    /// `None` for a follower outside the in-sync set that has not caught up this epoch.
    pub last_caught_up_ms: Option<u64>,
}

/// The leader side of one partition at one epoch.
#[derive(Debug, Clone)]
pub struct LeaderState {
    node: NodeId,
    epoch: i32,
    /// The leader's log end when it took this epoch (where the epoch starts).
    epoch_start_offset: i64,
    isr: BTreeSet<NodeId>,
    pending: Option<IsrProposal>,
    followers: BTreeMap<NodeId, FollowerState>,
}

impl LeaderState {
    /// The state of `node` leading at `epoch` with `replicas` assigned and `isr` committed.
    /// Followers in the in-sync set count as caught up now (they get the lag time to show
    /// it); the leader is always a member.
    pub fn new(
        node: NodeId,
        epoch: i32,
        epoch_start_offset: i64,
        replicas: &[NodeId],
        isr: &[NodeId],
        now_ms: u64,
    ) -> LeaderState {
        let mut set: BTreeSet<NodeId> = isr.iter().copied().collect();
        set.insert(node);
        let followers = replicas
            .iter()
            .chain(isr)
            .filter(|r| **r != node)
            .map(|r| {
                let caught_up = set.contains(r).then_some(now_ms);
                (
                    *r,
                    FollowerState {
                        log_end_offset: -1,
                        last_fetch_ms: 0,
                        last_fetch_leader_end: -1,
                        last_caught_up_ms: caught_up,
                    },
                )
            })
            .collect();
        LeaderState {
            node,
            epoch,
            epoch_start_offset,
            isr: set,
            pending: None,
            followers,
        }
    }

    pub fn epoch(&self) -> i32 {
        self.epoch
    }

    pub fn epoch_start_offset(&self) -> i64 {
        self.epoch_start_offset
    }

    /// The committed in-sync set (what `min_insync_replicas` is checked against).
    pub fn isr(&self) -> &BTreeSet<NodeId> {
        &self.isr
    }

    /// The committed set plus members a pending proposal adds (what the high watermark
    /// waits for).
    pub fn maximal_isr(&self) -> BTreeSet<NodeId> {
        let mut set = self.isr.clone();
        if let Some(p) = &self.pending {
            set.extend(p.isr.iter().copied());
        }
        set
    }

    /// How many members of the committed in-sync set are in sync *now* in this leader's
    /// own view: itself, and every follower caught up within `lag_ms`. The check of
    /// `min_insync_replicas` before an `acks=all` append uses this, so a leader whose
    /// followers are gone refuses (`NOT_ENOUGH_REPLICAS`) even while the controller cannot
    /// commit the shrink (no metadata quorum) — refusing is always safe; it never makes the
    /// set larger than the committed one.
    pub fn in_sync_now(&self, leader_end: i64, now: u64, lag_ms: u64) -> usize {
        self.isr
            .iter()
            .filter(|id| {
                **id == self.node
                    || self
                        .followers
                        .get(id)
                        .is_some_and(|f| Self::caught_up(f, leader_end, now, lag_ms))
            })
            .count()
    }

    pub fn pending(&self) -> Option<&IsrProposal> {
        self.pending.as_ref()
    }

    pub fn followers(&self) -> &BTreeMap<NodeId, FollowerState> {
        &self.followers
    }

    pub fn is_replica(&self, node: NodeId) -> bool {
        node == self.node || self.followers.contains_key(&node)
    }

    /// Records an accepted fetch of `follower` at `fetch_offset` when the leader's log ends
    /// at `leader_end` (Kafka's `updateFetchState`).
    pub fn record_fetch(&mut self, follower: NodeId, fetch_offset: i64, leader_end: i64, now: u64) {
        let Some(f) = self.followers.get_mut(&follower) else {
            return;
        };
        if fetch_offset >= leader_end {
            f.last_caught_up_ms = f.last_caught_up_ms.max(Some(now));
        } else if fetch_offset >= f.last_fetch_leader_end && f.last_fetch_leader_end >= 0 {
            f.last_caught_up_ms = f.last_caught_up_ms.max(Some(f.last_fetch_ms));
        }
        f.log_end_offset = fetch_offset;
        f.last_fetch_ms = now;
        f.last_fetch_leader_end = leader_end;
    }

    fn caught_up(f: &FollowerState, leader_end: i64, now: u64, lag_ms: u64) -> bool {
        f.log_end_offset == leader_end
            || f.last_caught_up_ms
                .is_some_and(|t| now.saturating_sub(t) <= lag_ms)
    }

    /// The offset every replica the high watermark waits for has: the leader's log end,
    /// lowered by each follower in the maximal in-sync set or caught up. Not monotonic; the
    /// caller keeps the largest value it has published.
    pub fn high_watermark_candidate(&self, leader_end: i64, now: u64, lag_ms: u64) -> i64 {
        let maximal = self.maximal_isr();
        let mut hw = leader_end;
        for (id, f) in &self.followers {
            if f.log_end_offset < hw
                && (maximal.contains(id) || Self::caught_up(f, leader_end, now, lag_ms))
            {
                hw = f.log_end_offset;
            }
        }
        hw
    }

    /// The in-sync set this leader wants, if it differs from the committed one: members out
    /// of sync for longer than `lag_ms` leave; a follower that has the high watermark and
    /// everything since this epoch started, and is caught up (fetching), joins. A proposal
    /// no longer wanted is dropped, so a pending expansion cannot hold the high watermark
    /// for a follower that stopped fetching. The proposal is remembered as pending
    /// (the high watermark then also waits for members it adds) until the controller's
    /// answer is applied.
    pub fn isr_change_wanted(
        &mut self,
        leader_end: i64,
        high_watermark: i64,
        now: u64,
        lag_ms: u64,
    ) -> Option<IsrProposal> {
        let mut wanted = self.isr.clone();
        for (id, f) in &self.followers {
            let in_sync = self.isr.contains(id);
            if in_sync && !Self::caught_up(f, leader_end, now, lag_ms) {
                wanted.remove(id);
            } else if !in_sync
                && f.log_end_offset >= high_watermark
                && f.log_end_offset >= self.epoch_start_offset
                && Self::caught_up(f, leader_end, now, lag_ms)
            {
                wanted.insert(*id);
            }
        }
        wanted.insert(self.node);
        if wanted == self.isr {
            self.pending = None;
            return None;
        }
        let proposal = IsrProposal {
            leader: self.node,
            leader_epoch: self.epoch,
            isr: wanted.into_iter().collect(),
        };
        self.pending = Some(proposal.clone());
        Some(proposal)
    }

    /// Follows a change of the replica list under the same epoch (a reassignment, KIP-455):
    /// added replicas become followers unknown until they fetch (outside the in-sync set, so
    /// they hold nothing back until they join it); removed ones are forgotten (the controller
    /// removes a replica only together with its place in the in-sync set).
    pub fn set_replicas(&mut self, replicas: &[NodeId]) {
        let isr = &self.isr;
        self.followers
            .retain(|id, _| replicas.contains(id) || isr.contains(id));
        for r in replicas.iter().filter(|r| **r != self.node) {
            self.followers.entry(*r).or_insert(FollowerState {
                log_end_offset: -1,
                last_fetch_ms: 0,
                last_fetch_leader_end: -1,
                last_caught_up_ms: None,
            });
        }
    }

    /// Installs an in-sync set the controller committed under this epoch (the leader is
    /// kept a member). The caller checked the epoch.
    pub fn apply_isr(&mut self, isr: &[NodeId], now: u64) {
        let set: BTreeSet<NodeId> = isr.iter().copied().chain([self.node]).collect();
        for id in set.difference(&self.isr) {
            if let Some(f) = self.followers.get_mut(id) {
                f.last_caught_up_ms = f.last_caught_up_ms.max(Some(now));
            }
        }
        self.isr = set;
        self.pending = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAG: u64 = 100;

    #[test]
    fn the_high_watermark_waits_for_the_in_sync_set_only() {
        let mut s = LeaderState::new(1, 5, 0, &[1, 2, 3], &[1, 2, 3], 0);
        assert_eq!(
            s.high_watermark_candidate(10, 0, LAG),
            -1,
            "unknown followers"
        );
        s.record_fetch(2, 10, 10, 1);
        s.record_fetch(3, 4, 10, 1);
        assert_eq!(s.high_watermark_candidate(10, 1, LAG), 4);
        // Node 3 left the set: it no longer holds the watermark back once it is not caught up.
        s.apply_isr(&[1, 2], 2);
        assert_eq!(s.high_watermark_candidate(10, 500, LAG), 10);
    }

    #[test]
    fn a_lagging_follower_is_proposed_out_and_a_caught_up_one_back_in() {
        let mut s = LeaderState::new(1, 5, 20, &[1, 2, 3], &[1, 2, 3], 0);
        s.record_fetch(2, 30, 30, 10);
        s.record_fetch(3, 25, 30, 10);
        assert_eq!(s.isr_change_wanted(30, 25, 50, LAG), None);
        // Node 3 fetches but never reaches the end for longer than the lag time.
        s.record_fetch(2, 40, 40, 150);
        s.record_fetch(3, 26, 40, 150);
        let p = s.isr_change_wanted(40, 26, 150, LAG).unwrap();
        assert_eq!(
            (p.leader, p.leader_epoch, p.isr.clone()),
            (1, 5, vec![1, 2])
        );
        // Still pending: the watermark still waits for node 3.
        assert_eq!(s.high_watermark_candidate(40, 150, LAG), 26);
        s.apply_isr(&p.isr, 160);
        assert!(s.pending().is_none());
        assert_eq!(s.high_watermark_candidate(40, 300, LAG), 40);
        // Caught up to the watermark and past the epoch start: proposed back in.
        s.record_fetch(3, 40, 40, 310);
        let p = s.isr_change_wanted(40, 40, 310, LAG).unwrap();
        assert_eq!(p.isr, vec![1, 2, 3]);
        // Pending expansion: the watermark waits for it.
        assert_eq!(s.maximal_isr().len(), 3);
        s.apply_isr(&p.isr, 320);
        assert_eq!(s.isr_change_wanted(40, 40, 330, LAG), None);
    }

    #[test]
    fn members_silent_past_the_lag_time_do_not_count_as_in_sync_now() {
        let mut s = LeaderState::new(1, 3, 0, &[1, 2, 3], &[1, 2, 3], 0);
        // A new leader gives every member the lag time.
        assert_eq!(s.in_sync_now(0, LAG, LAG), 3);
        s.record_fetch(2, 10, 10, 50);
        // Node 3 never fetched: out once the lag time passed, though still committed.
        assert_eq!(s.in_sync_now(10, LAG + 1, LAG), 2);
        assert_eq!(s.isr().len(), 3);
        // Node 2 caught up at 50 and then silent: out after 50 + LAG.
        assert_eq!(s.in_sync_now(12, 50 + LAG + 1, LAG), 1);
        // A member outside the committed set never counts, however caught up.
        s.apply_isr(&[1, 2], 200);
        s.record_fetch(3, 12, 12, 210);
        s.record_fetch(2, 12, 12, 210);
        assert_eq!(s.in_sync_now(12, 210, LAG), 2);
    }

    #[test]
    fn a_follower_below_the_epoch_start_does_not_join() {
        let mut s = LeaderState::new(1, 7, 50, &[1, 2], &[1], 0);
        s.record_fetch(2, 40, 50, 10);
        assert_eq!(s.isr_change_wanted(50, 30, 10, LAG), None);
        s.record_fetch(2, 50, 50, 20);
        assert_eq!(
            s.isr_change_wanted(50, 50, 20, LAG).unwrap().isr,
            vec![1, 2]
        );
    }
}
