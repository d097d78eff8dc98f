//! What a task's calls emitted and the runner has not appended yet: RecordBatch v2 bytes per
//! (output target, partition), built with `weir_broker::batch_builder` as records are
//! emitted, so each record's fields are copied once (into the batch) and nothing is
//! allocated or reference-counted per field. The runner appends them after every successful
//! call; a failed call's are dropped. Choosing the target and partition is the context's job.

use weir_broker::batch::CheckedBatch;
use weir_broker::batch_builder::BatchBuilder;

use crate::host::OutputRef;

/// A batch is closed (and a new one started) before a record would take it over this many
/// bytes; a record bigger than that gets a batch of its own.
const BATCH_BYTES: usize = 1 << 20;

/// One finished batch: target index, partition, bytes.
pub type OutputBatch = (usize, i32, CheckedBatch);

/// The records emitted since the last [`PendingOutput::take`].
#[derive(Debug, Default)]
pub struct PendingOutput {
    /// `builders[target][partition]`.
    builders: Vec<Vec<BatchBuilder>>,
    /// Batches closed because they were full, in the order they filled.
    full: Vec<OutputBatch>,
    /// Builders holding records, in the order they got their first one.
    used: Vec<(usize, usize)>,
    records: u64,
}

impl PendingOutput {
    /// For targets with these partition counts.
    pub fn new(partitions: impl IntoIterator<Item = i32>) -> PendingOutput {
        PendingOutput {
            builders: partitions
                .into_iter()
                .map(|n| (0..n.max(0)).map(|_| BatchBuilder::new()).collect())
                .collect(),
            ..PendingOutput::default()
        }
    }

    /// Adds a record for `partition` of `target`; `false` if there is no such partition.
    pub fn push(
        &mut self,
        target: usize,
        partition: i32,
        timestamp: i64,
        record: &OutputRef<'_>,
    ) -> bool {
        let Some(p) = usize::try_from(partition).ok() else {
            return false;
        };
        let Some(builder) = self.builders.get_mut(target).and_then(|b| b.get_mut(p)) else {
            return false;
        };
        // Fields plus the most their length prefixes and the record's fixed part take.
        let estimate = record.payload_bytes() as usize + 40 + 10 * record.headers.len();
        if !builder.is_empty()
            && builder.size() + estimate > BATCH_BYTES
            && let Some(batch) = builder.finish_checked()
        {
            self.full.push((target, partition, batch));
        }
        if builder.is_empty() && !self.used.contains(&(target, p)) {
            self.used.push((target, p));
        }
        builder.push(
            timestamp,
            record.key,
            record.value,
            record.headers.iter().copied(),
        );
        self.records += 1;
        true
    }

    /// Records added since the last take.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Every batch, in an order that keeps each partition's records in emit order, and the
    /// number of records in them; empties the pending output.
    pub fn take(&mut self) -> (Vec<OutputBatch>, u64) {
        let mut out = std::mem::take(&mut self.full);
        for (t, p) in self.used.drain(..) {
            if let Some(batch) = self.builders[t][p].finish_checked() {
                out.push((t, p as i32, batch));
            }
        }
        (out, std::mem::take(&mut self.records))
    }

    /// Drops everything pending (a failed call's output).
    pub fn discard(&mut self) {
        self.full.clear();
        for (t, p) in self.used.drain(..) {
            self.builders[t][p].finish();
        }
        self.records = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_broker::batch;

    fn rec(value: &str) -> OutputRef<'_> {
        OutputRef {
            value: Some(value.as_bytes()),
            ..OutputRef::default()
        }
    }

    fn values(b: &CheckedBatch) -> Vec<String> {
        batch::decode(b.bytes().clone())
            .unwrap()
            .iter()
            .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn batches_per_partition_keep_emit_order() {
        let mut out = PendingOutput::new([2, 1]);
        assert!(out.push(0, 1, 5, &rec("a")));
        assert!(out.push(1, 0, 5, &rec("b")));
        assert!(out.push(0, 1, 6, &rec("c")));
        assert!(out.push(0, 0, 7, &rec("d")));
        assert!(!out.push(0, 2, 7, &rec("no such partition")));
        assert!(!out.push(2, 0, 7, &rec("no such target")));
        assert!(!out.push(0, -1, 7, &rec("negative")));
        assert_eq!(out.records(), 4);
        let (batches, n) = out.take();
        assert_eq!(n, 4);
        let got: Vec<(usize, i32, Vec<String>)> = batches
            .iter()
            .map(|(t, p, b)| (*t, *p, values(b)))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 1, vec!["a".to_string(), "c".to_string()]),
                (1, 0, vec!["b".to_string()]),
                (0, 0, vec!["d".to_string()]),
            ]
        );
        assert_eq!(out.take().1, 0);
        assert!(out.take().0.is_empty());
    }

    #[test]
    fn full_batches_close_and_discard_drops_everything() {
        let mut out = PendingOutput::new([1]);
        let big = "x".repeat(300_000);
        for i in 0..8 {
            assert!(out.push(0, 0, i, &rec(&format!("{i}{big}"))));
        }
        let (batches, n) = out.take();
        assert_eq!(n, 8);
        assert!(batches.len() >= 2, "{} batches", batches.len());
        assert!(
            batches
                .iter()
                .all(|(_, _, b)| b.bytes().len() <= BATCH_BYTES)
        );
        let all: Vec<String> = batches.iter().flat_map(|(_, _, b)| values(b)).collect();
        let firsts: Vec<char> = all.iter().map(|v| v.chars().next().unwrap()).collect();
        assert_eq!(firsts, "01234567".chars().collect::<Vec<_>>());
        for i in 0..5 {
            out.push(0, 0, i, &rec(&big));
        }
        out.discard();
        let (batches, n) = out.take();
        assert!(batches.is_empty());
        assert_eq!(n, 0);
        out.push(0, 0, 1, &rec("after"));
        let (batches, _) = out.take();
        assert_eq!(values(&batches[0].2), vec!["after".to_string()]);
    }
}
