//! The ledger's hot loops on SQLite, straight to SQLite (rusqlite) instead of
//! through sea-orm and sqlx: the sequencer's commit, verification's scan and
//! the rows an export reads (`push_raw`).
//!
//! sqlx runs SQLite on a worker thread and ships every row across a channel as
//! owned values; for a million small rows that hand-off, not SQLite, is the
//! cost. Here one connection, cached prepared statements and one read
//! transaction per scan. The SQL and the pragmas (WAL, `synchronous = FULL`,
//! foreign keys, busy timeout) are the same as the pooled connections', and
//! the append-only triggers apply to these connections like to any other.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Row, params};

use super::error::LedgerError;
use super::merkle::Frontier;
use super::store::{ENTRY_COLUMNS, Head};
use super::types::{EntryHeader, Hash, HeaderFields, StoredEntry};

/// Opens a connection to the SQLite ledger file with the ledger's pragmas.
pub fn open(path: &Path, busy_timeout: Duration) -> Result<Connection, LedgerError> {
    open_with(path, busy_timeout, true)
}

/// Opens the writer's connection: like `open`, but the writer never runs WAL
/// checkpoints itself (a `Checkpointer` does, off the commit path), and
/// while another connection holds the write lock it looks again every
/// [`WRITER_BUSY_STEP`] ([`writer_busy`]) instead of SQLite's default
/// steps.
pub fn open_writer(path: &Path, busy_timeout: Duration) -> Result<Connection, LedgerError> {
    let conn = open_with(path, busy_timeout, false)?;
    WRITER_BUSY_LIMIT_US.fetch_max(u64::try_from(busy_timeout.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    conn.busy_handler(Some(writer_busy))?;
    Ok(conn)
}

/// How often the writer looks again for the write lock while another
/// connection holds it.
pub const WRITER_BUSY_STEP: Duration = Duration::from_micros(250);

/// The longest busy timeout of the writers opened in this process (µs; a
/// static because rusqlite takes a busy handler as a plain `fn`):
/// every writer waits up to it (one value in a server; a process opening
/// writers with several, a test, waits up to the longest).
static WRITER_BUSY_LIMIT_US: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// When the current wait for the write lock began.
    static BUSY_SINCE: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
}

/// The writer's busy handler. SQLite's default one (`busy_timeout`) sleeps
/// 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100 ms in turn, so a commit that
/// finds the lock held for 20 ms by another connection (a setting saved,
/// another process) waits 33 ms, and every request queued behind
/// it with it; this one looks again every [`WRITER_BUSY_STEP`], up to the
/// busy timeout (measured, not counted in steps: a sleep may overrun).
fn writer_busy(attempts: i32) -> bool {
    let now = std::time::Instant::now();
    let since = BUSY_SINCE.with(|c| {
        if attempts == 0 {
            c.set(Some(now));
        }
        c.get().unwrap_or(now)
    });
    let limit = Duration::from_micros(WRITER_BUSY_LIMIT_US.load(Ordering::Relaxed));
    if now.duration_since(since) >= limit {
        return false;
    }
    std::thread::sleep(WRITER_BUSY_STEP);
    true
}

fn open_with(path: &Path, busy_timeout: Duration, autocheckpoint: bool) -> Result<Connection, LedgerError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(busy_timeout)?;
    // WAL, or nothing: the held counts' chunks are committed without an
    // fsync (`synchronous = NORMAL`), safe in WAL mode alone.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(LedgerError::Internal(format!(
            "the SQLite database would not switch to WAL mode (it stays in {mode} mode)"
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Reads through a memory map instead of read(2) copies; writes still go
    // to the WAL by write(2) and fsync, so durability is unchanged.
    conn.pragma_update(None, "mmap_size", 1i64 << 30)?;
    // The filter indexes take inserts at many points at once: keep their
    // hot pages cached (64 MiB) instead of re-reading them every commit.
    conn.pragma_update(None, "cache_size", -65_536i64)?;
    // A burst may grow the write-ahead log far; once checkpointed, it is
    // cut back to this size instead of holding the disk space for good.
    conn.pragma_update(None, "journal_size_limit", 64i64 << 20)?;
    if !autocheckpoint {
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    }
    // The writer's statements: its commits', the held counts', the leases'
    // and the checkpoints' (about 17 in all).
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// How often the checkpointer copies the WAL into the database file (each
/// page changed since the last time is written once; see
/// docs/performance.md for the runs behind 2 s rather than 200 ms).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(2000);

/// Copies committed WAL frames into the database file in the background, so
/// that the sequencer's commits pay only for their own WAL fsync. PASSIVE
/// checkpoints never block writers or readers; durability is unchanged (every
/// commit is already fsynced in the WAL).
#[derive(Debug)]
pub struct Checkpointer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the background thread.
    pub fn start(path: &Path, busy_timeout: Duration) -> Result<Checkpointer, LedgerError> {
        let conn = open(path, busy_timeout)?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("custos-wal-checkpoint".into())
            .spawn(move || {
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    // Woken early by `stop`.
                    std::thread::park_timeout(CHECKPOINT_EVERY);
                    if flag.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        tracing::warn!(error = %e, "background WAL checkpoint failed");
                    }
                }
                // Leave a small WAL behind at shutdown.
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "final WAL checkpoint failed");
                }
            })
            .map_err(|e| LedgerError::Io { path: path.display().to_string(), source: e })?;
        Ok(Checkpointer { stop, thread: Some(thread) })
    }

    /// Stops the thread after a final checkpoint (at once: it is woken).
    pub fn stop(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
    }
}

fn blob<'r>(row: &'r Row<'_>, idx: usize) -> Result<&'r [u8], LedgerError> {
    row.get_ref(idx)?.as_blob().map_err(|e| LedgerError::Corrupt(format!("column {idx}: {e}")))
}

fn array<const N: usize>(row: &Row<'_>, idx: usize, col: &str) -> Result<[u8; N], LedgerError> {
    let blob = blob(row, idx)?;
    blob.try_into().map_err(|_| LedgerError::Corrupt(format!("column {col}: expected {N} bytes, found {}", blob.len())))
}

fn seq_from(v: i64) -> Result<u64, LedgerError> {
    u64::try_from(v).map_err(|_| LedgerError::Corrupt(format!("negative seq {v}")))
}

fn seq_to(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Reads the head (inside the caller's transaction).
pub fn read_head(conn: &Connection) -> Result<Head, LedgerError> {
    let mut stmt = conn.prepare_cached(super::store::HEAD_SELECT)?;
    let mut rows = stmt.query([])?;
    let row = rows.next()?.ok_or_else(|| LedgerError::Corrupt("ledger_head row is missing".into()))?;
    let seq = seq_from(row.get(0)?)?;
    let chain_hash = array::<32>(row, 1, "chain_hash")?;
    let frontier = Frontier::decode(seq, blob(row, 2)?).map_err(|e| LedgerError::Corrupt(e.to_string()))?;
    let recorded_at_us: Option<i64> = row.get(3)?;
    Ok(Head { seq, chain_hash, frontier, recorded_at_us: recorded_at_us.unwrap_or(0) })
}

/// Stores the head.
pub fn write_head(conn: &Connection, head: &Head) -> Result<(), LedgerError> {
    let mut stmt =
        conn.prepare_cached("UPDATE ledger_head SET seq = ?1, chain_hash = ?2, frontier = ?3 WHERE id = 1")?;
    stmt.execute(params![seq_to(head.seq), &head.chain_hash[..], head.frontier.encode()])?;
    Ok(())
}

/// Inserts entries one prepared statement execution each (no statement text
/// to build or parse per batch).
pub fn insert_entries(conn: &Connection, entries: &[StoredEntry]) -> Result<(), LedgerError> {
    let sql = format!(
        "INSERT INTO ledger_entries ({ENTRY_COLUMNS}) VALUES \
         (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21)"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    for e in entries {
        let h = &e.header;
        let f = &h.fields;
        stmt.execute(params![
            seq_to(h.seq),
            &h.event_id.as_bytes()[..],
            h.occurred_at_us,
            h.recorded_at_us,
            f.category,
            f.action,
            f.outcome,
            f.severity,
            f.actor_id,
            f.actor_kind,
            f.resource_type,
            f.resource_id,
            f.tenant,
            f.channel,
            f.source_app,
            e.key_id,
            &e.iv[..],
            e.ciphertext,
            &e.mac[..],
            &e.leaf_hash[..],
            &e.chain_hash[..],
        ])?;
    }
    Ok(())
}

/// Inserts stored Merkle nodes.
pub fn insert_nodes(conn: &Connection, nodes: &[(u32, u64, Hash)]) -> Result<(), LedgerError> {
    let mut stmt = conn.prepare_cached("INSERT INTO merkle_nodes (level, idx, hash) VALUES (?1, ?2, ?3)")?;
    for (level, idx, hash) in nodes {
        stmt.execute(params![level, seq_to(*idx), &hash[..]])?;
    }
    Ok(())
}

pub(crate) fn entry_from_row(row: &Row<'_>) -> Result<StoredEntry, LedgerError> {
    let id = blob(row, 1)?;
    let event_id =
        uuid::Uuid::from_slice(id).map_err(|_| LedgerError::Corrupt(format!("event_id of {} bytes", id.len())))?;
    let key_id: i64 = row.get(15)?;
    Ok(StoredEntry {
        header: EntryHeader {
            seq: seq_from(row.get(0)?)?,
            event_id,
            occurred_at_us: row.get(2)?,
            recorded_at_us: row.get(3)?,
            fields: HeaderFields {
                category: row.get(4)?,
                action: row.get(5)?,
                outcome: row.get(6)?,
                severity: row.get(7)?,
                actor_id: row.get(8)?,
                actor_kind: row.get(9)?,
                resource_type: row.get(10)?,
                resource_id: row.get(11)?,
                tenant: row.get(12)?,
                channel: row.get(13)?,
                source_app: row.get(14)?,
            },
        },
        key_id: u32::try_from(key_id).map_err(|_| LedgerError::Corrupt(format!("key id {key_id}")))?,
        iv: array::<16>(row, 16, "iv")?,
        ciphertext: blob(row, 17)?.to_vec(),
        mac: array::<32>(row, 18, "mac")?,
        leaf_hash: array::<32>(row, 19, "leaf_hash")?,
        chain_hash: array::<32>(row, 20, "chain_hash")?,
    })
}

/// Entries with `from <= seq <= to`, in seq order, handed to `sink` in pages
/// of `page` entries. `sink` returns false to stop early.
pub fn scan_entries(
    conn: &Connection,
    from: u64,
    to: u64,
    page: usize,
    mut sink: impl FnMut(Vec<StoredEntry>) -> bool,
) -> Result<(), LedgerError> {
    let sql = format!("SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE seq >= ?1 AND seq <= ?2 ORDER BY seq");
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params![seq_to(from), seq_to(to)])?;
    let mut buf = Vec::with_capacity(page);
    while let Some(row) = rows.next()? {
        buf.push(entry_from_row(row)?);
        if buf.len() == page && !sink(std::mem::replace(&mut buf, Vec::with_capacity(page))) {
            return Ok(());
        }
    }
    if !buf.is_empty() {
        sink(buf);
    }
    Ok(())
}

/// Existing entries among `ids`: event id -> (seq, recorded_at).
pub fn find_event_ids(
    conn: &Connection,
    ids: &[uuid::Uuid],
) -> Result<std::collections::HashMap<uuid::Uuid, (u64, i64)>, LedgerError> {
    let mut stmt = conn.prepare_cached("SELECT seq, recorded_at FROM ledger_entries WHERE event_id = ?1")?;
    let mut out = std::collections::HashMap::new();
    for id in ids {
        let mut rows = stmt.query(params![&id.as_bytes()[..]])?;
        if let Some(row) = rows.next()? {
            out.insert(*id, (seq_from(row.get(0)?)?, row.get(1)?));
        }
    }
    Ok(out)
}

/// Whether an error is the unique index on `event_id` refusing a duplicate.
pub fn is_unique_violation(e: &LedgerError) -> bool {
    matches!(e, LedgerError::Sqlite(rusqlite::Error::SqliteFailure(f, _))
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

// Text columns as bytes: the canonical encoding hashes bytes, so a column
// that is not valid UTF-8 still hashes (and fails) exactly as stored.
fn text<'r>(row: &'r Row<'_>, idx: usize) -> Result<&'r [u8], LedgerError> {
    match row.get_ref(idx)? {
        rusqlite::types::ValueRef::Text(t) => Ok(t),
        other => Err(LedgerError::Corrupt(format!("column {idx}: expected text, found {:?}", other.data_type()))),
    }
}

fn opt_text<'r>(row: &'r Row<'_>, idx: usize) -> Result<Option<&'r [u8]>, LedgerError> {
    match row.get_ref(idx)? {
        rusqlite::types::ValueRef::Null => Ok(None),
        _ => text(row, idx).map(Some),
    }
}

/// Appends the entry of a row of `ENTRY_COLUMNS` to `buf`, borrowing its
/// columns (no allocation per entry).
pub(crate) fn push_raw(buf: &mut super::raw_page::RawPage, row: &Row<'_>) -> Result<(), LedgerError> {
    use super::encoding::HeaderRef;
    let event_id: &[u8; 16] =
        blob(row, 1)?.try_into().map_err(|_| LedgerError::Corrupt("event_id is not 16 bytes".into()))?;
    let key_id: i64 = row.get(15)?;
    let header = HeaderRef {
        seq: seq_from(row.get(0)?)?,
        event_id,
        occurred_at_us: row.get(2)?,
        recorded_at_us: row.get(3)?,
        required: [text(row, 4)?, text(row, 5)?, text(row, 6)?, text(row, 7)?],
        optional: [
            opt_text(row, 8)?,
            opt_text(row, 9)?,
            opt_text(row, 10)?,
            opt_text(row, 11)?,
            opt_text(row, 12)?,
            opt_text(row, 13)?,
            opt_text(row, 14)?,
        ],
    };
    buf.push(
        &header,
        u32::try_from(key_id).map_err(|_| LedgerError::Corrupt(format!("key id {key_id}")))?,
        array::<16>(row, 16, "iv")?,
        blob(row, 17)?,
        array::<32>(row, 18, "mac")?,
        array::<32>(row, 19, "leaf_hash")?,
        array::<32>(row, 20, "chain_hash")?,
    )
}

/// Like `scan_entries`, but fills `RawPage`s straight from the row data,
/// without an allocation per entry (verification's scan).
pub fn scan_raw(
    conn: &Connection,
    from: u64,
    to: u64,
    page: usize,
    mut sink: impl FnMut(super::raw_page::RawPage) -> bool,
) -> Result<(), LedgerError> {
    use super::raw_page::RawPage;
    let sql = format!("SELECT {ENTRY_COLUMNS} FROM ledger_entries WHERE seq >= ?1 AND seq <= ?2 ORDER BY seq");
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params![seq_to(from), seq_to(to)])?;
    // Tombstones (entries removed by retention) are merged in seq order,
    // read in the same transaction.
    let mut tomb_stmt = conn.prepare_cached(
        "SELECT seq, anchor_seq, leaf_hash, chain_hash FROM ledger_tombstones WHERE seq >= ?1 AND seq <= ?2 \
         ORDER BY seq",
    )?;
    let mut tomb_rows = tomb_stmt.query(params![seq_to(from), seq_to(to)])?;
    let mut next_tomb = || -> Result<Option<super::store::TombstoneRow>, LedgerError> {
        let Some(row) = tomb_rows.next()? else { return Ok(None) };
        Ok(Some(super::store::TombstoneRow {
            seq: seq_from(row.get(0)?)?,
            anchor_seq: seq_from(row.get(1)?)?,
            leaf_hash: array::<32>(row, 2, "leaf_hash")?,
            chain_hash: array::<32>(row, 3, "chain_hash")?,
        }))
    };
    let mut tomb = next_tomb()?;
    let mut buf = RawPage::with_capacity(page);
    while let Some(row) = rows.next()? {
        let seq = seq_from(row.get(0)?)?;
        // (A tombstone and an entry of the same seq are both passed on:
        // in one snapshot that means a removed entry was put back, which
        // verification reports.)
        while let Some(t) = tomb.filter(|t| t.seq <= seq) {
            buf.push_tombstone(&t);
            if buf.len() >= page && !sink(std::mem::replace(&mut buf, RawPage::with_capacity(page))) {
                return Ok(());
            }
            tomb = next_tomb()?;
        }
        push_raw(&mut buf, row)?;
        if buf.len() >= page && !sink(std::mem::replace(&mut buf, RawPage::with_capacity(page))) {
            return Ok(());
        }
    }
    while let Some(t) = tomb {
        buf.push_tombstone(&t);
        if buf.len() >= page && !sink(std::mem::replace(&mut buf, RawPage::with_capacity(page))) {
            return Ok(());
        }
        tomb = next_tomb()?;
    }
    if !buf.is_empty() {
        sink(buf);
    }
    Ok(())
}
