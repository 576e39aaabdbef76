//! The per-service state a server keeps, bounded: at most `--max-services` services, the one
//! whose last row is oldest evicted to make room for a new one. A client inventing names can
//! push real services out (they start over from their next row), never lock them out, and
//! memory stays bounded whatever it sends. Each service has its own lock, so one service's
//! inference does not wait for another's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Services by name, each behind its own lock, at most `capacity` of them.
pub struct Bounded<T> {
    capacity: usize,
    inner: Mutex<Inner<T>>,
}

struct Inner<T> {
    entries: HashMap<String, Entry<T>>,
    /// Increases with every use: an entry's `used` is when its service last sent a row.
    clock: u64,
}

struct Entry<T> {
    state: Arc<Mutex<T>>,
    used: u64,
}

/// A service's state, and the service whose state made room for it (if one did).
pub struct Slot<T> {
    pub state: Arc<Mutex<T>>,
    pub evicted: Option<String>,
}

impl<T: Default> Bounded<T> {
    pub fn new(capacity: usize) -> Bounded<T> {
        Bounded { capacity: capacity.max(1), inner: Mutex::new(Inner { entries: HashMap::new(), clock: 0 }) }
    }

    /// The state of `service`, made (and room made for it) if it has none.
    pub fn get(&self, service: &str) -> Slot<T> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.clock += 1;
        let now = inner.clock;
        if let Some(e) = inner.entries.get_mut(service) {
            e.used = now;
            return Slot { state: e.state.clone(), evicted: None };
        }
        let mut evicted = None;
        if inner.entries.len() >= self.capacity {
            // A scan, only when a new service arrives at capacity: 10,000 entries take ~20 µs,
            // less than one decision, and no second structure has to be kept in step.
            if let Some(oldest) = inner.entries.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| k.clone()) {
                inner.entries.remove(&oldest);
                evicted = Some(oldest);
            }
        }
        let state = Arc::new(Mutex::new(T::default()));
        inner.entries.insert(service.to_string(), Entry { state: state.clone(), used: now });
        Slot { state, evicted }
    }

    /// The state of `service` if it has one, without counting as a use.
    pub fn peek(&self, service: &str) -> Option<Arc<Mutex<T>>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).entries.get(service).map(|e| e.state.clone())
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_service_makes_room() {
        let b: Bounded<u32> = Bounded::new(2);
        *b.get("a").state.lock().unwrap() = 1;
        assert_eq!(b.get("b").evicted, None);
        // `a` sends again, so `b` is now the oldest.
        assert_eq!(*b.get("a").state.lock().unwrap(), 1);
        let c = b.get("c");
        assert_eq!(c.evicted.as_deref(), Some("b"));
        assert_eq!(b.len(), 2);
        assert!(b.peek("b").is_none());
        // An evicted service starts over; it is never refused.
        let again = b.get("b");
        assert_eq!((again.evicted.as_deref(), *again.state.lock().unwrap()), (Some("a"), 0));
    }

    #[test]
    fn a_flood_of_names_stays_within_the_bound() {
        let b: Bounded<Vec<u8>> = Bounded::new(100);
        for i in 0..20_000 {
            b.get(&format!("made-up-{i}"));
        }
        assert_eq!(b.len(), 100);
        assert!(b.get("product").evicted.is_some());
        assert!(b.peek("product").is_some());
    }
}
