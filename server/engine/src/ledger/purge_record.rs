//! The signed purge record: what a retention purge removed, and the state
//! verification resumes from, as a signed note under the ledger's key.
//!
//! A purge deletes entries `from..=through` and leaves an anchor entry (a
//! `ledger.purge` event written by the server) after them. Verification
//! then starts from the chain value and Merkle frontier *stored* for the
//! purge, so those must be authentic: anyone able to write the database
//! could otherwise delete the oldest history and store the (public) chain
//! state of any later seq. The record is therefore signed:
//!
//! ```text
//! custos.purge/v1\n
//! <origin>\n
//! anchor <anchor seq, decimal>\n
//! range <from seq>-<through seq>\n
//! chain <chain value after `through`, 64 hex digits>\n
//! frontier <the frontier's canonical encoding (merkle::Frontier::encode), hex>\n
//! archive <SHA-256 of the archive bundle, 64 hex digits> <archive file name>\n
//! ```
//! as the text of a C2SP signed note (see `note`), signed with the same
//! Ed25519 key as the checkpoints. The first line is the domain tag (no
//! checkpoint body starts with it: a checkpoint's second line is a tree
//! size). Pure: no I/O.

use super::merkle::Frontier;
use super::note::{NoteError, NoteSigner, NoteVerifier};
use super::types::Hash;

/// The first line of every purge record.
pub const TAG: &str = "custos.purge/v1";

/// The signed content of a purge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgeRecord {
    /// The ledger's origin.
    pub origin: String,
    /// Seq of the anchor entry.
    pub anchor_seq: u64,
    /// First purged seq.
    pub from_seq: u64,
    /// Last purged seq.
    pub through_seq: u64,
    /// Chain value after `through_seq`.
    pub chain_hash: Hash,
    /// Frontier of the first `through_seq` leaves.
    pub frontier: Vec<u8>,
    /// SHA-256 of the archive bundle.
    pub archive_sha256: Hash,
    /// The archive's file name.
    pub archive_name: String,
}

/// Why a purge record was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PurgeRecordError {
    /// The signature is missing or does not verify.
    #[error("purge record signature: {0}")]
    Signature(#[from] NoteError),
    /// Signed, but not a well-formed purge record.
    #[error("malformed purge record: {0}")]
    Malformed(&'static str),
}

impl PurgeRecord {
    /// The signed text.
    pub fn body(&self) -> String {
        format!(
            "{TAG}\n{}\nanchor {}\nrange {}-{}\nchain {}\nfrontier {}\narchive {} {}\n",
            self.origin,
            self.anchor_seq,
            self.from_seq,
            self.through_seq,
            hex::encode(self.chain_hash),
            hex::encode(&self.frontier),
            hex::encode(self.archive_sha256),
            self.archive_name
        )
    }

    /// The record as a signed note.
    pub fn sign(&self, signer: &NoteSigner) -> String {
        signer.sign_text(&self.body())
    }

    /// Opens a signed record: the signature must verify with `verifier`.
    pub fn open(note: &str, verifier: &NoteVerifier) -> Result<PurgeRecord, PurgeRecordError> {
        Self::parse(verifier.open(note)?)
    }

    fn parse(text: &str) -> Result<PurgeRecord, PurgeRecordError> {
        let bad = PurgeRecordError::Malformed;
        let mut lines = text.strip_suffix('\n').ok_or(bad("no final newline"))?.split('\n');
        if lines.next() != Some(TAG) {
            return Err(bad("not a custos.purge/v1 record"));
        }
        let origin = lines.next().filter(|o| !o.is_empty()).ok_or(bad("no origin"))?.to_owned();
        let mut field = |name: &'static str| -> Result<&str, PurgeRecordError> {
            lines.next().and_then(|l| l.strip_prefix(name)).and_then(|l| l.strip_prefix(' ')).ok_or(bad(name))
        };
        let anchor_seq = field("anchor")?.parse().map_err(|_| bad("anchor"))?;
        let (from, through) = field("range")?.split_once('-').ok_or(bad("range"))?;
        let from_seq = from.parse().map_err(|_| bad("range"))?;
        let through_seq = through.parse().map_err(|_| bad("range"))?;
        let hash = |s: &str, what: &'static str| -> Result<Hash, PurgeRecordError> {
            hex::decode(s).ok().and_then(|v| v.try_into().ok()).ok_or(bad(what))
        };
        let chain_hash = hash(field("chain")?, "chain")?;
        let frontier = hex::decode(field("frontier")?).map_err(|_| bad("frontier"))?;
        let (digest, name) = field("archive")?.split_once(' ').ok_or(bad("archive"))?;
        let archive_sha256 = hash(digest, "archive")?;
        if lines.next().is_some() {
            return Err(bad("trailing lines"));
        }
        if from_seq == 0 || through_seq < from_seq || anchor_seq <= through_seq {
            return Err(bad("range and anchor out of order"));
        }
        Frontier::decode(through_seq, &frontier).map_err(|_| bad("frontier"))?;
        Ok(PurgeRecord {
            origin,
            anchor_seq,
            from_seq,
            through_seq,
            chain_hash,
            frontier,
            archive_sha256,
            archive_name: name.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> PurgeRecord {
        let mut f = Frontier::new();
        for i in 0..256u32 {
            f.push(super::super::encoding::leaf_hash(&i.to_be_bytes(), 1, &[0; 16], b"", &[0; 32]), |_, _, _| {});
        }
        PurgeRecord {
            origin: "custos.test/ledger".into(),
            anchor_seq: 300,
            from_seq: 1,
            through_seq: 256,
            chain_hash: [7; 32],
            frontier: f.encode(),
            archive_sha256: [9; 32],
            archive_name: "custos-archive-x-000000000001-000000000256.ndjson".into(),
        }
    }

    #[test]
    fn a_signed_record_opens_with_the_key_and_only_with_it() {
        let signer = NoteSigner::new("custos.test/ledger", &[1; 32]).unwrap();
        let other = NoteSigner::new("custos.test/ledger", &[2; 32]).unwrap();
        let r = record();
        let note = r.sign(&signer);
        assert!(note.starts_with("custos.purge/v1\ncustos.test/ledger\nanchor 300\nrange 1-256\nchain 0707"), "{note}");
        assert_eq!(PurgeRecord::open(&note, &signer.verifier()), Ok(r.clone()));
        assert!(matches!(PurgeRecord::open(&note, &other.verifier()), Err(PurgeRecordError::Signature(_))));
        // Any change to the signed text breaks the signature.
        let edited = note.replace("range 1-256", "range 1-512");
        assert!(matches!(PurgeRecord::open(&edited, &signer.verifier()), Err(PurgeRecordError::Signature(_))));
        // A checkpoint signed by the same key is not a purge record.
        let cp =
            super::super::note::Checkpoint { origin: "custos.test/ledger".into(), tree_size: 5, root_hash: [0; 32] };
        assert!(matches!(
            PurgeRecord::open(&signer.sign_checkpoint(&cp), &signer.verifier()),
            Err(PurgeRecordError::Malformed(_))
        ));
    }
}
