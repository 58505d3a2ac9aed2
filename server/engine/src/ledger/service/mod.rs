//! The `Ledger` handle: append (through the single sequencer task), read,
//! prove, checkpoint, rotate keys.
//!
//! One task, the sequencer, owns the chain head. Callers encrypt their
//! payloads in their own tasks (parallel), then queue them; the sequencer
//! takes whatever is queued (up to `max_batch` entries), assigns seqs, MACs,
//! hashes and chains the entries, and commits them in ONE transaction that
//! locks the head row, inserts them with their completed Merkle nodes and
//! stores the new head (one fsync). Every caller then gets its own result.
//! If the commit fails, every caller in the batch gets an error and nothing
//! of the batch is visible (docs/ARCHITECTURE.md §3, invariants 1 and 4).
//!
//! A batch is sealed on the head the sequencer trusts (while the batch
//! before it commits), and its transaction checks, under the head row's
//! lock, that the stored head is still that one; if not (a restart, a
//! second server process or replica on the same database, a forged row),
//! the batch takes the full path: the stored head is read in the
//! transaction, the entries since are checked, and the batch is sealed
//! again on it. So every process continues the same gapless chain.
//!
//! Here the handle; `sequencer` (batching, the pipelined loop), `commit`
//! (sealing a batch, checking foreign entries, the two commit paths) and
//! `checkpointer` (signed checkpoints, the tail check at start).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

mod checkpointer;
mod commit;
mod heard;
mod sequencer;

use self::checkpointer::{make_checkpoint, run_checkpointer, verify_tail_at_start};
use self::sequencer::run_sequencer;
use super::encoding;
use super::error::LedgerError;
use super::keyring::Keyring;
use super::merkle::{self, STORED_MIN_LEVEL};

use super::note::{Checkpoint, NoteVerifier};
use super::store::{self, CheckpointRow, Head};
use super::types::{EntryHeader, Hash, HeaderFields, StoredEntry};
use super::verify::EntryVerification;
use crate::clock::{Clock, RandomSource};
use crate::keys::KekProvider;
use crate::storage::Database;

/// An event to append: its clear header fields and its serialised payload.
#[derive(Debug, Clone)]
pub struct NewEntry {
    /// Event id; a retry with the same id returns the stored result.
    pub event_id: Uuid,
    /// When it happened at the source (µs since the epoch).
    pub occurred_at_us: i64,
    /// Clear, filterable fields (already masked).
    pub fields: HeaderFields,
    /// The full event, serialised; encrypted before it leaves the caller.
    pub payload: Vec<u8>,
    /// The event's `metrics.duration_ms`, counted in the latency rollups
    /// (outside the seal, like every rollup); `None` when it has none.
    pub duration_ms: Option<f64>,
}

impl NewEntry {
    /// An entry the ledger layer writes about itself (the purge anchor):
    /// actor `custos`, kind `system`, outcome success. Every other own event
    /// goes through `events::own` (the one writer, above this layer).
    pub fn system(
        occurred_at_us: i64,
        category: &str,
        action: &str,
        resource: (&str, Option<String>),
        channel: &str,
        payload: &serde_json::Value,
    ) -> NewEntry {
        NewEntry {
            event_id: Uuid::now_v7(),
            occurred_at_us,
            fields: HeaderFields {
                category: category.into(),
                action: action.into(),
                outcome: "success".into(),
                severity: "notice".into(),
                actor_id: Some("custos".into()),
                actor_kind: Some("system".into()),
                resource_type: Some(resource.0.into()),
                resource_id: resource.1,
                tenant: None,
                channel: Some(channel.into()),
                source_app: Some("custos".into()),
            },
            payload: payload.to_string().into_bytes(),
            duration_ms: None,
        }
    }
}

/// What the ledger returns for each committed event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Receipt {
    /// Ledger position.
    pub seq: u64,
    /// Event id.
    pub event_id: Uuid,
    /// Commit time (µs since the epoch).
    pub recorded_at_us: i64,
    /// True when the id was already committed and this is the stored result.
    pub duplicate: bool,
}

/// Tuning of the ledger.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// Log identity for a new ledger, e.g. `custos.example.com/ledger`.
    pub origin: String,
    /// Most entries per commit.
    pub max_batch: usize,
    /// Most append requests waiting for the sequencer (back-pressure beyond).
    pub queue_depth: usize,
    /// How often a checkpoint is signed while entries arrive.
    pub checkpoint_interval: Duration,
    /// The least time between two checkpoints (by the ledger's clock, from
    /// the latest stored one's date): one asked for sooner (a proof of an
    /// entry not yet covered, an export) waits for it, holding back the
    /// callers behind it, and then covers everything committed meanwhile.
    /// Under sustained ingest, a flood of such requests signs and stores
    /// one checkpoint per spacing, not one per commit. The wait is never
    /// longer than this in the process's own monotonic time (a clock set
    /// back or stopped). Zero: no spacing.
    pub checkpoint_spacing: Duration,
    /// How long an append waits for its commit (queueing included) before
    /// it gives up with [`LedgerError::TimedOut`].
    pub commit_timeout: Duration,
    /// How long the continuous background leases (alert evaluator,
    /// notifier, each SIEM destination) stay with a holder that stopped
    /// renewing them: the failover bound.
    pub lease_ttl: Duration,
    /// How often the head is read in case another replica's commit went
    /// unannounced (live tails hear them through LISTEN/NOTIFY).
    pub head_poll: Duration,
    /// On PostgreSQL, how far this replica's clock may run ahead of the
    /// database server's before it refuses to commit
    /// ([`LedgerError::ClockAhead`]): commit times never go backwards, so a
    /// clock ahead would hold every replica's back. Zero: no limit.
    pub max_clock_ahead: Duration,
    /// On SQLite, how long the dashboards' counts of committed entries are
    /// held in memory before they are written (in a commit's transaction,
    /// or one of their own when ingest stops); readers ask for them first
    /// (see [`super::rollup_buffer`]). On PostgreSQL, a quarter of it is how
    /// often this replica folds the commits' counts from
    /// `audit_rollup_deltas` into `audit_rollups`.
    pub rollups_every: Duration,
}

impl LedgerConfig {
    /// [`Self::max_clock_ahead`] in µs; no limit (zero) is `i64::MAX`.
    pub fn max_clock_ahead_us(&self) -> i64 {
        if self.max_clock_ahead.is_zero() {
            i64::MAX
        } else {
            i64::try_from(self.max_clock_ahead.as_micros()).unwrap_or(i64::MAX)
        }
    }
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            origin: "custos.local/ledger".into(),
            max_batch: 1000,
            queue_depth: 4096,
            checkpoint_interval: Duration::from_secs(5),
            checkpoint_spacing: Duration::from_secs(1),
            commit_timeout: Duration::from_secs(10),
            lease_ttl: Duration::from_secs(15),
            head_poll: Duration::from_secs(5),
            max_clock_ahead: Duration::from_secs(60),
            rollups_every: super::rollup_buffer::WRITE_EVERY,
        }
    }
}

/// An entry encrypted by its caller, waiting for a seq.
struct Prepared {
    event_id: Uuid,
    occurred_at_us: i64,
    fields: HeaderFields,
    key_id: u32,
    iv: [u8; 16],
    ciphertext: Vec<u8>,
    duration_ms: Option<f64>,
}

struct AppendRequest {
    items: Vec<Prepared>,
    reply: oneshot::Sender<Answer>,
    /// When it went through each stage (`custos_ledger_append_stage_seconds`).
    timeline: Timeline,
}

/// An append's outcome, and when the sequencer sent it (the caller's own
/// wake-up is the last stage of its timeline).
struct Answer {
    result: Result<Vec<Receipt>, LedgerError>,
    sent: std::time::Instant,
}

/// When an append reached each mark on its way to its commit: handed to
/// the sequencer (`queued`), taken into a batch, sealed, submitted for
/// commit, committed. Recorded per append that committed, when it is
/// answered, in `custos_ledger_append_stage_seconds{stage}`, each stage
/// the time from one mark to the next: `queued` (handed over → taken),
/// `sealing` (→ sealed), `behind` (→ submitted: on SQLite the wait for the
/// commit before it to settle, and when the batch then takes in what was
/// queued meanwhile, its sealing again; those taken in have their wait in
/// `queued` and the sealing in `sealing`; on PostgreSQL a batch is submitted while
/// the one before commits, and that wait falls in `committing`),
/// `committing` (→ committed), `answering` (→ the answer sent), and
/// `waking` (→ the caller running again, recorded by the caller). A mark
/// not reached is skipped: a batch sent down the full path
/// (`commit_batch`) without being submitted has no `behind`, and its
/// `committing` holds the wait for the batches before it and the full
/// path. So that a slow append's time can be placed (issue 21).
#[derive(Clone, Copy, Debug)]
struct Timeline {
    queued: std::time::Instant,
    taken: Option<std::time::Instant>,
    sealed: Option<std::time::Instant>,
    submitted: Option<std::time::Instant>,
    committed: Option<std::time::Instant>,
}

impl Timeline {
    fn new() -> Timeline {
        Timeline { queued: std::time::Instant::now(), taken: None, sealed: None, submitted: None, committed: None }
    }

    /// Records each stage's time, up to `answered` (successful appends).
    fn record(&self, answered: std::time::Instant) {
        let mut from = self.queued;
        for (stage, at) in [
            ("queued", self.taken),
            ("sealing", self.sealed),
            ("behind", self.submitted),
            ("committing", self.committed),
            ("answering", Some(answered)),
        ] {
            if let Some(at) = at {
                metrics::histogram!("custos_ledger_append_stage_seconds", "stage" => stage)
                    .record(at.saturating_duration_since(from).as_secs_f64());
                from = at;
            }
        }
    }
}

/// Marks a stage of every append in a batch as reached now.
fn mark(batch: &mut [AppendRequest], stage: fn(&mut Timeline) -> &mut Option<std::time::Instant>) {
    let now = std::time::Instant::now();
    for r in batch {
        *stage(&mut r.timeline) = Some(now);
    }
}

struct Inner {
    db: Database,
    keys: Keyring,
    clock: Arc<dyn Clock>,
    rng: Arc<dyn RandomSource>,
    cfg: LedgerConfig,
    tx: mpsc::Sender<AppendRequest>,
    /// The last head this process committed or verified: (seq, root).
    /// Checkpoints sign only this, never a head merely read from the database.
    committed: watch::Sender<(u64, Hash)>,
    /// The newest seq this replica knows committed, by it or another
    /// replica (`heard`): what live tails wait on.
    heard: watch::Sender<u64>,
    stop: watch::Sender<bool>,
    /// What this process's replicas last learnt of their leases.
    leases: crate::lease::Seen,
    /// The database server's clock (µs) as last read, and when (this
    /// process's monotonic clock): the clock check of leases and `/readyz`
    /// reads the database's clock at most every [`SKEW_CACHE`].
    db_clock: std::sync::Mutex<Option<(std::time::Instant, i64)>>,
    /// SQLite's writer (connection and held counts), and how many entries'
    /// counts it holds.
    writer: Option<(commit::SharedWriter, Arc<super::rollup_buffer::Shared>)>,
    /// Held while a checkpoint is signed and stored: callers that ask
    /// meanwhile share it when it covers what they asked for
    /// ([`checkpointer::make_checkpoint`]).
    checkpointing: tokio::sync::Mutex<()>,
    /// Set when PostgreSQL's committer task has ended, whichever way
    /// (returned, panicked, aborted): [`Ledger::sequencer_stopped`].
    committer_ended: std::sync::atomic::AtomicBool,
}

impl Inner {
    fn is_postgres(&self) -> bool {
        self.db.conn().get_database_backend() == sea_orm::DbBackend::Postgres
    }
}

/// Runs `write` in a transaction of its own (`BEGIN IMMEDIATE`) on SQLite's
/// writer, the connection the ledger commits on, on a blocking thread under
/// the writer's lock; `None` on PostgreSQL. For the writes that recur while
/// events come in (lease renewals, signed checkpoints). Made on a pooled
/// connection instead, each one is a commit from another connection, after
/// which SQLite drops the writer's page cache and memory map at its next
/// `BEGIN`: that `BEGIN` then took up to 11 ms of CPU, and such commits held
/// most of single-event ingest's slowest requests (issue 21;
/// docs/performance.md, **Each append's timeline, and foreign commits**).
/// The commit is fsynced ([`Synced::Now`]) or made durable by the ledger's
/// next commit ([`Synced::WithNextCommit`]); while the connection could not
/// be set back to FULL after such a write or a chunk of held counts (when
/// commits are refused too), these writes are refused. Each one's time,
/// the wait for the writer's lock included, is
/// `custos_ledger_side_write_seconds{synced}`; commits wait for it as for
/// a chunk of held counts.
async fn on_sqlite_writer<T, F>(inner: &Inner, synced: Synced, write: F) -> Option<Result<T, LedgerError>>
where
    T: Send + 'static,
    F: FnOnce(&rusqlite::Connection) -> Result<T, LedgerError> + Send + 'static,
{
    let (w, _) = inner.writer.as_ref()?;
    let w = w.clone();
    let started = std::time::Instant::now();
    let (answer, done) = oneshot::channel();
    tokio::task::spawn_blocking(move || {
        let mut g = w.lock().unwrap_or_else(|p| p.into_inner());
        // A caller that stopped waiting (its task aborted at shutdown) while
        // this waited for the lock: its write is not made late (a lease
        // renewed after its release).
        if answer.is_closed() {
            return;
        }
        let commit::Writer { conn, rollups } = &mut *g;
        let result = rollups.check_sync().and_then(|()| {
            let once = |conn: &mut rusqlite::Connection| {
                let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let out = write(&tx)?;
                tx.commit()?;
                Ok(out)
            };
            match synced {
                Synced::Now => once(conn),
                Synced::WithNextCommit => rollups.unsynced(conn, |_, conn| once(conn)),
            }
        });
        let _ = answer.send(result);
    });
    let result = done
        .await
        .unwrap_or_else(|_| Err(LedgerError::Internal("a write on the ledger's connection stopped (panic)".into())));
    metrics::histogram!("custos_ledger_side_write_seconds", "synced" => synced.label())
        .record(started.elapsed().as_secs_f64());
    Some(result)
}

/// When a write made on SQLite's writer ([`Ledger::on_sqlite_writer`]) is
/// durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Synced {
    /// At its commit, fsynced like the ledger's own (a signed checkpoint:
    /// it may be handed out at once).
    Now,
    /// With the WAL's next fsync (`synchronous = NORMAL`: its commit costs
    /// no fsync under the writer's lock), at the ledger's next commit or
    /// the background WAL checkpoint's, within about 2 s. A power loss
    /// before that loses it, and in the database it is as if the power had
    /// gone just before it; a crash of the process alone loses nothing. For
    /// lease writes: on SQLite every holder runs on this machine, so the
    /// power loss that undoes a renewal, a take or a saved cursor stopped
    /// every holder too; what they did outside the database since is done
    /// again, as after a crash between a send and its saved cursor (the
    /// work they fence is idempotent or resent, at least once:
    /// [`crate::lease`]).
    WithNextCommit,
}

impl Synced {
    fn label(self) -> &'static str {
        match self {
            Synced::Now => "now",
            Synced::WithNextCommit => "with_next_commit",
        }
    }
}

/// Writes the counts SQLite's writer holds once they are due (a second
/// old, or many), or a write a reader began and left once it is a second
/// old, a chunk at a time ([`super::rollup_buffer::Budget::Chunk`]), the writer's
/// lock let go between chunks so that commits are not held up by the whole
/// write; and every 5 s counts what stopped writers on the file left.
async fn run_rollup_writer(inner: Arc<Inner>) {
    use super::rollup_buffer::Budget;
    let Some((w, shared)) = inner.writer.clone() else { return };
    let every = inner.cfg.rollups_every;
    let mut stop = inner.stop.subscribe();
    for tick in 1u64.. {
        tokio::select! {
            _ = sequencer::stopped(&mut stop) => return,
            _ = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
        }
        // Every 5 s: the counts another writer on the file left when it stopped.
        let recover = tick % 20 == 0;
        // (Nothing is written while the ledger refuses commits until restart:
        // `/readyz` says so, once, rather than a warning here each time.)
        if (!recover && !shared.due(every)) || shared.refusing_commits() {
            continue;
        }
        let mut start = true;
        loop {
            if *stop.borrow() {
                // Shutdown writes the rest.
                return;
            }
            let (w, inner2, shared) = (w.clone(), inner.clone(), shared.clone());
            let step = tokio::task::spawn_blocking(move || {
                let mut g = w.lock().unwrap_or_else(|p| p.into_inner());
                let commit::Writer { conn, rollups } = &mut *g;
                // A write begins (or one a reader left is taken up) when
                // due, and goes on while under way.
                let go = if start { shared.due(every) } else { rollups.writing() };
                if !go {
                    return Ok(false);
                }
                rollups.write_step(conn, &inner2.keys, Budget::Chunk)
            })
            .await;
            start = false;
            match step {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) | Err(_) => break,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "the dashboards' held counts could not be written; trying again");
                    break;
                }
            }
        }
        if recover {
            let (w, inner2) = (w.clone(), inner.clone());
            let recovered = tokio::task::spawn_blocking(move || {
                let mut g = w.lock().unwrap_or_else(|p| p.into_inner());
                let commit::Writer { conn, rollups } = &mut *g;
                // (Its commits are fsynced: refused once that is not sure.)
                rollups.check_sync()?;
                super::rollup_buffer::recover(conn, rollups.db_path(), &inner2.keys, rollups.owner())
            })
            .await;
            if let Ok(Err(e)) = recovered {
                tracing::warn!(error = %e, "the counts a stopped writer left could not be counted; trying again");
            }
        }
    }
}

/// Runs `task` on a thread and a current-thread runtime of its own (its
/// `spawn_blocking` calls on that runtime's blocking threads), and returns
/// its handle, awaited and aborted from any runtime as usual. SQLite's
/// sequencer runs so: each batch hops twice through blocking threads
/// (sealing, then committing), and each hop's wake-up would otherwise
/// queue on the shared runtime's workers behind the HTTP server's tasks.
/// The thread ends once the task has ended or been aborted, or once the
/// runtime that spawned it has shut down (a test's, without
/// `Ledger::shutdown`), each time only after its blocking calls in flight
/// have returned; in the last case the task is dropped shortly after, on
/// this thread, not before that runtime's drop returns. Tasks it spawns
/// run on this runtime and end with it: the task must not take resources
/// tied to the shared runtime (PostgreSQL's sockets; sqlx's SQLite pool,
/// through its own worker threads, is fine). Its blocking work does not
/// hold back a test runtime's paused clock.
fn spawn_on_own_thread<F>(name: &str, task: F) -> std::io::Result<tokio::task::JoinHandle<()>>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    // Held by a task of the spawning runtime: dropped when that runtime
    // shuts down, or let go once the thread is done.
    let (mut alive, gone) = oneshot::channel::<()>();
    tokio::spawn(async move { alive.closed().await });
    // The runtime is built, and dropped, on its thread: never inside the
    // spawning runtime's tasks, where dropping one panics.
    let (handle_tx, handle_rx) = std::sync::mpsc::sync_channel(1);
    let io_name = format!("{name}-io");
    std::thread::Builder::new().name(name.into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().thread_name(io_name).build() {
            Ok(rt) => rt,
            Err(e) => {
                let _ = handle_tx.send(Err(e));
                return;
            }
        };
        let (done, ended) = oneshot::channel::<()>();
        let _ = handle_tx.send(Ok(rt.spawn(async move {
            task.await;
            drop(done);
        })));
        rt.block_on(async {
            tokio::select! {
                _ = ended => {}
                _ = gone => {}
            }
        });
    })?;
    // Answered at once (building a current-thread runtime takes
    // microseconds); a thread that died first answers nothing.
    handle_rx.recv().map_err(|_| std::io::Error::other("the thread ended before its runtime was built"))?
}

/// On PostgreSQL: folds the commits' counts waiting in
/// `audit_rollup_deltas` into `audit_rollups` four times per
/// `rollups_every` (every replica does; a fold finding nothing costs one
/// statement): readers of `audit_rollups_current` unnest the waiting rows,
/// so the fewer the cheaper. A failing fold is said once, then once a
/// minute while it lasts, with how many rows wait. Shutdown folds once
/// more after the sequencer's last commit.
async fn run_rollup_folder(inner: Arc<Inner>) {
    let every = (inner.cfg.rollups_every / 4).max(Duration::from_millis(5));
    let mut stop = inner.stop.subscribe();
    let mut failing: Option<(u64, std::time::Instant)> = None;
    loop {
        tokio::select! {
            _ = sequencer::stopped(&mut stop) => return,
            _ = tokio::time::sleep(every) => {}
        }
        match fold_pg_rollups(&inner, false).await {
            Ok(_) => {
                if let Some((failures, _)) = failing.take() {
                    tracing::info!(failures, "the dashboards' counts are folded again");
                }
            }
            Err(e) => {
                let (failures, said) = failing.get_or_insert((0, std::time::Instant::now()));
                *failures += 1;
                if *failures == 1 || said.elapsed() >= Duration::from_secs(60) {
                    *said = std::time::Instant::now();
                    let waiting = waiting_rollup_rows(&inner).await;
                    // Readers still count the waiting rows (`audit_rollups_current`).
                    tracing::warn!(error = %e, failures = *failures, waiting = ?waiting,
                        "the dashboards' counts could not be folded; trying again");
                }
            }
        }
    }
}

/// How many rows wait in `audit_rollup_deltas` (for the log).
async fn waiting_rollup_rows(inner: &Inner) -> Option<i64> {
    use sea_orm::ConnectionTrait as _;
    let conn = inner.db.conn();
    let stmt = sea_orm::Statement::from_string(
        conn.get_database_backend(),
        "SELECT CAST(COUNT(*) AS BIGINT) FROM audit_rollup_deltas".to_owned(),
    );
    conn.query_one_raw(stmt).await.ok().flatten().and_then(|r| r.try_get_by_index::<i64>(0).ok())
}

/// One fold on PostgreSQL, in a transaction of its own: the oldest 1,000
/// rows, skipped while another fold or a removal holds the folds' lock; or
/// (`all`, at shutdown) every row, waiting for that lock at most
/// `database.busy_timeout_ms`. Every replica folds, none by lease: a fold
/// is one transaction (a replica stopped mid-fold leaves the rows for the
/// next), and two never overlap.
async fn fold_pg_rollups(inner: &Inner, all: bool) -> Result<u64, LedgerError> {
    use sea_orm::{ConnectionTrait as _, TransactionTrait as _};
    let txn = inner.db.conn().begin().await?;
    txn.execute_unprepared("SET TRANSACTION ISOLATION LEVEL READ COMMITTED").await?;
    txn.execute_unprepared(&format!("SET LOCAL lock_timeout = {}", inner.db.busy_timeout().as_millis().max(1))).await?;
    let keys = super::rollup::fold_pg(&txn, all).await?;
    txn.commit().await?;
    Ok(keys)
}

/// How long a reading of the database server's clock is used for.
const SKEW_CACHE: std::time::Duration = std::time::Duration::from_secs(10);

/// Handle to the ledger; cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("origin", &self.inner.keys.origin()).finish_non_exhaustive()
    }
}

/// The background tasks of a running ledger; `Ledger::shutdown` ends them.
#[derive(Debug)]
pub struct LedgerTasks {
    sequencer: tokio::task::JoinHandle<()>,
    checkpointer: tokio::task::JoinHandle<()>,
    poller: tokio::task::JoinHandle<()>,
    listener: Option<tokio::task::JoinHandle<()>>,
    rollups: Option<tokio::task::JoinHandle<()>>,
    wal: Option<super::sqlite_direct::Checkpointer>,
}

impl LedgerTasks {
    /// Stops every task at once and writes nothing more: what a crash
    /// leaves behind (held counts unwritten, no last checkpoint). A commit
    /// already running on a blocking thread still ends (and may land), as
    /// before a crash. For tests of recovery; drop every `Ledger` handle
    /// after it.
    #[doc(hidden)]
    pub async fn abort(self) {
        for t in [Some(self.sequencer), Some(self.checkpointer), Some(self.poller), self.listener, self.rollups]
            .into_iter()
            .flatten()
        {
            t.abort();
            let _ = t.await;
        }
        drop(self.wal);
    }
}

impl Ledger {
    /// How long (µs) a continuous lease stays with a holder that stopped
    /// renewing it (`LedgerConfig::lease_ttl`).
    pub fn lease_ttl_us(&self) -> i64 {
        i64::try_from(self.inner.cfg.lease_ttl.as_micros()).unwrap_or(i64::MAX)
    }

    /// How far (µs) this replica's clock may run ahead of the database
    /// server's before it refuses to commit (`LedgerConfig::max_clock_ahead`;
    /// 0: no limit).
    pub fn max_clock_ahead_us(&self) -> i64 {
        i64::try_from(self.inner.cfg.max_clock_ahead.as_micros()).unwrap_or(i64::MAX)
    }

    /// On PostgreSQL, how far (µs) the database server's clock is ahead of
    /// this replica's, taken halfway through the round trip (negative: this
    /// one is ahead); `None` on SQLite (the same machine's clock).
    pub async fn database_clock_skew_us(&self) -> Result<Option<i64>, LedgerError> {
        use sea_orm::ConnectionTrait as _;
        let conn = self.inner.db.conn();
        if conn.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(None);
        }
        let before = self.now_us();
        let row = conn
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT) AS us",
            ))
            .await?;
        let after = self.now_us();
        let Some(row) = row else { return Ok(None) };
        let db_us: i64 = row.try_get("", "us")?;
        Ok(Some(db_us - (before + after) / 2))
    }

    /// On PostgreSQL with a limit set: how many seconds this replica's
    /// clock runs ahead of the database server's when that is more than
    /// `LedgerConfig::max_clock_ahead` (its commits are refused, and it
    /// takes no lease: its clock would make every holder's look lapsed).
    /// `None` otherwise, or when the database cannot be asked. The
    /// database's clock is read at most every 10 s.
    pub async fn clock_too_far_ahead(&self) -> Option<i64> {
        let limit = self.max_clock_ahead_us();
        if limit == 0 {
            return None;
        }
        // The database's clock now: read within the last few seconds and
        // carried forward by the monotonic clock (this replica's own clock
        // may jump meanwhile; that is what is checked), else read again.
        let cached = *self.inner.db_clock.lock().unwrap_or_else(|p| p.into_inner());
        let db_now = match cached {
            Some((at, db_us)) if at.elapsed() < SKEW_CACHE => db_us + at.elapsed().as_micros() as i64,
            _ => {
                let skew = self.database_clock_skew_us().await.ok().flatten()?;
                let db_us = self.now_us() + skew;
                *self.inner.db_clock.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((std::time::Instant::now(), db_us));
                db_us
            }
        };
        let ahead = self.now_us() - db_now;
        (ahead > limit).then_some(ahead / crate::time::SECOND_US)
    }

    /// What this process's replicas last learnt of their leases.
    pub(crate) fn lease_seen(&self) -> &crate::lease::Seen {
        &self.inner.leases
    }

    /// Opens the ledger on a migrated database: loads (or, for a brand-new
    /// ledger, creates) its keys and starts the sequencer and checkpointer.
    pub async fn open(
        db: Database,
        kek: &dyn KekProvider,
        cfg: LedgerConfig,
        clock: Arc<dyn Clock>,
        rng: Arc<dyn RandomSource>,
    ) -> Result<(Ledger, LedgerTasks), LedgerError> {
        let keys = Keyring::open(&db, kek, &cfg.origin, clock.as_ref(), rng.as_ref()).await?;
        if keys.origin() != cfg.origin {
            tracing::info!(stored = keys.origin(), configured = %cfg.origin, "ledger keeps the origin it was created with");
        }
        let head = verify_tail_at_start(&db, &keys).await?;
        // SQLite's writer.
        let writer = match db.sqlite_file() {
            Some(path) => {
                let conn = super::sqlite_direct::open_writer(path, db.busy_timeout())?;
                let rollups = super::rollup_buffer::Buffer::new(path);
                let shared = rollups.shared();
                Some((Arc::new(std::sync::Mutex::new(commit::Writer { conn, rollups })), shared))
            }
            None => None,
        };
        // 1 once it refuses every commit until restart (`refusing_commits`;
        // one gauge per process: a second ledger opened in it sets it to 0).
        metrics::gauge!("custos_ledger_refusing_commits").set(0.0);
        let (tx, rx) = mpsc::channel(cfg.queue_depth.max(1));
        let (committed, _) = watch::channel((head.seq, head.frontier.root()));
        let (heard, _) = watch::channel(head.seq);
        let (stop, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            db,
            keys,
            clock,
            rng,
            cfg,
            tx,
            committed,
            heard,
            stop,
            leases: Default::default(),
            db_clock: Default::default(),
            writer,
            checkpointing: Default::default(),
            committer_ended: Default::default(),
        });
        // The counts of entries a writer that stopped left uncounted
        // (bounded: about a second of ingest each), before anything is read.
        if let Some((w, _)) = &inner.writer {
            let (w, inner) = (w.clone(), inner.clone());
            tokio::task::spawn_blocking(move || {
                let mut g = w.lock().unwrap_or_else(|p| p.into_inner());
                let commit::Writer { conn, rollups } = &mut *g;
                super::rollup_buffer::recover(conn, rollups.db_path(), &inner.keys, rollups.owner())
            })
            .await
            .map_err(|_| LedgerError::CommitFailed)??;
        }
        let wal = match inner.db.sqlite_file() {
            Some(path) => Some(super::sqlite_direct::Checkpointer::start(path, inner.db.busy_timeout())?),
            None => None,
        };
        let committer = match &inner.writer {
            Some((conn, _)) => commit::Committer::Sqlite(conn.clone()),
            None => commit::Committer::Postgres(commit::SharedPg::default()),
        };
        let sequencer = match &committer {
            // (PostgreSQL's stays on the shared runtime: its connections'
            // sockets are that runtime's.)
            commit::Committer::Sqlite(_) => {
                spawn_on_own_thread("custos-sequencer", run_sequencer(inner.clone(), rx, head, committer))
                    .map_err(|source| LedgerError::Io { path: "(the sequencer's thread)".into(), source })?
            }
            _ => tokio::spawn(run_sequencer(inner.clone(), rx, head, committer)),
        };
        let rollups = if inner.writer.is_some() {
            Some(tokio::spawn(run_rollup_writer(inner.clone())))
        } else {
            inner.is_postgres().then(|| tokio::spawn(run_rollup_folder(inner.clone())))
        };
        let checkpointer = tokio::spawn(run_checkpointer(inner.clone()));
        let poller = tokio::spawn(heard::run_poller(inner.clone()));
        let listener = inner.is_postgres().then(|| {
            let pool = inner.db.conn().get_postgres_connection_pool().clone();
            tokio::spawn(heard::run_listener(inner.clone(), pool))
        });
        Ok((Ledger { inner }, LedgerTasks { sequencer, checkpointer, poller, listener, rollups, wal }))
    }

    /// Runs `write` in a transaction of its own on SQLite's writer, the
    /// connection the ledger commits on; `None` on PostgreSQL, where the
    /// pool serves (see [`on_sqlite_writer`]).
    pub(crate) async fn on_sqlite_writer<T, F>(&self, synced: Synced, write: F) -> Option<Result<T, LedgerError>>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> Result<T, LedgerError> + Send + 'static,
    {
        on_sqlite_writer(&self.inner, synced, write).await
    }

    /// A `PRAGMA` read on SQLite's writer, in a write of its own made as
    /// the leases' are (`with_next_commit`) or fsynced: `data_version`
    /// changes when another connection commits (then SQLite drops the
    /// writer's page cache and memory map at its next transaction);
    /// `synchronous` is 2 (FULL) between writes, 1 (NORMAL) within the
    /// leases'. `None` on PostgreSQL, if it cannot be read, or while the
    /// writer refuses writes. For tests.
    #[doc(hidden)]
    pub async fn writer_pragma(&self, name: &'static str, with_next_commit: bool) -> Option<i64> {
        let sql = format!("PRAGMA {name}");
        let synced = if with_next_commit { Synced::WithNextCommit } else { Synced::Now };
        self.on_sqlite_writer(synced, move |c| Ok(c.query_row(&sql, [], |r| r.get(0))?)).await?.ok()
    }

    /// Why this ledger refuses every commit until the server restarts, if
    /// it does: on SQLite, once its connection could not be set back to
    /// `synchronous = FULL` after a write made at NORMAL (or such a write
    /// panicked), so that nothing is committed without its fsync. `/readyz`
    /// answers 503 with it (out of the load balancer's rotation, for the
    /// supervisor to restart), and the gauge
    /// `custos_ledger_refusing_commits` is 1.
    pub fn refusing_commits(&self) -> Option<&'static str> {
        let (_, shared) = self.inner.writer.as_ref()?;
        shared.refusing_commits().then_some(
            "the ledger's SQLite connection could not be set back to synchronous = FULL (or a write at NORMAL \
             panicked): it commits nothing until the server restarts",
        )
    }

    /// Whether this ledger can no longer commit anything: its sequencer
    /// (the task every append goes through) has ended, or, on PostgreSQL,
    /// the task that commits the sequencer's batches has. At shutdown, or
    /// before it only through a bug (a panic outside the guarded commit).
    /// Every append then fails until the server restarts; `/readyz`
    /// answers 503 with it, out of the load balancer's rotation.
    pub fn sequencer_stopped(&self) -> bool {
        self.inner.tx.is_closed() || self.inner.committer_ended.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Tells the ledger's tasks to stop, as shutdown does first, without
    /// waiting for them or anything else shutdown does: a sequencer that
    /// ended while the server runs ([`Self::sequencer_stopped`]). For
    /// tests only: nothing else calls it.
    #[doc(hidden)]
    pub fn stop_tasks_for_tests(&self) {
        self.inner.stop.send_replace(true);
    }

    /// Leaves a transaction open in a write at `synchronous = NORMAL` on
    /// SQLite's writer (a bug in such a write), so that SQLite refuses to
    /// set the connection back to FULL ("Safety level may not be changed
    /// inside a transaction") and the ledger refuses every commit until
    /// restart ([`Self::refusing_commits`]). `false` on PostgreSQL. For
    /// tests only: nothing else calls it.
    #[doc(hidden)]
    pub async fn leave_a_write_at_normal_open_for_tests(&self) -> bool {
        let Some((w, _)) = &self.inner.writer else { return false };
        let w = w.clone();
        tokio::task::spawn_blocking(move || {
            let mut g = w.lock().unwrap_or_else(|p| p.into_inner());
            let commit::Writer { conn, rollups } = &mut *g;
            let _ = rollups.unsynced(conn, |_, conn| Ok(conn.execute_batch("BEGIN")?));
        })
        .await
        .is_ok()
    }

    /// Before a read of the dashboards' counts (`audit_rollups_current`):
    /// SQLite's writer writes the counts it holds (free when nothing is
    /// held), so that the read counts every entry this process committed
    /// before it. Free on PostgreSQL, where the view also counts the rows
    /// every replica's commits left in `audit_rollup_deltas`, in the read's
    /// snapshot: exact, with no lock and no write.
    pub async fn settle_rollups(&self) {
        if let Err(e) = self.write_held_rollups().await {
            // The read goes on with counts up to a second behind.
            tracing::warn!(error = %e, "the dashboards' held counts could not be written before a read");
        }
    }

    /// Writes the held counts of every commit staged so far, a chunk at a
    /// time (commits go in between chunks).
    async fn write_held_rollups(&self) -> Result<(), LedgerError> {
        let Some((w, shared)) = &self.inner.writer else { return Ok(()) };
        let want = shared.staged();
        while !shared.written_through(want) {
            let (w, shared, inner) = (w.clone(), shared.clone(), self.inner.clone());
            tokio::task::spawn_blocking(move || {
                let mut g = w.lock().unwrap_or_else(|p| p.into_inner());
                // Readers waiting at once share one write.
                if shared.written_through(want) {
                    return Ok(false);
                }
                let commit::Writer { conn, rollups } = &mut *g;
                rollups.write_step(conn, &inner.keys, super::rollup_buffer::Budget::Chunk)
            })
            .await
            .map_err(|_| LedgerError::Internal("the write of the held counts stopped (panic)".into()))??;
        }
        Ok(())
    }

    /// Writes at most `chunks` chunks of `keys` keys each of the held
    /// counts, and leaves the rest of the write under way: what a writer
    /// stopped between two chunks leaves. For tests of recovery.
    #[doc(hidden)]
    pub async fn write_held_rollups_partly(&self, keys: usize, chunks: usize) -> Result<(), LedgerError> {
        let Some((w, _)) = &self.inner.writer else { return Ok(()) };
        let (w, inner) = (w.clone(), self.inner.clone());
        tokio::task::spawn_blocking(move || {
            let mut g = w.lock().unwrap_or_else(|p| p.into_inner());
            let commit::Writer { conn, rollups } = &mut *g;
            for _ in 0..chunks {
                if !rollups.write_step(conn, &inner.keys, super::rollup_buffer::Budget::Keys(keys))? {
                    break;
                }
            }
            Ok(())
        })
        .await
        .map_err(|_| LedgerError::Internal("the write of the held counts stopped (panic)".into()))?
    }

    /// Before counts of the entries `from..=through` are taken away (a
    /// removal) on SQLite: writes the counts this process holds, counts what
    /// stopped writers left, and waits (up to 5 s) for other live processes
    /// on the same file to write theirs for those entries. Nothing to do on
    /// PostgreSQL, where the removal's transaction folds the waiting rows.
    pub async fn settle_all_rollups(&self, from: u64, through: u64) -> Result<(), LedgerError> {
        let Some((w, _)) = &self.inner.writer else { return Ok(()) };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let (w, inner) = (w.clone(), self.inner.clone());
            let held = tokio::task::spawn_blocking(move || {
                let mut g = w.lock().unwrap_or_else(|p| p.into_inner());
                let commit::Writer { conn, rollups } = &mut *g;
                rollups.write_now(conn, &inner.keys)?;
                rollups.check_sync()?;
                super::rollup_buffer::recover(conn, rollups.db_path(), &inner.keys, rollups.owner())?;
                super::rollup_buffer::held_elsewhere(conn, rollups.owner(), from, through)
            })
            .await
            .map_err(|_| LedgerError::CommitFailed)??;
            if !held {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(LedgerError::TimedOut { secs: 5.0 });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The current time from the ledger's clock (µs since the epoch).
    pub fn now_us(&self) -> i64 {
        self.inner.clock.now_us()
    }

    /// Random bytes from the ledger's source.
    pub fn random(&self, buf: &mut [u8]) -> Result<(), LedgerError> {
        Ok(self.inner.rng.fill(buf)?)
    }

    /// The database behind the ledger.
    pub fn db(&self) -> &Database {
        &self.inner.db
    }

    /// The key ring.
    pub fn keys(&self) -> &Keyring {
        &self.inner.keys
    }

    /// The ledger's origin.
    pub fn origin(&self) -> &str {
        self.inner.keys.origin()
    }

    /// The checkpoint verifier key, in signed-note form.
    pub fn verifier_key(&self) -> String {
        self.inner.keys.signer().verifier().to_vkey()
    }

    /// The checkpoint verifier.
    pub fn verifier(&self) -> NoteVerifier {
        self.inner.keys.signer().verifier()
    }

    /// Watches the last head committed or verified by this process: (seq, root).
    pub fn subscribe_committed(&self) -> watch::Receiver<(u64, Hash)> {
        self.inner.committed.subscribe()
    }

    /// Watches the newest seq this replica knows committed: its own commits
    /// at once, other replicas' as PostgreSQL announces them (`LISTEN
    /// custos_commits`), and the head read every 5 s in case an announcement
    /// was lost. One listener per replica serves every watcher.
    pub fn subscribe_head(&self) -> watch::Receiver<u64> {
        self.inner.heard.subscribe()
    }

    /// Appends one event and waits for its commit.
    pub async fn append_one(&self, entry: NewEntry) -> Result<Receipt, LedgerError> {
        let mut r = self.append(vec![entry]).await?;
        r.pop().ok_or(LedgerError::CommitFailed)
    }

    /// Appends events atomically (all in one commit) and waits for it.
    pub async fn append(&self, entries: Vec<NewEntry>) -> Result<Vec<Receipt>, LedgerError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        if entries.len() > self.inner.cfg.max_batch {
            return Err(LedgerError::Invalid(format!(
                "at most {} events per append, got {}",
                self.inner.cfg.max_batch,
                entries.len()
            )));
        }
        if *self.inner.stop.borrow() {
            return Err(LedgerError::Closed);
        }
        let key = self.inner.keys.current()?;
        let mut items = Vec::with_capacity(entries.len());
        // Every IV of the request in one draw (one system call, not one per event).
        let mut ivs = vec![0u8; 16 * entries.len()];
        self.inner.rng.fill(&mut ivs)?;
        for (e, iv) in entries.into_iter().zip(ivs.chunks_exact(16)) {
            let iv: [u8; 16] = iv.try_into().map_err(|_| LedgerError::CommitFailed)?;
            let ciphertext = key.encrypt(&iv, &e.payload);
            items.push(Prepared {
                event_id: e.event_id,
                occurred_at_us: e.occurred_at_us,
                fields: e.fields,
                key_id: key.key_id(),
                iv,
                ciphertext,
                duration_ms: e.duration_ms,
            });
        }
        let (reply, rx) = oneshot::channel();
        // Bounded: with the database down or hung, callers are answered
        // instead of waiting on it. A request still queued when this gives
        // up is dropped unsealed (`next_batch`); one already handed to the
        // database may still commit, and a retry with the same ids then
        // gets the stored receipts.
        let timeout = self.inner.cfg.commit_timeout;
        // Per caller (the commit histogram counts batches): from the queue
        // to the reply, the wait behind other batches included.
        let started = std::time::Instant::now();
        let wait = async {
            self.inner
                .tx
                .send(AppendRequest { items, reply, timeline: Timeline::new() })
                .await
                .map_err(|_| LedgerError::Closed)?;
            let answer = rx.await.map_err(|_| LedgerError::CommitFailed)?;
            if answer.result.is_ok() {
                metrics::histogram!("custos_ledger_append_stage_seconds", "stage" => "waking")
                    .record(answer.sent.elapsed().as_secs_f64());
            }
            answer.result
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(result) => {
                metrics::histogram!("custos_ledger_append_wait_seconds").record(started.elapsed().as_secs_f64());
                result
            }
            Err(_) => {
                metrics::counter!("custos_ledger_commit_timeouts_total").increment(1);
                Err(LedgerError::TimedOut { secs: timeout.as_secs_f64() })
            }
        }
    }

    /// The current head, read from the database.
    pub async fn head(&self) -> Result<Head, LedgerError> {
        store::read_head(self.inner.db.conn()).await
    }

    /// Signs and stores a checkpoint of the newest committed head, unless
    /// the latest checkpoint already covers the head this process had
    /// committed when this was called. Returns the latest checkpoint (the
    /// stored row; see [`make_checkpoint`] for the one exception). Callers
    /// asking at once share one.
    pub async fn checkpoint_now(&self) -> Result<Option<CheckpointRow>, LedgerError> {
        make_checkpoint(&self.inner, 0).await
    }

    /// [`Self::checkpoint_now`], for an entry `seq` read from the database,
    /// which may be ahead of what this process knows to be committed (its
    /// commit not yet announced, or another replica's): the latest
    /// checkpoint is taken as it is if it covers `seq` too, or if it covers
    /// everything this process knows to be committed (nothing newer can be
    /// signed here yet: it then does not cover `seq`).
    pub async fn checkpoint_covering(&self, seq: u64) -> Result<Option<CheckpointRow>, LedgerError> {
        make_checkpoint(&self.inner, seq).await
    }

    /// The latest checkpoint signed with the ledger's key (rows that do not
    /// verify are passed over).
    pub async fn latest_checkpoint(&self) -> Result<Option<CheckpointRow>, LedgerError> {
        store::latest_signed_checkpoint(self.inner.db.conn(), &self.verifier()).await
    }

    /// All stored checkpoints.
    pub async fn checkpoints(&self) -> Result<Vec<CheckpointRow>, LedgerError> {
        store::read_checkpoints(self.inner.db.conn()).await
    }

    /// Newest checkpoints first, a page at a time.
    pub async fn checkpoints_page(&self, limit: u64, before: Option<u64>) -> Result<Vec<CheckpointRow>, LedgerError> {
        store::read_checkpoints_page(self.inner.db.conn(), limit, before).await
    }

    /// The keys (never their secrets), newest first, with the current data key marked.
    pub async fn key_infos(&self) -> Result<Vec<custos_model::KeyInfo>, LedgerError> {
        use sea_orm::ConnectionTrait as _;
        let db = &self.inner.db;
        let (_, current) = self.inner.keys.data_key_ids();
        let rows = db
            .conn()
            .query_all_raw(db.stmt("SELECT CAST(key_id AS BIGINT) AS key_id, purpose, CAST(created_at AS BIGINT) AS created_at FROM ledger_keys ORDER BY key_id DESC", vec![]))
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let key_id: i64 = r.try_get("", "key_id")?;
            let purpose: String = r.try_get("", "purpose")?;
            let created: i64 = r.try_get("", "created_at")?;
            let key_id = u32::try_from(key_id).map_err(|_| LedgerError::Corrupt("key id out of range".into()))?;
            out.push(custos_model::KeyInfo {
                key_id,
                current: purpose == "data" && key_id == current,
                purpose,
                created_at: crate::time::rfc3339(created),
            });
        }
        Ok(out)
    }

    /// Creates a new data key; new events are sealed with it, old keys still
    /// read. Unrecorded: a rotation by a person goes through
    /// `Events::rotate_key`, which records it first.
    pub async fn rotate_key(&self) -> Result<u32, LedgerError> {
        self.inner.keys.rotate(&self.inner.db, self.inner.clock.as_ref(), self.inner.rng.as_ref(), None).await
    }

    /// The id the next data key will get.
    pub async fn next_key_id(&self) -> Result<u32, LedgerError> {
        Keyring::next_key_id(&self.inner.db).await
    }

    /// Creates a new data key with exactly the id `expected` (refused if
    /// another rotation took it).
    pub async fn rotate_key_to(&self, expected: u32) -> Result<u32, LedgerError> {
        self.inner.keys.rotate(&self.inner.db, self.inner.clock.as_ref(), self.inner.rng.as_ref(), Some(expected)).await
    }

    /// One stored entry.
    pub async fn entry(&self, seq: u64) -> Result<Option<StoredEntry>, LedgerError> {
        store::read_entry(self.inner.db.conn(), seq).await
    }

    /// Checks an entry's MAC and decrypts its payload.
    pub async fn open_payload(&self, entry: &StoredEntry) -> Result<zeroize::Zeroizing<Vec<u8>>, LedgerError> {
        let key = match self.inner.keys.get(entry.key_id) {
            Some(k) => k,
            None => {
                self.inner.keys.refresh(&self.inner.db).await?;
                self.inner
                    .keys
                    .get(entry.key_id)
                    .ok_or(LedgerError::UnknownKey { seq: entry.header.seq, key_id: entry.key_id })?
            }
        };
        let header = encoding::header_bytes(&entry.header);
        key.open(&header, &entry.iv, &entry.ciphertext, &entry.mac)
            .map_err(|e| LedgerError::Corrupt(format!("entry seq {}: {e}", entry.header.seq)))
    }

    /// Hash of the leaves `range` (leaf index = seq - 1).
    pub async fn range_hash(&self, range: std::ops::Range<u64>) -> Result<Hash, LedgerError> {
        store::range_hash(self.inner.db.conn(), range).await
    }

    /// The inclusion proof of entry `seq` in the tree of `tree_size` leaves.
    pub async fn inclusion_proof(&self, seq: u64, tree_size: u64) -> Result<Vec<Hash>, LedgerError> {
        if seq == 0 || seq > tree_size {
            return Err(LedgerError::Invalid(format!("seq {seq} is not in a tree of {tree_size} entries")));
        }
        let mut out = Vec::new();
        for r in merkle::inclusion_ranges(seq - 1, tree_size) {
            out.push(self.range_hash(r).await?);
        }
        Ok(out)
    }

    /// The consistency proof between two tree sizes.
    pub async fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, LedgerError> {
        if old > new {
            return Err(LedgerError::Invalid(format!("tree size {old} is larger than {new}")));
        }
        let mut out = Vec::new();
        for r in merkle::consistency_ranges(old, new) {
            out.push(self.range_hash(r).await?);
        }
        Ok(out)
    }

    /// Verifies a range or the whole ledger with this ledger's keys (MACs
    /// and decryption included) against its own public key.
    pub async fn verify(
        &self,
        scope: super::verify::VerifyScope,
        progress: impl FnMut(super::verify::Progress) + Send,
    ) -> Result<super::verify::VerifyReport, LedgerError> {
        self.inner.keys.refresh(&self.inner.db).await?;
        super::verify::verify(&self.inner.db, &self.verifier(), Some(&self.inner.keys), scope, progress).await
    }

    /// Verifies one entry: fields against leaf hash, MAC, decryption, and
    /// inclusion in the latest signed checkpoint.
    pub async fn verify_entry(&self, seq: u64) -> Result<EntryVerification, LedgerError> {
        if self.inner.keys.get(self.entry(seq).await?.map_or(0, |e| e.key_id)).is_none() {
            self.inner.keys.refresh(&self.inner.db).await?;
        }
        super::verify::verify_entry(&self.inner.db, &self.verifier(), Some(&self.inner.keys), seq).await
    }

    /// Stops accepting events, commits what is queued, signs a final
    /// checkpoint and ends the background tasks.
    pub async fn shutdown(&self, tasks: LedgerTasks) -> Result<(), LedgerError> {
        self.inner.stop.send_replace(true);
        // The sequencer ends when the queue is empty and closed; it holds a
        // receiver and every `Ledger` clone a sender, so it is told instead.
        let _ = tasks.checkpointer.await;
        let _ = tasks.sequencer.await;
        let _ = tasks.poller.await;
        if let Some(listener) = tasks.listener {
            listener.abort();
            let _ = listener.await;
        }
        if let Some(rollups) = tasks.rollups {
            let _ = rollups.await;
        }
        if self.inner.is_postgres()
            && let Err(e) = fold_pg_rollups(&self.inner, true).await
        {
            // Left in `audit_rollup_deltas` for the next fold, by any replica.
            tracing::warn!(error = %e, "the dashboards' counts could not be folded at shutdown");
        }
        if let Some((w, _)) = &self.inner.writer {
            let (w, inner) = (w.clone(), self.inner.clone());
            let closed = tokio::task::spawn_blocking(move || {
                let mut g = w.lock().unwrap_or_else(|p| p.into_inner());
                let commit::Writer { conn, rollups } = &mut *g;
                rollups.close(conn, &inner.keys)
            })
            .await;
            match closed {
                Ok(Ok(())) => {}
                // Left for the next start to count from the ledger.
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "the dashboards' held counts could not be written at shutdown")
                }
                Err(_) => tracing::warn!("the dashboards' held counts could not be written at shutdown"),
            }
        }
        make_checkpoint(&self.inner, 0).await?;
        if let Some(wal) = tasks.wal {
            let _ = tokio::task::spawn_blocking(move || wal.stop()).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod own_thread_tests {
    use super::spawn_on_own_thread;
    use std::sync::mpsc;
    use std::time::Duration;

    /// Says when the future holding it is dropped, and on which thread.
    struct Dropped(mpsc::Sender<Option<String>>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            let _ = self.0.send(std::thread::current().name().map(str::to_owned));
        }
    }

    fn pending_with(tx: mpsc::Sender<Option<String>>) -> impl std::future::Future<Output = ()> + Send + 'static {
        let guard = Dropped(tx);
        async move {
            let _guard = guard;
            std::future::pending::<()>().await
        }
    }

    #[test]
    fn a_task_on_its_own_thread_runs_there_with_blocking_threads_of_its_own() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let (tx, rx) = mpsc::channel();
        let handle = {
            let _in = rt.enter();
            spawn_on_own_thread("own-test", async move {
                let _ = tx.send(std::thread::current().name().map(str::to_owned));
                let blocking = tokio::task::spawn_blocking(|| std::thread::current().name().map(str::to_owned));
                let _ = tx.send(blocking.await.unwrap());
            })
            .unwrap()
        };
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap().as_deref(), Some("own-test"));
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap().as_deref(), Some("own-test-io"));
        assert!(rt.block_on(handle).is_ok(), "its handle resolves once it ends");
    }

    #[test]
    fn an_aborted_task_on_its_own_thread_is_dropped() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let (tx, rx) = mpsc::channel();
        let handle = {
            let _in = rt.enter();
            spawn_on_own_thread("own-test", pending_with(tx)).unwrap()
        };
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err(), "not dropped before the abort");
        handle.abort();
        assert!(rt.block_on(handle).unwrap_err().is_cancelled());
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap().as_deref(), Some("own-test"));
    }

    #[test]
    fn a_task_on_its_own_thread_is_dropped_with_the_runtime_that_spawned_it() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let (tx, rx) = mpsc::channel();
        let _handle = {
            let _in = rt.enter();
            spawn_on_own_thread("own-test", pending_with(tx)).unwrap()
        };
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err(), "alive while its spawner runs");
        drop(rt);
        // Dropped on its own thread (the runtime there shut down), not leaked.
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap().as_deref(), Some("own-test"));
    }
}
