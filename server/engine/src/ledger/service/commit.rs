//! Committing a batch: sealing it onto the head (seqs, MACs, leaves, chain,
//! Merkle nodes), checking entries another process appended first, and the
//! two commit paths, each straight on its driver (`sqlite_direct` on rusqlite,
//! `pg_direct` on sqlx).

use super::*;
use sea_orm::sqlx;

/// Checks entries that appeared in the database since the sequencer's last
/// trusted head (appended by another replica, or forged) before anything is
/// chained onto them: each must follow the chain and carry a valid MAC, and
/// together they must lead to the stored head.
pub(super) struct ForeignCheck {
    pub(super) chain: Hash,
    pub(super) frontier: crate::ledger::merkle::Frontier,
    pub(super) next: u64,
}

impl ForeignCheck {
    fn new(trusted: &Head, db_head: &Head) -> Result<Self, LedgerError> {
        if db_head.seq < trusted.seq {
            return Err(LedgerError::Corrupt(format!(
                "the ledger head went back from seq {} to {}: entries were removed",
                trusted.seq, db_head.seq
            )));
        }
        Ok(ForeignCheck { chain: trusted.chain_hash, frontier: trusted.frontier.clone(), next: trusted.seq + 1 })
    }

    /// Checks the next entries; an unknown key is reported as such so that
    /// the caller can load keys made by another process and try again.
    fn feed(&mut self, keys: &Keyring, entries: &[StoredEntry]) -> Result<(), LedgerError> {
        for e in entries {
            let seq = e.header.seq;
            let bad = |why: &str| LedgerError::Corrupt(format!("entry seq {seq} appended outside this process {why}"));
            if seq != self.next {
                return Err(bad("leaves a gap"));
            }
            let key = keys.get(e.key_id).ok_or(LedgerError::UnknownKey { seq, key_id: e.key_id })?;
            let hb = encoding::header_bytes(&e.header);
            if !key.verify_mac(&hb, &e.iv, &e.ciphertext, &e.mac) {
                return Err(bad("has an invalid MAC"));
            }
            let leaf = encoding::leaf_hash(&hb, e.key_id, &e.iv, &e.ciphertext, &e.mac);
            self.chain = encoding::chain_hash(&self.chain, &leaf);
            if leaf != e.leaf_hash || self.chain != e.chain_hash {
                return Err(bad("does not follow the chain"));
            }
            self.frontier.push(leaf, |_, _, _| {});
            self.next += 1;
        }
        Ok(())
    }

    fn finish(self, db_head: &Head) -> Result<(), LedgerError> {
        if self.next != db_head.seq + 1
            || self.chain != db_head.chain_hash
            || self.frontier.root() != db_head.frontier.root()
        {
            return Err(LedgerError::Corrupt("the stored ledger head does not match its entries".into()));
        }
        Ok(())
    }
}

/// A batch sealed onto a head: the rows to insert and the new head.
pub(super) struct Sealed {
    pub(super) entries: Vec<StoredEntry>,
    pub(super) nodes: Vec<(u32, u64, Hash)>,
    /// The dashboards' counts of the entries (their durations included),
    /// added up while sealing (on the pipelined path, while the batch
    /// before commits) rather than inside the commit.
    pub(super) counts: crate::ledger::rollup::Counts,
    pub(super) receipts: Vec<Vec<Receipt>>,
    pub(super) head: Head,
}

/// Whether the last batch sealed here found the clock behind the ledger.
static CLOCK_BEHIND: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Assigns seqs, MACs, leaf and chain hashes to a batch, on top of `head`.
/// Ids already committed (`known`) or repeated within the batch get the
/// stored result instead of a new entry.
pub(super) fn seal_batch(
    keys: &Keyring,
    recorded_at_us: i64,
    mut head: Head,
    batch: &[AppendRequest],
    known: &HashMap<Uuid, (u64, i64)>,
) -> Result<Sealed, LedgerError> {
    let mut entries: Vec<StoredEntry> = Vec::new();
    let mut durations: Vec<Option<f64>> = Vec::new();
    let mut nodes: Vec<(u32, u64, Hash)> = Vec::new();
    let mut in_batch: HashMap<Uuid, (u64, i64)> = HashMap::new();
    let mut receipts = Vec::with_capacity(batch.len());
    // Commit times never go backwards: a clock behind the newest entry
    // (stepped back, or another replica's ahead) is held at that time.
    let behind = head.recorded_at_us.saturating_sub(recorded_at_us) > crate::time::SECOND_US;
    if behind {
        metrics::counter!("custos_ledger_clock_behind_total").increment(1);
    }
    // Said once when it starts and once when it ends, not per batch.
    if CLOCK_BEHIND.swap(behind, std::sync::atomic::Ordering::Relaxed) != behind {
        if behind {
            tracing::warn!(
                behind_ms = (head.recorded_at_us - recorded_at_us) / 1000,
                "this replica's clock is behind the ledger's newest entry; commit times are held at that entry's \
                 until the clock catches up (the compliance clock check fails meanwhile)"
            );
        } else {
            tracing::info!("this replica's clock has caught up with the ledger's newest entry");
        }
    }
    let recorded_at_us = recorded_at_us.max(head.recorded_at_us);
    for req in batch {
        let mut rs = Vec::with_capacity(req.items.len());
        for item in &req.items {
            if let Some(&(seq, at)) = known.get(&item.event_id).or_else(|| in_batch.get(&item.event_id)) {
                rs.push(Receipt { seq, event_id: item.event_id, recorded_at_us: at, duplicate: true });
                continue;
            }
            let seq = head.seq + 1;
            let header = EntryHeader {
                seq,
                event_id: item.event_id,
                occurred_at_us: item.occurred_at_us,
                recorded_at_us,
                fields: item.fields.clone(),
            };
            let key = keys.get(item.key_id).ok_or(LedgerError::UnknownKey { seq, key_id: item.key_id })?;
            let hb = encoding::header_bytes(&header);
            let mac = key.mac(&hb, &item.iv, &item.ciphertext);
            let leaf_hash = encoding::leaf_hash(&hb, item.key_id, &item.iv, &item.ciphertext, &mac);
            let chain_hash = encoding::chain_hash(&head.chain_hash, &leaf_hash);
            head.frontier.push(leaf_hash, |level, index, hash| {
                if level >= STORED_MIN_LEVEL {
                    nodes.push((level, index, *hash));
                }
            });
            head.seq = seq;
            head.chain_hash = chain_hash;
            head.recorded_at_us = recorded_at_us;
            in_batch.insert(item.event_id, (seq, recorded_at_us));
            entries.push(StoredEntry {
                header,
                key_id: item.key_id,
                iv: item.iv,
                ciphertext: item.ciphertext.clone(),
                mac,
                leaf_hash,
                chain_hash,
            });
            durations.push(item.duration_ms);
            rs.push(Receipt { seq, event_id: item.event_id, recorded_at_us, duplicate: false });
        }
        receipts.push(rs);
    }
    let counts = crate::ledger::rollup::aggregate(&entries, &durations);
    Ok(Sealed { entries, nodes, counts, receipts, head })
}

/// SQLite's writer: the direct connection the sequencer commits through,
/// and the dashboards' counts it holds between writes.
pub(super) struct Writer {
    /// The ledger's connection (`synchronous = FULL`; the held counts'
    /// chunks alone are written with `NORMAL`, see `Buffer::write_step`).
    pub(super) conn: rusqlite::Connection,
    pub(super) rollups: crate::ledger::rollup_buffer::Buffer,
}

/// The writer, shared by the sequencer's commits and the writes of held
/// counts (SQLite only).
pub(super) type SharedWriter = Arc<std::sync::Mutex<Writer>>;

/// The fast commit of a batch sealed on `prev` (blocking thread): refuses
/// with `Conflict` if the database head is not `prev`.
pub(super) fn commit_sealed(w: &mut Writer, sealed: &Sealed, prev: &Head) -> Result<(), TryCommitError> {
    use crate::ledger::sqlite_direct as direct;
    let Writer { conn, rollups } = w;
    // Refused before the write lock is taken (`Buffer::check_sync`).
    rollups.check_sync()?;
    let tx = begin_write(conn)?;
    let head = direct::read_head(&tx)?;
    if !head.is(prev) {
        return Err(TryCommitError::Conflict);
    }
    let staged = write_sealed(&tx, sealed, rollups)?;
    tx.commit()?;
    rollups.committed(staged);
    Ok(())
}

/// Begins a commit's transaction, taking the write lock first. Its time is
/// `custos_ledger_write_lock_wait_seconds` (one sample per commit, failed
/// BEGINs included, usually near zero): the wait for another connection
/// holding the lock (a pooled connection: a setting saved; another
/// process), and after another connection's commit SQLite's reset of this
/// connection's page cache and memory map (up to 11 ms of CPU: why leases and
/// checkpoints are written on this connection, `on_sqlite_writer`).
fn begin_write(conn: &mut rusqlite::Connection) -> Result<rusqlite::Transaction<'_>, rusqlite::Error> {
    let started = std::time::Instant::now();
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate);
    metrics::histogram!("custos_ledger_write_lock_wait_seconds").record(started.elapsed().as_secs_f64());
    tx
}

/// Inserts a sealed batch's entries and nodes, stages its counts and moves
/// the head (inside the caller's transaction on a direct connection). The
/// staged counts go to `rollups` once the transaction has committed.
pub(super) fn write_sealed<'a>(
    tx: &rusqlite::Connection,
    sealed: &'a Sealed,
    rollups: &mut crate::ledger::rollup_buffer::Buffer,
) -> Result<crate::ledger::rollup_buffer::Staged<'a>, TryCommitError> {
    use crate::ledger::sqlite_direct as direct;
    if sealed.entries.is_empty() {
        return Ok(crate::ledger::rollup_buffer::Staged::Nothing);
    }
    if let Err(e) = direct::insert_entries(tx, &sealed.entries) {
        return Err(if direct::is_unique_violation(&e) { TryCommitError::Duplicate } else { e.into() });
    }
    direct::insert_nodes(tx, &sealed.nodes)?;
    let staged = rollups.stage(tx, &sealed.entries, &sealed.counts)?;
    direct::write_head(tx, &sealed.head)?;
    Ok(staged)
}

pub(super) enum TryCommitError {
    /// The unique index refused an event id that is already committed.
    Duplicate,
    /// The database head is not the one the batch was sealed on.
    Conflict,
    /// A caller gave up while the batch waited for its turn (PostgreSQL's
    /// committer): it is sealed again without their events.
    Abandoned,
    Other(LedgerError),
}

impl From<LedgerError> for TryCommitError {
    fn from(e: LedgerError) -> Self {
        TryCommitError::Other(e)
    }
}

impl From<rusqlite::Error> for TryCommitError {
    fn from(e: rusqlite::Error) -> Self {
        TryCommitError::Other(e.into())
    }
}

/// Commits one batch by the full path; returns it (for the replies) and the
/// receipts per request, in order.
pub(super) async fn commit_batch(
    inner: &Arc<Inner>,
    batch: Vec<AppendRequest>,
    trusted: &mut Head,
    writer: &Committer,
) -> (Vec<AppendRequest>, Result<Vec<Vec<Receipt>>, LedgerError>) {
    let started = std::time::Instant::now();
    let done = commit_batch_tries(inner, batch, trusted, writer).await;
    metrics::histogram!("custos_ledger_commit_seconds").record(started.elapsed().as_secs_f64());
    done
}

async fn commit_batch_tries(
    inner: &Arc<Inner>,
    mut batch: Vec<AppendRequest>,
    trusted: &mut Head,
    writer: &Committer,
) -> (Vec<AppendRequest>, Result<Vec<Vec<Receipt>>, LedgerError>) {
    let mut known: HashMap<Uuid, (u64, i64)> = HashMap::new();
    for attempt in 0..3 {
        let result = match writer {
            Committer::Sqlite(conn) => {
                let (inner2, conn, known2, trusted2) = (inner.clone(), conn.clone(), known.clone(), trusted.clone());
                let joined = tokio::task::spawn_blocking(move || {
                    let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
                    let r = commit_direct(&mut c, &inner2.keys, inner2.clock.as_ref(), &batch, &known2, &trusted2);
                    (batch, r)
                })
                .await;
                match joined {
                    Ok((b, r)) => {
                        batch = b;
                        r
                    }
                    // The blocking task panicked: the batch (and its replies) are gone.
                    Err(_) => return (Vec::new(), Err(LedgerError::CommitFailed)),
                }
            }
            Committer::Postgres(pg) => pg.lock().await.commit(inner, &batch, &known, trusted).await,
        };
        match result {
            Ok(sealed) => {
                mark(&mut batch, |t| &mut t.committed);
                let root = sealed.head.frontier.root();
                let seq = sealed.head.seq;
                inner.committed.send_if_modified(|last| {
                    let changed = seq > last.0;
                    if changed {
                        *last = (seq, root);
                    }
                    changed
                });
                super::heard::raise(&inner.heard, seq);
                *trusted = sealed.head;
                return (batch, Ok(sealed.receipts));
            }
            // Optimistic: duplicates of committed ids are rare (client
            // retries), so they are looked up only when the unique index
            // refuses the batch; then the batch is sealed again.
            Err(TryCommitError::Duplicate) if attempt < 2 => {
                let ids: Vec<Uuid> = batch.iter().flat_map(|r| r.items.iter().map(|i| i.event_id)).collect();
                let found = match writer {
                    Committer::Sqlite(conn) => {
                        let conn = conn.clone();
                        tokio::task::spawn_blocking(move || {
                            let c = conn.lock().unwrap_or_else(|p| p.into_inner());
                            crate::ledger::sqlite_direct::find_event_ids(&c.conn, &ids)
                        })
                        .await
                        .unwrap_or(Err(LedgerError::CommitFailed))
                    }
                    Committer::Postgres(_) => store::find_event_ids(inner.db.conn(), &ids).await,
                };
                match found {
                    Ok(f) => known = f,
                    Err(e) => return (batch, Err(e)),
                }
            }
            // Another process rotated the data key: load it and try again.
            Err(TryCommitError::Other(LedgerError::UnknownKey { .. })) if attempt < 2 => {
                if let Err(e) = inner.keys.refresh(&inner.db).await {
                    return (batch, Err(e));
                }
            }
            Err(TryCommitError::Duplicate | TryCommitError::Conflict | TryCommitError::Abandoned) => {
                return (batch, Err(LedgerError::CommitFailed));
            }
            Err(TryCommitError::Other(e)) => return (batch, Err(e)),
        }
    }
    (batch, Err(LedgerError::CommitFailed))
}

/// The commit on a direct SQLite connection (runs on a blocking thread).
pub(super) fn commit_direct(
    w: &mut Writer,
    keys: &Keyring,
    clock: &dyn Clock,
    batch: &[AppendRequest],
    known: &HashMap<Uuid, (u64, i64)>,
    trusted: &Head,
) -> Result<Sealed, TryCommitError> {
    use crate::ledger::sqlite_direct as direct;
    let Writer { conn, rollups } = w;
    rollups.check_sync()?;
    // IMMEDIATE: take the write lock first, so the head cannot move under us.
    let tx = begin_write(conn)?;
    let head = direct::read_head(&tx)?;
    if !head.is(trusted) {
        let mut check = ForeignCheck::new(trusted, &head)?;
        let mut failed = None;
        direct::scan_entries(&tx, trusted.seq + 1, head.seq, 4096, |page| match check.feed(keys, &page) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        })?;
        if let Some(e) = failed {
            return Err(e.into());
        }
        check.finish(&head)?;
    }
    let sealed = seal_batch(keys, clock.now_us(), head, batch, known)?;
    let staged = write_sealed(&tx, &sealed, rollups)?;
    tx.commit()?;
    rollups.committed(staged);
    Ok(sealed)
}

pub(super) fn is_unique_violation(e: &LedgerError) -> bool {
    match e {
        LedgerError::Storage(crate::storage::StorageError::Db(db)) => {
            matches!(db.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_)))
        }
        _ => false,
    }
}

/// Whether this replica's clock (`now`) is so far ahead of the database
/// server's that committing would hold every replica's commit times back;
/// the refusal is said once when it starts and once when it ends.
fn refuse_clock_ahead(cfg: &super::LedgerConfig, now: i64, server_now: i64) -> Result<(), LedgerError> {
    let ahead = now - server_now;
    let limit = cfg.max_clock_ahead;
    let refused = ahead > cfg.max_clock_ahead_us();
    if CLOCK_AHEAD.swap(refused, std::sync::atomic::Ordering::Relaxed) != refused {
        if refused {
            tracing::error!(
                ahead_ms = ahead / 1000,
                limit_secs = limit.as_secs(),
                "this replica's clock is ahead of the database server's by more than ledger.max_clock_ahead_secs; \
                 it commits nothing until its clock is synchronised (NTP)"
            );
        } else {
            tracing::info!("this replica's clock is back within ledger.max_clock_ahead_secs of the database server's");
        }
    }
    if refused {
        metrics::counter!("custos_ledger_clock_ahead_refusals_total").increment(1);
        return Err(LedgerError::ClockAhead { ahead_secs: ahead as f64 / 1e6, limit_secs: limit.as_secs() });
    }
    Ok(())
}

/// After a commit whose statement checked the clock itself: a refusal
/// said before is said to have ended (nothing is refused here: the
/// server's clock read after the commit may have stepped back).
fn clock_back_within() {
    if CLOCK_AHEAD.swap(false, std::sync::atomic::Ordering::Relaxed) {
        tracing::info!("this replica's clock is back within ledger.max_clock_ahead_secs of the database server's");
    }
}

/// Whether the last commit here was refused for a clock ahead.
static CLOCK_AHEAD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Where the sequencer commits: SQLite's writer, or PostgreSQL's own
/// connection. Each is shared by the sequencer's full path and the commits
/// in flight (the lock hands it over). The full path runs only once every
/// batch in flight has settled; on PostgreSQL the committer may still be
/// starting a batch sealed on a failed one, which it refuses without the
/// database, or which fails its head check.
#[derive(Clone)]
pub(super) enum Committer {
    Sqlite(SharedWriter),
    Postgres(SharedPg),
}

/// The PostgreSQL sequencer's connection, shared as SQLite's writer is.
pub(super) type SharedPg = Arc<tokio::sync::Mutex<PgWriter>>;

/// How much longer than `database.busy_timeout_ms` the sequencer waits
/// for the answer to its `BEGIN` (or an idle connection's `SELECT 1`, a
/// head read) before it takes the connection for dead (the server itself
/// gives up the head's lock after busy_timeout); also added to the fast
/// commit's own wait ([`PgWriter::one_statement`]).
const NO_ANSWER_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// The name the sequencer's connection shows in `pg_stat_activity`.
pub const PG_SEQUENCER_APPLICATION: &str = "custos-sequencer";

/// The PostgreSQL sequencer's connection: one of its own, outside the pool
/// (so each replica holds one more than `database.max_connections`), named
/// [`PG_SEQUENCER_APPLICATION`]. Every commit runs on the same backend, with
/// its caches warm, and pays no acquire (sqlx pings a pooled connection
/// before handing it out). It is opened on the first commit.
///
/// A batch sealed on the head it finds commits in one statement, a
/// transaction of its own ([`PgWriter::commit_sealed`]). The full path's
/// transaction is spelled out (`BEGIN`, `COMMIT`, `ROLLBACK`). A moved
/// head, a duplicate id, a refused clock, a lock not granted within
/// busy_timeout or a failed check of foreign entries writes nothing and
/// keeps the connection; any other failure drops it, so the server rolls
/// back whatever an open transaction wrote and no connection is reused in
/// an unknown state (mid-`COPY`, or after a `COMMIT` or a statement whose
/// answer was lost). A commit that never finished (its task panicked)
/// leaves `in_txn` set: the connection is dropped before the next commit
/// (PostgreSQL would take a `BEGIN` as a warning and run it inside the old
/// transaction).
#[derive(Default)]
pub(super) struct PgWriter {
    conn: Option<sqlx::PgConnection>,
    /// A transaction is open, or a statement's answer has not come.
    in_txn: bool,
    /// When the connection last answered (opened, probed or committed).
    last_answer: Option<std::time::Instant>,
    /// The connection's backend (`pg_backend_pid()`): when an answer is
    /// lost, it is ended before the head is read.
    pid: Option<i32>,
}

impl PgWriter {
    /// Drops the connection (the server rolls back an open transaction).
    pub(super) fn discard(&mut self) {
        self.conn = None;
        self.pid = None;
        self.in_txn = false;
    }

    /// Opens a new connection in place of any held.
    async fn open(&mut self, inner: &Inner) -> Result<(), LedgerError> {
        self.discard();
        let (conn, pid) = Self::connect(inner).await?;
        self.conn = Some(conn);
        self.pid = Some(pid);
        self.last_answer = Some(std::time::Instant::now());
        Ok(())
    }

    /// Opens the connection (bounded as the pool's acquire is, by
    /// `database.busy_timeout_ms`).
    async fn connect(inner: &Inner) -> Result<(sqlx::PgConnection, i32), LedgerError> {
        use sqlx::{Connection as _, Row as _};
        let pool = inner.db.conn().get_postgres_connection_pool();
        let options = pool.connect_options().as_ref().clone().application_name(PG_SEQUENCER_APPLICATION);
        let opened = async {
            let mut conn = sqlx::PgConnection::connect_with(&options).await?;
            // The fast commit's one statement relies on READ COMMITTED (a
            // moved head is re-checked, not a serialization failure) and
            // waits for the head's lock at most busy_timeout, as the full
            // path's transaction says again with `SET LOCAL`. Set here, not
            // as startup options, which poolers such as PgBouncer refuse. A
            // statement that fails is not logged with its parameters (a
            // batch's header fields). The backend's pid is kept for
            // [`Self::after_lost_answer`].
            let set = format!(
                "SET default_transaction_isolation = 'read committed'; SET lock_timeout = '{}ms'; \
                 SET log_parameter_max_length_on_error = 0; SELECT pg_backend_pid() AS pid",
                inner.db.busy_timeout().as_millis().max(1)
            );
            let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(set)).fetch_all(&mut conn).await?;
            let pid: i32 = rows.last().ok_or(sqlx::Error::RowNotFound)?.try_get("pid")?;
            Ok::<_, sqlx::Error>((conn, pid))
        };
        match tokio::time::timeout(inner.db.busy_timeout(), opened).await {
            Ok(c) => c.map_err(crate::ledger::pg_direct::db_err),
            Err(_) => Err(LedgerError::Storage(crate::storage::StorageError::Connect {
                kind: "postgres",
                reason: "the sequencer's connection did not open within database.busy_timeout_ms".into(),
            })),
        }
    }

    /// Begins a transaction and locks the head row; returns the head and
    /// this replica's time, read once the lock is held and checked against
    /// the database server's clock (the full path's; a fast commit checks
    /// the clock in its statement). `BEGIN` and the head's
    /// lock go in one round trip; the lock waits at most
    /// `database.busy_timeout_ms` (PostgreSQL's `lock_timeout`, as SQLite's
    /// write lock waits), after which the batch fails and the connection,
    /// rolled back, is kept. A held connection that fails otherwise, or
    /// does not answer within that time and a second (the server
    /// restarted, a network path dropped it while idle), is replaced once:
    /// nothing was written on it.
    async fn begin(&mut self, inner: &Inner) -> Result<(Head, i64), LedgerError> {
        use crate::ledger::pg_direct;
        if self.in_txn {
            self.discard();
        }
        let mut fresh = false;
        let (head, server_now) = loop {
            if self.conn.is_none() {
                self.open(inner).await?;
                fresh = true;
            }
            let Some(conn) = self.conn.as_mut() else { continue };
            self.in_txn = true;
            // The server bounds the lock's wait; this, a little longer,
            // catches a connection that no longer answers.
            let wait = inner.db.busy_timeout();
            let answer = tokio::time::timeout(wait + NO_ANSWER_GRACE, pg_direct::begin_and_lock(conn, wait)).await;
            let locked = answer.unwrap_or_else(|_| {
                Err(LedgerError::Storage(crate::storage::StorageError::Connect {
                    kind: "postgres",
                    reason: "the sequencer's connection did not answer BEGIN within database.busy_timeout_ms".into(),
                }))
            });
            match locked {
                Ok(locked) => {
                    self.last_answer = Some(std::time::Instant::now());
                    break locked;
                }
                // Another replica held the head's lock past busy_timeout:
                // this batch fails, the connection stays.
                Err(e) if pg_direct::is_lock_timeout(&e) => {
                    self.rollback().await;
                    return Err(e);
                }
                Err(e) => {
                    self.discard();
                    if fresh {
                        return Err(e);
                    }
                }
            }
        };
        let now = inner.clock.now_us();
        if let Err(e) = refuse_clock_ahead(&inner.cfg, now, server_now) {
            self.rollback().await;
            return Err(e);
        }
        Ok((head, now))
    }

    /// Ends the transaction begun by [`Self::begin`] without keeping
    /// anything of it; the connection is kept if the rollback works.
    async fn rollback(&mut self) {
        if let Some(c) = &mut self.conn {
            match sqlx::raw_sql("ROLLBACK").execute(&mut *c).await {
                Ok(_) => self.in_txn = false,
                Err(_) => self.discard(),
            }
        }
    }

    /// Closes the connection at shutdown (between commits).
    pub(super) async fn close(&mut self) {
        use sqlx::Connection as _;
        if let Some(c) = self.conn.take()
            && !self.in_txn
        {
            let _ = c.close().await;
        }
        self.in_txn = false;
    }

    /// Writes a sealed batch in the begun transaction and commits it.
    async fn write(&mut self, inner: &Arc<Inner>, sealed: &Sealed) -> Result<(), TryCommitError> {
        use crate::ledger::pg_direct::{self, db_err};
        let Some(conn) = self.conn.as_mut() else { return Err(LedgerError::CommitFailed.into()) };
        let written = async {
            if !sealed.entries.is_empty() {
                if let Err(e) = pg_direct::insert_entries(conn, &sealed.entries).await {
                    return Err(if is_unique_violation(&e) { TryCommitError::Duplicate } else { e.into() });
                }
                pg_direct::write_nodes_counts_head(conn, &sealed.nodes, &sealed.counts, &sealed.head).await?;
            }
            sqlx::raw_sql("COMMIT").execute(&mut *conn).await.map_err(db_err)?;
            Ok(())
        }
        .await;
        match written {
            Ok(()) => {
                self.in_txn = false;
                self.last_answer = Some(std::time::Instant::now());
            }
            // The unique index refused the batch: the connection is sound.
            Err(TryCommitError::Duplicate) => {
                self.rollback().await;
                return written;
            }
            Err(_) => {
                self.discard();
                return written;
            }
        }
        self.committed(inner, sealed);
        Ok(())
    }

    /// The full commit: the head locked, foreign entries checked, the batch
    /// sealed on the database's head, written and committed.
    pub(super) async fn commit(
        &mut self,
        inner: &Arc<Inner>,
        batch: &[AppendRequest],
        known: &HashMap<Uuid, (u64, i64)>,
        trusted: &Head,
    ) -> Result<Sealed, TryCommitError> {
        use crate::ledger::pg_direct;
        let (head, now) = self.begin(inner).await?;
        let checked = async {
            if !head.is(trusted) {
                let conn = self.conn.as_mut().ok_or(LedgerError::CommitFailed)?;
                let mut check = ForeignCheck::new(trusted, &head)?;
                let mut next = trusted.seq + 1;
                while next <= head.seq {
                    let page = pg_direct::read_entries(conn, next, head.seq, 4096).await?;
                    let Some(last) = page.last() else { break };
                    next = last.header.seq + 1;
                    check.feed(&inner.keys, &page)?;
                }
                check.finish(&head)?;
            }
            seal_batch(&inner.keys, now, head, batch, known)
        }
        .await;
        let sealed = match checked {
            Ok(sealed) => sealed,
            Err(e) => {
                self.rollback().await;
                return Err(e.into());
            }
        };
        self.write(inner, &sealed).await?;
        Ok(sealed)
    }

    /// The fast commit of a batch sealed on `prev` (before the head was
    /// locked, while the batch before it committed): refuses with
    /// `Conflict` if the database head is not `prev`. One statement, so one
    /// round trip ([`crate::ledger::pg_direct::commit_in_one_statement`]),
    /// where the full path takes five (`BEGIN` and the lock, the `COPY`'s
    /// two, the nodes, counts and head, `COMMIT`). A connection idle for
    /// [`IDLE_PROBE`] is asked a `SELECT 1` first (bounded as `BEGIN` is):
    /// one that died while idle is replaced with nothing sent on it. If the
    /// statement's answer is lost ([`Self::after_lost_answer`]), the head
    /// says whether it committed. `args`: the statement's parameters, as
    /// the sealing thread encoded them for this batch on `prev` (none:
    /// encoded here).
    pub(super) async fn commit_sealed(
        &mut self,
        inner: &Arc<Inner>,
        sealed: &Sealed,
        prev: &Head,
        args: Option<crate::ledger::pg_direct::OneStatementArgs>,
    ) -> Result<(), TryCommitError> {
        if self.in_txn {
            self.discard();
        }
        self.ready(inner).await?;
        let stamp = inner.clock.now_us().max(sealed.head.recorded_at_us);
        let done = match self.one_statement(inner, sealed, prev, stamp, args).await {
            Sent::Answered(done) => done,
            Sent::Lost(e, pid) => self.after_lost_answer(inner, sealed, prev, stamp, e, pid).await?,
            Sent::Refused(e) => return Err(e),
        };
        if !done.committed {
            // Refused for the clock (said and counted here), else the head
            // moved. The statement's clock check read the server's clock
            // before `server_now`: a refusal right at the limit can come
            // back as a conflict, and the full path then refuses it.
            refuse_clock_ahead(&inner.cfg, stamp, done.server_now)?;
            return Err(TryCommitError::Conflict);
        }
        clock_back_within();
        self.committed(inner, sealed);
        Ok(())
    }

    /// The statement's answer was lost with its connection: its backend is
    /// ended (it may still be running the statement, waiting for the head's
    /// lock) and whether the batch committed is read from the head, on a
    /// new connection. The
    /// batch's own chain hash there means it did; the head it was sealed on
    /// means it did not, and it is sent once more (the statement checks the
    /// head again, so an old backend still running it is waited for);
    /// another head is a conflict for the full path (which finds the
    /// batch's ids among the committed ones if it did commit, beneath a
    /// later batch).
    async fn after_lost_answer(
        &mut self,
        inner: &Arc<Inner>,
        sealed: &Sealed,
        prev: &Head,
        stamp: i64,
        lost: LedgerError,
        lost_pid: Option<i32>,
    ) -> Result<crate::ledger::pg_direct::OneStatement, TryCommitError> {
        let head = match self.read_head(inner, lost_pid).await {
            Ok(head) => head,
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "the sequencer's connection was lost during a commit, and the head could not be read \
                     on a new one: the batch's callers get an error (a retry with the same ids gets the \
                     stored receipts if it committed)"
                );
                return Err(lost.into());
            }
        };
        if head == (sealed.head.seq, sealed.head.chain_hash) {
            // Committed here; with synchronous replication, perhaps not yet
            // on a standby (a backend ended while it waited says so and
            // goes). A write of this connection's own waits for a later
            // position, so the batch's is then replicated too.
            if let Err(e) = self.write_after(inner).await {
                tracing::warn!(error = %e, "a commit whose answer was lost could not be confirmed as replicated");
                return Err(lost.into());
            }
            return Ok(crate::ledger::pg_direct::OneStatement { committed: true, server_now: stamp });
        }
        if head != (prev.seq, prev.chain_hash) {
            return Err(TryCommitError::Conflict);
        }
        match self.one_statement(inner, sealed, prev, stamp, None).await {
            Sent::Answered(done) => Ok(done),
            Sent::Lost(e, _) => Err(e.into()),
            Sent::Refused(e) => Err(e),
        }
    }

    /// Sends [`crate::ledger::pg_direct::commit_in_one_statement`] and waits
    /// for its answer, at most the longer of `ledger.commit_timeout` (the
    /// callers' own wait) and `database.busy_timeout_ms` (the lock's), and a
    /// second: no answer by then is taken as a lost one. A
    /// unique violation or the lock's timeout leaves the connection sound
    /// (the statement wrote nothing); any other error drops it. `args`
    /// were encoded for this batch on `prev`; without them (a resend, the
    /// first consumed; or a batch whose encoding failed while it was
    /// sealed) they are encoded here, and a value the protocol cannot
    /// carry refuses the batch with nothing sent.
    async fn one_statement(
        &mut self,
        inner: &Inner,
        sealed: &Sealed,
        prev: &Head,
        stamp: i64,
        args: Option<crate::ledger::pg_direct::OneStatementArgs>,
    ) -> Sent {
        use crate::ledger::pg_direct;
        let Some(conn) = self.conn.as_mut() else { return Sent::Refused(LedgerError::CommitFailed.into()) };
        let args = match args {
            Some(args) => args,
            None => match pg_one_statement_args(inner, sealed, prev) {
                Ok(args) => args,
                Err(e) => return Sent::Refused(e.into()),
            },
        };
        // Until its answer: a dropped future (a panic, an abort) leaves the
        // connection mid-statement, and the next commit or `close` drops it.
        self.in_txn = true;
        let statement = pg_direct::commit_in_one_statement(conn, args, stamp);
        let wait = inner.cfg.commit_timeout.max(inner.db.busy_timeout()) + NO_ANSWER_GRACE;
        let answer = tokio::time::timeout(wait, statement).await;
        let answer = answer.unwrap_or_else(|_| {
            let silent = std::io::Error::new(std::io::ErrorKind::TimedOut, "the commit's statement was not answered");
            Err(pg_direct::db_err(sqlx::Error::Io(silent)))
        });
        match answer {
            Ok(done) => {
                self.in_txn = false;
                self.last_answer = Some(std::time::Instant::now());
                Sent::Answered(done)
            }
            Err(e) if is_unique_violation(&e) => {
                self.in_txn = false;
                Sent::Refused(TryCommitError::Duplicate)
            }
            Err(e) if pg_direct::is_lock_timeout(&e) => {
                self.in_txn = false;
                Sent::Refused(e.into())
            }
            Err(e) => {
                let pid = self.pid;
                self.discard();
                if pg_direct::is_connection_lost(&e) { Sent::Lost(e, pid) } else { Sent::Refused(e.into()) }
            }
        }
    }

    /// The database's head (seq, chain hash), read on a new connection
    /// (the old one lost), within `database.busy_timeout_ms` and a second;
    /// first the old connection's backend is ended (waiting up to 5 s for
    /// it to go), so that the head read is final (a failure to end it is
    /// logged: the statement's own check still makes a resend safe).
    async fn read_head(
        &mut self,
        inner: &Inner,
        lost_pid: Option<i32>,
    ) -> Result<(u64, crate::ledger::types::Hash), LedgerError> {
        self.open(inner).await?;
        let Some(conn) = self.conn.as_mut() else { return Err(LedgerError::CommitFailed) };
        let wait = inner.db.busy_timeout() + NO_ANSWER_GRACE;
        let read = async {
            if let Some(pid) = lost_pid {
                let ended = sqlx::query("SELECT pg_terminate_backend($1, 5000)").bind(pid).execute(&mut *conn).await;
                if let Err(e) = ended {
                    tracing::warn!(error = %e, pid, "the lost connection's backend could not be ended");
                }
            }
            crate::ledger::pg_direct::read_head(conn).await
        };
        match tokio::time::timeout(wait + std::time::Duration::from_secs(5), read).await {
            Ok(Ok(head)) => {
                self.last_answer = Some(std::time::Instant::now());
                Ok(head)
            }
            Ok(Err(e)) => {
                self.discard();
                Err(e)
            }
            Err(_) => {
                self.discard();
                Err(LedgerError::CommitFailed)
            }
        }
    }

    /// With synchronous replication (`synchronous_standby_names` set), a
    /// write transaction of its own on the connection (the head row
    /// rewritten as it is), within `database.busy_timeout_ms` and a second:
    /// its commit returns once it (and so all before it) is as durable as
    /// `synchronous_commit` asks. Without, the condition is false before
    /// the row is locked, and nothing is written or waited for.
    async fn write_after(&mut self, inner: &Inner) -> Result<(), LedgerError> {
        let Some(conn) = self.conn.as_mut() else { return Err(LedgerError::CommitFailed) };
        let wait = inner.db.busy_timeout() + NO_ANSWER_GRACE;
        let write = sqlx::raw_sql(
            "UPDATE ledger_head SET seq = seq WHERE id = 1 AND current_setting('synchronous_standby_names') <> ''",
        )
        .execute(&mut *conn);
        match tokio::time::timeout(wait, write).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                let e = crate::ledger::pg_direct::db_err(e);
                if !crate::ledger::pg_direct::is_lock_timeout(&e) {
                    self.discard();
                }
                Err(e)
            }
            Err(_) => {
                self.discard();
                Err(LedgerError::CommitFailed)
            }
        }
    }

    /// After a commit: other replicas' tails are woken without holding up
    /// the next batch.
    fn committed(&self, inner: &Arc<Inner>, sealed: &Sealed) {
        if !sealed.entries.is_empty() {
            let inner = inner.clone();
            tokio::spawn(async move { super::heard::announce(&inner).await });
        }
    }

    /// Opens the connection if there is none, or checks one idle for
    /// [`IDLE_PROBE`] with a `SELECT 1` (replaced if it fails or does not
    /// answer within `database.busy_timeout_ms` and a second).
    async fn ready(&mut self, inner: &Inner) -> Result<(), LedgerError> {
        let idle = self.last_answer.is_none_or(|t| t.elapsed() >= IDLE_PROBE);
        if let Some(conn) = self.conn.as_mut()
            && idle
        {
            let wait = inner.db.busy_timeout() + NO_ANSWER_GRACE;
            match tokio::time::timeout(wait, sqlx::raw_sql("SELECT 1").execute(&mut *conn)).await {
                Ok(Ok(_)) => self.last_answer = Some(std::time::Instant::now()),
                _ => self.discard(),
            }
        }
        if self.conn.is_none() {
            self.open(inner).await?;
        }
        Ok(())
    }
}

/// The fast commit's statement's parameters for a batch sealed on `prev`
/// ([`crate::ledger::pg_direct::one_statement_args`]): encoded by the
/// sequencer while it seals the batch, again by the committer for a resend.
pub(super) fn pg_one_statement_args(
    inner: &Inner,
    sealed: &Sealed,
    prev: &Head,
) -> Result<crate::ledger::pg_direct::OneStatementArgs, LedgerError> {
    crate::ledger::pg_direct::one_statement_args(
        &sealed.entries,
        &sealed.nodes,
        &sealed.counts,
        prev,
        &sealed.head,
        inner.cfg.max_clock_ahead_us(),
    )
}

/// How a fast commit's statement ended ([`PgWriter::one_statement`]).
enum Sent {
    /// The server answered: committed, or refused for the head or the clock.
    Answered(crate::ledger::pg_direct::OneStatement),
    /// The connection was lost before the answer: the outcome is unknown
    /// (with the lost connection's backend pid).
    Lost(LedgerError, Option<i32>),
    /// Nothing was written (a duplicate id, the lock's timeout), or the
    /// statement failed on the server.
    Refused(TryCommitError),
}

/// How long the sequencer's connection may have been idle before a fast
/// commit checks it first ([`PgWriter::ready`]).
const IDLE_PROBE: std::time::Duration = std::time::Duration::from_secs(1);
