//! A page of ledger entries as the verifier and the export read them: each
//! entry's canonical header bytes and ciphertext packed into one buffer.
//! Filled by the direct SQLite reader (`sqlite_direct`), by PostgreSQL's
//! binary `COPY` decoder (`pg_direct::decode_entries`, with the tombstones
//! merged in by [`RawPage::merge_tombstones`]) and from owned entries; read
//! by the verifier and the export.

use super::LedgerError;
use super::encoding;
use super::types::{EntryHeader, Hash, HeaderFields, StoredEntry};

/// A page of entries: each entry's canonical header bytes (what its MAC
/// and leaf hash cover) and ciphertext packed into one buffer, so that
/// reading a million entries does not allocate a million times.
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
    /// MAC and padding, when already checked by the verifier's reader
    /// thread (the export checks them on its workers).
    pub(crate) sealed: Option<Result<(), super::crypto::OpenError>>,
    /// A tombstone (the entry was removed under the retention record
    /// anchored at this seq): only `seq`, `leaf_hash` and `chain_hash`.
    pub tombstone: Option<u64>,
}

/// The data keys a scan checks MACs with, shareable with a reader thread.
pub type KeySnapshot = std::collections::HashMap<u32, std::sync::Arc<super::crypto::DataKey>>;

impl RawPage {
    /// Checks every entry's MAC and padding (done off the verifier's task
    /// when it is behind, so that MACs and leaf hashes are computed at once).
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

    /// An empty page with room for `recs` entries and `bytes` of headers
    /// and ciphertexts.
    pub fn with_room(recs: usize, bytes: usize) -> Self {
        RawPage { buf: Vec::with_capacity(bytes), recs: Vec::with_capacity(recs) }
    }

    /// An empty page with room for `n` entries.
    pub fn with_capacity(n: usize) -> Self {
        RawPage { buf: Vec::with_capacity(n * 800), recs: Vec::with_capacity(n) }
    }

    /// Appends an entry from its borrowed parts (refused when the page's
    /// buffer would pass 4 GiB, which only rows far over the ingest limits
    /// can make it do).
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
    ) -> Result<(), LedgerError> {
        let at = |len: usize| {
            u32::try_from(len)
                .map_err(|_| LedgerError::Corrupt(format!("entry seq {}: a page of over 4 GiB", header.seq)))
        };
        let h0 = at(self.buf.len())?;
        encoding::write_header(&mut self.buf, header);
        let h1 = at(self.buf.len())?;
        let c1 = at(self.buf.len() + ciphertext.len())?;
        self.buf.extend_from_slice(ciphertext);
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
        Ok(())
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

    /// Merges `tombs` (in seq order) into this page of entries (in seq
    /// order) and drops what lies past `upto`. A seq read both as an entry
    /// and as a tombstone keeps only the tombstone (the entry was removed
    /// between the two reads), or both when it is in `put_back` (still an
    /// entry: a removed entry was put back, which the scan reports).
    pub fn merge_tombstones(
        &mut self,
        tombs: &[super::store::TombstoneRow],
        upto: u64,
        put_back: &std::collections::HashSet<u64>,
    ) {
        let entries = std::mem::take(&mut self.recs);
        self.recs.reserve(entries.len() + tombs.len());
        let mut ti = tombs.iter().filter(|t| t.seq <= upto).peekable();
        for e in entries.into_iter().filter(|e| e.seq <= upto) {
            let mut removed = false;
            while let Some(t) = ti.next_if(|t| t.seq <= e.seq) {
                self.push_tombstone(t);
                removed = t.seq == e.seq;
            }
            if !removed || put_back.contains(&e.seq) {
                self.recs.push(e);
            }
        }
        for t in ti {
            self.push_tombstone(t);
        }
    }

    /// Appends an owned entry.
    pub fn push_entry(&mut self, e: &StoredEntry) -> Result<(), LedgerError> {
        let h = encoding::HeaderRef::of(&e.header);
        self.push(&h, e.key_id, e.iv, &e.ciphertext, e.mac, e.leaf_hash, e.chain_hash)
    }

    /// The canonical header bytes of `r`.
    pub fn header(&self, r: &RawRec) -> &[u8] {
        &self.buf[r.header.0 as usize..r.header.1 as usize]
    }

    /// The ciphertext of `r`.
    pub fn ciphertext(&self, r: &RawRec) -> &[u8] {
        &self.buf[r.ciphertext.0 as usize..r.ciphertext.1 as usize]
    }

    /// The header fields of `r`, parsed back from its header bytes and
    /// borrowed from the page (None for a tombstone, or bytes that do not
    /// read back).
    pub fn header_ref(&self, r: &RawRec) -> Option<encoding::HeaderRef<'_>> {
        encoding::parse_header(self.header(r))
    }

    /// `r` as an owned entry (not for tombstones).
    pub fn entry(&self, r: &RawRec) -> Result<StoredEntry, LedgerError> {
        let corrupt = |what: &str| LedgerError::Corrupt(format!("entry seq {}: {what}", r.seq));
        let h = self.header_ref(r).ok_or_else(|| corrupt("its header does not read back"))?;
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| corrupt("a header field is not UTF-8"));
        let opt = |b: Option<&[u8]>| b.map(text).transpose();
        let [category, action, outcome, severity] = h.required;
        let [actor_id, actor_kind, resource_type, resource_id, tenant, channel, source_app] = h.optional;
        Ok(StoredEntry {
            header: EntryHeader {
                seq: h.seq,
                event_id: uuid::Uuid::from_bytes(*h.event_id),
                occurred_at_us: h.occurred_at_us,
                recorded_at_us: h.recorded_at_us,
                fields: HeaderFields {
                    category: text(category)?,
                    action: text(action)?,
                    outcome: text(outcome)?,
                    severity: text(severity)?,
                    actor_id: opt(actor_id)?,
                    actor_kind: opt(actor_kind)?,
                    resource_type: opt(resource_type)?,
                    resource_id: opt(resource_id)?,
                    tenant: opt(tenant)?,
                    channel: opt(channel)?,
                    source_app: opt(source_app)?,
                },
            },
            key_id: r.key_id,
            iv: r.iv,
            ciphertext: self.ciphertext(r).to_vec(),
            mac: r.mac,
            leaf_hash: r.leaf_hash,
            chain_hash: r.chain_hash,
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::store::TombstoneRow;
    use std::collections::HashSet;

    fn entry(seq: u64) -> StoredEntry {
        StoredEntry {
            header: EntryHeader {
                seq,
                event_id: uuid::Uuid::from_bytes([seq as u8; 16]),
                occurred_at_us: seq as i64,
                recorded_at_us: 0,
                fields: HeaderFields { category: format!("c{seq}"), ..HeaderFields::default() },
            },
            key_id: 1,
            iv: [0; 16],
            ciphertext: vec![seq as u8; 16 + seq as usize],
            mac: [0; 32],
            leaf_hash: [seq as u8; 32],
            chain_hash: [seq as u8; 32],
        }
    }

    fn tomb(seq: u64) -> TombstoneRow {
        TombstoneRow { seq, anchor_seq: 99, leaf_hash: [seq as u8; 32], chain_hash: [seq as u8; 32] }
    }

    /// Entries and tombstones merged as the PostgreSQL reader merges them;
    /// every entry kept still reads back as itself.
    fn merged(entries: &[StoredEntry], tombs: &[TombstoneRow], upto: u64, put_back: &HashSet<u64>) -> RawPage {
        let mut raw = RawPage::with_room(entries.len(), 0);
        for e in entries {
            raw.push_entry(e).unwrap();
        }
        raw.merge_tombstones(tombs, upto, put_back);
        for r in raw.recs.iter().filter(|r| r.tombstone.is_none()) {
            assert_eq!(&raw.entry(r).unwrap(), entries.iter().find(|e| e.header.seq == r.seq).unwrap());
        }
        raw
    }

    fn order(raw: &RawPage) -> Vec<(u64, bool)> {
        raw.recs.iter().map(|r| (r.seq, r.tombstone.is_some())).collect()
    }

    #[test]
    fn pages_merge_entries_and_tombstones_in_seq_order_up_to_the_bound() {
        let page = [entry(1), entry(3), entry(4), entry(7)];
        let tombs = [tomb(2), tomb(5), tomb(6), tomb(8), tomb(9)];
        let none = HashSet::new();
        let all = merged(&page, &tombs, 9, &none);
        assert_eq!(
            order(&all),
            [(1, false), (2, true), (3, false), (4, false), (5, true), (6, true), (7, false), (8, true), (9, true)]
        );
        assert!(all.recs.iter().filter(|r| r.tombstone.is_some()).all(|r| r.leaf_hash == [r.seq as u8; 32]));
        // Bounded: nothing past `upto` (read again with the next page).
        let cut = merged(&page, &tombs, 5, &none);
        assert_eq!(order(&cut), [(1, false), (2, true), (3, false), (4, false), (5, true)]);
    }

    #[test]
    fn a_seq_read_twice_is_the_tombstone_unless_the_entry_is_still_there() {
        let page = [entry(1), entry(2), entry(3)];
        let tombs = [tomb(2)];
        // Removed between the two reads: the tombstone only.
        let raced = merged(&page, &tombs, 3, &HashSet::new());
        assert_eq!(order(&raced), [(1, false), (2, true), (3, false)]);
        // Still an entry: both, and the scan reports it.
        let back = merged(&page, &tombs, 3, &[2u64].into_iter().collect());
        assert_eq!(order(&back), [(1, false), (2, true), (2, false), (3, false)]);
    }
}
