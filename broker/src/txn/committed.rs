//! Reads in committed mode (`isolation_level=read_committed`) for every reader of a single
//! node's log: the Kafka Fetch handler, the engine's task inputs and changelog restores
//! (through `LogAccess`), and the HTTP, CLI and SQL readers of topics. One place decides
//! what a committed reader may see; it owns no state (the last stable offset and the
//! aborted transactions are `kafka::producer`'s, per partition).
//!
//! # Invariants
//!
//! 1. A committed read never returns a record at or past the partition's last stable
//!    offset (the first offset of its oldest open transaction, else the readable end), and
//!    the end offset it reports is that last stable offset.
//! 2. It never returns a record of an aborted transaction: a transactional data batch whose
//!    producer has an aborted transaction spanning the batch's base offset is passed over
//!    as a gap (Kafka's consumer does the same with the Fetch's aborted-transaction list).
//!    Markers (control batches) decode to no records.
//! 3. An open transaction the coordinator no longer has in flight (a marker lost with
//!    unsynced writes) is closed before the last stable offset is taken, as Fetch does, so
//!    a committed reader is never stuck behind it (`TxnCoordinator::close_stale`).

use crate::batch::BatchHeader;
use crate::error::Result;
use crate::kafka::producer;
use crate::{Broker, ReadResult};

impl Broker {
    /// The last stable offset of a partition whose readable end is `end` (invariants 1, 3).
    pub fn last_stable_offset(&self, topic: &str, partition: i32, end: i64) -> i64 {
        let producers = self.producer_states();
        let unstable = || {
            let state = producers.partition(topic, partition);
            let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
            producer::load(self, topic, partition, &mut state);
            (state.first_unstable_offset(), state.open_producers())
        };
        let (mut first, open) = unstable();
        if first.is_some()
            && let Some(txn) = self.txn_coordinator()
            && txn.close_stale(topic, partition, &open)
        {
            first = unstable().0;
        }
        first.map_or(end, |o| o.min(end))
    }

    /// [`Broker::read`] in committed mode: records below the last stable offset, none of an
    /// aborted transaction (module invariants). `end_offset` is the last stable offset.
    pub fn read_committed(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<ReadResult> {
        let (_, end) = self.partition_offsets(topic, partition)?;
        let lso = self.last_stable_offset(topic, partition, end);
        let aborted = {
            let state = self.producer_states().partition(topic, partition);
            let state = state.lock().unwrap_or_else(|p| p.into_inner());
            state.aborted_between(offset, lso)
        };
        let skip = |h: &BatchHeader| {
            h.is_transactional()
                && !h.is_control()
                && aborted.iter().any(|a| {
                    a.producer_id == h.producer_id
                        && a.first_offset <= h.base_offset
                        && h.base_offset <= a.last_offset
                })
        };
        self.read_below(
            topic,
            partition,
            offset,
            max_records,
            max_bytes,
            Some(lso),
            &skip,
        )
    }
}
