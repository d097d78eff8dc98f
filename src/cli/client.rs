//! The CLI's HTTP client for the Weir API: builds URLs under `--url` (path segments escaped),
//! sends requests, and turns failures into one-line errors: an unreachable server becomes
//! `cannot reach Weir at URL: ...`, an API error becomes the server's own message
//! ([`ApiFailure`]). Also splits streamed NDJSON bodies into lines ([`Client::ndjson_lines`]).
//! Credentials (`--user`/`--password` for HTTP Basic, or `--token` for a bearer token;
//! [`AuthArgs`]) go on every request.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use futures_util::{Stream, StreamExt};
use reqwest::{RequestBuilder, Response, StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// An error response from the API (`{"error":{"code","message"}}`, plus `line` and `column`
/// for SQL errors).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiFailure {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// Where in the statement the error is (SQL errors), 1-based.
    pub line: Option<u64>,
    pub column: Option<u64>,
}

impl ApiFailure {
    /// The failure an `{"error":{…}}` object describes (`None` if it is not one).
    pub fn from_json(status: StatusCode, body: &[u8]) -> Option<ApiFailure> {
        let b: ErrorBody = serde_json::from_slice(body).ok()?;
        Some(ApiFailure {
            status,
            code: b.error.code,
            message: b.error.message,
            line: b.error.line,
            column: b.error.column,
        })
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
    #[serde(default)]
    line: Option<u64>,
    #[serde(default)]
    column: Option<u64>,
}

/// Credentials for a server started with `--auth`.
#[derive(Debug, Clone, Default, Args)]
pub struct AuthArgs {
    /// User name for HTTP Basic authentication (with --password); given before the
    /// command (`weir --user NAME topic list`), since `acl add --user` names an ACL's user
    #[arg(long, env = "WEIR_USER", value_name = "NAME")]
    pub user: Option<String>,
    /// Password of --user (prefer the environment variable: arguments are visible to
    /// other local users)
    #[arg(
        long,
        global = true,
        env = "WEIR_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// Bearer token (from `weir token create`); used instead of --user/--password
    #[arg(
        long,
        global = true,
        env = "WEIR_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

/// What goes in the `Authorization` header.
#[derive(Clone)]
enum Credentials {
    None,
    Basic { user: String, password: String },
    Bearer(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Basic { user, .. } => write!(f, "Basic({user})"),
            Credentials::Bearer(_) => f.write_str("Bearer(..)"),
        }
    }
}

/// A client for one Weir server. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    /// `--url` as given, for messages.
    shown: String,
    credentials: Credentials,
}

impl Client {
    /// `url` is the server's base URL, e.g. `http://127.0.0.1:8080`.
    #[cfg(test)]
    pub fn new(url: &str) -> Result<Self> {
        Self::with_ca_cert(url, None)
    }

    /// Like [`Client::new`]; for an `https://` URL, `ca_cert` (PEM, `--ca-cert`) is trusted
    /// besides the system's roots.
    pub fn with_ca_cert(url: &str, ca_cert: Option<&Path>) -> Result<Self> {
        let base = Url::parse(url).with_context(|| format!("invalid --url '{url}'"))?;
        if base.scheme() != "http" && base.scheme() != "https" {
            bail!("invalid --url '{url}': only http:// and https:// URLs are supported");
        }
        if base.cannot_be_a_base() {
            bail!("invalid --url '{url}'");
        }
        // reqwest's rustls takes the process's crypto provider (ring; idempotent).
        weir_broker::net::tls::install_default_provider();
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
        if let Some(path) = ca_cert {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read --ca-cert {}", path.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("--ca-cert {} is not PEM", path.display()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().context("cannot create the HTTP client")?;
        Ok(Client {
            http,
            base,
            shown: url.trim_end_matches('/').to_string(),
            credentials: Credentials::None,
        })
    }

    /// Sends `auth`'s credentials with every request.
    pub fn with_auth(mut self, auth: &AuthArgs) -> Result<Self> {
        self.credentials = match (&auth.user, &auth.password, &auth.token) {
            (_, _, Some(token)) => Credentials::Bearer(token.clone()),
            (Some(user), Some(password), None) => Credentials::Basic {
                user: user.clone(),
                password: password.clone(),
            },
            (Some(_), None, None) => bail!("--user needs --password (or WEIR_PASSWORD)"),
            (None, Some(_), None) => bail!("--password needs --user (or WEIR_USER)"),
            (None, None, None) => Credentials::None,
        };
        Ok(self)
    }

    fn authorized(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.credentials {
            Credentials::None => request,
            Credentials::Basic { user, password } => request.basic_auth(user, Some(password)),
            Credentials::Bearer(token) => request.bearer_auth(token),
        }
    }

    /// The URL of `segments` (each escaped) under the base URL.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        // `new` checked that the base URL can have path segments.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    pub fn get(&self, segments: &[&str]) -> RequestBuilder {
        self.authorized(self.http.get(self.url(segments)))
    }

    /// A GET of `segments` with query parameters.
    pub fn get_query(&self, segments: &[&str], query: &[(&str, String)]) -> RequestBuilder {
        let mut url = self.url(segments);
        url.query_pairs_mut().extend_pairs(query);
        self.authorized(self.http.get(url))
    }

    pub fn post(&self, segments: &[&str]) -> RequestBuilder {
        self.authorized(self.http.post(self.url(segments)))
    }

    pub fn delete(&self, segments: &[&str]) -> RequestBuilder {
        self.authorized(self.http.delete(self.url(segments)))
    }

    pub fn put(&self, segments: &[&str]) -> RequestBuilder {
        self.authorized(self.http.put(self.url(segments)))
    }

    /// A DELETE of `segments` with query parameters.
    pub fn delete_query(&self, segments: &[&str], query: &[(&str, String)]) -> RequestBuilder {
        let mut url = self.url(segments);
        url.query_pairs_mut().extend_pairs(query);
        self.authorized(self.http.delete(url))
    }

    /// Sends a request; a non-2xx answer becomes an [`ApiFailure`].
    pub async fn send(&self, request: RequestBuilder) -> Result<Response> {
        let response = request.send().await.map_err(|e| self.transport_error(e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(api_failure(response).await.into())
    }

    /// Sends a request and decodes a JSON answer.
    pub async fn json<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T> {
        let response = self.send(request).await?;
        let url = response.url().clone();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(e))?;
        serde_json::from_slice(&bytes).with_context(|| format!("unexpected response from {url}"))
    }

    /// The lines of a streamed body (NDJSON) without their line ends, blank lines skipped; a
    /// transport failure ends the stream with an error.
    pub fn ndjson_lines(&self, response: Response) -> impl Stream<Item = Result<Vec<u8>>> + Send {
        let client = self.clone();
        let state = (response.bytes_stream(), Vec::<u8>::new(), false);
        futures_util::stream::unfold(state, move |(mut body, mut buf, mut ended)| {
            let client = client.clone();
            async move {
                loop {
                    if let Some(newline) = buf.iter().position(|&b| b == b'\n') {
                        let mut line: Vec<u8> = buf.drain(..=newline).collect();
                        line.pop();
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                        if line.iter().all(u8::is_ascii_whitespace) {
                            continue;
                        }
                        return Some((Ok(line), (body, buf, ended)));
                    }
                    if ended {
                        // A last line without its newline.
                        if buf.iter().all(u8::is_ascii_whitespace) {
                            return None;
                        }
                        let line = std::mem::take(&mut buf);
                        return Some((Ok(line), (body, buf, ended)));
                    }
                    match body.next().await {
                        Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                        Some(Err(e)) => {
                            buf.clear();
                            return Some((Err(client.transport_error(e)), (body, buf, true)));
                        }
                        None => ended = true,
                    }
                }
            }
        })
    }

    /// Describes a transport failure in one line.
    pub fn transport_error(&self, e: reqwest::Error) -> anyhow::Error {
        let cause = root_cause(&e);
        if e.is_connect() || e.is_timeout() {
            anyhow!("cannot reach Weir at {}: {cause}", self.shown)
        } else {
            anyhow!("request to Weir at {} failed: {cause}", self.shown)
        }
    }
}

async fn api_failure(response: Response) -> ApiFailure {
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    match ApiFailure::from_json(status, &body) {
        Some(failure) => failure,
        None => {
            let text = String::from_utf8_lossy(&body);
            let text = text.trim();
            let message = if text.is_empty() {
                format!("server answered {status}")
            } else {
                format!("server answered {status}: {text}")
            };
            ApiFailure {
                status,
                code: "http_error".to_string(),
                message,
                line: None,
                column: None,
            }
        }
    }
}

/// The innermost error message (reqwest wraps hyper wraps io).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut current = e;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_escape_segments_and_keep_a_base_path() {
        let c = Client::new("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            c.url(&["v1", "topics", "a b/c"]).as_str(),
            "http://127.0.0.1:8080/v1/topics/a%20b%2Fc"
        );
        let c = Client::new("http://h:1/weir/").unwrap();
        assert_eq!(
            c.url(&["v1", "topics"]).as_str(),
            "http://h:1/weir/v1/topics"
        );
        let r = c
            .get_query(&["x"], &[("offset", "3".into()), ("a", "&".into())])
            .build()
            .unwrap();
        assert_eq!(r.url().as_str(), "http://h:1/weir/x?offset=3&a=%26");
    }

    #[test]
    fn credentials_go_on_every_request() {
        let basic = AuthArgs {
            user: Some("alice".into()),
            password: Some("pw".into()),
            token: None,
        };
        let c = Client::new("http://h:1")
            .unwrap()
            .with_auth(&basic)
            .unwrap();
        let r = c.get(&["v1", "topics"]).build().unwrap();
        assert_eq!(r.headers()["authorization"], "Basic YWxpY2U6cHc=");
        let r = c.delete_query(&["x"], &[]).build().unwrap();
        assert!(r.headers().contains_key("authorization"));
        let bearer = AuthArgs {
            token: Some("weir_t".into()),
            ..AuthArgs::default()
        };
        let c = Client::new("http://h:1")
            .unwrap()
            .with_auth(&bearer)
            .unwrap();
        let r = c.post(&["v1"]).build().unwrap();
        assert_eq!(r.headers()["authorization"], "Bearer weir_t");
        let half = AuthArgs {
            user: Some("alice".into()),
            ..AuthArgs::default()
        };
        assert!(Client::new("http://h:1").unwrap().with_auth(&half).is_err());
    }

    #[test]
    fn bad_urls_are_rejected() {
        assert!(Client::new("not a url").is_err());
        assert!(Client::new("ftp://h:1").is_err());
        assert!(Client::new("mailto:x@y").is_err());
    }
}
