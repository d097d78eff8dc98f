//! Authorization of Kafka requests under `--auth`, applied around the handlers in the
//! dispatch: topics, groups and resources the connection's user may not use are taken out
//! of the request before its handler runs, and answered with Kafka's error for them
//! (`TOPIC_AUTHORIZATION_FAILED` per topic, `GROUP_AUTHORIZATION_FAILED` per group,
//! `CLUSTER_AUTHORIZATION_FAILED` for cluster actions), as a Kafka broker with an authorizer
//! does. Topics listed in Metadata without a topic list are filtered to the describable ones.
//! A user who may not create topics does not auto-create them either (the topic is
//! answered `UNKNOWN_TOPIC_OR_PARTITION`).
//!
//! The handlers stay unaware of authorization; the rules live in [`crate::auth`].

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;

use super::str_bytes;
use crate::Broker;
use crate::auth::{AuthStore, Op, Resource};

const TOPIC_DENIED: i16 = ResponseError::TopicAuthorizationFailed.code();
const GROUP_DENIED: i16 = ResponseError::GroupAuthorizationFailed.code();
const CLUSTER_DENIED: i16 = ResponseError::ClusterAuthorizationFailed.code();
const UNKNOWN_TOPIC: i16 = ResponseError::UnknownTopicOrPartition.code();
const RESOURCE_TOPIC: i8 = 2;

/// The authenticated user of a connection, with the rules to check it against.
pub struct Authz {
    pub store: Arc<AuthStore>,
    pub user: String,
}

impl Authz {
    pub fn allows(&self, op: Op, resource: Resource) -> bool {
        match self.store.authorize(&self.user, op, &resource) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(user = %self.user, error = %e, "Kafka request denied");
                false
            }
        }
    }

    fn topic(&self, op: Op, name: &str) -> bool {
        self.allows(op, Resource::Topic(name.to_string()))
    }

    fn group(&self, op: Op, name: &str) -> bool {
        self.allows(op, Resource::Group(name.to_string()))
    }

    /// The error for `topic` under `op`, if it is refused: not allowed, or unknown to a user
    /// who may not create it (so that the handler does not auto-create it).
    fn topic_error(&self, broker: &Broker, op: Op, topic: &str) -> Option<i16> {
        if !self.topic(op, topic) {
            return Some(TOPIC_DENIED);
        }
        if broker.partition_count(topic).is_err() && !self.topic(Op::Admin, topic) {
            return Some(UNKNOWN_TOPIC);
        }
        None
    }

    /// Produce: takes out topics the user may not write; returns them with their error.
    pub fn produce(&self, broker: &Broker, r: &mut ProduceRequest) -> Vec<TopicProduceResponse> {
        let mut out = Vec::new();
        r.topic_data
            .retain(|t| match self.topic_error(broker, Op::Write, &t.name) {
                None => true,
                Some(code) => {
                    out.push(
                        TopicProduceResponse::default()
                            .with_name(t.name.clone())
                            .with_partition_responses(
                                t.partition_data
                                    .iter()
                                    .map(|p| {
                                        PartitionProduceResponse::default()
                                            .with_index(p.index)
                                            .with_error_code(code)
                                            .with_base_offset(-1)
                                            .with_log_append_time_ms(-1)
                                            .with_log_start_offset(-1)
                                    })
                                    .collect(),
                            ),
                    );
                    false
                }
            });
        out
    }

    pub fn fetch(&self, r: &mut FetchRequest) -> Vec<FetchableTopicResponse> {
        let mut out = Vec::new();
        r.topics.retain(|t| {
            if self.topic(Op::Read, &t.topic) {
                return true;
            }
            out.push(
                FetchableTopicResponse::default()
                    .with_topic(t.topic.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                PartitionData::default()
                                    .with_partition_index(p.partition)
                                    .with_error_code(TOPIC_DENIED)
                                    .with_high_watermark(-1)
                                    .with_last_stable_offset(-1)
                                    .with_log_start_offset(-1)
                            })
                            .collect(),
                    ),
            );
            false
        });
        out
    }

    /// OffsetForLeaderEpoch: like ListOffsets, topics the user may not describe are refused.
    pub fn offset_for_leader_epoch(
        &self,
        r: &mut OffsetForLeaderEpochRequest,
    ) -> Vec<OffsetForLeaderTopicResult> {
        let mut out = Vec::new();
        r.topics.retain(|t| {
            if self.topic(Op::Describe, &t.topic) {
                return true;
            }
            out.push(
                OffsetForLeaderTopicResult::default()
                    .with_topic(t.topic.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                EpochEndOffset::default()
                                    .with_partition(p.partition)
                                    .with_error_code(TOPIC_DENIED)
                                    .with_leader_epoch(-1)
                                    .with_end_offset(-1)
                            })
                            .collect(),
                    ),
            );
            false
        });
        out
    }

    pub fn list_offsets(&self, r: &mut ListOffsetsRequest) -> Vec<ListOffsetsTopicResponse> {
        let mut out = Vec::new();
        r.topics.retain(|t| {
            if self.topic(Op::Describe, &t.name) {
                return true;
            }
            out.push(
                ListOffsetsTopicResponse::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                ListOffsetsPartitionResponse::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(TOPIC_DENIED)
                                    .with_timestamp(-1)
                                    .with_offset(-1)
                            })
                            .collect(),
                    ),
            );
            false
        });
        out
    }

    /// Metadata with a topic list: refused topics are taken out. Returns them, and whether
    /// the request asks for all topics (then the response is filtered by [`Self::visible`]).
    pub fn metadata(
        &self,
        broker: &Broker,
        r: &mut MetadataRequest,
        version: i16,
    ) -> (Vec<MetadataResponseTopic>, bool) {
        let mut out = Vec::new();
        let Some(topics) = r.topics.as_mut() else {
            return (out, true);
        };
        if topics.is_empty() && version == 0 {
            return (out, true);
        }
        topics.retain(|t| {
            let Some(name) = &t.name else { return true };
            match self.topic_error(broker, Op::Describe, name) {
                None => true,
                Some(code) => {
                    out.push(
                        MetadataResponseTopic::default()
                            .with_name(Some(name.clone()))
                            .with_error_code(code),
                    );
                    false
                }
            }
        });
        (out, false)
    }

    /// Whether a topic appears in an all-topics Metadata answer.
    pub fn visible(&self, t: &MetadataResponseTopic) -> bool {
        t.name.as_ref().is_some_and(|n| self.topic(Op::Describe, n))
    }

    pub fn create_topics(&self, r: &mut CreateTopicsRequest) -> Vec<CreatableTopicResult> {
        let mut out = Vec::new();
        r.topics.retain(|t| {
            if self.topic(Op::Admin, &t.name) {
                return true;
            }
            out.push(
                CreatableTopicResult::default()
                    .with_name(t.name.clone())
                    .with_error_code(TOPIC_DENIED)
                    .with_error_message(Some(str_bytes("only admins create topics")))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1),
            );
            false
        });
        out
    }

    pub fn delete_topics(&self, r: &mut DeleteTopicsRequest) -> Vec<DeletableTopicResult> {
        let mut out = Vec::new();
        r.topic_names.retain(|name| {
            if self.topic(Op::Admin, name) {
                return true;
            }
            out.push(
                DeletableTopicResult::default()
                    .with_name(Some(name.clone()))
                    .with_error_code(TOPIC_DENIED),
            );
            false
        });
        out
    }

    pub fn describe_configs(&self, r: &mut DescribeConfigsRequest) -> Vec<DescribeConfigsResult> {
        let mut out = Vec::new();
        r.resources.retain(|res| {
            if res.resource_type != RESOURCE_TOPIC || self.topic(Op::Describe, &res.resource_name) {
                return true;
            }
            out.push(
                DescribeConfigsResult::default()
                    .with_resource_type(res.resource_type)
                    .with_resource_name(res.resource_name.clone())
                    .with_error_code(TOPIC_DENIED)
                    .with_error_message(Some(str_bytes("topic authorization failed"))),
            );
            false
        });
        out
    }

    /// FindCoordinator v4 (a list of keys): refused groups are taken out.
    pub fn find_coordinators(&self, r: &mut FindCoordinatorRequest) -> Vec<Coordinator> {
        let mut out = Vec::new();
        if r.key_type != 0 {
            return out;
        }
        r.coordinator_keys.retain(|k| {
            if self.group(Op::Describe, k) {
                return true;
            }
            out.push(
                Coordinator::default()
                    .with_key(k.clone())
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
                    .with_error_code(GROUP_DENIED),
            );
            false
        });
        out
    }

    /// FindCoordinator before v4 (one key): the refusal, if refused.
    pub fn find_coordinator(&self, r: &FindCoordinatorRequest) -> Option<FindCoordinatorResponse> {
        (r.key_type == 0 && !self.group(Op::Describe, &r.key)).then(|| {
            FindCoordinatorResponse::default()
                .with_error_code(GROUP_DENIED)
                .with_node_id(BrokerId(-1))
                .with_port(-1)
        })
    }

    /// Whether the user may be a member of (and commit for) `group`.
    pub fn group_member(&self, group: &GroupId) -> bool {
        self.group(Op::Read, group)
    }

    pub fn offset_commit(&self, r: &OffsetCommitRequest) -> Option<OffsetCommitResponse> {
        let group_ok = self.group(Op::Read, &r.group_id);
        let denied = |code: i16, t: &offset_commit_request::OffsetCommitRequestTopic| {
            OffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        };
        if !group_ok {
            return Some(
                OffsetCommitResponse::default()
                    .with_topics(r.topics.iter().map(|t| denied(GROUP_DENIED, t)).collect()),
            );
        }
        if r.topics.iter().all(|t| self.topic(Op::Read, &t.name)) {
            return None;
        }
        // Some topics refused: answer them all here rather than half-commit.
        Some(
            OffsetCommitResponse::default().with_topics(
                r.topics
                    .iter()
                    .map(|t| {
                        let code = if self.topic(Op::Read, &t.name) {
                            0
                        } else {
                            TOPIC_DENIED
                        };
                        denied(code, t)
                    })
                    .filter(|t| t.partitions.iter().any(|p| p.error_code != 0))
                    .collect(),
            ),
        )
    }

    /// OffsetFetch: the refusal of the group, or the request with refused topics removed.
    pub fn offset_fetch(&self, r: &mut OffsetFetchRequest) -> Option<OffsetFetchResponse> {
        if !self.group(Op::Describe, &r.group_id) {
            return Some(OffsetFetchResponse::default().with_error_code(GROUP_DENIED));
        }
        if let Some(topics) = r.topics.as_mut() {
            topics.retain(|t| self.topic(Op::Describe, &t.name));
        }
        None
    }

    /// Whether an all-topics OffsetFetch answer may show `topic`.
    pub fn topic_visible(&self, topic: &TopicName) -> bool {
        self.topic(Op::Describe, topic)
    }

    pub fn describe_groups(&self, r: &mut DescribeGroupsRequest) -> Vec<DescribedGroup> {
        let mut out = Vec::new();
        r.groups.retain(|g| {
            if self.group(Op::Describe, g) {
                return true;
            }
            out.push(
                DescribedGroup::default()
                    .with_group_id(g.clone())
                    .with_error_code(GROUP_DENIED),
            );
            false
        });
        out
    }

    pub fn group_visible(&self, group: &GroupId) -> bool {
        self.group(Op::Describe, group)
    }

    /// InitProducerId (idempotent or transactional writes): writers and admins.
    pub fn init_producer_id(&self) -> Option<InitProducerIdResponse> {
        (!self.allows(Op::Write, Resource::Cluster)).then(|| {
            InitProducerIdResponse::default()
                .with_error_code(CLUSTER_DENIED)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        })
    }
}
