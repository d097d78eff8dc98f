//! TLS for both listeners with rustls (the `ring` provider): loads a PEM certificate chain
//! and key, optionally a PEM bundle of client CAs (then every client must present a
//! certificate signed by one of them), and accepts connections with a bounded handshake.
//! The subject CN of a verified client certificate is the connection's principal
//! ([`PeerCert::cn`]); deciding what that principal may do is not this module's business.
//!
//! Throughput: rustls reads the socket at most 4 KiB at a time and keeps at most 64 KiB of
//! records queued, so a bare TLS stream costs several syscalls per 16 KiB record. Accepted
//! streams therefore read through a [`READ_BUFFER`]-sized buffer and queue up to
//! [`SEND_BUFFER_LIMIT`] of records per `writev`. Callers must `flush` after a response:
//! a TLS write can return with records still queued in rustls when the socket is full.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio_rustls::TlsAcceptor;

/// Longest a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of ciphertext read from the socket per syscall at most: two whole 16 KiB records.
/// Allocated per connection when it is accepted (256 MiB at the default cap of 8,192
/// connections).
pub const READ_BUFFER: usize = 32 * 1024;
/// Most bytes of plaintext and records rustls queues per connection before the socket takes
/// them (rustls' default is 64 KiB): up to 16 records go out in one `writev`.
pub const SEND_BUFFER_LIMIT: usize = 256 * 1024;

/// A server-side TLS stream as [`TlsServer::accept`] returns it.
pub type TlsStream<S> = tokio_rustls::server::TlsStream<BufReader<S>>;

/// The PEM files of a TLS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates that sign client certificates; `Some` requires a client certificate.
    pub client_ca: Option<PathBuf>,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} from {path}: {reason}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{path} holds no {what}")]
    Empty { what: &'static str, path: PathBuf },
    #[error("invalid TLS setup: {0}")]
    Rustls(String),
}

impl TlsError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            TlsError::Pem { .. } | TlsError::Empty { .. } => "tls_file",
            TlsError::Rustls(_) => "tls_config",
        }
    }
}

/// What the TLS handshake established about the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerCert {
    /// Subject common name of the verified client certificate (`None` without mTLS or when
    /// the certificate has no CN).
    pub cn: Option<String>,
}

/// A TLS acceptor ready to wrap accepted sockets. Cheap to clone.
#[derive(Clone)]
pub struct TlsServer {
    config: Arc<rustls::ServerConfig>,
    acceptor: TlsAcceptor,
    client_auth: bool,
}

impl fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServer")
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

impl PartialEq for TlsServer {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.config, &other.config)
    }
}

fn certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_err = |e: rustls::pki_types::pem::Error| TlsError::Pem {
        what,
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err)?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The crypto provider of every TLS endpoint of Weir: rustls on *ring*. rustls 0.23.48
/// deprecates it in favour of aws-lc-rs (post-quantum key exchange), which needs cmake and
/// a long C build; *ring* is the deliberate choice until that changes.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs [`provider`] as the process default (used by clients that take the default,
/// such as reqwest's). Harmless if one is installed already.
pub fn install_default_provider() {
    let _ = rustls::crypto::CryptoProvider::install_default((*provider()).clone());
}

impl TlsServer {
    /// Loads the files and builds the server config (TLS 1.2 and 1.3). `alpn` lists the
    /// application protocols offered (e.g. `http/1.1`; empty for Kafka).
    pub fn load(files: &TlsFiles, alpn: &[&[u8]]) -> Result<TlsServer, TlsError> {
        let provider = provider();
        let chain = certs(&files.cert, "certificates")?;
        let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::Pem {
            what: "a private key",
            path: files.key.clone(),
            reason: e.to_string(),
        })?;
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        let builder = match &files.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for c in certs(ca, "CA certificates")? {
                    roots
                        .add(c)
                        .map_err(|e| TlsError::Rustls(format!("{}: {e}", ca.display())))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| TlsError::Rustls(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let config = Arc::new(config);
        Ok(TlsServer {
            acceptor: TlsAcceptor::from(config.clone()),
            config,
            client_auth: files.client_ca.is_some(),
        })
    }

    /// Whether clients must present a certificate.
    pub fn requires_client_cert(&self) -> bool {
        self.client_auth
    }

    /// Runs the server side of the handshake on `stream` (at most [`HANDSHAKE_TIMEOUT`]).
    /// The stream reads through a [`READ_BUFFER`] and queues up to [`SEND_BUFFER_LIMIT`].
    pub async fn accept<S>(&self, stream: S) -> io::Result<(TlsStream<S>, PeerCert)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let stream = BufReader::with_capacity(READ_BUFFER, stream);
        let mut tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(stream))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        tls.get_mut().1.set_buffer_limit(Some(SEND_BUFFER_LIMIT));
        let cn = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| common_name(leaf.as_ref()));
        Ok((tls, PeerCert { cn }))
    }
}

/// The first subject CN of a DER certificate, if it has one that is a string.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::net::test_pki::TestPki;
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    pub(crate) fn client_config(pem: &TestPki, with_cert: bool) -> Arc<rustls::ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(pem.ca.as_bytes()).unwrap())
            .unwrap();
        let b = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let c = if with_cert {
            b.with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(pem.client_cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(pem.client_key.as_bytes()).unwrap(),
            )
            .unwrap()
        } else {
            b.with_no_client_auth()
        };
        Arc::new(c)
    }

    /// With a client CA the verified certificate's CN comes out as the principal; without
    /// a client certificate the handshake fails.
    #[tokio::test]
    async fn mtls_yields_the_client_cn_and_refuses_anonymous_clients() {
        let pem = TestPki::generate();
        let dir = tempfile::tempdir().unwrap();
        let written = pem.write(dir.path());
        let files = TlsFiles {
            cert: written.cert,
            key: written.key,
            client_ca: Some(written.ca),
        };
        let server = TlsServer::load(&files, &[]).unwrap();
        assert!(server.requires_client_cert());

        for with_cert in [true, false] {
            let (c, s) = tokio::io::duplex(1 << 16);
            let connector = tokio_rustls::TlsConnector::from(client_config(&pem, with_cert));
            let client = tokio::spawn(async move {
                let name = ServerName::try_from("localhost").unwrap();
                let mut tls = connector.connect(name, c).await?;
                tls.write_all(b"ping").await?;
                let mut buf = [0u8; 4];
                tls.read_exact(&mut buf).await?;
                Ok::<_, io::Error>(buf)
            });
            match server.accept(s).await {
                Ok((mut tls, peer)) => {
                    assert!(with_cert, "accepted a client without a certificate");
                    assert_eq!(peer.cn.as_deref(), Some("alice"));
                    let mut buf = [0u8; 4];
                    tls.read_exact(&mut buf).await.unwrap();
                    tls.write_all(b"pong").await.unwrap();
                    tls.flush().await.unwrap();
                    assert_eq!(&client.await.unwrap().unwrap(), b"pong");
                }
                Err(_) => {
                    assert!(!with_cert, "refused a client with a good certificate");
                    let _ = client.await;
                }
            }
        }
    }

    #[test]
    fn missing_and_empty_files_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let files = TlsFiles {
            cert: empty.clone(),
            key: empty,
            client_ca: None,
        };
        let e = TlsServer::load(&files, &[]).unwrap_err();
        assert_eq!(e.code(), "tls_file");
        let files = TlsFiles {
            cert: dir.path().join("missing.pem"),
            ..files
        };
        assert!(TlsServer::load(&files, &[]).is_err());
    }
}
