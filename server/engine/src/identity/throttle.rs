//! Failure counting per key (client address, user name) in a sliding
//! window: after `max` failures within `window`, attempts are refused until
//! the oldest failure leaves the window.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::clock::Clock;

/// Most keys tracked; beyond it, keys with no recent failure are dropped.
const MAX_KEYS: usize = 100_000;

/// A sliding-window failure counter.
#[derive(Debug)]
pub struct Throttle {
    max: usize,
    window_us: i64,
    clock: Arc<dyn Clock>,
    failures: Mutex<HashMap<String, VecDeque<i64>>>,
}

impl Throttle {
    /// At most `max` failures per `window_secs` per key.
    pub fn new(max: usize, window_secs: i64, clock: Arc<dyn Clock>) -> Self {
        Throttle { max, window_us: window_secs * 1_000_000, clock, failures: Mutex::new(HashMap::new()) }
    }

    /// None when an attempt is allowed, else seconds until it will be.
    pub fn check(&self, key: &str) -> Option<u64> {
        let now = self.clock.now_us();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let q = map.get_mut(key)?;
        while q.front().is_some_and(|t| *t <= now - self.window_us) {
            q.pop_front();
        }
        if q.len() < self.max {
            return None;
        }
        let oldest = q.front().copied().unwrap_or(now);
        Some(u64::try_from(oldest + self.window_us - now).unwrap_or(0).div_ceil(1_000_000).max(1))
    }

    /// Counts a failure.
    pub fn fail(&self, key: &str) {
        let now = self.clock.now_us();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_KEYS {
            let horizon = now - self.window_us;
            map.retain(|_, q| q.back().is_some_and(|t| *t > horizon));
        }
        let q = map.entry(key.to_owned()).or_default();
        q.push_back(now);
        while q.len() > self.max {
            q.pop_front();
        }
    }

    /// Forgets a key's failures (after a success).
    pub fn reset(&self, key: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn refuses_after_max_failures_until_the_window_passes() {
        let clock = Arc::new(ManualClock::new(1_000_000_000_000));
        let t = Throttle::new(3, 60, clock.clone());
        for _ in 0..3 {
            assert_eq!(t.check("10.0.0.1"), None);
            t.fail("10.0.0.1");
        }
        assert_eq!(t.check("10.0.0.1"), Some(60));
        assert_eq!(t.check("10.0.0.2"), None, "keys are independent");
        clock.advance_us(59_000_000);
        assert_eq!(t.check("10.0.0.1"), Some(1));
        clock.advance_us(1_000_000);
        assert_eq!(t.check("10.0.0.1"), None);
        t.fail("x");
        t.reset("x");
        assert_eq!(t.check("x"), None);
    }
}
