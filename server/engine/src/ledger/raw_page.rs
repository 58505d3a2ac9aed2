//! A page of ledger entries as verification reads them: each entry's
//! canonical header bytes and ciphertext packed into one buffer. Shared by
//! the verifier and the direct SQLite reader (neither depends on the other).

use super::encoding;
use super::types::{Hash, StoredEntry};

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
    pub(crate) sealed: Option<Result<(), super::crypto::OpenError>>,
    /// A tombstone (the entry was removed under the retention record
    /// anchored at this seq): only `seq`, `leaf_hash` and `chain_hash`.
    pub tombstone: Option<u64>,
}

/// The data keys a scan checks MACs with, shareable with a reader thread.
pub type KeySnapshot = std::collections::HashMap<u32, std::sync::Arc<super::crypto::DataKey>>;

impl RawPage {
    /// Checks every entry's MAC and padding (done on the reader thread, so
    /// that both cores hash: this one MACs, the verifier hashes leaves).
    pub(crate) fn check_sealed(&mut self, keys: &KeySnapshot) {
        for i in 0..self.recs.len() {
            let r = &self.recs[i];
            if r.tombstone.is_some() {
                continue;
            }
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
            tombstone: None,
        });
    }

    /// Appends a tombstone.
    pub fn push_tombstone(&mut self, t: &super::store::TombstoneRow) {
        let at = self.buf.len() as u32;
        self.recs.push(RawRec {
            seq: t.seq,
            key_id: 0,
            header: (at, at),
            ciphertext: (at, at),
            iv: [0; 16],
            mac: [0; 32],
            leaf_hash: t.leaf_hash,
            chain_hash: t.chain_hash,
            sealed: None,
            tombstone: Some(t.anchor_seq),
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
