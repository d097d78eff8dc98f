//! The API versions Weir advertises in ApiVersions and accepts in requests. This table is
//! the only place that decides them; the codec rejects anything outside it.
//!
//! Each range is what our handlers implement, clamped to what `kafka-protocol` can decode and
//! encode. Produce and Fetch stop at v12 (v13+ name topics by UUID instead of by name) and
//! Metadata at v9 (v10+ carries topic ids). Every client we test (librdkafka 2.0.2 in
//! Debian's kcat, the current librdkafka in confluent-kafka, kafka-python) picks the highest
//! version both sides support within these ranges.

use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::VersionRange;

/// `(api, min, max)` for every API Weir serves.
const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 6),
    (ApiKey::Metadata, 0, 9),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 4),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 5),
    (ApiKey::InitProducerId, 0, 4),
    // Transactions (KIP-98) at the versions clients send: AddPartitionsToTxn v4+ is the
    // brokers' batched form, and v5 of EndTxn (like v5 of TxnOffsetCommit and
    // AddOffsetsToTxn) belongs to KIP-890 part 2, not served.
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::AddOffsetsToTxn, 0, 3),
    (ApiKey::EndTxn, 0, 4),
    (ApiKey::TxnOffsetCommit, 0, 4),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 1),
    (ApiKey::DescribeConfigs, 1, 4),
    // Admin APIs (DeleteRecords v2+ and CreatePartitions v2+ are the flexible versions).
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    // librdkafka 2.0 (kcat) wants v0 in the range before it uses SASL at all; every client
    // we test then sends v1 and SaslAuthenticate (a v0 client's raw tokens outside Kafka
    // framing would close its connection).
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
];

/// The versions of `api` Weir serves, or `None` if it does not serve that API.
pub fn supported(api: ApiKey) -> Option<VersionRange> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == api)
        .map(|(k, min, max)| {
            VersionRange {
                min: *min,
                max: *max,
            }
            .intersect(&k.valid_versions())
        })
}

/// Every API Weir serves with the version range it advertises, in API-key order (the
/// ApiVersions body).
///
/// One range is advertised wider than served, as Apache Kafka 4.0 does (KAFKA-18659):
/// Produce from v0. librdkafka before 2.10 decides that a broker supports gzip, snappy and
/// lz4 only if its Produce range includes v0..v2, and silently stops compressing otherwise
/// (librdkafka#4956). No client sends those versions to a broker that offers v3+; one that
/// did would have its connection closed by the codec, which only accepts [`supported`].
pub fn all() -> Vec<(ApiKey, VersionRange)> {
    let mut v: Vec<_> = SUPPORTED
        .iter()
        .filter_map(|(k, _, _)| supported(*k).map(|r| (*k, r)))
        .map(|(k, r)| match k {
            ApiKey::Produce => (k, VersionRange { min: 0, max: r.max }),
            _ => (k, r),
        })
        .collect();
    v.sort_by_key(|(k, _)| *k as i16);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_range_is_inside_what_the_codec_supports() {
        for (k, min, max) in SUPPORTED {
            let r = supported(*k).unwrap();
            assert_eq!(
                (r.min, r.max),
                (*min, *max),
                "{k:?} is clamped by kafka-protocol"
            );
            assert!(!r.is_empty());
        }
        assert!(supported(ApiKey::SaslHandshake).is_some_and(|r| r.max == 1));
        assert!(supported(ApiKey::SaslAuthenticate).is_some());
        assert!(supported(ApiKey::EndTxn).is_some_and(|r| r.max == 4));
        assert!(supported(ApiKey::AddPartitionsToTxn).is_some_and(|r| r.max == 3));
    }

    #[test]
    fn produce_is_advertised_from_v0_for_old_librdkafka_but_served_from_v3() {
        let produce = all()
            .into_iter()
            .find(|(k, _)| *k == ApiKey::Produce)
            .unwrap()
            .1;
        assert_eq!((produce.min, produce.max), (0, 9));
        assert_eq!(supported(ApiKey::Produce).unwrap().min, 3);
    }

    #[test]
    fn produce_and_fetch_stay_below_topic_id_versions() {
        assert!(supported(ApiKey::Produce).unwrap().max < 13);
        assert!(supported(ApiKey::Fetch).unwrap().max < 13);
        assert!(supported(ApiKey::Metadata).unwrap().max < 10);
    }
}
