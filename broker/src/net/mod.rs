//! Network plumbing shared by both listeners (Kafka here, HTTP in the `weir` binary): the
//! per-listener and per-client-address connection caps ([`limits`]) and TLS with rustls
//! ([`tls`]: certificate loading, the acceptor, the client certificate's CN as principal).
//! It knows nothing of the protocols spoken over the connections; it does not authenticate
//! or authorize (that sits above, reading [`tls::PeerCert`]).

pub mod limits;
#[cfg(test)]
pub(crate) mod test_pki;
pub mod tls;

pub use limits::{ConnGuard, ConnLimiter, ConnLimits};
pub use tls::{PeerCert, TlsError, TlsFiles, TlsServer};
