//! Passwords: argon2id hashes (PHC strings) and the password policy.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use zeroize::Zeroizing;

use crate::clock::{RandomError, RandomSource};

/// Shortest acceptable password, in characters.
pub const MIN_LENGTH: usize = 12;
/// Longest acceptable password, in characters (bounds hashing work).
pub const MAX_LENGTH: usize = 256;

/// Why a password is refused. Never contains the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Too short.
    #[error("password must be at least {MIN_LENGTH} characters long")]
    TooShort,
    /// Too long.
    #[error("password must be at most {MAX_LENGTH} characters long")]
    TooLong,
    /// Same as the user name or e-mail.
    #[error("password must not be the user name or e-mail address")]
    SameAsIdentity,
}

/// Checks a new password against the policy.
pub fn check_policy(password: &str, username: &str, email: Option<&str>) -> Result<(), PolicyError> {
    let n = password.chars().count();
    if n < MIN_LENGTH {
        return Err(PolicyError::TooShort);
    }
    if n > MAX_LENGTH {
        return Err(PolicyError::TooLong);
    }
    let p = password.trim().to_lowercase();
    let same = |other: &str| !other.is_empty() && p == other.trim().to_lowercase();
    if same(username) || email.is_some_and(same) {
        return Err(PolicyError::SameAsIdentity);
    }
    Ok(())
}

/// Hashing failed (randomness or the algorithm).
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// No randomness for the salt.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// The algorithm refused the input.
    #[error("password hashing failed")]
    Hash,
}

/// Hashes a password with argon2id (default parameters: 19 MiB, t=2, p=1)
/// and a random 16-byte salt; returns the PHC string.
pub fn hash(password: &str, rng: &dyn RandomSource) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    rng.fill(&mut salt)?;
    let phc: PasswordHash =
        Argon2::default().hash_password_with_salt(password.as_bytes(), &salt).map_err(|_| HashError::Hash)?;
    Ok(phc.to_string())
}

/// A random password (144 bits, URL-safe base64: 24 characters).
pub fn generate(rng: &dyn RandomSource) -> Result<secrecy::SecretString, RandomError> {
    use base64::Engine as _;
    let mut raw = Zeroizing::new([0u8; 18]);
    rng.fill(raw.as_mut_slice())?;
    Ok(secrecy::SecretString::from(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.as_slice())))
}

/// Checks a password against a stored PHC string (constant time in the hash).
pub fn verify(password: &str, phc: &str) -> bool {
    let password = Zeroizing::new(password.as_bytes().to_vec());
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default().verify_password(&password, &parsed).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::OsRandom;

    #[test]
    fn the_policy_names_its_reason() {
        assert_eq!(check_policy("short", "ada", None), Err(PolicyError::TooShort));
        assert_eq!(check_policy(&"x".repeat(257), "ada", None), Err(PolicyError::TooLong));
        assert_eq!(check_policy("ada.lovelace1", "Ada.Lovelace1", None), Err(PolicyError::SameAsIdentity));
        assert_eq!(check_policy("ada@example.org", "ada", Some("ADA@example.org")), Err(PolicyError::SameAsIdentity));
        assert_eq!(check_policy("correct horse battery", "ada", Some("ada@example.org")), Ok(()));
        // Length counts characters, not bytes.
        assert_eq!(check_policy("ééééééééééé", "ada", None), Err(PolicyError::TooShort));
    }

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let a = hash("correct horse battery", &OsRandom).unwrap();
        let b = hash("correct horse battery", &OsRandom).unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "salted");
        assert!(verify("correct horse battery", &a));
        assert!(!verify("correct horse batterY", &a));
        assert!(!verify("correct horse battery", "not a hash"));
    }
}
