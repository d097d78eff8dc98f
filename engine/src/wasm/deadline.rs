//! The CPU-time limit of a guest call and its interruption, for processor and UDF stores
//! alike. The engine's epoch ticker increments the epoch every `epoch_tick`; a store's epoch
//! deadline runs [`CallClock::on_deadline`] every [`CHECK_TICKS`] ticks of a running call,
//! which ends the call when its task asked it to stop (an [`Interrupt`]), when the node is
//! shutting down, or when the call's CPU budget is spent. Knows nothing of what the guest is.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use wasmtime::{Store, Trap, UpdateDeadline};

use crate::host::Interrupt;

/// How often (in epoch ticks) a running call looks at its stop flags: with the 2 ms tick,
/// a call stops within ~50 ms of being asked.
pub(super) const CHECK_TICKS: u64 = 25;

/// Why a call was ended by its deadline callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ended {
    /// Its CPU budget was spent.
    TimedOut,
    /// Its task (or the node) asked it to stop.
    Interrupted,
}

/// The deadline state of one store.
pub(super) struct CallClock {
    /// Ticks a call may run.
    limit_ticks: u64,
    /// Ticks left in the call in progress after the current deadline.
    ticks_left: u64,
    /// The task's stop flag (none for instances outside tasks).
    interrupt: Option<Interrupt>,
    /// The node's "shutting down" flag (the engine's).
    node_stop: Arc<AtomicBool>,
    /// How the last call was ended, if the callback ended it.
    pub(super) ended: Option<Ended>,
}

impl CallClock {
    pub(super) fn new(
        limit_ticks: u64,
        interrupt: Option<Interrupt>,
        node_stop: Arc<AtomicBool>,
    ) -> CallClock {
        CallClock {
            limit_ticks: limit_ticks.max(1),
            ticks_left: 0,
            interrupt,
            node_stop,
            ended: None,
        }
    }

    fn stop_requested(&self) -> bool {
        self.node_stop.load(Ordering::Relaxed)
            || self.interrupt.as_ref().is_some_and(Interrupt::is_requested)
    }

    /// Starts a call's budget (`limit_ticks`, or at least `min_ticks`); returns the first
    /// deadline to set.
    fn start(&mut self, min_ticks: u64) -> u64 {
        self.ended = None;
        let total = self.limit_ticks.max(min_ticks);
        let first = total.min(CHECK_TICKS);
        self.ticks_left = total - first;
        first
    }

    /// The epoch deadline was reached: end the call, or let it run some more ticks.
    fn on_deadline(&mut self) -> wasmtime::Result<UpdateDeadline> {
        if self.stop_requested() {
            self.ended = Some(Ended::Interrupted);
            return Err(Trap::Interrupt.into());
        }
        if self.ticks_left == 0 {
            self.ended = Some(Ended::TimedOut);
            return Err(Trap::Interrupt.into());
        }
        let step = self.ticks_left.min(CHECK_TICKS);
        self.ticks_left -= step;
        Ok(UpdateDeadline::Continue(step))
    }
}

/// A store's data that has a [`CallClock`].
pub(super) trait HasClock {
    fn clock(&mut self) -> &mut CallClock;
}

/// Makes the store's epoch deadline run its clock.
pub(super) fn install<T: HasClock + 'static>(store: &mut Store<T>) {
    store.epoch_deadline_callback(|mut cx| cx.data_mut().clock().on_deadline());
}

/// Starts a call (or an instantiation, with `min_ticks`) on `store`: a fresh budget, and
/// the first deadline.
pub(super) fn start_call<T: HasClock>(store: &mut Store<T>, min_ticks: u64) {
    let first = store.data_mut().clock().start(min_ticks);
    store.set_epoch_deadline(first);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_runs_its_budget_in_steps_then_times_out() {
        let stop = Arc::new(AtomicBool::new(false));
        let mut c = CallClock::new(60, None, stop);
        assert_eq!(c.start(0), 25);
        assert!(matches!(c.on_deadline(), Ok(UpdateDeadline::Continue(25))));
        assert!(matches!(c.on_deadline(), Ok(UpdateDeadline::Continue(10))));
        assert!(c.on_deadline().is_err());
        assert_eq!(c.ended, Some(Ended::TimedOut));
        // A new call starts a new budget; `min_ticks` raises it.
        assert_eq!(c.start(100), 25);
        assert_eq!(c.ended, None);
        assert_eq!(c.ticks_left, 75);
    }

    #[test]
    fn a_stop_request_ends_the_call_at_the_next_check() {
        let node = Arc::new(AtomicBool::new(false));
        let interrupt = Interrupt::new();
        let mut c = CallClock::new(u64::MAX, Some(interrupt.clone()), node.clone());
        c.start(0);
        assert!(c.on_deadline().is_ok());
        interrupt.request();
        assert!(c.on_deadline().is_err());
        assert_eq!(c.ended, Some(Ended::Interrupted));
        interrupt.clear();
        c.start(0);
        assert!(c.on_deadline().is_ok());
        node.store(true, Ordering::Relaxed);
        assert!(c.on_deadline().is_err());
        assert_eq!(c.ended, Some(Ended::Interrupted));
    }
}
