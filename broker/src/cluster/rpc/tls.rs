//! TLS between nodes: mutual, with one CA for the whole cluster.
//!
//! When a node has `--tls-cert`/`--tls-key`, its cluster listener speaks TLS (ALPN `h2`) and
//! *requires* a client certificate signed by the cluster CA (`--cluster-ca`, default
//! `--tls-client-ca`): anyone else who reaches the port could otherwise inject metadata or
//! replication traffic. As a client a node presents the same certificate, and verifies the
//! peer's against the cluster CA and the host part of the peer's address (a DNS name or an
//! IP SAN). So each node's certificate must name its advertised host and allow both
//! `serverAuth` and `clientAuth`.
//!
//! This module builds the rustls configurations; it opens no socket.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::net::tls::{TlsError, TlsFiles, TlsServer, provider};

/// The ALPN protocol of the cluster listener.
pub const ALPN_H2: &[u8] = b"h2";

/// The PEM files of a node's cluster TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA that signs every node's certificate.
    pub ca: PathBuf,
}

/// Both sides of a node's cluster TLS.
#[derive(Clone)]
pub struct ClusterTls {
    pub server: TlsServer,
    pub client: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTls").finish_non_exhaustive()
    }
}

impl ClusterTls {
    /// Loads the files: the server requires client certificates signed by `ca`, the client
    /// presents `cert` and trusts only `ca`.
    pub fn load(files: &ClusterTlsFiles) -> Result<ClusterTls, TlsError> {
        let server = TlsServer::load(
            &TlsFiles {
                cert: files.cert.clone(),
                key: files.key.clone(),
                client_ca: Some(files.ca.clone()),
            },
            &[ALPN_H2],
        )?;
        let mut roots = RootCertStore::empty();
        for c in
            CertificateDer::pem_file_iter(&files.ca).map_err(pem("CA certificates", &files.ca))?
        {
            let c = c.map_err(pem("CA certificates", &files.ca))?;
            roots
                .add(c)
                .map_err(|e| TlsError::Rustls(format!("{}: {e}", files.ca.display())))?;
        }
        let chain = CertificateDer::pem_file_iter(&files.cert)
            .map_err(pem("certificates", &files.cert))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(pem("certificates", &files.cert))?;
        let key =
            PrivateKeyDer::from_pem_file(&files.key).map_err(pem("a private key", &files.key))?;
        let mut client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rustls(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        client.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(ClusterTls {
            server,
            client: Arc::new(client),
        })
    }
}

fn pem(what: &'static str, path: &Path) -> impl Fn(rustls::pki_types::pem::Error) -> TlsError {
    let path = path.to_path_buf();
    move |e| TlsError::Pem {
        what,
        path: path.clone(),
        reason: e.to_string(),
    }
}

/// The name a peer's certificate must carry: the host part of its `host:port` address.
pub fn server_name(addr: &str) -> Result<ServerName<'static>, String> {
    let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|e| format!("{addr}: {e}"))
}
