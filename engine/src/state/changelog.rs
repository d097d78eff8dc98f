//! Changelog topics: every committed write of a store is appended to
//! `<processor>.<store>.changelog` (compacted, one partition per task, the task's partition
//! number), key = the store key, value = the new value or null for a delete. This module
//! names those topics, finds them, and turns writes into records; [`super::restore`] reads
//! them back.

use bytes::Bytes;
use weir_broker::{InternalTopic, ProduceRecord, TopicSpec};

use super::keys;
use crate::log_access::{LogAccess, LogError};

const SUFFIX: &str = ".changelog";

/// Changelog segments are small enough that compaction (which never touches the active
/// segment) keeps restoration short.
pub const CHANGELOG_SEGMENT_BYTES: u64 = 64 << 20;

/// `<processor>.<store>.changelog`.
pub fn changelog_topic(processor: &str, store: &str) -> String {
    format!("{processor}.{store}{SUFFIX}")
}

/// The spec of a store's changelog topic (an internal topic of the processor).
pub fn changelog_spec(processor: &str, store: &str, partitions: i32) -> TopicSpec {
    let mut spec = TopicSpec::new(changelog_topic(processor, store), partitions)
        .owned_by(InternalTopic::processor(processor));
    spec.compacted = true;
    spec.segment_bytes = Some(CHANGELOG_SEGMENT_BYTES);
    spec
}

/// The store a topic is the changelog of, if it is one of `processor`'s changelogs.
pub fn store_of(processor: &str, topic: &str) -> Option<String> {
    let store = topic
        .strip_prefix(processor)?
        .strip_prefix('.')?
        .strip_suffix(SUFFIX)?;
    keys::check_store_name(store).ok()?;
    Some(store.to_string())
}

/// Every store of `processor` that has a changelog, sorted.
pub fn stores_with_changelogs(
    log: &dyn LogAccess,
    processor: &str,
) -> Result<Vec<String>, LogError> {
    let mut stores: Vec<String> = log
        .list_topics()?
        .iter()
        .filter_map(|t| store_of(processor, t))
        .collect();
    stores.sort();
    Ok(stores)
}

/// The changelog records of `entries` for partition `partition`.
pub fn to_records(entries: &[(Bytes, Option<Bytes>)], partition: i32) -> Vec<ProduceRecord> {
    entries
        .iter()
        .map(|(k, v)| ProduceRecord {
            key: Some(k.clone()),
            value: v.clone(),
            headers: Vec::new(),
            timestamp: None,
            partition: Some(partition),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(changelog_topic("wc", "counts"), "wc.counts.changelog");
        assert_eq!(
            store_of("wc", "wc.counts.changelog").as_deref(),
            Some("counts")
        );
        assert_eq!(
            store_of("wc", "wc.__timers.changelog").as_deref(),
            Some("__timers")
        );
        assert_eq!(store_of("wc", "wcx.counts.changelog"), None);
        assert_eq!(store_of("wc", "wc.counts"), None);
        assert_eq!(store_of("wc", "wc.a.b.changelog"), None);
        let spec = changelog_spec("wc", "counts", 3);
        assert!(spec.compacted);
        assert_eq!(spec.partitions, 3);
    }
}
