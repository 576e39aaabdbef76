//! Sharing the machine's cores between stages that compute at the same time.
//!
//! Each compute-heavy stage holds a [`Claim`] while it works and asks it for its fair share
//! whenever it can change its thread count (the LSTM-CNN before every epoch, the forest before
//! each fit). Two trainings on 2 cores get one each instead of four threads fighting over two;
//! when one finishes, the other grows back to all of them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct Cores {
    total: usize,
    busy: Arc<AtomicUsize>,
}

impl Cores {
    pub fn new(total: usize) -> Cores {
        Cores { total: total.max(1), busy: Arc::new(AtomicUsize::new(0)) }
    }

    pub fn total(&self) -> usize {
        self.total
    }

    pub fn claim(&self) -> Claim {
        self.busy.fetch_add(1, Ordering::SeqCst);
        Claim { cores: self.clone() }
    }
}

/// Released on drop, also when the stage fails or panics.
#[derive(Debug)]
pub struct Claim {
    cores: Cores,
}

impl Claim {
    /// This claim's share of the cores right now: at least one.
    pub fn fair_share(&self) -> usize {
        let busy = self.cores.busy.load(Ordering::SeqCst).max(1);
        (self.cores.total / busy).max(1)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.cores.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_split_the_cores_and_give_them_back() {
        let cores = Cores::new(4);
        let a = cores.claim();
        assert_eq!(a.fair_share(), 4);
        let b = cores.claim();
        let c = cores.claim();
        assert_eq!((a.fair_share(), b.fair_share()), (1, 1));
        drop(c);
        assert_eq!(a.fair_share(), 2);
        drop(b);
        assert_eq!(a.fair_share(), 4);
        assert_eq!(Cores::new(1).claim().fair_share(), 1);
    }
}
