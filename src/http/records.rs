//! Records: `POST /v1/topics/{name}/records` (produce) and
//! `GET /v1/topics/{name}/partitions/{p}/records` (read a page, or with `follow=true` a
//! never-ending NDJSON stream of records as they are appended).
//!
//! On a cluster any node serves both: what another node must serve is forwarded to it
//! (`super::forward`).
//!
//! Keys, values and header values are UTF-8 strings in JSON (or null). On the way out, bytes
//! that are not UTF-8 are converted lossily in `key`/`value` (and header values), and a key
//! or value that is not UTF-8 also comes exactly, as standard base64 in `key_b64`/`value_b64`
//! (absent otherwise). Every broker call that may touch disk runs in
//! `spawn_blocking`.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::sync::{mpsc, watch};
use weir_broker::{Broker, Header, ProduceRecord, ReadResult, StoredRecord};

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::forward;

/// Records per page when `max` is not given.
pub const DEFAULT_MAX_RECORDS: usize = 100;
/// Largest accepted `max` for a page read.
pub const MAX_RECORDS_CAP: usize = 10_000;
/// Byte budget handed to the broker for one page read.
const READ_MAX_BYTES: usize = 16 * 1024 * 1024;
/// Records and bytes per broker read while following.
const FOLLOW_CHUNK_RECORDS: usize = 1_000;
const FOLLOW_CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// A follower waiting for appends re-checks the log at least this often.
const FOLLOW_RECHECK: Duration = Duration::from_secs(1);

/// Body of `POST /v1/topics/{name}/records` (also what one node forwards to another).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProduceRequest {
    pub records: Vec<ProduceRecordJson>,
}

/// One record to produce.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProduceRecordJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Headers::is_empty")]
    pub headers: Headers,
    /// Event time, ms since the epoch; append time when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    /// Explicit partition; the default partitioner when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
}

impl From<ProduceRecordJson> for ProduceRecord {
    fn from(r: ProduceRecordJson) -> Self {
        ProduceRecord {
            key: r.key.map(Bytes::from),
            value: r.value.map(Bytes::from),
            headers: r
                .headers
                .0
                .into_iter()
                .map(|(k, v)| (k, v.map(Bytes::from)))
                .collect(),
            timestamp: r.timestamp,
            partition: r.partition,
        }
    }
}

/// Record headers as a JSON object of name → string or null. Order is kept, and so are
/// repeated names (Kafka allows both).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Headers(pub Vec<(String, Option<String>)>);

impl Headers {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Headers;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of header names to string or null values")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Headers, E> {
                Ok(Headers::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Headers, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Option<String>>()? {
                    out.push((k, v));
                }
                Ok(Headers(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Headers {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Body of a successful produce.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProduceResponse {
    pub offsets: Vec<RecordPosition>,
}

/// Where one produced record landed.
#[derive(Debug, Serialize, Deserialize)]
pub struct RecordPosition {
    pub partition: i32,
    pub offset: i64,
}

/// `POST /v1/topics/{name}/records` → the offsets, in request order, once durable. On a
/// cluster, records of partitions led by other nodes are forwarded to them
/// ([`forward::produce`]).
pub async fn produce(
    State(state): State<AppState>,
    ApiPath(topic): ApiPath<String>,
    uri: Uri,
    headers: HeaderMap,
    ApiJson(request): ApiJson<ProduceRequest>,
) -> Result<Json<ProduceResponse>, ApiError> {
    if request.records.is_empty() {
        return Err(ApiError::bad_request("records must not be empty"));
    }
    let offsets = forward::produce(&state, &topic, uri.path(), &headers, request.records).await?;
    Ok(Json(ProduceResponse { offsets }))
}

/// Query of `GET /v1/topics/{name}/partitions/{p}/records`.
#[derive(Debug, Deserialize)]
pub struct ReadQuery {
    /// First offset to read (default 0).
    pub offset: Option<i64>,
    /// Page size (default 100, at most 10,000); with `follow`, the total number of records
    /// after which the stream ends (unlimited when absent).
    pub max: Option<usize>,
    /// Start at the first record whose timestamp is at or after this (ms since the epoch)
    /// instead of at `offset`; the end of the partition if there is none.
    pub timestamp: Option<i64>,
    /// Stream records as NDJSON as they are appended.
    #[serde(default)]
    pub follow: bool,
    /// `read_uncommitted` (default) or `read_committed`: only records of committed
    /// transactions, below the partition's last stable offset (`end_offset` is then that
    /// offset), as a Kafka consumer with `isolation.level=read_committed` sees them.
    #[serde(default)]
    pub isolation: Isolation,
}

/// Which records of transactions a read returns (Kafka's `isolation.level`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    #[default]
    ReadUncommitted,
    ReadCommitted,
}

/// A record as the API returns it.
#[derive(Debug, Serialize)]
pub struct RecordJson {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    /// The key's exact bytes (base64) when they are not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_b64: Option<String>,
    pub value: Option<String>,
    /// The value's exact bytes (base64) when they are not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_b64: Option<String>,
    pub timestamp: i64,
    pub headers: Headers,
}

impl RecordJson {
    fn new(partition: i32, r: StoredRecord) -> Self {
        RecordJson {
            partition,
            offset: r.offset,
            key: r.key.as_deref().map(lossy),
            key_b64: r.key.as_deref().and_then(exact),
            value: r.value.as_deref().map(lossy),
            value_b64: r.value.as_deref().and_then(exact),
            timestamp: r.timestamp,
            headers: Headers(
                r.headers
                    .into_iter()
                    .map(|(k, v): Header| (k, v.as_deref().map(lossy)))
                    .collect(),
            ),
        }
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Base64 of bytes that are not UTF-8 (`None` for UTF-8, which `key`/`value` hold exactly).
fn exact(b: &[u8]) -> Option<String> {
    use base64::Engine as _;
    std::str::from_utf8(b)
        .is_err()
        .then(|| base64::engine::general_purpose::STANDARD.encode(b))
}

/// Body of a page read.
#[derive(Debug, Serialize)]
pub struct ReadResponse {
    pub records: Vec<RecordJson>,
    /// Offset to ask for next.
    pub next_offset: i64,
    /// End of the partition when the read happened (offset of the next append).
    pub end_offset: i64,
}

/// `GET /v1/topics/{name}/partitions/{p}/records?offset=&max=&follow=`. On a cluster, a
/// node holding no replica of the partition forwards the read to its leader
/// ([`forward::read_elsewhere`]).
pub async fn read(
    State(state): State<AppState>,
    ApiPath((topic, partition)): ApiPath<(String, i32)>,
    ApiQuery(query): ApiQuery<ReadQuery>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if partition < 0 {
        return Err(ApiError::not_found(
            "unknown_partition",
            format!("topic '{topic}' has no partition {partition}"),
        ));
    }
    let offset = query.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_query",
            "offset must not be negative",
        ));
    }
    if query.max == Some(0) {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_query",
            "max must be at least 1",
        ));
    }
    let path_and_query = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    if let Some(forwarded) = forward::read_elsewhere(
        &state,
        &topic,
        partition,
        &headers,
        path_and_query,
        query.follow,
    )
    .await?
    {
        return Ok(forwarded);
    }
    let topic: Arc<str> = Arc::from(topic);
    let offset = match query.timestamp {
        None => offset,
        Some(ts) if query.offset.is_some() => {
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("give offset or timestamp, not both (timestamp={ts})"),
            ));
        }
        Some(ts) => offset_for_timestamp(&state.broker, &topic, partition, ts).await?,
    };
    let committed = query.isolation == Isolation::ReadCommitted;
    if query.follow {
        return follow(state, topic, partition, offset, query.max, committed).await;
    }
    let max = query
        .max
        .unwrap_or(DEFAULT_MAX_RECORDS)
        .min(MAX_RECORDS_CAP);
    let result = read_blocking(
        &state.broker,
        &topic,
        partition,
        offset,
        max,
        READ_MAX_BYTES,
        committed,
    )
    .await?;
    let records = result
        .records
        .into_iter()
        .map(|r| RecordJson::new(partition, r))
        .collect();
    Ok(Json(ReadResponse {
        records,
        next_offset: result.next_offset,
        end_offset: result.end_offset,
    })
    .into_response())
}

/// The first offset at or after `timestamp`, or the partition's end offset.
async fn offset_for_timestamp(
    broker: &Broker,
    topic: &Arc<str>,
    partition: i32,
    timestamp: i64,
) -> Result<i64, ApiError> {
    let broker = broker.clone();
    let topic = topic.clone();
    let offset = tokio::task::spawn_blocking(move || {
        match broker.offset_for_timestamp(&topic, partition, timestamp)? {
            Some(o) => Ok(o),
            None => broker.describe_topic(&topic).map(|d| {
                d.partition_offsets
                    .get(partition as usize)
                    .map_or(0, |p| p.end_offset)
            }),
        }
    })
    .await??;
    Ok(offset)
}

async fn read_blocking(
    broker: &Broker,
    topic: &Arc<str>,
    partition: i32,
    offset: i64,
    max_records: usize,
    max_bytes: usize,
    committed: bool,
) -> Result<ReadResult, ApiError> {
    let broker = broker.clone();
    let topic = topic.clone();
    let result = tokio::task::spawn_blocking(move || {
        if committed {
            broker.read_committed(&topic, partition, offset, max_records, max_bytes)
        } else {
            broker.read(&topic, partition, offset, max_records, max_bytes)
        }
    })
    .await??;
    Ok(result)
}

/// Starts a follow stream. The first read happens before the response starts, so an unknown
/// topic or partition or a bad offset still gets a proper error status.
async fn follow(
    state: AppState,
    topic: Arc<str>,
    partition: i32,
    offset: i64,
    limit: Option<usize>,
    committed: bool,
) -> Result<Response, ApiError> {
    let mut end_rx = state.broker.watch_end(&topic, partition)?;
    end_rx.borrow_and_update();
    let chunk = limit.map_or(FOLLOW_CHUNK_RECORDS, |l| l.min(FOLLOW_CHUNK_RECORDS));
    let first = read_blocking(
        &state.broker,
        &topic,
        partition,
        offset,
        chunk,
        FOLLOW_CHUNK_BYTES,
        committed,
    )
    .await?;

    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let follower = Follower {
        broker: state.broker.clone(),
        topic,
        partition,
        offset,
        remaining: limit,
        committed,
        end_rx,
        shutdown: state.shutdown.clone(),
        tx,
    };
    tokio::spawn(follower.run(first));

    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(chunk), rx))
    });
    Ok((
        [
            (CONTENT_TYPE, "application/x-ndjson"),
            (CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// The task behind one follow stream: reads, sends NDJSON chunks, waits for appends.
struct Follower {
    broker: Broker,
    topic: Arc<str>,
    partition: i32,
    offset: i64,
    /// Records still to send, when the client gave `max`.
    remaining: Option<usize>,
    /// Read committed only.
    committed: bool,
    end_rx: watch::Receiver<i64>,
    shutdown: watch::Receiver<bool>,
    tx: mpsc::Sender<Bytes>,
}

impl Follower {
    async fn run(mut self, first: ReadResult) {
        let mut pending = Some(first);
        loop {
            let result = match pending.take() {
                Some(r) => r,
                None => {
                    if *self.shutdown.borrow() {
                        break;
                    }
                    // Mark the current end as seen *before* reading, so an append that lands
                    // after the read still wakes the wait below.
                    self.end_rx.borrow_and_update();
                    let chunk = self
                        .remaining
                        .map_or(FOLLOW_CHUNK_RECORDS, |r| r.min(FOLLOW_CHUNK_RECORDS));
                    match read_blocking(
                        &self.broker,
                        &self.topic,
                        self.partition,
                        self.offset,
                        chunk,
                        FOLLOW_CHUNK_BYTES,
                        self.committed,
                    )
                    .await
                    {
                        Ok(r) => r,
                        Err(e) => {
                            // Topic deleted, broker shutting down, ...: end the stream.
                            tracing::debug!(topic = %self.topic, partition = self.partition, "follow ended: {e}");
                            break;
                        }
                    }
                }
            };

            if !result.records.is_empty() {
                let Some(chunk) = self.encode(result) else {
                    break;
                };
                if self.tx.send(chunk).await.is_err() || self.remaining == Some(0) {
                    break;
                }
                continue;
            }
            if result.next_offset > self.offset {
                // Skipped a gap (compaction) or jumped to the log start (retention).
                self.offset = result.next_offset;
                continue;
            }
            // Caught up: wait for an append, a re-check tick, shutdown or the client leaving.
            tokio::select! {
                changed = self.end_rx.changed() => {
                    if changed.is_err() {
                        break; // the partition is gone
                    }
                }
                _ = tokio::time::sleep(FOLLOW_RECHECK) => {}
                _ = self.shutdown.changed() => break,
                _ = self.tx.closed() => break,
            }
        }
    }

    /// Encodes records as NDJSON (respecting `remaining`) and advances `offset`.
    fn encode(&mut self, result: ReadResult) -> Option<Bytes> {
        let mut buf = Vec::new();
        let mut next = result.next_offset;
        for record in result.records {
            if self.remaining == Some(0) {
                break;
            }
            next = record.offset + 1;
            let json = RecordJson::new(self.partition, record);
            if let Err(e) = serde_json::to_writer(&mut buf, &json) {
                tracing::error!("encoding a record failed: {e}");
                return None;
            }
            buf.push(b'\n');
            if let Some(r) = self.remaining.as_mut() {
                *r -= 1;
            }
        }
        if self.remaining != Some(0) {
            next = next.max(result.next_offset);
        }
        self.offset = next;
        Some(Bytes::from(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn produce_request_parses_optional_fields() {
        let body = br#"{"records":[
            {"key":"k","value":"v","headers":{"h":"x","n":null},"timestamp":1700000000000,"partition":null},
            {"value":null},
            {}
        ]}"#;
        let req: ProduceRequest = serde_json::from_slice(body).unwrap();
        let recs: Vec<ProduceRecord> = req.records.into_iter().map(Into::into).collect();
        assert_eq!(recs[0].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(recs[0].value.as_deref(), Some(&b"v"[..]));
        assert_eq!(
            recs[0].headers,
            vec![
                ("h".to_string(), Some(Bytes::from_static(b"x"))),
                ("n".to_string(), None)
            ]
        );
        assert_eq!(recs[0].timestamp, Some(1_700_000_000_000));
        assert_eq!(recs[0].partition, None);
        assert_eq!(recs[1], ProduceRecord::default());
        assert_eq!(recs[2], ProduceRecord::default());
    }

    #[test]
    fn produce_request_rejects_wrong_types_and_unknown_fields() {
        assert!(serde_json::from_slice::<ProduceRequest>(br#"{"records":[{"value":5}]}"#).is_err());
        assert!(
            serde_json::from_slice::<ProduceRequest>(br#"{"records":[{"vaule":"x"}]}"#).is_err()
        );
        assert!(
            serde_json::from_slice::<ProduceRequest>(br#"{"records":[{"headers":[1]}]}"#).is_err()
        );
        assert!(serde_json::from_slice::<ProduceRequest>(br#"{"records":{}}"#).is_err());
    }

    #[test]
    fn stored_records_render_lossily_and_exactly() {
        let r = StoredRecord {
            offset: 7,
            timestamp: 5,
            key: None,
            value: Some(Bytes::from_static(b"a\xffb")),
            headers: vec![("h".into(), None)],
        };
        let json = serde_json::to_value(RecordJson::new(2, r)).unwrap();
        // `value` lossy for clients that read text; `value_b64` the exact bytes.
        assert_eq!(
            json,
            serde_json::json!({"partition":2,"offset":7,"key":null,"value":"a\u{fffd}b","value_b64":"Yf9i","timestamp":5,"headers":{"h":null}})
        );
        // UTF-8 needs no `_b64` field.
        let r = StoredRecord {
            offset: 8,
            timestamp: 5,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static("é".as_bytes())),
            headers: Vec::new(),
        };
        let json = serde_json::to_value(RecordJson::new(2, r)).unwrap();
        assert_eq!(json["value"], "é");
        assert!(json.get("key_b64").is_none() && json.get("value_b64").is_none());
    }
}
