//! A bounded cache of open segment and index files, shared by every partition of a node, so
//! the number of files a node holds open does not grow with its partitions and segments.
//! Each file a segment owns is a [`CachedFile`]: a path plus a slot that holds its open
//! descriptor while the cache keeps it. A file is opened on first use and reopened on demand
//! after eviction; when more than `capacity` files are open the least recently used one is
//! closed (CLOCK, an approximation of LRU: a use sets a bit, the sweeping hand clears it and
//! closes the first file whose bit is clear). The hot path (a file in the cache) takes only
//! the file's own lock; the node-wide lock is taken when a file is opened.
//!
//! This module owns descriptors only; what is in the files is the segment's business. A
//! caller holding the `Arc<File>` of an evicted file keeps that descriptor until it drops it.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Capacity of [`FileCache::default`] (tests, benchmarks, a partition opened on its own).
pub const DEFAULT_CAPACITY: usize = 1024;

/// The node's bounded set of open segment and index files.
#[derive(Debug)]
pub struct FileCache {
    capacity: usize,
    clock: Mutex<Clock>,
    open: AtomicUsize,
    opens: AtomicU64,
    evictions: AtomicU64,
}

#[derive(Debug, Default)]
struct Clock {
    /// Slots that may hold an open file (closed ones are dropped as the hand passes).
    ring: Vec<Arc<Slot>>,
    hand: usize,
}

#[derive(Debug)]
struct Slot {
    path: PathBuf,
    file: Mutex<Option<Arc<File>>>,
    referenced: AtomicBool,
    /// True while the slot is in the ring (at most once).
    in_ring: AtomicBool,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, Option<Arc<File>>> {
        self.file.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Counters of a [`FileCache`] (for metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileCacheStats {
    pub capacity: usize,
    pub open: usize,
    pub opens: u64,
    pub evictions: u64,
}

impl Default for FileCache {
    fn default() -> Self {
        FileCache::new(DEFAULT_CAPACITY)
    }
}

impl FileCache {
    /// A cache that keeps at most `capacity` files open (at least 2: a log and its index).
    pub fn new(capacity: usize) -> FileCache {
        FileCache {
            capacity: capacity.max(2),
            clock: Mutex::new(Clock::default()),
            open: AtomicUsize::new(0),
            opens: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn stats(&self) -> FileCacheStats {
        FileCacheStats {
            capacity: self.capacity,
            open: self.open.load(Ordering::Relaxed),
            opens: self.opens.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }

    fn clock(&self) -> MutexGuard<'_, Clock> {
        self.clock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Accounts for a file just put in `slot` (whose lock the caller holds) and closes the
    /// least recently used files while more than `capacity` are open.
    fn admit(&self, slot: &Arc<Slot>) {
        let mut clock = self.clock();
        self.open.fetch_add(1, Ordering::Relaxed);
        if !slot.in_ring.swap(true, Ordering::Relaxed) {
            clock.ring.push(Arc::clone(slot));
        }
        // Every slot is passed at most twice (once to clear its bit, once to close it).
        let mut budget = clock.ring.len() * 2 + 1;
        while self.open.load(Ordering::Relaxed) > self.capacity && budget > 0 {
            budget -= 1;
            if clock.ring.is_empty() {
                break;
            }
            if clock.hand >= clock.ring.len() {
                clock.hand = 0;
            }
            let hand = clock.hand;
            let victim = Arc::clone(&clock.ring[hand]);
            // The slot being admitted is locked by our caller; busy slots are in use.
            let Ok(mut file) = victim.file.try_lock() else {
                clock.hand += 1;
                continue;
            };
            if file.is_none() {
                victim.in_ring.store(false, Ordering::Relaxed);
                clock.ring.swap_remove(hand);
                continue;
            }
            if victim.referenced.swap(false, Ordering::Relaxed) {
                clock.hand += 1;
                continue;
            }
            *file = None;
            drop(file);
            victim.in_ring.store(false, Ordering::Relaxed);
            clock.ring.swap_remove(hand);
            self.open.fetch_sub(1, Ordering::Relaxed);
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        // Slots of files closed by their owners are dropped from the ring in bulk when they
        // outnumber the open ones (after a topic with many partitions is deleted).
        let open = self.open.load(Ordering::Relaxed);
        if clock.ring.len() > 2 * open + 64 {
            clock.ring.retain(|s| match s.file.try_lock() {
                Ok(f) if f.is_none() => {
                    s.in_ring.store(false, Ordering::Relaxed);
                    false
                }
                _ => true,
            });
            clock.hand = 0;
        }
    }
}

/// How a [`CachedFile`] is reopened after eviction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reopen {
    /// Read and write; the file must exist (a segment's log).
    MustExist,
    /// Read and write; created empty if missing (an index, which is a cache of its log).
    CreateIfMissing,
}

/// One file reached through a [`FileCache`].
#[derive(Debug)]
pub struct CachedFile {
    slot: Arc<Slot>,
    cache: Arc<FileCache>,
    reopen: Reopen,
}

impl CachedFile {
    /// A file the caller has just opened (it goes into the cache, which may close others).
    pub fn with_open(cache: &Arc<FileCache>, path: PathBuf, file: File, reopen: Reopen) -> Self {
        let cf = CachedFile {
            slot: Arc::new(Slot {
                path,
                file: Mutex::new(None),
                referenced: AtomicBool::new(true),
                in_ring: AtomicBool::new(false),
            }),
            cache: Arc::clone(cache),
            reopen,
        };
        {
            let mut guard = cf.slot.lock();
            *guard = Some(Arc::new(file));
            cf.cache.admit(&cf.slot);
        }
        cf
    }

    pub fn path(&self) -> &Path {
        &self.slot.path
    }

    /// The open file, reopened if the cache closed it.
    #[inline]
    pub fn get(&self) -> io::Result<Arc<File>> {
        let mut guard = self.slot.lock();
        if let Some(f) = guard.as_ref() {
            self.slot.referenced.store(true, Ordering::Relaxed);
            return Ok(Arc::clone(f));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(self.reopen == Reopen::CreateIfMissing)
            .truncate(false)
            .open(&self.slot.path)?;
        let file = Arc::new(file);
        *guard = Some(Arc::clone(&file));
        self.slot.referenced.store(true, Ordering::Relaxed);
        self.cache.opens.fetch_add(1, Ordering::Relaxed);
        self.cache.admit(&self.slot);
        Ok(file)
    }

    /// Whether the descriptor is open now (tests).
    pub fn is_open(&self) -> bool {
        self.slot.lock().is_some()
    }

    /// Closes the descriptor (it is reopened on the next [`get`](Self::get)).
    pub fn close(&self) {
        if self.slot.lock().take().is_some() {
            self.cache.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for CachedFile {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    fn files(dir: &Path, cache: &Arc<FileCache>, n: usize) -> Vec<CachedFile> {
        (0..n)
            .map(|i| {
                let path = dir.join(format!("{i}.log"));
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&path)
                    .unwrap();
                f.write_all_at(format!("file {i}").as_bytes(), 0).unwrap();
                CachedFile::with_open(cache, path, f, Reopen::MustExist)
            })
            .collect()
    }

    fn content(f: &CachedFile) -> String {
        let file = f.get().unwrap();
        let mut buf = vec![0u8; 32];
        let n = file.read_at(&mut buf, 0).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn never_more_than_capacity_open_and_evicted_files_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(FileCache::new(8));
        let fs = files(dir.path(), &cache, 100);
        assert!(cache.stats().open <= 8, "{:?}", cache.stats());
        assert_eq!(
            fs.iter().filter(|f| f.is_open()).count(),
            cache.stats().open
        );
        for round in 0..3 {
            for (i, f) in fs.iter().enumerate() {
                assert_eq!(content(f), format!("file {i}"), "round {round}");
                assert!(cache.stats().open <= 8);
            }
        }
        assert!(cache.stats().evictions >= 92);
        drop(fs);
        assert_eq!(cache.stats().open, 0);
    }

    #[test]
    fn recently_used_files_stay_open() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(FileCache::new(4));
        let hot = files(dir.path(), &cache, 1).pop().unwrap();
        let sub = dir.path().join("cold");
        std::fs::create_dir(&sub).unwrap();
        let cold = files(&sub, &cache, 50);
        for f in &cold {
            hot.get().unwrap();
            f.get().unwrap();
            assert!(hot.is_open());
        }
    }

    #[test]
    fn a_deleted_log_is_an_error_and_an_index_is_recreated() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(FileCache::new(2));
        let mut fs = files(dir.path(), &cache, 2);
        let idx_path = dir.path().join("x.index");
        let idx = CachedFile::with_open(
            &cache,
            idx_path.clone(),
            File::create(&idx_path).unwrap(),
            Reopen::CreateIfMissing,
        );
        fs[0].close();
        idx.close();
        std::fs::remove_file(fs[0].path()).unwrap();
        std::fs::remove_file(&idx_path).unwrap();
        assert!(fs[0].get().is_err());
        idx.get().unwrap();
        assert!(idx_path.exists());
        fs.clear();
    }
}
