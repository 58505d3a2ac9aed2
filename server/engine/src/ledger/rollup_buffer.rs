//! The dashboards' counts held in memory by SQLite's writer, and written
//! about once a second instead of in every commit (issue 21: writing them
//! per commit cost about a third of ingest).
//!
//! Exactness is kept by `ledger_rollup_pending`: each commit whose counts
//! are held records, in its own transaction, the seqs it committed under
//! this writer's `owner` id; a write of the counts deletes the owner's rows
//! in the same transaction. So an entry is counted in `audit_rollups`
//! exactly when no row covers it, whatever stops when.
//!
//! A writer that stops without writing (killed, power lost) leaves its rows:
//! the next ledger opened on the file counts those entries from the ledger
//! ([`recover`]). Whether a writer is alive is told by an advisory lock on a
//! file next to the database (`<database>-rollups-<owner>.lock`), held from
//! the writer's first held count until its last write; the lock goes with
//! the process, so a file that can be locked belongs to a writer that
//! stopped. Readers of the counts first ask their own ledger to write what
//! it holds ([`crate::ledger::Ledger::settle_rollups`]); counts held by
//! another live process on the same file (a second `custos` writing to it)
//! show up within a second.
//!
//! PostgreSQL replicas write their counts in every commit, as before: each
//! replica's would otherwise need its own liveness on a shared database.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::{Connection, TransactionBehavior, params};

use super::error::LedgerError;
use super::keyring::Keyring;
use super::rollup::{Counts, aggregate, duration_of, write_counts_direct};
use super::types::StoredEntry;

/// How long counts are held before they are written, by default
/// (`LedgerConfig::rollups_every`).
pub const WRITE_EVERY: Duration = Duration::from_secs(1);

/// Most (dimension, value, bucket) keys held (about 100 bytes each) before
/// they are written, whatever their age: events spread over many hours or
/// actors.
pub const MAX_KEYS: usize = 50_000;

/// Counts committed by this writer and not yet written.
#[derive(Debug)]
pub struct Buffer {
    owner: String,
    counts: Counts,
    /// When the oldest held count was committed.
    since: Option<Instant>,
    /// Entries whose counts are held; shared so that a reader can tell
    /// there is nothing to write without taking the writer's lock.
    held: Arc<AtomicU64>,
    db_path: PathBuf,
    /// The lock that says this writer is alive, once it holds counts.
    lock: Option<std::fs::File>,
    /// The lock file could not be made: counts are written in each commit.
    unlockable: bool,
    /// How long counts are held.
    every: Duration,
}

/// What a commit did with its counts, applied to the buffer only once the
/// commit is durable (a failed commit leaves the buffer as it was).
#[derive(Debug)]
pub enum Staged {
    /// Nothing to count.
    Nothing,
    /// The held counts and the batch's were written.
    Written,
    /// The batch's counts, to hold.
    Held { counts: Counts, entries: u64 },
}

fn lock_path(db_path: &Path, owner: &str) -> PathBuf {
    let mut p = db_path.as_os_str().to_owned();
    p.push(format!("-rollups-{owner}.lock"));
    PathBuf::from(p)
}

fn seq(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn delete_pending(tx: &Connection, owner: &str) -> Result<(), LedgerError> {
    tx.prepare_cached("DELETE FROM ledger_rollup_pending WHERE owner = ?1")?.execute(params![owner])?;
    Ok(())
}

impl Buffer {
    /// A buffer for a writer of the SQLite file `db_path`.
    pub fn new(db_path: &Path, every: Duration) -> Buffer {
        Buffer {
            owner: uuid::Uuid::now_v7().to_string(),
            counts: Counts::new(),
            since: None,
            held: Arc::new(AtomicU64::new(0)),
            db_path: db_path.to_owned(),
            lock: None,
            unlockable: false,
            every,
        }
    }

    /// This writer's id in `ledger_rollup_pending`.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// How many entries' counts are held (shared).
    pub fn held(&self) -> Arc<AtomicU64> {
        self.held.clone()
    }

    /// Whether the held counts are old or many enough to be written.
    pub fn due(&self) -> bool {
        self.since.is_some_and(|t| t.elapsed() >= self.every) || self.counts.len() >= MAX_KEYS
    }

    fn ensure_lock(&mut self) -> bool {
        if self.lock.is_some() {
            return true;
        }
        if self.unlockable {
            return false;
        }
        let path = lock_path(&self.db_path, &self.owner);
        let locked = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .and_then(|f| f.try_lock().map(|()| f).map_err(std::io::Error::from));
        match locked {
            Ok(f) => {
                self.lock = Some(f);
                true
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e,
                    "cannot make the rollups' lock file; the dashboards' counts are written in every commit instead");
                self.unlockable = true;
                false
            }
        }
    }

    /// In a commit's transaction, after its entries: writes the held counts
    /// and the batch's when they are due, else records the batch as not
    /// yet counted. Pass the result to [`Buffer::committed`] once the
    /// transaction has committed.
    pub fn stage(
        &mut self,
        tx: &Connection,
        entries: &[StoredEntry],
        durations: &[Option<f64>],
    ) -> Result<Staged, LedgerError> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(Staged::Nothing);
        };
        let counts = aggregate(entries, durations);
        if self.due() || !self.ensure_lock() {
            write_counts_direct(tx, &self.counts)?;
            write_counts_direct(tx, &counts)?;
            delete_pending(tx, &self.owner)?;
            return Ok(Staged::Written);
        }
        tx.prepare_cached("INSERT INTO ledger_rollup_pending (owner, from_seq, through_seq) VALUES (?1, ?2, ?3)")?
            .execute(params![self.owner, seq(first.header.seq), seq(last.header.seq)])?;
        Ok(Staged::Held { counts, entries: entries.len() as u64 })
    }

    /// Applies what a committed transaction did.
    pub fn committed(&mut self, staged: Staged) {
        match staged {
            Staged::Nothing => {}
            Staged::Written => self.clear(),
            Staged::Held { counts, entries } => {
                for (k, n) in counts {
                    *self.counts.entry(k).or_insert(0) += n;
                }
                self.since.get_or_insert_with(Instant::now);
                self.held.fetch_add(entries, Ordering::Relaxed);
            }
        }
    }

    fn clear(&mut self) {
        // A fresh map: a burst's keys are not kept allocated.
        self.counts = Counts::new();
        self.since = None;
        self.held.store(0, Ordering::Relaxed);
    }

    /// Writes the held counts in a transaction of their own.
    pub fn write_now(&mut self, conn: &mut Connection) -> Result<(), LedgerError> {
        if self.since.is_none() {
            return Ok(());
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        write_counts_direct(&tx, &self.counts)?;
        delete_pending(&tx, &self.owner)?;
        tx.commit()?;
        self.clear();
        Ok(())
    }

    /// At shutdown: writes what is held and lets the lock file go.
    pub fn close(&mut self, conn: &mut Connection) -> Result<(), LedgerError> {
        self.write_now(conn)?;
        if self.lock.take().is_some() {
            let _ = std::fs::remove_file(lock_path(&self.db_path, &self.owner));
        }
        Ok(())
    }
}

/// Counts the entries that writers which stopped without writing their
/// counts left uncounted (their rows in `ledger_rollup_pending` whose lock
/// file nobody holds), each writer's in one transaction. Returns how many
/// entries were counted.
pub fn recover(conn: &mut Connection, db_path: &Path, keys: &Keyring, me: &str) -> Result<u64, LedgerError> {
    let owners: Vec<String> = {
        let mut stmt = conn.prepare("SELECT DISTINCT owner FROM ledger_rollup_pending")?;
        stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?
    };
    let mut total = 0u64;
    for owner in owners.into_iter().filter(|o| o != me) {
        let path = lock_path(db_path, &owner);
        let io = |e: std::io::Error| LedgerError::Io { path: path.display().to_string(), source: e };
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            // Alive: its counts are written when it writes them.
            Err(std::fs::TryLockError::WouldBlock) => continue,
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let ranges: Vec<(i64, i64)> = {
            let mut stmt = tx.prepare("SELECT from_seq, through_seq FROM ledger_rollup_pending WHERE owner = ?1")?;
            stmt.query_map(params![owner], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?
        };
        let mut counts = Counts::new();
        let mut entries = 0u64;
        for (from, through) in ranges {
            let (Ok(from), Ok(through)) = (u64::try_from(from), u64::try_from(through)) else { continue };
            super::sqlite_direct::scan_entries(&tx, from, through, 4096, |page| {
                let durations: Vec<Option<f64>> = page.iter().map(|e| duration_of(keys, e)).collect();
                for (k, n) in aggregate(&page, &durations) {
                    *counts.entry(k).or_insert(0) += n;
                }
                entries += page.len() as u64;
                true
            })?;
        }
        write_counts_direct(&tx, &counts)?;
        delete_pending(&tx, &owner)?;
        tx.commit()?;
        drop(file);
        let _ = std::fs::remove_file(&path);
        tracing::warn!(
            entries,
            "counted into the dashboards' rollups the entries a writer that stopped without writing its counts had left"
        );
        total += entries;
    }
    Ok(total)
}
