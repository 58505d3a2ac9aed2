//! The dashboards' counts held in memory by SQLite's writer, and written
//! about once a second instead of in every commit (issue 21: writing them
//! per commit cost about a third of ingest). PostgreSQL commits insert
//! theirs as one row of `audit_rollup_deltas`, folded later (see
//! [`super::rollup::fold_pg`]; migration 20).
//!
//! **What is held, and when it is written.** Each commit adds its counts to
//! the writer's [`Buffer`] once it has committed. The buffer is written by
//! a task that looks every 250 ms, once the oldest held count is a second
//! old ([`Shared::due`]) or many keys are held; when a reader of the counts
//! asks ([`crate::ledger::Ledger::settle_rollups`]: dashboards, statistics,
//! compliance checks; readers waiting at once share one write); before a
//! removal takes counts away; and at shutdown. A write takes the counts
//! held at its start, sorted in `audit_rollups`' key order, and writes them
//! a chunk at a time ([`Buffer::write_step`], about [`CHUNK`] each), each
//! chunk in a transaction of its own under the writer's lock, which the
//! task and the readers let go between chunks: a commit usually waits for
//! one chunk (the first also sorts the keys; the lock is not fair, so a
//! commit may wait for a chunk of each thread ahead of it), not for the
//! whole write (a second's counts of events spread
//! over a month are thousands of keys, 25-100 ms at 1,000 events/s, and
//! that wait was the tail of single-event ingest). Counts committed during
//! a write are held for the next. A removal and shutdown write everything
//! without letting the lock go.
//!
//! **Why it stays exact.** Each commit whose counts are held inserts, in
//! its own transaction, a row in `ledger_rollup_pending`: the seqs it
//! committed, under this writer's `owner` id. Each chunk of a write records
//! in its transaction how far the write got (`ledger_rollup_progress`: the
//! last seq of the write's rows, and the last key written); the last chunk
//! deletes the write's rows and that record. So an entry is counted in
//! `audit_rollups`, for a given key, exactly when no row covers it, or a
//! row of its owner covers it whose `through_seq` is at or below the
//! progress's and the key is at or before the progress's key (in
//! (dimension, bucket, value) order, text compared byte by byte).
//! Whoever counts rows from the ledger skips those keys. Before each chunk
//! the writer checks that its rows (before the first) or its progress
//! (after) are still as it left them; if not (another process judged it
//! dead and counted them), it drops what it holds and counts its remaining
//! rows from the ledger instead, so nothing is ever counted twice, whatever
//! liveness said.
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};

use super::error::LedgerError;
use super::keyring::Keyring;
use super::rollup::{Counts, UPSERT, aggregate, duration_of, write_counts_direct};
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
    /// Commits that staged counts, numbered from 1 in the order of
    /// [`Buffer::stage`]'s calls (not seqs).
    staged: AtomicU64,
    /// Every commit numbered up to this has its counts written.
    written: AtomicU64,
    /// When the oldest held count was committed (ms after the buffer was
    /// made, plus one; 0: nothing held).
    oldest: AtomicU64,
    /// Keys held.
    keys: AtomicU64,
    /// When the write under way began (ms since `START`, plus one; 0: none).
    writing_since: AtomicU64,
    /// The ledger's connection could not be set back to `synchronous =
    /// FULL` after a write at NORMAL, or such a write panicked: every
    /// commit is refused until the server restarts ([`Buffer::check_sync`]).
    /// Only ever set, and only once that is so (unlike [`Buffer`]'s own
    /// `sync_lost`, which is also set during each such write).
    refusing: AtomicBool,
}

impl Shared {
    /// The commits staged so far: once they are written, a read counts them.
    pub fn staged(&self) -> u64 {
        self.staged.load(Ordering::Acquire)
    }

    /// Whether the held counts are older than `every` or many enough to be
    /// written, or a write under way (one a reader began and left, its
    /// request gone) began longer than `every` ago (read without the
    /// writer's lock).
    pub fn due(&self, every: Duration) -> bool {
        let now = START.elapsed().as_millis() as u64 + 1;
        let older = |t: u64| t != 0 && now.saturating_sub(t) >= every.as_millis() as u64;
        older(self.oldest.load(Ordering::Relaxed))
            || older(self.writing_since.load(Ordering::Relaxed))
            || self.keys.load(Ordering::Relaxed) >= MAX_KEYS as u64
    }

    /// Whether every commit numbered up to `n` has its counts written.
    pub fn written_through(&self, n: u64) -> bool {
        self.written.load(Ordering::Acquire) >= n
    }

    /// Whether the writer refuses every commit until the server restarts
    /// (see [`Buffer::unsynced`]): what `/readyz` reports.
    pub fn refusing_commits(&self) -> bool {
        self.refusing.load(Ordering::Acquire)
    }
}

/// How long one chunk of a write of held counts may take, about (checked
/// every 4 keys; a key of a month-old bucket may cost 100 µs): what a
/// commit arriving meanwhile waits for at most, beyond its own time.
pub const CHUNK: Duration = Duration::from_millis(1);

/// How much of a write of held counts one call writes.
#[derive(Clone, Copy, Debug)]
pub enum Budget {
    /// About [`CHUNK`]'s worth, then the writer's lock is let go.
    Chunk,
    /// At most this many keys (tests of a write stopped between chunks).
    Keys(usize),
    /// Everything held, in as few transactions as possible.
    All,
}

/// A key of the dashboards' counts in `audit_rollups`' own order:
/// (dimension, bucket, value).
type Key = (&'static str, i64, String);

/// Counts committed by this writer and not yet written.
#[derive(Debug)]
pub struct Buffer {
    owner: String,
    counts: Counts,
    /// Rows this writer inserted in `ledger_rollup_pending` since it took
    /// the counts of the last write.
    rows: u64,
    /// The last seq of those rows.
    through: u64,
    /// The write under way, between chunks.
    writing: Option<Writing>,
    shared: Arc<Shared>,
    db_path: PathBuf,
    /// The lock that says this writer is alive, once it holds counts.
    lock: Option<std::fs::File>,
    /// The lock file could not be made: counts are written in each commit.
    unlockable: bool,
    /// The ledger's connection could not be set back to `synchronous =
    /// FULL` after a chunk: every commit is refused.
    sync_lost: bool,
}

/// A write of held counts under way: the counts of this writer's rows in
/// `ledger_rollup_pending` up to seq `through` (`rows` of them; `staged`:
/// [`Shared::staged`] when the write began), in key order, written up to
/// `next`.
#[derive(Debug)]
struct Writing {
    counts: Vec<(Key, i64)>,
    next: usize,
    through: u64,
    rows: u64,
    staged: u64,
}

/// A commit's counts, added to the buffer only once the commit is durable
/// (a failed commit leaves the buffer as it was).
/// It borrows the counts given to [`Buffer::stage`] (the sealed batch's)
/// rather than copying them: [`Buffer::committed`] adds exactly those.
#[derive(Debug)]
pub enum Staged<'a> {
    /// Nothing to hold (no entries, or written in the commit).
    Nothing,
    /// The batch's counts, to hold, and its last seq.
    Held { counts: &'a Counts, through: u64 },
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

fn useq(v: i64, what: &str) -> Result<u64, LedgerError> {
    u64::try_from(v).map_err(|_| LedgerError::Corrupt(format!("{what} holds the seq {v}")))
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

/// How far an owner's write of its held counts got (`ledger_rollup_progress`):
/// for its rows ending at or before the seq, every key up to the key is
/// written.
type Progress = (u64, (String, i64, String));

fn progress(tx: &Connection, owner: &str) -> Result<Option<Progress>, LedgerError> {
    let row: Option<(i64, String, i64, String)> = tx
        .prepare_cached("SELECT through_seq, dimension, bucket, value FROM ledger_rollup_progress WHERE owner = ?1")?
        .query_row(params![owner], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()?;
    row.map(|(t, d, b, v)| Ok((useq(t, "ledger_rollup_progress")?, (d, b, v)))).transpose()
}

/// Counts an owner's uncounted entries (its rows in `ledger_rollup_pending`)
/// from the ledger, decrypting each payload for its duration, leaving out
/// the keys its interrupted write already wrote (`ledger_rollup_progress`);
/// writes them and deletes the owner's rows, in `tx`. Returns how many
/// entries.
fn count_owner_from_ledger(tx: &Connection, keys: &Keyring, owner: &str) -> Result<u64, LedgerError> {
    let ranges = pending_ranges(tx, owner)?;
    let done = progress(tx, owner)?;
    let mut counts = Counts::default();
    let mut entries = 0u64;
    for (from, through) in ranges {
        // Keys this range's counts were already written for.
        let written = done.as_ref().filter(|(upto, _)| through <= *upto).map(|(_, k)| k);
        super::sqlite_direct::scan_entries(tx, from, through, 4096, |page| {
            let durations: Vec<Option<f64>> = page.iter().map(|e| duration_of(keys, e)).collect();
            for ((dim, value, bucket), n) in aggregate(&page, &durations) {
                if written.is_some_and(|(d, b, v)| (dim, bucket, value.as_str()) <= (d.as_str(), *b, v.as_str())) {
                    continue;
                }
                *counts.entry((dim, value, bucket)).or_insert(0) += n;
            }
            entries += page.len() as u64;
            true
        })?;
    }
    write_counts_direct(tx, &counts)?;
    tx.prepare_cached("DELETE FROM ledger_rollup_pending WHERE owner = ?1")?.execute(params![owner])?;
    tx.prepare_cached("DELETE FROM ledger_rollup_progress WHERE owner = ?1")?.execute(params![owner])?;
    Ok(entries)
}

impl Buffer {
    /// A buffer for a writer of the SQLite file `db_path`.
    pub fn new(db_path: &Path) -> Buffer {
        Buffer {
            owner: uuid::Uuid::now_v7().to_string(),
            counts: Counts::default(),
            rows: 0,
            through: 0,
            writing: None,
            shared: Arc::default(),
            db_path: canonical(db_path),
            lock: None,
            unlockable: false,
            sync_lost: false,
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

    /// Whether a write is under way (between chunks).
    pub fn writing(&self) -> bool {
        self.writing.is_some()
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
    pub fn stage<'a>(
        &mut self,
        tx: &Connection,
        entries: &[StoredEntry],
        counts: &'a Counts,
    ) -> Result<Staged<'a>, LedgerError> {
        self.check_sync()?;
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
        Ok(Staged::Held { counts, through: last.header.seq })
    }

    /// Refuses (fail closed) once the ledger's connection could not be set
    /// back to `synchronous = FULL` after a write made at NORMAL
    /// ([`Self::unsynced`]): nothing is committed on it until the server
    /// restarts.
    pub fn check_sync(&self) -> Result<(), LedgerError> {
        if self.sync_lost {
            return Err(LedgerError::Internal(
                "the ledger's connection could not be set back to synchronous = FULL; restart the server".into(),
            ));
        }
        Ok(())
    }

    /// Runs `write` (transactions on the ledger's connection whose commits
    /// need not be fsynced: the WAL keeps commits in order, so its next
    /// fsync, at the ledger's next commit or the background checkpoint's
    /// within about 2 s, makes them durable too, and a power loss before it
    /// loses a suffix of them, as if it had come before them) with the
    /// connection at `synchronous = NORMAL`, and sets it back to FULL
    /// before anything else uses the connection. Fails closed: until FULL
    /// is back, [`Self::check_sync`] refuses every commit and this every
    /// write; if it cannot be set back (or `write` panicked), until the
    /// server restarts, and [`Shared::refusing_commits`] says so (`/readyz`
    /// answers 503; the gauge `custos_ledger_refusing_commits` is 1).
    pub fn unsynced<T>(
        &mut self,
        conn: &mut Connection,
        write: impl FnOnce(&mut Self, &mut Connection) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        self.check_sync()?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        self.sync_lost = true;
        let outcome = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write(&mut *self, &mut *conn))) {
            Ok(outcome) => outcome,
            Err(panic) => {
                tracing::error!(
                    "a write at synchronous = NORMAL on the ledger's connection stopped (panic); commits are \
                                 refused until the server restarts"
                );
                self.lose_sync();
                std::panic::resume_unwind(panic)
            }
        };
        if let Err(e) = conn.pragma_update(None, "synchronous", "FULL") {
            tracing::error!(error = %e, write = ?outcome.as_ref().err(),
                "the ledger's connection could not be set back to synchronous = FULL; commits are refused until the \
                 server restarts");
            self.lose_sync();
            return Err(e.into());
        }
        self.sync_lost = false;
        outcome
    }

    /// Tells those outside the writer's lock (`/readyz`, `/metrics`) that
    /// [`Self::check_sync`] refuses every commit until the server restarts.
    fn lose_sync(&self) {
        self.shared.refusing.store(true, Ordering::Release);
        metrics::gauge!("custos_ledger_refusing_commits").set(1.0);
    }

    /// Adds what a committed transaction staged. A key already held (the
    /// same dimension, value and bucket) is added to without a copy.
    pub fn committed(&mut self, staged: Staged<'_>) {
        if let Staged::Held { counts, through } = staged {
            for (k, n) in counts {
                match self.counts.get_mut(k) {
                    Some(held) => *held += n,
                    None => {
                        self.counts.insert(k.clone(), *n);
                    }
                }
            }
            self.rows += 1;
            self.through = self.through.max(through);
            let now = START.elapsed().as_millis() as u64 + 1;
            let _ = self.shared.oldest.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
            self.shared.keys.store(self.counts.len() as u64, Ordering::Relaxed);
        }
    }

    /// Writes the next chunk of the held counts, in a transaction of its
    /// own (the caller holds the writer's lock for this call only, so
    /// commits go in between chunks). A write starts with the counts held
    /// at its start, sorted in the table's key order (neighbouring keys
    /// share pages); each chunk records how far it got
    /// (`ledger_rollup_progress`), and the last deletes the write's rows in
    /// `ledger_rollup_pending`. Returns whether the write is still under
    /// way. Once a write ends, every commit staged before it started is
    /// counted. If some of this writer's rows were counted meanwhile by
    /// another process (which judged it dead), what it holds is dropped and
    /// its remaining rows are counted from the ledger instead. Each call's
    /// time is `custos_ledger_rollup_write_seconds` (failed ones included).
    pub fn write_step(&mut self, conn: &mut Connection, keys: &Keyring, budget: Budget) -> Result<bool, LedgerError> {
        if self.writing.is_none() && self.rows == 0 {
            self.shared.written.fetch_max(self.shared.staged(), Ordering::AcqRel);
            return Ok(false);
        }
        let _timed = Timed(Instant::now());
        if self.writing.is_none() {
            let mut counts: Vec<(Key, i64)> =
                std::mem::take(&mut self.counts).into_iter().map(|((d, v, b), n)| ((d, b, v), n)).collect();
            counts.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            self.writing =
                Some(Writing { counts, next: 0, through: self.through, rows: self.rows, staged: self.shared.staged() });
            self.clear_held();
            self.shared.writing_since.store(START.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
        }
        // The chunk's commit is not fsynced (see `Buffer::chunk`).
        match self.unsynced(conn, |b, conn| b.chunk(conn, budget))? {
            None => self.take_over(conn, keys).map(|()| false),
            Some(true) => {
                let staged = self.writing.take().map_or(0, |w| w.staged);
                self.shared.writing_since.store(0, Ordering::Relaxed);
                self.shared.written.fetch_max(staged, Ordering::AcqRel);
                Ok(false)
            }
            Some(false) => Ok(true),
        }
    }

    /// The next chunk of the write under way, in a transaction of its own:
    /// `None` if the write is no longer this writer's (its rows or progress
    /// gone), else whether the write is done. Run with `synchronous =
    /// NORMAL`: its commit is not fsynced, and needs not be. The WAL is read
    /// back after a crash up to its last valid commit, so a crash may lose a
    /// suffix of the transactions, never one from the middle, and every
    /// state such a loss can leave counts each entry once (the rows of
    /// `ledger_rollup_pending` and `ledger_rollup_progress` that a lost
    /// chunk deleted or moved come back with it); the ledger's next commit,
    /// fsynced, makes the chunk durable. So a chunk costs its upserts alone
    /// under the writer's lock, not an fsync too.
    fn chunk(&mut self, conn: &mut Connection, budget: Budget) -> Result<Option<bool>, LedgerError> {
        let Some(w) = self.writing.as_mut() else { return Ok(Some(true)) };
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let started = Instant::now();
        // Still this writer's to write: its rows all there before the first
        // chunk, then its progress where the last chunk left it.
        let ours = if w.next == 0 {
            let n: i64 = tx
                .prepare_cached("SELECT COUNT(*) FROM ledger_rollup_pending WHERE owner = ?1 AND through_seq <= ?2")?
                .query_row(params![self.owner, seq(w.through)], |r| r.get(0))?;
            n as u64 == w.rows && progress(&tx, &self.owner)?.is_none()
        } else {
            let ((d, b, v), _) = &w.counts[w.next - 1];
            progress(&tx, &self.owner)?
                .is_some_and(|(t, (pd, pb, pv))| t == w.through && pd == *d && pb == *b && pv == *v)
        };
        if !ours {
            return Ok(None);
        }
        let mut i = w.next;
        {
            let mut stmt = tx.prepare_cached(UPSERT)?;
            while let Some(((dim, bucket, value), count)) = w.counts.get(i) {
                stmt.execute(params![dim, value, bucket, count])?;
                i += 1;
                let n = i - w.next;
                let enough = match budget {
                    Budget::All => false,
                    Budget::Keys(max) => n >= max,
                    Budget::Chunk => n % 4 == 0 && started.elapsed() >= CHUNK,
                };
                if enough {
                    break;
                }
            }
        }
        let done = i == w.counts.len();
        if done {
            tx.prepare_cached("DELETE FROM ledger_rollup_pending WHERE owner = ?1 AND through_seq <= ?2")?
                .execute(params![self.owner, seq(w.through)])?;
            tx.prepare_cached("DELETE FROM ledger_rollup_progress WHERE owner = ?1")?.execute(params![self.owner])?;
        } else {
            let ((d, b, v), _) = &w.counts[i - 1];
            tx.prepare_cached(
                "INSERT INTO ledger_rollup_progress (owner, through_seq, dimension, bucket, value) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (owner) DO UPDATE SET through_seq = excluded.through_seq, \
                 dimension = excluded.dimension, bucket = excluded.bucket, value = excluded.value",
            )?
            .execute(params![self.owner, seq(w.through), d, b, v])?;
        }
        tx.commit()?;
        w.next = i;
        Ok(Some(done))
    }

    /// Forgets the rows held since the last write (their counts taken or
    /// dropped by the caller): none held, nothing old, no keys.
    fn clear_held(&mut self) {
        self.rows = 0;
        self.through = 0;
        self.shared.oldest.store(0, Ordering::Relaxed);
        self.shared.keys.store(0, Ordering::Relaxed);
    }

    /// Some of this writer's rows were counted by another process: drops
    /// what it holds and counts what rows it has left from the ledger.
    fn take_over(&mut self, conn: &mut Connection, keys: &Keyring) -> Result<(), LedgerError> {
        let staged = self.shared.staged();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let entries = count_owner_from_ledger(&tx, keys, &self.owner)?;
        tx.commit()?;
        tracing::warn!(
            owner = %self.owner,
            entries,
            "some of this writer's uncounted commits were counted by another process, which took it for stopped (its \
             lock file deleted?); it dropped the counts it held and counted its remaining commits from the ledger"
        );
        self.counts = Counts::default();
        self.clear_held();
        self.writing = None;
        self.shared.writing_since.store(0, Ordering::Relaxed);
        self.shared.written.fetch_max(staged, Ordering::AcqRel);
        Ok(())
    }

    /// Writes everything held, the write under way first, without letting
    /// the writer's lock go (a removal, shutdown); then every commit staged
    /// before the call is counted.
    pub fn write_now(&mut self, conn: &mut Connection, keys: &Keyring) -> Result<(), LedgerError> {
        while self.writing.is_some() || self.rows > 0 {
            self.write_step(conn, keys, Budget::All)?;
        }
        self.shared.written.fetch_max(self.shared.staged(), Ordering::AcqRel);
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

/// Records a chunk of a write of the held counts, failed ones included, in
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
        let entries = count_owner_from_ledger(&tx, keys, &owner)?;
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
