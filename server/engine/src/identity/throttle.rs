//! Failure counting per key (client address, user name) in a sliding
//! window: after `max` failures within `window`, attempts are refused until
//! the oldest failure leaves the window.

use crate::time::SECOND_US;
use sea_orm::ConnectionTrait as _;
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
        Some(self.retry_secs(q.front().copied(), now))
    }

    /// Seconds until the oldest counted attempt (at `oldest`) leaves the
    /// window: at least one.
    fn retry_secs(&self, oldest: Option<i64>, now: i64) -> u64 {
        u64::try_from(oldest.unwrap_or(now) + self.window_us - now).unwrap_or(0).div_ceil(SECOND_US as u64).max(1)
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
                return Err(self.retry_secs(q.front().copied(), now));
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

/// A throttle that replicas share: counted in memory (exact for this
/// process, and answering floods without a query), and on PostgreSQL also
/// in `throttle_hits`, where every replica counts and reads the same key's
/// attempts, so that spreading attempts over replicas buys no more. Keys
/// are stored as keyed pseudonyms (a typed name may be a password; an
/// address is personal data). A slot is taken in one statement under a
/// per-key advisory lock, tried, not waited for: an attempt on a key whose
/// count another attempt is taking is refused at once (retry in a second),
/// so that a burst neither outruns the count nor holds connections. When
/// the table cannot be reached the memory's verdict stands (the sign-in
/// then fails on the database anyway).
#[derive(Debug)]
pub struct SharedThrottle {
    local: Throttle,
    shared: Option<(crate::ledger::Ledger, &'static str)>,
}

impl SharedThrottle {
    /// `scope` names this throttle in the table; the table is used on
    /// PostgreSQL only.
    pub fn new(local: Throttle, ledger: &crate::ledger::Ledger, scope: &'static str) -> Self {
        let shared = (ledger.db().kind() == crate::storage::DbKind::Postgres).then(|| (ledger.clone(), scope));
        SharedThrottle { local, shared }
    }

    /// The key as stored: a keyed pseudonym.
    fn stored(ledger: &crate::ledger::Ledger, key: &str) -> String {
        ledger.keys().pseudonym(key)
    }

    fn horizon(&self) -> i64 {
        self.local.clock.now_us() - self.local.window_us
    }

    /// The seconds to wait when `n` attempts (the oldest at `oldest`) fill
    /// the window.
    fn wait(&self, n: i64, oldest: Option<i64>) -> Option<u64> {
        (usize::try_from(n).unwrap_or(usize::MAX) >= self.local.max)
            .then(|| self.local.retry_secs(oldest, self.local.clock.now_us()))
    }

    async fn count(&self, key: &str) -> Result<Option<u64>, sea_orm::DbErr> {
        let Some((ledger, scope)) = &self.shared else { return Ok(None) };
        let db = ledger.db();
        let row = db
            .conn()
            .query_one_raw(db.stmt(
                "SELECT COUNT(*) AS n, MIN(at_us) AS oldest FROM throttle_hits \
                 WHERE scope = ? AND key = ? AND at_us > ?",
                vec![(*scope).into(), Self::stored(ledger, key).into(), self.horizon().into()],
            ))
            .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(self.wait(r.try_get("", "n")?, r.try_get("", "oldest")?))
    }

    /// One statement: try the key's lock; count its attempts in the
    /// window; delete those that left it; count this one if there is room.
    async fn take_shared(&self, key: &str) -> Result<Result<(), u64>, sea_orm::DbErr> {
        let Some((ledger, scope)) = &self.shared else { return Ok(Ok(())) };
        let db = ledger.db();
        let (key, horizon, now) = (Self::stored(ledger, key), self.horizon(), self.local.clock.now_us());
        let max = i64::try_from(self.local.max).unwrap_or(i64::MAX);
        let row = db
            .conn()
            .query_one_raw(db.stmt(
                "WITH l AS (SELECT pg_try_advisory_xact_lock(hashtextextended(?, 0)) AS got), \
                 c AS (SELECT COUNT(*) AS n, MIN(at_us) AS oldest FROM throttle_hits \
                       WHERE scope = ? AND key = ? AND at_us > ?), \
                 d AS (DELETE FROM throttle_hits WHERE scope = ? AND key = ? AND at_us <= ? AND (SELECT got FROM l)), \
                 i AS (INSERT INTO throttle_hits (scope, key, at_us) SELECT ?, ?, ? FROM l, c \
                       WHERE l.got AND c.n < ? RETURNING id) \
                 SELECT l.got, c.n, c.oldest FROM l, c",
                vec![
                    format!("custos-throttle:{scope}:{key}").into(),
                    (*scope).into(),
                    key.clone().into(),
                    horizon.into(),
                    (*scope).into(),
                    key.clone().into(),
                    horizon.into(),
                    (*scope).into(),
                    key.into(),
                    now.into(),
                    max.into(),
                ],
            ))
            .await?;
        let Some(r) = row else { return Ok(Ok(())) };
        if !r.try_get::<bool>("", "got")? {
            return Ok(Err(1));
        }
        Ok(match self.wait(r.try_get("", "n")?, r.try_get("", "oldest")?) {
            Some(secs) => Err(secs),
            None => Ok(()),
        })
    }

    async fn write(&self, sql: &str, key: &str, with_time: bool) -> Result<(), sea_orm::DbErr> {
        let Some((ledger, scope)) = &self.shared else { return Ok(()) };
        let db = ledger.db();
        let mut values = vec![(*scope).into(), Self::stored(ledger, key).into()];
        if with_time {
            values.push(self.local.clock.now_us().into());
        }
        db.conn().execute_raw(db.stmt(sql, values)).await?;
        Ok(())
    }

    /// None when an attempt is allowed, else seconds until it will be.
    pub async fn check(&self, key: &str) -> Option<u64> {
        if let Some(secs) = self.local.check(key) {
            return Some(secs);
        }
        self.count(key).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the shared sign-in throttle; this replica's count stands");
            None
        })
    }

    /// Takes a slot before the work it guards (see [`Throttle::take`]), on
    /// this replica and then in the shared count.
    pub async fn take(&self, key: &str) -> Result<(), u64> {
        self.local.take(key)?;
        match self.take_shared(key).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(secs)) => {
                self.local.refund(key);
                Err(secs)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot count in the shared sign-in throttle; this replica's count stands");
                Ok(())
            }
        }
    }

    /// Gives back the newest slot of a key (the attempt succeeded).
    pub async fn refund(&self, key: &str) {
        self.local.refund(key);
        let sql = "DELETE FROM throttle_hits WHERE id = \
                   (SELECT MAX(id) FROM throttle_hits WHERE scope = ? AND key = ?)";
        if let Err(e) = self.write(sql, key, false).await {
            tracing::warn!(error = %e, "cannot give back a slot of the shared sign-in throttle");
        }
    }

    /// Counts a failure.
    pub async fn fail(&self, key: &str) {
        self.local.fail(key);
        let sql = "INSERT INTO throttle_hits (scope, key, at_us) VALUES (?, ?, ?)";
        if let Err(e) = self.write(sql, key, true).await {
            tracing::warn!(error = %e, "cannot count a failure in the shared sign-in throttle");
        }
    }

    /// Forgets a key's failures (after a success).
    pub async fn reset(&self, key: &str) {
        self.local.reset(key);
        if let Err(e) = self.write("DELETE FROM throttle_hits WHERE scope = ? AND key = ?", key, false).await {
            tracing::warn!(error = %e, "cannot reset the shared sign-in throttle");
        }
    }
}

/// Deletes the shared throttles' counts older than `horizon_us` (the
/// identity service's sweep, every 10 minutes). Returns how many went.
pub async fn sweep_shared(db: &crate::storage::Database, horizon_us: i64) -> Result<u64, sea_orm::DbErr> {
    let r =
        db.conn().execute_raw(db.stmt("DELETE FROM throttle_hits WHERE at_us < ?", vec![horizon_us.into()])).await?;
    Ok(r.rows_affected())
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
