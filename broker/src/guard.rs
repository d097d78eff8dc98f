//! The rules that protect the topics the server owns and the topics in use. An internal
//! topic carries a marker in its persisted spec ([`InternalTopic`], set only by its owner
//! through [`crate::Broker::ensure_internal_topic`]), never recognised by its name: clients
//! may read it, but not produce to it, delete it while its owner exists, or create a topic
//! with a marker. A topic a processor or query reads or writes is not deleted from under it.
//! A client's topic that happens to have the name an owner needs is never taken over
//! (`topic_conflict`); only [`crate::Broker::adopt_internal_topic`] marks an existing topic,
//! for data dirs older than the markers.
//!
//! The [`crate::Broker`]'s client-facing methods (`create_topic`, `delete_topic`, `produce`,
//! `append_checked`) call these checks; the owners write through `produce_owned`,
//! `append_owned` and `delete_owned_topic`. Who owns and uses topics above the broker (the
//! engine) answers through the [`TopicGuard`] the node registers. No I/O here.

use crate::error::{BrokerError, Result};
use crate::group::OFFSETS_TOPIC;
use crate::txn::TXN_STATE_TOPIC;
use crate::types::{InternalTopic, TopicSpec};

/// What the broker asks the layers above it (the engine) before a client deletes a topic.
pub trait TopicGuard: Send + Sync {
    /// Whether the owner an internal topic's marker names still exists.
    fn owner_exists(&self, owner: &str) -> bool;
    /// Who reads or writes `topic` (e.g. `processor 'wc'`), if anyone.
    fn user_of(&self, topic: &str) -> Option<String>;
}

/// A client's topic spec: no marker, and not the name of the group or transaction
/// coordinator's topic.
pub fn check_client_spec(spec: &TopicSpec) -> Result<()> {
    if spec.internal.is_some() {
        return Err(BrokerError::InvalidConfig(
            "'internal' is set by the server on the topics it owns, not by clients".into(),
        ));
    }
    if spec.cluster.is_some() {
        return Err(BrokerError::InvalidConfig(
            "'cluster' is set by the server on replicated topics, not by clients".into(),
        ));
    }
    if spec.name == OFFSETS_TOPIC {
        return Err(BrokerError::InternalTopic {
            topic: spec.name.clone(),
            owner: InternalTopic::GROUP_COORDINATOR.into(),
        });
    }
    if spec.name == TXN_STATE_TOPIC {
        return Err(BrokerError::InternalTopic {
            topic: spec.name.clone(),
            owner: InternalTopic::TXN_COORDINATOR.into(),
        });
    }
    Ok(())
}

/// A client's write to `topic` (marked `internal`): refused for internal topics.
pub fn check_write(topic: &str, internal: Option<&InternalTopic>) -> Result<()> {
    match internal {
        Some(m) => Err(BrokerError::InternalTopic {
            topic: topic.to_string(),
            owner: m.owner.clone(),
        }),
        None => Ok(()),
    }
}

/// A client's delete of `topic`: refused for an internal topic whose owner exists (without a
/// guard every owner is taken to exist) and for a topic in use.
pub fn check_delete(
    topic: &str,
    internal: Option<&InternalTopic>,
    guard: Option<&dyn TopicGuard>,
) -> Result<()> {
    if let Some(m) = internal {
        let exists = m.owner == InternalTopic::GROUP_COORDINATOR
            || m.owner == InternalTopic::TXN_COORDINATOR
            || guard.is_none_or(|g| g.owner_exists(&m.owner));
        if exists {
            return check_write(topic, internal);
        }
    }
    if let Some(user) = guard.and_then(|g| g.user_of(topic)) {
        return Err(BrokerError::TopicInUse {
            topic: topic.to_string(),
            user,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Users;
    impl TopicGuard for Users {
        fn owner_exists(&self, owner: &str) -> bool {
            owner == "processor:wc"
        }
        fn user_of(&self, topic: &str) -> Option<String> {
            (topic == "text").then(|| "processor 'wc'".to_string())
        }
    }

    #[test]
    fn internal_topics_are_read_only_while_their_owner_exists() {
        let wc = InternalTopic::processor("wc");
        let gone = InternalTopic::processor("old");
        let groups = InternalTopic {
            owner: InternalTopic::GROUP_COORDINATOR.into(),
        };
        let code = |r: Result<()>| r.err().map(|e| e.code());
        assert_eq!(
            code(check_write("wc.offsets", Some(&wc))),
            Some("internal_topic")
        );
        assert_eq!(code(check_write("text", None)), None);
        assert_eq!(
            code(check_delete("wc.offsets", Some(&wc), Some(&Users))),
            Some("internal_topic")
        );
        assert_eq!(
            code(check_delete("old.offsets", Some(&gone), Some(&Users))),
            None
        );
        assert_eq!(
            code(check_delete("old.offsets", Some(&gone), None)),
            Some("internal_topic")
        );
        assert_eq!(
            code(check_delete(OFFSETS_TOPIC, Some(&groups), Some(&Users))),
            Some("internal_topic")
        );
        assert_eq!(
            code(check_delete("text", None, Some(&Users))),
            Some("topic_in_use")
        );
        assert_eq!(code(check_delete("other", None, Some(&Users))), None);
        let mut spec = TopicSpec::new("x", 1);
        assert_eq!(code(check_client_spec(&spec)), None);
        spec.internal = Some(wc);
        assert_eq!(code(check_client_spec(&spec)), Some("invalid_config"));
        assert_eq!(
            code(check_client_spec(&TopicSpec::new(OFFSETS_TOPIC, 1))),
            Some("internal_topic")
        );
        // The transaction coordinator's topic: never a client's, never deleted by one.
        assert_eq!(
            code(check_client_spec(&TopicSpec::new(TXN_STATE_TOPIC, 1))),
            Some("internal_topic")
        );
        let txn = InternalTopic {
            owner: InternalTopic::TXN_COORDINATOR.into(),
        };
        assert_eq!(
            code(check_delete(TXN_STATE_TOPIC, Some(&txn), Some(&Users))),
            Some("internal_topic")
        );
    }
}
