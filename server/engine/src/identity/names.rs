//! User names and e-mail addresses, parsed once at the edge: a
//! [`Username`] or an [`Email`] exists only if it passed its rules, so code
//! past the parse never re-checks (or forgets to check) a string.

use std::fmt;

use serde::Serialize;

/// A user name: trimmed, lower case, 3 to 64 of letters, digits, `.`,
/// `_`, `-` and `@` (so an e-mail address can be one).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Username(String);

/// Why a name or address was refused: the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// `username` or `email`.
    pub field: &'static str,
    /// Why.
    pub reason: &'static str,
}

impl Username {
    /// Parses what a person typed.
    pub fn parse(s: &str) -> Result<Username, Refused> {
        let u = Username::lookup_key(s);
        if !(3..=64).contains(&u.chars().count()) {
            return Err(Refused { field: "username", reason: "must be 3 to 64 characters long" });
        }
        if !u.chars().all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c)) {
            return Err(Refused {
                field: "username",
                reason: "may contain only letters, digits, '.', '_', '-' and '@'",
            });
        }
        Ok(Username(u))
    }

    /// The form a typed name is looked up by (trimmed, lower case), valid
    /// or not: a sign-in with a name no account could have is still
    /// looked up, and refused like any unknown name.
    pub fn lookup_key(s: &str) -> String {
        s.trim().to_lowercase()
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An e-mail address: at most 254 characters, no spaces, a local part and
/// a domain with a dot (not leading).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// Parses an address (trimmed).
    pub fn parse(s: &str) -> Result<Email, Refused> {
        let e = s.trim();
        let valid = e.len() <= 254
            && e.split_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.'))
            && !e.chars().any(char::is_whitespace);
        if valid {
            Ok(Email(e.to_owned()))
        } else {
            Err(Refused { field: "email", reason: "is not an e-mail address" })
        }
    }

    /// An optional address: absent or blank is none.
    pub fn parse_optional(s: Option<&str>) -> Result<Option<Email>, Refused> {
        s.map(str::trim).filter(|e| !e.is_empty()).map(Email::parse).transpose()
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses_are_parsed_once() {
        assert_eq!(Username::parse("  Ada.Lovelace ").unwrap().as_str(), "ada.lovelace");
        assert_eq!(Username::parse("ada@example.org").unwrap().to_string(), "ada@example.org");
        assert_eq!(Username::parse("al").unwrap_err().reason, "must be 3 to 64 characters long");
        assert_eq!(Username::parse("ada lovelace").unwrap_err().field, "username");
        assert_eq!(Username::parse(&"a".repeat(65)).unwrap_err().field, "username");
        assert_eq!(Username::lookup_key(" Nobody Here "), "nobody here", "looked up, never valid");
        assert_eq!(Email::parse(" ada@example.org ").unwrap().as_str(), "ada@example.org");
        for bad in ["ada", "@example.org", "ada@example", "ada@.org", "a da@example.org"] {
            assert_eq!(Email::parse(bad).unwrap_err().field, "email", "{bad}");
        }
        assert_eq!(Email::parse_optional(Some("  ")), Ok(None));
        assert_eq!(Email::parse_optional(None), Ok(None));
        assert_eq!(serde_json::to_string(&Username::parse("ada").unwrap()).unwrap(), "\"ada\"");
    }
}
