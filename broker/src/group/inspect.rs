//! What the HTTP API (and the web console) shows of consumer groups: the groups this node
//! coordinates with their state and member count ([`GroupsView::list`]), and one group in
//! detail ([`GroupsView::describe`]): its members with their client id, host and decoded
//! assignment, and per topic-partition the committed offset, the log end and the lag.
//!
//! Read only: nothing here changes a group, and the coordinator's decisions never depend on
//! it. Assignments are relayed by the coordinator as opaque bytes; this module decodes those
//! of the `consumer` protocol type (Kafka's `ConsumerProtocolAssignment`) for display only,
//! and a member whose bytes do not decode is shown without its assignment.
//!
//! The coordinator is created by the Kafka listener once committed offsets are loaded
//! (`crate::kafka::serve_with_groups`), so a [`GroupsView`] is a handle filled at that moment;
//! before, and on a node without a Kafka listener, every call answers
//! [`GroupViewError::NotServed`]. On a cluster a node answers only for the groups it
//! coordinates ([`GroupViewError::NotCoordinator`] names the offsets partition whose leader
//! does; the HTTP layer forwards there).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use bytes::Buf;
use kafka_protocol::messages::ConsumerProtocolAssignment;
use kafka_protocol::protocol::Decodable;
use serde::{Deserialize, Serialize};

use super::coordinator::{GroupCoordinator, GroupState};
use super::offsets::Ownership;
use crate::Broker;
use crate::error::ErrorKind;

/// Why a group cannot be shown by this node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupViewError {
    #[error("consumer group '{0}' does not exist")]
    UnknownGroup(String),
    #[error("this node does not coordinate group '{group}' (offsets partition {partition})")]
    NotCoordinator { group: String, partition: i32 },
    #[error("group '{0}'s coordinator is loading its offsets; retry")]
    Loading(String),
    #[error("consumer groups are not served on this node (no Kafka listener, or it is starting)")]
    NotServed,
}

impl GroupViewError {
    /// The stable code shown to clients.
    pub fn code(&self) -> &'static str {
        match self {
            GroupViewError::UnknownGroup(_) => "unknown_group",
            GroupViewError::NotCoordinator { .. } => "not_coordinator",
            GroupViewError::Loading(_) => "coordinator_loading",
            GroupViewError::NotServed => "groups_unavailable",
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            GroupViewError::UnknownGroup(_) => ErrorKind::NotFound,
            GroupViewError::NotCoordinator { .. }
            | GroupViewError::Loading(_)
            | GroupViewError::NotServed => ErrorKind::Unavailable,
        }
    }
}

/// One group in a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSummary {
    pub group_id: String,
    /// `Empty`, `PreparingRebalance`, `CompletingRebalance`, `Stable` (Kafka's names).
    pub state: String,
    pub protocol_type: String,
    pub members: usize,
    /// The node coordinating it (the Kafka broker id; 0 on a single node).
    pub coordinator: u64,
}

/// One group in detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDetail {
    pub group_id: String,
    pub state: String,
    pub protocol_type: String,
    /// The assignor the members agreed on (`range`, `roundrobin`, …; empty when none).
    pub protocol: String,
    pub coordinator: u64,
    pub members: Vec<MemberDetail>,
    /// Every partition the group committed an offset for or has assigned, in topic then
    /// partition order.
    pub partitions: Vec<PartitionLag>,
    /// The sum of the known lags (`None` when no partition's lag is known).
    pub total_lag: Option<i64>,
}

/// A member of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberDetail {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Its assigned partitions per topic, decoded from the `consumer` protocol; `None` for
    /// another protocol type or bytes that do not decode.
    pub assignment: Option<Vec<AssignedTopic>>,
    /// Size of the raw assignment the leader sent (0 before the first sync).
    pub assignment_bytes: usize,
}

/// The partitions of one topic assigned to a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignedTopic {
    pub topic: String,
    pub partitions: Vec<i32>,
}

/// A partition of a group: where the group is, where the log is, and who reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// The committed offset (the next record the group will read), if any.
    pub committed_offset: Option<i64>,
    /// The partition's end as consumers see it (its high watermark on a replicated
    /// partition), from this node's copy; `None` where this node holds none (the HTTP API
    /// then asks the partition's leader).
    pub log_end_offset: Option<i64>,
    /// `log_end_offset - committed_offset` (never negative); `None` when either is unknown.
    pub lag: Option<i64>,
    /// The member assigned this partition now, if any.
    pub member_id: Option<String>,
    pub commit_timestamp: Option<i64>,
    pub metadata: Option<String>,
}

impl PartitionLag {
    /// Sets the log end and the lag that follows from it.
    pub fn set_log_end(&mut self, end: Option<i64>) {
        self.log_end_offset = end;
        self.lag = lag(self.committed_offset, end);
    }
}

impl GroupDetail {
    /// Sums the known lags of its partitions into `total_lag`.
    pub fn recount_lag(&mut self) {
        self.total_lag = self
            .partitions
            .iter()
            .filter_map(|p| p.lag)
            .reduce(i64::saturating_add);
    }
}

/// A handle on this node's group coordinator, filled once the Kafka listener has loaded
/// committed offsets. Cheap to clone.
#[derive(Clone, Default)]
pub struct GroupsView {
    coordinator: Arc<OnceLock<Arc<GroupCoordinator>>>,
    /// This node's broker id (shown as each group's coordinator).
    node: u64,
}

impl std::fmt::Debug for GroupsView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupsView")
            .field("node", &self.node)
            .field("serving", &self.coordinator.get().is_some())
            .finish()
    }
}

impl GroupsView {
    /// An empty handle for node `node`.
    pub fn new(node: u64) -> GroupsView {
        GroupsView {
            coordinator: Arc::default(),
            node,
        }
    }

    /// Called by the Kafka listener with its coordinator (the first call wins).
    pub(crate) fn publish(&self, coordinator: Arc<GroupCoordinator>) {
        let _ = self.coordinator.set(coordinator);
    }

    fn coordinator(&self) -> Result<&Arc<GroupCoordinator>, GroupViewError> {
        self.coordinator.get().ok_or(GroupViewError::NotServed)
    }

    /// The groups this node coordinates (with members or committed offsets), by id.
    pub fn list(&self) -> Result<Vec<GroupSummary>, GroupViewError> {
        let c = self.coordinator()?;
        Ok(c.list()
            .into_iter()
            .filter(|(id, _, _)| c.offsets().ownership(id) == Ownership::Owned)
            .map(|(id, protocol_type, state)| {
                let members = c.describe(&id).members.len();
                GroupSummary {
                    group_id: id,
                    state: state.as_str().to_string(),
                    protocol_type,
                    members,
                    coordinator: self.node,
                }
            })
            .collect())
    }

    /// The offsets partition holding `group` (where its coordinator is, on a cluster).
    pub fn partition_for(&self, group: &str) -> Result<i32, GroupViewError> {
        Ok(self.coordinator()?.offsets().partition_for(group))
    }

    /// One group: members, assignment, committed offsets and lag (log ends from
    /// `broker`'s copies, no disk access).
    pub fn describe(&self, broker: &Broker, group: &str) -> Result<GroupDetail, GroupViewError> {
        let c = self.coordinator()?;
        match c.offsets().ownership(group) {
            Ownership::Owned => {}
            Ownership::Loading => return Err(GroupViewError::Loading(group.to_string())),
            Ownership::NotOwner => {
                return Err(GroupViewError::NotCoordinator {
                    group: group.to_string(),
                    partition: c.offsets().partition_for(group),
                });
            }
        }
        let description = c.describe(group);
        if description.state == GroupState::Dead {
            return Err(GroupViewError::UnknownGroup(group.to_string()));
        }
        let consumer =
            description.protocol_type.is_empty() || description.protocol_type == "consumer";
        let members: Vec<MemberDetail> = description
            .members
            .iter()
            .map(|m| MemberDetail {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                assignment: if consumer {
                    decode_assignment(&m.assignment)
                } else {
                    None
                },
                assignment_bytes: m.assignment.len(),
            })
            .collect();
        let mut rows: BTreeMap<(String, i32), PartitionLag> = BTreeMap::new();
        let row = |topic: &str, partition: i32| PartitionLag {
            topic: topic.to_string(),
            partition,
            committed_offset: None,
            log_end_offset: None,
            lag: None,
            member_id: None,
            commit_timestamp: None,
            metadata: None,
        };
        for (topic, partition, committed) in c.offsets().all_for(group) {
            let r = rows
                .entry((topic.clone(), partition))
                .or_insert_with(|| row(&topic, partition));
            r.committed_offset = Some(committed.offset);
            r.commit_timestamp = Some(committed.commit_timestamp);
            r.metadata = committed.metadata.filter(|m| !m.is_empty());
        }
        for m in &members {
            for t in m.assignment.iter().flatten() {
                for &p in &t.partitions {
                    rows.entry((t.topic.clone(), p))
                        .or_insert_with(|| row(&t.topic, p))
                        .member_id = Some(m.member_id.clone());
                }
            }
        }
        for r in rows.values_mut() {
            let end = broker
                .partition_offsets(&r.topic, r.partition)
                .ok()
                .map(|(_, end)| end);
            r.set_log_end(end);
        }
        let mut detail = GroupDetail {
            group_id: description.group_id,
            state: description.state.as_str().to_string(),
            protocol_type: description.protocol_type,
            protocol: description.protocol,
            coordinator: self.node,
            members,
            partitions: rows.into_values().collect(),
            total_lag: None,
        };
        detail.recount_lag();
        Ok(detail)
    }
}

/// How far a group that committed `committed` is behind a log ending at `end`.
fn lag(committed: Option<i64>, end: Option<i64>) -> Option<i64> {
    let (c, e) = (committed?, end?);
    // A negative committed offset means "none" in Kafka's protocol.
    (c >= 0).then(|| (e - c).max(0))
}

/// The partitions of a `consumer` protocol assignment (a version, then
/// `ConsumerProtocolAssignment`); `None` if the bytes are empty or do not decode. Versions
/// above 3 are read as 3, as Kafka's clients do (later fields are appended).
pub fn decode_assignment(bytes: &[u8]) -> Option<Vec<AssignedTopic>> {
    let mut buf = bytes::Bytes::copy_from_slice(bytes);
    if buf.remaining() < 2 {
        return None;
    }
    let version = buf.get_i16();
    if version < 0 {
        return None;
    }
    let a = ConsumerProtocolAssignment::decode(&mut buf, version.min(3)).ok()?;
    let mut topics: Vec<AssignedTopic> = a
        .assigned_partitions
        .into_iter()
        .map(|t| {
            let mut partitions = t.partitions;
            partitions.sort_unstable();
            AssignedTopic {
                topic: t.topic.0.to_string(),
                partitions,
            }
        })
        .collect();
    topics.sort_by(|a, b| a.topic.cmp(&b.topic));
    Some(topics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn encoded(version: i16, topics: &[(&str, &[i32])]) -> Vec<u8> {
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(
            topics
                .iter()
                .map(|(t, ps)| {
                    TopicPartition::default()
                        .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partitions(ps.to_vec())
                })
                .collect(),
        );
        let mut out = bytes::BytesMut::new();
        out.extend_from_slice(&version.to_be_bytes());
        a.encode(&mut out, version.min(3)).unwrap();
        out.to_vec()
    }

    #[test]
    fn consumer_assignments_decode_sorted() {
        let bytes = encoded(1, &[("orders", &[2, 0]), ("a", &[1])]);
        let got = decode_assignment(&bytes).unwrap();
        assert_eq!(
            got,
            vec![
                AssignedTopic {
                    topic: "a".into(),
                    partitions: vec![1]
                },
                AssignedTopic {
                    topic: "orders".into(),
                    partitions: vec![0, 2]
                },
            ]
        );
        // A newer version is read as the newest known.
        assert_eq!(
            decode_assignment(&encoded(5, &[("t", &[0])]))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn bytes_that_are_not_an_assignment_are_none() {
        assert_eq!(decode_assignment(&[]), None);
        assert_eq!(decode_assignment(&[0]), None);
        assert_eq!(decode_assignment(&[0xff, 0xff, 1, 2]), None);
        // A huge array length does not allocate (the vendored crate caps it).
        assert_eq!(decode_assignment(&[0, 1, 0x7f, 0xff, 0xff, 0xff]), None);
    }

    #[test]
    fn lag_needs_both_ends() {
        assert_eq!(lag(Some(4), Some(10)), Some(6));
        assert_eq!(lag(Some(12), Some(10)), Some(0));
        assert_eq!(lag(None, Some(10)), None);
        assert_eq!(lag(Some(3), None), None);
        assert_eq!(lag(Some(-1), Some(10)), None);
    }
}
