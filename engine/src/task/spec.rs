//! A processor's deployment spec (the `spec` part of an upload): its name, inputs, outputs,
//! config, error policy, start position, limits and commit interval; their validation; and
//! the names of the topics the engine creates for it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Deserializer, Serialize};

use crate::limits::ProcessorLimits;

/// Longest processor name (so every derived topic name stays within Kafka's 249).
pub const MAX_NAME: usize = 100;
/// Most inputs one processor may read.
pub const MAX_INPUTS: usize = 32;
/// Default commit interval.
pub const DEFAULT_COMMIT_INTERVAL_MS: u64 = 500;
/// Default largest batch handed to one `process` call.
pub const DEFAULT_BATCH_SIZE: usize = 256;
/// Standby replicas of each task on a cluster when the spec names none (as Kafka Streams'
/// `num.standby.replicas` set to 1; a single node has no other node to keep them).
pub const DEFAULT_STANDBY_REPLICAS: u16 = 1;
/// Most standby replicas a spec may ask for.
pub const MAX_STANDBY_REPLICAS: u16 = 3;
/// The output name that means the processor's repartition topic.
pub const REPARTITION_OUTPUT: &str = "repartition";

/// What a task does when a processor call fails on a record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// The task stops; its status is `failed` with the error and the record's offset.
    #[default]
    Fail,
    /// The record is skipped (counted and logged).
    Skip,
    /// The record goes to `<processor>.dlq` with the error in the header `weir.error`.
    #[serde(alias = "dead-letter")]
    DeadLetter,
}

/// What a processor's tasks guarantee about their effects (outputs, state, positions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Guarantee {
    /// Outputs are appended as they are emitted and visible at once; after a crash the
    /// input since the last commit is processed again, so downstream may see some outputs
    /// (and state updates) twice.
    #[default]
    #[serde(alias = "at-least-once")]
    AtLeastOnce,
    /// Each task's commit interval is one transaction (single node only): its outputs,
    /// changelog appends and input offsets become visible together at commit, or not at
    /// all; read_committed consumers see every output exactly once (`task::transaction`).
    #[serde(alias = "exactly-once")]
    ExactlyOnce,
}

impl Guarantee {
    pub fn as_str(self) -> &'static str {
        match self {
            Guarantee::AtLeastOnce => "at_least_once",
            Guarantee::ExactlyOnce => "exactly_once",
        }
    }

    /// `at_least_once` / `exactly_once` (also with dashes).
    pub fn parse(s: &str) -> Option<Guarantee> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "at_least_once" => Some(Guarantee::AtLeastOnce),
            "exactly_once" | "exactly_once_v2" => Some(Guarantee::ExactlyOnce),
            _ => None,
        }
    }
}

/// Where a task starts in an input partition it has no committed offset for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    /// The first record still in the log.
    #[default]
    Earliest,
    /// Only records appended after the task started.
    Latest,
}

/// A processor spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessorSpec {
    pub name: String,
    /// Input topics; all must have the same number of partitions.
    pub inputs: Vec<String>,
    /// Output topics (created with the inputs' partition count if missing). The first is
    /// the default output (`""` in `emit`).
    #[serde(default)]
    pub outputs: Vec<String>,
    /// Passed to the processor's `init`. Values may be JSON strings, numbers or booleans.
    #[serde(default, deserialize_with = "config_map")]
    pub config: BTreeMap<String, String>,
    #[serde(default)]
    pub on_error: OnError,
    #[serde(default)]
    pub start: StartFrom,
    #[serde(default)]
    pub limits: ProcessorLimits,
    /// How often tasks commit (state, changelogs, input offsets), in ms. Under
    /// `exactly_once` also how long outputs wait before they become visible.
    #[serde(default = "default_commit_interval")]
    pub commit_interval_ms: u64,
    /// `at_least_once` (default) or `exactly_once`.
    #[serde(default)]
    pub guarantee: Guarantee,
    /// Most records handed to one `process` call.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// On a cluster: how many other nodes keep a warm standby of each task's state
    /// (default [`DEFAULT_STANDBY_REPLICAS`]; capped by the nodes there are; 0 to 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby_replicas: Option<u16>,
    /// On a cluster: how many changelog records a node's copy of a task's state may be
    /// behind for the task to move there at once (KIP-441's `acceptable.recovery.lag`;
    /// default 10,000); a move onto a node further behind waits while it warms up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acceptable_recovery_lag: Option<u64>,
}

fn default_commit_interval() -> u64 {
    DEFAULT_COMMIT_INTERVAL_MS
}

fn default_batch_size() -> usize {
    DEFAULT_BATCH_SIZE
}

fn config_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    use serde::de::Error;
    let raw = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(D::Error::custom(format!(
                        "config value of '{k}' must be a string, number or boolean"
                    )));
                }
            };
            Ok((k, v))
        })
        .collect()
}

/// Checks a processor name: 1..=100 of `[A-Za-z0-9_-]` (no dots, so the topics derived
/// from it are unambiguous).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!("processor name must be 1 to {MAX_NAME} characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(format!(
            "invalid processor name '{name}': use only letters, digits, '_' and '-'"
        ));
    }
    Ok(())
}

fn check_topic_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!("invalid {what} topic name '{name}'"))
    }
}

impl ProcessorSpec {
    /// Checks everything that can be checked without the log.
    pub fn validate(&self) -> Result<(), String> {
        check_name(&self.name)?;
        if self.inputs.is_empty() {
            return Err("a processor needs at least one input".into());
        }
        if self.inputs.len() > MAX_INPUTS {
            return Err(format!("at most {MAX_INPUTS} inputs"));
        }
        let mut seen = BTreeSet::new();
        for i in &self.inputs {
            check_topic_name("input", i)?;
            if !seen.insert(i.as_str()) {
                return Err(format!("input '{i}' is listed twice"));
            }
            if self.is_internal_topic(i) {
                return Err(format!(
                    "input '{i}' is one of the processor's own internal topics"
                ));
            }
        }
        let mut outs = BTreeSet::new();
        for o in &self.outputs {
            check_topic_name("output", o)?;
            if o == REPARTITION_OUTPUT {
                return Err(format!(
                    "'{REPARTITION_OUTPUT}' is reserved for the repartition topic; \
                     name the output topic differently"
                ));
            }
            if !outs.insert(o.as_str()) {
                return Err(format!("output '{o}' is listed twice"));
            }
            if seen.contains(o.as_str()) {
                return Err(format!(
                    "'{o}' is both an input and an output (the processor would read its own output)"
                ));
            }
            if self.is_internal_topic(o) {
                return Err(format!(
                    "output '{o}' is one of the processor's own internal topics"
                ));
            }
        }
        self.limits.validate()?;
        if !(10..=600_000).contains(&self.commit_interval_ms) {
            return Err("commit_interval_ms must be between 10 and 600000".into());
        }
        if !(1..=10_000).contains(&self.batch_size) {
            return Err("batch_size must be between 1 and 10000".into());
        }
        if self
            .standby_replicas
            .is_some_and(|n| n > MAX_STANDBY_REPLICAS)
        {
            return Err(format!(
                "standby_replicas must be between 0 and {MAX_STANDBY_REPLICAS}"
            ));
        }
        Ok(())
    }

    /// Whether `topic` is in this processor's namespace (`<name>.…`: its repartition,
    /// offsets, dead-letter and changelog topics), which its inputs and outputs may not use.
    pub fn is_internal_topic(&self, topic: &str) -> bool {
        topic
            .strip_prefix(self.name.as_str())
            .is_some_and(|rest| rest.starts_with('.'))
    }

    /// Config as the ordered pairs `init` gets.
    pub fn config_pairs(&self) -> Vec<(String, String)> {
        self.config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub fn repartition_topic(&self) -> String {
        repartition_topic(&self.name)
    }

    pub fn dlq_topic(&self) -> String {
        dlq_topic(&self.name)
    }

    pub fn offsets_topic(&self) -> String {
        crate::log_access::offsets_topic(&self.name)
    }
}

/// `<processor>.repartition`.
pub fn repartition_topic(processor: &str) -> String {
    format!("{processor}.repartition")
}

/// `<processor>.dlq`.
pub fn dlq_topic(processor: &str) -> String {
    format!("{processor}.dlq")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Result<ProcessorSpec, String> {
        let s: ProcessorSpec = serde_json::from_str(json).map_err(|e| e.to_string())?;
        s.validate()?;
        Ok(s)
    }

    #[test]
    fn defaults_and_aliases() {
        let s = spec(r#"{"name":"wc","inputs":["text"],"outputs":["counts"]}"#).unwrap();
        assert_eq!(s.on_error, OnError::Fail);
        assert_eq!(s.start, StartFrom::Earliest);
        assert_eq!(s.commit_interval_ms, DEFAULT_COMMIT_INTERVAL_MS);
        assert_eq!(s.batch_size, DEFAULT_BATCH_SIZE);
        let s = spec(
            r#"{"name":"f","inputs":["a"],"on_error":"dead-letter","start":"latest",
                "config":{"field":"x","min":3,"on":true},"limits":{"cpu_ms_per_call":100}}"#,
        )
        .unwrap();
        assert_eq!(s.on_error, OnError::DeadLetter);
        assert_eq!(s.start, StartFrom::Latest);
        assert_eq!(s.config["min"], "3");
        assert_eq!(s.config["on"], "true");
        assert_eq!(s.limits.cpu_ms_per_call, 100);
        let s = spec(r#"{"name":"f","inputs":["a"],"on_error":"dead_letter"}"#).unwrap();
        assert_eq!(s.on_error, OnError::DeadLetter);
    }

    #[test]
    fn bad_specs_say_why() {
        let cases = [
            (r#"{"name":"a.b","inputs":["t"]}"#, "invalid processor name"),
            (r#"{"name":"p","inputs":[]}"#, "at least one input"),
            (r#"{"name":"p","inputs":["t","t"]}"#, "listed twice"),
            (
                r#"{"name":"p","inputs":["t"],"outputs":["t"]}"#,
                "both an input",
            ),
            (r#"{"name":"p","inputs":["p.repartition"]}"#, "internal"),
            (
                r#"{"name":"p","inputs":["t"],"outputs":["repartition"]}"#,
                "reserved",
            ),
            (
                r#"{"name":"p","inputs":["t"],"outputs":["p.x.changelog"]}"#,
                "internal",
            ),
            (
                r#"{"name":"p","inputs":["bad/name"]}"#,
                "invalid input topic",
            ),
            (
                r#"{"name":"p","inputs":["t"],"commit_interval_ms":1}"#,
                "commit_interval_ms",
            ),
            (
                r#"{"name":"p","inputs":["t"],"limits":{"memory_bytes":1}}"#,
                "memory_bytes",
            ),
            (
                r#"{"name":"p","inputs":["t"],"config":{"k":[1]}}"#,
                "config value",
            ),
            (
                r#"{"name":"p","inputs":["t"],"surprise":1}"#,
                "unknown field",
            ),
        ];
        for (json, want) in cases {
            let e = spec(json).unwrap_err();
            assert!(e.contains(want), "{json}: {e}");
        }
        // The dead-letter topic may be read by another processor, not by its own.
        assert!(spec(r#"{"name":"q","inputs":["p.dlq"]}"#).is_ok());
    }
}
