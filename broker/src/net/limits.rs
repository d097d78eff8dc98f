//! Connection caps: at most `max_connections` open connections per listener and at most
//! `max_connections_per_ip` from one client address. A connection over either cap is refused
//! at once (the caller drops the socket), never queued. Each admitted connection holds a
//! [`ConnGuard`] that gives its place back when dropped. Owns only the counting.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Default cap on open connections per listener.
pub const DEFAULT_MAX_CONNECTIONS: usize = 8192;
/// Default cap on open connections from one client address, per listener.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 1024;

/// The caps of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
        }
    }
}

impl ConnLimits {
    /// Both caps must be at least 1 and the per-address cap at most the total.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_connections == 0 || self.max_connections_per_ip == 0 {
            return Err("max_connections and max_connections_per_ip must be at least 1".into());
        }
        if self.max_connections_per_ip > self.max_connections {
            return Err(format!(
                "max_connections_per_ip ({}) must not exceed max_connections ({})",
                self.max_connections_per_ip, self.max_connections
            ));
        }
        Ok(())
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The listener holds `max_connections` already.
    Listener,
    /// This address holds `max_connections_per_ip` already.
    Address,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Counts the open connections of one listener.
#[derive(Debug, Clone)]
pub struct ConnLimiter {
    limits: ConnLimits,
    counts: Arc<Mutex<Counts>>,
}

impl ConnLimiter {
    pub fn new(limits: ConnLimits) -> ConnLimiter {
        ConnLimiter {
            limits,
            counts: Arc::default(),
        }
    }

    /// Admits a connection from `ip`, or says which cap it is over.
    pub fn try_acquire(&self, ip: IpAddr) -> Result<ConnGuard, Refused> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if c.total >= self.limits.max_connections {
            return Err(Refused::Listener);
        }
        let n = c.per_ip.entry(ip).or_insert(0);
        if *n >= self.limits.max_connections_per_ip {
            return Err(Refused::Address);
        }
        *n += 1;
        c.total += 1;
        Ok(ConnGuard {
            ip,
            counts: self.counts.clone(),
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct ConnGuard {
    ip: IpAddr,
    counts: Arc<Mutex<Counts>>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_address_and_per_listener() {
        let l = ConnLimiter::new(ConnLimits {
            max_connections: 3,
            max_connections_per_ip: 2,
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let g1 = l.try_acquire(a).unwrap();
        let _g2 = l.try_acquire(a).unwrap();
        assert_eq!(l.try_acquire(a).unwrap_err(), Refused::Address);
        let _g3 = l.try_acquire(b).unwrap();
        assert_eq!(l.try_acquire(b).unwrap_err(), Refused::Listener);
        drop(g1);
        assert_eq!(l.open(), 2);
        let _g4 = l.try_acquire(a).unwrap();
        assert!(
            ConnLimits {
                max_connections: 1,
                max_connections_per_ip: 2
            }
            .validate()
            .is_err()
        );
    }
}
