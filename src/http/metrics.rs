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
use weir_broker::{Broker, TopicStats};

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
