//! The `Ledger` handle: append (through the single sequencer task), read,
//! prove, checkpoint, rotate keys.
//!
//! One task, the sequencer, owns the chain head. Callers encrypt their
//! payloads in their own tasks (parallel), then queue them; the sequencer
//! takes whatever is queued (up to `max_batch` entries), and in ONE
//! transaction locks the head row, assigns seqs, MACs, hashes and chains the
//! entries, inserts them with their completed Merkle nodes, stores the new
//! head and commits (one fsync). Every caller then gets its own result. If
//! the commit fails, every caller in the batch gets an error and nothing of
//! the batch is visible (docs/ARCHITECTURE.md §3, invariants 1 and 4).
//!
//! The head is read inside each transaction, never cached, so a restart or a
//! second server process on the same PostgreSQL database continues the same
//! gapless chain.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::TransactionTrait;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

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
    /// An event Custos records about itself (start, stop, key rotation,
    /// purge…): actor `custos`, kind `system`, outcome success.
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
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            origin: "custos.local/ledger".into(),
            max_batch: 1000,
            queue_depth: 4096,
            checkpoint_interval: Duration::from_secs(5),
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
    reply: oneshot::Sender<Result<Vec<Receipt>, LedgerError>>,
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
    stop: watch::Sender<bool>,
}

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
    wal: Option<super::sqlite_direct::Checkpointer>,
}

impl Ledger {
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
        let (tx, rx) = mpsc::channel(cfg.queue_depth.max(1));
        let (committed, _) = watch::channel((head.seq, head.frontier.root()));
        let (stop, _) = watch::channel(false);
        let inner = Arc::new(Inner { db, keys, clock, rng, cfg, tx, committed, stop });
        let (direct, wal) = match inner.db.sqlite_file() {
            Some(path) => {
                let busy = inner.db.busy_timeout();
                let conn = super::sqlite_direct::open_writer(path, busy)?;
                (
                    Some(Arc::new(std::sync::Mutex::new(conn))),
                    Some(super::sqlite_direct::Checkpointer::start(path, busy)?),
                )
            }
            None => (None, None),
        };
        let sequencer = match direct {
            Some(conn) => tokio::spawn(run_pipelined_sequencer(inner.clone(), rx, head, conn)),
            None => tokio::spawn(run_sequencer(inner.clone(), rx, head)),
        };
        let checkpointer = tokio::spawn(run_checkpointer(inner.clone()));
        Ok((Ledger { inner }, LedgerTasks { sequencer, checkpointer, wal }))
    }

    /// The current time from the ledger's clock (µs since the epoch).
    pub fn now_us(&self) -> i64 {
        self.inner.clock.now_us()
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
        for e in entries {
            let mut iv = [0u8; 16];
            self.inner.rng.fill(&mut iv)?;
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
        self.inner.tx.send(AppendRequest { items, reply }).await.map_err(|_| LedgerError::Closed)?;
        rx.await.map_err(|_| LedgerError::CommitFailed)?
    }

    /// The current head, read from the database.
    pub async fn head(&self) -> Result<Head, LedgerError> {
        store::read_head(self.inner.db.conn()).await
    }

    /// Signs and stores a checkpoint of the current head, unless the latest
    /// checkpoint already covers it. Returns the latest checkpoint.
    pub async fn checkpoint_now(&self) -> Result<Option<CheckpointRow>, LedgerError> {
        make_checkpoint(&self.inner).await
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
                created_at: crate::events::service::rfc3339(created),
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
        make_checkpoint(&self.inner).await?;
        if let Some(wal) = tasks.wal {
            let _ = tokio::task::spawn_blocking(move || wal.stop()).await;
        }
        Ok(())
    }
}

/// Verifies (with MACs) the entries after the latest checkpoint before the
/// ledger appends anything: a row forged since then must never be chained
/// onto or signed. Returns the head, now trusted.
async fn verify_tail_at_start(db: &Database, keys: &Keyring) -> Result<Head, LedgerError> {
    let head = store::read_head(db.conn()).await?;
    let from =
        store::latest_signed_checkpoint(db.conn(), &keys.signer().verifier()).await?.map_or(1, |c| c.tree_size + 1);
    if head.seq >= from {
        let report = super::verify::verify(
            db,
            &keys.signer().verifier(),
            Some(keys),
            super::verify::VerifyScope { from_seq: Some(from), to_seq: None },
            |_| {},
        )
        .await?;
        if let Some(f) = report.failure {
            return Err(LedgerError::Corrupt(format!(
                "the entries after the latest checkpoint fail verification ({}); refusing to append to a damaged ledger",
                f.detail
            )));
        }
    }
    Ok(head)
}

/// Checks entries that appeared in the database since the sequencer's last
/// trusted head (appended by another replica, or forged) before anything is
/// chained onto them: each must follow the chain and carry a valid MAC, and
/// together they must lead to the stored head.
struct ForeignCheck {
    chain: Hash,
    frontier: super::merkle::Frontier,
    next: u64,
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
struct Sealed {
    entries: Vec<StoredEntry>,
    /// Each entry's duration, for the latency rollups.
    durations: Vec<Option<f64>>,
    nodes: Vec<(u32, u64, Hash)>,
    receipts: Vec<Vec<Receipt>>,
    head: Head,
}

/// Assigns seqs, MACs, leaf and chain hashes to a batch, on top of `head`.
/// Ids already committed (`known`) or repeated within the batch get the
/// stored result instead of a new entry.
fn seal_batch(
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
    Ok(Sealed { entries, durations, nodes, receipts, head })
}

/// The direct SQLite connection the sequencer commits through (SQLite only).
type DirectConn = Arc<std::sync::Mutex<rusqlite::Connection>>;

/// The sequencer on PostgreSQL: one batch at a time, each in one
/// transaction that locks the head row (so replicas take turns).
async fn run_sequencer(inner: Arc<Inner>, mut rx: mpsc::Receiver<AppendRequest>, mut trusted: Head) {
    let mut stop = inner.stop.subscribe();
    while let Some(batch) = next_batch(&inner, &mut rx, &mut stop).await {
        let started = std::time::Instant::now();
        let (batch, result) = commit_batch(&inner, batch, &mut trusted, None).await;
        metrics::histogram!("custos_ledger_commit_seconds").record(started.elapsed().as_secs_f64());
        reply(batch, result);
    }
}

/// Collects the next batch: waits for one request, then takes whatever else
/// is queued, up to `max_batch` events. None once stopped and drained.
async fn next_batch(
    inner: &Inner,
    rx: &mut mpsc::Receiver<AppendRequest>,
    stop: &mut watch::Receiver<bool>,
) -> Option<Vec<AppendRequest>> {
    let next = tokio::select! {
        biased;
        req = rx.recv() => req,
        _ = stopped(stop) => {
            // Drain what was queued before the stop, then end.
            rx.close();
            rx.recv().await
        }
    };
    let first = next?;
    let mut n = first.items.len();
    let mut batch = vec![first];
    while n < inner.cfg.max_batch {
        match rx.try_recv() {
            Ok(r) => {
                n += r.items.len();
                batch.push(r);
            }
            Err(_) => break,
        }
    }
    Some(batch)
}

/// Answers every caller of a batch.
fn reply(batch: Vec<AppendRequest>, result: Result<Vec<Vec<Receipt>>, LedgerError>) {
    let n: usize = batch.iter().map(|r| r.items.len()).sum();
    metrics::histogram!("custos_ledger_batch_entries").record(n as f64);
    match result {
        Ok(receipts) => {
            metrics::counter!("custos_ledger_entries_total").increment(n as u64);
            for (req, r) in batch.into_iter().zip(receipts) {
                let _ = req.reply.send(Ok(r));
            }
        }
        Err(e) => {
            metrics::counter!("custos_ledger_commit_failures_total").increment(1);
            tracing::error!(error = %e, entries = n, "ledger batch commit failed; every caller in it gets an error");
            for req in batch {
                let _ = req.reply.send(Err(LedgerError::CommitFailed));
            }
        }
    }
}

/// A batch sealed on an expected head, being committed on a blocking thread.
struct InFlight {
    /// The head the batch leaves when it commits: the base for the next one.
    after: Head,
    task: tokio::task::JoinHandle<CommitOutcome>,
}

/// What a blocking commit hands back: the batch (for the replies), its
/// receipts, and whether it committed.
type CommitOutcome = (Vec<AppendRequest>, Vec<Vec<Receipt>>, Result<(), TryCommitError>);

enum Step {
    Settled(Result<CommitOutcome, tokio::task::JoinError>),
    Batch(Option<Vec<AppendRequest>>),
}

/// The SQLite sequencer, pipelined: while batch N is inserted and fsynced on
/// a blocking thread, batch N+1 is sealed here on the head N will leave. N+1
/// is submitted only after N has committed. If N fails, if the database head
/// is not the expected one (another process wrote), or if an event id is
/// already committed, the batch takes the full path instead (`commit_batch`:
/// read the head, verify foreign entries, look up duplicates, reseal).
/// Callers are answered only after their own commit.
async fn run_pipelined_sequencer(
    inner: Arc<Inner>,
    mut rx: mpsc::Receiver<AppendRequest>,
    mut trusted: Head,
    conn: DirectConn,
) {
    let mut stop = inner.stop.subscribe();
    let mut in_flight: Option<InFlight> = None;
    loop {
        let step = match in_flight.as_mut() {
            Some(f) => tokio::select! {
                biased;
                joined = &mut f.task => Step::Settled(joined),
                b = next_batch(&inner, &mut rx, &mut stop) => Step::Batch(b),
            },
            None => Step::Batch(next_batch(&inner, &mut rx, &mut stop).await),
        };
        match step {
            Step::Settled(joined) => {
                if let Some(f) = in_flight.take() {
                    settle(&inner, f.after, joined, &mut trusted, &conn).await;
                }
            }
            Step::Batch(None) => break,
            Step::Batch(Some(batch)) => {
                let base = in_flight.as_ref().map_or_else(|| trusted.clone(), |f| f.after.clone());
                // This is the work that overlaps with the in-flight commit.
                let sealed = seal_batch(&inner.keys, inner.clock.now_us(), base.clone(), &batch, &HashMap::new());
                let base_holds = match in_flight.take() {
                    Some(f) => {
                        let joined = f.task.await;
                        settle(&inner, f.after, joined, &mut trusted, &conn).await
                    }
                    None => true,
                };
                match sealed {
                    Ok(sealed) if base_holds => in_flight = Some(submit(&conn, batch, sealed, base)),
                    _ => {
                        let (batch, result) = commit_batch(&inner, batch, &mut trusted, Some(&conn)).await;
                        reply(batch, result);
                    }
                }
            }
        }
    }
    if let Some(f) = in_flight.take() {
        let joined = f.task.await;
        settle(&inner, f.after, joined, &mut trusted, &conn).await;
    }
}

/// Starts committing a sealed batch on `prev`.
fn submit(conn: &DirectConn, batch: Vec<AppendRequest>, sealed: Sealed, prev: Head) -> InFlight {
    let after = sealed.head.clone();
    let conn = conn.clone();
    let task = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
        let result = commit_sealed(&mut c, &sealed, &prev);
        metrics::histogram!("custos_ledger_commit_seconds").record(started.elapsed().as_secs_f64());
        (batch, sealed.receipts, result)
    });
    InFlight { after, task }
}

/// Answers the callers of a finished in-flight batch. Returns whether the
/// ledger now ends at `after` (so that a batch sealed on it may be submitted).
async fn settle(
    inner: &Arc<Inner>,
    after: Head,
    joined: Result<CommitOutcome, tokio::task::JoinError>,
    trusted: &mut Head,
    conn: &DirectConn,
) -> bool {
    match joined {
        Ok((batch, receipts, Ok(()))) => {
            let (seq, root) = (after.seq, after.frontier.root());
            inner.committed.send_if_modified(|last| {
                let changed = seq > last.0;
                if changed {
                    *last = (seq, root);
                }
                changed
            });
            *trusted = after;
            reply(batch, Ok(receipts));
            true
        }
        Ok((batch, _, Err(TryCommitError::Other(e)))) if !matches!(e, LedgerError::UnknownKey { .. }) => {
            reply(batch, Err(e));
            false
        }
        // The head moved, an id was a duplicate, or a key is new: full path.
        Ok((batch, _, Err(_))) => {
            let (batch, result) = commit_batch(inner, batch, trusted, Some(conn)).await;
            reply(batch, result);
            false
        }
        // The blocking task panicked: its callers' replies are dropped, which
        // they see as a failed commit. The database rolled back.
        Err(_) => false,
    }
}

/// The fast commit of a batch sealed on `prev` (blocking thread): refuses
/// with `Conflict` if the database head is not `prev`.
fn commit_sealed(conn: &mut rusqlite::Connection, sealed: &Sealed, prev: &Head) -> Result<(), TryCommitError> {
    use super::sqlite_direct as direct;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let head = direct::read_head(&tx)?;
    if head.seq != prev.seq || head.chain_hash != prev.chain_hash {
        return Err(TryCommitError::Conflict);
    }
    write_sealed(&tx, sealed)?;
    tx.commit()?;
    Ok(())
}

/// Inserts a sealed batch's entries and nodes and moves the head (inside the
/// caller's transaction on a direct connection).
fn write_sealed(tx: &rusqlite::Connection, sealed: &Sealed) -> Result<(), TryCommitError> {
    use super::sqlite_direct as direct;
    if sealed.entries.is_empty() {
        return Ok(());
    }
    if let Err(e) = direct::insert_entries(tx, &sealed.entries) {
        return Err(if direct::is_unique_violation(&e) { TryCommitError::Duplicate } else { e.into() });
    }
    direct::insert_nodes(tx, &sealed.nodes)?;
    super::rollup::write_direct(tx, &sealed.entries, &sealed.durations)?;
    direct::write_head(tx, &sealed.head)?;
    Ok(())
}

enum TryCommitError {
    /// The unique index refused an event id that is already committed.
    Duplicate,
    /// The database head is not the one the batch was sealed on.
    Conflict,
    Other(LedgerError),
}

impl From<LedgerError> for TryCommitError {
    fn from(e: LedgerError) -> Self {
        TryCommitError::Other(e)
    }
}

impl From<sea_orm::DbErr> for TryCommitError {
    fn from(e: sea_orm::DbErr) -> Self {
        TryCommitError::Other(e.into())
    }
}

impl From<rusqlite::Error> for TryCommitError {
    fn from(e: rusqlite::Error) -> Self {
        TryCommitError::Other(e.into())
    }
}

/// Commits one batch; returns it (for the replies) and the receipts per
/// request, in order.
async fn commit_batch(
    inner: &Arc<Inner>,
    mut batch: Vec<AppendRequest>,
    trusted: &mut Head,
    direct: Option<&DirectConn>,
) -> (Vec<AppendRequest>, Result<Vec<Vec<Receipt>>, LedgerError>) {
    let mut known: HashMap<Uuid, (u64, i64)> = HashMap::new();
    for attempt in 0..3 {
        let result = match direct {
            Some(conn) => {
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
            None => commit_orm(inner, &batch, &known, trusted).await,
        };
        match result {
            Ok(sealed) => {
                let root = sealed.head.frontier.root();
                let seq = sealed.head.seq;
                inner.committed.send_if_modified(|last| {
                    let changed = seq > last.0;
                    if changed {
                        *last = (seq, root);
                    }
                    changed
                });
                *trusted = sealed.head;
                return (batch, Ok(sealed.receipts));
            }
            // Optimistic: duplicates of committed ids are rare (client
            // retries), so they are looked up only when the unique index
            // refuses the batch; then the batch is sealed again.
            Err(TryCommitError::Duplicate) if attempt < 2 => {
                let ids: Vec<Uuid> = batch.iter().flat_map(|r| r.items.iter().map(|i| i.event_id)).collect();
                let found = match direct {
                    Some(conn) => {
                        let conn = conn.clone();
                        tokio::task::spawn_blocking(move || {
                            let c = conn.lock().unwrap_or_else(|p| p.into_inner());
                            super::sqlite_direct::find_event_ids(&c, &ids)
                        })
                        .await
                        .unwrap_or(Err(LedgerError::CommitFailed))
                    }
                    None => store::find_event_ids(inner.db.conn(), &ids).await,
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
            Err(TryCommitError::Duplicate | TryCommitError::Conflict) => {
                return (batch, Err(LedgerError::CommitFailed));
            }
            Err(TryCommitError::Other(e)) => return (batch, Err(e)),
        }
    }
    (batch, Err(LedgerError::CommitFailed))
}

/// The commit on a direct SQLite connection (runs on a blocking thread).
fn commit_direct(
    conn: &mut rusqlite::Connection,
    keys: &Keyring,
    clock: &dyn Clock,
    batch: &[AppendRequest],
    known: &HashMap<Uuid, (u64, i64)>,
    trusted: &Head,
) -> Result<Sealed, TryCommitError> {
    use super::sqlite_direct as direct;
    // IMMEDIATE: take the write lock first, so the head cannot move under us.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let head = direct::read_head(&tx)?;
    if head.seq != trusted.seq || head.chain_hash != trusted.chain_hash {
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
    write_sealed(&tx, &sealed)?;
    tx.commit()?;
    Ok(sealed)
}

fn is_unique_violation(e: &LedgerError) -> bool {
    match e {
        LedgerError::Storage(crate::storage::StorageError::Db(db)) => {
            matches!(db.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(_)))
        }
        _ => false,
    }
}

/// The commit through sea-orm (PostgreSQL).
async fn commit_orm(
    inner: &Inner,
    batch: &[AppendRequest],
    known: &HashMap<Uuid, (u64, i64)>,
    trusted: &Head,
) -> Result<Sealed, TryCommitError> {
    let txn = inner.db.conn().begin().await?;
    let head = store::lock_head(&txn).await?;
    if head.seq != trusted.seq || head.chain_hash != trusted.chain_hash {
        let mut check = ForeignCheck::new(trusted, &head)?;
        let mut next = trusted.seq + 1;
        while next <= head.seq {
            let page = store::read_entries(&txn, next, head.seq, 4096).await?;
            let Some(last) = page.last() else { break };
            next = last.header.seq + 1;
            check.feed(&inner.keys, &page)?;
        }
        check.finish(&head)?;
    }
    let sealed = seal_batch(&inner.keys, inner.clock.now_us(), head, batch, known)?;
    if !sealed.entries.is_empty() {
        if let Err(e) = store::insert_entries(&txn, &sealed.entries).await {
            return Err(if is_unique_violation(&e) { TryCommitError::Duplicate } else { TryCommitError::Other(e) });
        }
        store::insert_nodes(&txn, &sealed.nodes).await?;
        super::rollup::write_orm(&txn, &sealed.entries, &sealed.durations).await?;
        store::write_head(&txn, &sealed.head).await?;
    }
    txn.commit().await?;
    Ok(sealed)
}

/// Resolves once the stop flag is set.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn run_checkpointer(inner: Arc<Inner>) {
    let mut stop = inner.stop.subscribe();
    let mut tick = tokio::time::interval(inner.cfg.checkpoint_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped(&mut stop) => break,
        }
        if let Err(e) = make_checkpoint(&inner).await {
            metrics::counter!("custos_checkpoint_failures_total").increment(1);
            tracing::error!(error = %e, "signing a checkpoint failed");
        }
        // A data key rotated by another process (`custos keys rotate`, a
        // replica) becomes this process's sealing key too.
        if let Err(e) = inner.keys.refresh(&inner.db).await {
            tracing::error!(error = %e, "refreshing data keys failed");
        }
    }
}

async fn make_checkpoint(inner: &Inner) -> Result<Option<CheckpointRow>, LedgerError> {
    let conn = inner.db.conn();
    let latest = store::latest_signed_checkpoint(conn, &inner.keys.signer().verifier()).await?;
    let (seq, root) = *inner.committed.borrow();
    if seq == 0 || latest.as_ref().is_some_and(|c| c.tree_size >= seq) {
        return Ok(latest);
    }
    let cp = Checkpoint { origin: inner.keys.origin().to_owned(), tree_size: seq, root_hash: root };
    let row = CheckpointRow {
        tree_size: cp.tree_size,
        root_hash: cp.root_hash,
        note: inner.keys.signer().sign_checkpoint(&cp),
        created_at_us: inner.clock.now_us(),
    };
    store::insert_checkpoint(conn, &row).await?;
    metrics::counter!("custos_checkpoints_total").increment(1);
    tracing::debug!(tree_size = row.tree_size, "checkpoint signed");
    Ok(Some(row))
}
