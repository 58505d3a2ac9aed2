//! Verifying one entry: its fields, MAC and decryption, and its inclusion
//! proof against the latest signed checkpoint.

use super::*;

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
            Err(crate::ledger::crypto::OpenError::BadMac) => (Some(false), Some(false)),
            Err(_) => (Some(true), Some(false)),
        },
    };
    let mut inclusion = None;
    if let Some(cp) = store::latest_signed_checkpoint(conn, verifier).await?.filter(|c| c.tree_size >= seq) {
        let signed = verifier.open_checkpoint(&cp.note).ok();
        let mut hashes = Vec::new();
        for r in crate::ledger::merkle::inclusion_ranges(seq - 1, cp.tree_size) {
            hashes.push(store::range_hash(conn, r).await?);
        }
        let verified = signed.as_ref().is_some_and(|s| {
            s.tree_size == cp.tree_size
                && crate::ledger::merkle::verify_inclusion(
                    seq - 1,
                    s.tree_size,
                    &entry.leaf_hash,
                    &hashes,
                    &s.root_hash,
                )
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
