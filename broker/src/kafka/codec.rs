//! Request and response codecs: one frame's bytes to a typed request (header + body, using the
//! `kafka-protocol` crate's message structs with the request-header version each API version
//! requires) and a typed response back to a frame. It owns version checks against
//! [`super::versions`] and the classification of bad input; it knows nothing of sockets
//! (that is [`super::server`]) or of the log (that is the handlers).

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{
    ApiKey, FetchResponse, RequestHeader, RequestKind, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::frame::{self, FrameError, OutFrame};
use super::versions;

/// A decoded request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub api_key: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub body: RequestKind,
}

impl Request {
    pub fn correlation_id(&self) -> i32 {
        self.header.correlation_id
    }

    pub fn client_id(&self) -> &str {
        self.header.client_id.as_ref().map_or("", |s| s.as_str())
    }
}

/// Why a frame is not a request Weir can handle. All but [`DecodeError::Truncated`] carry the
/// correlation id, so the server can answer (ApiVersions) or log precisely before closing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {0} bytes is too short for a request header")]
    Truncated(usize),
    #[error("unknown API key {api_key} (correlation id {correlation_id})")]
    UnknownApi { api_key: i16, correlation_id: i32 },
    #[error("{api:?} v{version} is not supported (correlation id {correlation_id})")]
    UnsupportedVersion {
        api: ApiKey,
        version: i16,
        correlation_id: i32,
    },
    #[error("malformed {api:?} v{version} request (correlation id {correlation_id}): {reason}")]
    Malformed {
        api: ApiKey,
        version: i16,
        correlation_id: i32,
        reason: String,
    },
}

/// Why a response could not be encoded (a bug on our side, never the client's input).
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("cannot encode {api:?} v{version} response: {reason}")]
    Message {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// Decodes one request frame (without its length prefix).
pub fn decode_request(frame: Bytes) -> Result<Request, DecodeError> {
    if frame.len() < 8 {
        return Err(DecodeError::Truncated(frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api = ApiKey::try_from(raw_key).map_err(|_| DecodeError::UnknownApi {
        api_key: raw_key,
        correlation_id,
    })?;
    let range = versions::supported(api).ok_or(DecodeError::UnknownApi {
        api_key: raw_key,
        correlation_id,
    })?;
    if version < range.min || version > range.max {
        return Err(DecodeError::UnsupportedVersion {
            api,
            version,
            correlation_id,
        });
    }
    let malformed = |reason: String| DecodeError::Malformed {
        api,
        version,
        correlation_id,
        reason,
    };
    let mut buf = frame;
    let header = RequestHeader::decode(&mut buf, api.request_header_version(version))
        .map_err(|e| malformed(format!("header: {e:#}")))?;
    let body =
        RequestKind::decode(api, &mut buf, version).map_err(|e| malformed(format!("{e:#}")))?;
    if buf.has_remaining() {
        tracing::debug!(
            api = ?api,
            version,
            trailing = buf.remaining(),
            "request has trailing bytes"
        );
    }
    Ok(Request {
        api_key: api,
        version,
        header,
        body,
    })
}

/// Encodes a response (header + body) for `api`/`version` as a whole frame, length included.
/// The record batches of a Fetch response are not copied: the frame references the buffers
/// they were read into (see [`frame::FrameWriter`]).
pub fn encode_response(
    correlation_id: i32,
    api: ApiKey,
    version: i16,
    response: &ResponseKind,
) -> Result<OutFrame, EncodeError> {
    fn err(api: ApiKey, version: i16, e: impl std::fmt::Display) -> EncodeError {
        EncodeError::Message {
            api,
            version,
            reason: format!("{e:#}"),
        }
    }
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = response.header_version(version);
    if let ResponseKind::Fetch(fetch) = response {
        let splice = fetched_batches(fetch);
        let mut buf = frame::FrameWriter::new(256, &splice);
        header
            .encode(&mut buf, header_version)
            .map_err(|e| err(api, version, e))?;
        fetch
            .encode(&mut buf, version)
            .map_err(|e| err(api, version, e))?;
        return Ok(buf.finish()?);
    }
    let mut buf = frame::start_frame(256);
    header
        .encode(&mut buf, header_version)
        .map_err(|e| err(api, version, e))?;
    response
        .encode(&mut buf, version)
        .map_err(|e| err(api, version, e))?;
    frame::finish_frame(&mut buf)?;
    Ok(OutFrame::from_chunks(vec![buf.freeze()]))
}

/// The record batches of a Fetch response big enough to be worth sending without a copy.
fn fetched_batches(fetch: &FetchResponse) -> Vec<Bytes> {
    fetch
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .filter_map(|p| p.records.as_ref())
        .filter(|r| r.len() >= frame::SPLICE_MIN)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::{
        ApiVersionsRequest, FetchRequest, MetadataRequest, ProduceRequest, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    use proptest::prelude::*;

    fn encode_request(api: ApiKey, version: i16, corr: i32, body: &RequestKind) -> Bytes {
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(corr)
            .with_client_id(Some(StrBytes::from_static_str("test")));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, api.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn round_trips_supported_requests() {
        let body = RequestKind::Metadata(MetadataRequest::default().with_topics(None));
        for v in 0..=9 {
            let r = decode_request(encode_request(ApiKey::Metadata, v, 7, &body)).unwrap();
            assert_eq!(r.api_key, ApiKey::Metadata);
            assert_eq!(r.version, v);
            assert_eq!(r.correlation_id(), 7);
            assert_eq!(r.client_id(), "test");
        }
        let av = RequestKind::ApiVersions(ApiVersionsRequest::default());
        let r = decode_request(encode_request(ApiKey::ApiVersions, 3, 1, &av)).unwrap();
        assert_eq!(r.body, av);
    }

    #[test]
    fn classifies_bad_requests() {
        assert_eq!(
            decode_request(Bytes::from_static(&[0, 1])),
            Err(DecodeError::Truncated(2))
        );
        let unknown = Bytes::from_static(&[0x7f, 0, 0, 0, 0, 0, 0, 9]);
        assert_eq!(
            decode_request(unknown),
            Err(DecodeError::UnknownApi {
                api_key: 0x7f00,
                correlation_id: 9
            })
        );
        // DescribeAcls exists in Kafka but Weir does not serve it.
        let acls = Bytes::from_static(&[0, 29, 0, 1, 0, 0, 0, 3]);
        assert!(matches!(
            decode_request(acls),
            Err(DecodeError::UnknownApi { .. })
        ));
        let body = RequestKind::Fetch(FetchRequest::default());
        let f13 = encode_request(ApiKey::Fetch, 13, 5, &body);
        assert_eq!(
            decode_request(f13),
            Err(DecodeError::UnsupportedVersion {
                api: ApiKey::Fetch,
                version: 13,
                correlation_id: 5
            })
        );
        let p = RequestKind::Produce(ProduceRequest::default());
        let mut whole = encode_request(ApiKey::Produce, 7, 11, &p).to_vec();
        whole.truncate(whole.len() - 3);
        assert!(matches!(
            decode_request(Bytes::from(whole)),
            Err(DecodeError::Malformed {
                correlation_id: 11,
                ..
            })
        ));
    }

    #[test]
    fn response_frames_carry_length_and_correlation_id() {
        let resp = ResponseKind::ApiVersions(Default::default());
        let f = encode_response(42, ApiKey::ApiVersions, 3, &resp).unwrap();
        assert_eq!(f.chunks().len(), 1);
        let f = f.to_bytes();
        let len = i32::from_be_bytes([f[0], f[1], f[2], f[3]]) as usize;
        assert_eq!(len, f.len() - 4);
        assert_eq!(i32::from_be_bytes([f[4], f[5], f[6], f[7]]), 42);
    }

    /// A Fetch response's big record batches are sent from the buffers they were read into,
    /// and the frame is byte for byte what copying them would have produced.
    #[test]
    fn fetch_responses_reference_big_batches_without_copying() {
        use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
        let big = Bytes::from(vec![7u8; frame::SPLICE_MIN + 5]);
        let small = Bytes::from_static(b"tiny batch");
        let partitions = vec![
            PartitionData::default()
                .with_partition_index(0)
                .with_records(Some(big.clone())),
            PartitionData::default()
                .with_partition_index(1)
                .with_records(Some(small.clone())),
            PartitionData::default()
                .with_partition_index(2)
                .with_records(Some(big.clone())),
        ];
        let resp = ResponseKind::Fetch(FetchResponse::default().with_responses(vec![
            FetchableTopicResponse::default()
                .with_topic(kafka_protocol::messages::TopicName(StrBytes::from_static_str("t")))
                .with_partitions(partitions),
        ]));
        for version in [4i16, 11, 12] {
            let f = encode_response(9, ApiKey::Fetch, version, &resp).unwrap();
            let spliced = f
                .chunks()
                .iter()
                .filter(|c| std::ptr::eq(c.as_ptr(), big.as_ptr()))
                .count();
            assert_eq!(spliced, 2, "v{version}: both big batches referenced");
            // The same response copied into one buffer.
            let mut want = frame::start_frame(0);
            ResponseHeader::default()
                .with_correlation_id(9)
                .encode(&mut want, resp.header_version(version))
                .unwrap();
            resp.encode(&mut want, version).unwrap();
            frame::finish_frame(&mut want).unwrap();
            assert_eq!(f.to_bytes(), want.freeze(), "v{version}");
        }
    }

    fn arb_topic() -> impl Strategy<Value = String> {
        "[a-z0-9._-]{1,20}"
    }

    proptest! {
        /// A request the codec can encode decodes back to the same request.
        #[test]
        fn produce_requests_round_trip(
            version in 3i16..=9,
            corr in any::<i32>(),
            acks in prop_oneof![Just(-1i16), Just(0), Just(1)],
            topics in proptest::collection::vec((arb_topic(), proptest::collection::vec((0i32..100, proptest::collection::vec(any::<u8>(), 0..100)), 0..4)), 0..4),
        ) {
            use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
            let req = ProduceRequest::default().with_acks(acks).with_timeout_ms(1000).with_topic_data(
                topics.into_iter().map(|(t, parts)| TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(t)))
                    .with_partition_data(parts.into_iter().map(|(i, r)| PartitionProduceData::default()
                        .with_index(i).with_records(Some(Bytes::from(r)))).collect())).collect());
            let body = RequestKind::Produce(req);
            let decoded = decode_request(encode_request(ApiKey::Produce, version, corr, &body)).unwrap();
            prop_assert_eq!(decoded.correlation_id(), corr);
            prop_assert_eq!(decoded.body, body);
        }

        /// Arbitrary bytes after a valid-looking api key/version never panic the decoder.
        #[test]
        fn garbage_bodies_never_panic(
            key in 0i16..70,
            version in 0i16..14,
            tail in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut f = Vec::new();
            f.extend_from_slice(&key.to_be_bytes());
            f.extend_from_slice(&version.to_be_bytes());
            f.extend_from_slice(&tail);
            let _ = decode_request(Bytes::from(f));
        }

        /// Flipping any byte of a valid request never panics the decoder.
        #[test]
        fn mutated_requests_never_panic(idx in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let body = RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
                kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("orders")))),
            ])));
            let mut f = encode_request(ApiKey::Metadata, 9, 1, &body).to_vec();
            let i = idx.index(f.len());
            f[i] = byte;
            let _ = decode_request(Bytes::from(f));
        }
    }
}
