//! Failed-login rate limiting per client address, shared by the HTTP and Kafka listeners: an
//! address that failed `max_failures` logins within `window` is refused without a password
//! check until that window ends. The table is bounded (old windows are dropped first).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::AuthError;

/// Most addresses tracked at once; beyond it expired entries are dropped, then all.
const MAX_TRACKED: usize = 100_000;

/// Limits on failed logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    /// Failed logins allowed per address within `window`.
    pub max_failures: u32,
    pub window: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            max_failures: 10,
            window: Duration::from_secs(60),
        }
    }
}

/// Counts failed logins per address.
#[derive(Debug, Default)]
pub struct LoginLimiter {
    limits: LoginLimits,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl LoginLimiter {
    pub fn new(limits: LoginLimits) -> Self {
        LoginLimiter {
            limits,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Refuses an address that used up its failures in the current window.
    pub fn check(&self, ip: IpAddr) -> Result<(), AuthError> {
        let map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&ip) {
            Some((count, start))
                if *count >= self.limits.max_failures && start.elapsed() < self.limits.window =>
            {
                let left = self.limits.window.saturating_sub(start.elapsed());
                Err(AuthError::TooManyFailures {
                    retry_after_secs: left.as_secs().max(1),
                })
            }
            _ => Ok(()),
        }
    }

    /// Records a failed login from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let window = self.limits.window;
        if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
            map.retain(|_, (_, start)| start.elapsed() < window);
            if map.len() >= MAX_TRACKED {
                map.clear();
            }
        }
        let entry = map.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= window {
            *entry = (0, Instant::now());
        }
        entry.0 = entry.0.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_refused_after_its_failures_until_the_window_ends() {
        let l = LoginLimiter::new(LoginLimits {
            max_failures: 2,
            window: Duration::from_millis(200),
        });
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        l.failed(a);
        assert!(l.check(a).is_ok());
        l.failed(a);
        assert!(matches!(l.check(a), Err(AuthError::TooManyFailures { .. })));
        assert!(l.check(b).is_ok());
        std::thread::sleep(Duration::from_millis(250));
        assert!(l.check(a).is_ok());
    }
}
