//! An exactly-once task's transaction (`"guarantee": "exactly_once"`, single node): each
//! commit interval of the task is one Kafka transaction of the broker's own coordinator,
//! under the task's transactional id [`transactional_id`] (`<processor>-<partition>`,
//! prefixed so no client id is mistaken for it). It owns that transaction's state on the
//! task's side (the producer, the partitions added); the coordinator owns the rest
//! (`weir_broker::txn`). It does not decide when to commit (the runner does).
//!
//! # Invariants
//!
//! 1. **One transaction per commit interval.** Everything the task writes between two
//!    commits — outputs, repartitioned records, dead letters, changelog appends, and last
//!    the input offsets in `<processor>.offsets` — is appended as transactional batches of
//!    the task's producer; [`TaskTxn::commit`] ends it with commit markers in every
//!    partition it touched. A committed reader (downstream tasks, restores, committed
//!    offsets, read_committed consumers) sees all of one interval's writes or none.
//! 2. **Durable before acknowledged.** A commit is acknowledged (the runner writes the
//!    store's checkpoint and clears `dirty`) only after the coordinator has written
//!    PrepareCommit, every marker and CompleteCommit — each appended under the log's fsync
//!    policy (`fsync=batch`: synced before the append returns; `interval`: a process crash
//!    loses nothing appended, a machine crash may lose the unsynced tail, which then reads
//!    as an aborted or still-open transaction, never a partial one).
//! 3. **The epoch fences.** Every start of the task (restart, resume after a failure, a
//!    node restart) calls InitProducerId for its transactional id first, before it restores
//!    or reads anything: the coordinator aborts the previous incarnation's transaction in
//!    flight and bumps the epoch. From then on any write of an older incarnation (a zombie:
//!    a task thread still running after it was replaced) is refused (`task_fenced`) and it
//!    can neither emit nor commit.
//! 4. **Restores and positions read committed only**, after 3: the store is rebuilt from
//!    committed changelog records and the task resumes from the last committed offsets, so
//!    what an aborted interval did is redone exactly once.
//! 5. A failed or crashed interval leaves its RocksDB writes flagged `dirty` (the runner's
//!    protocol): the store is rebuilt from the committed changelog, never trusted.

use std::collections::BTreeSet;

use weir_broker::ProduceRecord;
use weir_broker::batch::CheckedBatch;
use weir_broker::batch_builder::BatchBuilder;

use crate::clock::now_ms;
use crate::log_access::{LogAccess, LogError, TxnProducer};

/// Records of one partition go into batches of about this many bytes.
const BATCH_BYTES: usize = 1 << 20;

/// The transactional id of task `partition` of `processor`.
pub fn transactional_id(processor: &str, partition: i32) -> String {
    format!("__weir.task.{processor}-{partition}")
}

/// The transaction timeout of a task: long enough for any commit interval the spec may
/// choose (the coordinator aborts a transaction open longer, fencing the task, which then
/// starts again).
pub fn timeout_ms(commit_interval_ms: u64) -> i32 {
    let ms = commit_interval_ms.saturating_mul(10).max(60_000);
    i32::try_from(ms)
        .unwrap_or(i32::MAX)
        .min(weir_broker::txn::MAX_TIMEOUT_MS)
}

/// The task's producer and its transaction in progress.
pub struct TaskTxn {
    producer: TxnProducer,
    /// Partitions added to the transaction in progress (empty: none in progress).
    added: BTreeSet<(String, i32)>,
}

impl TaskTxn {
    /// Invariant 3: a new epoch for the task, fencing every earlier incarnation.
    pub fn begin(
        log: &dyn LogAccess,
        processor: &str,
        partition: i32,
        commit_interval_ms: u64,
    ) -> Result<TaskTxn, LogError> {
        let producer = log.txn_init(
            &transactional_id(processor, partition),
            timeout_ms(commit_interval_ms),
        )?;
        tracing::debug!(
            processor,
            partition,
            producer_id = producer.producer_id,
            epoch = producer.epoch,
            "exactly-once task producer initialised"
        );
        Ok(TaskTxn {
            producer,
            added: BTreeSet::new(),
        })
    }

    /// Whether a transaction is in progress (something was appended since the last
    /// commit).
    pub fn in_progress(&self) -> bool {
        !self.added.is_empty()
    }

    fn add(&mut self, log: &dyn LogAccess, topic: &str, partition: i32) -> Result<(), LogError> {
        self.add_all(log, [(topic, partition)])
    }

    /// Adds every partition not yet in the transaction with one durable write of the
    /// coordinator (rather than one per partition), before they are appended to.
    pub fn add_all<'a>(
        &mut self,
        log: &dyn LogAccess,
        partitions: impl IntoIterator<Item = (&'a str, i32)>,
    ) -> Result<(), LogError> {
        let mut new: Vec<(String, i32)> = Vec::new();
        for (t, p) in partitions {
            let key = (t.to_string(), p);
            if !self.added.contains(&key) && !new.contains(&key) {
                new.push(key);
            }
        }
        if new.is_empty() {
            return Ok(());
        }
        log.txn_add_partitions(&self.producer, &new)?;
        self.added.extend(new);
        Ok(())
    }

    /// Appends one batch in the transaction.
    pub fn append(
        &mut self,
        log: &dyn LogAccess,
        topic: &str,
        partition: i32,
        batch: &CheckedBatch,
    ) -> Result<(i64, i64), LogError> {
        self.add(log, topic, partition)?;
        log.txn_append(&self.producer, topic, partition, batch)
    }

    /// Appends records (each naming its partition) in the transaction; returns
    /// `(partition, offset)` for each, in order, as `LogAccess::produce` does.
    pub fn produce(
        &mut self,
        log: &dyn LogAccess,
        topic: &str,
        records: &[ProduceRecord],
    ) -> Result<Vec<(i32, i64)>, LogError> {
        let now = now_ms();
        // Consecutive runs of one partition become batches, so the order is kept.
        let mut out = Vec::with_capacity(records.len());
        let mut builder = BatchBuilder::new();
        let mut current: Option<i32> = None;
        let mut count = 0usize;
        for r in records {
            let p = r.partition.unwrap_or(0);
            if (current != Some(p) || builder.size() >= BATCH_BYTES)
                && let Some(cp) = current
            {
                self.flush(log, topic, cp, &mut builder, count, &mut out)?;
                count = 0;
            }
            current = Some(p);
            builder.push(
                r.timestamp.unwrap_or(now),
                r.key.as_deref(),
                r.value.as_deref(),
                r.headers.iter().map(|(k, v)| (k.as_str(), v.as_deref())),
            );
            count += 1;
        }
        if let Some(cp) = current {
            self.flush(log, topic, cp, &mut builder, count, &mut out)?;
        }
        Ok(out)
    }

    fn flush(
        &mut self,
        log: &dyn LogAccess,
        topic: &str,
        partition: i32,
        builder: &mut BatchBuilder,
        count: usize,
        out: &mut Vec<(i32, i64)>,
    ) -> Result<(), LogError> {
        let Some(batch) = builder.finish_checked() else {
            return Ok(());
        };
        let (first, _) = self.append(log, topic, partition, &batch)?;
        out.extend((0..count as i64).map(|i| (partition, first + i)));
        Ok(())
    }

    /// Commits the transaction in progress (nothing to do without one); invariant 2.
    pub fn commit(&mut self, log: &dyn LogAccess) -> Result<(), LogError> {
        if self.added.is_empty() {
            return Ok(());
        }
        log.txn_end(&self.producer, true)?;
        self.added.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_timeouts() {
        assert_eq!(transactional_id("wc", 3), "__weir.task.wc-3");
        assert_eq!(timeout_ms(500), 60_000);
        assert_eq!(timeout_ms(60_000), 600_000);
        // Ten intervals (1,200,000 ms) is above the coordinator's largest timeout: capped.
        assert_eq!(timeout_ms(120_000), weir_broker::txn::MAX_TIMEOUT_MS);
        assert_eq!(timeout_ms(u64::MAX), weir_broker::txn::MAX_TIMEOUT_MS);
    }
}
