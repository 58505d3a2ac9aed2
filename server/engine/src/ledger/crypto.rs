//! Sealing: AES-256-CBC (PKCS#7) with encrypt-then-MAC (HMAC-SHA256), keys
//! derived by HKDF-SHA256; and wrapping of data and signing keys under the
//! key-encryption key (KEK).
//!
//! CBC without a MAC is malleable, so nothing here decrypts before the MAC has
//! been checked, in constant time.

use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit, block_padding::Pkcs7};
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use super::encoding::{Sink, write_mac_input};

type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;
type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;
type HmacSha256 = Hmac<Sha256>;

const INFO_DATA_ENC: &[u8] = b"custos/v1/data-key/aes-256-cbc";
const INFO_DATA_MAC: &[u8] = b"custos/v1/data-key/hmac-sha256";
const INFO_KEK_ENC: &[u8] = b"custos/v1/kek/aes-256-cbc";
const INFO_KEK_MAC: &[u8] = b"custos/v1/kek/hmac-sha256";
const INFO_PSEUDONYM: &[u8] = b"custos/v1/pseudonym/hmac-sha256";
const TAG_WRAP: &str = "custos/v1/key-wrap";
const TAG_SECRET: &str = "custos/v1/sealed-secret";
const TAG_BACKUP: &str = "custos/v1/backup";
const TAG_BACKUP_CHUNK: &str = "custos/v1/backup-chunk";
const INFO_BACKUP_ENC: &[u8] = b"custos/v1/backup/aes-256-cbc";
const INFO_BACKUP_MAC: &[u8] = b"custos/v1/backup/hmac-sha256";
const WRAP_VERSION: u8 = 1;

/// A 32-byte secret that is wiped from memory when dropped.
pub type Secret32 = Zeroizing<[u8; 32]>;

/// Why sealed bytes could not be opened. Deliberately carries no key material.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    /// The MAC does not match: the bytes were changed or the key is wrong.
    #[error("authentication failed (MAC mismatch)")]
    BadMac,
    /// The MAC matched but the padding did not: only possible with a forged MAC.
    #[error("decryption failed (bad padding)")]
    BadPadding,
    /// The wrapped blob has the wrong length or version.
    #[error("malformed wrapped key")]
    Malformed,
}

fn hkdf_32(ikm: &[u8], info: &[u8]) -> Secret32 {
    let mut out = Zeroizing::new([0u8; 32]);
    // INVARIANT: 32 bytes is far below HKDF-SHA256's 8160-byte output limit.
    let _ = Hkdf::<Sha256>::new(None, ikm).expand(info, out.as_mut_slice());
    out
}

fn keyed_hmac(key: &[u8; 32]) -> HmacSha256 {
    // HMAC zero-pads keys shorter than the hash block (64 bytes), so keying
    // with the padded block is the same MAC, through the infallible constructor.
    let mut block = Zeroizing::new([0u8; 64]);
    block[..32].copy_from_slice(key);
    <HmacSha256 as KeyInit>::new(&(*block).into())
}

fn cbc_encrypt(key: &[u8; 32], iv: &[u8; 16], plaintext: &[u8]) -> Vec<u8> {
    Aes256CbcEnc::new(key.into(), iv.into()).encrypt_padded_vec::<Pkcs7>(plaintext)
}

fn cbc_decrypt(key: &[u8; 32], iv: &[u8; 16], ciphertext: &[u8]) -> Result<Vec<u8>, OpenError> {
    Aes256CbcDec::new(key.into(), iv.into()).decrypt_padded_vec::<Pkcs7>(ciphertext).map_err(|_| OpenError::BadPadding)
}

/// A data key (DEK) with its derived encryption and MAC keys.
pub struct DataKey {
    key_id: u32,
    enc: Secret32,
    mac: HmacSha256,
    /// The expanded AES key, for checking the last block without re-expanding.
    aes: aes::Aes256,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

impl DataKey {
    /// Derives the AES and HMAC keys of data key `key_id` from its 32 raw bytes.
    pub fn derive(key_id: u32, dek: &[u8; 32]) -> Self {
        let enc = hkdf_32(dek, INFO_DATA_ENC);
        let mac_key = hkdf_32(dek, INFO_DATA_MAC);
        let aes = <aes::Aes256 as cbc::cipher::KeyInit>::new(&(*enc).into());
        DataKey { key_id, enc, mac: keyed_hmac(&mac_key), aes }
    }

    /// The id under which this key is stored.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// Encrypts a payload with a fresh IV chosen by the caller.
    pub fn encrypt(&self, iv: &[u8; 16], plaintext: &[u8]) -> Vec<u8> {
        cbc_encrypt(&self.enc, iv, plaintext)
    }

    /// The MAC of an entry (see `encoding` for the input layout).
    pub fn mac(&self, header: &[u8], iv: &[u8; 16], ciphertext: &[u8]) -> [u8; 32] {
        let mut m = self.mac.clone();
        write_mac_input(&mut m, header, self.key_id, iv, ciphertext);
        m.finalize().into_bytes().into()
    }

    /// Checks the MAC in constant time.
    pub fn verify_mac(&self, header: &[u8], iv: &[u8; 16], ciphertext: &[u8], mac: &[u8; 32]) -> bool {
        self.mac(header, iv, ciphertext).ct_eq(mac).into()
    }

    /// Checks that a sealed payload opens, without producing the plaintext:
    /// the MAC first (constant time), then the PKCS#7 padding of the last
    /// block, which is the only way CBC decryption can fail.
    pub fn check(&self, header: &[u8], iv: &[u8; 16], ciphertext: &[u8], mac: &[u8; 32]) -> Result<(), OpenError> {
        use cbc::cipher::BlockCipherDecrypt as _;
        if !self.verify_mac(header, iv, ciphertext, mac) {
            return Err(OpenError::BadMac);
        }
        let n = ciphertext.len();
        if n == 0 || !n.is_multiple_of(16) {
            return Err(OpenError::BadPadding);
        }
        let prev: &[u8] = if n == 16 { iv } else { &ciphertext[n - 32..n - 16] };
        let mut block = aes::Block::default();
        block.copy_from_slice(&ciphertext[n - 16..]);
        self.aes.decrypt_block(&mut block);
        for (b, p) in block.iter_mut().zip(prev) {
            *b ^= p;
        }
        let pad = block[15];
        let ok = (1..=16).contains(&pad) && block[16 - pad as usize..].iter().all(|&b| b == pad);
        block.fill(0);
        if ok { Ok(()) } else { Err(OpenError::BadPadding) }
    }

    /// Checks the MAC, and only then decrypts.
    pub fn open(
        &self,
        header: &[u8],
        iv: &[u8; 16],
        ciphertext: &[u8],
        mac: &[u8; 32],
    ) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        if !self.verify_mac(header, iv, ciphertext, mac) {
            return Err(OpenError::BadMac);
        }
        cbc_decrypt(&self.enc, iv, ciphertext).map(Zeroizing::new)
    }
}

/// What a wrapped key is for; bound into the wrap MAC so that blobs cannot be
/// swapped between purposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPurpose {
    /// A data key sealing event payloads.
    Data,
    /// The Ed25519 key signing checkpoints.
    Signing,
}

impl KeyPurpose {
    /// The name stored in the `purpose` column.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyPurpose::Data => "data",
            KeyPurpose::Signing => "signing",
        }
    }
}

/// The key-encryption key, as derived wrapping and MAC keys.
pub struct Kek {
    enc: Secret32,
    mac: HmacSha256,
    /// Keys pseudonyms of masked values: stable across data-key rotations,
    /// so that equal values stay equal (searchable) for the ledger's life.
    pseudonym: HmacSha256,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(..)")
    }
}

impl Kek {
    /// Builds the KEK from its 32 raw bytes (which the caller then drops).
    pub fn from_bytes(raw: &[u8; 32]) -> Self {
        let enc = hkdf_32(raw, INFO_KEK_ENC);
        let mac_key = hkdf_32(raw, INFO_KEK_MAC);
        let pseudonym_key = hkdf_32(raw, INFO_PSEUDONYM);
        Kek { enc, mac: keyed_hmac(&mac_key), pseudonym: keyed_hmac(&pseudonym_key) }
    }

    fn wrap_mac(&self, purpose: KeyPurpose, key_id: u32, iv: &[u8; 16], ct: &[u8]) -> [u8; 32] {
        let mut m = self.mac.clone();
        m.put_str(TAG_WRAP);
        m.put_str(purpose.as_str());
        m.put_u32(key_id);
        m.put(iv);
        m.put_bytes(ct);
        m.finalize().into_bytes().into()
    }

    /// Wraps a 32-byte secret: `u8 version || [16] iv || ct (48) || [32] mac`.
    pub fn wrap(&self, purpose: KeyPurpose, key_id: u32, iv: &[u8; 16], secret: &[u8; 32]) -> Vec<u8> {
        let ct = cbc_encrypt(&self.enc, iv, secret);
        let mac = self.wrap_mac(purpose, key_id, iv, &ct);
        sealed_form(iv, &ct, &mac)
    }

    /// Unwraps a secret, checking the MAC (and so the purpose and key id) first.
    pub fn unwrap(&self, purpose: KeyPurpose, key_id: u32, wrapped: &[u8]) -> Result<Secret32, OpenError> {
        // 1 + 16 + 48 + 32: a 32-byte secret pads to three AES blocks.
        if wrapped.len() != 97 || wrapped[0] != WRAP_VERSION {
            return Err(OpenError::Malformed);
        }
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&wrapped[1..17]);
        let ct = &wrapped[17..65];
        let mut mac = [0u8; 32];
        mac.copy_from_slice(&wrapped[65..97]);
        let expected = self.wrap_mac(purpose, key_id, &iv, ct);
        if !bool::from(expected.ct_eq(&mac)) {
            return Err(OpenError::BadMac);
        }
        let mut plain = cbc_decrypt(&self.enc, &iv, ct)?;
        if plain.len() != 32 {
            plain.zeroize();
            return Err(OpenError::Malformed);
        }
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&plain);
        plain.zeroize();
        Ok(out)
    }
}

impl Kek {
    fn secret_mac(&self, purpose: &str, id: u64, iv: &[u8; 16], ct: &[u8]) -> [u8; 32] {
        let mut m = self.mac.clone();
        m.put_str(TAG_SECRET);
        m.put_str(purpose);
        m.put_u64(id);
        m.put(iv);
        m.put_bytes(ct);
        m.finalize().into_bytes().into()
    }

    /// A keyed pseudonym of `value` (HMAC-SHA256, first 12 bytes, hex).
    pub fn pseudonym(&self, value: &str) -> String {
        let mut m = self.pseudonym.clone();
        m.put_str(value);
        hex::encode(&m.finalize().into_bytes()[..12])
    }

    /// Seals a small secret of any length (e.g. a TOTP secret), bound to a
    /// purpose and an id: `u8 version || [16] iv || ct || [32] mac`.
    pub fn seal(&self, purpose: &str, id: u64, iv: &[u8; 16], secret: &[u8]) -> Vec<u8> {
        let ct = cbc_encrypt(&self.enc, iv, secret);
        let mac = self.secret_mac(purpose, id, iv, &ct);
        sealed_form(iv, &ct, &mac)
    }

    /// Opens a sealed secret, checking the MAC (purpose and id) first.
    pub fn open(&self, purpose: &str, id: u64, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        if sealed.len() < 1 + 16 + 16 + 32 || sealed[0] != WRAP_VERSION || !(sealed.len() - 49).is_multiple_of(16) {
            return Err(OpenError::Malformed);
        }
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&sealed[1..17]);
        let ct = &sealed[17..sealed.len() - 32];
        let mut mac = [0u8; 32];
        mac.copy_from_slice(&sealed[sealed.len() - 32..]);
        if !bool::from(self.secret_mac(purpose, id, &iv, ct).ct_eq(&mac)) {
            return Err(OpenError::BadMac);
        }
        cbc_decrypt(&self.enc, &iv, ct).map(Zeroizing::new)
    }
}

/// The keys of one backup file, derived from the KEK and the file's random
/// salt: a backup opens only with the KEK of the ledger it was taken from.
pub struct BackupKey {
    enc: Secret32,
    mac: HmacSha256,
}

impl std::fmt::Debug for BackupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BackupKey(..)")
    }
}

impl Kek {
    /// The keys of a backup file with this salt.
    pub fn backup_key(&self, salt: &[u8; 32]) -> BackupKey {
        let mut m = self.mac.clone();
        m.put_str(TAG_BACKUP);
        m.put(salt);
        let prk: Secret32 = Zeroizing::new(m.finalize().into_bytes().into());
        BackupKey { enc: hkdf_32(&*prk, INFO_BACKUP_ENC), mac: keyed_hmac(&hkdf_32(&*prk, INFO_BACKUP_MAC)) }
    }
}

impl BackupKey {
    fn chunk_mac(&self, index: u64, last: bool, header_digest: &[u8; 32], iv: &[u8; 16], ct: &[u8]) -> [u8; 32] {
        let mut m = self.mac.clone();
        m.put_str(TAG_BACKUP_CHUNK);
        m.put_u64(index);
        m.put(&[u8::from(last)]);
        m.put(header_digest);
        m.put(iv);
        m.put_bytes(ct);
        m.finalize().into_bytes().into()
    }

    /// Encrypts chunk `index` of a backup (`last` for the final one), bound
    /// to the file's header: returns the ciphertext and its MAC.
    pub fn seal_chunk(
        &self,
        index: u64,
        last: bool,
        header_digest: &[u8; 32],
        iv: &[u8; 16],
        plain: &[u8],
    ) -> (Vec<u8>, [u8; 32]) {
        let ct = cbc_encrypt(&self.enc, iv, plain);
        let mac = self.chunk_mac(index, last, header_digest, iv, &ct);
        (ct, mac)
    }

    /// Opens a chunk, checking its MAC (and so its place, finality and
    /// header) first.
    pub fn open_chunk(
        &self,
        index: u64,
        last: bool,
        header_digest: &[u8; 32],
        iv: &[u8; 16],
        ct: &[u8],
        mac: &[u8; 32],
    ) -> Result<Vec<u8>, OpenError> {
        if !bool::from(self.chunk_mac(index, last, header_digest, iv, ct).ct_eq(mac)) {
            return Err(OpenError::BadMac);
        }
        cbc_decrypt(&self.enc, iv, ct)
    }
}

/// The stored form of a wrapped key or sealed secret:
/// `u8 version || [16] iv || ct || [32] mac`.
fn sealed_form(iv: &[u8; 16], ct: &[u8], mac: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 16 + ct.len() + mac.len());
    out.push(WRAP_VERSION);
    out.extend_from_slice(iv);
    out.extend_from_slice(ct);
    out.extend_from_slice(mac);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_refuses_a_flipped_ciphertext_bit_before_decrypting() {
        let k = DataKey::derive(7, &[3u8; 32]);
        let iv = [9u8; 16];
        let ct = k.encrypt(&iv, b"hello world, this is an audit payload");
        let mac = k.mac(b"header", &iv, &ct);
        assert_eq!(&k.open(b"header", &iv, &ct, &mac).unwrap()[..], b"hello world, this is an audit payload");
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert_eq!(k.open(b"header", &iv, &bad, &mac), Err(OpenError::BadMac));
        assert_eq!(k.open(b"headeR", &iv, &ct, &mac), Err(OpenError::BadMac));
        assert_eq!(k.check(b"header", &iv, &ct, &mac), Ok(()));
        assert_eq!(k.check(b"header", &iv, &bad, &mac), Err(OpenError::BadMac));
    }

    #[test]
    fn check_agrees_with_full_decryption_on_padding() {
        let k = DataKey::derive(1, &[4u8; 32]);
        let iv = [1u8; 16];
        for len in [0usize, 1, 15, 16, 17, 31, 32, 100] {
            let pt = vec![0xAB; len];
            let ct = k.encrypt(&iv, &pt);
            let mac = k.mac(b"h", &iv, &ct);
            assert_eq!(k.check(b"h", &iv, &ct, &mac), Ok(()), "len {len}");
            // A ciphertext whose last block decrypts to bad padding, with a
            // valid MAC (as only a key holder could make): both reject it.
            let mut forged = ct.clone();
            let n = forged.len();
            let prev = if n == 16 { None } else { Some(n - 32) };
            match prev {
                Some(p) => forged[p + 15] ^= 0x7F,
                None => continue,
            }
            let mac = k.mac(b"h", &iv, &forged);
            let full = k.open(b"h", &iv, &forged, &mac).map(|_| ());
            assert_eq!(k.check(b"h", &iv, &forged, &mac), full, "len {len}");
        }
    }

    #[test]
    fn a_wrapped_key_only_unwraps_for_its_own_purpose_id_and_kek() {
        let kek = Kek::from_bytes(&[1u8; 32]);
        let w = kek.wrap(KeyPurpose::Data, 3, &[2u8; 16], &[5u8; 32]);
        assert_eq!(*kek.unwrap(KeyPurpose::Data, 3, &w).unwrap(), [5u8; 32]);
        assert_eq!(kek.unwrap(KeyPurpose::Data, 4, &w), Err(OpenError::BadMac));
        assert_eq!(kek.unwrap(KeyPurpose::Signing, 3, &w), Err(OpenError::BadMac));
        let other = Kek::from_bytes(&[2u8; 32]);
        assert_eq!(other.unwrap(KeyPurpose::Data, 3, &w), Err(OpenError::BadMac));
        assert_eq!(kek.unwrap(KeyPurpose::Data, 3, &w[..96]), Err(OpenError::Malformed));
    }

    #[test]
    fn a_sealed_secret_opens_only_for_its_purpose_and_id() {
        let kek = Kek::from_bytes(&[1u8; 32]);
        let sealed = kek.seal("mfa", 7, &[3u8; 16], b"12345678901234567890");
        assert_eq!(&kek.open("mfa", 7, &sealed).unwrap()[..], b"12345678901234567890");
        assert_eq!(kek.open("mfa", 8, &sealed), Err(OpenError::BadMac));
        assert_eq!(kek.open("other", 7, &sealed), Err(OpenError::BadMac));
        assert_eq!(kek.open("mfa", 7, &sealed[..40]), Err(OpenError::Malformed));
    }
}
