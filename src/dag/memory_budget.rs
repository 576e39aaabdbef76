//! Sharing `run --memory` between stages that run at once. Each stage says what it will hold,
//! from the size of its inputs ([`Stage::memory`](super::stage::Stage::memory)); one that would
//! take the running stages past the budget waits for them, as a stage waits for a job slot.
//! A stage that spills (SQL) works in whatever it is given: a part of the budget, its pool.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

const MIB: u64 = 1 << 20;

/// What a stage needs while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryNeed {
    /// About this many bytes, whatever else runs (it holds its tables in memory).
    Holds(u64),
    /// Any pool it is given: it spills past it.
    Spills,
}

#[derive(Debug, Clone)]
pub struct MemoryBudget {
    total: u64,
    jobs: u64,
    /// One permit per MiB.
    permits: Arc<Semaphore>,
}

/// Held while the stage runs; gives its memory back when dropped (also on failure).
#[derive(Debug)]
pub struct Reservation {
    pub bytes: u64,
    _permit: OwnedSemaphorePermit,
}

impl MemoryBudget {
    pub fn new(total: u64, jobs: usize) -> MemoryBudget {
        let total = total.max(MIB);
        MemoryBudget { total, jobs: jobs.max(1) as u64, permits: Arc::new(Semaphore::new((total / MIB) as usize)) }
    }

    /// What a stage with `need` reserves: what it holds (the whole budget at most, so a stage
    /// larger than the budget runs alone rather than never), or for a stage that spills an
    /// equal part of the budget for each job slot.
    pub fn reservation(&self, need: MemoryNeed) -> u64 {
        match need {
            MemoryNeed::Holds(bytes) => bytes.clamp(MIB, self.total),
            MemoryNeed::Spills => (self.total / self.jobs).max(MIB),
        }
    }

    /// MiB of the budget the running stages hold now.
    pub fn held_mib(&self) -> u64 {
        self.total / MIB - self.permits.available_permits() as u64
    }

    /// Waits until `bytes` fit beside what runs; `on_wait` is called first if they do not.
    pub async fn reserve(&self, bytes: u64, on_wait: impl FnOnce(u64)) -> Reservation {
        let mib = bytes.div_ceil(MIB).clamp(1, self.total / MIB) as u32;
        let permit = match self.permits.clone().try_acquire_many_owned(mib) {
            Ok(p) => p,
            Err(_) => {
                on_wait(self.held_mib());
                self.permits.clone().acquire_many_owned(mib).await.expect("the budget's semaphore is never closed")
            }
        };
        Reservation { bytes: u64::from(mib) * MIB, _permit: permit }
    }
}

/// What a stage's upstream tables take in memory: their Parquet files' uncompressed sizes (as
/// the footers record them), which is about what Arrow holds once they are read.
pub fn table_bytes(path: &std::path::Path) -> u64 {
    use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
    let Ok(file) = std::fs::File::open(path) else { return 0 };
    let Ok(reader) = SerializedFileReader::new(file) else { return 0 };
    reader.metadata().row_groups().iter().map(|g| g.total_byte_size().max(0) as u64).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stages_wait_while_the_budget_is_held_and_large_ones_run_alone() {
        let budget = MemoryBudget::new(100 * MIB, 2);
        assert_eq!(budget.reservation(MemoryNeed::Spills), 50 * MIB, "half for each of two jobs");
        assert_eq!(budget.reservation(MemoryNeed::Holds(500 * MIB)), 100 * MIB, "never more than the budget");
        assert_eq!(budget.reservation(MemoryNeed::Holds(0)), MIB);

        let a = budget.reserve(70 * MIB, |_| panic!("70 of 100 MiB fit")).await;
        assert_eq!(budget.held_mib(), 70);
        // 40 MiB more do not fit: the second stage waits until the first gives its memory back.
        let b = budget.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let second = tokio::spawn(async move { b.reserve(40 * MIB, move |held| tx.send(held).unwrap()).await.bytes });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!second.is_finished(), "40 MiB beside 70 of 100 must wait");
        assert_eq!(rx.recv().unwrap(), 70, "told what the running stages hold");
        drop(a);
        assert_eq!(second.await.unwrap(), 40 * MIB);
    }
}
