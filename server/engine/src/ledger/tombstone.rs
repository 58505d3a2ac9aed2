//! Deletion that keeps the proofs: retention and erasure replace entries by
//! tombstones.
//!
//! Expired entries interleave with entries that must stay (another
//! category's longer period, a legal hold), so deleting them cannot be a
//! prefix cut. Instead, for a set of seqs `S` within `from..=through`:
//!
//! 1. the range is verified (with MACs) and covered by a signed checkpoint;
//! 2. it is written to an archive bundle (`custos-archive/v2`): the header
//!    (chain value and Merkle frontier before `from`, the signed
//!    checkpoint, a consistency proof from `through` to it), then each seq
//!    of the range in order: the entry as sealed when it is in `S`, else
//!    only its leaf hash and chain value (`"kept": true`). Offline, the
//!    leaves rebuild the tree of `through` entries, which the proof ties to
//!    the signed checkpoint: every archived entry is proven, with only the
//!    public key;
//! 3. a `ledger.retention` entry (the anchor) is appended;
//! 4. the retention record (anchor, range, how many, the digest of `S`,
//!    the archive's digest and name, why) is signed with the ledger's key;
//! 5. in one transaction: the record is stored (active), each entry of `S`
//!    gets a tombstone (its seq, leaf hash and chain value: the database
//!    checks they are the entry's), the entries are deleted (the database
//!    allows it only for tombstoned seqs of an active record), the record
//!    is closed.
//!
//! Verification takes a tombstone's leaf hash and chain value in place of
//! the entry (the chain and the checkpoints' roots still check them), and
//! checks every record's signature and that the tombstones of each record
//! are exactly the signed set.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use sea_orm::{ConnectionTrait, TransactionTrait};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::encoding::GENESIS_CHAIN;
use super::error::LedgerError;
use super::merkle::Frontier;
use super::note::{NoteError, NoteSigner, NoteVerifier};
use super::purge::{ArchiveHeader, ArchiveLine, ArchivedEntry, HashingWriter, io_err, settle_archive};
use super::service::{Ledger, NewEntry};
use super::store::{self, seq_value};
use super::types::Hash;
use crate::storage::stmt_for;

/// The first line of every retention record.
pub const TAG: &str = "custos.retention/v1";

/// The anchor entry's action.
pub const ANCHOR_ACTION: &str = "ledger.retention";

/// At most this many entries are removed under one record (one
/// transaction, one archive bundle).
pub const MAX_PER_RECORD: usize = 20_000;

/// The signed content of a removal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionRecord {
    /// The ledger's origin.
    pub origin: String,
    /// Seq of the anchor entry.
    pub anchor_seq: u64,
    /// First removed seq.
    pub from_seq: u64,
    /// Last removed seq.
    pub through_seq: u64,
    /// How many entries were removed.
    pub removed: u64,
    /// [`tombstones_digest`] of the removed seqs.
    pub tombstones_sha256: Hash,
    /// SHA-256 of the archive bundle.
    pub archive_sha256: Hash,
    /// The archive's file name.
    pub archive_name: String,
    /// `retention` or `erasure`.
    pub reason: String,
}

/// Why a retention record was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    /// The signature is missing or does not verify.
    #[error("retention record signature: {0}")]
    Signature(#[from] NoteError),
    /// Signed, but not a well-formed record.
    #[error("malformed retention record: {0}")]
    Malformed(&'static str),
}

impl RetentionRecord {
    /// The signed text.
    pub fn body(&self) -> String {
        format!(
            "{TAG}\n{}\nanchor {}\nrange {}-{}\nremoved {}\ntombstones {}\narchive {} {}\nreason {}\n",
            self.origin,
            self.anchor_seq,
            self.from_seq,
            self.through_seq,
            self.removed,
            hex::encode(self.tombstones_sha256),
            hex::encode(self.archive_sha256),
            self.archive_name,
            self.reason
        )
    }

    /// The record as a signed note.
    pub fn sign(&self, signer: &NoteSigner) -> String {
        signer.sign_text(&self.body())
    }

    /// Opens a signed record: the signature must verify with `verifier`.
    pub fn open(note: &str, verifier: &NoteVerifier) -> Result<RetentionRecord, RecordError> {
        Self::parse(verifier.open(note)?)
    }

    fn parse(text: &str) -> Result<RetentionRecord, RecordError> {
        let bad = RecordError::Malformed;
        let mut lines = text.strip_suffix('\n').ok_or(bad("no final newline"))?.split('\n');
        if lines.next() != Some(TAG) {
            return Err(bad("not a custos.retention/v1 record"));
        }
        let origin = lines.next().filter(|o| !o.is_empty()).ok_or(bad("no origin"))?.to_owned();
        let mut field = |name: &'static str| -> Result<&str, RecordError> {
            lines.next().and_then(|l| l.strip_prefix(name)).and_then(|l| l.strip_prefix(' ')).ok_or(bad(name))
        };
        let anchor_seq = field("anchor")?.parse().map_err(|_| bad("anchor"))?;
        let (from, through) = field("range")?.split_once('-').ok_or(bad("range"))?;
        let from_seq: u64 = from.parse().map_err(|_| bad("range"))?;
        let through_seq: u64 = through.parse().map_err(|_| bad("range"))?;
        let removed: u64 = field("removed")?.parse().map_err(|_| bad("removed"))?;
        let hash = |s: &str, what: &'static str| -> Result<Hash, RecordError> {
            hex::decode(s).ok().and_then(|v| v.try_into().ok()).ok_or(bad(what))
        };
        let tombstones_sha256 = hash(field("tombstones")?, "tombstones")?;
        let (digest, name) = field("archive")?.split_once(' ').ok_or(bad("archive"))?;
        let archive_sha256 = hash(digest, "archive")?;
        let archive_name = name.to_owned();
        let reason = field("reason")?.to_owned();
        if lines.next().is_some() {
            return Err(bad("trailing lines"));
        }
        if from_seq == 0 || through_seq < from_seq || anchor_seq <= through_seq {
            return Err(bad("range and anchor out of order"));
        }
        if removed == 0 || removed > through_seq - from_seq + 1 {
            return Err(bad("removed"));
        }
        Ok(RetentionRecord {
            origin,
            anchor_seq,
            from_seq,
            through_seq,
            removed,
            tombstones_sha256,
            archive_sha256,
            archive_name,
            reason,
        })
    }
}

/// The digest of a set of removed seqs (ascending): SHA-256 over the tag
/// `custos.tombstones/v1` and each seq as 8 big-endian bytes.
pub fn tombstones_digest(seqs: impl IntoIterator<Item = u64>) -> Hash {
    let mut d = TombstonesDigest::new();
    for s in seqs {
        d.push(s);
    }
    d.finish()
}

/// [`tombstones_digest`], a seq at a time.
pub struct TombstonesDigest(Sha256);

impl TombstonesDigest {
    /// An empty set.
    pub fn new() -> Self {
        let mut h = Sha256::new();
        h.update(b"custos.tombstones/v1");
        TombstonesDigest(h)
    }

    /// Adds the next seq (ascending).
    pub fn push(&mut self, seq: u64) {
        self.0.update(seq.to_be_bytes());
    }

    /// The digest.
    pub fn finish(self) -> Hash {
        self.0.finalize().into()
    }
}

impl Default for TombstonesDigest {
    fn default() -> Self {
        Self::new()
    }
}

/// What one removal did.
#[derive(Debug, Clone, Serialize)]
pub struct TombstoneOutcome {
    /// Seq of the anchor entry.
    pub anchor_seq: u64,
    /// First removed seq.
    pub from_seq: u64,
    /// Last removed seq.
    pub through_seq: u64,
    /// How many entries were removed.
    pub removed: u64,
    /// The archive bundle.
    pub archive_path: PathBuf,
    /// Its name.
    pub archive_name: String,
    /// Its size in bytes.
    pub archive_bytes: u64,
    /// Its SHA-256, hex.
    pub archive_sha256: String,
}

/// A cold copy written.
#[derive(Debug, Clone)]
pub struct ColdCopy {
    /// First seq of its range.
    pub from_seq: u64,
    /// Last seq of its range.
    pub through_seq: u64,
    /// Entries it holds as sealed.
    pub entries: u64,
    /// The bundle.
    pub path: PathBuf,
    /// Its name.
    pub name: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
}

/// A stored retention record.
#[derive(Debug, Clone)]
pub struct RetentionRow {
    /// Seq of the anchor entry.
    pub anchor_seq: u64,
    /// First removed seq.
    pub from_seq: u64,
    /// Last removed seq.
    pub through_seq: u64,
    /// How many.
    pub removed: u64,
    /// Digest of the removed seqs.
    pub tombstones_sha256: Hash,
    /// SHA-256 of the archive bundle.
    pub archive_sha256: Hash,
    /// Its name.
    pub archive_name: String,
    /// `retention` or `erasure`.
    pub reason: String,
    /// The run it belongs to.
    pub run_id: String,
    /// The signed record.
    pub note: String,
}

/// Every retention record, oldest first.
pub async fn all_records(conn: &impl ConnectionTrait) -> Result<Vec<RetentionRow>, LedgerError> {
    records(conn, "ORDER BY anchor_seq", vec![]).await
}

/// The retention record anchored at `anchor_seq`, if there is one.
pub async fn record_at(conn: &impl ConnectionTrait, anchor_seq: u64) -> Result<Option<RetentionRow>, LedgerError> {
    Ok(records(conn, "WHERE anchor_seq = ?", vec![seq_value(anchor_seq)]).await?.pop())
}

async fn records(
    conn: &impl ConnectionTrait,
    tail: &str,
    values: Vec<sea_orm::Value>,
) -> Result<Vec<RetentionRow>, LedgerError> {
    let b = conn.get_database_backend();
    let rows = conn
        .query_all_raw(stmt_for(
            b,
            &format!(
                "SELECT anchor_seq, from_seq, through_seq, removed, tombstones_sha256, archive_sha256, archive_name, \
                 reason, run_id, note FROM ledger_retentions {tail}"
            ),
            values,
        ))
        .await?;
    let n = |r: &sea_orm::QueryResult, c: &str| -> Result<u64, LedgerError> {
        let v: i64 = r.try_get("", c)?;
        u64::try_from(v).map_err(|_| LedgerError::Corrupt(format!("negative {c}")))
    };
    rows.iter()
        .map(|r| {
            Ok(RetentionRow {
                anchor_seq: n(r, "anchor_seq")?,
                from_seq: n(r, "from_seq")?,
                through_seq: n(r, "through_seq")?,
                removed: n(r, "removed")?,
                tombstones_sha256: crate::storage::get_array::<32>(r, "tombstones_sha256")?,
                archive_sha256: crate::storage::get_array::<32>(r, "archive_sha256")?,
                archive_name: r.try_get("", "archive_name")?,
                reason: r.try_get("", "reason")?,
                run_id: r.try_get("", "run_id")?,
                note: r.try_get("", "note")?,
            })
        })
        .collect()
}

/// The seqs of a record's tombstones, ascending.
pub async fn record_seqs(conn: &impl ConnectionTrait, anchor_seq: u64) -> Result<Vec<u64>, LedgerError> {
    let b = conn.get_database_backend();
    let rows = conn
        .query_all_raw(stmt_for(
            b,
            "SELECT seq FROM ledger_tombstones WHERE anchor_seq = ? ORDER BY seq",
            vec![seq_value(anchor_seq)],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            let v: i64 = r.try_get("", "seq")?;
            u64::try_from(v).map_err(|_| LedgerError::Corrupt("negative seq".into()))
        })
        .collect()
}

fn json_err(e: serde_json::Error) -> LedgerError {
    LedgerError::Corrupt(e.to_string())
}

impl Ledger {
    /// Removes the entries `seqs` (ascending, at most [`MAX_PER_RECORD`]),
    /// archiving them first into `archive_dir`, leaving tombstones under a
    /// signed retention record. `reason` is `retention` or `erasure`;
    /// `run_id` names the run.
    pub async fn tombstone(
        &self,
        seqs: &[u64],
        archive_dir: &Path,
        reason: &str,
        run_id: &str,
    ) -> Result<TombstoneOutcome, LedgerError> {
        self.tombstone_with(seqs, archive_dir, reason, run_id, async |_: &Path, _: &str| Ok(())).await
    }

    /// [`Ledger::tombstone`], with `keep` called on the written archive
    /// (its path and name) before anything is removed: an upload to the
    /// object store, say. If it fails, nothing is removed and the local
    /// file is deleted.
    pub async fn tombstone_with<F>(
        &self,
        seqs: &[u64],
        archive_dir: &Path,
        reason: &str,
        run_id: &str,
        keep: F,
    ) -> Result<TombstoneOutcome, LedgerError>
    where
        F: AsyncFnOnce(&Path, &str) -> Result<(), String>,
    {
        if !matches!(reason, "retention" | "erasure") {
            return Err(LedgerError::Invalid(format!("unknown removal reason {reason}")));
        }
        let (Some(&from), Some(&through)) = (seqs.first(), seqs.last()) else {
            return Err(LedgerError::Invalid("nothing to remove".into()));
        };
        if seqs.len() > MAX_PER_RECORD || seqs.windows(2).any(|w| w[0] >= w[1]) {
            return Err(LedgerError::Invalid(format!(
                "seqs to remove must be ascending and at most {MAX_PER_RECORD} at a time"
            )));
        }
        let conn = self.db().conn();
        let retained_from = store::latest_purge(conn).await?.map_or(1, |p| p.through_seq + 1);
        if from < retained_from {
            return Err(LedgerError::Invalid(format!("seq {from} was purged already")));
        }
        // The removed entries' counts are taken away below. On SQLite every
        // count of them held in memory (this writer's, a stopped one's,
        // another live process's) is written first, before anything is
        // archived or recorded (if that cannot be done, nothing has happened
        // yet); on PostgreSQL the removal's transaction folds the waiting
        // counts itself.
        self.settle_all_rollups(from, through).await?;
        let (start_chain, start_frontier, cp, proof) = self.archive_start(from, through, "remove entries from").await?;

        crate::storage::create_private_dir(archive_dir).map_err(io_err(archive_dir))?;
        let name = format!(
            "custos-{reason}-{}-{from:012}-{through:012}-{}.ndjson",
            self.origin().replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            uuid::Uuid::now_v7().simple()
        );
        let path = archive_dir.join(&name);
        let written = self
            .write_archive(&path, (from, through), Some(seqs), start_chain, &start_frontier, &cp.note, &proof)
            .await;
        let (digest, bytes, removed_entries, _) =
            settle_archive(written, (archive_dir, &path, &name), keep, "nothing was removed").await?;

        let set_digest = tombstones_digest(seqs.iter().copied());
        let payload = serde_json::json!({
            "from_seq": from, "through_seq": through, "removed": seqs.len(),
            "tombstones_sha256": hex::encode(set_digest),
            "archive_sha256": hex::encode(digest), "archive_name": name, "reason": reason, "run_id": run_id,
        });
        let anchor = self
            .append_one(NewEntry::system(
                self.now_us(),
                "integrity",
                ANCHOR_ACTION,
                ("ledger", Some(format!("{from}-{through}"))),
                "system",
                &payload,
            ))
            .await?;
        let record = RetentionRecord {
            origin: self.origin().to_owned(),
            anchor_seq: anchor.seq,
            from_seq: from,
            through_seq: through,
            removed: seqs.len() as u64,
            tombstones_sha256: set_digest,
            archive_sha256: digest,
            archive_name: name.clone(),
            reason: reason.to_owned(),
        };
        let note = record.sign(self.keys().signer());

        let txn = conn.begin().await?;
        let b = txn.get_database_backend();
        if b == sea_orm::DbBackend::Postgres {
            // The fold below must see every commit before it (whatever the
            // server's default isolation); and the record is refused from a
            // transaction that does not say it folds (migration 20: an older
            // replica's removal would not).
            txn.execute_unprepared("SET TRANSACTION ISOLATION LEVEL READ COMMITTED").await?;
            txn.execute_unprepared("SET LOCAL custos.removal_folds = 'on'").await?;
        }
        txn.execute_raw(stmt_for(
            b,
            "INSERT INTO ledger_retentions (anchor_seq, from_seq, through_seq, removed, tombstones_sha256, \
             archive_sha256, archive_name, reason, run_id, active, created_at, note) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)",
            vec![
                seq_value(anchor.seq),
                seq_value(from),
                seq_value(through),
                seq_value(seqs.len() as u64),
                set_digest.to_vec().into(),
                digest.to_vec().into(),
                name.clone().into(),
                reason.into(),
                run_id.into(),
                anchor.recorded_at_us.into(),
                note.into(),
            ],
        ))
        .await?;
        for chunk in seqs.chunks(500) {
            let list = vec!["?"; chunk.len()].join(",");
            let values: Vec<sea_orm::Value> = chunk.iter().map(|s| seq_value(*s)).collect();
            let mut insert_values = vec![seq_value(anchor.seq)];
            insert_values.extend(values.iter().cloned());
            txn.execute_raw(stmt_for(
                b,
                &format!(
                    "INSERT INTO ledger_tombstones (seq, anchor_seq, leaf_hash, chain_hash) \
                     SELECT seq, ?, leaf_hash, chain_hash FROM ledger_entries WHERE seq IN ({list})"
                ),
                insert_values,
            ))
            .await?;
            let deleted = txn
                .execute_raw(stmt_for(b, &format!("DELETE FROM ledger_entries WHERE seq IN ({list})"), values))
                .await?;
            if deleted.rows_affected() != chunk.len() as u64 {
                return Err(LedgerError::Corrupt(format!(
                    "{} of {} entries to remove were found (removed concurrently?)",
                    deleted.rows_affected(),
                    chunk.len()
                )));
            }
        }
        // The dashboards' counts follow (a subject's name leaves them too).
        let durations: Vec<Option<f64>> =
            removed_entries.iter().map(|e| super::rollup::duration_of(self.keys(), e)).collect();
        if b == sea_orm::DbBackend::Postgres {
            // Their counts may still wait in `audit_rollup_deltas`: all
            // folded first (the folds' lock is then held until this commits).
            super::rollup::fold_pg(&txn, true).await?;
        }
        super::rollup::subtract_orm(&txn, &removed_entries, &durations).await?;
        txn.execute_raw(stmt_for(
            b,
            "UPDATE ledger_retentions SET active = 0 WHERE anchor_seq = ?",
            vec![seq_value(anchor.seq)],
        ))
        .await?;
        txn.commit().await?;
        tracing::info!(from, through, removed = seqs.len(), anchor = anchor.seq, reason, archive = %path.display(),
            "ledger entries replaced by tombstones after archiving");
        Ok(TombstoneOutcome {
            anchor_seq: anchor.seq,
            from_seq: from,
            through_seq: through,
            removed: seqs.len() as u64,
            archive_path: path,
            archive_name: name,
            archive_bytes: bytes,
            archive_sha256: hex::encode(digest),
        })
    }

    /// A cold copy: every entry of `from..=through` still in the ledger
    /// (which a signed checkpoint must cover, and which is verified first)
    /// written as sealed into a `custos-archive/v2` bundle in `archive_dir`
    /// (removed positions as their hashes), then handed to `keep` (an
    /// upload, say; on failure the file is deleted). Nothing in the ledger
    /// changes.
    pub async fn cold_copy<F>(
        &self,
        (from, through): (u64, u64),
        archive_dir: &Path,
        keep: F,
    ) -> Result<ColdCopy, LedgerError>
    where
        F: AsyncFnOnce(&Path, &str) -> Result<(), String>,
    {
        let conn = self.db().conn();
        let retained_from = store::latest_purge(conn).await?.map_or(1, |p| p.through_seq + 1);
        if from < retained_from.max(1) || through < from {
            return Err(LedgerError::Invalid(format!(
                "cannot copy seq {from}..={through} (held from seq {retained_from})"
            )));
        }
        let (start_chain, start_frontier, cp, proof) = self.archive_start(from, through, "copy entries from").await?;
        crate::storage::create_private_dir(archive_dir).map_err(io_err(archive_dir))?;
        let name = format!(
            "custos-copy-{}-{from:012}-{through:012}-{}.ndjson",
            self.origin().replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            uuid::Uuid::now_v7().simple()
        );
        let path = archive_dir.join(&name);
        let written =
            self.write_archive(&path, (from, through), None, start_chain, &start_frontier, &cp.note, &proof).await;
        let (digest, bytes, _, entries) =
            settle_archive(written, (archive_dir, &path, &name), keep, "no copy was made").await?;
        Ok(ColdCopy { from_seq: from, through_seq: through, entries, path, name, bytes, sha256: hex::encode(digest) })
    }

    /// What an archive of `from..=through` starts from: the chain value and
    /// Merkle frontier before it, a signed checkpoint covering it (the
    /// range verified first) and the consistency proof to it.
    async fn archive_start(
        &self,
        from: u64,
        through: u64,
        what: &str,
    ) -> Result<(Hash, Frontier, store::CheckpointRow, Vec<Hash>), LedgerError> {
        let conn = self.db().conn();
        let cp = self.signed_and_intact(from, through, what).await?;
        let start_chain = if from == 1 {
            GENESIS_CHAIN
        } else if let Some(p) = store::latest_purge(conn).await?.filter(|p| p.through_seq + 1 == from) {
            p.chain_hash
        } else {
            store::chain_at(conn, from - 1)
                .await?
                .ok_or_else(|| LedgerError::Corrupt(format!("entry seq {} is missing", from - 1)))?
        };
        let start_frontier: Frontier = store::frontier_at(conn, from - 1).await?;
        let proof = self.consistency_proof(through, cp.tree_size).await?;
        Ok((start_chain, start_frontier, cp, proof))
    }

    /// Writes the `custos-archive/v2` bundle of a removal; returns its
    /// digest, size and the removed entries.
    /// Writes a `custos-archive/v2` bundle of `from..=through`: the entries
    /// `seqs` as sealed (returned), the other positions as their hashes;
    /// `seqs = None`: every entry still there as sealed (a cold copy;
    /// nothing returned).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn write_archive(
        &self,
        path: &Path,
        (from, through): (u64, u64),
        seqs: Option<&[u64]>,
        start_chain: Hash,
        start_frontier: &Frontier,
        checkpoint: &str,
        proof: &[Hash],
    ) -> Result<(Hash, u64, Vec<super::types::StoredEntry>, u64), LedgerError> {
        let mut sealed = 0u64;
        let mut removed = Vec::with_capacity(seqs.map_or(0, <[u64]>::len));
        let copy_all = seqs.is_none();
        let conn = self.db().conn();
        let file = std::fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(io_err(path))?;
        let mut w = HashingWriter { inner: std::io::BufWriter::new(file), hash: Sha256::new(), bytes: 0 };
        let header = ArchiveHeader {
            format: super::purge::ARCHIVE_V2.into(),
            origin: self.origin().to_owned(),
            from_seq: from,
            through_seq: through,
            start_chain_hash: hex::encode(start_chain),
            start_frontier: hex::encode(start_frontier.encode()),
            checkpoint: checkpoint.to_owned(),
            consistency_proof: proof.iter().map(hex::encode).collect(),
        };
        writeln!(w, "{}", serde_json::to_string(&header).map_err(json_err)?).map_err(io_err(path))?;
        let mut wanted = seqs.unwrap_or_default().iter().copied().peekable();
        let mut next = from;
        while next <= through {
            let upto = (next + 4095).min(through);
            let entries = store::read_entries(conn, next, upto, 4096).await?;
            let tombs = store::read_tombstones(conn, next, upto, 4096).await?;
            let (mut ei, mut ti) = (entries.iter().peekable(), tombs.iter().peekable());
            for seq in next..=upto {
                let line = if let Some(e) = ei.next_if(|e| e.header.seq == seq) {
                    if copy_all {
                        sealed += 1;
                        ArchiveLine::Entry(Box::new(ArchivedEntry::from_stored(e)))
                    } else if wanted.next_if_eq(&seq).is_some() {
                        if matches!(e.header.fields.action.as_str(), ANCHOR_ACTION | "ledger.purge") {
                            return Err(LedgerError::Invalid(format!(
                                "entry seq {seq} anchors a purge or a removal and cannot be removed"
                            )));
                        }
                        removed.push(e.clone());
                        sealed += 1;
                        ArchiveLine::Entry(Box::new(ArchivedEntry::from_stored(e)))
                    } else {
                        ArchiveLine::kept(seq, &e.leaf_hash, &e.chain_hash)
                    }
                } else if let Some(t) = ti.next_if(|t| t.seq == seq) {
                    if wanted.peek() == Some(&seq) {
                        return Err(LedgerError::Invalid(format!("entry seq {seq} was removed already")));
                    }
                    ArchiveLine::kept(seq, &t.leaf_hash, &t.chain_hash)
                } else {
                    return Err(LedgerError::Corrupt(format!("entry seq {seq} is missing")));
                };
                writeln!(w, "{}", serde_json::to_string(&line).map_err(json_err)?).map_err(io_err(path))?;
            }
            next = upto + 1;
        }
        let (digest, bytes) = w.finish(path)?;
        Ok((digest, bytes, removed, sealed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_refuses_a_changed_byte() {
        let signer = NoteSigner::new("custos.test/ledger", &[1; 32]).unwrap();
        let r = RetentionRecord {
            origin: "custos.test/ledger".into(),
            anchor_seq: 900,
            from_seq: 3,
            through_seq: 800,
            removed: 2,
            tombstones_sha256: tombstones_digest([3, 800]),
            archive_sha256: [7; 32],
            archive_name: "a.ndjson".into(),
            reason: "retention".into(),
        };
        let note = r.sign(&signer);
        assert_eq!(RetentionRecord::open(&note, &signer.verifier()).unwrap(), r);
        let forged = note.replacen("removed 2", "removed 1", 1);
        assert!(RetentionRecord::open(&forged, &signer.verifier()).is_err());
        assert_ne!(tombstones_digest([3, 800]), tombstones_digest([3, 801]));
    }
}
