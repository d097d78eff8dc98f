//! Consumer groups: the classic-protocol coordinator ([`GroupCoordinator`]: membership,
//! generations, rebalances, session timeouts) and committed offsets ([`OffsetStore`], durable
//! in the internal compacted topic [`OFFSETS_TOPIC`]).
//!
//! It knows nothing of the Kafka wire format: the handlers in [`crate::kafka`] decode requests,
//! call this module with plain values, and map [`GroupError`] to Kafka error codes.

mod coordinator;
mod offsets;

pub use coordinator::{
    GroupConfig, GroupCoordinator, GroupDescription, GroupError, GroupState, JoinOutcome,
    JoinRequest, JoinedMember, MemberDescription, SyncOutcome,
};
pub use offsets::{CommittedOffset, OFFSETS_TOPIC, OffsetStore};
