//! Canonical byte encoding of ledger entries (format version 1).
//!
//! Every hash and MAC in the ledger is computed over these bytes, never over
//! JSON text. The layout is fixed, versioned and length-prefixed, and each
//! purpose has its own domain-separation tag, so that no byte string can be
//! read as two different things.
//!
//! Primitives (all integers big-endian):
//! - `u8`, `u32`, `u64`, `i64`: fixed width.
//! - `bytes(x)`: `u32 len || x`.
//! - `str(s)`: `bytes(utf8(s))`.
//! - `opt(s)`: `0x00` when absent, `0x01 || str(s)` when present.
//!
//! Header (the clear, filterable fields; stored in columns):
//! ```text
//! header = u8 version(=1) || u64 seq || [16] event_id (UUID bytes)
//!       || i64 occurred_at_us || i64 recorded_at_us
//!       || str category || str action || str outcome || str severity
//!       || opt actor_id || opt actor_kind || opt resource_type
//!       || opt resource_id || opt tenant || opt channel || opt source_app
//! ```
//! MAC input (encrypt-then-MAC, HMAC-SHA256 under the data key's MAC key):
//! ```text
//! str("custos/v1/entry-mac") || bytes(header) || u32 key_id || [16] iv || bytes(ciphertext)
//! ```
//! Record (what the Merkle leaf commits to):
//! ```text
//! record = str("custos/v1/entry") || bytes(header) || u32 key_id || [16] iv
//!       || bytes(ciphertext) || [32] mac
//! leaf   = SHA-256(0x00 || record)                     (RFC 6962 leaf hash)
//! chain  = SHA-256(str("custos/v1/chain") || [32] previous chain || [32] leaf)
//! ```
//! The chain value before the first entry is 32 zero bytes.

use sha2::{Digest, Sha256};

use super::types::{EntryHeader, Hash};

/// The format version written into every header.
pub const FORMAT_VERSION: u8 = 1;
pub(crate) const TAG_MAC: &str = "custos/v1/entry-mac";
pub(crate) const TAG_RECORD: &str = "custos/v1/entry";
pub(crate) const TAG_CHAIN: &str = "custos/v1/chain";

/// Anything the encoding can be written into: a buffer, a hash, a MAC.
pub trait Sink {
    /// Appends raw bytes.
    fn put(&mut self, bytes: &[u8]);

    /// Appends one byte.
    fn put_u8(&mut self, v: u8) {
        self.put(&[v]);
    }
    /// Appends a big-endian u32.
    fn put_u32(&mut self, v: u32) {
        self.put(&v.to_be_bytes());
    }
    /// Appends a big-endian u64.
    fn put_u64(&mut self, v: u64) {
        self.put(&v.to_be_bytes());
    }
    /// Appends a big-endian i64.
    fn put_i64(&mut self, v: i64) {
        self.put(&v.to_be_bytes());
    }
    /// Appends `u32 len || bytes`.
    fn put_bytes(&mut self, bytes: &[u8]) {
        // INVARIANT: every encoded field is far below 4 GiB (events are capped
        // well under that at ingest), so the length always fits in a u32.
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        self.put_u32(len);
        self.put(bytes);
    }
    /// Appends a length-prefixed UTF-8 string.
    fn put_str(&mut self, s: &str) {
        self.put_bytes(s.as_bytes());
    }
    /// Appends an optional string: `0x00`, or `0x01 || str`.
    fn put_opt(&mut self, s: Option<&str>) {
        match s {
            None => self.put_u8(0),
            Some(s) => {
                self.put_u8(1);
                self.put_str(s);
            }
        }
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Sink for Sha256 {
    fn put(&mut self, bytes: &[u8]) {
        Digest::update(self, bytes);
    }
}

impl Sink for hmac::Hmac<Sha256> {
    fn put(&mut self, bytes: &[u8]) {
        hmac::Mac::update(self, bytes);
    }
}

/// A header's fields, borrowed (from an `EntryHeader`, a database row, or
/// header bytes read back with `parse_header`).
#[derive(Debug, Clone, Copy)]
pub struct HeaderRef<'a> {
    /// Ledger position.
    pub seq: u64,
    /// Event id, 16 bytes.
    pub event_id: &'a [u8; 16],
    /// µs since the epoch.
    pub occurred_at_us: i64,
    /// µs since the epoch.
    pub recorded_at_us: i64,
    /// category, action, outcome, severity (UTF-8 bytes).
    pub required: [&'a [u8]; 4],
    /// actor_id, actor_kind, resource_type, resource_id, tenant, channel, source_app.
    pub optional: [Option<&'a [u8]>; 7],
}

impl<'a> HeaderRef<'a> {
    /// Borrows an owned header.
    pub fn of(h: &'a EntryHeader) -> Self {
        let f = &h.fields;
        HeaderRef {
            seq: h.seq,
            event_id: h.event_id.as_bytes(),
            occurred_at_us: h.occurred_at_us,
            recorded_at_us: h.recorded_at_us,
            required: [f.category.as_bytes(), f.action.as_bytes(), f.outcome.as_bytes(), f.severity.as_bytes()],
            optional: [
                f.actor_id.as_deref().map(str::as_bytes),
                f.actor_kind.as_deref().map(str::as_bytes),
                f.resource_type.as_deref().map(str::as_bytes),
                f.resource_id.as_deref().map(str::as_bytes),
                f.tenant.as_deref().map(str::as_bytes),
                f.channel.as_deref().map(str::as_bytes),
                f.source_app.as_deref().map(str::as_bytes),
            ],
        }
    }
}

/// Writes the header layout (see the module documentation) into `out`.
pub fn write_header(out: &mut impl Sink, h: &HeaderRef<'_>) {
    out.put_u8(FORMAT_VERSION);
    out.put_u64(h.seq);
    out.put(h.event_id);
    out.put_i64(h.occurred_at_us);
    out.put_i64(h.recorded_at_us);
    for s in h.required {
        out.put_bytes(s);
    }
    for s in h.optional {
        match s {
            None => out.put_u8(0),
            Some(s) => {
                out.put_u8(1);
                out.put_bytes(s);
            }
        }
    }
}

/// Reads header bytes written by `write_header` back into their borrowed
/// fields; None when the bytes are not exactly one header of this format
/// version.
pub fn parse_header(bytes: &[u8]) -> Option<HeaderRef<'_>> {
    struct Reader<'a>(&'a [u8]);
    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            let (head, rest) = self.0.split_at_checked(n)?;
            self.0 = rest;
            Some(head)
        }
        fn array<const N: usize>(&mut self) -> Option<&'a [u8; N]> {
            self.take(N)?.try_into().ok()
        }
        fn bytes(&mut self) -> Option<&'a [u8]> {
            let n = u32::from_be_bytes(*self.array::<4>()?);
            self.take(usize::try_from(n).ok()?)
        }
        fn opt(&mut self) -> Option<Option<&'a [u8]>> {
            match self.array::<1>()? {
                [0] => Some(None),
                [1] => self.bytes().map(Some),
                _ => None,
            }
        }
    }
    let mut r = Reader(bytes);
    if *r.array::<1>()? != [FORMAT_VERSION] {
        return None;
    }
    let seq = u64::from_be_bytes(*r.array()?);
    let event_id = r.array::<16>()?;
    let occurred_at_us = i64::from_be_bytes(*r.array()?);
    let recorded_at_us = i64::from_be_bytes(*r.array()?);
    let required = [r.bytes()?, r.bytes()?, r.bytes()?, r.bytes()?];
    let optional = [r.opt()?, r.opt()?, r.opt()?, r.opt()?, r.opt()?, r.opt()?, r.opt()?];
    r.0.is_empty().then_some(HeaderRef { seq, event_id, occurred_at_us, recorded_at_us, required, optional })
}

/// Encodes the clear header of an entry.
pub fn header_bytes(h: &EntryHeader) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    write_header(&mut out, &HeaderRef::of(h));
    out
}

/// Writes the MAC input of an entry into `sink`.
pub fn write_mac_input(sink: &mut impl Sink, header: &[u8], key_id: u32, iv: &[u8; 16], ct: &[u8]) {
    sink.put_str(TAG_MAC);
    sink.put_bytes(header);
    sink.put_u32(key_id);
    sink.put(iv);
    sink.put_bytes(ct);
}

/// Writes the record bytes of an entry (what its leaf hash commits to).
pub fn write_record(sink: &mut impl Sink, header: &[u8], key_id: u32, iv: &[u8; 16], ct: &[u8], mac: &[u8; 32]) {
    sink.put_str(TAG_RECORD);
    sink.put_bytes(header);
    sink.put_u32(key_id);
    sink.put(iv);
    sink.put_bytes(ct);
    sink.put(mac);
}

/// The RFC 6962 leaf hash of an entry: `SHA-256(0x00 || record)`.
pub fn leaf_hash(header: &[u8], key_id: u32, iv: &[u8; 16], ct: &[u8], mac: &[u8; 32]) -> Hash {
    let mut h = Sha256::new();
    h.put_u8(0x00);
    write_record(&mut h, header, key_id, iv, ct, mac);
    h.finalize().into()
}

/// The chain value after appending `leaf` to a chain ending in `previous`.
pub fn chain_hash(previous: &Hash, leaf: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.put_str(TAG_CHAIN);
    h.put(previous);
    h.put(leaf);
    h.finalize().into()
}

/// The chain value before the first entry.
pub const GENESIS_CHAIN: Hash = [0u8; 32];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_length_prefixed_so_field_boundaries_cannot_shift() {
        let mut a = Vec::new();
        a.put_str("ab");
        a.put_str("c");
        let mut b = Vec::new();
        b.put_str("a");
        b.put_str("bc");
        assert_ne!(a, b);
        assert_eq!(a, [0, 0, 0, 2, b'a', b'b', 0, 0, 0, 1, b'c']);
    }

    #[test]
    fn an_absent_option_differs_from_an_empty_string() {
        let mut a = Vec::new();
        a.put_opt(None);
        let mut b = Vec::new();
        b.put_opt(Some(""));
        assert_eq!(a, [0]);
        assert_eq!(b, [1, 0, 0, 0, 0]);
    }

    #[test]
    fn a_header_reads_back_as_written_and_nothing_else_reads_as_one() {
        let id = [7u8; 16];
        let h = HeaderRef {
            seq: 42,
            event_id: &id,
            occurred_at_us: -5,
            recorded_at_us: 1_764_000_000_000_000,
            required: [b"authentication", b"user.login", b"success", b""],
            optional: [Some(b"alice"), None, Some(b""), None, Some(b"acme"), Some(b"api"), None],
        };
        let mut bytes = Vec::new();
        write_header(&mut bytes, &h);
        let back = parse_header(&bytes).expect("a header");
        assert_eq!(
            (back.seq, back.event_id, back.occurred_at_us, back.recorded_at_us, back.required, back.optional),
            (h.seq, h.event_id, h.occurred_at_us, h.recorded_at_us, h.required, h.optional)
        );
        for n in 0..bytes.len() {
            assert!(parse_header(&bytes[..n]).is_none(), "{n} bytes of {}", bytes.len());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(parse_header(&longer).is_none());
        let mut version = bytes.clone();
        version[0] = 2;
        assert!(parse_header(&version).is_none());
        // The first optional field's tag (after the fixed part and the four strings).
        let tag = 1 + 8 + 16 + 8 + 8 + h.required.iter().map(|s| 4 + s.len()).sum::<usize>();
        let mut flag = bytes.clone();
        flag[tag] = 2;
        assert!(parse_header(&flag).is_none());
    }
}
