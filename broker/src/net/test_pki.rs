//! Test-only: a throwaway PKI made with rcgen (a CA, a server certificate for
//! `127.0.0.1`/`localhost` with CN `weir-server`, a client certificate with CN `alice`),
//! and [`NodePki`]: a CA and cluster node certificates usable as server and client.
//! The one definition for every TLS test of the workspace: compiled into weir-broker's
//! unit tests as `net::test_pki`, and included by path (`#[path]`) into weir's unit tests
//! (src/main.rs) and the e2e tests (tests/e2e/tls.rs), where rcgen is a dev-dependency too.
//! Never part of a normal build; owns nothing but certificate generation.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The PKI as PEM text.
pub struct TestPki {
    pub ca: String,
    pub cert: String,
    pub key: String,
    pub client_cert: String,
    pub client_key: String,
}

/// The PKI written out as PEM files (see [`TestPki::write`]).
pub struct TestPkiFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TestPki {
    /// Generates fresh keys and certificates.
    pub fn generate() -> TestPki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "Weir test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let leaf = |sans: Vec<String>, cn: &str, eku: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(sans).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.extended_key_usages = vec![eku];
            (
                p.signed_by(&key, &issuer).unwrap().pem(),
                key.serialize_pem(),
            )
        };
        let (cert, key) = leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            "weir-server",
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) = leaf(vec![], "alice", ExtendedKeyUsagePurpose::ClientAuth);
        TestPki {
            ca: ca_cert.pem(),
            cert,
            key,
            client_cert,
            client_key,
        }
    }

    /// Writes the PEM files into `dir` as `ca.pem`, `server.pem`, `server-key.pem`,
    /// `client.pem` and `client-key.pem`.
    pub fn write(&self, dir: &Path) -> TestPkiFiles {
        let write = |name: &str, pem: &str| {
            let p = dir.join(name);
            std::fs::write(&p, pem).unwrap();
            p
        };
        TestPkiFiles {
            ca: write("ca.pem", &self.ca),
            cert: write("server.pem", &self.cert),
            key: write("server-key.pem", &self.key),
            client_cert: write("client.pem", &self.client_cert),
            client_key: write("client-key.pem", &self.client_key),
        }
    }
}

/// A cluster CA and one certificate per node for `127.0.0.1`, each usable as server and
/// client (the cluster listener's mutual TLS), written as PEM files into a temp dir.
pub struct NodePki {
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    /// `(certificate, key)` of node `i + 1`, CN `node-{i + 1}`.
    pub nodes: Vec<(PathBuf, PathBuf)>,
}

impl NodePki {
    /// Generates a fresh CA and `nodes` node certificates.
    pub fn generate(nodes: usize) -> NodePki {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, pem: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, pem).unwrap();
            p
        };
        let ca_params = || {
            let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
            ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            ca.distinguished_name.push(DnType::CommonName, "cluster CA");
            ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
            ca
        };
        let ca_key = KeyPair::generate().unwrap();
        let ca = write("ca.pem", &ca_params().self_signed(&ca_key).unwrap().pem());
        let issuer = Issuer::new(ca_params(), ca_key);
        let nodes = (1..=nodes)
            .map(|i| {
                let key = KeyPair::generate().unwrap();
                let mut p = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
                p.distinguished_name
                    .push(DnType::CommonName, format!("node-{i}"));
                p.extended_key_usages = vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ];
                let cert = p.signed_by(&key, &issuer).unwrap();
                (
                    write(&format!("node-{i}.pem"), &cert.pem()),
                    write(&format!("node-{i}.key"), &key.serialize_pem()),
                )
            })
            .collect();
        NodePki {
            _dir: dir,
            ca,
            nodes,
        }
    }
}
