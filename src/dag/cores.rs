//! Sharing the machine's cores between stages that compute at the same time.
//!
//! A stage that needs a fixed thread count (the LSTM-CNN: libtorch gives the same weights for a
//! seed only with the same number of threads) reserves it with [`Cores::reserve`]; other
//! compute-heavy stages [`Cores::claim`] a share of what is left and ask it for their share
//! whenever they can change their thread count (the forest before each fit). Two forests on
//! 2 cores get one each instead of four threads fighting over two; when one finishes, the other
//! grows back to both.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, Clone)]
pub struct Cores {
    total: usize,
    flexible: Arc<AtomicUsize>,
    reserved: Arc<AtomicUsize>,
}

impl Cores {
    pub fn new(total: usize) -> Cores {
        Cores { total: total.max(1), flexible: Arc::new(AtomicUsize::new(0)), reserved: Arc::new(AtomicUsize::new(0)) }
    }

    /// A share of the cores that follows how many stages are computing.
    pub fn claim(&self) -> Claim {
        self.flexible.fetch_add(1, Ordering::SeqCst);
        Claim { cores: self.clone(), fixed: None }
    }

    /// Like [`Cores::claim`], but first waits (blocking) while reservations hold every core:
    /// squeezing a thread in beside them slows both (libtorch's workers spin while they wait).
    pub fn claim_when_free(&self, on_wait: impl FnOnce()) -> Claim {
        if self.reserved.load(Ordering::SeqCst) >= self.total {
            on_wait();
            while self.reserved.load(Ordering::SeqCst) >= self.total {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
        self.claim()
    }

    /// Exactly `n` threads (0: all cores) for as long as the claim lives.
    pub fn reserve(&self, n: usize) -> Claim {
        let n = if n == 0 { self.total } else { n };
        self.reserved.fetch_add(n, Ordering::SeqCst);
        Claim { cores: self.clone(), fixed: Some(n) }
    }
}

/// Released on drop, also when the stage fails or panics.
#[derive(Debug)]
pub struct Claim {
    cores: Cores,
    fixed: Option<usize>,
}

impl Claim {
    /// Threads to use right now: a reservation's fixed count, or a fair part of the cores
    /// nobody reserved (at least one).
    pub fn fair_share(&self) -> usize {
        if let Some(n) = self.fixed {
            return n;
        }
        let flexible = self.cores.flexible.load(Ordering::SeqCst).max(1);
        let free = self.cores.total.saturating_sub(self.cores.reserved.load(Ordering::SeqCst)).max(1);
        (free / flexible).max(1)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        match self.fixed {
            Some(n) => self.cores.reserved.fetch_sub(n, Ordering::SeqCst),
            None => self.cores.flexible.fetch_sub(1, Ordering::SeqCst),
        };
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

    #[test]
    fn reservations_are_fixed_and_others_share_the_rest() {
        let cores = Cores::new(4);
        let forest = cores.claim();
        let lstm = cores.reserve(3);
        assert_eq!((lstm.fair_share(), forest.fair_share()), (3, 1));
        let all = cores.reserve(0);
        assert_eq!(all.fair_share(), 4);
        assert_eq!(forest.fair_share(), 1, "never below one thread");
        drop((lstm, all));
        assert_eq!(forest.fair_share(), 4);
    }
}
