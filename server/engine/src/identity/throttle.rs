//! Failure counting per key (client address, user name) in a sliding
//! window: after `max` failures within `window`, attempts are refused until
//! the oldest failure leaves the window.

use crate::time::SECOND_US;
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
        Throttle { max, window_us: window_secs * SECOND_US, clock, failures: Mutex::new(HashMap::new()) }
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
        Some(u64::try_from(oldest + self.window_us - now).unwrap_or(0).div_ceil(SECOND_US as u64).max(1))
    }

    /// Takes a slot before the work it guards (a password hash): counted as
    /// a failure at once, so that concurrent attempts cannot all pass the
    /// check before any of them fails. `Err` holds the seconds to wait.
    /// A success gives the slot back with [`Throttle::refund`].
    pub fn take(&self, key: &str) -> Result<(), u64> {
        let now = self.clock.now_us();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        // Checked and counted under one lock: parallel attempts cannot both pass.
        if let Some(q) = map.get_mut(key) {
            while q.front().is_some_and(|t| *t <= now - self.window_us) {
                q.pop_front();
            }
            if q.len() >= self.max {
                let oldest = q.front().copied().unwrap_or(now);
                return Err(u64::try_from(oldest + self.window_us - now)
                    .unwrap_or(0)
                    .div_ceil(SECOND_US as u64)
                    .max(1));
            }
        }
        self.push(&mut map, key, now);
        Ok(())
    }

    /// Gives back the newest slot of a key (the attempt succeeded).
    pub fn refund(&self, key: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(q) = map.get_mut(key) {
            q.pop_back();
        }
    }

    /// Counts a failure.
    pub fn fail(&self, key: &str) {
        let now = self.clock.now_us();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        self.push(&mut map, key, now);
    }

    fn push(&self, map: &mut HashMap<String, VecDeque<i64>>, key: &str, now: i64) {
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

/// The client's address as the access layer resolved it (the peer, or the
/// forwarded address when the peer is a trusted proxy). Put in a request's
/// extensions by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub std::net::IpAddr);

/// The key an address is throttled under: an IPv4 address as itself, an
/// IPv6 address by its /64 (one subscriber usually holds a whole /64, so
/// per-address limits would be trivially evaded), an IPv4-mapped IPv6
/// address as the IPv4 address.
pub fn address_key(ip: std::net::IpAddr) -> String {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                format!("{net}/64")
            }
        },
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

    #[test]
    fn a_slot_is_taken_before_the_work_and_refunded_after_a_success() {
        let clock = Arc::new(ManualClock::new(1_000_000_000_000));
        let t = Throttle::new(2, 60, clock);
        assert_eq!(t.take("a"), Ok(()));
        assert_eq!(t.take("a"), Ok(()));
        assert!(t.take("a").is_err(), "two attempts in flight use the two slots");
        t.refund("a");
        assert_eq!(t.take("a"), Ok(()), "a success gives its slot back");
    }

    #[test]
    fn ipv6_addresses_are_throttled_per_64_and_mapped_ipv4_as_ipv4() {
        let k = |s: &str| address_key(s.parse().unwrap());
        assert_eq!(k("192.0.2.7"), "192.0.2.7");
        assert_eq!(k("2001:db8:1:2:aaaa::1"), k("2001:db8:1:2:bbbb::99"));
        assert_eq!(k("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
        assert_eq!(k("::ffff:192.0.2.7"), "192.0.2.7");
    }
}
