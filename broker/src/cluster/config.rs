//! A node's cluster settings (`weir serve --node-id --cluster-listen --cluster-advertised
//! --peers --join --cluster-id --cluster-ca --broker-session-timeout-ms`) and the rules between them. The CLI maps its
//! flags onto [`ClusterConfig`]; nothing here opens a socket or touches the disk.
//!
//! # Rules ([`ClusterConfig::validate`])
//!
//! - No `--peers` and no `--join`: a single node, exactly as before clustering
//!   ([`Mode::Single`]); the other cluster flags must then be absent.
//! - `--peers` (the *initial voter set* of the metadata quorum) and `--join` exclude each
//!   other, and either needs `--node-id`.
//! - Node ids are Kafka broker ids: `0..=i32::MAX`, unique in `--peers`; addresses unique too.
//! - This node's id must be in `--peers`, with the address peers reach it at: its advertised
//!   address (`--cluster-advertised`, default the `--cluster-listen` address).
//! - The cluster id, when not given, is derived from the initial voter set (ids and
//!   addresses, order-free; see [`derive_cluster_id`]), so every node started with the same
//!   `--peers` agrees on it without talking, in any start order.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::NodeId;

/// Default address of the cluster listener.
pub const DEFAULT_CLUSTER_LISTEN: &str = "127.0.0.1:9093";
/// Most entries `--peers` may list.
pub const MAX_PEERS: usize = 64;
/// Largest node id: node ids are Kafka broker ids (`int32`).
pub const MAX_NODE_ID: NodeId = i32::MAX as NodeId;
/// Longest cluster id accepted from `--cluster-id` or a peer.
pub const MAX_CLUSTER_ID_LEN: usize = 64;

/// Why the cluster settings are not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cluster setting: {0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    pub fn code(&self) -> &'static str {
        "invalid_cluster_config"
    }
}

fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

/// One member of the initial voter set: `id@host:port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub id: NodeId,
    /// The peer's cluster address (`host:port`), as this node dials it.
    pub addr: String,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.id, self.addr)
    }
}

impl std::str::FromStr for Peer {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Peer, ConfigError> {
        let (id, addr) = s
            .trim()
            .split_once('@')
            .ok_or_else(|| invalid(format!("peer '{s}' is not id@host:port")))?;
        let id = parse_node_id(id)?;
        check_addr(addr)?;
        Ok(Peer {
            id,
            addr: addr.to_string(),
        })
    }
}

/// Parses a `--peers` list: `1@host:port,2@host:port,…`.
pub fn parse_peers(s: &str) -> Result<Vec<Peer>, ConfigError> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(str::parse)
        .collect()
}

/// A node id as given on the command line or in `--peers`.
pub fn parse_node_id(s: &str) -> Result<NodeId, ConfigError> {
    let id: NodeId = s
        .trim()
        .parse()
        .map_err(|_| invalid(format!("node id '{s}' is not a non-negative integer")))?;
    check_node_id(id)?;
    Ok(id)
}

fn check_node_id(id: NodeId) -> Result<(), ConfigError> {
    if id > MAX_NODE_ID {
        return Err(invalid(format!(
            "node id {id} is above {MAX_NODE_ID} (node ids are Kafka broker ids, int32)"
        )));
    }
    Ok(())
}

/// `host:port` with a non-empty host and a port in `1..=65535` (IPv6 hosts in brackets).
pub fn check_addr(addr: &str) -> Result<(), ConfigError> {
    let bad = || invalid(format!("address '{addr}' is not host:port"));
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || host.contains(char::is_whitespace) || host.contains('@') {
        return Err(bad());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(bad()),
    }
}

/// A cluster id chosen with `--cluster-id`: 1 to 64 of `[A-Za-z0-9_-]`.
pub fn check_cluster_id(id: &str) -> Result<(), ConfigError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_CLUSTER_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "cluster id '{id}' must be 1 to {MAX_CLUSTER_ID_LEN} characters of A-Z a-z 0-9 - _"
        )))
    }
}

/// The cluster id every node started with the same initial voter set computes: the first
/// 16 bytes of SHA-256 over the sorted `id@addr` entries, base64url without padding (22
/// characters, the shape of a Kafka cluster id). Two clusters formed from the same ids *and*
/// addresses get the same id; give them `--cluster-id` to tell them apart.
pub fn derive_cluster_id(peers: &[Peer]) -> String {
    use base64::Engine;
    let mut entries: Vec<String> = peers.iter().map(Peer::to_string).collect();
    entries.sort();
    let mut h = Sha256::new();
    h.update(b"weir-cluster-id/1\n");
    for e in &entries {
        h.update(e.as_bytes());
        h.update(b"\n");
    }
    let digest = h.finalize();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16])
}

/// How this node takes part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode<'a> {
    /// No cluster flags: one node, as before clustering.
    Single,
    /// One of the initial voters listed in `--peers`.
    Bootstrap { node_id: NodeId, peers: &'a [Peer] },
    /// A new node joining a running cluster through `addr`.
    Join { node_id: NodeId, addr: &'a str },
}

/// Timeouts and bounds of the node-to-node RPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RpcSettings {
    /// TCP connect + TLS + HTTP/2 handshake to a peer.
    pub connect_timeout_ms: u64,
    /// One request to its whole response, unless the caller gives its own.
    pub request_timeout_ms: u64,
    /// Largest encoded request or response, either way.
    pub max_message_bytes: usize,
    /// How often each peer is greeted (liveness for `GET /v1/cluster`).
    pub hello_interval_ms: u64,
}

impl Default for RpcSettings {
    fn default() -> Self {
        RpcSettings {
            connect_timeout_ms: 3_000,
            request_timeout_ms: 10_000,
            max_message_bytes: 64 << 20,
            hello_interval_ms: 1_000,
        }
    }
}

impl RpcSettings {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
    pub fn hello_interval(&self) -> Duration {
        Duration::from_millis(self.hello_interval_ms)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.connect_timeout_ms == 0 || self.request_timeout_ms == 0 {
            return Err(invalid("cluster RPC timeouts must be positive"));
        }
        if self.hello_interval_ms == 0 {
            return Err(invalid("the cluster hello interval must be positive"));
        }
        if self.max_message_bytes < 1024 {
            return Err(invalid(
                "the cluster max message size must be at least 1024",
            ));
        }
        Ok(())
    }
}

/// A node's cluster settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterConfig {
    /// `--node-id`: this node's id (Raft node id and Kafka broker id).
    pub node_id: Option<NodeId>,
    /// `--cluster-listen`: where the cluster listener binds.
    pub listen: String,
    /// `--cluster-advertised`: the address peers dial (default: `listen`).
    pub advertised: Option<String>,
    /// `--peers`: the initial voter set.
    pub peers: Vec<Peer>,
    /// `--join`: the cluster address of a running member.
    pub join: Option<String>,
    /// `--cluster-id`: overrides the id derived from `peers`.
    pub cluster_id: Option<String>,
    pub rpc: RpcSettings,
    /// `--broker-session-timeout-ms`: a node not heard from for this long is fenced.
    pub broker_session_timeout_ms: u64,
    /// `--replication-throttle-bytes`: bytes per second the replicas a reassignment adds on
    /// this node may fetch in all (`None`: unthrottled).
    pub replication_throttle_bytes: Option<u64>,
    /// Whether the controller moves replicas onto joined nodes by itself
    /// (`--no-auto-rebalance` turns it off; decommission moves replicas either way).
    pub auto_rebalance: bool,
    /// `--leader-balance-delay-ms`: how long the cluster must have been settled before the
    /// controller moves leaderships back to preferred replicas.
    pub leader_balance_delay_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_id: None,
            listen: DEFAULT_CLUSTER_LISTEN.to_string(),
            advertised: None,
            peers: Vec::new(),
            join: None,
            cluster_id: None,
            rpc: RpcSettings::default(),
            broker_session_timeout_ms: super::control::DEFAULT_SESSION_TIMEOUT_MS,
            replication_throttle_bytes: None,
            auto_rebalance: true,
            leader_balance_delay_ms: super::control::DEFAULT_LEADER_BALANCE_DELAY.as_millis()
                as u64,
        }
    }
}

impl ClusterConfig {
    /// The address peers reach this node at.
    pub fn advertised_addr(&self) -> &str {
        self.advertised.as_deref().unwrap_or(&self.listen)
    }

    /// How this node takes part (call [`validate`](Self::validate) first).
    pub fn mode(&self) -> Mode<'_> {
        match (self.node_id, &self.join) {
            (Some(node_id), Some(addr)) => Mode::Join { node_id, addr },
            (Some(node_id), None) if !self.peers.is_empty() => Mode::Bootstrap {
                node_id,
                peers: &self.peers,
            },
            _ => Mode::Single,
        }
    }

    /// Whether this node is part of a cluster.
    pub fn is_clustered(&self) -> bool {
        !matches!(self.mode(), Mode::Single)
    }

    /// The cluster id known from the flags alone: `--cluster-id`, else derived from
    /// `--peers`; `None` for a joining node (it learns the id from the member it joins).
    pub fn configured_cluster_id(&self) -> Option<String> {
        if let Some(id) = &self.cluster_id {
            return Some(id.clone());
        }
        match self.mode() {
            Mode::Bootstrap { peers, .. } => Some(derive_cluster_id(peers)),
            _ => None,
        }
    }

    /// The other members of the initial voter set.
    pub fn other_peers(&self) -> impl Iterator<Item = &Peer> {
        let me = self.node_id;
        self.peers.iter().filter(move |p| Some(p.id) != me)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.rpc.validate()?;
        super::control::ControlSettings::with_session_timeout_ms(self.broker_session_timeout_ms)
            .map_err(|e| invalid(format!("--broker-session-timeout-ms: {}", e.0)))?;
        if let Some(id) = &self.cluster_id {
            check_cluster_id(id)?;
        }
        if self.replication_throttle_bytes == Some(0) {
            return Err(invalid(
                "--replication-throttle-bytes must be at least 1 (leave it out for no throttle)"
                    .to_string(),
            ));
        }
        let clustered = !self.peers.is_empty() || self.join.is_some();
        if !clustered {
            if let Some(id) = self.node_id {
                return Err(invalid(format!(
                    "--node-id {id} needs --peers (to form a cluster) or --join (to join one)"
                )));
            }
            if self.advertised.is_some() || self.cluster_id.is_some() {
                return Err(invalid(
                    "--cluster-advertised and --cluster-id need --peers or --join",
                ));
            }
            return Ok(());
        }
        if !self.peers.is_empty() && self.join.is_some() {
            return Err(invalid(
                "--peers (form a cluster) and --join (join a running one) exclude each other",
            ));
        }
        let Some(node_id) = self.node_id else {
            return Err(invalid("--peers and --join need --node-id"));
        };
        check_node_id(node_id)?;
        check_addr(&self.listen).map_err(|e| invalid(format!("--cluster-listen: {}", e.0)))?;
        if let Some(a) = &self.advertised {
            check_addr(a).map_err(|e| invalid(format!("--cluster-advertised: {}", e.0)))?;
        }
        if let Some(addr) = &self.join {
            check_addr(addr).map_err(|e| invalid(format!("--join: {}", e.0)))?;
            if addr == self.advertised_addr() {
                return Err(invalid(format!(
                    "--join {addr} is this node's own address; name a running member"
                )));
            }
            return Ok(());
        }
        if self.peers.len() > MAX_PEERS {
            return Err(invalid(format!(
                "--peers lists {} nodes; at most {MAX_PEERS}",
                self.peers.len()
            )));
        }
        let mut ids = HashSet::new();
        let mut addrs = HashSet::new();
        for p in &self.peers {
            check_node_id(p.id)?;
            check_addr(&p.addr)?;
            if !ids.insert(p.id) {
                return Err(invalid(format!("--peers lists node id {} twice", p.id)));
            }
            if !addrs.insert(p.addr.as_str()) {
                return Err(invalid(format!("--peers lists address {} twice", p.addr)));
            }
        }
        let me = self.advertised_addr();
        match self.peers.iter().find(|p| p.id == node_id) {
            None => Err(invalid(format!(
                "--peers does not list this node (--node-id {node_id}); add {node_id}@{me}"
            ))),
            Some(p) if p.addr != me => Err(invalid(format!(
                "--peers lists node {node_id} at {}, but this node is reached at {me} \
                 (--cluster-advertised, default --cluster-listen)",
                p.addr
            ))),
            Some(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(node: Option<u64>, listen: &str, peers: &str) -> ClusterConfig {
        ClusterConfig {
            node_id: node,
            listen: listen.into(),
            peers: parse_peers(peers).unwrap(),
            ..ClusterConfig::default()
        }
    }

    const PEERS: &str = "1@127.0.0.1:7001,2@127.0.0.1:7002,3@127.0.0.1:7003";

    #[test]
    fn single_node_is_the_default() {
        let c = ClusterConfig::default();
        c.validate().unwrap();
        assert_eq!(c.mode(), Mode::Single);
        assert!(c.configured_cluster_id().is_none());
    }

    #[test]
    fn peers_need_this_node_at_its_address() {
        let c = cfg(Some(2), "127.0.0.1:7002", PEERS);
        c.validate().unwrap();
        assert!(matches!(c.mode(), Mode::Bootstrap { node_id: 2, .. }));
        assert_eq!(c.other_peers().count(), 2);

        let e = cfg(Some(4), "127.0.0.1:7004", PEERS)
            .validate()
            .unwrap_err();
        assert!(e.0.contains("does not list this node"), "{e}");
        let e = cfg(Some(2), "127.0.0.1:9999", PEERS)
            .validate()
            .unwrap_err();
        assert!(e.0.contains("lists node 2 at 127.0.0.1:7002"), "{e}");
        // Advertised wins over listen.
        let mut c = cfg(Some(2), "0.0.0.0:7002", PEERS);
        assert!(c.validate().is_err());
        c.advertised = Some("127.0.0.1:7002".into());
        c.validate().unwrap();
        let e = cfg(None, "127.0.0.1:7002", PEERS).validate().unwrap_err();
        assert!(e.0.contains("need --node-id"), "{e}");
    }

    #[test]
    fn ids_are_unique_kafka_broker_ids() {
        let e = cfg(Some(1), "h:1", "1@h:1,1@h:2").validate().unwrap_err();
        assert!(e.0.contains("node id 1 twice"), "{e}");
        let e = cfg(Some(1), "h:1", "1@h:1,2@h:1").validate().unwrap_err();
        assert!(e.0.contains("address h:1 twice"), "{e}");
        assert!(parse_peers("2147483648@h:1").is_err());
        assert!(parse_peers("2147483647@h:1").is_ok());
        assert!(parse_peers("-1@h:1").is_err());
        assert!(parse_peers("1@h").is_err());
        assert!(parse_peers("1@h:0").is_err());
        assert!(parse_peers("1h:1").is_err());
        assert!(parse_peers("1@[::1]:7001").is_ok());
        let mut c = cfg(Some(1), "h:1", "1@h:1");
        c.node_id = Some(1 << 40);
        assert!(c.validate().is_err());
    }

    #[test]
    fn peers_and_join_exclude_each_other_and_need_a_node_id() {
        let mut c = cfg(Some(1), "127.0.0.1:7001", PEERS);
        c.join = Some("127.0.0.1:7002".into());
        assert!(c.validate().unwrap_err().0.contains("exclude each other"));
        let c = ClusterConfig {
            join: Some("127.0.0.1:7002".into()),
            ..ClusterConfig::default()
        };
        assert!(c.validate().is_err());
        let c = ClusterConfig {
            node_id: Some(4),
            join: Some("127.0.0.1:7002".into()),
            ..ClusterConfig::default()
        };
        c.validate().unwrap();
        assert!(matches!(c.mode(), Mode::Join { node_id: 4, .. }));
        assert!(c.configured_cluster_id().is_none());
        let c = ClusterConfig {
            node_id: Some(4),
            ..ClusterConfig::default()
        };
        assert!(c.validate().unwrap_err().0.contains("needs --peers"));
    }

    #[test]
    fn the_broker_session_timeout_is_bounded() {
        let mut c = cfg(Some(1), "127.0.0.1:7001", PEERS);
        c.validate().unwrap();
        for bad in [0, 999, 300_001] {
            c.broker_session_timeout_ms = bad;
            let e = c.validate().unwrap_err();
            assert!(e.0.contains("--broker-session-timeout-ms"), "{e}");
        }
        c.broker_session_timeout_ms = 1_000;
        c.validate().unwrap();
    }

    #[test]
    fn the_derived_cluster_id_ignores_order_and_start() {
        let a = parse_peers(PEERS).unwrap();
        let mut b = a.clone();
        b.reverse();
        assert_eq!(derive_cluster_id(&a), derive_cluster_id(&b));
        assert_eq!(derive_cluster_id(&a).len(), 22);
        check_cluster_id(&derive_cluster_id(&a)).unwrap();
        let c = parse_peers("1@127.0.0.1:7001,2@127.0.0.1:7002,3@127.0.0.1:7004").unwrap();
        assert_ne!(derive_cluster_id(&a), derive_cluster_id(&c));
        let mut conf = cfg(Some(1), "127.0.0.1:7001", PEERS);
        assert_eq!(conf.configured_cluster_id(), Some(derive_cluster_id(&a)));
        conf.cluster_id = Some("prod-eu".into());
        assert_eq!(conf.configured_cluster_id().as_deref(), Some("prod-eu"));
        conf.cluster_id = Some("bad id".into());
        assert!(conf.validate().is_err());
    }
}
