//! Prometheus metrics: the registry, the middleware that counts and times every HTTP request
//! (labelled by method, route template and status), a collector that reads the broker's
//! per-topic counters at scrape time, and the `GET /metrics` handler.
//!
//! Output is the OpenMetrics text format (what `prometheus-client` writes, which Prometheus
//! scrapes natively). Metric names:
//! - `weir_http_requests_total{method,route,status}`
//! - `weir_http_request_duration_seconds{method,route,status}` (histogram; time to the
//!   response head, so a follow stream counts only until it starts)
//! - `weir_topic_records_appended_total{topic}`, `weir_topic_bytes_appended_total{topic}`,
//!   `weir_topic_records_read_total{topic}`, `weir_topic_bytes_read_total{topic}`
//! - `weir_partitions_offline{topic}` (partitions that could not be opened at start; a
//!   topic that could not be opened at all counts as one), `weir_log_open_files`,
//!   `weir_log_open_files_limit`, `weir_log_file_opens_total`, `weir_log_file_evictions_total`
//!   (the log's bounded cache of open segment and index files)
//! - cluster mode ([`Metrics::register_cluster`]), from this node's applied metadata (the
//!   same on every caught-up node: do not sum them over nodes):
//!   `weir_cluster_under_replicated_partitions`, `weir_cluster_offline_partitions`; this
//!   node's: `weir_cluster_partitions_led`, `weir_cluster_leader_elections_total` (partitions
//!   this node was elected to lead), `weir_cluster_isr_shrinks_total`,
//!   `weir_cluster_isr_expands_total` (in-sync set changes of partitions it leads; summed over
//!   nodes these three are the cluster's), `weir_replication_lag_records{topic,partition,
//!   follower}` (per partition this node leads, how many records each follower's log is
//!   behind the leader's log end; before its first fetch in the leader's epoch, everything
//!   appended in that epoch), `weir_replication_high_watermark{topic,partition}`
//!   and `weir_replication_log_end_offset{topic,partition}` (every local replica); the
//!   metadata quorum's `weir_raft_term`, `weir_raft_last_log_index`,
//!   `weir_raft_applied_index`, `weir_raft_commit_index` (on the controller only: the index a
//!   majority of voters has; openraft 0.9 exports no commit index elsewhere, where the
//!   applied index is its lower bound), `weir_raft_controller` (the controller's node id,
//!   `-1` when unknown)

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use weir_broker::cluster::metadata::MetadataNode;
use weir_broker::{Broker, TopicStats};

use super::cluster::{ReplicationSource, follower_lag, partition_issues};
use super::error::ApiError;

const CONTENT_TYPE_OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Route label for requests that matched no route.
const UNMATCHED_ROUTE: &str = "unmatched";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

/// The node's metrics registry and the HTTP request metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram>,
}

impl Metrics {
    /// Creates the registry; broker counters are read from `broker` on every scrape.
    pub fn new(broker: Broker) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "weir_http_requests",
            "HTTP requests served",
            requests.clone(),
        );
        let latency = Family::<RequestLabels, Histogram>::new_with_constructor(
            new_latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "weir_http_request_duration_seconds",
            "Time from request to response head, in seconds",
            latency.clone(),
        );
        registry.register_collector(Box::new(BrokerStatsCollector { broker }));
        Metrics {
            registry,
            requests,
            latency,
        }
    }

    /// Adds the cluster metrics of node `node_id` (read at scrape time).
    pub fn register_cluster(
        &mut self,
        node_id: u64,
        metadata: MetadataNode,
        replication: ReplicationSource,
    ) {
        self.registry.register_collector(Box::new(ClusterCollector {
            node_id,
            metadata,
            replication,
        }));
    }

    /// Records one served request.
    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let labels = RequestLabels {
            method: method.to_string(),
            route: route.to_string(),
            status,
        };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(seconds);
    }

    /// Renders every metric in the OpenMetrics text format.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

fn new_latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Reads [`Broker::stats`] at scrape time.
struct BrokerStatsCollector {
    broker: Broker,
}

impl std::fmt::Debug for BrokerStatsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerStatsCollector")
            .finish_non_exhaustive()
    }
}

impl Collector for BrokerStatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut stats = self.broker.stats();
        stats.sort_by(|a, b| a.0.cmp(&b.0));
        type Field = fn(&TopicStats) -> u64;
        let counters: [(&str, &str, Field); 4] = [
            (
                "weir_topic_records_appended",
                "Records appended to the topic.",
                |s| s.records_appended,
            ),
            (
                "weir_topic_bytes_appended",
                "Bytes appended to the topic.",
                |s| s.bytes_appended,
            ),
            (
                "weir_topic_records_read",
                "Records read from the topic.",
                |s| s.records_read,
            ),
            ("weir_topic_bytes_read", "Bytes read from the topic.", |s| {
                s.bytes_read
            }),
        ];
        for (name, help, field) in counters {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                ConstCounter::new(0u64).metric_type(),
            )?;
            for (topic, s) in &stats {
                let labels = [("topic", topic.as_str())];
                let metric = family.encode_family(&labels)?;
                ConstCounter::new(field(s)).encode(metric)?;
            }
        }
        let mut offline: std::collections::BTreeMap<String, i64> = Default::default();
        for (topic, _, _) in self.broker.unavailable() {
            *offline.entry(topic).or_default() += 1;
        }
        let mut family = encoder.encode_descriptor(
            "weir_partitions_offline",
            "Partitions (or whole topics) that could not be opened at start.",
            None,
            ConstGauge::new(0i64).metric_type(),
        )?;
        for (topic, n) in &offline {
            let labels = [("topic", topic.as_str())];
            ConstGauge::new(*n).encode(family.encode_family(&labels)?)?;
        }
        let files = self.broker.file_cache_stats();
        let gauges: [(&str, &str, i64); 2] = [
            (
                "weir_log_open_files",
                "Segment and index files the log holds open now.",
                files.open as i64,
            ),
            (
                "weir_log_open_files_limit",
                "Capacity of the log's cache of open files.",
                files.capacity as i64,
            ),
        ];
        for (name, help, v) in gauges {
            let family =
                encoder.encode_descriptor(name, help, None, ConstGauge::new(0i64).metric_type())?;
            ConstGauge::new(v).encode(family)?;
        }
        let counters: [(&str, &str, u64); 2] = [
            (
                "weir_log_file_opens",
                "Segment and index files reopened after the cache closed them.",
                files.opens,
            ),
            (
                "weir_log_file_evictions",
                "Files the log's cache closed to stay within its capacity.",
                files.evictions,
            ),
        ];
        for (name, help, v) in counters {
            let family = encoder.encode_descriptor(
                name,
                help,
                None,
                ConstCounter::new(0u64).metric_type(),
            )?;
            ConstCounter::new(v).encode(family)?;
        }
        Ok(())
    }
}

/// Reads the cluster's applied metadata, this node's replicas and applier counters, and
/// the metadata quorum's metrics at scrape time.
struct ClusterCollector {
    node_id: u64,
    metadata: MetadataNode,
    replication: ReplicationSource,
}

impl std::fmt::Debug for ClusterCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCollector")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> std::fmt::Result {
    let family =
        encoder.encode_descriptor(name, help, None, ConstGauge::new(0i64).metric_type())?;
    ConstGauge::new(v).encode(family)
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let family =
        encoder.encode_descriptor(name, help, None, ConstCounter::new(0u64).metric_type())?;
    ConstCounter::new(v).encode(family)
}

impl Collector for ClusterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use std::sync::atomic::Ordering::Relaxed;
        let meta = self.metadata.current();
        let (under, offline) = partition_issues(&meta);
        let led = meta
            .topics
            .values()
            .flat_map(|t| &t.partitions)
            .filter(|p| p.leader == Some(self.node_id))
            .count();
        gauge(
            &mut encoder,
            "weir_cluster_under_replicated_partitions",
            "Partitions with a leader and fewer in-sync replicas than replicas (applied metadata).",
            under.len() as i64,
        )?;
        gauge(
            &mut encoder,
            "weir_cluster_offline_partitions",
            "Partitions without a leader (applied metadata).",
            offline.len() as i64,
        )?;
        gauge(
            &mut encoder,
            "weir_cluster_partitions_led",
            "Partitions this node leads (applied metadata).",
            led as i64,
        )?;
        let c = &self.replication.counters;
        counter(
            &mut encoder,
            "weir_cluster_leader_elections",
            "Partitions this node was elected to lead (a change of leader applied here).",
            c.leader_elections.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "weir_cluster_isr_shrinks",
            "In-sync set shrinks of partitions this node leads.",
            c.isr_shrinks.load(Relaxed),
        )?;
        counter(
            &mut encoder,
            "weir_cluster_isr_expands",
            "In-sync set expansions of partitions this node leads.",
            c.isr_expands.load(Relaxed),
        )?;

        let statuses = self.replication.manager.statuses();
        let mut family = encoder.encode_descriptor(
            "weir_replication_lag_records",
            "Records a follower's log is behind the leader's log end (on the leader; before the follower's first fetch in this epoch, what was appended in it).",
            None,
            ConstGauge::new(0i64).metric_type(),
        )?;
        for (tp, s) in statuses.iter().filter(|(_, s)| s.is_leader) {
            let partition = tp.partition.to_string();
            for (follower, end) in &s.followers {
                let follower = follower.to_string();
                let labels = [
                    ("topic", tp.topic.as_str()),
                    ("partition", partition.as_str()),
                    ("follower", follower.as_str()),
                ];
                ConstGauge::new(follower_lag(s, *end)).encode(family.encode_family(&labels)?)?;
            }
        }
        type Field = fn(&weir_broker::cluster::replication::ReplicaStatus) -> i64;
        let offsets: [(&str, &str, Field); 2] = [
            (
                "weir_replication_high_watermark",
                "High watermark of this node's replica.",
                |s| s.high_watermark,
            ),
            (
                "weir_replication_log_end_offset",
                "Log end offset of this node's replica.",
                |s| s.log_end_offset,
            ),
        ];
        for (name, help, field) in offsets {
            let mut family =
                encoder.encode_descriptor(name, help, None, ConstGauge::new(0i64).metric_type())?;
            for (tp, s) in &statuses {
                let partition = tp.partition.to_string();
                let labels = [
                    ("topic", tp.topic.as_str()),
                    ("partition", partition.as_str()),
                ];
                ConstGauge::new(field(s)).encode(family.encode_family(&labels)?)?;
            }
        }

        let raft = self.metadata.raft_metrics();
        let m = raft.borrow();
        let last_log = m.last_log_index.map_or(-1, |i| i as i64);
        gauge(
            &mut encoder,
            "weir_raft_term",
            "Current term of the metadata quorum on this node.",
            m.current_term as i64,
        )?;
        gauge(
            &mut encoder,
            "weir_raft_last_log_index",
            "Index of the last entry in this node's metadata log.",
            last_log,
        )?;
        gauge(
            &mut encoder,
            "weir_raft_applied_index",
            "Index of the last metadata entry applied on this node.",
            m.last_applied.as_ref().map_or(-1, |l| l.index as i64),
        )?;
        gauge(
            &mut encoder,
            "weir_raft_controller",
            "Node id of the controller (Raft leader) as this node knows it; -1 when unknown.",
            m.current_leader.map_or(-1, |l| l as i64),
        )?;
        if let Some(replication) = &m.replication {
            // The controller: the index a majority of voters has in its log.
            let mut matched: Vec<i64> = m
                .membership_config
                .voter_ids()
                .map(|v| {
                    if v == m.id {
                        last_log
                    } else {
                        replication
                            .get(&v)
                            .and_then(|l| l.as_ref())
                            .map_or(-1, |l| l.index as i64)
                    }
                })
                .collect();
            if !matched.is_empty() {
                matched.sort_unstable_by(|a, b| b.cmp(a));
                gauge(
                    &mut encoder,
                    "weir_raft_commit_index",
                    "Index a majority of the metadata quorum's voters has (on the controller).",
                    matched[matched.len() / 2],
                )?;
            }
        }
        Ok(())
    }
}

/// The method as a label; unknown methods share one label so clients cannot grow the
/// number of series without bound.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware: counts and times every request.
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(req.method()).to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| UNMATCHED_ROUTE.to_string());
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let elapsed = start.elapsed();
    tracing::debug!(%method, %route, status, ms = elapsed.as_secs_f64() * 1e3, "request");
    metrics.observe(&method, &route, status, elapsed.as_secs_f64());
    response
}

/// `GET /metrics`
pub async fn get_metrics(State(metrics): State<Arc<Metrics>>) -> Result<Response, ApiError> {
    let text = metrics
        .render()
        .map_err(|e| ApiError::internal(format!("encoding metrics failed: {e}")))?;
    Ok(([(CONTENT_TYPE, CONTENT_TYPE_OPENMETRICS)], text).into_response())
}
