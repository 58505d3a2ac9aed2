//! The notifications policy's document: channels (where messages go),
//! routes (which alerts go to which channels) and message templates.
//!
//! ```json
//! {"channels": [
//!    {"id": "secops", "name": "SecOps mail", "type": "email", "to": ["secops@example.org"],
//!     "from": "custos@example.org", "smtp_host": "mail.example.org", "smtp_port": 587,
//!     "smtp_tls": "starttls", "smtp_username": "custos", "smtp_password": {"sealed": "…"}},
//!    {"id": "soar", "name": "SOAR", "type": "webhook", "url": "https://soar.example.org/hooks/custos",
//!     "secret": {"sealed": "…"}},
//!    {"id": "chat", "name": "#security", "type": "slack", "secret": {"sealed": "…"}}],
//!  "routes": [{"rules": ["*"], "min_severity": "warning", "channels": ["secops", "soar"]}]}
//! ```
//!
//! Secrets (an SMTP password, a webhook's signing secret, a chat's
//! incoming-webhook URL, which is itself the credential) are given once as
//! `{"value": "…"}`, sealed under the KEK before anything is stored or
//! recorded (bound to the channel's id: a sealed secret copied to another
//! channel does not open), and shown afterwards only as `{"sealed": "…",
//! "hint": "…last 4"}`.

use std::collections::BTreeSet;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::events::validate::FieldError;
use crate::ledger::Ledger;

/// Channel types.
pub const TYPES: [&str; 5] = ["email", "webhook", "slack", "teams", "mattermost"];
/// Most channels, routes, recipients.
const MAX_CHANNELS: usize = 50;
const MAX_ROUTES: usize = 100;
const MAX_TO: usize = 20;

/// A secret: given as `value`, stored as `sealed` (with a hint).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secret {
    /// The clear value, only in a proposal as sent (sealed before storing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Sealed under the KEK (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
    /// The last four characters, for people to tell secrets apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// Where messages go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelDef {
    /// Stable id, `[a-z0-9_-]+`.
    pub id: String,
    /// For people.
    pub name: String,
    /// Sends.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `email`, `webhook`, `slack`, `teams` or `mattermost`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A webhook's URL (http or https).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A webhook's signing secret; a chat's incoming-webhook URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// E-mail recipients.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
    /// E-mail sender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// SMTP server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_host: Option<String>,
    /// SMTP port (default 587 for STARTTLS, 465 for TLS, 25 without).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_port: Option<u16>,
    /// `starttls` (default), `tls` or `none` (only for a relay on this
    /// host or a test sink).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_tls: Option<String>,
    /// SMTP user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_username: Option<String>,
    /// SMTP password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_password: Option<Secret>,
    /// The subject (e-mail) template; see [`render`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The text template; see [`render`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

fn yes() -> bool {
    true
}

/// Which alerts go to which channels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteDef {
    /// Rule ids, or `*` for every rule.
    pub rules: Vec<String>,
    /// The least severity sent (default: every severity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<String>,
    /// Channel ids.
    pub channels: Vec<String>,
}

/// The document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationsDoc {
    /// The channels, ids unique.
    #[serde(default)]
    pub channels: Vec<ChannelDef>,
    /// The routes.
    #[serde(default)]
    pub routes: Vec<RouteDef>,
}

fn bad(path: String, reason: impl Into<String>) -> FieldError {
    FieldError { path, reason: reason.into() }
}

fn is_http_url(u: &str) -> bool {
    (u.starts_with("https://") || u.starts_with("http://"))
        && u.len() <= 2048
        && reqwest::Url::parse(u)
            .is_ok_and(|p| p.host_str().is_some() && p.username().is_empty() && p.password().is_none())
}

/// A host name that is this machine.
fn is_loopback_host(h: &str) -> bool {
    h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

pub(crate) fn is_mail(a: &str) -> bool {
    let a = a.trim();
    a.len() <= 254 && a.split_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.contains('@'))
}

impl NotificationsDoc {
    /// Parses a document; the first bad channel or route is named.
    pub fn parse(doc: &Value) -> Result<NotificationsDoc, FieldError> {
        serde_json::from_value(doc.clone()).map_err(|e| {
            for list in ["channels", "routes"] {
                if let Some(items) = doc.get(list).and_then(Value::as_array) {
                    for (i, item) in items.iter().enumerate() {
                        let err = if list == "channels" {
                            serde_json::from_value::<ChannelDef>(item.clone()).err()
                        } else {
                            serde_json::from_value::<RouteDef>(item.clone()).err()
                        };
                        if let Some(e) = err {
                            return bad(format!("content.{list}[{i}]"), crate::forward::dest::scrub(&e.to_string()));
                        }
                    }
                }
            }
            bad(
                "content".into(),
                format!("not a notifications policy ({{\"channels\": [...], \"routes\": [...]}}): {e}"),
            )
        })
    }

    /// Checks it; with `sealed_only`, a secret still in clear is refused
    /// (what is stored never holds one).
    pub fn check(&self, sealed_only: bool) -> Result<(), FieldError> {
        if self.channels.len() > MAX_CHANNELS {
            return Err(bad("content.channels".into(), format!("at most {MAX_CHANNELS} channels")));
        }
        if self.routes.len() > MAX_ROUTES {
            return Err(bad("content.routes".into(), format!("at most {MAX_ROUTES} routes")));
        }
        let mut ids = BTreeSet::new();
        for (i, c) in self.channels.iter().enumerate() {
            let at = |f: &str| format!("content.channels[{i}].{f}");
            if c.id.is_empty()
                || c.id.len() > 64
                || !c.id.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_' || ch == '-')
            {
                return Err(bad(at("id"), "1 to 64 characters: a-z, 0-9, _ and -"));
            }
            if !ids.insert(c.id.as_str()) {
                return Err(bad(at("id"), format!("`{}` is used by another channel", c.id)));
            }
            if c.name.trim().is_empty() || c.name.chars().count() > 200 {
                return Err(bad(at("name"), "1 to 200 characters"));
            }
            let secret_ok =
                |s: &Option<Secret>, f: &str, required: bool| check_secret(s, at(f), required, sealed_only, 4096);
            for (f, v) in [("subject", &c.subject), ("body", &c.body)] {
                if v.as_ref().is_some_and(|t| t.chars().count() > 4000) {
                    return Err(bad(at(f), "at most 4,000 characters"));
                }
            }
            match c.kind.as_str() {
                "webhook" => {
                    match &c.url {
                        Some(u) if is_http_url(u) => {}
                        _ => {
                            return Err(bad(
                                at("url"),
                                "an http:// or https:// URL, without a user name or password in it",
                            ));
                        }
                    }
                    secret_ok(&c.secret, "secret", true)?;
                    if let Some(Secret { value: Some(v), .. }) = &c.secret
                        && v.len() < 16
                    {
                        return Err(bad(at("secret"), "at least 16 characters (it signs every message)"));
                    }
                }
                "slack" | "teams" | "mattermost" => {
                    if c.url.is_some() {
                        return Err(bad(at("url"), "an incoming-webhook URL is a credential: give it as `secret`"));
                    }
                    secret_ok(&c.secret, "secret", true)?;
                    if let Some(Secret { value: Some(v), .. }) = &c.secret
                        && !is_http_url(v)
                    {
                        return Err(bad(at("secret"), "the incoming-webhook URL (https://…)"));
                    }
                }
                "email" => {
                    if c.to.is_empty() || c.to.len() > MAX_TO {
                        return Err(bad(at("to"), format!("1 to {MAX_TO} addresses")));
                    }
                    if let Some((j, a)) = c.to.iter().enumerate().find(|(_, a)| !is_mail(a)) {
                        return Err(bad(
                            format!("content.channels[{i}].to[{j}]"),
                            format!("`{a}` is not an e-mail address"),
                        ));
                    }
                    if !c.from.as_deref().is_some_and(is_mail) {
                        return Err(bad(at("from"), "the sender's e-mail address"));
                    }
                    match &c.smtp_host {
                        Some(h) if !h.is_empty() && h.len() <= 253 && !h.contains(['/', ' ', ':']) => {}
                        _ => return Err(bad(at("smtp_host"), "the SMTP server's host name")),
                    }
                    if c.smtp_port == Some(0) {
                        return Err(bad(at("smtp_port"), "1 to 65535"));
                    }
                    if !matches!(c.smtp_tls.as_deref(), None | Some("starttls" | "tls" | "none")) {
                        return Err(bad(at("smtp_tls"), "starttls, tls or none"));
                    }
                    if c.smtp_password.is_some() && c.smtp_username.is_none() {
                        return Err(bad(at("smtp_username"), "required with a password"));
                    }
                    if c.smtp_tls.as_deref() == Some("none")
                        && c.smtp_username.is_some()
                        && !c.smtp_host.as_deref().is_some_and(is_loopback_host)
                    {
                        return Err(bad(
                            at("smtp_tls"),
                            "a password is only sent without TLS to a relay on this host (localhost, 127.0.0.1, ::1)",
                        ));
                    }
                    secret_ok(&c.smtp_password, "smtp_password", false)?;
                }
                other => {
                    return Err(bad(at("type"), format!("`{other}`: one of {}", TYPES.join(", "))));
                }
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            let at = |f: &str| format!("content.routes[{i}].{f}");
            if r.rules.is_empty() {
                return Err(bad(at("rules"), "rule ids, or [\"*\"] for every rule"));
            }
            if r.channels.is_empty() {
                return Err(bad(at("channels"), "at least one channel"));
            }
            if let Some((j, c)) = r.channels.iter().enumerate().find(|(_, c)| !ids.contains(c.as_str())) {
                return Err(bad(format!("content.routes[{i}].channels[{j}]"), format!("no channel `{c}`")));
            }
            if let Some(s) = &r.min_severity
                && !custos_model::SEVERITIES.contains(&s.as_str())
            {
                return Err(bad(at("min_severity"), format!("one of {}", custos_model::SEVERITIES.join(", "))));
            }
        }
        Ok(())
    }

    /// The enabled channels an alert of `rule` at `severity` goes to.
    pub fn route(&self, rule: &str, severity: &str) -> Vec<&ChannelDef> {
        let rank = |s: &str| custos_model::SEVERITIES.iter().position(|x| *x == s).unwrap_or(0);
        let mut out: Vec<&ChannelDef> = Vec::new();
        for r in &self.routes {
            let rule_ok = r.rules.iter().any(|x| x == "*" || x == rule);
            let sev_ok = r.min_severity.as_deref().is_none_or(|m| rank(severity) >= rank(m));
            if rule_ok && sev_ok {
                for id in &r.channels {
                    if let Some(c) = self.channels.iter().find(|c| &c.id == id && c.enabled)
                        && !out.iter().any(|o| o.id == c.id)
                    {
                        out.push(c);
                    }
                }
            }
        }
        out
    }
}

/// Checks a secret field at `path`: present when `required`, given as
/// `{"value": …}` of 1 to `max` bytes (refused in clear when `sealed_only`:
/// what is stored never holds one) or already sealed.
pub(crate) fn check_secret(
    s: &Option<Secret>,
    path: String,
    required: bool,
    sealed_only: bool,
    max: usize,
) -> Result<(), FieldError> {
    match s {
        None if required => Err(bad(path, "required")),
        None => Ok(()),
        Some(Secret { value: Some(_), .. }) if sealed_only => {
            Err(bad(path, "a secret in clear cannot be stored: propose it as {\"value\": …}"))
        }
        Some(Secret { value: Some(v), .. }) if v.is_empty() || v.len() > max => {
            Err(bad(path, format!("1 to {max} bytes")))
        }
        Some(Secret { value: None, sealed: None, .. }) => Err(bad(path, "give the secret as {\"value\": \"…\"}")),
        Some(_) => Ok(()),
    }
}

/// What a channel's secret is bound to when sealed: the channel's id and
/// type, the field, and where the secret is sent (a webhook's URL; an SMTP
/// server, port, user and encryption). A sealed secret copied to another
/// channel, or left in place while its destination changes, does not open:
/// whoever changes where a secret goes must give it again.
fn binding(c: &ChannelDef, field: &str) -> u64 {
    let destination = match (c.kind.as_str(), field) {
        ("webhook", _) => c.url.clone().unwrap_or_default(),
        ("email", _) => format!(
            "{}|{}|{}|{}",
            c.smtp_host.as_deref().unwrap_or_default(),
            c.smtp_port.unwrap_or(0),
            c.smtp_username.as_deref().unwrap_or_default(),
            c.smtp_tls.as_deref().unwrap_or("starttls")
        ),
        _ => String::new(),
    };
    binding_of(&format!("{}\n{}\n{field}\n{destination}", c.id, c.kind))
}

const PURPOSE: &str = "notification";

/// Seals a secret given in clear under the KEK for `purpose`, bound to
/// `binding`; a secret already sealed must open there (else `path` is
/// named: give it again).
pub(crate) fn seal_secret(
    ledger: &Ledger,
    purpose: &str,
    binding: u64,
    secret: &mut Secret,
    path: String,
) -> Result<(), FieldError> {
    match secret.value.take() {
        Some(v) => {
            let sealed = ledger
                .keys()
                .seal_secret(purpose, binding, v.as_bytes(), &crate::clock::OsRandom)
                .map_err(|e| bad(path, format!("cannot be sealed: {e}")))?;
            // A hint only for secrets long enough to keep most of them
            // hidden.
            let n = v.chars().count();
            let hint = if n >= 16 {
                let tail: String = v.chars().skip(n - 4).collect();
                format!("…{tail}")
            } else {
                "…".into()
            };
            *secret = Secret {
                value: None,
                sealed: Some(base64::engine::general_purpose::STANDARD.encode(sealed)),
                hint: Some(hint),
            };
            Ok(())
        }
        None if open_secret(ledger, purpose, binding, secret).is_err() => Err(bad(
            path,
            "this sealed secret does not belong here (what it is for or where it is sent changed): give it again \
             as {\"value\": …}",
        )),
        None => Ok(()),
    }
}

/// Opens a sealed secret (see [`seal_secret`]).
pub(crate) fn open_secret(
    ledger: &Ledger,
    purpose: &str,
    binding: u64,
    secret: &Secret,
) -> Result<zeroize::Zeroizing<String>, String> {
    let sealed = secret.sealed.as_deref().ok_or("the secret is not sealed")?;
    let raw = base64::engine::general_purpose::STANDARD.decode(sealed).map_err(|_| "the sealed secret is damaged")?;
    let clear = ledger.keys().open_secret(purpose, binding, &raw).map_err(
        |_| "the sealed secret does not open (sealed for another channel or destination, or under another KEK)",
    )?;
    String::from_utf8(clear.to_vec()).map(zeroize::Zeroizing::new).map_err(|_| "the sealed secret is damaged".into())
}

/// A binding of a secret: the digest of what it is bound to.
pub(crate) fn binding_of(what: &str) -> u64 {
    let d = Sha256::digest(what.as_bytes());
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// Seals every secret given in clear (bound to its channel and
/// destination), and checks that the ones already sealed still open where
/// they are (else the field is named: give the secret again).
pub fn seal_all(ledger: &Ledger, doc: &mut NotificationsDoc) -> Result<(), FieldError> {
    for (i, c) in doc.channels.iter_mut().enumerate() {
        let bound = c.clone();
        for (f, s) in [("secret", &mut c.secret), ("smtp_password", &mut c.smtp_password)] {
            let Some(secret) = s else { continue };
            seal_secret(ledger, PURPOSE, binding(&bound, f), secret, format!("content.channels[{i}].{f}"))?;
        }
    }
    Ok(())
}

/// Opens a channel's sealed secret (`field`: `secret` or `smtp_password`).
pub fn open(
    ledger: &Ledger,
    c: &ChannelDef,
    field: &str,
    secret: &Secret,
) -> Result<zeroize::Zeroizing<String>, String> {
    open_secret(ledger, PURPOSE, binding(c, field), secret)
}

/// Fills a template: `{rule}`, `{rule_id}`, `{severity}`, `{group}`,
/// `{matches}`, `{status}`, `{opened_at}`, `{link}` (the alert's events in
/// the explorer) and `{alert_id}`; other text is kept as written.
pub fn render(template: &str, alert: &custos_model::Alert, link: &str) -> String {
    let group = if alert.group.is_empty() {
        "all events".to_owned()
    } else {
        alert.group.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
    };
    template
        .replace("{rule}", &alert.rule_name)
        .replace("{rule_id}", &alert.rule_id)
        .replace("{severity}", &alert.severity)
        .replace("{group}", &group)
        .replace("{matches}", &alert.matches.to_string())
        .replace("{status}", alert.status.as_str())
        .replace("{opened_at}", &alert.opened_at)
        .replace("{alert_id}", &alert.id)
        .replace("{link}", link)
}

/// The subject when a channel sets none.
pub const DEFAULT_SUBJECT: &str = "[Custos] {severity}: {rule} ({group})";
/// The text when a channel sets none.
pub const DEFAULT_BODY: &str =
    "{rule}\nSeverity: {severity}\nFor: {group}\nMatches: {matches}\nOpened: {opened_at}\nIts events: {link}";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documents_are_checked_field_by_field() {
        let ok = json!({
            "channels": [
                {"id": "mail", "name": "Mail", "type": "email", "to": ["a@example.org"], "from": "c@example.org",
                 "smtp_host": "localhost", "smtp_port": 2525, "smtp_tls": "none"},
                {"id": "hook", "name": "Hook", "type": "webhook", "url": "https://h.example.org/x",
                 "secret": {"value": "0123456789abcdef"}},
                {"id": "chat", "name": "Chat", "type": "slack", "secret": {"value": "https://hooks.slack.com/services/T/B/X"}}
            ],
            "routes": [{"rules": ["*"], "min_severity": "warning", "channels": ["mail", "hook"]},
                       {"rules": ["brute_force"], "channels": ["chat"]}]
        });
        let d = NotificationsDoc::parse(&ok).unwrap();
        d.check(false).unwrap();
        assert_eq!(d.check(true).unwrap_err().path, "content.channels[1].secret", "clear secrets are not stored");
        assert_eq!(
            d.route("brute_force", "warning").iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            ["mail", "hook", "chat"]
        );
        assert_eq!(d.route("other", "notice").len(), 0, "below the route's least severity");
        let bad = |patch: &dyn Fn(&mut Value), path: &str| {
            let mut v = ok.clone();
            patch(&mut v);
            let err = NotificationsDoc::parse(&v).and_then(|d| d.check(false)).unwrap_err();
            assert_eq!(err.path, path, "{}", err.reason);
        };
        bad(&|v| v["channels"][0]["to"] = json!(["nobody"]), "content.channels[0].to[0]");
        bad(&|v| v["channels"][0]["smtp_tls"] = json!("ssl"), "content.channels[0].smtp_tls");
        bad(&|v| v["channels"][1]["url"] = json!("ftp://x"), "content.channels[1].url");
        bad(&|v| v["channels"][1]["secret"] = json!({"value": "short"}), "content.channels[1].secret");
        bad(&|v| v["channels"][2]["url"] = json!("https://x.example.org"), "content.channels[2].url");
        bad(&|v| v["channels"][2]["type"] = json!("pager"), "content.channels[2].type");
        bad(&|v| v["channels"][2]["id"] = json!("mail"), "content.channels[2].id");
        bad(&|v| v["channels"][2]["colour"] = json!("red"), "content.channels[2]");
        bad(&|v| v["routes"][0]["channels"] = json!(["nope"]), "content.routes[0].channels[0]");
        bad(&|v| v["routes"][0]["min_severity"] = json!("loud"), "content.routes[0].min_severity");
    }

    #[test]
    fn templates_fill_the_alerts_fields() {
        let a: custos_model::Alert = serde_json::from_value(json!({
            "id": "a1", "rule_id": "brute_force", "rule_name": "Brute force", "severity": "warning",
            "group": {"actor": "mallory"}, "status": "open", "matches": 6, "seqs": [1], "opened_at": "2027-01-15T08:00:00Z",
            "last_at": "2027-01-15T08:00:00Z", "opened_seq": 9, "rules_version": 0, "explore": "actor=mallory", "history": []
        }))
        .unwrap();
        assert_eq!(render(DEFAULT_SUBJECT, &a, ""), "[Custos] warning: Brute force (actor mallory)");
        assert!(
            render(DEFAULT_BODY, &a, "https://custos/events?actor=mallory")
                .ends_with("Its events: https://custos/events?actor=mallory")
        );
    }
}
