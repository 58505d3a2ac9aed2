//! Verification of the ledger: online (through the API, with progress) and
//! offline (`custos verify` on a database, with only the public key, or with
//! the KEK as well).
//!
//! What is checked, entry by entry from the start (genesis or the latest purge
//! anchor) or over a range:
//! - seqs are gapless (a deleted row is a missing seq);
//! - each stored leaf hash equals the hash recomputed from the stored fields
//!   (any changed byte in any column changes it);
//! - each stored chain value equals `H(previous chain, leaf)`;
//! - with the KEK: each MAC, then that the payload decrypts;
//! - every checkpoint's Ed25519 signature, and that the Merkle root recomputed
//!   from the leaves at its tree size equals the signed root (this catches a
//!   ledger rewritten consistently by someone without the signing key);
//! - that the ledger is not shorter than its latest checkpoint (truncation)
//!   and agrees with the stored head;
//! - every stored Merkle node (the ones inclusion and consistency proofs are
//!   served from) against the node recomputed from the leaves;
//! - every purge record's signature, and with the KEK that its anchor entry
//!   (MAC checked) says the same;
//! - checkpoints an auditor kept (`--trusted-checkpoint`): the ledger must
//!   still hold their trees (a consistency proof to the latest signed
//!   checkpoint, and the root recomputed from the leaves where they are kept);
//! - every retention record (entries removed by retention or erasure and
//!   replaced by tombstones): signed, exactly its tombstones, and with the
//!   KEK agreeing with its anchor entry; a tombstone stands only under one.
//!
//! Verification stops at the first failure and says which seq and why. It
//! runs beside a live server: entries appended meanwhile are left to the
//! next run, a removal that commits meanwhile is checked when its
//! tombstones are met, and a purge that commits meanwhile has the pass run
//! again from its end ([`verify_with`]).

use serde::{Deserialize, Serialize};

mod entry;
mod purges;

pub use self::entry::{EntryVerification, InclusionCheck, verify_entry};
use self::purges::{check_purge, check_retention_record, node_span};
use super::encoding::{self, GENESIS_CHAIN};
use super::error::LedgerError;
use super::keyring::Keyring;
use super::merkle::Frontier;
use super::note::{Checkpoint, NoteVerifier};
pub use super::raw_page::{KeySnapshot, RawPage, RawRec};
use super::store;
use super::types::Hash;
use crate::storage::Database;

/// Entries read per query.
const PAGE: u64 = 4096;

/// Which part of the ledger to verify.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct VerifyScope {
    /// First seq (default: the start of the retained ledger).
    pub from_seq: Option<u64>,
    /// Last seq (default: the head).
    pub to_seq: Option<u64>,
}

/// Pages of entries in seq order, read ahead by a task of their own while
/// the caller hashes: on SQLite a reader thread holding one read
/// transaction (so one consistent snapshot); on PostgreSQL one binary
/// `COPY` per page of seqs on one pooled connection, decoded straight into
/// the page's buffer.
/// When the verifier is behind (the queue is full), the reader has the next
/// page's MACs checked off the verifier's task (on SQLite by its own
/// thread; on PostgreSQL on a blocking thread), so that MACs and leaf
/// hashes are computed on both cores.
struct EntryPages {
    rx: tokio::sync::mpsc::Receiver<Result<RawPage, LedgerError>>,
    /// The reader: when the pages stop, whether it ended or failed.
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl EntryPages {
    fn open(db: &Database, from: u64, to: u64, keys: Option<KeySnapshot>) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let Some(path) = db.sqlite_file().map(std::path::Path::to_path_buf) else {
            let pool = db.conn().get_postgres_connection_pool().clone();
            let keys = keys.map(std::sync::Arc::new);
            let reader = tokio::spawn(async move {
                let mut conn = match pool.acquire().await {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(Err(super::pg_direct::db_err(e))).await;
                        return;
                    }
                };
                let (mut next, mut data) = (from, Vec::new());
                while let Some(mut page) = pg_page(&mut conn, &mut next, to, &mut data).await {
                    if let (Ok(p), Some(keys)) = (&mut page, &keys)
                        && tx.capacity() == 0
                    {
                        let (mut p, keys) = (std::mem::take(p), keys.clone());
                        page = tokio::task::spawn_blocking(move || {
                            p.check_sealed(&keys);
                            p
                        })
                        .await
                        .map_err(|e| LedgerError::Internal(format!("a MAC check stopped: {e}")));
                    }
                    let failed = page.is_err();
                    if tx.send(page).await.is_err() || failed {
                        return;
                    }
                }
            });
            return EntryPages { rx, reader: Some(reader) };
        };
        let busy = db.busy_timeout();
        let reader = tokio::task::spawn_blocking(move || {
            let run = || -> Result<(), LedgerError> {
                let mut conn = super::sqlite_direct::open(&path, busy)?;
                let snapshot = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Deferred)?;
                super::sqlite_direct::scan_raw(&snapshot, from, to, PAGE as usize, |mut page| {
                    // Balance the two cores: when the verifier is behind (the
                    // queue is full) this thread checks the page's MACs
                    // instead of waiting; otherwise the verifier does.
                    if let Some(keys) = &keys
                        && tx.capacity() == 0
                    {
                        page.check_sealed(keys);
                    }
                    tx.blocking_send(Ok(page)).is_ok()
                })
            };
            if let Err(e) = run() {
                let _ = tx.blocking_send(Err(e));
            }
        });
        EntryPages { rx, reader: Some(reader) }
    }

    /// The next page; after the last one, an error if the reader stopped
    /// without saying why (a panic), rather than an end that would read as
    /// missing entries.
    async fn next(&mut self) -> Option<Result<RawPage, LedgerError>> {
        if let Some(page) = self.rx.recv().await {
            return Some(page);
        }
        match self.reader.take()?.await {
            Ok(()) => None,
            Err(e) => Some(Err(LedgerError::Internal(format!("the verification's reader stopped: {e}")))),
        }
    }
}

/// The next page on PostgreSQL from `next` (moved past it), or `None` at
/// `to`. `data` is the buffer the entries' `COPY` stream is gathered in.
async fn pg_page(
    conn: &mut sea_orm::sqlx::pool::PoolConnection<sea_orm::sqlx::Postgres>,
    next: &mut u64,
    to: u64,
    data: &mut Vec<u8>,
) -> Option<Result<RawPage, LedgerError>> {
    loop {
        if *next > to {
            return None;
        }
        // At most PAGE seqs a query: a range as wide as the page,
        // not the whole rest of the ledger. PostgreSQL plans a wide
        // range from its statistics, and right after a bulk ingest
        // (before autovacuum's ANALYZE) it sorted the whole range for
        // each page: 120 ms a page of 4,096 instead of 2-7 ms.
        let hi = to.min(next.saturating_add(PAGE - 1));
        // Entries first (one binary COPY of the whole range: seq is the
        // key, so at most PAGE rows), then the tombstones of the same
        // range: an entry removed between the two reads is then seen
        // twice; if it is still there now, a removed entry was put back
        // (both are passed on, and reported).
        let mut page = match super::pg_direct::copy_entries_raw(conn, *next, hi, data).await {
            Ok(page) => page,
            Err(e) => return Some(Err(e)),
        };
        let tombs = match super::pg_direct::read_tombstones(conn, *next, hi, PAGE).await {
            Ok(t) => t,
            Err(e) => return Some(Err(e)),
        };
        if page.is_empty() && tombs.is_empty() {
            // Nothing in this range (rows deleted: the next page's
            // first seq shows the gap): on to the next seq held,
            // however far (a forged row may sit at any seq).
            match super::pg_direct::next_held_seq(conn, hi.saturating_add(1), to).await {
                Ok(Some(s)) => {
                    *next = s;
                    continue;
                }
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
        let mut put_back = std::collections::HashSet::new();
        if !tombs.is_empty() {
            // Seqs read both as an entry and as a tombstone: still an
            // entry now?
            let entry_seqs: std::collections::HashSet<u64> = page.recs.iter().map(|r| r.seq).collect();
            let twice = tombs.iter().map(|t| t.seq).filter(|s| entry_seqs.contains(s));
            for seq in twice.collect::<Vec<_>>() {
                match super::pg_direct::read_entries(conn, seq, seq, 1).await.map(|e| e.into_iter().next()) {
                    Ok(Some(_)) => {
                        put_back.insert(seq);
                    }
                    Ok(None) => {}
                    Err(e) => return Some(Err(e)),
                }
            }
        }
        // Both lists are whole up to `hi` (PAGE seqs, each a key).
        *next = hi + 1;
        page.merge_tombstones(&tombs, hi, &put_back);
        return Some(Ok(page));
    }
}

/// What kind of tampering or damage was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// A seq is missing: a row was deleted.
    MissingEntry,
    /// An entry beyond the head, or a seq out of place: a row was inserted.
    UnexpectedEntry,
    /// Stored fields do not hash to the stored leaf: a byte was changed.
    FieldsChanged,
    /// The chain value does not follow from the previous one.
    ChainBroken,
    /// The MAC does not match: the sealed record was altered or forged.
    MacInvalid,
    /// The MAC matched but the payload did not decrypt.
    Undecryptable,
    /// The entry names a key the ledger does not have.
    UnknownKey,
    /// The recomputed Merkle root differs from a signed checkpoint.
    RootMismatch,
    /// A checkpoint's signature does not verify, or it is malformed.
    CheckpointInvalid,
    /// The ledger ends before its latest signed checkpoint.
    Truncated,
    /// The stored head disagrees with the entries.
    HeadMismatch,
    /// A stored key fails authentication under the KEK.
    KeyTampered,
    /// A stored Merkle node differs from the one recomputed from the leaves
    /// (or is missing, or should not exist).
    NodeMismatch,
    /// A purge record is unsigned, its signature does not verify, or its
    /// anchor entry does not say the same.
    PurgeInvalid,
    /// A retention record (entries replaced by tombstones) does not verify,
    /// its tombstones are not the set it signed, or a tombstone has no valid
    /// record.
    RemovalInvalid,
}

/// Entries removed by retention or erasure under one signed record: their
/// tombstones stand in for them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedSet {
    /// The anchor entry recording the removal.
    pub anchor_seq: u64,
    /// First removed seq.
    pub from_seq: u64,
    /// Last removed seq.
    pub through_seq: u64,
    /// How many entries of the range were removed.
    pub removed: u64,
    /// `retention` or `erasure`.
    pub reason: String,
    /// SHA-256 of the archive bundle holding them (hex).
    pub archive_sha256: String,
    /// The archive's file name.
    pub archive_name: String,
    /// The anchor entry was opened with the KEK and matches the record.
    pub anchor_checked: bool,
    /// A later purge (a compaction) took its range: its signed record is
    /// checked, its tombstones are gone with the range.
    pub compacted: bool,
}

/// A purge the verified ledger starts after (its signed record checked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgedRange {
    /// First purged seq.
    pub from_seq: u64,
    /// Last purged seq.
    pub through_seq: u64,
    /// The anchor entry recording the purge.
    pub anchor_seq: u64,
    /// SHA-256 of the archive bundle holding the purged entries (hex).
    pub archive_sha256: String,
    /// The archive's file name.
    pub archive_name: String,
    /// The anchor entry was opened with the KEK and matches the record.
    pub anchor_checked: bool,
}

/// The first failure found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The failing entry (or the first seq of the failing range).
    pub seq: Option<u64>,
    /// What failed.
    pub kind: FailureKind,
    /// A sentence for people.
    pub detail: String,
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// First seq verified.
    pub from_seq: u64,
    /// Last seq verified (or reached).
    pub to_seq: u64,
    /// Entries whose leaf and chain were recomputed.
    pub entries_checked: u64,
    /// Tombstones (entries removed by retention or erasure) whose chain
    /// value was followed and whose signed record was checked.
    pub tombstones_checked: u64,
    /// Entries whose MAC and decryption were checked (0 without the KEK).
    pub macs_checked: u64,
    /// Checkpoints whose signature verified.
    pub checkpoints_signed: u64,
    /// Checkpoints whose root was recomputed and matched.
    pub checkpoints_matched: u64,
    /// Largest tree size proven equal to a signed checkpoint.
    pub verified_tree_size: Option<u64>,
    /// Stored Merkle nodes compared with the recomputed ones.
    pub nodes_checked: u64,
    /// Checkpoints given by the auditor that the ledger was proven to extend.
    pub trusted_checkpoints: u64,
    /// Purges (oldest first): the ranges no longer in the ledger.
    pub purges: Vec<PurgedRange>,
    /// Removals (oldest first): the entries replaced by tombstones.
    pub removals: Vec<RemovedSet>,
    /// The first failure, if any.
    pub failure: Option<Failure>,
}

impl VerifyReport {
    /// True when nothing failed.
    pub fn is_intact(&self) -> bool {
        self.failure.is_none()
    }
}

/// Progress of a running verification.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Progress {
    /// Entries done.
    pub checked: u64,
    /// Entries to do.
    pub total: u64,
}

/// A retention record as the scan meets its tombstones: they must lie in
/// its range, and (for a record read before the scan, whose tombstones
/// were all committed by then) be exactly the set it signed.
struct Removal {
    from_seq: u64,
    through_seq: u64,
    removed: u64,
    tombstones_sha256: Hash,
    /// Read before the scan started (not one committed during it).
    before_scan: bool,
    met: u64,
    digest: crate::ledger::tombstone::TombstonesDigest,
}

impl Removal {
    fn new(r: &crate::ledger::tombstone::RetentionRow, before_scan: bool) -> Self {
        Removal {
            from_seq: r.from_seq,
            through_seq: r.through_seq,
            removed: r.removed,
            tombstones_sha256: r.tombstones_sha256,
            before_scan,
            met: 0,
            digest: crate::ledger::tombstone::TombstonesDigest::new(),
        }
    }
}

fn fail(report: &mut VerifyReport, seq: Option<u64>, kind: FailureKind, detail: String) {
    if report.failure.is_none() {
        report.failure = Some(Failure { seq, kind, detail });
    }
}

/// Verifies the ledger in `db`. `verifier` is the checkpoint public key (from
/// the auditor, not from the database); `keys`, when given, adds MAC and
/// decryption checks. `progress` is called every few thousand entries (from 0
/// again when a pass is rerun: see [`verify_with`]).
pub async fn verify(
    db: &Database,
    verifier: &NoteVerifier,
    keys: Option<&Keyring>,
    scope: VerifyScope,
    progress: impl FnMut(Progress) + Send,
) -> Result<VerifyReport, LedgerError> {
    verify_with(db, verifier, keys, scope, &[], progress).await
}

/// Passes a verification may take beyond the first (see [`verify_with`]).
const MAX_RERUNS: u32 = 2;

/// [`verify`], also proving that the ledger extends each of `trusted`:
/// checkpoints an auditor kept, whose signatures the caller has checked.
///
/// Verification runs beside a live server. A purge that commits while it
/// runs takes entries the scan has not reached yet: they read as missing
/// (a compaction also takes the tombstones and anchors the records' checks
/// look for, and a scoped verification's start may be gone). So once a
/// purge newer than the one a pass started from has committed, a pass that
/// ended on an entry missing at or below it, on an invalid purge or
/// removal, or on an error is run again from the new start, at most
/// [`MAX_RERUNS`] times; each rerun reports progress from 0 again and is
/// logged. A rerun's own purge records are checked like any others; if a
/// rerun cannot complete, the first pass's report stands, and if it fails,
/// the first pass's finding is kept in its detail.
pub async fn verify_with(
    db: &Database,
    verifier: &NoteVerifier,
    keys: Option<&Keyring>,
    scope: VerifyScope,
    trusted: &[Checkpoint],
    mut progress: impl FnMut(Progress) + Send,
) -> Result<VerifyReport, LedgerError> {
    let mut earlier: Option<VerifyReport> = None;
    let mut reruns_left = MAX_RERUNS;
    loop {
        let (outcome, purged_through) = match store::all_purges(db.conn()).await {
            Ok(purges) => {
                let purged_through = purges.last().map(|p| p.through_seq);
                (verify_once(db, verifier, keys, scope, trusted, &purges, &mut progress).await, purged_through)
            }
            Err(e) => return settled(Err(e), earlier),
        };
        // Up to where a purge would have to reach to explain what this pass
        // found: the missing entry; any seq for a purge or a removal found
        // invalid (a compaction takes a removal's range and tombstones but
        // may keep its anchor, beyond the purge) or for an error.
        let missed = match &outcome {
            Ok(VerifyReport {
                failure: Some(Failure { kind: FailureKind::MissingEntry, seq: Some(s), .. }), ..
            }) => Some(*s),
            Ok(VerifyReport {
                failure: Some(Failure { kind: FailureKind::PurgeInvalid | FailureKind::RemovalInvalid, .. }),
                ..
            })
            | Err(_) => Some(0),
            Ok(_) => None,
        };
        if let Some(missed) = missed.filter(|_| reruns_left > 0) {
            let purged_now = store::latest_purge(db.conn()).await.ok().flatten().map(|p| p.through_seq);
            if let Some(now) = purged_now.filter(|now| Some(*now) > purged_through && missed <= *now) {
                let found = match &outcome {
                    Ok(report) => report.failure.as_ref().map(|f| f.detail.clone()).unwrap_or_default(),
                    Err(e) => e.to_string(),
                };
                tracing::warn!(
                    purged_through = now,
                    found,
                    "a purge committed while the ledger was verified: verifying again from its end"
                );
                // The first pass's report is the one kept.
                if earlier.is_none()
                    && let Ok(report) = outcome
                {
                    earlier = Some(report);
                }
                reruns_left -= 1;
                continue;
            }
        }
        return settled(outcome, earlier);
    }
}

/// A pass's outcome, or the earlier pass's report when a rerun could not
/// complete.
fn settled(
    outcome: Result<VerifyReport, LedgerError>,
    earlier: Option<VerifyReport>,
) -> Result<VerifyReport, LedgerError> {
    match (outcome, earlier) {
        (Ok(mut report), Some(earlier)) => {
            // What the earlier pass found stays on record beside the rerun's
            // own failure.
            if let (Some(f), Some(before)) = (report.failure.as_mut(), earlier.failure) {
                f.detail =
                    format!("{} (an earlier pass, before a purge committed, found: {})", f.detail, before.detail);
            }
            Ok(report)
        }
        (Ok(report), None) => Ok(report),
        (Err(e), Some(report)) => {
            tracing::warn!(error = %e, "the verification's rerun failed: the earlier pass's report stands");
            Ok(report)
        }
        (Err(e), None) => Err(e),
    }
}

/// One pass of [`verify_with`], from the end of the last of `purges` (every
/// purge record, oldest first, each checked below).
async fn verify_once(
    db: &Database,
    verifier: &NoteVerifier,
    keys: Option<&Keyring>,
    scope: VerifyScope,
    trusted: &[Checkpoint],
    purges: &[store::PurgeRow],
    progress: &mut (impl FnMut(Progress) + Send),
) -> Result<VerifyReport, LedgerError> {
    let conn = db.conn();
    let head = store::read_head(conn).await?;
    // The start is taken from the same records step 1b checks.
    let purge = purges.last();
    let retained_from = purge.map_or(1, |p| p.through_seq + 1);
    let from = scope.from_seq.unwrap_or(retained_from).max(retained_from);
    let full_tail = scope.to_seq.is_none();
    let to = scope.to_seq.unwrap_or(head.seq).min(head.seq.max(store::max_entry_seq(conn).await?));
    let mut report = VerifyReport {
        from_seq: from,
        to_seq: to,
        entries_checked: 0,
        tombstones_checked: 0,
        macs_checked: 0,
        checkpoints_signed: 0,
        checkpoints_matched: 0,
        verified_tree_size: None,
        nodes_checked: 0,
        trusted_checkpoints: 0,
        purges: Vec::new(),
        removals: Vec::new(),
        failure: None,
    };

    // 1. Checkpoint signatures. The verifier's key name is the log origin.
    let rows = store::read_checkpoints(conn).await?;
    let mut checkpoints = Vec::with_capacity(rows.len());
    for row in &rows {
        match verifier.open_checkpoint(&row.note) {
            Ok(cp)
                if cp.tree_size == row.tree_size && cp.root_hash == row.root_hash && cp.origin == verifier.name() =>
            {
                report.checkpoints_signed += 1;
                checkpoints.push((cp.tree_size, cp.root_hash));
            }
            Ok(_) => fail(
                &mut report,
                Some(row.tree_size),
                FailureKind::CheckpointInvalid,
                format!("checkpoint for tree size {} disagrees with its signed note", row.tree_size),
            ),
            Err(e) => fail(
                &mut report,
                Some(row.tree_size),
                FailureKind::CheckpointInvalid,
                format!("checkpoint for tree size {}: {e}", row.tree_size),
            ),
        }
    }
    if report.failure.is_some() {
        return Ok(report);
    }

    // 1b. Purge records: signed, and (with the KEK) agreeing with their anchors.
    for p in purges {
        // A later purge may have archived an earlier purge's anchor: then
        // only its signed record is left to check.
        let anchor_kept = p.anchor_seq >= retained_from;
        match check_purge(conn, verifier, keys, p, anchor_kept).await? {
            Ok(anchor_checked) => report.purges.push(PurgedRange {
                from_seq: p.from_seq,
                through_seq: p.through_seq,
                anchor_seq: p.anchor_seq,
                archive_sha256: hex::encode(p.archive_sha256),
                archive_name: p.archive_name.clone(),
                anchor_checked,
            }),
            Err(why) => {
                fail(
                    &mut report,
                    Some(p.anchor_seq),
                    FailureKind::PurgeInvalid,
                    format!("the purge of seq {}..={} (anchor seq {}): {why}", p.from_seq, p.through_seq, p.anchor_seq),
                );
                return Ok(report);
            }
        }
    }

    // 1b'. Retention records: signed, exactly their tombstones, and (with
    // the KEK) agreeing with their anchors. A tombstone stands in for an
    // entry only under one of these (or under one that commits after this
    // read, checked when the scan meets its tombstones).
    let mut removals = std::collections::HashMap::new();
    for r in crate::ledger::tombstone::all_records(conn).await? {
        match check_retention_record(conn, verifier, keys, &r, retained_from).await? {
            Ok(set) => {
                removals.insert(r.anchor_seq, Removal::new(&r, true));
                report.removals.push(set);
            }
            Err(why) => {
                fail(&mut report, Some(r.anchor_seq), FailureKind::RemovalInvalid, why);
                return Ok(report);
            }
        }
    }

    // 1c. Checkpoints the auditor kept: the ledger must still hold their
    // trees. Beyond the head: truncated. Otherwise a consistency proof (from
    // the stored nodes, which step 5 checks) to the latest signed checkpoint.
    let max_seq = head.seq.max(store::max_entry_seq(conn).await?);
    let latest_signed = checkpoints.iter().copied().max_by_key(|(size, _)| *size);
    // Kept sizes proven so far; the others must be proven by the scan.
    let mut proven: Vec<u64> = Vec::new();
    for t in trusted {
        if t.tree_size > max_seq {
            fail(
                &mut report,
                Some(max_seq + 1),
                FailureKind::Truncated,
                format!(
                    "a checkpoint you kept covers {} entries but the ledger ends at seq {max_seq}: it was truncated",
                    t.tree_size
                ),
            );
            return Ok(report);
        }
        if let Some((size, root)) = latest_signed
            && size >= t.tree_size
            && t.tree_size > 0
        {
            let mut proof = Vec::new();
            for r in super::merkle::consistency_ranges(t.tree_size, size) {
                proof.push(store::range_hash(conn, r).await?);
            }
            if super::merkle::verify_consistency(t.tree_size, size, &t.root_hash, &root, &proof).is_err() {
                fail(
                    &mut report,
                    Some(t.tree_size),
                    FailureKind::RootMismatch,
                    format!(
                        "the ledger is not an extension of the checkpoint you kept ({} entries): its first {} entries \
                         were rewritten",
                        t.tree_size, t.tree_size
                    ),
                );
                return Ok(report);
            }
            proven.push(t.tree_size);
        }
    }

    // 2. Starting state: genesis, the purge anchor, or the stored state before `from`.
    let (mut chain, mut frontier): (Hash, Frontier) = if from == 1 {
        (GENESIS_CHAIN, Frontier::new())
    } else if let Some(p) = purge.filter(|p| p.through_seq + 1 == from) {
        (p.chain_hash, p.frontier.clone())
    } else {
        let prev = store::chain_at(conn, from - 1).await?.ok_or_else(|| {
            LedgerError::Invalid(format!("cannot start at seq {from}: entry {} is missing", from - 1))
        })?;
        (prev, store::frontier_at(conn, from - 1).await?)
    };
    // Owned (no closure held across the awaits below: the future stays Send).
    // The auditor's checkpoints within reach are recomputed from the leaves too.
    let mut pending: Vec<(u64, Hash)> = checkpoints.iter().copied().filter(|(size, _)| *size >= from).collect();
    pending.extend(trusted.iter().filter(|t| t.tree_size >= from).map(|t| (t.tree_size, t.root_hash)));
    pending.sort();
    pending.dedup();
    let mut cps = pending.iter().peekable();
    let mut last_matched = from - 1;
    let total = (to + 1).saturating_sub(from);
    // (Sent after the records above are read and before the scan starts:
    // the tests commit a removal or a purge from it to race the scan.)
    progress(Progress { checked: 0, total });

    // 3. Entries. The stored Merkle nodes the scan completes are kept, to be
    // compared with the stored ones (step 5): about one per 128 entries.
    let mut nodes: std::collections::HashMap<(u32, u64), Hash> = std::collections::HashMap::new();
    let mut expected = from;
    let mut pages = EntryPages::open(db, from, to, keys.map(Keyring::snapshot));
    'pages: while let Some(page) = pages.next().await {
        let page = page?;
        for e in &page.recs {
            let seq = e.seq;
            if seq + 1 == expected && expected > from {
                fail(
                    &mut report,
                    Some(seq),
                    FailureKind::RemovalInvalid,
                    format!("entry seq {seq} is in the ledger beside its tombstone: a removed entry was put back"),
                );
                break 'pages;
            }
            if seq != expected {
                fail(
                    &mut report,
                    Some(expected),
                    FailureKind::MissingEntry,
                    format!("entry seq {expected} is missing"),
                );
                break 'pages;
            }
            let hb = page.header(e);
            let ct = page.ciphertext(e);
            let tombstone = e.tombstone.is_some();
            if let Some(anchor) = e.tombstone
                && !removals.contains_key(&anchor)
            {
                // A removal that committed after the records were read
                // above (the scan reads a later state): its record, checked
                // as those were.
                let late = match crate::ledger::tombstone::record_at(conn, anchor).await? {
                    Some(r) => check_retention_record(conn, verifier, keys, &r, retained_from)
                        .await?
                        .map(|set| (set, Removal::new(&r, false))),
                    None => Err(format!("no retention record is anchored at seq {anchor}")),
                };
                match late {
                    Ok((set, removal)) => {
                        removals.insert(anchor, removal);
                        report.removals.push(set);
                    }
                    Err(why) => {
                        fail(
                            &mut report,
                            Some(seq),
                            FailureKind::RemovalInvalid,
                            format!(
                                "entry seq {seq} was replaced by a tombstone without a valid retention record: {why}"
                            ),
                        );
                        break 'pages;
                    }
                }
            }
            if let Some(removal) = e.tombstone.and_then(|anchor| removals.get_mut(&anchor)) {
                if !(removal.from_seq..=removal.through_seq).contains(&seq) {
                    fail(
                        &mut report,
                        Some(seq),
                        FailureKind::RemovalInvalid,
                        format!(
                            "entry seq {seq} was replaced by a tombstone outside the range its retention record \
                             removed (seq {}..={})",
                            removal.from_seq, removal.through_seq
                        ),
                    );
                    break 'pages;
                }
                removal.met += 1;
                removal.digest.push(seq);
            }
            // A tombstone's leaf cannot be recomputed (the entry is gone):
            // the chain and the signed roots below check it.
            let leaf = if tombstone { e.leaf_hash } else { encoding::leaf_hash(hb, e.key_id, &e.iv, ct, &e.mac) };
            if leaf != e.leaf_hash {
                fail(
                    &mut report,
                    Some(seq),
                    FailureKind::FieldsChanged,
                    format!("entry seq {seq}: stored fields do not match its leaf hash (a stored byte was changed)"),
                );
                break 'pages;
            }
            let next_chain = encoding::chain_hash(&chain, &leaf);
            if next_chain != e.chain_hash {
                fail(
                    &mut report,
                    Some(seq),
                    FailureKind::ChainBroken,
                    format!("entry seq {seq}: chain value does not follow from entry {}", seq - 1),
                );
                break 'pages;
            }
            if let Some(keys) = keys.filter(|_| !tombstone) {
                let Some(key) = keys.get(e.key_id) else {
                    fail(
                        &mut report,
                        Some(seq),
                        FailureKind::UnknownKey,
                        format!("entry seq {seq} names unknown key {}", e.key_id),
                    );
                    break 'pages;
                };
                let sealed = match e.sealed.clone() {
                    Some(status) => status,
                    None => key.check(hb, &e.iv, ct, &e.mac),
                };
                match sealed {
                    Ok(()) => report.macs_checked += 1,
                    Err(super::crypto::OpenError::BadMac) => {
                        fail(
                            &mut report,
                            Some(seq),
                            FailureKind::MacInvalid,
                            format!("entry seq {seq}: MAC does not match (record altered or forged)"),
                        );
                        break 'pages;
                    }
                    Err(_) => {
                        fail(
                            &mut report,
                            Some(seq),
                            FailureKind::Undecryptable,
                            format!("entry seq {seq}: payload does not decrypt"),
                        );
                        break 'pages;
                    }
                }
            }
            chain = next_chain;
            frontier.push(leaf, |level, index, hash| {
                if level >= super::merkle::STORED_MIN_LEVEL {
                    nodes.insert((level, index), *hash);
                }
            });
            if tombstone {
                report.tombstones_checked += 1;
            } else {
                report.entries_checked += 1;
            }
            expected += 1;
            while let Some((size, root)) = cps.peek() {
                if *size > frontier.size() {
                    break;
                }
                if *size == frontier.size() {
                    if frontier.root() != *root {
                        fail(
                            &mut report,
                            Some(last_matched + 1),
                            FailureKind::RootMismatch,
                            format!(
                                "the Merkle root of the first {size} entries differs from the signed checkpoint: \
                                 an entry in seq {}..={size} was rewritten",
                                last_matched + 1
                            ),
                        );
                        break 'pages;
                    }
                    report.checkpoints_matched += 1;
                    report.verified_tree_size = Some(*size);
                    last_matched = *size;
                }
                cps.next();
            }
        }
        progress(Progress { checked: report.entries_checked + report.tombstones_checked, total });
    }
    if report.failure.is_some() {
        return Ok(report);
    }
    if expected <= to {
        fail(&mut report, Some(expected), FailureKind::MissingEntry, format!("entry seq {expected} is missing"));
        return Ok(report);
    }
    let scanned_to = expected - 1;

    // 3b. Each retention record read before the scan whose whole range the
    // scan covered: the tombstones it met there are exactly the set the
    // record signed (step 1b' checked the set as it stood then; one slipped
    // in under a checked record since, its leaf taken as stored, would
    // otherwise pass). (A record a purge took whole lies before `from`.)
    let mut met: Vec<(u64, Removal)> = removals.into_iter().collect();
    met.sort_by_key(|(anchor, _)| *anchor);
    for (anchor, r) in met {
        if !r.before_scan || r.from_seq < from || r.through_seq > scanned_to {
            continue;
        }
        if r.met != r.removed || r.digest.finish() != r.tombstones_sha256 {
            fail(
                &mut report,
                Some(anchor),
                FailureKind::RemovalInvalid,
                format!(
                    "the scan met {} tombstones under the removal anchored at seq {anchor}, not the {} entries its \
                     signed record removed",
                    r.met, r.removed
                ),
            );
            return Ok(report);
        }
    }

    // 4. The tail: against the latest checkpoint and the stored head.
    if full_tail {
        if let Some((size, _)) = checkpoints.last()
            && *size > to
        {
            fail(
                &mut report,
                Some(to + 1),
                FailureKind::Truncated,
                format!("the ledger ends at seq {to} but a signed checkpoint covers {size} entries"),
            );
            return Ok(report);
        }
        // Entries and the head are committed together and the head only
        // grows, so reading the largest seq first and the head second gives
        // head >= max for any honest writer, even one appending right now.
        let max = store::max_entry_seq(conn).await?;
        let now = store::read_head(conn).await?;
        if max > now.seq {
            fail(
                &mut report,
                Some(now.seq + 1),
                FailureKind::UnexpectedEntry,
                format!("entries exist beyond the ledger head (seq {} > {})", max, now.seq),
            );
        } else if to == head.seq && (chain != head.chain_hash || frontier.root() != head.frontier.root()) {
            fail(
                &mut report,
                Some(head.seq),
                FailureKind::HeadMismatch,
                "the stored ledger head does not match the entries".into(),
            );
        }
    }
    if report.failure.is_some() {
        return Ok(report);
    }

    // The kept checkpoints the scan reached were recomputed from the leaves
    // (a mismatch failed above); any other is not proven.
    for t in trusted {
        if proven.contains(&t.tree_size) || (from..=scanned_to).contains(&t.tree_size) {
            report.trusted_checkpoints += 1;
        } else if full_tail && scope.from_seq.is_none() {
            fail(
                &mut report,
                Some(t.tree_size),
                FailureKind::RootMismatch,
                format!(
                    "the checkpoint you kept ({} entries) cannot be proven: no signed checkpoint of the ledger covers \
                     it and its entries are no longer there",
                    t.tree_size
                ),
            );
            return Ok(report);
        } else {
            return Err(LedgerError::Invalid(format!(
                "the checkpoint you kept ({} entries) lies outside seq {from}..={scanned_to}: verify the whole ledger \
                 to check it",
                t.tree_size
            )));
        }
    }

    // 5. Stored Merkle nodes: each must equal the node recomputed from the
    // leaves (inclusion and consistency proofs are served from them).
    let mut after = None;
    let mut beyond: Vec<(u64, u64, String)> = Vec::new();
    'nodes: loop {
        let page = store::read_nodes_page(conn, after, PAGE).await?;
        let Some(&(level, idx, _)) = page.last() else { break };
        after = Some((level, idx));
        for (level, idx, hash) in page {
            let Some((first, last)) = node_span(level, idx) else {
                fail(
                    &mut report,
                    None,
                    FailureKind::NodeMismatch,
                    format!("a stored Merkle node has an impossible position (level {level}, index {idx})"),
                );
                break 'nodes;
            };
            if last < from {
                continue;
            }
            let place = format!("the stored Merkle node over seq {first}..={last} (level {level}, index {idx})");
            match nodes.remove(&(level, idx)) {
                Some(h) if h == hash => report.nodes_checked += 1,
                Some(_) => {
                    fail(
                        &mut report,
                        Some(first),
                        FailureKind::NodeMismatch,
                        format!(
                            "{place} differs from the one recomputed from those entries (proofs served from it would be false)"
                        ),
                    );
                    break 'nodes;
                }
                None if last <= scanned_to => {
                    fail(
                        &mut report,
                        Some(first),
                        FailureKind::NodeMismatch,
                        format!("{place} should not exist: the entries do not produce it"),
                    );
                    break 'nodes;
                }
                // Beyond what was scanned: appended since (checked below
                // against the head), or beyond the end of the ledger.
                None => beyond.push((first, last, place)),
            }
        }
    }
    // Nodes and the head are committed together: a node past the head
    // read now was never committed by Custos.
    if report.failure.is_none() && full_tail && !beyond.is_empty() {
        let head_now = store::read_head(conn).await?.seq;
        if let Some((first, _, place)) = beyond.into_iter().find(|(_, last, _)| *last > head_now) {
            fail(
                &mut report,
                Some(first),
                FailureKind::NodeMismatch,
                format!("{place} lies beyond the end of the ledger (seq {head_now})"),
            );
        }
    }
    if report.failure.is_none()
        && let Some(&(level, idx)) = nodes.keys().min_by_key(|(l, i)| node_span(*l, *i).map(|s| s.0))
    {
        let (first, last) = node_span(level, idx).unwrap_or((0, 0));
        fail(
            &mut report,
            Some(first),
            FailureKind::NodeMismatch,
            format!("the stored Merkle node over seq {first}..={last} (level {level}, index {idx}) is missing"),
        );
    }
    Ok(report)
}
