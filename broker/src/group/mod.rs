//! Consumer groups: the classic-protocol coordinator ([`GroupCoordinator`]: membership,
//! generations, rebalances, session timeouts) and committed offsets ([`OffsetStore`], durable
//! in the internal compacted topic [`OFFSETS_TOPIC`]). On a cluster that topic is replicated
//! and a group's coordinator is the leader of its partition (rules in `offsets.rs`).
//!
//! [`GroupsView`] (`inspect.rs`) is the read-only view the HTTP API shows: groups, members
//! with their decoded assignments, committed offsets and lag.
//!
//! It knows nothing of the Kafka wire format: the handlers in [`crate::kafka`] decode requests,
//! call this module with plain values, and map [`GroupError`] to Kafka error codes.

mod coordinator;
mod inspect;
mod offsets;

pub use coordinator::{
    GroupConfig, GroupCoordinator, GroupDescription, GroupError, GroupState, JoinOutcome,
    JoinRequest, JoinedMember, MemberDescription, SyncOutcome,
};
pub use inspect::{
    AssignedTopic, GroupDetail, GroupSummary, GroupViewError, GroupsView, MemberDetail,
    PartitionLag, decode_assignment,
};
pub use offsets::{
    CommittedOffset, GroupMeta, OFFSETS_PARTITIONS, OFFSETS_TOPIC, OffsetStore, Ownership,
    offsets_partition,
};
