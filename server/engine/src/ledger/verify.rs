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
//!   and agrees with the stored head.
//!
//! Verification stops at the first failure and says which seq and why.

use serde::Serialize;

use super::encoding::{self, GENESIS_CHAIN};
use super::error::LedgerError;
use super::keyring::Keyring;
use super::merkle::Frontier;
use super::note::NoteVerifier;
use super::store;
use super::types::{Hash, StoredEntry};
use crate::storage::Database;

/// Entries read per query.
const PAGE: u64 = 4096;

/// Which part of the ledger to verify.
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyScope {
    /// First seq (default: the start of the retained ledger).
    pub from_seq: Option<u64>,
    /// Last seq (default: the head).
    pub to_seq: Option<u64>,
}

/// A page of entries as verification needs them: each entry's canonical
/// header bytes and ciphertext packed into one buffer, so that reading a
/// million entries does not allocate a million times.
#[derive(Debug, Default)]
pub struct RawPage {
    buf: Vec<u8>,
    /// The entries, in seq order.
    pub recs: Vec<RawRec>,
}

/// One entry of a `RawPage`.
#[derive(Debug, Clone)]
pub struct RawRec {
    /// Ledger position (from the `seq` column).
    pub seq: u64,
    /// Data key id.
    pub key_id: u32,
    header: (u32, u32),
    ciphertext: (u32, u32),
    /// CBC IV.
    pub iv: [u8; 16],
    /// Stored MAC.
    pub mac: Hash,
    /// Stored leaf hash.
    pub leaf_hash: Hash,
    /// Stored chain value.
    pub chain_hash: Hash,
    /// MAC and padding, when already checked by the reader thread.
    sealed: Option<Result<(), super::crypto::OpenError>>,
}

/// The data keys a scan checks MACs with, shareable with a reader thread.
pub type KeySnapshot = std::collections::HashMap<u32, std::sync::Arc<super::crypto::DataKey>>;

impl RawPage {
    /// Checks every entry's MAC and padding (done on the reader thread, so
    /// that both cores hash: this one MACs, the verifier hashes leaves).
    fn check_sealed(&mut self, keys: &KeySnapshot) {
        for i in 0..self.recs.len() {
            let r = &self.recs[i];
            let status = keys.get(&r.key_id).map(|k| k.check(self.header(r), &r.iv, self.ciphertext(r), &r.mac));
            self.recs[i].sealed = status;
        }
    }

    /// An empty page with room for `n` entries.
    pub fn with_capacity(n: usize) -> Self {
        RawPage { buf: Vec::with_capacity(n * 800), recs: Vec::with_capacity(n) }
    }

    /// Appends an entry from its borrowed parts.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        header: &encoding::HeaderRef<'_>,
        key_id: u32,
        iv: [u8; 16],
        ciphertext: &[u8],
        mac: Hash,
        leaf_hash: Hash,
        chain_hash: Hash,
    ) {
        let h0 = self.buf.len() as u32;
        encoding::write_header(&mut self.buf, header);
        let h1 = self.buf.len() as u32;
        self.buf.extend_from_slice(ciphertext);
        let c1 = self.buf.len() as u32;
        self.recs.push(RawRec {
            seq: header.seq,
            key_id,
            header: (h0, h1),
            ciphertext: (h1, c1),
            iv,
            mac,
            leaf_hash,
            chain_hash,
            sealed: None,
        });
    }

    /// Appends an owned entry.
    pub fn push_entry(&mut self, e: &StoredEntry) {
        let h = encoding::HeaderRef::of(&e.header);
        self.push(&h, e.key_id, e.iv, &e.ciphertext, e.mac, e.leaf_hash, e.chain_hash);
    }

    /// The canonical header bytes of `r`.
    pub fn header(&self, r: &RawRec) -> &[u8] {
        &self.buf[r.header.0 as usize..r.header.1 as usize]
    }

    /// The ciphertext of `r`.
    pub fn ciphertext(&self, r: &RawRec) -> &[u8] {
        &self.buf[r.ciphertext.0 as usize..r.ciphertext.1 as usize]
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.recs.len()
    }

    /// Whether the page is empty.
    pub fn is_empty(&self) -> bool {
        self.recs.is_empty()
    }
}

/// Pages of entries in seq order. On SQLite a reader thread holding one read
/// transaction (so one consistent snapshot) reads ahead while the caller
/// hashes; elsewhere, keyset-paged queries.
enum EntryPages<'a> {
    Direct(tokio::sync::mpsc::Receiver<Result<RawPage, LedgerError>>),
    Orm { db: &'a Database, next: u64, to: u64 },
}

impl<'a> EntryPages<'a> {
    fn open(db: &'a Database, from: u64, to: u64, keys: Option<KeySnapshot>) -> Self {
        let Some(path) = db.sqlite_file().map(std::path::Path::to_path_buf) else {
            return EntryPages::Orm { db, next: from, to };
        };
        let busy = db.busy_timeout();
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        tokio::task::spawn_blocking(move || {
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
        EntryPages::Direct(rx)
    }

    async fn next(&mut self) -> Option<Result<RawPage, LedgerError>> {
        match self {
            EntryPages::Direct(rx) => rx.recv().await,
            EntryPages::Orm { db, next, to } => {
                if *next > *to {
                    return None;
                }
                match store::read_entries(db.conn(), *next, *to, PAGE).await {
                    Ok(page) if page.is_empty() => None,
                    Ok(page) => {
                        *next = page.last().map_or(*to + 1, |e| e.header.seq + 1);
                        let mut raw = RawPage::with_capacity(page.len());
                        for e in &page {
                            raw.push_entry(e);
                        }
                        Some(Ok(raw))
                    }
                    Err(e) => Some(Err(e)),
                }
            }
        }
    }
}

/// What kind of tampering or damage was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
}

/// The first failure found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The failing entry (or the first seq of the failing range).
    pub seq: Option<u64>,
    /// What failed.
    pub kind: FailureKind,
    /// A sentence for people.
    pub detail: String,
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// First seq verified.
    pub from_seq: u64,
    /// Last seq verified (or reached).
    pub to_seq: u64,
    /// Entries whose leaf and chain were recomputed.
    pub entries_checked: u64,
    /// Entries whose MAC and decryption were checked (0 without the KEK).
    pub macs_checked: u64,
    /// Checkpoints whose signature verified.
    pub checkpoints_signed: u64,
    /// Checkpoints whose root was recomputed and matched.
    pub checkpoints_matched: u64,
    /// Largest tree size proven equal to a signed checkpoint.
    pub verified_tree_size: Option<u64>,
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

fn fail(report: &mut VerifyReport, seq: Option<u64>, kind: FailureKind, detail: String) {
    if report.failure.is_none() {
        report.failure = Some(Failure { seq, kind, detail });
    }
}

/// Verifies the ledger in `db`. `verifier` is the checkpoint public key (from
/// the auditor, not from the database); `keys`, when given, adds MAC and
/// decryption checks. `progress` is called every few thousand entries.
pub async fn verify(
    db: &Database,
    verifier: &NoteVerifier,
    keys: Option<&Keyring>,
    scope: VerifyScope,
    mut progress: impl FnMut(Progress) + Send,
) -> Result<VerifyReport, LedgerError> {
    let conn = db.conn();
    let head = store::read_head(conn).await?;
    let purge = store::latest_purge(conn).await?;
    let retained_from = purge.as_ref().map_or(1, |p| p.through_seq + 1);
    let from = scope.from_seq.unwrap_or(retained_from).max(retained_from);
    let full_tail = scope.to_seq.is_none();
    let to = scope.to_seq.unwrap_or(head.seq).min(head.seq.max(store::max_entry_seq(conn).await?));
    let mut report = VerifyReport {
        from_seq: from,
        to_seq: to,
        entries_checked: 0,
        macs_checked: 0,
        checkpoints_signed: 0,
        checkpoints_matched: 0,
        verified_tree_size: None,
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

    // 2. Starting state: genesis, the purge anchor, or the stored state before `from`.
    let (mut chain, mut frontier): (Hash, Frontier) = if from == 1 {
        (GENESIS_CHAIN, Frontier::new())
    } else if let Some(p) = purge.as_ref().filter(|p| p.through_seq + 1 == from) {
        (p.chain_hash, p.frontier.clone())
    } else {
        let prev = store::read_entry(conn, from - 1).await?.ok_or_else(|| {
            LedgerError::Invalid(format!("cannot start at seq {from}: entry {} is missing", from - 1))
        })?;
        (prev.chain_hash, store::frontier_at(conn, from - 1).await?)
    };
    // Owned (no closure held across the awaits below: the future stays Send).
    let pending: Vec<(u64, Hash)> = checkpoints.iter().copied().filter(|(size, _)| *size >= from).collect();
    let mut cps = pending.iter().peekable();
    let mut last_matched = from - 1;
    let total = (to + 1).saturating_sub(from);
    progress(Progress { checked: 0, total });

    // 3. Entries.
    let mut expected = from;
    let mut pages = EntryPages::open(db, from, to, keys.map(Keyring::snapshot));
    'pages: while let Some(page) = pages.next().await {
        let page = page?;
        for e in &page.recs {
            let seq = e.seq;
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
            let leaf = encoding::leaf_hash(hb, e.key_id, &e.iv, ct, &e.mac);
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
            if let Some(keys) = keys {
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
            frontier.push(leaf, |_, _, _| {});
            report.entries_checked += 1;
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
        progress(Progress { checked: report.entries_checked, total });
    }
    if report.failure.is_some() {
        return Ok(report);
    }
    if expected <= to {
        fail(&mut report, Some(expected), FailureKind::MissingEntry, format!("entry seq {expected} is missing"));
        return Ok(report);
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
    Ok(report)
}

/// An inclusion proof checked against a signed checkpoint.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InclusionCheck {
    /// Tree size of the checkpoint.
    pub tree_size: u64,
    /// Its root hash.
    #[serde(with = "hex_bytes")]
    pub root_hash: Hash,
    /// The signed note.
    pub checkpoint: String,
    /// The proof's hashes, bottom-up.
    #[serde(serialize_with = "hex_list")]
    pub hashes: Vec<Hash>,
    /// Signature valid and proof leads to the signed root.
    pub verified: bool,
}

/// The result of verifying one entry.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EntryVerification {
    /// The entry.
    pub seq: u64,
    /// Stored fields hash to the stored leaf hash.
    pub leaf_matches: bool,
    /// The MAC matches (checked before decrypting); None without keys.
    pub mac_valid: Option<bool>,
    /// The payload decrypts; None without keys.
    pub decrypts: Option<bool>,
    /// Inclusion in the latest signed checkpoint (None until one covers it).
    pub inclusion: Option<InclusionCheck>,
}

impl EntryVerification {
    /// Everything checked passed, and a signed checkpoint covers the entry.
    pub fn is_intact(&self) -> bool {
        self.leaf_matches
            && self.mac_valid != Some(false)
            && self.decrypts != Some(false)
            && self.inclusion.as_ref().is_some_and(|i| i.verified)
    }
}

mod hex_bytes {
    pub fn serialize<S: serde::Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(h))
    }
}

fn hex_list<S: serde::Serializer>(hs: &[Hash], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq as _;
    let mut seq = s.serialize_seq(Some(hs.len()))?;
    for h in hs {
        seq.serialize_element(&hex::encode(h))?;
    }
    seq.end()
}

/// Verifies one entry: its stored fields against its leaf hash; with keys,
/// its MAC and then its decryption; and its inclusion proof against the
/// latest signed checkpoint (signature checked with `verifier`).
pub async fn verify_entry(
    db: &Database,
    verifier: &NoteVerifier,
    keys: Option<&Keyring>,
    seq: u64,
) -> Result<EntryVerification, LedgerError> {
    let conn = db.conn();
    let entry =
        store::read_entry(conn, seq).await?.ok_or_else(|| LedgerError::Invalid(format!("no entry with seq {seq}")))?;
    let header = encoding::header_bytes(&entry.header);
    let leaf_matches =
        encoding::leaf_hash(&header, entry.key_id, &entry.iv, &entry.ciphertext, &entry.mac) == entry.leaf_hash;
    let (mac_valid, decrypts) = match keys.map(|k| k.get(entry.key_id)) {
        None => (None, None),
        Some(None) => (Some(false), Some(false)),
        Some(Some(k)) => match k.open(&header, &entry.iv, &entry.ciphertext, &entry.mac) {
            Ok(_) => (Some(true), Some(true)),
            Err(super::crypto::OpenError::BadMac) => (Some(false), Some(false)),
            Err(_) => (Some(true), Some(false)),
        },
    };
    let mut inclusion = None;
    if let Some(cp) = store::latest_checkpoint(conn).await?.filter(|c| c.tree_size >= seq) {
        let signed = verifier.open_checkpoint(&cp.note).ok();
        let mut hashes = Vec::new();
        for r in super::merkle::inclusion_ranges(seq - 1, cp.tree_size) {
            hashes.push(store::range_hash(conn, r).await?);
        }
        let verified = signed.as_ref().is_some_and(|s| {
            s.tree_size == cp.tree_size
                && super::merkle::verify_inclusion(seq - 1, s.tree_size, &entry.leaf_hash, &hashes, &s.root_hash)
                    .is_ok()
        });
        inclusion = Some(InclusionCheck {
            tree_size: cp.tree_size,
            root_hash: cp.root_hash,
            checkpoint: cp.note,
            hashes,
            verified,
        });
    }
    Ok(EntryVerification { seq, leaf_matches, mac_valid, decrypts, inclusion })
}
