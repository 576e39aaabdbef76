//! The memory budget of a SQL stage: what can spill is held to `run --memory`; what cannot
//! (a Parquet writer's row group, a hash table that has no spill path) is counted, not refused.
//!
//! DataFusion's own pools limit both kinds together, and then a sort that took the whole budget
//! (it spills only when refused) leaves nothing for the writer behind it: the query fails that
//! would have fitted. Here the spilling operators share the budget fairly (FairSpillPool), so a
//! sort, join or aggregation larger than the budget goes to disk instead of growing the process.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::common::Result;
use datafusion::execution::memory_pool::{FairSpillPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation};

#[derive(Debug)]
pub struct SpillBudget {
    spillable: FairSpillPool,
    limit: usize,
    other: AtomicUsize,
}

impl SpillBudget {
    pub fn new(limit: usize) -> SpillBudget {
        SpillBudget { spillable: FairSpillPool::new(limit), limit, other: AtomicUsize::new(0) }
    }
}

impl fmt::Display for SpillBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "spill budget of {} bytes for operators that can spill", self.limit)
    }
}

impl MemoryPool for SpillBudget {
    fn name(&self) -> &str {
        "spill_budget"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        if consumer.can_spill() {
            self.spillable.register(consumer);
        }
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        if consumer.can_spill() {
            self.spillable.unregister(consumer);
        }
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        if reservation.consumer().can_spill() {
            self.spillable.grow(reservation, additional);
        } else {
            self.other.fetch_add(additional, Ordering::Relaxed);
        }
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        if reservation.consumer().can_spill() {
            self.spillable.shrink(reservation, shrink);
        } else {
            self.other.fetch_sub(shrink, Ordering::Relaxed);
        }
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        if reservation.consumer().can_spill() {
            self.spillable.try_grow(reservation, additional)
        } else {
            self.other.fetch_add(additional, Ordering::Relaxed);
            Ok(())
        }
    }

    fn reserved(&self) -> usize {
        self.spillable.reserved() + self.other.load(Ordering::Relaxed)
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn only_what_can_spill_is_refused() {
        let pool: Arc<dyn MemoryPool> = Arc::new(SpillBudget::new(100));
        let sort = MemoryConsumer::new("sort").with_can_spill(true).register(&pool);
        let writer = MemoryConsumer::new("writer").register(&pool);
        sort.try_grow(100).unwrap();
        assert!(sort.try_grow(1).is_err(), "the spilling operator is held to the budget");
        writer.try_grow(1000).unwrap();
        assert_eq!(pool.reserved(), 1100);
        drop(writer);
        drop(sort);
        assert_eq!(pool.reserved(), 0);
    }
}
