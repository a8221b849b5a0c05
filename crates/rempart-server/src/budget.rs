//! Back-pressure for well-log batches over HTTP: the bodies being received,
//! parsed and written share one memory budget (`welllog.ingest_memory_bytes`).
//! A batch takes its share before its body is read; while the budget is
//! spent, new batches wait unread, so TCP flow control slows their senders
//! down instead of the server's memory growing with every connection.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The budget is counted in KiB (a semaphore counts in `u32`).
const UNIT: u64 = 1024;
/// A body costs about this many times its size while it is handled: the body,
/// its canonical entries, and the writer's encoded copy.
const COST_FACTOR: u64 = 3;

#[derive(Debug)]
pub struct IngestBudget {
    permits: Arc<Semaphore>,
    total: u32,
}

impl IngestBudget {
    pub fn new(bytes: u64) -> IngestBudget {
        let total = u32::try_from((bytes / UNIT).max(1)).unwrap_or(u32::MAX);
        IngestBudget {
            permits: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    /// What a body of `len` bytes costs, in permits: at most the whole
    /// budget, so that a batch larger than it still runs (alone).
    fn cost(&self, len: u64) -> u32 {
        let units = len.saturating_mul(COST_FACTOR).div_ceil(UNIT).max(1);
        u32::try_from(units).unwrap_or(u32::MAX).min(self.total)
    }

    /// Takes the share of a body of `len` bytes, waiting at most `wait`;
    /// `None` when the budget stayed spent that long. The share comes back
    /// when the permit is dropped.
    pub async fn take(&self, len: u64, wait: Duration) -> Option<OwnedSemaphorePermit> {
        let cost = self.cost(len);
        tokio::time::timeout(wait, self.permits.clone().acquire_many_owned(cost))
            .await
            .ok()?
            .ok()
    }

    /// KiB free now (for tests and metrics).
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batches_wait_for_their_share_and_give_it_back() {
        let budget = IngestBudget::new(3 * 1024 * 1024); // 3 MiB: 3,072 KiB
        let first = budget
            .take(512 * 1024, Duration::from_millis(10))
            .await
            .expect("1.5 MiB of 3");
        let second = budget
            .take(512 * 1024, Duration::from_millis(10))
            .await
            .expect("1.5 MiB more");
        assert_eq!(budget.available(), 0);
        assert!(
            budget.take(1, Duration::from_millis(20)).await.is_none(),
            "the budget is spent: wait, then give up"
        );
        drop(first);
        assert!(budget.take(1, Duration::from_millis(20)).await.is_some());
        drop(second);
        // Larger than the whole budget: it takes all of it, alone.
        let huge = budget
            .take(100 * 1024 * 1024, Duration::from_millis(10))
            .await
            .expect("the whole budget");
        assert_eq!(budget.available(), 0);
        drop(huge);
        assert_eq!(budget.available(), 3072);
    }
}
