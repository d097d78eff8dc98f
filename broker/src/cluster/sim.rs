//! A simulated network for the in-process cluster harness: N nodes in one test process whose
//! links the test can cut (one way or both), delay, stop and heal, in the way TiKV's test
//! cluster does. Transports used by tests (metadata RPCs, follower fetches) call
//! [`SimNetwork::deliver`] once for the request and once for the response; a message is
//! dropped if its link is cut or either end is stopped when it is sent *or* when its delay has
//! passed. Nothing here is random: a test gets the same outcome every run.
//!
//! This module must not know which messages travel over it.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::NodeId;

/// A message could not be delivered from `from` to `to`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node {to} is unreachable from node {from}")]
pub struct Unreachable {
    pub from: NodeId,
    pub to: NodeId,
}

/// The links between simulated nodes. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct SimNetwork {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    stopped: HashSet<NodeId>,
    cut: HashSet<(NodeId, NodeId)>,
    delay: HashMap<(NodeId, NodeId), Duration>,
    default_delay: Duration,
    delivered: u64,
    dropped: u64,
}

impl State {
    fn reachable(&self, from: NodeId, to: NodeId) -> bool {
        !self.stopped.contains(&from)
            && !self.stopped.contains(&to)
            && !self.cut.contains(&(from, to))
    }
}

impl SimNetwork {
    pub fn new() -> SimNetwork {
        SimNetwork::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The node is down: nothing reaches it and nothing it sends arrives.
    pub fn stop(&self, node: NodeId) {
        self.state().stopped.insert(node);
    }

    /// The node is up again (its links keep whatever cuts they had).
    pub fn start(&self, node: NodeId) {
        self.state().stopped.remove(&node);
    }

    /// Messages from `from` to `to` are dropped (the other direction is untouched).
    pub fn cut(&self, from: NodeId, to: NodeId) {
        self.state().cut.insert((from, to));
    }

    /// Messages from `from` to `to` arrive again (undoes [`SimNetwork::cut`] of that link).
    pub fn mend(&self, from: NodeId, to: NodeId) {
        self.state().cut.remove(&(from, to));
    }

    /// Every link between a node of `a` and a node of `b` is cut, both ways.
    pub fn partition(&self, a: &[NodeId], b: &[NodeId]) {
        let mut state = self.state();
        for &x in a {
            for &y in b {
                state.cut.insert((x, y));
                state.cut.insert((y, x));
            }
        }
    }

    /// `node` can reach none of `others` and none of them can reach it.
    pub fn isolate(&self, node: NodeId, others: &[NodeId]) {
        self.partition(&[node], others);
    }

    /// Every cut is mended and every delay removed (stopped nodes stay stopped).
    pub fn heal(&self) {
        let mut state = self.state();
        state.cut.clear();
        state.delay.clear();
        state.default_delay = Duration::ZERO;
    }

    /// Messages from `from` to `to` take `delay` to arrive.
    pub fn set_delay(&self, from: NodeId, to: NodeId, delay: Duration) {
        self.state().delay.insert((from, to), delay);
    }

    /// Every link without a delay of its own takes `delay`.
    pub fn set_default_delay(&self, delay: Duration) {
        self.state().default_delay = delay;
    }

    /// Whether a message sent now from `from` to `to` would be delivered.
    pub fn reachable(&self, from: NodeId, to: NodeId) -> bool {
        self.state().reachable(from, to)
    }

    /// Carries one message from `from` to `to`: waits for the link's delay, then succeeds if
    /// the link was open both when the message was sent and when it arrives.
    pub async fn deliver(&self, from: NodeId, to: NodeId) -> Result<(), Unreachable> {
        let delay = {
            let mut state = self.state();
            if !state.reachable(from, to) {
                state.dropped += 1;
                return Err(Unreachable { from, to });
            }
            state
                .delay
                .get(&(from, to))
                .copied()
                .unwrap_or(state.default_delay)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut state = self.state();
        if state.reachable(from, to) {
            state.delivered += 1;
            Ok(())
        } else {
            state.dropped += 1;
            Err(Unreachable { from, to })
        }
    }

    /// Messages delivered and dropped so far.
    pub fn counts(&self) -> (u64, u64) {
        let state = self.state();
        (state.delivered, state.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cuts_stops_and_heals() {
        let net = SimNetwork::new();
        assert!(net.deliver(1, 2).await.is_ok());
        net.cut(1, 2);
        assert_eq!(net.deliver(1, 2).await, Err(Unreachable { from: 1, to: 2 }));
        assert!(net.deliver(2, 1).await.is_ok(), "a cut is one way");
        net.heal();
        net.partition(&[1], &[2, 3]);
        assert!(net.deliver(3, 1).await.is_err());
        assert!(
            net.deliver(2, 3).await.is_ok(),
            "the majority side still talks"
        );
        net.heal();
        net.stop(3);
        assert!(net.deliver(1, 3).await.is_err());
        assert!(net.deliver(3, 1).await.is_err());
        net.heal();
        assert!(
            net.deliver(1, 3).await.is_err(),
            "heal does not restart a stopped node"
        );
        net.start(3);
        assert!(net.deliver(1, 3).await.is_ok());
        assert_eq!(net.counts(), (4, 5));
    }

    #[tokio::test]
    async fn a_link_cut_while_a_message_is_in_flight_drops_it() {
        let net = std::sync::Arc::new(SimNetwork::new());
        net.set_delay(1, 2, Duration::from_millis(50));
        let in_flight = tokio::spawn({
            let net = net.clone();
            async move { net.deliver(1, 2).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        net.cut(1, 2);
        assert!(in_flight.await.unwrap().is_err());
    }
}
