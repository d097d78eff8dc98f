//! DescribeConfigs: a topic's settings under their Kafka names (what `kcat`, admin clients and
//! tools ask for), and a few broker settings. Read-only: AlterConfigs is not served.

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::{Ctx, broker_error_code, str_bytes};
use crate::TopicInfo;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// Config sources.
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const DEFAULT_CONFIG: i8 = 5;
/// Config types (v3+).
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;

/// (name, value, set on the topic rather than defaulted, type)
type Entry = (&'static str, String, bool, i8);

fn topic_configs(t: &TopicInfo, max_batch: usize) -> Vec<Entry> {
    vec![
        (
            "cleanup.policy",
            if t.compacted { "compact" } else { "delete" }.into(),
            t.compacted,
            TYPE_STRING,
        ),
        (
            "retention.ms",
            t.retention_ms.unwrap_or(-1).to_string(),
            t.retention_ms.is_some(),
            TYPE_LONG,
        ),
        (
            "retention.bytes",
            t.retention_bytes.unwrap_or(-1).to_string(),
            t.retention_bytes.is_some(),
            TYPE_LONG,
        ),
        (
            "segment.bytes",
            t.segment_bytes.to_string(),
            false,
            TYPE_INT,
        ),
        ("segment.ms", t.segment_ms.to_string(), false, TYPE_LONG),
        (
            "delete.retention.ms",
            t.delete_retention_ms.to_string(),
            false,
            TYPE_LONG,
        ),
        ("max.message.bytes", max_batch.to_string(), false, TYPE_INT),
        ("min.insync.replicas", "1".into(), false, TYPE_INT),
        ("compression.type", "producer".into(), false, TYPE_STRING),
        (
            "message.timestamp.type",
            "CreateTime".into(),
            false,
            TYPE_STRING,
        ),
    ]
}

fn broker_configs(ctx: &Ctx) -> Vec<Entry> {
    vec![
        ("broker.id", ctx.config.node_id.to_string(), false, TYPE_INT),
        (
            "num.partitions",
            ctx.config.default_partitions.to_string(),
            false,
            TYPE_INT,
        ),
        (
            "auto.create.topics.enable",
            ctx.config.auto_create_topics.to_string(),
            false,
            TYPE_BOOLEAN,
        ),
        (
            "message.max.bytes",
            ctx.broker.config().log.max_batch_bytes.to_string(),
            false,
            TYPE_INT,
        ),
        (
            "socket.request.max.bytes",
            ctx.config.max_request_bytes.to_string(),
            false,
            TYPE_INT,
        ),
        (
            "log.segment.bytes",
            ctx.broker.config().log.segment_bytes.to_string(),
            false,
            TYPE_INT,
        ),
        ("default.replication.factor", "1".into(), false, TYPE_INT),
        (
            "offsets.topic.replication.factor",
            "1".into(),
            false,
            TYPE_INT,
        ),
    ]
}

pub fn describe(
    ctx: &Arc<Ctx>,
    req: DescribeConfigsRequest,
    _version: i16,
) -> DescribeConfigsResponse {
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let name = r.resource_name.as_str().to_string();
            let res = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let entries = match r.resource_type {
                TOPIC => match ctx.broker.topic_info(&name) {
                    Ok(t) => topic_configs(&t, ctx.broker.config().log.max_batch_bytes),
                    Err(e) => {
                        return res
                            .with_error_code(broker_error_code(&e))
                            .with_error_message(Some(str_bytes(e.to_string())));
                    }
                },
                BROKER if name.is_empty() || name == ctx.config.node_id.to_string() => {
                    broker_configs(ctx)
                }
                _ => {
                    return res
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(str_bytes(format!(
                            "unsupported config resource type {} or name '{name}'",
                            r.resource_type
                        ))));
                }
            };
            let keys: Option<Vec<String>> = r
                .configuration_keys
                .map(|k| k.into_iter().map(|s| s.as_str().to_string()).collect());
            let configs = entries
                .into_iter()
                .filter(|(n, _, _, _)| keys.as_ref().is_none_or(|k| k.iter().any(|x| x == n)))
                .map(|(n, value, set, ty)| {
                    DescribeConfigsResourceResult::default()
                        .with_name(str_bytes(n))
                        .with_value(Some(str_bytes(value)))
                        .with_read_only(r.resource_type == BROKER)
                        .with_config_source(if set {
                            DYNAMIC_TOPIC_CONFIG
                        } else {
                            DEFAULT_CONFIG
                        })
                        .with_config_type(ty)
                })
                .collect();
            res.with_configs(configs)
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}
