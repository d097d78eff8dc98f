//! The replication throttle (`--replication-throttle-bytes`): a token bucket of bytes per
//! second shared by the follower fetches of every replica a reassignment is adding on this
//! node, so that moving partitions onto a joined node, or off a decommissioned one, does not
//! starve client traffic or the catch-up of replicas that were already in sync (Kafka's
//! `follower.replication.throttled.rate`). It owns only the arithmetic; the fetcher asks it
//! how much it may fetch and tells it what it got.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

/// A token bucket of `rate` bytes per second, holding at most one second's worth.
#[derive(Debug)]
pub struct Throttle {
    rate: u64,
    /// Bytes available (negative after a batch larger than the balance) and when last filled.
    state: Mutex<(f64, Instant)>,
}

impl Throttle {
    /// A bucket of `rate` bytes per second (at least 1), full.
    pub fn new(rate: u64) -> Throttle {
        let rate = rate.max(1);
        Throttle {
            rate,
            state: Mutex::new((rate as f64, Instant::now())),
        }
    }

    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Bytes a throttled fetch may ask for now (0: wait).
    pub fn available(&self) -> usize {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(s.1).as_secs_f64();
        s.0 = (s.0 + elapsed * self.rate as f64).min(self.rate as f64);
        s.1 = now;
        if s.0 < 1.0 { 0 } else { s.0 as usize }
    }

    /// Counts `bytes` fetched by a throttled replica (the balance may go negative: a fetch
    /// always returns at least one whole batch).
    pub fn spend(&self, bytes: usize) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.0 -= bytes as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spending_more_than_the_balance_waits_until_it_refills() {
        let t = Throttle::new(1_000_000);
        assert!(t.available() >= 999_000);
        t.spend(3_000_000);
        assert_eq!(t.available(), 0, "in debt for about two seconds");
    }
}
