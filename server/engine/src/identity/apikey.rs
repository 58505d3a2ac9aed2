//! API key tokens: `cst_<prefix>_<secret>`. The prefix (public, 12 hex
//! digits) finds the key; only SHA-256 of the whole token is stored, and it
//! is compared in constant time. The secret has 256 bits, so a fast hash is
//! enough (no password stretching needed).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

use crate::clock::{RandomError, RandomSource};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Send audit events.
    Ingest,
    /// Search and read audit events.
    Read,
}

impl Scope {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
        }
    }

    /// Parses a stable name.
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "ingest" => Some(Scope::Ingest),
            "read" => Some(Scope::Read),
            _ => None,
        }
    }
}

/// A new token: the prefix (stored, shown in lists) and the whole secret
/// token (shown once).
pub struct NewToken {
    /// Lookup prefix.
    pub prefix: String,
    /// The token to give to the client.
    pub token: SecretString,
    /// SHA-256 of the token, to store.
    pub hash: [u8; 32],
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

/// Makes a new token.
pub fn generate(rng: &dyn RandomSource) -> Result<NewToken, RandomError> {
    let mut prefix = [0u8; 6];
    rng.fill(&mut prefix)?;
    let mut secret = zeroize::Zeroizing::new([0u8; 32]);
    rng.fill(secret.as_mut_slice())?;
    let prefix = hex::encode(prefix);
    let token = format!("cst_{prefix}_{}", URL_SAFE_NO_PAD.encode(secret.as_slice()));
    let hash = hash(&token);
    Ok(NewToken { prefix, token: SecretString::from(token), hash })
}

/// The lookup prefix of a token, if it has the right shape.
pub fn prefix_of(token: &str) -> Option<&str> {
    let rest = token.strip_prefix("cst_")?;
    let (prefix, secret) = rest.split_once('_')?;
    (prefix.len() == 12 && prefix.bytes().all(|b| b.is_ascii_hexdigit()) && secret.len() == 43).then_some(prefix)
}

/// SHA-256 of a token.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret as _;

    #[test]
    fn tokens_have_a_findable_prefix_and_a_hash() {
        let t = generate(&crate::clock::OsRandom).unwrap();
        let token = t.token.expose_secret();
        assert_eq!(prefix_of(token), Some(t.prefix.as_str()));
        assert_eq!(hash(token), t.hash);
        assert!(!format!("{t:?}").contains(&token[17..]), "Debug never shows the secret");
        assert_eq!(prefix_of("cst_short_x"), None);
        assert_eq!(prefix_of("Bearer something"), None);
    }
}
