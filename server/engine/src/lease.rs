//! Leases: a kind of background work (alert evaluation, later each
//! forwarding destination, retention, report schedules) is done by exactly
//! one replica at a time. The holder renews its lease before it lapses; a
//! replica that stops renewing (stopped, crashed, cut off) loses it once it
//! lapses and another takes it over, continuing at the cursor the last
//! holder saved. Every write the work makes is idempotent or fenced by the
//! holder, so two replicas briefly both believing they hold it (a paused
//! process) cannot double anything.
//!
//! What each replica last learnt about its leases is kept in the process
//! (in the ledger handle, [`held_by`]: `/readyz` lists them) and exported as metrics:
//! `custos_lease_held{lease}` (1 while held) and
//! `custos_lease_acquired_total{lease}` (each time this replica took one).

use std::collections::BTreeMap;
use std::sync::Mutex;

use rusqlite::OptionalExtension as _;
use sea_orm::{ConnectionTrait, DbErr};

use crate::ledger::{Ledger, Synced};
use crate::storage::stmt_for;

// The lease's statements. On SQLite they run on the ledger's own connection
// (`Ledger::on_sqlite_writer`): renewed every few seconds, on a pooled
// connection each renewal made SQLite drop the ledger's page cache. Their
// commits are made durable by the WAL's next fsync (`Synced::WithNextCommit`:
// the ledger's next commit, or the background checkpoint within about
// 2 s), not fsynced under the writer's lock.

/// Takes the lease if free or lapsed, or renews it: name, holder, until,
/// now (taken at), now.
const TAKE: &str = "INSERT INTO leases (name, holder, until_us, taken_at, cursor_seq) VALUES (?, ?, ?, ?, -1) \
                    ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_us = excluded.until_us, \
                    taken_at = CASE WHEN leases.holder = excluded.holder THEN leases.taken_at ELSE excluded.taken_at END \
                    WHERE leases.holder = excluded.holder OR leases.until_us < ?";

/// Who holds it after [`TAKE`]: name.
const READ: &str = "SELECT holder, taken_at, cursor_seq FROM leases WHERE name = ?";

/// Saves the cursor and renews: cursor, until, name, holder.
const SAVE: &str = "UPDATE leases SET cursor_seq = ?, until_us = ? WHERE name = ? AND holder = ?";

/// Lets it lapse now: name, holder.
const RELEASE: &str = "UPDATE leases SET until_us = 0 WHERE name = ? AND holder = ?";

fn db_err(e: crate::ledger::LedgerError) -> DbErr {
    DbErr::Custom(e.to_string())
}

/// One lease, as one replica sees it.
#[derive(Debug, Clone)]
pub struct Lease {
    ledger: Ledger,
    name: String,
    holder: String,
    ttl_us: i64,
}

/// A lease held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// How far the work got (the ledger position last saved); `None`
    /// when nobody has saved one yet.
    pub cursor: Option<u64>,
    /// When this replica took it (µs).
    pub taken_at: i64,
}

/// A lease as this replica knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseState {
    /// The lease.
    pub name: String,
    /// This replica holds it: it took or renewed it last, and it has not
    /// lapsed since (a replica that stops renewing no longer claims it).
    pub held: bool,
}

/// By holder, then lease: until when (µs) it is this replica's, if it is.
pub(crate) type Seen = Mutex<BTreeMap<String, BTreeMap<String, Option<i64>>>>;

/// Records what a try learnt: `until` when this replica holds the lease
/// (`taken`: it was just taken rather than renewed).
fn note(ledger: &Ledger, holder: &str, name: &str, until: Option<i64>, taken: bool) {
    let mut seen = ledger.lease_seen().lock().unwrap_or_else(|p| p.into_inner());
    let leases = seen.entry(holder.to_owned()).or_default();
    if taken {
        metrics::counter!("custos_lease_acquired_total", "lease" => name.to_owned()).increment(1);
    }
    metrics::gauge!("custos_lease_held", "lease" => name.to_owned()).set(if until.is_some() { 1.0 } else { 0.0 });
    leases.insert(name.to_owned(), until);
}

/// The leases replica `holder` has tried on `ledger`, by name, each with
/// whether it holds it now.
pub fn held_by(ledger: &Ledger, holder: &str) -> Vec<LeaseState> {
    let now = ledger.now_us();
    let seen = ledger.lease_seen().lock().unwrap_or_else(|p| p.into_inner());
    seen.get(holder)
        .map(|m| {
            m.iter()
                .map(|(name, until)| LeaseState { name: name.clone(), held: until.is_some_and(|u| u > now) })
                .collect()
        })
        .unwrap_or_default()
}

impl Lease {
    /// The lease `name` for this replica (`holder`, unique per process),
    /// lapsing `ttl_us` after the last renewal. Times are the ledger's
    /// clock.
    pub fn new(ledger: Ledger, name: &str, holder: &str, ttl_us: i64) -> Lease {
        Lease { ledger, name: name.to_owned(), holder: holder.to_owned(), ttl_us }
    }

    /// This replica's name for it.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Takes the lease if it is free or lapsed, or renews it if this
    /// replica holds it; `None` when another replica holds it.
    pub async fn acquire(&self) -> Result<Option<Held>, DbErr> {
        // A clock so far ahead of the database server's that the ledger
        // refuses its commits would also see every holder's lease lapsed,
        // and hold what it takes that much longer: it takes and renews none.
        if self.ledger.clock_too_far_ahead().await.is_some() {
            note(&self.ledger, &self.holder, &self.name, None, false);
            return Ok(None);
        }
        let now = self.ledger.now_us();
        let until = now + self.ttl_us;
        let (name, holder) = (self.name.clone(), self.holder.clone());
        let direct = self
            .ledger
            .on_sqlite_writer(Synced::WithNextCommit, move |c| {
                c.prepare_cached(TAKE)?.execute(rusqlite::params![name, holder, until, now, now])?;
                let row = c
                    .prepare_cached(READ)?
                    .query_row(rusqlite::params![name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()?;
                Ok(row)
            })
            .await;
        let row: Option<(String, i64, i64)> = match direct {
            Some(row) => row.map_err(db_err)?,
            None => {
                let db = self.ledger.db();
                let b = db.backend();
                db.conn()
                    .execute_raw(stmt_for(
                        b,
                        TAKE,
                        vec![
                            self.name.clone().into(),
                            self.holder.clone().into(),
                            until.into(),
                            now.into(),
                            now.into(),
                        ],
                    ))
                    .await?;
                let row = db.conn().query_one_raw(stmt_for(b, READ, vec![self.name.clone().into()])).await?;
                row.map(|r| -> Result<_, DbErr> {
                    Ok((r.try_get("", "holder")?, r.try_get("", "taken_at")?, r.try_get("", "cursor_seq")?))
                })
                .transpose()?
            }
        };
        let Some((holder, taken_at, cursor_seq)) = row else {
            note(&self.ledger, &self.holder, &self.name, None, false);
            return Ok(None);
        };
        if holder != self.holder {
            note(&self.ledger, &self.holder, &self.name, None, false);
            return Ok(None);
        }
        let held = Held { cursor: u64::try_from(cursor_seq).ok(), taken_at };
        note(&self.ledger, &self.holder, &self.name, Some(now + self.ttl_us), held.taken_at == now);
        Ok(Some(held))
    }

    /// Saves how far the work got and renews the lease; false when another
    /// replica holds it (then this one must stop: it took over). A lease
    /// that lapsed and that nobody took is still this replica's.
    pub async fn save(&self, cursor: u64) -> Result<bool, DbErr> {
        let now = self.ledger.now_us();
        let until = now + self.ttl_us;
        let (name, holder) = (self.name.clone(), self.holder.clone());
        let direct = self
            .ledger
            .on_sqlite_writer(Synced::WithNextCommit, move |c| {
                Ok(c.prepare_cached(SAVE)?.execute(rusqlite::params![cursor as i64, until, name, holder])? as u64)
            })
            .await;
        let updated = match direct {
            Some(n) => n.map_err(db_err)?,
            None => {
                let db = self.ledger.db();
                db.conn()
                    .execute_raw(stmt_for(
                        db.backend(),
                        SAVE,
                        vec![
                            (cursor as i64).into(),
                            until.into(),
                            self.name.clone().into(),
                            self.holder.clone().into(),
                        ],
                    ))
                    .await?
                    .rows_affected()
            }
        };
        let kept = updated == 1;
        note(&self.ledger, &self.holder, &self.name, kept.then_some(until), false);
        Ok(kept)
    }

    /// Gives the lease up at once (a clean stop), so another replica need
    /// not wait for it to lapse.
    pub async fn release(&self) -> Result<(), DbErr> {
        // Not claimed from now on, whether or not the write goes through
        // (if it does not, the lease lapses on its own).
        note(&self.ledger, &self.holder, &self.name, None, false);
        let (name, holder) = (self.name.clone(), self.holder.clone());
        let direct = self
            .ledger
            .on_sqlite_writer(Synced::WithNextCommit, move |c| {
                c.prepare_cached(RELEASE)?.execute(rusqlite::params![name, holder])?;
                Ok(())
            })
            .await;
        match direct {
            Some(done) => done.map_err(db_err)?,
            None => {
                let db = self.ledger.db();
                db.conn()
                    .execute_raw(stmt_for(
                        db.backend(),
                        RELEASE,
                        vec![self.name.clone().into(), self.holder.clone().into()],
                    ))
                    .await?;
            }
        }
        Ok(())
    }

    /// Who holds `name` now, and until when (µs), if anyone does.
    pub async fn current(ledger: &Ledger, name: &str) -> Result<Option<(String, i64)>, DbErr> {
        let db = ledger.db();
        let row = db
            .conn()
            .query_one_raw(stmt_for(
                db.backend(),
                "SELECT holder, until_us FROM leases WHERE name = ?",
                vec![name.into()],
            ))
            .await?;
        let Some(row) = row else { return Ok(None) };
        let until: i64 = row.try_get("", "until_us")?;
        Ok((until >= ledger.now_us()).then(|| row.try_get("", "holder")).transpose()?.map(|h| (h, until)))
    }
}
