//! The retention purge path: the only way ledger entries are ever deleted.
//!
//! 1. The range is rounded down to a multiple of 256 entries (so every Merkle
//!    subtree that later proofs need is either retained or stored), must be
//!    covered by a signed checkpoint, and is verified (with MACs) first.
//! 2. It is written to a self-verifying archive bundle (NDJSON): a header with
//!    the starting chain state, the covering signed checkpoint and a
//!    consistency proof from the purged prefix to it, then every entry.
//! 3. A `ledger.purge` entry (the anchor) is appended to the ledger.
//! 4. The purge record (anchor, range, chain value, frontier, archive
//!    digest: `purge_record`) is signed with the ledger's key.
//! 5. In one transaction: a `ledger_purges` row with the signed record
//!    authorises the delete (the database refuses it otherwise, and refuses
//!    a row whose anchor the server did not write), the rows are deleted,
//!    the row is closed.
//!
//! Verification then starts from the signed chain value and frontier after
//! checking the record's signature (and, with the KEK, that the anchor
//! entry says the same); the following signed checkpoints prove that state
//! right.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sea_orm::{ConnectionTrait, TransactionTrait};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::encoding::{self, GENESIS_CHAIN};
use super::error::LedgerError;
use super::merkle::{self, Frontier};
use super::note::NoteVerifier;
use super::service::{Ledger, NewEntry};
use super::store::{self, seq_value};
use super::types::{EntryHeader, Hash, HeaderFields, StoredEntry};
use super::verify::{self, VerifyScope};

/// Entries per Merkle tile; purge boundaries are multiples of it.
pub const PURGE_ALIGNMENT: u64 = 1 << merkle::STORED_MIN_LEVEL;

/// What a purge did.
#[derive(Debug, Clone, Serialize)]
pub struct PurgeOutcome {
    /// Seq of the anchor entry.
    pub anchor_seq: u64,
    /// First purged seq.
    pub from_seq: u64,
    /// Last purged seq.
    pub through_seq: u64,
    /// Where the archive bundle was written.
    pub archive_path: PathBuf,
    /// Its name.
    pub archive_name: String,
    /// Its size in bytes.
    pub archive_bytes: u64,
    /// Its SHA-256, hex.
    pub archive_sha256: String,
    /// Entries it holds as sealed.
    pub entries: u64,
    /// Tombstones the purge took (a compaction).
    pub tombstones: u64,
}

/// First line of an archive bundle.
#[derive(Debug, Serialize, Deserialize)]
pub struct ArchiveHeader {
    /// Always `custos-archive/v1`.
    pub format: String,
    /// Ledger origin.
    pub origin: String,
    /// First archived seq.
    pub from_seq: u64,
    /// Last archived seq.
    pub through_seq: u64,
    /// Chain value before `from_seq` (hex).
    pub start_chain_hash: String,
    /// Frontier of the first `from_seq - 1` leaves (hex).
    pub start_frontier: String,
    /// The signed checkpoint covering the range.
    pub checkpoint: String,
    /// Consistency proof from `through_seq` to the checkpoint's size (hex).
    pub consistency_proof: Vec<String>,
}

/// One archived entry (all stored columns).
#[derive(Debug, Serialize, Deserialize)]
pub struct ArchivedEntry {
    /// seq.
    pub seq: u64,
    /// event id.
    pub event_id: uuid::Uuid,
    /// µs.
    pub occurred_at: i64,
    /// µs.
    pub recorded_at: i64,
    /// Clear header fields.
    pub fields: HeaderFields,
    /// Data key id.
    pub key_id: u32,
    /// base64.
    pub iv: String,
    /// base64.
    pub ciphertext: String,
    /// hex.
    pub mac: String,
    /// hex.
    pub leaf_hash: String,
    /// hex.
    pub chain_hash: String,
}

/// The format of a retention purge's bundle (a prefix, every entry).
pub const ARCHIVE_V1: &str = "custos-archive/v1";
/// The format of a removal's bundle (`tombstone`): every seq of the range,
/// the removed entries as sealed, the others as their hashes.
pub const ARCHIVE_V2: &str = "custos-archive/v2";

/// An entry line of a `custos-archive/v2` bundle not removed (still in the
/// ledger, or removed before): only its hashes.
#[derive(Debug, Serialize, Deserialize)]
pub struct KeptLine {
    /// seq.
    pub seq: u64,
    /// Always true.
    pub kept: bool,
    /// hex.
    pub leaf_hash: String,
    /// hex.
    pub chain_hash: String,
}

/// A line after the header.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ArchiveLine {
    /// Only the hashes (v2).
    Kept(KeptLine),
    /// The entry as sealed.
    Entry(Box<ArchivedEntry>),
}

impl ArchiveLine {
    pub(crate) fn kept(seq: u64, leaf: &Hash, chain: &Hash) -> ArchiveLine {
        ArchiveLine::Kept(KeptLine { seq, kept: true, leaf_hash: hex::encode(leaf), chain_hash: hex::encode(chain) })
    }
}

impl ArchivedEntry {
    pub(crate) fn from_stored(e: &StoredEntry) -> Self {
        ArchivedEntry {
            seq: e.header.seq,
            event_id: e.header.event_id,
            occurred_at: e.header.occurred_at_us,
            recorded_at: e.header.recorded_at_us,
            fields: e.header.fields.clone(),
            key_id: e.key_id,
            iv: B64.encode(e.iv),
            ciphertext: B64.encode(&e.ciphertext),
            mac: hex::encode(e.mac),
            leaf_hash: hex::encode(e.leaf_hash),
            chain_hash: hex::encode(e.chain_hash),
        }
    }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LedgerError + '_ {
    move |source| LedgerError::Io { path: path.display().to_string(), source }
}

pub(crate) struct HashingWriter<W> {
    pub(crate) inner: W,
    pub(crate) hash: Sha256,
    pub(crate) bytes: u64,
}

impl<W: std::io::Write> std::io::Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl HashingWriter<std::io::BufWriter<std::fs::File>> {
    /// Flushes and syncs the archive at `path`: its SHA-256 and size.
    pub(crate) fn finish(mut self, path: &Path) -> Result<(Hash, u64), LedgerError> {
        use std::io::Write as _;
        self.flush().map_err(io_err(path))?;
        let digest: Hash = self.hash.finalize().into();
        let file = self
            .inner
            .into_inner()
            .map_err(|e| LedgerError::Io { path: path.display().to_string(), source: e.into_error() })?;
        file.sync_all().map_err(io_err(path))?;
        Ok((digest, self.bytes))
    }
}

/// An archive written (`written`) at `path` in `archive_dir`: on a write
/// error the file is removed; otherwise the directory is synced and `keep`
/// called (an upload, say), the file removed if that fails. Nothing has
/// been taken out of the ledger yet; `what` says what is then not done.
pub(crate) async fn settle_archive<T, F>(
    written: Result<T, LedgerError>,
    (archive_dir, path, name): (&Path, &Path, &str),
    keep: F,
    what: &str,
) -> Result<T, LedgerError>
where
    F: AsyncFnOnce(&Path, &str) -> Result<(), String>,
{
    let out = match written {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
    };
    if let Ok(dir) = std::fs::File::open(archive_dir) {
        let _ = dir.sync_all();
    }
    if let Err(e) = keep(path, name).await {
        let _ = std::fs::remove_file(path);
        return Err(LedgerError::Io {
            path: name.to_owned(),
            source: std::io::Error::other(format!("the archive could not be kept, so {what}: {e}")),
        });
    }
    Ok(out)
}

impl Ledger {
    /// The signed checkpoint covering `through`, once `from..=through` has
    /// verified with its MACs: nothing is archived and taken out of a damaged
    /// range, nor of one no signed checkpoint covers yet. `what` names the
    /// operation in the refusal.
    pub(crate) async fn signed_and_intact(
        &self,
        from: u64,
        through: u64,
        what: &str,
    ) -> Result<store::CheckpointRow, LedgerError> {
        let cp = self
            .checkpoint_covering(through)
            .await?
            .ok_or_else(|| LedgerError::Invalid("the ledger is empty".into()))?;
        if cp.tree_size < through {
            return Err(LedgerError::Invalid(format!("seq {through} is not yet covered by a signed checkpoint")));
        }
        let report = verify::verify(
            self.db(),
            &self.verifier(),
            Some(self.keys()),
            VerifyScope { from_seq: Some(from), to_seq: Some(through) },
            |_| {},
        )
        .await?;
        if let Some(f) = report.failure {
            return Err(LedgerError::Corrupt(format!(
                "refusing to {what} a range that fails verification: {}",
                f.detail
            )));
        }
        Ok(cp)
    }

    /// Purges entries up to `through_seq` (rounded down to a multiple of 256)
    /// into an archive bundle in `archive_dir`, leaving an anchor in the ledger.
    pub async fn purge_through(&self, through_seq: u64, archive_dir: &Path) -> Result<PurgeOutcome, LedgerError> {
        self.purge_through_with(through_seq, archive_dir, async |_: &Path, _: &str| Ok(())).await
    }

    /// [`Ledger::purge_through`], with `keep` called on the written archive
    /// before anything is deleted (an upload, say; if it fails, nothing is
    /// deleted and the local file is removed).
    ///
    /// A range holding tombstones is a **compaction**: allowed only when
    /// every entry left in it is the anchor of a removal or a purge, and no
    /// removal's range is cut by its end. It is archived as
    /// `custos-archive/v2` (the anchors as sealed, the tombstones as their
    /// hashes), and its tombstones are deleted with the entries.
    pub async fn purge_through_with<F>(
        &self,
        through_seq: u64,
        archive_dir: &Path,
        keep: F,
    ) -> Result<PurgeOutcome, LedgerError>
    where
        F: AsyncFnOnce(&Path, &str) -> Result<(), String>,
    {
        let conn = self.db().conn();
        let previous = store::latest_purge(conn).await?;
        let from = previous.as_ref().map_or(1, |p| p.through_seq + 1);
        let through = through_seq - through_seq % PURGE_ALIGNMENT;
        if through < from {
            return Err(LedgerError::Invalid(format!(
                "nothing to purge: purges cover whole blocks of {PURGE_ALIGNMENT} entries and seq {from}..={through_seq} \
                 holds none"
            )));
        }
        let compaction = !store::read_tombstones(conn, from, through, 1).await?.is_empty();
        if compaction {
            self.check_compactable(from, through).await?;
        }
        let cp = self.signed_and_intact(from, through, "purge").await?;

        let (start_chain, start_frontier) = match &previous {
            Some(p) => (p.chain_hash, p.frontier.clone()),
            None => (GENESIS_CHAIN, Frontier::new()),
        };
        let proof = self.consistency_proof(through, cp.tree_size).await?;
        crate::storage::create_private_dir(archive_dir).map_err(io_err(archive_dir))?;
        let name = format!(
            "custos-archive-{}-{from:012}-{through:012}-{}.ndjson",
            self.origin().replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            uuid::Uuid::now_v7().simple()
        );
        let path = archive_dir.join(&name);
        let written = if compaction {
            self.write_archive(&path, (from, through), None, start_chain, &start_frontier, &cp.note, &proof)
                .await
                .map(|(digest, bytes, _, sealed)| (digest, bytes, sealed))
        } else {
            self.write_purge_archive(&path, (from, through), start_chain, &start_frontier, &cp.note, &proof).await
        };
        let (digest, bytes, entries) =
            settle_archive(written, (archive_dir, &path, &name), keep, "nothing was purged").await?;

        let last_chain = store::chain_at(conn, through)
            .await?
            .ok_or_else(|| LedgerError::Corrupt(format!("seq {through} is missing")))?;
        let frontier = store::frontier_at(conn, through).await?;
        let payload = serde_json::json!({
            "from_seq": from, "through_seq": through,
            "chain_hash": hex::encode(last_chain), "frontier": hex::encode(frontier.encode()),
            "archive_sha256": hex::encode(digest), "archive_name": name,
        });
        let anchor = self
            .append_one(NewEntry::system(
                self.now_us(),
                "integrity",
                "ledger.purge",
                ("ledger", Some(format!("{from}-{through}"))),
                "system",
                &payload,
            ))
            .await?;

        let record = super::purge_record::PurgeRecord {
            origin: self.origin().to_owned(),
            anchor_seq: anchor.seq,
            from_seq: from,
            through_seq: through,
            chain_hash: last_chain,
            frontier: frontier.encode(),
            archive_sha256: digest,
            archive_name: name.clone(),
        };
        let note = record.sign(self.keys().signer());
        let txn = self.db().conn().begin().await?;
        let b = txn.get_database_backend();
        txn.execute_raw(crate::storage::stmt_for(
            b,
            "INSERT INTO ledger_purges (anchor_seq, from_seq, through_seq, chain_hash, frontier, archive_sha256, \
             archive_name, active, created_at, note) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?)",
            vec![
                seq_value(anchor.seq),
                seq_value(from),
                seq_value(through),
                last_chain.to_vec().into(),
                frontier.encode().into(),
                digest.to_vec().into(),
                name.clone().into(),
                anchor.recorded_at_us.into(),
                note.into(),
            ],
        ))
        .await?;
        txn.execute_raw(crate::storage::stmt_for(
            b,
            "DELETE FROM ledger_entries WHERE seq >= ? AND seq <= ?",
            vec![seq_value(from), seq_value(through)],
        ))
        .await?;
        let tombstones = txn
            .execute_raw(crate::storage::stmt_for(
                b,
                "DELETE FROM ledger_tombstones WHERE seq >= ? AND seq <= ?",
                vec![seq_value(from), seq_value(through)],
            ))
            .await?
            .rows_affected();
        txn.execute_raw(crate::storage::stmt_for(
            b,
            "UPDATE ledger_purges SET active = 0 WHERE anchor_seq = ?",
            vec![seq_value(anchor.seq)],
        ))
        .await?;
        txn.commit().await?;
        tracing::info!(from, through, anchor = anchor.seq, tombstones, archive = %path.display(), "ledger range purged into an archive");
        Ok(PurgeOutcome {
            anchor_seq: anchor.seq,
            from_seq: from,
            through_seq: through,
            archive_path: path,
            archive_name: name,
            archive_bytes: bytes,
            archive_sha256: hex::encode(digest),
            entries,
            tombstones,
        })
    }

    /// A compaction's range: every entry left in it anchors a removal or a
    /// purge, and its end cuts no removal's range.
    async fn check_compactable(&self, from: u64, through: u64) -> Result<(), LedgerError> {
        let conn = self.db().conn();
        let mut next = from;
        while next <= through {
            let page = store::read_entries(conn, next, through, 4096).await?;
            let Some(last) = page.last() else { break };
            if let Some(e) = page.iter().find(|e| !is_server_anchor(e)) {
                return Err(LedgerError::Invalid(format!(
                    "seq {from}..={through} still holds events (seq {}): only a range of tombstones and anchors can \
                     be compacted",
                    e.header.seq
                )));
            }
            next = last.header.seq + 1;
        }
        if let Some(r) = super::tombstone::all_records(conn)
            .await?
            .into_iter()
            .find(|r| r.from_seq <= through && through < r.through_seq)
        {
            return Err(LedgerError::Invalid(format!(
                "seq {through} cuts the removal of seq {}..={} (anchor seq {}): a compaction takes removals whole",
                r.from_seq, r.through_seq, r.anchor_seq
            )));
        }
        Ok(())
    }

    /// The longest prefix a compaction can take now (see
    /// [`Ledger::purge_through_with`]): from the first position kept, the
    /// stretch of tombstones and server-written anchors (at most `limit`
    /// positions, within the latest signed checkpoint), its end rounded
    /// down to a multiple of 256 and then moved back before any removal it
    /// would cut (and rounded down again) until none is cut. `None` when no
    /// such end is left, or the prefix up to it holds no tombstone.
    pub async fn compactable_through(&self, limit: u64) -> Result<Option<u64>, LedgerError> {
        let conn = self.db().conn();
        let from = store::latest_purge(conn).await?.map_or(1, |p| p.through_seq + 1);
        let Some(sealed) = self.latest_checkpoint().await?.map(|c| c.tree_size) else { return Ok(None) };
        let end = sealed.min(from.saturating_add(limit.max(1) - 1));
        let (mut last_ok, mut tombstones) = (from - 1, 0u64);
        let mut next = from;
        'scan: while next <= end {
            let upto = (next + 4095).min(end);
            let entries = store::read_entries(conn, next, upto, 4096).await?;
            let tombs = store::read_tombstones(conn, next, upto, 4096).await?;
            let (mut ei, mut ti) = (entries.iter().peekable(), tombs.iter().peekable());
            for seq in next..=upto {
                if ti.next_if(|t| t.seq == seq).is_some() {
                    tombstones += 1;
                } else if ei.next_if(|e| e.header.seq == seq && is_server_anchor(e)).is_none() {
                    break 'scan;
                }
                last_ok = seq;
            }
            next = upto + 1;
        }
        if tombstones == 0 {
            return Ok(None);
        }
        let records = super::tombstone::all_records(conn).await?;
        let mut through = last_ok - last_ok % PURGE_ALIGNMENT;
        while let Some(r) = records.iter().find(|r| r.from_seq <= through && through < r.through_seq) {
            let before = r.from_seq.saturating_sub(1);
            through = before - before % PURGE_ALIGNMENT;
        }
        if through < from || store::read_tombstones(conn, from, through, 1).await?.is_empty() {
            return Ok(None);
        }
        Ok(Some(through))
    }

    /// A purge's `custos-archive/v1` bundle: every entry of the range as
    /// sealed. Returns its digest, size and entry count.
    async fn write_purge_archive(
        &self,
        path: &Path,
        (from, through): (u64, u64),
        start_chain: Hash,
        start_frontier: &Frontier,
        checkpoint: &str,
        proof: &[Hash],
    ) -> Result<(Hash, u64, u64), LedgerError> {
        let conn = self.db().conn();
        let file = std::fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(io_err(path))?;
        let mut w = HashingWriter { inner: std::io::BufWriter::new(file), hash: Sha256::new(), bytes: 0 };
        let header = ArchiveHeader {
            format: ARCHIVE_V1.into(),
            origin: self.origin().to_owned(),
            from_seq: from,
            through_seq: through,
            start_chain_hash: hex::encode(start_chain),
            start_frontier: hex::encode(start_frontier.encode()),
            checkpoint: checkpoint.to_owned(),
            consistency_proof: proof.iter().map(hex::encode).collect(),
        };
        let line = serde_json::to_string(&header).map_err(|e| LedgerError::Corrupt(e.to_string()))?;
        writeln!(w, "{line}").map_err(io_err(path))?;
        let mut next = from;
        let mut entries = 0u64;
        while next <= through {
            let page = store::read_entries(conn, next, through, 4096).await?;
            for e in &page {
                let line = serde_json::to_string(&ArchivedEntry::from_stored(e))
                    .map_err(|e| LedgerError::Corrupt(e.to_string()))?;
                writeln!(w, "{line}").map_err(io_err(path))?;
                next = e.header.seq + 1;
                entries += 1;
            }
            if page.is_empty() {
                return Err(LedgerError::Corrupt(format!("entry seq {next} vanished during the purge")));
            }
        }
        let (digest, bytes) = w.finish(path)?;
        Ok((digest, bytes, entries))
    }
}

/// The anchor of a removal or a purge, written by the server itself (as
/// the database's guards require of the anchors records point at).
fn is_server_anchor(e: &StoredEntry) -> bool {
    let f = &e.header.fields;
    matches!(f.action.as_str(), "ledger.retention" | "ledger.purge")
        && f.actor_id.as_deref() == Some("custos")
        && f.actor_kind.as_deref() == Some("system")
        && f.source_app.as_deref() == Some("custos")
        && f.channel.as_deref() == Some("system")
}

/// Why an archive bundle did not verify.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Unreadable.
    #[error("cannot read the archive: {0}")]
    Io(#[from] std::io::Error),
    /// Not an archive.
    #[error("not a Custos archive: {0}")]
    Format(String),
    /// Verification failed.
    #[error("archive entry seq {seq}: {reason}")]
    Entry {
        /// Failing seq.
        seq: u64,
        /// Why.
        reason: String,
    },
    /// The range does not match the signed checkpoint.
    #[error("archive does not match its signed checkpoint: {0}")]
    Checkpoint(String),
}

/// What an intact archive holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArchiveSummary {
    /// `custos-archive/v1` (a purge) or `custos-archive/v2` (a removal).
    pub format: String,
    /// First seq of its range.
    pub from_seq: u64,
    /// Last seq of its range.
    pub through_seq: u64,
    /// Entries it holds as sealed (each proven).
    pub entries: u64,
    /// Seqs given only by their hashes (v2).
    pub kept: u64,
    /// The signed checkpoint's tree size it is proven against.
    pub checkpoint_size: u64,
    /// `tombstone::tombstones_digest` of the seqs it holds as sealed: what
    /// a retention record signs for a removal.
    pub entries_sha256: String,
}

/// Verifies an archive bundle with only the ledger's public key. Returns the
/// number of entries verified.
pub fn verify_archive(path: &Path, verifier: &NoteVerifier) -> Result<u64, ArchiveError> {
    verify_archive_summary(path, verifier).map(|s| s.entries)
}

/// Verifies an archive bundle with only the ledger's public key: every
/// entry's leaf hash recomputed from its sealed fields, the chain followed,
/// and the tree they build proven consistent with the signed checkpoint.
pub fn verify_archive_summary(path: &Path, verifier: &NoteVerifier) -> Result<ArchiveSummary, ArchiveError> {
    use std::io::BufRead as _;
    let file = std::fs::File::open(path)?;
    let mut lines = std::io::BufReader::new(file).lines();
    let header: ArchiveHeader =
        serde_json::from_str(&lines.next().ok_or_else(|| ArchiveError::Format("empty file".into()))??)
            .map_err(|e| ArchiveError::Format(e.to_string()))?;
    let v2 = match header.format.as_str() {
        ARCHIVE_V1 => false,
        ARCHIVE_V2 => true,
        other => return Err(ArchiveError::Format(format!("unknown format {other}"))),
    };
    if header.from_seq == 0 || header.through_seq < header.from_seq {
        return Err(ArchiveError::Format("range out of order".into()));
    }
    let hex32 = |s: &str| -> Result<Hash, ArchiveError> {
        hex::decode(s).ok().and_then(|v| v.try_into().ok()).ok_or_else(|| ArchiveError::Format(format!("bad hash {s}")))
    };
    let mut chain = hex32(&header.start_chain_hash)?;
    let start_frontier = hex::decode(&header.start_frontier).map_err(|e| ArchiveError::Format(e.to_string()))?;
    let mut frontier =
        Frontier::decode(header.from_seq - 1, &start_frontier).map_err(|e| ArchiveError::Format(e.to_string()))?;
    let cp = verifier.open_checkpoint(&header.checkpoint).map_err(|e| ArchiveError::Checkpoint(e.to_string()))?;
    let mut expected = header.from_seq;
    let (mut entries, mut kept) = (0u64, 0u64);
    let mut held = super::tombstone::TombstonesDigest::new();
    for line in lines {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        let parsed: ArchiveLine = serde_json::from_str(&line).map_err(|e| ArchiveError::Format(e.to_string()))?;
        let (seq, leaf, stored_chain) = match parsed {
            ArchiveLine::Kept(k) => {
                if !v2 || !k.kept {
                    return Err(ArchiveError::Entry { seq: k.seq, reason: "an entry line without the entry".into() });
                }
                kept += 1;
                (k.seq, hex32(&k.leaf_hash)?, hex32(&k.chain_hash)?)
            }
            ArchiveLine::Entry(a) => {
                let bad = |reason: &str| ArchiveError::Entry { seq: a.seq, reason: reason.to_owned() };
                let header_bytes = encoding::header_bytes(&EntryHeader {
                    seq: a.seq,
                    event_id: a.event_id,
                    occurred_at_us: a.occurred_at,
                    recorded_at_us: a.recorded_at,
                    fields: a.fields.clone(),
                });
                let iv: [u8; 16] =
                    B64.decode(&a.iv).ok().and_then(|v| v.try_into().ok()).ok_or_else(|| bad("bad iv"))?;
                let ct = B64.decode(&a.ciphertext).map_err(|_| bad("bad ciphertext"))?;
                let mac = hex32(&a.mac)?;
                let leaf = encoding::leaf_hash(&header_bytes, a.key_id, &iv, &ct, &mac);
                if leaf != hex32(&a.leaf_hash)? {
                    return Err(bad("stored fields do not match the leaf hash"));
                }
                entries += 1;
                held.push(a.seq);
                (a.seq, leaf, hex32(&a.chain_hash)?)
            }
        };
        if seq != expected {
            return Err(ArchiveError::Entry { seq: expected, reason: "missing".into() });
        }
        chain = encoding::chain_hash(&chain, &leaf);
        if chain != stored_chain {
            return Err(ArchiveError::Entry { seq, reason: "chain value does not follow".into() });
        }
        frontier.push(leaf, |_, _, _| {});
        expected += 1;
    }
    if expected != header.through_seq + 1 {
        return Err(ArchiveError::Entry { seq: expected, reason: "missing (archive truncated)".into() });
    }
    let proof: Vec<Hash> = header.consistency_proof.iter().map(|h| hex32(h)).collect::<Result<_, _>>()?;
    merkle::verify_consistency(header.through_seq, cp.tree_size, &frontier.root(), &cp.root_hash, &proof)
        .map_err(|e| ArchiveError::Checkpoint(e.to_string()))?;
    let digest: Hash = held.finish();
    Ok(ArchiveSummary {
        format: header.format,
        from_seq: header.from_seq,
        through_seq: header.through_seq,
        entries,
        kept,
        checkpoint_size: cp.tree_size,
        entries_sha256: hex::encode(digest),
    })
}
