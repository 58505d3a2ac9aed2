//! Percent-encoding for URLs the UI and the server build (one rule set,
//! from the `percent-encoding` crate).

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// A query value: all but RFC 3986's unreserved characters escaped, and
/// `*` (allowed in a query; action prefixes such as `user.*` stay readable).
pub const VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'*');

/// A same-site path carried in a query value (`/login?next=/events`):
/// `/` stays readable.
pub const PATH: &AsciiSet = &VALUE.remove(b'/');

/// Encodes a query value.
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, VALUE).to_string()
}

/// Encodes a path for a query value.
pub fn encode_path(s: &str) -> String {
    utf8_percent_encode(s, PATH).to_string()
}

/// Decodes a query component (`+` is a space); None when the bytes are not
/// UTF-8. A `%` not followed by two hex digits stays as it is, as browsers
/// and the server's query parser take it.
pub fn decode(s: &str) -> Option<String> {
    let spaced = s.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8().ok().map(|c| c.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_paths_round_trip() {
        assert_eq!(encode("a b/c:d€~"), "a%20b%2Fc%3Ad%E2%82%AC~");
        assert_eq!(encode_path("/events?x=1"), "/events%3Fx%3D1");
        assert_eq!(decode("a%20b+c").as_deref(), Some("a b c"));
        assert_eq!(decode("%zz").as_deref(), Some("%zz"));
        assert_eq!(decode("%FF"), None);
        for s in ["", "plain", "2026-11-26T14:03:00+01:00", "Zoë & co", "1€"] {
            assert_eq!(decode(&encode(s)).as_deref(), Some(s));
        }
    }
}
