//! DescribeConfigs: a topic's settings under their Kafka names (what `kcat`, admin clients and
//! tools ask for), and a few broker settings. IncrementalAlterConfigs (KIP-339) for topic
//! configs: `retention.ms`, `retention.bytes`, `cleanup.policy`, `segment.bytes`,
//! `segment.ms`, `delete.retention.ms` and `min.insync.replicas` (1 on a single node), set,
//! deleted (back to the default) or, for the list `cleanup.policy`, appended to and
//! subtracted from. A resource's changes apply together or not at all: validated as a
//! create would be, persisted in `topic.json`, then applied to the open partitions
//! ([`crate::Broker::alter_topic`]). Broker configs are read-only; the legacy AlterConfigs
//! is not served.
//!
//! [`set_topic_config`] is the one reading of a Kafka topic config into a [`TopicSpec`]
//! (CreateTopics uses it too).

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};

use super::{Ctx, blocking, broker_error_code, str_bytes};
use crate::error::BrokerError;
use crate::{TopicInfo, TopicSpec};

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

/// The most configs one resource of an IncrementalAlterConfigs request may change.
const MAX_CONFIGS_PER_RESOURCE: usize = 1_000;

/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// The topic configs Weir applies (CreateTopics ignores others; IncrementalAlterConfigs
/// refuses them).
const ALTERABLE: &[&str] = &[
    "cleanup.policy",
    "retention.ms",
    "retention.bytes",
    "segment.bytes",
    "segment.ms",
    "delete.retention.ms",
    "min.insync.replicas",
];

/// The policies of a `cleanup.policy` value (`compact`, `delete`, or both).
fn policies(value: &str) -> Result<Vec<&str>, BrokerError> {
    let p: Vec<&str> = value.split(',').map(str::trim).collect();
    if p.iter().any(|p| *p != "compact" && *p != "delete") {
        return Err(BrokerError::InvalidConfig(format!(
            "invalid value '{value}' for cleanup.policy (compact, delete or both)"
        )));
    }
    Ok(p)
}

/// Sets Kafka topic config `key` to `value` (`None`: back to its default) in `spec`.
/// Returns `false` for a config Weir does not apply. `-1` means "no limit" for the
/// retention configs, as in Kafka.
pub fn set_topic_config(
    spec: &mut TopicSpec,
    key: &str,
    value: Option<&str>,
) -> Result<bool, BrokerError> {
    let bad = || BrokerError::InvalidConfig(format!("invalid value '{value:?}' for {key}"));
    let int = |v: Option<&str>| -> Result<Option<i64>, BrokerError> {
        v.map(|v| v.trim().parse::<i64>().map_err(|_| bad()))
            .transpose()
    };
    match key {
        "cleanup.policy" => {
            spec.compacted = match value {
                Some(v) => policies(v)?.contains(&"compact"),
                None => false,
            }
        }
        "retention.ms" => spec.retention_ms = int(value)?.filter(|v| *v != -1),
        "retention.bytes" => spec.retention_bytes = int(value)?.filter(|v| *v != -1),
        "segment.bytes" => {
            spec.segment_bytes = int(value)?
                .map(|v| u64::try_from(v).map_err(|_| bad()))
                .transpose()?
        }
        "segment.ms" => spec.segment_ms = int(value)?,
        "delete.retention.ms" => spec.delete_retention_ms = int(value)?,
        "min.insync.replicas" => {
            spec.min_insync_replicas = int(value)?
                .map(|v| u16::try_from(v).map_err(|_| bad()))
                .transpose()?
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// Applies one IncrementalAlterConfigs operation to `spec`.
fn apply_op(
    spec: &mut TopicSpec,
    key: &str,
    op: i8,
    value: Option<&str>,
) -> Result<(), BrokerError> {
    match op {
        OP_SET => {
            let Some(v) = value else {
                return Err(BrokerError::InvalidConfig(format!(
                    "{key}: SET needs a value"
                )));
            };
            set_topic_config(spec, key, Some(v))?;
        }
        OP_DELETE => {
            set_topic_config(spec, key, None)?;
        }
        // Only cleanup.policy is a list (checked before): compact is on when it is in the
        // list after the change.
        OP_APPEND => {
            if policies(value.unwrap_or_default())?.contains(&"compact") {
                spec.compacted = true;
            }
        }
        _ => {
            if policies(value.unwrap_or_default())?.contains(&"compact") {
                spec.compacted = false;
            }
        }
    }
    if key == "min.insync.replicas"
        && spec.cluster.is_none()
        && spec.min_insync_replicas.is_some_and(|m| m > 1)
    {
        return Err(BrokerError::InvalidConfig(
            "min.insync.replicas above 1 on a single node: each partition has one replica".into(),
        ));
    }
    Ok(())
}

/// A request-level refusal of one resource's changes: (error code, message), before any of
/// them is tried.
fn check_changes(configs: &[(String, i8, Option<String>)]) -> Result<(), (i16, String)> {
    if configs.len() > MAX_CONFIGS_PER_RESOURCE {
        return Err((
            ResponseError::InvalidRequest.code(),
            format!("at most {MAX_CONFIGS_PER_RESOURCE} configs per resource"),
        ));
    }
    for (i, (name, op, _)) in configs.iter().enumerate() {
        if configs[..i].iter().any(|(n, _, _)| n == name) {
            return Err((
                ResponseError::InvalidRequest.code(),
                format!("config {name} is changed twice in one request"),
            ));
        }
        if !(OP_SET..=OP_SUBTRACT).contains(op) {
            return Err((
                ResponseError::InvalidRequest.code(),
                format!("unknown config operation {op} for {name}"),
            ));
        }
        if !ALTERABLE.contains(&name.as_str()) {
            return Err((
                ResponseError::InvalidConfig.code(),
                format!("topic config {name} is unknown or cannot be altered on Weir"),
            ));
        }
        if (*op == OP_APPEND || *op == OP_SUBTRACT) && name != "cleanup.policy" {
            return Err((
                ResponseError::InvalidConfig.code(),
                format!("{name} is not a list: only SET and DELETE apply"),
            ));
        }
    }
    Ok(())
}

/// IncrementalAlterConfigs (API 44). `allowed` says whether the connection's user may alter
/// a topic.
pub async fn incremental_alter(
    ctx: &Arc<Ctx>,
    req: IncrementalAlterConfigsRequest,
    allowed: impl Fn(&str) -> bool,
) -> IncrementalAlterConfigsResponse {
    let too_many = req.resources.len() > super::admin::MAX_ITEMS;
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let name = r.resource_name.as_str().to_string();
        let res = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        let refused = |code: i16, msg: String| {
            res.clone()
                .with_error_code(code)
                .with_error_message(Some(str_bytes(msg)))
        };
        if too_many {
            responses.push(refused(
                ResponseError::InvalidRequest.code(),
                format!(
                    "a request may name at most {} resources",
                    super::admin::MAX_ITEMS
                ),
            ));
            continue;
        }
        if r.resource_type == BROKER {
            responses.push(refused(
                ResponseError::InvalidRequest.code(),
                "broker configs are read-only on Weir (set them with weir serve flags)".into(),
            ));
            continue;
        }
        if r.resource_type != TOPIC {
            responses.push(refused(
                ResponseError::InvalidRequest.code(),
                format!("unsupported config resource type {}", r.resource_type),
            ));
            continue;
        }
        if !allowed(&name) {
            responses.push(refused(
                ResponseError::TopicAuthorizationFailed.code(),
                "topic authorization failed".into(),
            ));
            continue;
        }
        if let Some((code, msg)) =
            super::admin::refused_on_cluster(ctx, &name, "altering the configs")
        {
            responses.push(refused(code, msg));
            continue;
        }
        let configs: Vec<(String, i8, Option<String>)> = r
            .configs
            .iter()
            .map(|c| {
                (
                    c.name.as_str().to_string(),
                    c.config_operation,
                    c.value.as_ref().map(|v| v.as_str().to_string()),
                )
            })
            .collect();
        if let Err((code, msg)) = check_changes(&configs) {
            responses.push(refused(code, msg));
            continue;
        }
        let (b, validate_only) = (ctx.broker.clone(), req.validate_only);
        let done = blocking(move || {
            b.alter_topic(&name, validate_only, |spec| {
                for (key, op, value) in &configs {
                    apply_op(spec, key, *op, value.as_deref())?;
                }
                Ok(())
            })
        })
        .await
        .and_then(|r| r);
        responses.push(match done {
            Ok(_) => res,
            Err(e) => refused(broker_error_code(&e), e.to_string()),
        });
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

fn topic_configs(
    t: &TopicInfo,
    defaults: &crate::config::LogConfig,
    max_batch: usize,
) -> Vec<Entry> {
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
            t.segment_bytes != defaults.segment_bytes,
            TYPE_INT,
        ),
        (
            "segment.ms",
            t.segment_ms.to_string(),
            t.segment_ms != defaults.segment_ms,
            TYPE_LONG,
        ),
        (
            "delete.retention.ms",
            t.delete_retention_ms.to_string(),
            t.delete_retention_ms != defaults.delete_retention_ms,
            TYPE_LONG,
        ),
        ("max.message.bytes", max_batch.to_string(), false, TYPE_INT),
        (
            "min.insync.replicas",
            t.cluster
                .as_ref()
                .map_or(1, |c| c.min_insync_replicas)
                .to_string(),
            t.cluster.is_some(),
            TYPE_INT,
        ),
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
                    Ok(t) => topic_configs(
                        &t,
                        &ctx.broker.config().log,
                        ctx.broker.config().log.max_batch_bytes,
                    ),
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
