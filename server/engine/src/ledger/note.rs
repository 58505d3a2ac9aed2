//! Checkpoints as C2SP signed notes (c2sp.org/signed-note,
//! c2sp.org/tlog-checkpoint), signed with Ed25519.
//!
//! ```text
//! <origin>\n
//! <tree size, decimal>\n
//! <root hash, base64>\n
//! \n
//! — <key name> <base64(key hash (4 bytes) || signature (64 bytes))>\n
//! ```
//! The signature covers the note text (the first three lines, each ending in
//! a newline). The key hash is the first four bytes of
//! `SHA-256(name || "\n" || 0x01 || public key)`, and the verifier key is
//! written `<name>+<key hash, 8 hex digits>+<base64(0x01 || public key)>`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::types::Hash;

const ALG_ED25519: u8 = 0x01;
const SIG_PREFIX: &str = "\u{2014} ";

/// A checkpoint: the signed head of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Log identity, e.g. `custos.example.com/ledger`.
    pub origin: String,
    /// Number of leaves.
    pub tree_size: u64,
    /// Merkle root over those leaves.
    pub root_hash: Hash,
}

impl Checkpoint {
    /// The note text that is signed.
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.tree_size, B64.encode(self.root_hash))
    }
}

/// Why a note was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NoteError {
    /// Not a well-formed note or checkpoint.
    #[error("malformed checkpoint note: {0}")]
    Malformed(&'static str),
    /// No signature by the expected key.
    #[error("checkpoint is not signed by key {0}")]
    NoSignature(String),
    /// A signature by the expected key that does not verify.
    #[error("checkpoint signature by key {0} is invalid")]
    BadSignature(String),
    /// A verifier key string that cannot be parsed.
    #[error("malformed verifier key: {0}")]
    BadKey(&'static str),
}

fn key_hash(name: &str, public: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

/// Signs notes with an Ed25519 key under a key name.
pub struct NoteSigner {
    name: String,
    key: SigningKey,
    hash: u32,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner").field("name", &self.name).finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// A signer from a 32-byte Ed25519 seed.
    pub fn new(name: &str, seed: &[u8; 32]) -> Result<Self, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::BadKey("key name must be non-empty, without spaces or '+'"));
        }
        let key = SigningKey::from_bytes(seed);
        let hash = key_hash(name, key.verifying_key().as_bytes());
        Ok(NoteSigner { name: name.to_owned(), key, hash })
    }

    /// The matching verifier.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier { name: self.name.clone(), key: self.key.verifying_key(), hash: self.hash }
    }

    /// Signs a checkpoint and returns the complete note.
    pub fn sign_checkpoint(&self, cp: &Checkpoint) -> String {
        self.sign_text(&cp.body())
    }

    /// Signs arbitrary note text (which must end in a newline).
    pub fn sign_text(&self, text: &str) -> String {
        let sig: Signature = self.key.sign(text.as_bytes());
        let mut blob = Vec::with_capacity(68);
        blob.extend_from_slice(&self.hash.to_be_bytes());
        blob.extend_from_slice(&sig.to_bytes());
        format!("{text}\n{SIG_PREFIX}{} {}\n", self.name, B64.encode(blob))
    }
}

/// Verifies notes signed by one Ed25519 key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key: VerifyingKey,
    hash: u32,
}

impl NoteVerifier {
    /// Parses a verifier key: `<name>+<hash hex>+<base64(0x01 || key)>`.
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        let vkey = vkey.trim();
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(hash_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::BadKey("expected <name>+<hash>+<key>"));
        };
        if !valid_name(name) {
            return Err(NoteError::BadKey("bad key name"));
        }
        if hash_hex.len() != 8 {
            return Err(NoteError::BadKey("key hash must be 8 hex digits"));
        }
        let hash = u32::from_str_radix(hash_hex, 16).map_err(|_| NoteError::BadKey("key hash is not hex"))?;
        let raw = B64.decode(key_b64).map_err(|_| NoteError::BadKey("key is not base64"))?;
        if raw.len() != 33 || raw[0] != ALG_ED25519 {
            return Err(NoteError::BadKey("not an Ed25519 key"));
        }
        let mut public = [0u8; 32];
        public.copy_from_slice(&raw[1..]);
        if key_hash(name, &public) != hash {
            return Err(NoteError::BadKey("key hash does not match the key"));
        }
        let key = VerifyingKey::from_bytes(&public).map_err(|_| NoteError::BadKey("invalid Ed25519 point"))?;
        Ok(NoteVerifier { name: name.to_owned(), key, hash })
    }

    /// The verifier key in its text form.
    pub fn to_vkey(&self) -> String {
        let mut raw = Vec::with_capacity(33);
        raw.push(ALG_ED25519);
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.hash, B64.encode(raw))
    }

    /// A verifier for a raw Ed25519 public key under `name`.
    pub fn from_public_key(name: &str, public: &[u8; 32]) -> Result<Self, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::BadKey("bad key name"));
        }
        let key = VerifyingKey::from_bytes(public).map_err(|_| NoteError::BadKey("invalid Ed25519 point"))?;
        Ok(NoteVerifier { name: name.to_owned(), key, hash: key_hash(name, public) })
    }

    /// The raw Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Opens a signed note: checks its form and this key's signature, and
    /// returns the signed text. Signatures by other keys are ignored.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let Some(split) = note.rfind("\n\n") else {
            return Err(NoteError::Malformed("no blank line before signatures"));
        };
        let text = &note[..split + 1];
        let sigs = &note[split + 2..];
        if !sigs.ends_with('\n') || text.is_empty() {
            return Err(NoteError::Malformed("signature block must end in a newline"));
        }
        let mut verified = false;
        for line in sigs.lines() {
            let Some(rest) = line.strip_prefix(SIG_PREFIX) else {
                return Err(NoteError::Malformed("bad signature line"));
            };
            let Some((name, b64)) = rest.split_once(' ') else {
                return Err(NoteError::Malformed("bad signature line"));
            };
            let blob = B64.decode(b64).map_err(|_| NoteError::Malformed("signature is not base64"))?;
            if blob.len() < 4 {
                return Err(NoteError::Malformed("signature too short"));
            }
            let hash = u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]);
            if name != self.name || hash != self.hash {
                continue;
            }
            let sig = Signature::from_slice(&blob[4..]).map_err(|_| NoteError::BadSignature(self.to_vkey()))?;
            self.key.verify_strict(text.as_bytes(), &sig).map_err(|_| NoteError::BadSignature(self.to_vkey()))?;
            verified = true;
        }
        if verified { Ok(text) } else { Err(NoteError::NoSignature(self.to_vkey())) }
    }

    /// Opens a signed checkpoint and parses it.
    pub fn open_checkpoint(&self, note: &str) -> Result<Checkpoint, NoteError> {
        parse_checkpoint(self.open(note)?)
    }
}

/// Parses checkpoint text (without verifying any signature).
pub fn parse_checkpoint(text: &str) -> Result<Checkpoint, NoteError> {
    let mut lines = text.split('\n');
    let origin = lines.next().filter(|o| !o.is_empty()).ok_or(NoteError::Malformed("missing origin"))?;
    let size = lines.next().ok_or(NoteError::Malformed("missing tree size"))?;
    if size.is_empty() || (size.len() > 1 && size.starts_with('0')) || !size.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NoteError::Malformed("tree size is not a decimal number"));
    }
    let tree_size: u64 = size.parse().map_err(|_| NoteError::Malformed("tree size out of range"))?;
    let root = lines.next().ok_or(NoteError::Malformed("missing root hash"))?;
    let raw = B64.decode(root).map_err(|_| NoteError::Malformed("root hash is not base64"))?;
    let root_hash: Hash = raw.try_into().map_err(|_| NoteError::Malformed("root hash is not 32 bytes"))?;
    Ok(Checkpoint { origin: origin.to_owned(), tree_size, root_hash })
}
