//! PII masking, applied before an event's clear header is stored.
//!
//! Each rule pairs a detector with an action:
//! - detectors: e-mail addresses, phone numbers (international `+…`, or
//!   `(555) 123-4567` / `555-123-4567`), payment card numbers (13-19 digits,
//!   Luhn-checked), IBANs (mod-97-checked), US social security numbers
//!   (with the SSA's invalid ranges excluded), IPv4/IPv6 addresses, and
//!   secrets by key name (`password`, `token`, `secret`, `api_key`,
//!   `authorization`, `cookie`, …) in `details`;
//! - actions: redact (`[email]`), partial (keep the last N characters), or
//!   pseudonymise (a keyed HMAC, so equal values stay equal and searchable).
//!
//! Masked: actor id, name and ip; resource id and name; reason; and every
//! string in `details`. When a rule keeps originals, the unmasked values go
//! only into the encrypted payload (for holders of `audit:unmask`).

use std::collections::BTreeMap;

use regex::Regex;
use serde_json::Value;

use super::model::Event;

pub use super::model::{Detector, MaskAction, MaskRule};

/// Key names whose values are secrets (matched case-insensitively, as whole
/// names or `_`/`-` separated parts).
pub const SECRET_KEY_NAMES: [&str; 16] = [
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "set-cookie",
    "private_key",
    "client_secret",
    "access_key",
    "refresh_token",
    "session_token",
    "credential",
];

/// The rules in force when nobody has changed them.
pub fn default_rules() -> Vec<MaskRule> {
    use Detector::*;
    use MaskAction::*;
    vec![
        MaskRule { detector: SecretKey, action: Redact, keep_original: false, enabled: true },
        MaskRule { detector: PaymentCard, action: Partial { keep_last: 4 }, keep_original: false, enabled: true },
        MaskRule { detector: Iban, action: Partial { keep_last: 4 }, keep_original: true, enabled: true },
        MaskRule { detector: UsSsn, action: Redact, keep_original: true, enabled: true },
        MaskRule { detector: Email, action: Pseudonymize, keep_original: true, enabled: true },
        MaskRule { detector: Phone, action: Partial { keep_last: 2 }, keep_original: true, enabled: true },
        MaskRule { detector: IpAddress, action: Pseudonymize, keep_original: true, enabled: true },
    ]
}

/// A rule list that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("masking rules: {0}")]
pub struct RulesError(pub String);

/// Checks a rule list before it is saved: the shape ([`check_shape`]) and
/// the secret-key rule present, enabled, redacting and never keeping
/// originals (the README promises secrets are never kept).
pub fn check_rules(rules: &[MaskRule]) -> Result<(), RulesError> {
    check_shape(rules)?;
    for (i, r) in rules.iter().enumerate().filter(|(_, r)| r.detector == Detector::SecretKey) {
        if r.keep_original {
            return Err(RulesError(format!(
                "rules[{i}].keep_original: secrets are never kept (not even for those who may unmask)"
            )));
        }
        if !r.enabled {
            return Err(RulesError(format!("rules[{i}].enabled: the secret-key rule cannot be turned off")));
        }
    }
    if !rules.iter().any(|r| r.detector == Detector::SecretKey) {
        return Err(RulesError(
            "the secret-key rule (detector `secret_key`, action redact) is required: secrets are never stored".into(),
        ));
    }
    Ok(())
}

/// The secret-key rule as it always applies.
const SECRET_RULE: MaskRule =
    MaskRule { detector: Detector::SecretKey, action: MaskAction::Redact, keep_original: false, enabled: true };

/// Checks a rule list's shape: one rule per detector, sane partial lengths,
/// secrets only redacted.
pub fn check_shape(rules: &[MaskRule]) -> Result<(), RulesError> {
    let mut seen = std::collections::HashSet::new();
    for (i, r) in rules.iter().enumerate() {
        if !seen.insert(r.detector) {
            return Err(RulesError(format!("rules[{i}]: a second rule for detector `{}`", r.detector.as_str())));
        }
        if let MaskAction::Partial { keep_last } = r.action
            && keep_last > 8
        {
            return Err(RulesError(format!("rules[{i}].action.keep_last: at most 8 characters may stay visible")));
        }
        if r.detector == Detector::SecretKey && r.action != MaskAction::Redact {
            return Err(RulesError(format!("rules[{i}]: secrets are only ever redacted")));
        }
    }
    Ok(())
}

fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(*d);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

fn iban_valid(s: &str) -> bool {
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut rem = 0u32;
    for c in tail.chars().chain(head.chars()) {
        let v = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            _ => return false,
        };
        for d in v.to_string().bytes() {
            rem = (rem * 10 + u32::from(d - b'0')) % 97;
        }
    }
    rem == 1
}

fn ssn_valid(area: &str, group: &str, serial: &str) -> bool {
    area != "000" && area != "666" && !area.starts_with('9') && group != "00" && serial != "0000"
}

/// A compiled policy.
pub struct Masker {
    rules: Vec<MaskRule>,
    email: Regex,
    phone: Regex,
    card: Regex,
    iban: Regex,
    ssn: Regex,
    ipv4: Regex,
    ipv6: Regex,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Masker").field("rules", &self.rules).finish_non_exhaustive()
    }
}

/// A detector, its pattern, and a check of each match.
type Pass<'a> = (Detector, &'a Regex, fn(&regex::Captures<'_>) -> bool);

/// Told of each value masked: detector, value, replacement.
pub type Seen<'a> = &'a mut dyn FnMut(Detector, &str, &str);

/// Where masked originals go: field path -> original value.
pub type Originals = BTreeMap<String, String>;

impl Masker {
    /// Compiles a rule list.
    /// A masker for a rule list of a valid shape. The secret-key rule always
    /// applies as [`SECRET_RULE`], whatever the list says: a policy stored
    /// before it was required still never keeps a secret.
    pub fn new(mut rules: Vec<MaskRule>) -> Result<Masker, RulesError> {
        check_shape(&rules)?;
        match rules.iter_mut().find(|r| r.detector == Detector::SecretKey) {
            Some(r) => *r = SECRET_RULE,
            None => rules.insert(0, SECRET_RULE),
        }
        let re = |p: &str| Regex::new(p).map_err(|e| RulesError(e.to_string()));
        Ok(Masker {
            rules,
            email: re(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")?,
            phone: re(r"\+\d[\d ().-]{6,18}\d|\(\d{3}\) ?\d{3}-\d{4}|\b\d{3}[-.]\d{3}[-.]\d{4}\b")?,
            card: re(r"\b\d(?:[ -]?\d){12,18}\b")?,
            iban: re(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")?,
            ssn: re(r"\b(\d{3})-(\d{2})-(\d{4})\b")?,
            ipv4: re(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")?,
            ipv6: re(r"(?i)\b(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}\b")?,
        })
    }

    /// The rules.
    pub fn rules(&self) -> &[MaskRule] {
        &self.rules
    }

    fn rule(&self, d: Detector) -> Option<&MaskRule> {
        self.rules.iter().find(|r| r.detector == d && r.enabled)
    }

    fn replace(action: MaskAction, detector: Detector, found: &str, pseudonym: &dyn Fn(&str) -> String) -> String {
        match action {
            MaskAction::Redact => format!("[{}]", detector.as_str()),
            MaskAction::Pseudonymize => format!("pseu:{}", pseudonym(&found.to_lowercase())),
            MaskAction::Partial { keep_last } => {
                if detector == Detector::Email
                    && let Some((_, domain)) = found.split_once('@')
                {
                    return format!("***@{domain}");
                }
                let chars: Vec<char> = found.chars().collect();
                let keep = (keep_last as usize).min(chars.len() / 2);
                let masked: String = chars[..chars.len() - keep]
                    .iter()
                    .map(|c| if c.is_ascii_alphanumeric() { '•' } else { *c })
                    .collect();
                format!("{masked}{}", chars[chars.len() - keep..].iter().collect::<String>())
            }
        }
    }

    /// Masks the detected values in a text. Returns the masked text and
    /// whether a rule that keeps originals changed it.
    pub fn mask_text(&self, text: &str, pseudonym: &dyn Fn(&str) -> String) -> (String, bool) {
        self.mask_text_seen(text, pseudonym, &mut |_, _, _| {})
    }

    /// [`Masker::mask_text`], telling `seen` each value masked: its
    /// detector, the value and its replacement (a dry-run counts with it).
    pub fn mask_text_seen(&self, text: &str, pseudonym: &dyn Fn(&str) -> String, seen: Seen<'_>) -> (String, bool) {
        let mut out = text.to_owned();
        let mut keep = false;
        // Most specific first: a card number must not be taken for a phone.
        let passes: [Pass<'_>; 7] = [
            (Detector::Email, &self.email, |_| true),
            (Detector::PaymentCard, &self.card, |c| {
                let digits: Vec<u8> = c[0].bytes().filter(u8::is_ascii_digit).map(|b| b - b'0').collect();
                (13..=19).contains(&digits.len()) && luhn(&digits)
            }),
            (Detector::Iban, &self.iban, |c| iban_valid(&c[0])),
            (Detector::UsSsn, &self.ssn, |c| ssn_valid(&c[1], &c[2], &c[3])),
            (Detector::Phone, &self.phone, |c| (7..=15).contains(&c[0].bytes().filter(u8::is_ascii_digit).count())),
            (Detector::IpAddress, &self.ipv4, |c| c[0].parse::<std::net::Ipv4Addr>().is_ok()),
            (Detector::IpAddress, &self.ipv6, |c| c[0].parse::<std::net::Ipv6Addr>().is_ok()),
        ];
        for (detector, re, valid) in passes {
            let Some(rule) = self.rule(detector) else { continue };
            let mut changed = false;
            let next = re.replace_all(&out, |c: &regex::Captures<'_>| {
                if valid(c) {
                    changed = true;
                    let replacement = Self::replace(rule.action, detector, &c[0], pseudonym);
                    seen(detector, &c[0], &replacement);
                    replacement
                } else {
                    c[0].to_owned()
                }
            });
            if changed {
                out = next.into_owned();
                keep |= rule.keep_original;
            }
        }
        (out, keep)
    }

    fn mask_field(
        &self,
        value: &mut Option<String>,
        path: &str,
        originals: &mut Originals,
        pseudonym: &dyn Fn(&str) -> String,
        seen: Seen<'_>,
    ) {
        if let Some(v) = value.as_mut() {
            let (masked, keep) = self.mask_text_seen(v, pseudonym, seen);
            if masked != *v {
                if keep {
                    originals.insert(path.to_owned(), v.clone());
                }
                *v = masked;
            }
        }
    }

    fn is_secret_key(k: &str) -> bool {
        let k = k.to_lowercase();
        SECRET_KEY_NAMES.iter().any(|s| k == *s || k.split(['_', '-', '.']).any(|part| part == *s) || k.ends_with(s))
    }

    fn mask_value(
        &self,
        v: &mut Value,
        path: &str,
        originals: &mut Originals,
        pseudonym: &dyn Fn(&str) -> String,
        seen: Seen<'_>,
    ) {
        match v {
            Value::String(s) => {
                let (masked, keep) = self.mask_text_seen(s, pseudonym, seen);
                if masked != *s {
                    if keep {
                        originals.insert(path.to_owned(), s.clone());
                    }
                    *s = masked;
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.mask_value(item, &format!("{path}[{i}]"), originals, pseudonym, seen);
                }
            }
            Value::Object(map) => {
                let secret = self.rule(Detector::SecretKey);
                for (k, item) in map.iter_mut() {
                    let p = format!("{path}.{k}");
                    if let Some(rule) = secret
                        && Self::is_secret_key(k)
                        && !item.is_null()
                    {
                        if rule.keep_original {
                            originals.insert(p, item.to_string());
                        }
                        // The value itself is never passed on, not even to a dry-run.
                        seen(Detector::SecretKey, k, "[secret]");
                        *item = Value::String("[secret]".into());
                        continue;
                    }
                    self.mask_value(item, &p, originals, pseudonym, seen);
                }
            }
            _ => {}
        }
    }

    /// Masks an event in place; returns the originals that rules keep.
    pub fn mask_event(&self, e: &mut Event, pseudonym: &dyn Fn(&str) -> String) -> Originals {
        self.mask_event_seen(e, pseudonym, &mut |_, _, _| {})
    }

    /// [`Masker::mask_event`], telling `seen` each value masked (for a
    /// secret key: the key's name, never its value).
    pub fn mask_event_seen(&self, e: &mut Event, pseudonym: &dyn Fn(&str) -> String, seen: Seen<'_>) -> Originals {
        let mut originals = Originals::new();
        let mut actor_id = Some(std::mem::take(&mut e.actor.id));
        self.mask_field(&mut actor_id, "actor.id", &mut originals, pseudonym, seen);
        e.actor.id = actor_id.unwrap_or_default();
        self.mask_field(&mut e.actor.name, "actor.name", &mut originals, pseudonym, seen);
        self.mask_field(&mut e.actor.ip, "actor.ip", &mut originals, pseudonym, seen);
        // A session id is a bearer secret of the application that sent it:
        // only a keyed pseudonym is stored (still correlatable), never the
        // id, and no original is kept.
        if let Some(sid) = e.actor.session_id.as_mut() {
            *sid = format!("sid:{}", pseudonym(sid));
        }
        self.mask_field(&mut e.reason, "reason", &mut originals, pseudonym, seen);
        if let Some(r) = e.resource.as_mut() {
            self.mask_field(&mut r.id, "resource.id", &mut originals, pseudonym, seen);
            self.mask_field(&mut r.name, "resource.name", &mut originals, pseudonym, seen);
        }
        if let Some(d) = e.details.as_mut() {
            self.mask_value(d, "details", &mut originals, pseudonym, seen);
        }
        originals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masker() -> Masker {
        Masker::new(default_rules()).unwrap()
    }

    fn p(v: &str) -> String {
        format!("h({v})")
    }

    fn mask(text: &str) -> String {
        masker().mask_text(text, &p).0
    }

    #[test]
    fn each_builtin_detector_masks_valid_values_only() {
        assert_eq!(mask("mail ada@example.org now"), "mail pseu:h(ada@example.org) now");
        assert_eq!(mask("card 4111 1111 1111 1111 ok"), "card •••• •••• •••• 1111 ok");
        assert_eq!(mask("card 4111 1111 1111 1112 ok"), "card 4111 1111 1111 1112 ok", "fails Luhn: not a card");
        assert_eq!(mask("iban DE89370400440532013000"), "iban ••••••••••••••••••3000");
        assert_eq!(mask("iban DE89370400440532013001"), "iban DE89370400440532013001", "fails mod 97");
        assert_eq!(mask("ssn 123-45-6789"), "ssn [us_ssn]");
        assert_eq!(mask("ssn 666-45-6789"), "ssn 666-45-6789", "never issued");
        assert_eq!(mask("call +44 20 7946 0958"), "call +•• •• •••• ••58");
        assert_eq!(mask("call (555) 123-4567"), "call (•••) •••-••67");
        assert_eq!(mask("from 203.0.113.7 and 2001:db8::1"), "from pseu:h(203.0.113.7) and pseu:h(2001:db8::1)");
        assert_eq!(mask("version 1.2.3.400 build"), "version 1.2.3.400 build", "not an address");
        assert_eq!(mask("order 2026-11-26 at 10:45"), "order 2026-11-26 at 10:45", "dates and times stay");
    }

    #[test]
    fn events_are_masked_in_header_fields_and_details_and_keep_originals_when_told() {
        let mut e: Event = serde_json::from_value(serde_json::json!({
            "id": "0192f0c4-e4b0-7c3a-8e5f-1a2b3c4d5e6f", "occurred_at_us": 1, "category": "authentication",
            "action": "user.login", "outcome": "failure", "severity": "info",
            "actor": {"id": "ada@example.org", "kind": "user", "ip": "203.0.113.7"},
            "source": {"channel": "api"},
            "details": {"password": "hunter2", "nested": {"auth_token": "abc", "note": "card 4111-1111-1111-1111"}, "list": ["x@y.io"]}
        }))
        .unwrap();
        let originals = masker().mask_event(&mut e, &p);
        assert_eq!(e.actor.id, "pseu:h(ada@example.org)");
        assert_eq!(e.actor.ip.as_deref(), Some("pseu:h(203.0.113.7)"));
        let d = e.details.unwrap();
        assert_eq!(d["password"], "[secret]");
        assert_eq!(d["nested"]["auth_token"], "[secret]");
        assert_eq!(d["nested"]["note"], "card ••••-••••-••••-1111");
        assert_eq!(d["list"][0], "pseu:h(x@y.io)");
        assert_eq!(originals.get("actor.id").map(String::as_str), Some("ada@example.org"));
        assert!(!originals.contains_key("details.password"), "secrets are never kept");
        assert!(!originals.contains_key("details.nested.note"), "the card rule keeps no original");
    }

    #[test]
    fn rule_lists_are_checked() {
        let mut rules = default_rules();
        rules.push(rules[0].clone());
        assert!(check_rules(&rules).unwrap_err().0.contains("second rule"));
        let bad = vec![MaskRule {
            detector: Detector::SecretKey,
            action: MaskAction::Pseudonymize,
            keep_original: false,
            enabled: true,
        }];
        assert!(check_rules(&bad).is_err());
        let secret =
            MaskRule { detector: Detector::SecretKey, action: MaskAction::Redact, keep_original: false, enabled: true };
        let off = vec![
            secret.clone(),
            MaskRule { detector: Detector::Email, action: MaskAction::Redact, keep_original: false, enabled: false },
        ];
        assert_eq!(Masker::new(off).unwrap().mask_text("a@b.co", &p).0, "a@b.co", "disabled rules do nothing");
        // The secret-key rule can be neither kept, nor turned off, nor left out.
        let kept = vec![MaskRule { keep_original: true, ..secret.clone() }];
        assert!(check_rules(&kept).unwrap_err().0.contains("keep_original"));
        let disabled = vec![MaskRule { enabled: false, ..secret.clone() }];
        assert!(check_rules(&disabled).unwrap_err().0.contains("cannot be turned off"));
        assert!(check_rules(&[]).unwrap_err().0.contains("secret-key rule"));
        assert!(check_rules(&[secret]).is_ok());
        // A policy stored before the rule was required still never keeps a secret.
        let old = vec![MaskRule { keep_original: true, enabled: false, ..SECRET_RULE }];
        let m = Masker::new(old).unwrap();
        assert_eq!(m.rules(), &[SECRET_RULE]);
        let m = Masker::new(vec![]).unwrap();
        assert_eq!(m.rules(), &[SECRET_RULE], "and one without it gets it");
    }

    #[test]
    fn a_session_id_is_stored_as_a_keyed_pseudonym_and_never_kept() {
        let masker = Masker::new(default_rules()).unwrap();
        let mut e: Event = serde_json::from_value(serde_json::json!({
            "id": "0192f0c4-e4b0-7c3a-8e5f-1a2b3c4d5e6f", "occurred_at_us": 1, "category": "authentication",
            "action": "user.login", "outcome": "success", "severity": "info",
            "actor": {"id": "u1", "kind": "user", "session_id": "s3cr3t-session"},
            "source": {"channel": "api"}
        }))
        .unwrap();
        let keyed = |v: &str| format!("k{}", v.len());
        let originals = masker.mask_event(&mut e, &keyed);
        let sid = e.actor.session_id.clone().unwrap();
        assert!(sid.starts_with("sid:") && !sid.contains("s3cr3t"), "{sid}");
        assert!(!originals.values().any(|v| v.contains("s3cr3t")), "{originals:?}");
    }
}
