//! Restoration: bringing a task's local stores up to the end of their changelogs before the
//! task processes anything, from the local checkpoint when the local state is intact, from
//! empty when it is not (new node, lost disk, crash in the middle of a commit).
//!
//! Bookkeeping kept in the task's state (see [`super::StoreBatch::meta`]):
//! - `checkpoint.<store>`: the changelog offset the local store reflects (all records before
//!   it are applied);
//! - `dirty`: set in the same atomic write as a commit's or a restoration's data, cleared
//!   with the new checkpoints once the changelog has the data. Found set at start, it means
//!   the local store may hold writes the changelog lacks: the task's state is wiped and
//!   rebuilt from the changelogs.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::changelog::changelog_topic;
use super::{StateError, StateStore, StoreBatch, StoreWrites};
use crate::log_access::{LogAccess, LogError};
use weir_broker::ErrorKind;

/// Bookkeeping name of the dirty flag.
pub const META_DIRTY: &str = "dirty";

/// Bookkeeping name of a store's checkpoint.
pub fn checkpoint_meta(store: &str) -> String {
    format!("checkpoint.{store}")
}

/// Records read per restoration step.
const READ_RECORDS: usize = 50_000;
const READ_BYTES: usize = 4 << 20;
/// Restored entries are written in chunks of about this many key and value bytes (few
/// large writes let RocksDB ingest them as files).
const WRITE_BYTES: usize = 32 << 20;

/// How long a changelog that ends before the local checkpoint is waited for before the
/// local state is taken as stale ([`WhenBehind::Wipe`]); and how often it is looked at again.
pub const BEHIND_GRACE: std::time::Duration = std::time::Duration::from_secs(10);
pub const BEHIND_RETRY: std::time::Duration = std::time::Duration::from_millis(200);

/// How long a changelog read that comes back empty before the end the restoration was told
/// is tried again (a leader that changed between the two: the new one's high watermark
/// catches up once its followers fetch) before the restoration stops short.
const SHORT_READ_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
const SHORT_READ_RETRY: std::time::Duration = std::time::Duration::from_millis(50);

/// What a restoration does when a changelog ends before the local store's checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenBehind {
    /// The changelog was recreated: the local state is stale, wipe it and restore from
    /// empty.
    Wipe,
    /// Refuse ([`RestoreError::ChangelogBehind`]): on a cluster a partition's new leader
    /// may expose less than its predecessor acknowledged until its followers fetch again,
    /// so the end is first given time to come back.
    Refuse,
}

/// Why restoration failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot read changelog {topic}: {source}")]
    Log { topic: String, source: LogError },
    #[error("changelog {topic} ends at {end}, before the local checkpoint {checkpoint}")]
    ChangelogBehind {
        topic: String,
        checkpoint: i64,
        end: i64,
    },
    /// The changelog could not be read up to the end it was said to have (its leader
    /// changed meanwhile and the new one exposes less for now). The store holds every
    /// record before `reached`, checkpointed there: the next restoration goes on from there.
    #[error("changelog {topic} could be read only up to {reached} of {end} (try again)")]
    ChangelogShort {
        topic: String,
        reached: i64,
        end: i64,
    },
}

impl RestoreError {
    pub fn code(&self) -> &'static str {
        match self {
            RestoreError::State(e) => e.code(),
            RestoreError::Log { source, .. } => source.code(),
            RestoreError::ChangelogBehind { .. } => "changelog_behind",
            RestoreError::ChangelogShort { .. } => "changelog_short",
        }
    }

    /// Whether the cause is transient: the log cannot answer now (no leader, a cluster that
    /// cannot be reached), so the same restoration may succeed later.
    pub fn retriable(&self) -> bool {
        match self {
            RestoreError::Log { source, .. } => source.kind() == ErrorKind::Unavailable,
            RestoreError::ChangelogShort { .. } => true,
            RestoreError::State(_) | RestoreError::ChangelogBehind { .. } => false,
        }
    }
}

/// Where a restoration is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RestoreProgress {
    pub store: String,
    /// Changelog records applied so far.
    pub records: u64,
    /// Key and value bytes applied so far.
    pub bytes: u64,
    /// Offset the restoration started from.
    pub start_offset: i64,
    /// Changelog end offset it restores up to.
    pub end_offset: i64,
    /// Next offset to apply.
    pub offset: i64,
    /// Whether the task's local state was discarded and is being rebuilt from empty (until
    /// it ends, its store holds only part of its state).
    pub from_empty: bool,
    /// When this store's restoration started (ms since the epoch; 0 before it starts).
    pub started_ms: i64,
}

impl RestoreProgress {
    /// Share done, 0 to 100.
    pub fn percent(&self) -> f64 {
        let total = self.end_offset - self.start_offset;
        if total <= 0 {
            return 100.0;
        }
        ((self.offset - self.start_offset) as f64 * 100.0 / total as f64).clamp(0.0, 100.0)
    }

    /// Estimated time left at the rate so far (offsets read per ms), `None` before there is a
    /// rate to go by.
    pub fn eta_ms(&self, now_ms: i64) -> Option<u64> {
        let elapsed = now_ms.saturating_sub(self.started_ms);
        let done = self.offset.saturating_sub(self.start_offset);
        if self.started_ms <= 0 || elapsed <= 0 || done <= 0 {
            return None;
        }
        let left = self.end_offset.saturating_sub(self.offset).max(0);
        let eta = left as f64 * elapsed as f64 / done as f64;
        Some(eta.min(u64::MAX as f64) as u64)
    }
}

/// What a task restoration did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RestoreOutcome {
    /// Changelog end offset of each store: what the local state now reflects.
    pub checkpoints: BTreeMap<String, i64>,
    /// Whether the local state was discarded first.
    pub from_empty: bool,
    pub records: u64,
    pub bytes: u64,
}

fn log_err(topic: &str) -> impl Fn(LogError) -> RestoreError + '_ {
    move |source| RestoreError::Log {
        topic: topic.to_string(),
        source,
    }
}

fn parse_checkpoint(v: Option<Bytes>) -> Option<i64> {
    v.and_then(|b| std::str::from_utf8(&b).ok()?.parse().ok())
}

/// Restores every store of task `partition` of `processor` (the stores named in `stores`)
/// to the end of its changelog, and records the new checkpoints. `on_progress` is called
/// after every applied chunk; `when_behind` says what a changelog that ends before its
/// checkpoint means.
///
/// A pass cut short by an error leaves the store usable: at its checkpoint, with some of
/// the records after it applied too (replayed again next time, to the same end state), so a
/// standby keeps answering and the next pass goes on instead of rebuilding from empty.
///
/// A checkpoint is only ever an offset up to which every record was applied: a changelog
/// that cannot be read up to the end first read ([`RestoreError::ChangelogShort`]) is
/// checkpointed where the reads stopped, never at that end (records skipped there would be
/// missing from the store for good).
pub fn restore_task(
    log: &dyn LogAccess,
    state: &dyn StateStore,
    processor: &str,
    partition: i32,
    stores: &[String],
    when_behind: WhenBehind,
    on_progress: &mut dyn FnMut(&RestoreProgress),
) -> Result<RestoreOutcome, RestoreError> {
    let mut outcome = RestoreOutcome::default();
    let dirty = state.meta(META_DIRTY)?.is_some();
    let mut plan: Vec<(String, i64, i64)> = Vec::new();
    let mut behind_local = false;
    for store in stores {
        let topic = changelog_topic(processor, store);
        let end = match log.offsets(&topic, partition) {
            Ok((_, end)) => end,
            Err(LogError::UnknownTopic(_)) => 0,
            Err(e) => return Err(log_err(&topic)(e)),
        };
        let from = if dirty {
            0
        } else {
            parse_checkpoint(state.meta(&checkpoint_meta(store))?).unwrap_or(0)
        };
        // A changelog shorter than the checkpoint was recreated: the local state is stale
        // (or, on a cluster, a new leader does not expose it all yet).
        if from > end && !dirty && when_behind == WhenBehind::Refuse {
            return Err(RestoreError::ChangelogBehind {
                topic,
                checkpoint: from,
                end,
            });
        }
        behind_local |= from > end;
        plan.push((store.clone(), from, end));
    }
    if dirty || behind_local {
        tracing::info!(
            processor,
            partition,
            dirty,
            "local state not usable; restoring from the changelogs from empty"
        );
        // Said before the store is emptied, so that nobody takes it for a full copy meanwhile.
        on_progress(&RestoreProgress {
            from_empty: true,
            ..RestoreProgress::default()
        });
        state.clear()?;
        outcome.from_empty = true;
        for p in &mut plan {
            p.1 = 0;
        }
    }
    if !outcome.from_empty && !plan.iter().any(|(_, from, end)| from < end) {
        // Nothing to apply (a caught-up store, or a standby's pass with nothing new): the
        // checkpoints stand as they are, nothing is written.
        outcome.checkpoints = plan.into_iter().map(|(s, _, end)| (s, end)).collect();
        return Ok(outcome);
    }
    // No dirty flag while records are applied: they come from the changelog, so a pass cut
    // short (a leader dying under a standby's read, a crash) leaves the store at its
    // checkpoint plus part of what follows it, and replaying from the checkpoint again ends
    // in the same state. Only the task's own commits (store before changelog) need the flag.
    let from_empty = outcome.from_empty;
    let mut report = |p: &RestoreProgress| {
        on_progress(&RestoreProgress {
            from_empty,
            ..p.clone()
        })
    };
    let mut short = None;
    for (store, from, end) in &plan {
        let p = restore_store(
            log,
            state,
            processor,
            store,
            partition,
            *from,
            *end,
            &mut report,
        )?;
        outcome.records += p.records;
        outcome.bytes += p.bytes;
        outcome.checkpoints.insert(store.clone(), p.offset);
        if p.offset < *end && short.is_none() {
            short = Some(RestoreError::ChangelogShort {
                topic: changelog_topic(processor, store),
                reached: p.offset,
                end: *end,
            });
        }
    }
    state.flush()?;
    let mut meta: Vec<(String, Option<Bytes>)> = outcome
        .checkpoints
        .iter()
        .map(|(s, o)| (checkpoint_meta(s), Some(Bytes::from(o.to_string()))))
        .collect();
    meta.push((META_DIRTY.to_string(), None));
    state.write(&StoreBatch {
        stores: vec![],
        meta,
    })?;
    match short {
        Some(e) => Err(e),
        None => Ok(outcome),
    }
}

/// Applies changelog records `[from, end)` of one store; the progress it returns says up to
/// which offset (`offset`: `end`, or less when the log would not give more).
#[allow(clippy::too_many_arguments)]
pub fn restore_store(
    log: &dyn LogAccess,
    state: &dyn StateStore,
    processor: &str,
    store: &str,
    partition: i32,
    from: i64,
    end: i64,
    on_progress: &mut dyn FnMut(&RestoreProgress),
) -> Result<RestoreProgress, RestoreError> {
    let topic = changelog_topic(processor, store);
    let mut progress = RestoreProgress {
        store: store.to_string(),
        start_offset: from,
        end_offset: end,
        offset: from,
        started_ms: crate::clock::now_ms(),
        ..RestoreProgress::default()
    };
    on_progress(&progress);
    let mut entries: Vec<(Bytes, Option<Bytes>)> = Vec::new();
    let mut chunk_bytes = 0usize;
    let flush = |entries: &mut Vec<(Bytes, Option<Bytes>)>| -> Result<(), RestoreError> {
        if !entries.is_empty() {
            state.write_unlogged(&StoreBatch {
                stores: vec![StoreWrites {
                    store: store.to_string(),
                    entries: std::mem::take(entries),
                }],
                meta: vec![],
            })?;
        }
        Ok(())
    };
    let mut short_since: Option<std::time::Instant> = None;
    while progress.offset < end {
        let read = log
            .read_committed(&topic, partition, progress.offset, READ_RECORDS, READ_BYTES)
            .map_err(log_err(&topic))?;
        if read.next_offset <= progress.offset {
            // Nothing before `end` now: the leader answering is not the one that gave the
            // end (it exposes less until its followers fetch). Wait a little for it.
            if short_since.is_none() {
                tracing::debug!(
                    topic,
                    partition,
                    offset = progress.offset,
                    end,
                    "changelog read came back short of the end it was given; waiting"
                );
            }
            let since = *short_since.get_or_insert_with(std::time::Instant::now);
            if since.elapsed() >= SHORT_READ_WAIT {
                tracing::info!(
                    topic,
                    partition,
                    offset = progress.offset,
                    end,
                    "changelog read stops short of its end"
                );
                break;
            }
            std::thread::sleep(SHORT_READ_RETRY);
            continue;
        }
        short_since = None;
        for r in read.records {
            if r.offset >= end {
                break;
            }
            // Changelog records always have keys; skip anything else rather than fail.
            let Some(key) = r.key else { continue };
            let bytes = key.len() + r.value.as_ref().map_or(0, |v| v.len());
            progress.records += 1;
            progress.bytes += bytes as u64;
            chunk_bytes += bytes;
            entries.push((key, r.value));
        }
        if chunk_bytes >= WRITE_BYTES {
            flush(&mut entries)?;
            chunk_bytes = 0;
        }
        progress.offset = read.next_offset.min(end);
        on_progress(&progress);
    }
    flush(&mut entries)?;
    on_progress(&progress);
    Ok(progress)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateBackend;
    use crate::state::changelog::{changelog_spec, to_records};
    use crate::state::memory::MemoryBackend;
    use crate::task_id::TaskId;
    use weir_broker::{Broker, BrokerConfig};

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn the_time_left_follows_the_rate_so_far() {
        let p = RestoreProgress {
            start_offset: 100,
            end_offset: 1_100,
            offset: 350,
            started_ms: 10_000,
            ..RestoreProgress::default()
        };
        // 250 offsets in 500 ms: 750 left take 1.5 s.
        assert_eq!(p.eta_ms(10_500), Some(1_500));
        assert_eq!(p.eta_ms(10_000), None, "no rate yet");
        let fresh = RestoreProgress {
            offset: 100,
            ..p.clone()
        };
        assert_eq!(fresh.eta_ms(20_000), None, "nothing read yet");
        let status = crate::task::status::RestoreStatus::from_progress(&p, false, false);
        assert_eq!(status.total, 1_000);
    }

    #[test]
    fn restores_from_empty_then_from_checkpoint_and_wipes_when_dirty() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(BrokerConfig::new(dir.path())).unwrap();
        let log: &dyn LogAccess = &broker;
        log.ensure_topic(changelog_spec("p", "s", 2)).unwrap();
        let topic = changelog_topic("p", "s");
        let entries = vec![
            (b("a"), Some(b("1"))),
            (b("b"), Some(b("2"))),
            (b("a"), None),
        ];
        log.produce(&topic, to_records(&entries, 1)).unwrap();

        let backend = MemoryBackend::new();
        let state = backend.open(&TaskId::new("p", 1)).unwrap();
        let stores = vec!["s".to_string(), "never-written".to_string()];
        let mut seen = Vec::new();
        let out = restore_task(log, &*state, "p", 1, &stores, WhenBehind::Wipe, &mut |p| {
            seen.push(p.clone())
        })
        .unwrap();
        assert_eq!(out.records, 3);
        assert_eq!(out.checkpoints["s"], 3);
        assert_eq!(out.checkpoints["never-written"], 0);
        assert_eq!(state.get("s", b"a").unwrap(), None);
        assert_eq!(state.get("s", b"b").unwrap(), Some(b("2")));
        assert_eq!(seen.last().unwrap().percent(), 100.0);
        assert_eq!(state.meta(META_DIRTY).unwrap(), None);

        // From the checkpoint: only the new record is read.
        log.produce(&topic, to_records(&[(b("c"), Some(b("3")))], 1))
            .unwrap();
        let out =
            restore_task(log, &*state, "p", 1, &stores, WhenBehind::Wipe, &mut |_| {}).unwrap();
        assert_eq!(out.records, 1);
        assert!(!out.from_empty);
        assert_eq!(state.get("s", b"c").unwrap(), Some(b("3")));

        // A local write the changelog lacks, flagged dirty: wiped and rebuilt.
        state
            .write(&StoreBatch {
                stores: vec![StoreWrites {
                    store: "s".into(),
                    entries: vec![(b("local-only"), Some(b("x")))],
                }],
                meta: vec![(META_DIRTY.into(), Some(b("1")))],
            })
            .unwrap();
        let out =
            restore_task(log, &*state, "p", 1, &stores, WhenBehind::Wipe, &mut |_| {}).unwrap();
        assert!(out.from_empty);
        assert_eq!(out.records, 4);
        assert_eq!(state.get("s", b"local-only").unwrap(), None);
        assert_eq!(state.get("s", b"c").unwrap(), Some(b("3")));

        // A checkpoint beyond the changelog's end: refused unless told to wipe (a cluster's
        // new leader may not expose the whole changelog yet), then wiped.
        log.delete_topic(&topic).unwrap();
        log.ensure_topic(changelog_spec("p", "s", 2)).unwrap();
        assert!(matches!(
            restore_task(
                log,
                &*state,
                "p",
                1,
                &stores,
                WhenBehind::Refuse,
                &mut |_| {}
            ),
            Err(RestoreError::ChangelogBehind { end: 0, .. })
        ));
        assert_eq!(
            state.get("s", b"c").unwrap(),
            Some(b("3")),
            "nothing wiped yet"
        );
        let out =
            restore_task(log, &*state, "p", 1, &stores, WhenBehind::Wipe, &mut |_| {}).unwrap();
        assert!(out.from_empty);
        assert_eq!(state.get("s", b"c").unwrap(), None);
    }

    #[test]
    fn a_pass_cut_short_by_an_error_is_resumed_not_rebuilt_from_empty() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(BrokerConfig::new(dir.path())).unwrap();
        let log = crate::faulty_log::FaultyLog::new(broker);
        log.ensure_topic(changelog_spec("p", "s", 1)).unwrap();
        let topic = changelog_topic("p", "s");
        let first = vec![(b("a"), Some(b("1"))), (b("b"), Some(b("2")))];
        log.produce(&topic, to_records(&first, 0)).unwrap();
        let backend = MemoryBackend::new();
        let state = backend.open(&TaskId::new("p", 0)).unwrap();
        let stores = vec!["s".to_string()];
        restore_task(
            &log,
            &*state,
            "p",
            0,
            &stores,
            WhenBehind::Refuse,
            &mut |_| {},
        )
        .unwrap();

        // Two more records; the leader dies under the read of the second.
        let more = vec![(b("c"), Some(b("3"))), (b("a"), Some(b("4")))];
        log.produce(&topic, to_records(&more, 0)).unwrap();
        log.set_visible(3);
        log.set_reads_fail(true);
        let e = restore_task(
            &log,
            &*state,
            "p",
            0,
            &stores,
            WhenBehind::Refuse,
            &mut |_| {},
        )
        .unwrap_err();
        assert!(e.retriable(), "{e:?}");
        // What was there is still there: a standby keeps answering from it.
        assert_eq!(state.meta(META_DIRTY).unwrap(), None);
        assert_eq!(state.get("s", b"b").unwrap(), Some(b("2")));

        // The next pass goes on from the checkpoint, not from empty, to the same end state.
        log.set_reads_fail(false);
        log.set_visible(i64::MAX);
        let mut from_empty_seen = false;
        let out = restore_task(
            &log,
            &*state,
            "p",
            0,
            &stores,
            WhenBehind::Refuse,
            &mut |p| from_empty_seen |= p.from_empty,
        )
        .unwrap();
        assert!(!out.from_empty && !from_empty_seen);
        assert_eq!(out.checkpoints["s"], 4);
        assert_eq!(state.get("s", b"a").unwrap(), Some(b("4")));
        assert_eq!(state.get("s", b"c").unwrap(), Some(b("3")));
    }

    #[test]
    fn a_read_stopping_short_of_the_end_checkpoints_only_what_was_applied() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(BrokerConfig::new(dir.path())).unwrap();
        let log = crate::faulty_log::FaultyLog::new(broker);
        log.set_visible(2);
        log.ensure_topic(changelog_spec("p", "s", 1)).unwrap();
        let topic = changelog_topic("p", "s");
        let entries = vec![
            (b("a"), Some(b("1"))),
            (b("b"), Some(b("2"))),
            (b("c"), Some(b("3"))),
            (b("d"), Some(b("4"))),
        ];
        log.produce(&topic, to_records(&entries, 0)).unwrap();
        let backend = MemoryBackend::new();
        let state = backend.open(&TaskId::new("p", 0)).unwrap();
        let stores = vec!["s".to_string()];

        // Offsets say 4, reads give 2: the store holds a consistent prefix checkpointed at
        // 2 (not at 4: c and d would be missing for good), and the caller is told.
        let e = restore_task(
            &log,
            &*state,
            "p",
            0,
            &stores,
            WhenBehind::Refuse,
            &mut |_| {},
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                RestoreError::ChangelogShort {
                    reached: 2,
                    end: 4,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.retriable());
        assert_eq!(state.get("s", b"b").unwrap(), Some(b("2")));
        assert_eq!(state.get("s", b"c").unwrap(), None);
        assert_eq!(
            state.meta(META_DIRTY).unwrap(),
            None,
            "a usable prefix, not dirty"
        );
        assert_eq!(
            parse_checkpoint(state.meta(&checkpoint_meta("s")).unwrap()),
            Some(2)
        );

        // The leader exposes the rest: the next restoration reads only the tail.
        log.set_visible(i64::MAX);
        let out = restore_task(
            &log,
            &*state,
            "p",
            0,
            &stores,
            WhenBehind::Refuse,
            &mut |_| {},
        )
        .unwrap();
        assert!(!out.from_empty);
        assert_eq!(out.records, 2);
        assert_eq!(out.checkpoints["s"], 4);
        assert_eq!(state.get("s", b"d").unwrap(), Some(b("4")));
    }
}
