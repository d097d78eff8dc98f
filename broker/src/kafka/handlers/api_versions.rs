//! ApiVersions: the APIs and version ranges of [`crate::kafka::versions`]. Always answered,
//! even before anything else on a connection; no features or tagged fields (librdkafka 2.0.2
//! parses exactly this).

use kafka_protocol::messages::ApiVersionsResponse;
use kafka_protocol::messages::api_versions_response::ApiVersion;

use crate::kafka::versions;

pub fn response() -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(
        versions::all()
            .into_iter()
            .map(|(k, r)| {
                ApiVersion::default()
                    .with_api_key(k as i16)
                    .with_min_version(r.min)
                    .with_max_version(r.max)
            })
            .collect(),
    )
}
