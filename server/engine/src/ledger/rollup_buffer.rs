//! The dashboards' counts held in memory by SQLite's writer, and written
//! about once a second instead of in every commit (issue 21: writing them
//! per commit cost about a third of ingest). PostgreSQL commits insert
//! theirs as one row of `audit_rollup_deltas`, folded later (see
//! [`super::rollup::fold_pg`]; migration 20).
//!
//! **What is held, and when it is written.** Each commit adds its counts to
//! the writer's [`Buffer`] once it has committed. The buffer is written, in
//! a transaction of its own under the writer's lock (so between commits):
//! by a task that looks every 250 ms, once the oldest held count is a
//! second old ([`Shared::due`]) or many keys are held; when a reader of the
//! counts asks ([`crate::ledger::Ledger::settle_rollups`]: dashboards,
//! statistics, compliance checks; readers waiting at once share one write);
//! before a removal takes counts away; and at shutdown.
//!
//! **Why it stays exact.** Each commit whose counts are held inserts, in
//! its own transaction, a row in `ledger_rollup_pending`: the seqs it
//! committed, under this writer's `owner` id. The write of the counts
//! deletes the owner's rows in its transaction. So an entry is counted in
//! `audit_rollups` exactly when no row covers it. Before writing, the writer
//! checks that all its rows are still there; if any were taken (another
//! process judged it dead and counted them), it drops what it holds and
//! counts its remaining rows from the ledger instead, so nothing is ever
//! counted twice, whatever liveness said.
//!
//! **A writer that stops without writing** (killed, power lost) leaves its
//! rows: a writer counts those entries from the ledger at start-up and
//! every few seconds after ([`recover`]), as does a removal. Whether the
//! owner of some rows is alive is told by an advisory lock on a file beside
//! the database (`<database>-rollups-<owner>.lock`, mode 0600, never
//! followed through a symlink), held from the writer's first held count
//! until it stops; the lock goes with the process. The database path is
//! made canonical first, so two processes reaching the file by different
//! paths find the same lock files. Counts held by another live process on
//! the same file (a `custos` command beside the server) show on this one's
//! dashboards within a second.

use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::{Connection, TransactionBehavior, params};

use super::error::LedgerError;
use super::keyring::Keyring;
use super::rollup::{Counts, aggregate, duration_of, write_counts_direct};
use super::types::StoredEntry;

/// How long counts are held before they are written (SQLite), by default
/// (`LedgerConfig::rollups_every`); on PostgreSQL a quarter of it is how
/// often the waiting rows are folded.
pub const WRITE_EVERY: Duration = Duration::from_secs(1);

/// Most (dimension, value, bucket) keys held (about 100 bytes each) before
/// they are written, whatever their age: events spread over many hours or
/// actors.
pub const MAX_KEYS: usize = 50_000;

/// What readers and the writer task can see without the writer's lock.
#[derive(Debug, Default)]
pub struct Shared {
    /// Commits that staged counts (numbered from 1).
    staged: AtomicU64,
    /// Every commit numbered up to this has its counts written.
    written: AtomicU64,
    /// When the oldest held count was committed (ms after the buffer was
    /// made, plus one; 0: nothing held).
    oldest: AtomicU64,
    /// Keys held.
    keys: AtomicU64,
}

impl Shared {
    /// The commits staged so far: once they are written, a read counts them.
    pub fn staged(&self) -> u64 {
        self.staged.load(Ordering::Acquire)
    }

    /// Whether the held counts are older than `every` or many enough to be
    /// written (read without the writer's lock).
    pub fn due(&self, every: Duration) -> bool {
        let oldest = self.oldest.load(Ordering::Relaxed);
        oldest != 0 && {
            let now = START.elapsed().as_millis() as u64 + 1;
            now.saturating_sub(oldest) >= every.as_millis() as u64
        } || self.keys.load(Ordering::Relaxed) >= MAX_KEYS as u64
    }

    /// Whether every commit numbered up to `n` has its counts written.
    pub fn written_through(&self, n: u64) -> bool {
        self.written.load(Ordering::Acquire) >= n
    }
}

/// Counts committed by this writer and not yet written.
#[derive(Debug)]
pub struct Buffer {
    owner: String,
    counts: Counts,
    /// Rows this writer inserted in `ledger_rollup_pending` since its last write.
    rows: u64,
    shared: Arc<Shared>,
    db_path: PathBuf,
    /// The lock that says this writer is alive, once it holds counts.
    lock: Option<std::fs::File>,
    /// The lock file could not be made: counts are written in each commit.
    unlockable: bool,
}

/// A commit's counts, added to the buffer only once the commit is durable
/// (a failed commit leaves the buffer as it was).
#[derive(Debug)]
pub enum Staged {
    /// Nothing to hold (no entries, or written in the commit).
    Nothing,
    /// The batch's counts, to hold.
    Held { counts: Counts },
}

/// The canonical form of the database's path (the same lock files for
/// every process whatever path it was given), or the path as given.
fn canonical(db_path: &Path) -> PathBuf {
    std::fs::canonicalize(db_path).unwrap_or_else(|_| db_path.to_owned())
}

fn lock_path(db_path: &Path, owner: &str) -> PathBuf {
    let mut p = db_path.as_os_str().to_owned();
    p.push(format!("-rollups-{owner}.lock"));
    PathBuf::from(p)
}

/// Opens (or makes) a lock file: never through a symlink, only a regular
/// file, readable by this user alone.
fn open_lock(path: &Path) -> std::io::Result<std::fs::File> {
    const O_NOFOLLOW: i32 = 0o400_000; // Linux
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(O_NOFOLLOW)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(f)
}

fn seq(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn delete_pending(tx: &Connection, owner: &str) -> Result<(), LedgerError> {
    tx.prepare_cached("DELETE FROM ledger_rollup_pending WHERE owner = ?1")?.execute(params![owner])?;
    Ok(())
}

fn pending_ranges(tx: &Connection, owner: &str) -> Result<Vec<(u64, u64)>, LedgerError> {
    let mut stmt = tx.prepare_cached("SELECT from_seq, through_seq FROM ledger_rollup_pending WHERE owner = ?1")?;
    let rows: Vec<(i64, i64)> =
        stmt.query_map(params![owner], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(f, t)| match (u64::try_from(f), u64::try_from(t)) {
            (Ok(f), Ok(t)) if f <= t => Ok((f, t)),
            _ => Err(LedgerError::Corrupt(format!("ledger_rollup_pending holds the range {f}..{t}"))),
        })
        .collect()
}

/// Counts the entries of `ranges` from the ledger (decrypting each payload
/// for its duration) and writes them. Returns how many entries.
fn count_from_ledger(tx: &Connection, keys: &Keyring, ranges: &[(u64, u64)]) -> Result<u64, LedgerError> {
    let mut counts = Counts::new();
    let mut entries = 0u64;
    for &(from, through) in ranges {
        super::sqlite_direct::scan_entries(tx, from, through, 4096, |page| {
            let durations: Vec<Option<f64>> = page.iter().map(|e| duration_of(keys, e)).collect();
            for (k, n) in aggregate(&page, &durations) {
                *counts.entry(k).or_insert(0) += n;
            }
            entries += page.len() as u64;
            true
        })?;
    }
    write_counts_direct(tx, &counts)?;
    Ok(entries)
}

impl Buffer {
    /// A buffer for a writer of the SQLite file `db_path`.
    pub fn new(db_path: &Path) -> Buffer {
        Buffer {
            owner: uuid::Uuid::now_v7().to_string(),
            counts: Counts::new(),
            rows: 0,
            shared: Arc::default(),
            db_path: canonical(db_path),
            lock: None,
            unlockable: false,
        }
    }

    /// This writer's id in `ledger_rollup_pending`.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The canonical path of the database.
    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// What can be read without the writer's lock.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    fn ensure_lock(&mut self) -> bool {
        if self.lock.is_some() {
            return true;
        }
        if self.unlockable {
            return false;
        }
        let path = lock_path(&self.db_path, &self.owner);
        match open_lock(&path).and_then(|f| f.try_lock().map(|()| f).map_err(std::io::Error::from)) {
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

    /// In a commit's transaction, after its entries: records the batch as
    /// not yet counted (or, without a lock file, writes its counts).
    /// `counts` are the entries' counts, added up when the batch was sealed.
    /// Pass the result to [`Buffer::committed`] once the transaction
    /// committed.
    pub fn stage(&mut self, tx: &Connection, entries: &[StoredEntry], counts: &Counts) -> Result<Staged, LedgerError> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(Staged::Nothing);
        };
        if !self.ensure_lock() {
            write_counts_direct(tx, counts)?;
            return Ok(Staged::Nothing);
        }
        tx.prepare_cached("INSERT INTO ledger_rollup_pending (owner, from_seq, through_seq) VALUES (?1, ?2, ?3)")?
            .execute(params![self.owner, seq(first.header.seq), seq(last.header.seq)])?;
        // Counted before the commit ends: a reader that sees the entries
        // then also sees that there is something to write (a commit that
        // fails leaves a number that a write passes over).
        self.shared.staged.fetch_add(1, Ordering::AcqRel);
        Ok(Staged::Held { counts: counts.clone() })
    }

    /// Adds what a committed transaction staged.
    pub fn committed(&mut self, staged: Staged) {
        if let Staged::Held { counts } = staged {
            for (k, n) in counts {
                *self.counts.entry(k).or_insert(0) += n;
            }
            self.rows += 1;
            let now = START.elapsed().as_millis() as u64 + 1;
            let _ = self.shared.oldest.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
            self.shared.keys.store(self.counts.len() as u64, Ordering::Relaxed);
        }
    }

    /// Writes the held counts in a transaction of their own; then every
    /// commit staged before the call is counted. If some of this writer's
    /// rows were counted meanwhile by another process (which judged it
    /// dead), what it holds is dropped and its remaining rows are counted
    /// from the ledger instead. Its time, under the writer's lock (every
    /// commit queued meanwhile waits for it), is
    /// `custos_ledger_rollup_write_seconds` (failed writes included).
    pub fn write_now(&mut self, conn: &mut Connection, keys: &Keyring) -> Result<(), LedgerError> {
        let through = self.shared.staged();
        if self.rows > 0 {
            let _timed = Timed(Instant::now());
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let ranges = pending_ranges(&tx, &self.owner)?;
            if ranges.len() as u64 == self.rows {
                write_counts_direct(&tx, &self.counts)?;
            } else {
                let n = count_from_ledger(&tx, keys, &ranges)?;
                tracing::warn!(
                    held = self.rows,
                    left = ranges.len(),
                    entries = n,
                    "some of this writer's uncounted commits were counted by another process; the rest were counted \
                     from the ledger"
                );
            }
            delete_pending(&tx, &self.owner)?;
            tx.commit()?;
            self.counts = Counts::new();
            self.rows = 0;
            self.shared.oldest.store(0, Ordering::Relaxed);
            self.shared.keys.store(0, Ordering::Relaxed);
        }
        self.shared.written.fetch_max(through, Ordering::AcqRel);
        Ok(())
    }

    /// At shutdown: writes what is held and lets the lock file go.
    pub fn close(&mut self, conn: &mut Connection, keys: &Keyring) -> Result<(), LedgerError> {
        self.write_now(conn, keys)?;
        if let Some(f) = self.lock.take() {
            drop(f);
            let _ = std::fs::remove_file(lock_path(&self.db_path, &self.owner));
        }
        Ok(())
    }
}

/// Records a write of the held counts, failed ones included, in
/// `custos_ledger_rollup_write_seconds` when dropped.
struct Timed(Instant);

impl Drop for Timed {
    fn drop(&mut self) {
        metrics::histogram!("custos_ledger_rollup_write_seconds").record(self.0.elapsed().as_secs_f64());
    }
}

/// The monotonic clock the shared times are read from.
static START: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

/// Counts the entries that writers which stopped without writing their
/// counts left uncounted (their rows in `ledger_rollup_pending` whose lock
/// file nobody holds), each writer's in one transaction. A lock file that
/// cannot be opened is taken as a live writer's (said in the log). Returns
/// how many entries were counted.
pub fn recover(conn: &mut Connection, db_path: &Path, keys: &Keyring, me: &str) -> Result<u64, LedgerError> {
    let owners: Vec<String> = {
        let mut stmt = conn.prepare_cached("SELECT DISTINCT owner FROM ledger_rollup_pending")?;
        stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?
    };
    let mut total = 0u64;
    for owner in owners.into_iter().filter(|o| o != me) {
        let path = lock_path(db_path, &owner);
        let file = match open_lock(&path) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e,
                    "cannot open another writer's rollups lock file; its uncounted entries are left to it");
                continue;
            }
        };
        match file.try_lock() {
            Ok(()) => {}
            // Alive: its counts are written when it writes them.
            Err(std::fs::TryLockError::WouldBlock) => continue,
            Err(std::fs::TryLockError::Error(e)) => {
                tracing::warn!(path = %path.display(), error = %e,
                    "cannot lock another writer's rollups lock file; its uncounted entries are left to it");
                continue;
            }
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let ranges = pending_ranges(&tx, &owner)?;
        let entries = count_from_ledger(&tx, keys, &ranges)?;
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

/// Whether another writer still holds counts of entries in `from..=through`
/// (entries are only ever added above the head, so once none is held, none
/// will be).
pub fn held_elsewhere(conn: &Connection, me: &str, from: u64, through: u64) -> Result<bool, LedgerError> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT COUNT(*) FROM ledger_rollup_pending WHERE owner <> ?1 AND from_seq <= ?3 AND through_seq >= ?2",
        )?
        .query_row(params![me, seq(from), seq(through)], |r| r.get(0))?;
    Ok(n > 0)
}
