//! The node-wide budget for in-flight Kafka request bytes (Kafka's
//! `queued.max.request.bytes`): before a connection reads the body of a frame larger than
//! its read-ahead buffer, it takes the frame's announced size from this pool and holds it
//! until the request has been handled. A connection that finds the pool empty waits (its
//! socket is not read) until others finish, so however many clients announce large frames,
//! the bytes buffered for them stay under the pool's size. Owns only the accounting.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Default size of the pool (256 MiB): a few maximal (100 MiB) requests at once.
pub const DEFAULT_QUEUED_MAX_REQUEST_BYTES: usize = 256 * 1024 * 1024;

/// A shared budget of request bytes.
#[derive(Debug, Clone)]
pub struct MemoryPool {
    sem: Arc<Semaphore>,
    capacity: usize,
}

/// Bytes taken from a [`MemoryPool`]; given back when dropped.
#[derive(Debug)]
pub struct PoolPermit {
    _permit: Option<OwnedSemaphorePermit>,
}

impl PoolPermit {
    /// A permit for bytes the pool does not account (frames within the read-ahead buffer).
    pub fn unaccounted() -> PoolPermit {
        PoolPermit { _permit: None }
    }
}

impl MemoryPool {
    pub fn new(capacity: usize) -> MemoryPool {
        let capacity = capacity.min(Semaphore::MAX_PERMITS);
        MemoryPool {
            sem: Arc::new(Semaphore::new(capacity)),
            capacity,
        }
    }

    /// Waits until `bytes` (at most the pool's capacity, larger requests are clamped to it)
    /// are free and takes them.
    pub async fn acquire(&self, bytes: usize) -> PoolPermit {
        let n = bytes.min(self.capacity).min(u32::MAX as usize) as u32;
        // The semaphore is never closed, so acquiring cannot fail.
        let permit = self.sem.clone().acquire_many_owned(n).await.ok();
        PoolPermit { _permit: permit }
    }

    /// Bytes free now.
    pub fn available(&self) -> usize {
        self.sem.available_permits()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_request_waits_until_the_budget_is_back() {
        let pool = MemoryPool::new(100);
        let a = pool.acquire(60).await;
        assert_eq!(pool.available(), 40);
        let p = pool.clone();
        let waiting = tokio::spawn(async move { p.acquire(60).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        drop(a);
        let b = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(pool.available(), 40);
        drop(b);
        assert_eq!(pool.available(), 100);
    }
}
