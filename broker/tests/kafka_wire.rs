//! The Kafka listener driven byte by byte: a minimal client built from `kafka-protocol`'s
//! codecs talks to `weir_broker::kafka::serve` in-process. Covers what real clients rarely
//! exercise on purpose: retried idempotent batches, sequence gaps, corrupt batches, acks=0,
//! long-poll fetches, and hostile frames (which must close the connection, never the server).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, FetchRequest, InitProducerIdRequest, ListOffsetsRequest,
    MetadataRequest, ProduceRequest, RequestHeader, RequestKind, ResponseHeader, ResponseKind,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weir_broker::kafka::{KafkaConfig, serve};
use weir_broker::{Broker, BrokerConfig, TopicSpec};

struct Node {
    broker: Broker,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Node {
    async fn start(config: KafkaConfig) -> Node {
        Node::start_in(tempfile::tempdir().unwrap(), config).await
    }

    /// A node on an existing data directory (a restart).
    async fn start_in(dir: tempfile::TempDir, config: KafkaConfig) -> Node {
        let broker = Broker::open(BrokerConfig::new(dir.path())).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let b = broker.clone();
        let task = tokio::spawn(async move {
            serve(b, listener, config, async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Node {
            broker,
            addr,
            _dir: dir,
            stop: Some(tx),
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
    }

    /// Stops the node and closes its log; returns the data directory for a restart.
    async fn shut_down(mut self) -> tempfile::TempDir {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
        self.broker.flush_all().unwrap();
        let Node { broker, _dir, .. } = self;
        drop(broker);
        _dir
    }
}

struct Client {
    stream: TcpStream,
    corr: i32,
}

impl Client {
    async fn connect(node: &Node) -> Client {
        Client {
            stream: TcpStream::connect(node.addr).await.unwrap(),
            corr: 0,
        }
    }

    async fn send(&mut self, api: ApiKey, version: i16, body: &RequestKind) -> i32 {
        self.corr += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.corr)
            .with_client_id(Some(StrBytes::from_static_str("wire-test")));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, api.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        self.send_raw(&buf).await;
        self.corr
    }

    async fn send_raw(&mut self, body: &[u8]) {
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(body);
        self.stream.write_all(&frame).await.unwrap();
    }

    /// Reads one response frame; `None` if the server closed the connection.
    async fn recv_raw(&mut self) -> Option<Bytes> {
        let mut len = [0u8; 4];
        match tokio::time::timeout(Duration::from_secs(30), self.stream.read_exact(&mut len)).await
        {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return None,
            Err(_) => panic!("no response and no close within 30 s"),
        }
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut body).await.ok()?;
        Some(Bytes::from(body))
    }

    async fn recv(&mut self, api: ApiKey, version: i16) -> (i32, ResponseKind) {
        let mut b = self.recv_raw().await.expect("connection closed");
        let h = ResponseHeader::decode(&mut b, api.response_header_version(version)).unwrap();
        let r = ResponseKind::decode(api, &mut b, version).unwrap();
        (h.correlation_id, r)
    }

    async fn call(&mut self, api: ApiKey, version: i16, body: RequestKind) -> ResponseKind {
        let corr = self.send(api, version, &body).await;
        let (got, r) = self.recv(api, version).await;
        assert_eq!(got, corr);
        r
    }

    /// Produce v7 of `records` to partition 0 of `topic` with acks=all: (error code, base
    /// offset).
    async fn produce_all(&mut self, topic: &str, records: Bytes) -> (i16, i64) {
        produced(
            self.call(ApiKey::Produce, 7, produce(topic, 0, -1, records))
                .await,
        )
    }
}

fn record(i: i64, key: Option<&str>, value: &str, producer: (i64, i16), seq: i32) -> Record {
    Record {
        transactional: false,
        control: false,
        partition_leader_epoch: -1,
        producer_id: producer.0,
        producer_epoch: producer.1,
        timestamp_type: TimestampType::Creation,
        offset: i,
        sequence: seq,
        timestamp: 1_700_000_000_000 + i,
        key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        headers: Default::default(),
        delete_horizon: false,
    }
}

/// One batch of `n` records; sequences from `first_seq` when `producer` is an idempotent one.
fn batch(n: i64, producer: (i64, i16), first_seq: i32, key: Option<&str>) -> Bytes {
    let recs: Vec<Record> = (0..n)
        .map(|i| record(i, key, &format!("v{i}"), producer, first_seq + i as i32))
        .collect();
    encode(&recs)
}

/// `recs` as one uncompressed RecordBatch v2.
fn encode(recs: &[Record]) -> Bytes {
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        recs.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

fn produce(topic: &str, partition: i32, acks: i16, records: Bytes) -> RequestKind {
    RequestKind::Produce(
        ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(5000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(topic.into())))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(partition)
                            .with_records(Some(records)),
                    ]),
            ]),
    )
}

/// (error code, base offset) of the single partition in a Produce response.
fn produced(r: ResponseKind) -> (i16, i64) {
    let ResponseKind::Produce(r) = r else {
        panic!("{r:?}")
    };
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn fetch(topic: &str, offset: i64, max_wait_ms: i32, min_bytes: i32) -> RequestKind {
    RequestKind::Fetch(
        FetchRequest::default()
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(min_bytes)
            .with_max_bytes(1 << 20)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.into())))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(1 << 20),
                    ]),
            ]),
    )
}

#[tokio::test]
async fn retried_idempotent_batches_are_appended_once_and_gaps_are_rejected() {
    let node = Node::start(KafkaConfig::default()).await;
    node.broker.create_topic(TopicSpec::new("idem", 1)).unwrap();
    let mut c = Client::connect(&node).await;
    let ResponseKind::InitProducerId(init) = c
        .call(
            ApiKey::InitProducerId,
            4,
            RequestKind::InitProducerId(
                InitProducerIdRequest::default()
                    .with_transaction_timeout_ms(60_000)
                    .with_producer_id((-1).into())
                    .with_producer_epoch(-1),
            ),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(init.error_code, 0);
    let pid = (init.producer_id.0, init.producer_epoch);
    assert!(pid.0 >= 0);

    let first = batch(5, pid, 0, Some("k"));
    assert_eq!(c.produce_all("idem", first.clone()).await, (0, 0));
    // The same batch again (a retry after a lost response): same offsets, nothing appended.
    assert_eq!(c.produce_all("idem", first).await, (0, 0));
    assert_eq!(node.broker.partition_offsets("idem", 0).unwrap(), (0, 5));
    // A gap in sequence numbers is refused.
    let gap = batch(2, pid, 9, Some("k"));
    assert_eq!(c.produce_all("idem", gap).await.0, 45);
    // The next batch in sequence goes on.
    let next = batch(2, pid, 5, Some("k"));
    assert_eq!(c.produce_all("idem", next).await, (0, 5));
    assert_eq!(node.broker.partition_offsets("idem", 0).unwrap(), (0, 7));
    let all = node.broker.read("idem", 0, 0, 100, 1 << 20).unwrap();
    assert_eq!(all.records.len(), 7);
    node.stop().await;
}

#[tokio::test]
async fn producer_state_survives_a_restart_so_retries_are_not_appended_twice() {
    let node = Node::start(KafkaConfig::default()).await;
    node.broker.create_topic(TopicSpec::new("idem", 1)).unwrap();
    let mut c = Client::connect(&node).await;
    let pid = (424_242, 3);
    // Another producer's batches after it, so the replay sees more than one producer.
    let other = (777, 0);
    let first = batch(5, pid, 0, Some("k"));
    let second = batch(3, pid, 5, Some("k"));
    for (b, want) in [
        (first.clone(), 0),
        (batch(2, other, 0, None), 5),
        (second.clone(), 7),
    ] {
        assert_eq!(c.produce_all("idem", b).await, (0, want));
    }
    drop(c);
    let dir = node.shut_down().await;

    let node = Node::start_in(dir, KafkaConfig::default()).await;
    let mut c = Client::connect(&node).await;
    // Both batches retried after the restart (responses lost before it): their original
    // offsets, nothing appended.
    for (b, want) in [(second, 7), (first, 0)] {
        assert_eq!(c.produce_all("idem", b).await, (0, want));
    }
    assert_eq!(node.broker.partition_offsets("idem", 0).unwrap(), (0, 10));
    // The sequence continues where the log left it: a gap is refused, the next one appended.
    let gap = batch(1, pid, 9, Some("k"));
    assert_eq!(c.produce_all("idem", gap).await.0, 45);
    let next = batch(1, pid, 8, Some("k"));
    assert_eq!(c.produce_all("idem", next).await, (0, 10));
    // An older epoch of the same producer is fenced.
    let stale = batch(1, (pid.0, pid.1 - 1), 9, Some("k"));
    assert_eq!(c.produce_all("idem", stale).await.0, 47);
    node.stop().await;
}

#[tokio::test]
async fn bad_batches_get_kafka_error_codes_and_nothing_is_appended() {
    let config = KafkaConfig {
        auto_create_topics: false,
        ..KafkaConfig::default()
    };
    let node = Node::start(config).await;
    node.broker.create_topic(TopicSpec::new("t", 1)).unwrap();
    let mut compacted = TopicSpec::new("c", 1);
    compacted.compacted = true;
    node.broker.create_topic(compacted).unwrap();
    let mut c = Client::connect(&node).await;
    let plain = (-1, -1);

    // A flipped bit in a record: CRC mismatch → CORRUPT_MESSAGE.
    let mut bad = batch(3, plain, -1, Some("k")).to_vec();
    let n = bad.len();
    bad[n - 2] ^= 0x40;
    let r = c
        .call(ApiKey::Produce, 7, produce("t", 0, 1, Bytes::from(bad)))
        .await;
    assert_eq!(produced(r).0, 2);
    // Old message format (magic 1) → INVALID_RECORD.
    let mut old = batch(1, plain, -1, Some("k")).to_vec();
    old[16] = 1;
    let r = c
        .call(ApiKey::Produce, 7, produce("t", 0, 1, Bytes::from(old)))
        .await;
    assert_eq!(produced(r).0, 87);
    // A truncated batch → CORRUPT_MESSAGE.
    let trunc = batch(3, plain, -1, Some("k")).slice(0..40);
    let r = c.call(ApiKey::Produce, 7, produce("t", 0, 1, trunc)).await;
    assert_eq!(produced(r).0, 2);
    // A null key on a compacted topic → INVALID_RECORD.
    let r = c
        .call(
            ApiKey::Produce,
            7,
            produce("c", 0, 1, batch(1, plain, -1, None)),
        )
        .await;
    assert_eq!(produced(r).0, 87);
    // Unknown topic (auto-creation off) and unknown partition → UNKNOWN_TOPIC_OR_PARTITION.
    let r = c
        .call(
            ApiKey::Produce,
            7,
            produce("nope", 0, 1, batch(1, plain, -1, Some("k"))),
        )
        .await;
    assert_eq!(produced(r).0, 3);
    let r = c
        .call(
            ApiKey::Produce,
            7,
            produce("t", 4, 1, batch(1, plain, -1, Some("k"))),
        )
        .await;
    assert_eq!(produced(r).0, 3);
    // acks must be -1, 0 or 1.
    let r = c
        .call(
            ApiKey::Produce,
            7,
            produce("t", 0, 5, batch(1, plain, -1, Some("k"))),
        )
        .await;
    assert_eq!(produced(r).0, 21);
    assert_eq!(node.broker.partition_offsets("t", 0).unwrap(), (0, 0));
    assert_eq!(node.broker.partition_offsets("c", 0).unwrap(), (0, 0));
    assert!(node.broker.partition_count("nope").is_err());

    // acks=0: no response at all; the next response is for the next request.
    let corr = c
        .send(
            ApiKey::Produce,
            7,
            &produce("t", 0, 0, batch(2, plain, -1, Some("k"))),
        )
        .await;
    let next = c
        .send(
            ApiKey::ApiVersions,
            3,
            &RequestKind::ApiVersions(ApiVersionsRequest::default()),
        )
        .await;
    let (got, _) = c.recv(ApiKey::ApiVersions, 3).await;
    assert_eq!((got, next), (corr + 1, corr + 1));
    assert_eq!(node.broker.partition_offsets("t", 0).unwrap(), (0, 2));
    node.stop().await;
}

#[tokio::test]
async fn fetch_long_polls_and_answers_from_stored_batches() {
    let node = Node::start(KafkaConfig::default()).await;
    node.broker.create_topic(TopicSpec::new("f", 1)).unwrap();
    let mut c = Client::connect(&node).await;
    let plain = (-1, -1);
    for _ in 0..3 {
        let r = c
            .call(
                ApiKey::Produce,
                7,
                produce("f", 0, 1, batch(4, plain, -1, Some("k"))),
            )
            .await;
        assert_eq!(produced(r).0, 0);
    }
    // From an offset inside the second batch: the whole batch comes back, byte for byte.
    let ResponseKind::Fetch(r) = c.call(ApiKey::Fetch, 11, fetch("f", 5, 0, 1)).await else {
        panic!()
    };
    let p = &r.responses[0].partitions[0];
    assert_eq!(
        (p.error_code, p.high_watermark, p.log_start_offset),
        (0, 12, 0)
    );
    let (stored, _) = node.broker.read_batches("f", 0, 4, 1 << 20).unwrap();
    assert_eq!(p.records.as_ref().unwrap(), &stored);
    assert_eq!(i64::from_be_bytes(stored[0..8].try_into().unwrap()), 4);
    // Past the end: OFFSET_OUT_OF_RANGE.
    let ResponseKind::Fetch(r) = c.call(ApiKey::Fetch, 11, fetch("f", 13, 0, 1)).await else {
        panic!()
    };
    assert_eq!(r.responses[0].partitions[0].error_code, 1);

    // At the end with max_wait: the fetch waits, and returns what is appended meanwhile.
    let corr = c.send(ApiKey::Fetch, 11, &fetch("f", 12, 20_000, 1)).await;
    let b = node.broker.clone();
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        tokio::task::spawn_blocking(move || {
            b.produce(
                "f",
                vec![weir_broker::ProduceRecord {
                    value: Some(Bytes::from_static(b"late")),
                    ..Default::default()
                }],
            )
        })
        .await
        .unwrap()
        .unwrap()
    });
    let (got, r) = c.recv(ApiKey::Fetch, 11).await;
    assert_eq!(got, corr);
    let ResponseKind::Fetch(r) = r else { panic!() };
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.high_watermark, 13);
    let mut recs = p.records.clone().unwrap();
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut recs).unwrap();
    assert_eq!(set.records[0].offset, 12);
    assert_eq!(set.records[0].value.as_deref(), Some(&b"late"[..]));
    writer.await.unwrap();
    node.stop().await;
}

#[tokio::test]
async fn offset_for_leader_epoch_is_listed_and_answers_from_the_epoch_of_a_local_log() {
    use kafka_protocol::ResponseError;
    use kafka_protocol::messages::OffsetForLeaderEpochRequest;
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    let node = Node::start(KafkaConfig::default()).await;
    node.broker.create_topic(TopicSpec::new("oe", 1)).unwrap();
    let mut c = Client::connect(&node).await;
    let ResponseKind::ApiVersions(v) = c
        .call(
            ApiKey::ApiVersions,
            3,
            RequestKind::ApiVersions(ApiVersionsRequest::default()),
        )
        .await
    else {
        panic!()
    };
    let listed = v
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::OffsetForLeaderEpoch as i16)
        .expect("OffsetForLeaderEpoch is listed");
    assert_eq!((listed.min_version, listed.max_version), (2, 4));
    let r = c
        .call(
            ApiKey::Produce,
            7,
            produce("oe", 0, 1, batch(7, (-1, -1), -1, Some("k"))),
        )
        .await;
    assert_eq!(produced(r), (0, 0));
    // A single node's log is one leader epoch, 0 (what Metadata reports), from start to end.
    for (partition, current, epoch, want) in [
        (0, -1, 0, (0, 0, 7)),
        (0, 0, 0, (0, 0, 7)),
        (0, 0, 3, (0, -1, -1)),
        (0, 2, 0, (ResponseError::UnknownLeaderEpoch.code(), -1, -1)),
        (
            5,
            -1,
            0,
            (ResponseError::UnknownTopicOrPartition.code(), -1, -1),
        ),
    ] {
        let req = OffsetForLeaderEpochRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![
                OffsetForLeaderTopic::default()
                    .with_topic(TopicName(StrBytes::from_static_str("oe")))
                    .with_partitions(vec![
                        OffsetForLeaderPartition::default()
                            .with_partition(partition)
                            .with_current_leader_epoch(current)
                            .with_leader_epoch(epoch),
                    ]),
            ]);
        for version in [2, 3, 4] {
            let ResponseKind::OffsetForLeaderEpoch(r) = c
                .call(
                    ApiKey::OffsetForLeaderEpoch,
                    version,
                    RequestKind::OffsetForLeaderEpoch(req.clone()),
                )
                .await
            else {
                panic!()
            };
            let p = &r.topics[0].partitions[0];
            assert_eq!(
                (p.error_code, p.leader_epoch, p.end_offset),
                want,
                "partition {partition} current {current} epoch {epoch} v{version}"
            );
        }
    }
    node.stop().await;
}

#[tokio::test]
async fn list_offsets_earliest_latest_and_by_timestamp() {
    let node = Node::start(KafkaConfig::default()).await;
    node.broker.create_topic(TopicSpec::new("lo", 1)).unwrap();
    let mut c = Client::connect(&node).await;
    let r = c
        .call(
            ApiKey::Produce,
            7,
            produce("lo", 0, 1, batch(10, (-1, -1), -1, Some("k"))),
        )
        .await;
    assert_eq!(produced(r), (0, 0));
    for (ts, want) in [
        (-2, 0),
        (-1, 10),
        (1_700_000_000_004, 4),
        (1_800_000_000_000, -1),
    ] {
        let req = ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("lo")))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(ts),
                    ]),
            ]);
        for version in [1, 5] {
            let ResponseKind::ListOffsets(r) = c
                .call(
                    ApiKey::ListOffsets,
                    version,
                    RequestKind::ListOffsets(req.clone()),
                )
                .await
            else {
                panic!()
            };
            let p = &r.topics[0].partitions[0];
            assert_eq!(
                (p.error_code, p.offset),
                (0, want),
                "timestamp {ts} v{version}"
            );
            if want >= 0 && ts >= 0 {
                assert_eq!(p.timestamp, 1_700_000_000_000 + want);
            }
        }
    }
    node.stop().await;
}

#[tokio::test]
async fn hostile_frames_close_the_connection_and_the_server_keeps_serving() {
    let node = Node::start(KafkaConfig {
        max_request_bytes: 64 * 1024,
        ..KafkaConfig::default()
    })
    .await;
    // An unknown API key.
    let mut c = Client::connect(&node).await;
    c.send_raw(&[0x03, 0xe7, 0, 0, 0, 0, 0, 1, 0, 0]).await;
    assert!(c.recv_raw().await.is_none());
    // A length prefix over the limit (an HTTP request, say).
    let mut c = Client::connect(&node).await;
    c.stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(c.recv_raw().await.is_none());
    // A negative length.
    let mut c = Client::connect(&node).await;
    c.stream.write_all(&(-5i32).to_be_bytes()).await.unwrap();
    assert!(c.recv_raw().await.is_none());
    // A truncated Metadata body, and an array length claiming 2^31 elements.
    let mut c = Client::connect(&node).await;
    c.send_raw(&[0, 3, 0, 1, 0, 0, 0, 7, 0, 0, 0x7f]).await;
    assert!(c.recv_raw().await.is_none());
    let mut c = Client::connect(&node).await;
    c.send_raw(&[0, 3, 0, 1, 0, 0, 0, 7, 0, 0, 0x7f, 0xff, 0xff, 0xff])
        .await;
    assert!(c.recv_raw().await.is_none());
    // Fetch v13 (topic ids) is not served: the connection closes.
    let mut c = Client::connect(&node).await;
    c.send(
        ApiKey::Fetch,
        13,
        &RequestKind::Fetch(FetchRequest::default()),
    )
    .await;
    assert!(c.recv_raw().await.is_none());

    // An ApiVersions version from the future gets a v0 answer with UNSUPPORTED_VERSION and
    // the supported ranges, so the client can retry with one of them.
    let mut c = Client::connect(&node).await;
    c.send_raw(&[0, 18, 0, 9, 0, 0, 0, 42, 0, 0]).await;
    let mut b = c.recv_raw().await.unwrap();
    let h = ResponseHeader::decode(&mut b, 0).unwrap();
    let r = kafka_protocol::messages::ApiVersionsResponse::decode(&mut b, 0).unwrap();
    assert_eq!((h.correlation_id, r.error_code), (42, 35));
    let av = r
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::ApiVersions as i16)
        .unwrap();
    assert_eq!((av.min_version, av.max_version), (0, 3));
    let produce_range = r.api_keys.iter().find(|k| k.api_key == 0).unwrap();
    assert!(produce_range.max_version < 13);

    // The server is still fine.
    let mut c = Client::connect(&node).await;
    let ResponseKind::Metadata(m) = c
        .call(
            ApiKey::Metadata,
            9,
            RequestKind::Metadata(MetadataRequest::default().with_topics(None)),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(m.brokers[0].port, node.addr.port() as i32);
    node.stop().await;
}

// ---- Authentication and authorization (`KafkaConfig::auth`) ----

mod auth {
    use std::sync::Arc;

    use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
    use weir_broker::auth::{AclAllow, AclResource, AuthStore, LoginLimits, Role};

    use super::*;

    const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
    const SASL_AUTHENTICATION_FAILED: i16 = 58;

    /// A node under `--auth` with users `wally` (writer) and `rita` (reader), topics `orders`
    /// and `payments`; `rita` may read only topics starting with `orders`.
    async fn node() -> (Node, Arc<AuthStore>, tempfile::TempDir) {
        let auth_dir = tempfile::tempdir().unwrap();
        let store = Arc::new(AuthStore::open(auth_dir.path(), LoginLimits::default()).unwrap());
        store
            .create_user("wally", "wally-pw", Role::Writer)
            .unwrap();
        store.create_user("rita", "rita-pw", Role::Reader).unwrap();
        store
            .add_acl("rita", AclResource::Topic, "orders", AclAllow::Read)
            .unwrap();
        let config = KafkaConfig {
            auth: Some(store.clone()),
            ..KafkaConfig::default()
        };
        let node = Node::start(config).await;
        for t in ["orders", "payments"] {
            node.broker.create_topic(TopicSpec::new(t, 1)).unwrap();
        }
        (node, store, auth_dir)
    }

    async fn login(c: &mut Client, mechanism: &str, user: &str, password: &str) -> i16 {
        let ResponseKind::SaslHandshake(h) = c
            .call(
                ApiKey::SaslHandshake,
                1,
                RequestKind::SaslHandshake(
                    SaslHandshakeRequest::default()
                        .with_mechanism(StrBytes::from_string(mechanism.into())),
                ),
            )
            .await
        else {
            panic!()
        };
        if h.error_code != 0 {
            return h.error_code;
        }
        let msg = format!("\0{user}\0{password}");
        let ResponseKind::SaslAuthenticate(a) = c
            .call(
                ApiKey::SaslAuthenticate,
                2,
                RequestKind::SaslAuthenticate(
                    SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(msg)),
                ),
            )
            .await
        else {
            panic!()
        };
        a.error_code
    }

    fn metadata_all() -> RequestKind {
        RequestKind::Metadata(MetadataRequest::default().with_topics(None))
    }

    #[tokio::test]
    async fn requests_before_authentication_close_the_connection() {
        let (node, _store, _dir) = node().await;
        let mut c = Client::connect(&node).await;
        // ApiVersions is served before authentication…
        let r = c
            .call(
                ApiKey::ApiVersions,
                3,
                RequestKind::ApiVersions(ApiVersionsRequest::default()),
            )
            .await;
        let ResponseKind::ApiVersions(v) = r else {
            panic!()
        };
        assert!(
            v.api_keys
                .iter()
                .any(|k| k.api_key == ApiKey::SaslHandshake as i16)
        );
        // …anything else closes the connection, unanswered.
        c.send(ApiKey::Metadata, 9, &metadata_all()).await;
        assert!(c.recv_raw().await.is_none());
        assert!(node.broker.list_topics().len() >= 2);
        node.stop().await;
    }

    #[tokio::test]
    async fn a_wrong_password_is_answered_then_the_connection_closes() {
        let (node, _store, _dir) = node().await;
        let mut c = Client::connect(&node).await;
        assert_eq!(
            login(&mut c, "PLAIN", "wally", "nope").await,
            SASL_AUTHENTICATION_FAILED
        );
        assert!(c.recv_raw().await.is_none());
        let mut c = Client::connect(&node).await;
        assert_eq!(login(&mut c, "GSSAPI", "wally", "x").await, 33);
        node.stop().await;
    }

    #[tokio::test]
    async fn writers_run_transactions_and_readers_are_refused() {
        use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
        use kafka_protocol::messages::{
            AddPartitionsToTxnRequest, EndTxnRequest, ProducerId, TransactionalId,
        };
        let (node, _store, _dir) = node().await;
        let tid = TransactionalId(StrBytes::from_static_str("auth-txn"));
        let init = RequestKind::InitProducerId(
            InitProducerIdRequest::default()
                .with_transactional_id(Some(tid.clone()))
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        );
        let add = |pid: i64, epoch: i16| {
            RequestKind::AddPartitionsToTxn(
                AddPartitionsToTxnRequest::default()
                    .with_v3_and_below_transactional_id(tid.clone())
                    .with_v3_and_below_producer_id(ProducerId(pid))
                    .with_v3_and_below_producer_epoch(epoch)
                    .with_v3_and_below_topics(vec![
                        AddPartitionsToTxnTopic::default()
                            .with_name(TopicName(StrBytes::from_static_str("payments")))
                            .with_partitions(vec![0]),
                    ]),
            )
        };
        let code = |r: ResponseKind| match r {
            ResponseKind::AddPartitionsToTxn(r) => {
                r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
            }
            ResponseKind::EndTxn(r) => r.error_code,
            ResponseKind::InitProducerId(r) => r.error_code,
            r => panic!("{r:?}"),
        };
        let mut w = Client::connect(&node).await;
        assert_eq!(login(&mut w, "PLAIN", "wally", "wally-pw").await, 0);
        let ResponseKind::InitProducerId(i) = w.call(ApiKey::InitProducerId, 4, init.clone()).await
        else {
            panic!()
        };
        assert_eq!(i.error_code, 0);
        let (pid, epoch) = (i.producer_id.0, i.producer_epoch);
        assert_eq!(
            code(w.call(ApiKey::AddPartitionsToTxn, 3, add(pid, epoch)).await),
            0
        );
        let end = RequestKind::EndTxn(
            EndTxnRequest::default()
                .with_transactional_id(tid.clone())
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch)
                .with_committed(true),
        );
        assert_eq!(code(w.call(ApiKey::EndTxn, 1, end.clone()).await), 0);
        // A reader may neither start nor touch a transaction.
        let mut r = Client::connect(&node).await;
        assert_eq!(login(&mut r, "PLAIN", "rita", "rita-pw").await, 0);
        assert_eq!(code(r.call(ApiKey::InitProducerId, 4, init).await), 31);
        assert_eq!(
            code(r.call(ApiKey::AddPartitionsToTxn, 3, add(pid, epoch)).await),
            53
        );
        assert_eq!(code(r.call(ApiKey::EndTxn, 1, end).await), 53);
        node.stop().await;
    }

    #[tokio::test]
    async fn roles_and_acls_decide_per_topic() {
        let (node, _store, _dir) = node().await;
        let mut w = Client::connect(&node).await;
        assert_eq!(login(&mut w, "PLAIN", "wally", "wally-pw").await, 0);
        assert_eq!(
            w.produce_all("payments", batch(2, (-1, -1), -1, None))
                .await
                .0,
            0
        );
        // Unknown topics are not auto-created by non-admins.
        assert_eq!(
            w.produce_all("new-topic", batch(1, (-1, -1), -1, None))
                .await
                .0,
            3
        );
        assert!(node.broker.partition_count("new-topic").is_err());

        let mut r = Client::connect(&node).await;
        assert_eq!(login(&mut r, "PLAIN", "rita", "rita-pw").await, 0);
        let (code, _) = r.produce_all("orders", batch(1, (-1, -1), -1, None)).await;
        assert_eq!(code, TOPIC_AUTHORIZATION_FAILED);
        assert_eq!(node.broker.partition_offsets("orders", 0).unwrap(), (0, 0));
        // Metadata shows rita only the topics her ACL covers.
        let ResponseKind::Metadata(m) = r.call(ApiKey::Metadata, 9, metadata_all()).await else {
            panic!()
        };
        let names: Vec<String> = m
            .topics
            .iter()
            .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
            .collect();
        assert_eq!(names, ["orders"]);
        // Fetch of a topic outside her ACL: TOPIC_AUTHORIZATION_FAILED for it.
        let ResponseKind::Fetch(f) = r.call(ApiKey::Fetch, 12, fetch("payments", 0, 0, 0)).await
        else {
            panic!()
        };
        assert_eq!(
            f.responses[0].partitions[0].error_code,
            TOPIC_AUTHORIZATION_FAILED
        );
        let ResponseKind::Fetch(f) = r.call(ApiKey::Fetch, 12, fetch("orders", 0, 0, 0)).await
        else {
            panic!()
        };
        assert_eq!(f.responses[0].partitions[0].error_code, 0);
        node.stop().await;
    }
}

/// One transactional batch of `n` records of `producer` from sequence `first_seq`.
fn txn_batch(n: i64, producer: (i64, i16), first_seq: i32) -> Bytes {
    let recs: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: true,
            ..record(i, None, &format!("t{i}"), producer, first_seq + i as i32)
        })
        .collect();
    encode(&recs)
}

fn read_committed(topic: &str, offset: i64) -> RequestKind {
    let RequestKind::Fetch(f) = fetch(topic, offset, 0, 0) else {
        unreachable!()
    };
    RequestKind::Fetch(f.with_isolation_level(1))
}

/// (error, last stable offset, aborted (producer id, first offset), bytes) of partition 0.
fn fetched(r: ResponseKind) -> (i16, i64, Vec<(i64, i64)>, usize) {
    let ResponseKind::Fetch(r) = r else {
        panic!("{r:?}")
    };
    let p = &r.responses[0].partitions[0];
    (
        p.error_code,
        p.last_stable_offset,
        p.aborted_transactions
            .iter()
            .flatten()
            .map(|a| (a.producer_id.0, a.first_offset))
            .collect(),
        p.records.as_ref().map_or(0, |b| b.len()),
    )
}

#[tokio::test]
async fn a_transaction_on_the_wire_bounds_read_committed_and_lists_its_abort() {
    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    use kafka_protocol::messages::{
        AddPartitionsToTxnRequest, DescribeTransactionsRequest, EndTxnRequest,
        FindCoordinatorRequest, ListTransactionsRequest, ProducerId, TransactionalId,
    };
    let node = Node::start(KafkaConfig::default()).await;
    node.broker.create_topic(TopicSpec::new("tw", 2)).unwrap();
    let mut c = Client::connect(&node).await;
    let tid = TransactionalId(StrBytes::from_static_str("wire-txn"));
    // FindCoordinator for a transactional id: this node.
    let ResponseKind::FindCoordinator(fc) = c
        .call(
            ApiKey::FindCoordinator,
            3,
            RequestKind::FindCoordinator(
                FindCoordinatorRequest::default()
                    .with_key(StrBytes::from_static_str("wire-txn"))
                    .with_key_type(1),
            ),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(fc.error_code, 0);
    let ResponseKind::InitProducerId(init) = c
        .call(
            ApiKey::InitProducerId,
            4,
            RequestKind::InitProducerId(
                InitProducerIdRequest::default()
                    .with_transactional_id(Some(tid.clone()))
                    .with_transaction_timeout_ms(60_000)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            ),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(init.error_code, 0);
    let producer = (init.producer_id.0, init.producer_epoch);
    // KIP-890 part 1: a transactional batch before the partition is added is refused.
    let refused = produced(
        c.call(
            ApiKey::Produce,
            7,
            produce("tw", 0, -1, txn_batch(3, producer, 0)),
        )
        .await,
    );
    assert_eq!(refused.0, 48, "INVALID_TXN_STATE");
    let add = |partitions: Vec<i32>, epoch: i16| {
        RequestKind::AddPartitionsToTxn(
            AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(tid.clone())
                .with_v3_and_below_producer_id(ProducerId(producer.0))
                .with_v3_and_below_producer_epoch(epoch)
                .with_v3_and_below_topics(vec![
                    AddPartitionsToTxnTopic::default()
                        .with_name(TopicName(StrBytes::from_static_str("tw")))
                        .with_partitions(partitions),
                ]),
        )
    };
    let ResponseKind::AddPartitionsToTxn(added) = c
        .call(ApiKey::AddPartitionsToTxn, 3, add(vec![0], producer.1))
        .await
    else {
        panic!()
    };
    assert_eq!(
        added.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code,
        0
    );
    // An unknown partition: refused, and nothing added.
    let ResponseKind::AddPartitionsToTxn(bad) = c
        .call(ApiKey::AddPartitionsToTxn, 3, add(vec![0, 7], producer.1))
        .await
    else {
        panic!()
    };
    let codes: Vec<i16> = bad.results_by_topic_v3_and_below[0]
        .results_by_partition
        .iter()
        .map(|p| p.partition_error_code)
        .collect();
    assert!(codes.contains(&3) && codes.contains(&55), "{codes:?}");
    // A plain record first, then the transaction's batch.
    assert_eq!(
        c.produce_all("tw", batch(1, (-1, -1), -1, None)).await,
        (0, 0)
    );
    assert_eq!(c.produce_all("tw", txn_batch(3, producer, 0)).await, (0, 1));
    // A client's control batch is refused.
    let marker = weir_broker::batch::control_batch(
        producer.0,
        producer.1,
        weir_broker::batch::Marker::Commit,
        0,
        0,
    )
    .unwrap();
    assert_eq!(c.produce_all("tw", marker.bytes().clone()).await.0, 87);
    // read_committed stops at the open transaction's first offset.
    let (err, lso, aborted, bytes) =
        fetched(c.call(ApiKey::Fetch, 11, read_committed("tw", 0)).await);
    assert_eq!((err, lso), (0, 1));
    assert!(aborted.is_empty() && bytes > 0);
    let (_, _, _, bytes) = fetched(c.call(ApiKey::Fetch, 11, read_committed("tw", 1)).await);
    assert_eq!(bytes, 0, "nothing at or past the LSO");
    // ListOffsets latest: the LSO under read_committed, the log end otherwise.
    for (isolation, want) in [(1i8, 1i64), (0, 4)] {
        let req = ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_isolation_level(isolation)
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("tw")))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(-1),
                    ]),
            ]);
        let ResponseKind::ListOffsets(r) = c
            .call(ApiKey::ListOffsets, 5, RequestKind::ListOffsets(req))
            .await
        else {
            panic!()
        };
        assert_eq!(
            r.topics[0].partitions[0].offset, want,
            "isolation {isolation}"
        );
    }
    // Describe and list it while it is open.
    let ResponseKind::DescribeTransactions(d) = c
        .call(
            ApiKey::DescribeTransactions,
            0,
            RequestKind::DescribeTransactions(
                DescribeTransactionsRequest::default().with_transactional_ids(vec![
                    tid.clone(),
                    TransactionalId(StrBytes::from_static_str("nobody")),
                ]),
            ),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(
        d.transaction_states[0].transaction_state.as_str(),
        "Ongoing"
    );
    assert_eq!(d.transaction_states[0].topics[0].partitions, vec![0]);
    assert_eq!(
        d.transaction_states[1].error_code, 105,
        "TRANSACTIONAL_ID_NOT_FOUND"
    );
    let ResponseKind::ListTransactions(l) = c
        .call(
            ApiKey::ListTransactions,
            1,
            RequestKind::ListTransactions(
                ListTransactionsRequest::default()
                    .with_state_filters(vec![StrBytes::from_static_str("Ongoing")]),
            ),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(l.transaction_states.len(), 1);
    assert_eq!(l.transaction_states[0].producer_id.0, producer.0);
    // A stale epoch is fenced; the producer's own epoch aborts.
    let end = |epoch: i16, commit: bool| {
        RequestKind::EndTxn(
            EndTxnRequest::default()
                .with_transactional_id(tid.clone())
                .with_producer_id(ProducerId(producer.0))
                .with_producer_epoch(epoch)
                .with_committed(commit),
        )
    };
    let ResponseKind::EndTxn(e) = c.call(ApiKey::EndTxn, 3, end(producer.1 - 1, true)).await else {
        panic!()
    };
    assert_eq!(e.error_code, 90, "PRODUCER_FENCED");
    let ResponseKind::EndTxn(e) = c.call(ApiKey::EndTxn, 1, end(producer.1 - 1, true)).await else {
        panic!()
    };
    assert_eq!(e.error_code, 47, "INVALID_PRODUCER_EPOCH before EndTxn v2");
    let ResponseKind::EndTxn(e) = c.call(ApiKey::EndTxn, 3, end(producer.1, false)).await else {
        panic!()
    };
    assert_eq!(e.error_code, 0);
    // Now read_committed reads it all, with the abort listed; the marker took offset 4.
    let (err, lso, aborted, _) = fetched(c.call(ApiKey::Fetch, 11, read_committed("tw", 0)).await);
    assert_eq!((err, lso), (0, 5));
    assert_eq!(aborted, vec![(producer.0, 1)]);
    // Past the abort nothing is listed.
    let (_, _, aborted, _) = fetched(c.call(ApiKey::Fetch, 11, read_committed("tw", 5)).await);
    assert!(aborted.is_empty());
    // Weir's own readers see the records, never the marker.
    let read = node.broker.read("tw", 0, 0, 100, 1 << 20).unwrap();
    assert_eq!(read.records.len(), 4);
    assert_eq!(read.next_offset, 5);
    // The batch after the transaction ended is refused (KIP-890 part 1).
    let late = produced(
        c.call(
            ApiKey::Produce,
            7,
            produce("tw", 0, -1, txn_batch(1, producer, 3)),
        )
        .await,
    );
    assert_eq!(late.0, 48);
    node.stop().await;
}

/// ListOffsets earliest (-2) of partition `p` of `topic`: (error code, offset).
async fn earliest(c: &mut Client, topic: &str, p: i32) -> (i16, i64) {
    let req = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.into())))
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(p)
                        .with_timestamp(-2),
                ]),
        ]);
    let ResponseKind::ListOffsets(r) = c
        .call(ApiKey::ListOffsets, 5, RequestKind::ListOffsets(req))
        .await
    else {
        panic!()
    };
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.offset)
}

/// DeleteRecords v2 of (topic, partition, offset) asks: (partition, low watermark, error).
async fn delete_records(c: &mut Client, asks: &[(&str, i32, i64)]) -> Vec<(i32, i64, i16)> {
    use kafka_protocol::messages::DeleteRecordsRequest;
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    let topics = asks
        .iter()
        .map(|(t, p, o)| {
            DeleteRecordsTopic::default()
                .with_name(TopicName(StrBytes::from_string((*t).into())))
                .with_partitions(vec![
                    DeleteRecordsPartition::default()
                        .with_partition_index(*p)
                        .with_offset(*o),
                ])
        })
        .collect();
    let ResponseKind::DeleteRecords(r) = c
        .call(
            ApiKey::DeleteRecords,
            2,
            RequestKind::DeleteRecords(
                DeleteRecordsRequest::default()
                    .with_topics(topics)
                    .with_timeout_ms(5000),
            ),
        )
        .await
    else {
        panic!()
    };
    r.topics
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| (p.partition_index, p.low_watermark, p.error_code))
        .collect()
}

#[tokio::test]
async fn delete_records_moves_the_log_start_durably_and_bad_asks_change_nothing() {
    let node = Node::start(KafkaConfig::default()).await;
    // Small segments, so deleting records also removes whole segments.
    let mut spec = TopicSpec::new("dr", 1);
    spec.segment_bytes = Some(1024);
    node.broker.create_topic(spec).unwrap();
    node.broker
        .create_topic(TopicSpec::new("other", 1))
        .unwrap();
    let mut c = Client::connect(&node).await;
    for i in 0..10 {
        let r = c
            .call(
                ApiKey::Produce,
                7,
                produce("dr", 0, 1, batch(10, (-1, -1), -1, Some("k"))),
            )
            .await;
        assert_eq!(produced(r), (0, i * 10));
    }
    let segments_before = node.broker.describe_topic("dr").unwrap().partition_offsets[0].segments;
    assert!(segments_before > 1, "{segments_before} segments");
    // Inside the last batch: the low watermark is exactly the offset asked.
    assert_eq!(
        delete_records(&mut c, &[("dr", 0, 95)]).await,
        vec![(0, 95, 0)]
    );
    assert_eq!(earliest(&mut c, "dr", 0).await, (0, 95));
    let d = node.broker.describe_topic("dr").unwrap().partition_offsets[0].clone();
    assert_eq!((d.start_offset, d.end_offset), (95, 100));
    assert!(
        d.segments < segments_before,
        "segments below the start are deleted"
    );
    // A fetch below the start is out of range; at the start it returns records from 95 on.
    let (code, _, _, _) = fetched(c.call(ApiKey::Fetch, 11, fetch("dr", 10, 0, 1)).await);
    assert_eq!(code, 1, "OFFSET_OUT_OF_RANGE");
    let read = node.broker.read("dr", 0, 0, 1000, 1 << 20).unwrap();
    assert_eq!(read.records.first().map(|r| r.offset), Some(95));
    assert_eq!(read.records.len(), 5);
    // Lower than the start: nothing changes. Past the end, unknown partitions and topics:
    // their errors, and the good ask in the same request still applies.
    assert_eq!(
        delete_records(
            &mut c,
            &[
                ("dr", 0, 20),
                ("dr", 0, 101),
                ("dr", 7, 1),
                ("nope", 0, 1),
                ("other", 0, -1)
            ]
        )
        .await,
        vec![(0, 95, 0), (0, -1, 1), (7, -1, 3), (0, -1, 3), (0, 0, 0)]
    );
    assert_eq!(earliest(&mut c, "dr", 0).await, (0, 95));
    // Internal topics are refused.
    node.broker
        .ensure_internal_topic(
            TopicSpec::new("owned", 1).owned_by(weir_broker::InternalTopic {
                owner: "processor:p".into(),
            }),
        )
        .unwrap();
    assert_ne!(delete_records(&mut c, &[("owned", 0, 0)]).await[0].2, 0);
    drop(c);
    // The start survives a restart, and -1 (the high watermark) empties the partition.
    let dir = node.shut_down().await;
    let node = Node::start_in(dir, KafkaConfig::default()).await;
    let mut c = Client::connect(&node).await;
    assert_eq!(earliest(&mut c, "dr", 0).await, (0, 95));
    assert_eq!(
        delete_records(&mut c, &[("dr", 0, -1)]).await,
        vec![(0, 100, 0)]
    );
    assert_eq!(earliest(&mut c, "dr", 0).await, (0, 100));
    let r = c
        .call(
            ApiKey::Produce,
            7,
            produce("dr", 0, 1, batch(1, (-1, -1), -1, Some("k"))),
        )
        .await;
    assert_eq!(produced(r), (0, 100));
    node.stop().await;
}

#[tokio::test]
async fn create_partitions_only_grows_and_describe_cluster_names_this_node() {
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
    use kafka_protocol::messages::{CreatePartitionsRequest, DescribeClusterRequest};
    let node = Node::start(KafkaConfig::default()).await;
    node.broker.create_topic(TopicSpec::new("cp", 2)).unwrap();
    let mut c = Client::connect(&node).await;
    let ask = |topic: &str, count: i32| {
        CreatePartitionsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_count(count)
    };
    let call =
        |req: CreatePartitionsRequest| RequestKind::CreatePartitions(req.with_timeout_ms(5000));
    let ResponseKind::CreatePartitions(r) = c
        .call(
            ApiKey::CreatePartitions,
            3,
            call(CreatePartitionsRequest::default().with_topics(vec![
                ask("cp", 1),
                ask("cp", 2),
                ask("nope", 4),
            ])),
        )
        .await
    else {
        panic!()
    };
    let codes: Vec<i16> = r.results.iter().map(|t| t.error_code).collect();
    assert_eq!(
        codes,
        vec![37, 37, 3],
        "INVALID_PARTITIONS twice, then unknown"
    );
    // validate_only changes nothing; a real grow serves the new partitions at once.
    let ResponseKind::CreatePartitions(r) = c
        .call(
            ApiKey::CreatePartitions,
            3,
            call(
                CreatePartitionsRequest::default()
                    .with_topics(vec![ask("cp", 5)])
                    .with_validate_only(true),
            ),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(r.results[0].error_code, 0);
    assert_eq!(node.broker.partition_count("cp").unwrap(), 2);
    let ResponseKind::CreatePartitions(r) = c
        .call(
            ApiKey::CreatePartitions,
            3,
            call(CreatePartitionsRequest::default().with_topics(vec![ask("cp", 5)])),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(r.results[0].error_code, 0);
    assert_eq!(node.broker.partition_count("cp").unwrap(), 5);
    let r = c
        .call(
            ApiKey::Produce,
            7,
            produce("cp", 4, 1, batch(3, (-1, -1), -1, Some("k"))),
        )
        .await;
    assert_eq!(produced(r), (0, 0));
    let ResponseKind::DescribeCluster(d) = c
        .call(
            ApiKey::DescribeCluster,
            1,
            RequestKind::DescribeCluster(DescribeClusterRequest::default().with_endpoint_type(1)),
        )
        .await
    else {
        panic!()
    };
    assert_eq!(d.error_code, 0);
    assert_eq!(d.brokers.len(), 1);
    assert_eq!(d.controller_id, d.brokers[0].broker_id);
    assert_eq!(d.brokers[0].port, i32::from(node.addr.port()));
    drop(c);
    // The new count survives a restart, with the records in the new partition.
    let dir = node.shut_down().await;
    let node = Node::start_in(dir, KafkaConfig::default()).await;
    assert_eq!(node.broker.partition_count("cp").unwrap(), 5);
    assert_eq!(node.broker.partition_offsets("cp", 4).unwrap(), (0, 3));
    node.stop().await;
}

#[tokio::test]
async fn incremental_alter_configs_applies_a_resource_whole_or_not_at_all() {
    use kafka_protocol::messages::IncrementalAlterConfigsRequest;
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    let node = Node::start(KafkaConfig::default()).await;
    node.broker.create_topic(TopicSpec::new("ac", 1)).unwrap();
    let mut c = Client::connect(&node).await;
    let cfg = |name: &str, op: i8, value: Option<&str>| {
        AlterableConfig::default()
            .with_name(StrBytes::from_string(name.into()))
            .with_config_operation(op)
            .with_value(value.map(|v| StrBytes::from_string(v.into())))
    };
    let res = |ty: i8, name: &str, configs: Vec<AlterableConfig>| {
        AlterConfigsResource::default()
            .with_resource_type(ty)
            .with_resource_name(StrBytes::from_string(name.into()))
            .with_configs(configs)
    };
    let mut alter = async |resources: Vec<AlterConfigsResource>, validate_only: bool| {
        let ResponseKind::IncrementalAlterConfigs(r) = c
            .call(
                ApiKey::IncrementalAlterConfigs,
                1,
                RequestKind::IncrementalAlterConfigs(
                    IncrementalAlterConfigsRequest::default()
                        .with_resources(resources)
                        .with_validate_only(validate_only),
                ),
            )
            .await
        else {
            panic!()
        };
        r.responses
            .iter()
            .map(|r| r.error_code)
            .collect::<Vec<i16>>()
    };
    let codes = alter(
        vec![
            // A good change next to a bad one: neither applies.
            res(
                2,
                "ac",
                vec![
                    cfg("retention.ms", 0, Some("5000")),
                    cfg("retention.bytes", 0, Some("-7")),
                ],
            ),
            res(2, "ac", vec![cfg("retention.ms", 9, Some("1"))]),
            res(
                2,
                "ac",
                vec![
                    cfg("retention.ms", 0, Some("1")),
                    cfg("retention.ms", 1, None),
                ],
            ),
            res(4, "0", vec![cfg("log.retention.ms", 0, Some("1"))]),
            res(2, "ac", vec![cfg("retention.ms", 0, None)]),
        ],
        false,
    )
    .await;
    assert_eq!(codes, vec![40, 42, 42, 42, 40]);
    assert_eq!(node.broker.topic_info("ac").unwrap().retention_ms, None);
    // validate_only checks and changes nothing.
    let codes = alter(
        vec![res(2, "ac", vec![cfg("retention.ms", 0, Some("5000"))])],
        true,
    )
    .await;
    assert_eq!(codes, vec![0]);
    assert_eq!(node.broker.topic_info("ac").unwrap().retention_ms, None);
    let codes = alter(
        vec![res(
            2,
            "ac",
            vec![
                cfg("retention.ms", 0, Some("5000")),
                cfg("cleanup.policy", 2, Some("compact")),
            ],
        )],
        false,
    )
    .await;
    assert_eq!(codes, vec![0]);
    let info = node.broker.topic_info("ac").unwrap();
    assert_eq!((info.retention_ms, info.compacted), (Some(5000), true));
    let codes = alter(
        vec![res(
            2,
            "ac",
            vec![cfg("cleanup.policy", 3, Some("compact"))],
        )],
        false,
    )
    .await;
    assert_eq!(codes, vec![0]);
    assert!(!node.broker.topic_info("ac").unwrap().compacted);
    node.stop().await;
}

#[tokio::test]
async fn a_groups_generation_survives_a_restart() {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    use kafka_protocol::messages::{GroupId, JoinGroupRequest, SyncGroupRequest};
    async fn join_and_sync(c: &mut Client) -> i32 {
        let join = JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("gen")))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![
                JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str("range"))
                    .with_metadata(Bytes::from_static(&[0, 0, 0, 0, 0, 0])),
            ]);
        // v3: no MEMBER_ID_REQUIRED round trip.
        let ResponseKind::JoinGroup(j) = c
            .call(ApiKey::JoinGroup, 3, RequestKind::JoinGroup(join))
            .await
        else {
            panic!()
        };
        assert_eq!(j.error_code, 0);
        let sync = SyncGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("gen")))
            .with_generation_id(j.generation_id)
            .with_member_id(j.member_id.clone())
            .with_assignments(vec![
                SyncGroupRequestAssignment::default()
                    .with_member_id(j.member_id.clone())
                    .with_assignment(Bytes::new()),
            ]);
        let ResponseKind::SyncGroup(s) = c
            .call(ApiKey::SyncGroup, 3, RequestKind::SyncGroup(sync))
            .await
        else {
            panic!()
        };
        assert_eq!(s.error_code, 0);
        j.generation_id
    }
    let node = Node::start(KafkaConfig::default()).await;
    let mut c = Client::connect(&node).await;
    assert_eq!(join_and_sync(&mut c).await, 1);
    drop(c);
    let dir = node.shut_down().await;
    // The member is gone with the restart; the next generation follows the stored one.
    let node = Node::start_in(dir, KafkaConfig::default()).await;
    let mut c = Client::connect(&node).await;
    assert_eq!(join_and_sync(&mut c).await, 2);
    node.stop().await;
}
