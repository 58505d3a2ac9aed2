//! Time-based one-time passwords (RFC 6238, HMAC-SHA1, 30-second steps,
//! 6 digits) and recovery codes.

use crate::time::SECOND_US;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha1::Sha1;
use subtle::ConstantTimeEq as _;

/// Seconds per step.
pub const STEP_SECONDS: i64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;
/// Bytes of a new secret (160 bits, as RFC 4226 recommends).
pub const SECRET_LEN: usize = 20;

/// The HOTP value (RFC 4226) of `secret` at counter `step`, with `digits` digits.
pub fn hotp(secret: &[u8], step: u64, digits: u32) -> u32 {
    // INVARIANT: HMAC accepts keys of any length; an empty key only comes from
    // a corrupt record and yields a code nobody can match.
    let Ok(mut mac) = <Hmac<Sha1>>::new_from_slice(secret) else { return u32::MAX };
    mac.update(&step.to_be_bytes());
    let d = mac.finalize().into_bytes();
    let offset = (d[19] & 0x0f) as usize;
    let bin = u32::from_be_bytes([d[offset] & 0x7f, d[offset + 1], d[offset + 2], d[offset + 3]]);
    bin % 10u32.pow(digits)
}

/// The step a time falls in.
pub fn step_at(unix_us: i64) -> u64 {
    u64::try_from(unix_us.div_euclid(SECOND_US) / STEP_SECONDS).unwrap_or(0)
}

/// Checks a 6-digit code at `now`, accepting the previous and next step for
/// clock drift. Returns the matched step (callers refuse a step already
/// used, so a code cannot be replayed).
pub fn verify(secret: &[u8], code: &str, now_us: i64) -> Option<u64> {
    let code = code.trim().replace(' ', "");
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = step_at(now_us);
    let mut found = None;
    for step in [now.saturating_sub(1), now, now + 1] {
        let expected = format!("{:0width$}", hotp(secret, step, DIGITS), width = DIGITS as usize);
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
            found = Some(step);
        }
    }
    found
}

/// RFC 4648 base32 without padding (how authenticator apps take secrets).
pub fn base32(bytes: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(bytes)
}

/// The `otpauth://` URI an authenticator app enrols from.
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
        custos_model::url::encode(issuer),
        custos_model::url::encode(account),
        base32(secret),
        custos_model::url::encode(issuer)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 6238 Appendix B, SHA-1 rows (secret "12345678901234567890", 8 digits).
    #[test]
    fn matches_the_rfc6238_test_vectors() {
        let secret = b"12345678901234567890";
        for (t, code) in [
            (59i64, 94_287_082u32),
            (1_111_111_109, 7_081_804),
            (1_111_111_111, 14_050_471),
            (1_234_567_890, 89_005_924),
            (2_000_000_000, 69_279_037),
            (20_000_000_000, 65_353_130),
        ] {
            assert_eq!(hotp(secret, step_at(t * 1_000_000), 8), code, "T = {t}");
        }
    }

    #[test]
    fn accepts_one_step_of_drift_and_nothing_else() {
        let secret = b"12345678901234567890";
        let now = 1_111_111_111 * 1_000_000;
        let code = |step: u64| format!("{:06}", hotp(secret, step, 6));
        let s = step_at(now);
        assert_eq!(verify(secret, &code(s), now), Some(s));
        assert_eq!(verify(secret, &code(s - 1), now), Some(s - 1));
        assert_eq!(verify(secret, &code(s + 1), now), Some(s + 1));
        assert_eq!(verify(secret, &code(s + 2), now), None);
        assert_eq!(verify(secret, "12345", now), None);
        assert_eq!(verify(secret, "abcdef", now), None);
    }

    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert!(otpauth_uri("Custos", "ada@example.org", b"12345678901234567890").starts_with(
            "otpauth://totp/Custos:ada%40example.org?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Custos"
        ));
    }
}
