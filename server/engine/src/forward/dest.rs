//! The forwarding policy's document: the destinations events are pushed
//! to.
//!
//! ```json
//! {"destinations": [
//!    {"id": "siem", "name": "QRadar", "type": "syslog", "format": "leef",
//!     "host": "qradar.example.org", "port": 6514, "transport": "tls", "ca_pem": "-----BEGIN CERTIFICATE-----…"},
//!    {"id": "splunk", "name": "Splunk", "type": "splunk_hec", "format": "json",
//!     "url": "https://splunk.example.org:8088", "token": {"sealed": "…"}, "hec_ack": true,
//!     "filter": "category=authentication&outcome=failure"},
//!    {"id": "vector", "name": "Vector", "type": "webhook", "format": "ecs", "url": "https://vector:8080/custos",
//!     "body": "ndjson", "gzip": true, "auth": "hmac", "secret": {"sealed": "…"}}]}
//! ```
//!
//! Secrets (a HEC token, a webhook's bearer token or signing secret, a
//! syslog client certificate's private key) are sealed under the KEK before
//! anything is stored or recorded, bound to the destination's id, type,
//! field and where it sends (a secret copied to another destination, or
//! left while its address changes, does not open).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::format::FORMATS;
use crate::events::SearchFilter;
use crate::events::validate::FieldError;
use crate::ledger::Ledger;
use crate::notify::channels::{Secret, binding_of, check_secret, open_secret, seal_secret};

/// Destination types.
pub const TYPES: [&str; 3] = ["syslog", "splunk_hec", "webhook"];
const MAX_DESTINATIONS: usize = 20;
const PURPOSE: &str = "forwarding";
/// The parameters of the explorer's filter a destination may use.
pub use crate::events::search::FILTER_PARAMETERS;

/// One destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationDef {
    /// Stable id, `[a-z0-9_-]+` (its cursor and lease are keyed by it).
    pub id: String,
    /// For people.
    pub name: String,
    /// Forwards (a destination turned off keeps its cursor).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `syslog`, `splunk_hec` or `webhook`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `json`, `cef`, `leef`, `ocsf` or `ecs`.
    #[serde(default = "json_format")]
    pub format: String,
    /// Which events: the explorer's filter (`category=authentication&outcome=failure`);
    /// every event when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Events per batch (1-1,000; default 500).
    #[serde(default = "default_batch")]
    pub batch_size: u32,
    /// The least time between two batches that are not full (0-60,000 ms;
    /// default 200): events arriving meanwhile go together.
    #[serde(default = "default_interval")]
    pub batch_interval_ms: u32,
    /// Where a new destination starts: `now` (default: the events committed
    /// from the first time it runs on) or `beginning` (the whole ledger).
    /// A destination removed and added again under the same id resumes at
    /// its cursor instead.
    #[serde(default = "default_start")]
    pub start: String,
    /// Also send every signed checkpoint (default on).
    #[serde(default = "yes")]
    pub checkpoints: bool,
    // --- syslog ---
    /// Syslog host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Syslog port (default 6514 with TLS, 514 otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `tls` (default), `tcp` or `udp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// The CA (PEM) the syslog server's certificate must chain to; the
    /// system's roots when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// The name the server's certificate must carry (default: `host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// A client certificate chain (PEM) for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_pem: Option<String>,
    /// Its private key (PEM), sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<Secret>,
    /// The largest UDP datagram (default 2,048 bytes, at most 65,000):
    /// longer messages are cut there (and counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_max_bytes: Option<u32>,
    /// The HOSTNAME field of the messages (default: this machine's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    // --- HEC and webhook ---
    /// HEC: the collector's base URL (`https://splunk:8088`); webhook: the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// HEC token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// HEC channel (a UUID; default: one derived from the id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hec_channel: Option<String>,
    /// HEC: wait for indexer acknowledgement before a batch counts as
    /// delivered.
    #[serde(default)]
    pub hec_ack: bool,
    /// HEC index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// HEC sourcetype (default `custos:audit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sourcetype: Option<String>,
    /// Webhook body: `json_array` (default) or `ndjson`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Webhook and HEC: gzip the body.
    #[serde(default)]
    pub gzip: bool,
    /// Webhook authentication: `none`, `bearer` or `hmac` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    /// Webhook bearer token or signing secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
}

fn yes() -> bool {
    true
}
fn json_format() -> String {
    "json".into()
}
fn default_batch() -> u32 {
    500
}
fn default_interval() -> u32 {
    200
}
fn default_start() -> String {
    "now".into()
}

/// The document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardingDoc {
    /// The destinations, ids unique.
    #[serde(default)]
    pub destinations: Vec<DestinationDef>,
}

fn bad(path: String, reason: impl Into<String>) -> FieldError {
    FieldError { path, reason: reason.into() }
}

fn is_url(u: &str, https_only: bool) -> bool {
    (u.starts_with("https://") || (!https_only && u.starts_with("http://")))
        && u.len() <= 2048
        && reqwest::Url::parse(u)
            .is_ok_and(|p| p.host_str().is_some() && p.username().is_empty() && p.password().is_none())
}

/// A URL to this machine.
fn loopback_url(u: &str) -> bool {
    reqwest::Url::parse(u).ok().and_then(|p| p.host_str().map(str::to_owned)).is_some_and(|h| {
        let h = h.trim_start_matches('[').trim_end_matches(']');
        h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    })
}

/// A parser's message without the values it quotes (a secret given in the
/// wrong shape must not come back in the error).
pub fn scrub(message: &str) -> String {
    static QUOTED: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    match QUOTED.get_or_init(|| regex::Regex::new(r#"(string|value) "(?:[^"\\]|\\.)*""#).ok()) {
        Some(re) => re.replace_all(message, "$1 (not shown)").into_owned(),
        None => "a value is not of the expected shape".into(),
    }
}

fn is_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_'))
}

impl DestinationDef {
    /// The syslog transport.
    pub fn transport(&self) -> &str {
        self.transport.as_deref().unwrap_or("tls")
    }

    /// The syslog port.
    pub fn syslog_port(&self) -> u16 {
        self.port.unwrap_or(if self.transport() == "tls" { 6514 } else { 514 })
    }

    /// The events it takes, as a search filter.
    pub fn search_filter(&self) -> Result<SearchFilter, FieldError> {
        crate::events::search::filter_of_query(self.filter.as_deref().unwrap_or(""), "filter")
    }

    /// Where and how it sends, for the secrets' binding: a secret opens
    /// only where it was given (the address, the TLS trust, the way a
    /// webhook uses it).
    fn address(&self) -> String {
        match self.kind.as_str() {
            "syslog" => format!(
                "{}:{}:{}\n{}\n{}\n{}",
                self.host.as_deref().unwrap_or(""),
                self.syslog_port(),
                self.transport(),
                self.server_name.as_deref().unwrap_or(""),
                self.ca_pem.as_deref().unwrap_or(""),
                self.client_cert_pem.as_deref().unwrap_or("")
            ),
            "webhook" => format!("{}\n{}", self.url.as_deref().unwrap_or(""), self.auth.as_deref().unwrap_or("hmac")),
            _ => self.url.clone().unwrap_or_default(),
        }
    }

    fn binding(&self, field: &str) -> u64 {
        binding_of(&format!("{}\n{}\n{field}\n{}", self.id, self.kind, self.address()))
    }

    /// Opens a sealed secret of this destination (`token`, `secret`,
    /// `client_key`).
    pub fn open(&self, ledger: &Ledger, field: &str) -> Result<zeroize::Zeroizing<String>, String> {
        let s = match field {
            "token" => &self.token,
            "secret" => &self.secret,
            _ => &self.client_key,
        };
        let s = s.as_ref().ok_or_else(|| format!("no {field}"))?;
        open_secret(ledger, PURPOSE, self.binding(field), s)
    }
}

impl ForwardingDoc {
    /// Parses a document; the first bad destination is named.
    pub fn parse(doc: &Value) -> Result<ForwardingDoc, FieldError> {
        serde_json::from_value(doc.clone()).map_err(|e| {
            if let Some(items) = doc.get("destinations").and_then(Value::as_array) {
                for (i, item) in items.iter().enumerate() {
                    if let Err(e) = serde_json::from_value::<DestinationDef>(item.clone()) {
                        return bad(format!("content.destinations[{i}]"), scrub(&e.to_string()));
                    }
                }
            }
            bad(
                "content".into(),
                format!("not a forwarding policy ({{\"destinations\": [...]}}): {}", scrub(&e.to_string())),
            )
        })
    }

    /// Checks it; with `sealed_only`, a secret still in clear is refused.
    pub fn check(&self, sealed_only: bool) -> Result<(), FieldError> {
        if self.destinations.len() > MAX_DESTINATIONS {
            return Err(bad("content.destinations".into(), format!("at most {MAX_DESTINATIONS} destinations")));
        }
        let mut ids = BTreeSet::new();
        for (i, d) in self.destinations.iter().enumerate() {
            let at = |f: &str| format!("content.destinations[{i}].{f}");
            if d.id.is_empty()
                || d.id.len() > 64
                || !d.id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
            {
                return Err(bad(at("id"), "1 to 64 characters: a-z, 0-9, _ and -"));
            }
            if !ids.insert(d.id.as_str()) {
                return Err(bad(at("id"), format!("`{}` is used by another destination", d.id)));
            }
            if d.name.trim().is_empty() || d.name.chars().count() > 200 {
                return Err(bad(at("name"), "1 to 200 characters"));
            }
            if !FORMATS.contains(&d.format.as_str()) {
                return Err(bad(at("format"), format!("one of {}", FORMATS.join(", "))));
            }
            if d.filter.as_ref().is_some_and(|f| f.len() > 2000) {
                return Err(bad(at("filter"), "at most 2,000 characters"));
            }
            d.search_filter().map_err(|e| bad(at("filter"), e.reason))?;
            if !(1..=1000).contains(&d.batch_size) {
                return Err(bad(at("batch_size"), "1 to 1,000 events"));
            }
            if d.batch_interval_ms > 60_000 {
                return Err(bad(at("batch_interval_ms"), "0 to 60,000 ms"));
            }
            if !matches!(d.start.as_str(), "now" | "beginning") {
                return Err(bad(at("start"), "now or beginning"));
            }
            let secret_ok =
                |s: &Option<Secret>, f: &str, required: bool| check_secret(s, at(f), required, sealed_only, 16_384);
            let unused = |f: &str, set: bool| -> Result<(), FieldError> {
                if set { Err(bad(at(f), format!("not used by a {} destination", d.kind))) } else { Ok(()) }
            };
            match d.kind.as_str() {
                "syslog" => {
                    if !d.host.as_deref().is_some_and(is_host) {
                        return Err(bad(at("host"), "the syslog server's host name or address"));
                    }
                    if d.port == Some(0) {
                        return Err(bad(at("port"), "1 to 65535"));
                    }
                    if !matches!(d.transport(), "tls" | "tcp" | "udp") {
                        return Err(bad(at("transport"), "tls, tcp or udp"));
                    }
                    for (f, v) in [("ca_pem", &d.ca_pem), ("client_cert_pem", &d.client_cert_pem)] {
                        if let Some(p) = v
                            && (!p.contains("-----BEGIN CERTIFICATE-----") || p.len() > 65_536)
                        {
                            return Err(bad(at(f), "PEM certificates (-----BEGIN CERTIFICATE-----), at most 64 KiB"));
                        }
                    }
                    if d.transport() != "tls" {
                        unused("ca_pem", d.ca_pem.is_some())?;
                        unused("client_cert_pem", d.client_cert_pem.is_some())?;
                    }
                    if d.client_cert_pem.is_some() != d.client_key.is_some() {
                        return Err(bad(at("client_key"), "a client certificate and its key go together"));
                    }
                    secret_ok(&d.client_key, "client_key", false)?;
                    if let Some(Secret { value: Some(v), .. }) = &d.client_key
                        && !v.contains("PRIVATE KEY-----")
                    {
                        return Err(bad(at("client_key"), "the private key in PEM (-----BEGIN PRIVATE KEY-----)"));
                    }
                    if let Some(n) = d.udp_max_bytes
                        && !(480..=65_000).contains(&n)
                    {
                        return Err(bad(at("udp_max_bytes"), "480 to 65,000 bytes"));
                    }
                    if d.hostname.as_ref().is_some_and(|h| !is_host(h)) {
                        return Err(bad(at("hostname"), "a host name (letters, digits, . and -)"));
                    }
                    for (f, set) in
                        [("url", d.url.is_some()), ("token", d.token.is_some()), ("secret", d.secret.is_some())]
                    {
                        unused(f, set)?;
                    }
                }
                "splunk_hec" => {
                    if d.url.as_deref().is_some_and(|u| u.starts_with("http://") && !loopback_url(u)) {
                        return Err(bad(
                            at("url"),
                            "https:// (the token must not cross the network in clear); http:// only to this host",
                        ));
                    }
                    if !d.url.as_deref().is_some_and(|u| is_url(u, false)) {
                        return Err(bad(
                            at("url"),
                            "the collector's base URL (https://splunk.example.org:8088), without credentials",
                        ));
                    }
                    secret_ok(&d.token, "token", true)?;
                    if let Some(c) = &d.hec_channel
                        && uuid::Uuid::parse_str(c).is_err()
                    {
                        return Err(bad(at("hec_channel"), "a UUID"));
                    }
                    for (f, v) in [("index", &d.index), ("sourcetype", &d.sourcetype)] {
                        if v.as_ref().is_some_and(|s| s.is_empty() || s.len() > 200) {
                            return Err(bad(at(f), "1 to 200 characters"));
                        }
                    }
                    for (f, set) in
                        [("host", d.host.is_some()), ("secret", d.secret.is_some()), ("body", d.body.is_some())]
                    {
                        unused(f, set)?;
                    }
                }
                "webhook" => {
                    if !d.url.as_deref().is_some_and(|u| is_url(u, false)) {
                        return Err(bad(at("url"), "an http:// or https:// URL, without credentials"));
                    }
                    if !matches!(d.body.as_deref(), None | Some("json_array" | "ndjson")) {
                        return Err(bad(at("body"), "json_array or ndjson"));
                    }
                    match d.auth.as_deref().unwrap_or("hmac") {
                        "none" => unused("secret", d.secret.is_some())?,
                        "bearer" if d.url.as_deref().is_some_and(|u| u.starts_with("http://") && !loopback_url(u)) => {
                            return Err(bad(
                                at("url"),
                                "https:// with a bearer token (it must not cross the network in clear); http:// only to this host",
                            ));
                        }
                        "bearer" | "hmac" => {
                            secret_ok(&d.secret, "secret", true)?;
                            if let Some(Secret { value: Some(v), .. }) = &d.secret
                                && v.len() < 16
                            {
                                return Err(bad(at("secret"), "at least 16 characters"));
                            }
                        }
                        _ => return Err(bad(at("auth"), "none, bearer or hmac")),
                    }
                    for (f, set) in [("host", d.host.is_some()), ("token", d.token.is_some())] {
                        unused(f, set)?;
                    }
                }
                other => return Err(bad(at("type"), format!("`{other}`: one of {}", TYPES.join(", ")))),
            }
        }
        Ok(())
    }
}

/// Seals every secret given in clear and checks the sealed ones still open
/// where they are.
pub fn seal_all(ledger: &Ledger, doc: &mut ForwardingDoc) -> Result<(), FieldError> {
    for (i, d) in doc.destinations.iter_mut().enumerate() {
        let bound = d.clone();
        for (f, s) in [("token", &mut d.token), ("secret", &mut d.secret), ("client_key", &mut d.client_key)] {
            let Some(secret) = s else { continue };
            seal_secret(ledger, PURPOSE, bound.binding(f), secret, format!("content.destinations[{i}].{f}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn destinations_are_checked_field_by_field() {
        let ok = json!({"destinations": [
            {"id": "sys", "name": "Syslog", "type": "syslog", "format": "cef", "host": "siem.example.org"},
            {"id": "hec", "name": "Splunk", "type": "splunk_hec", "url": "https://splunk:8088", "token": {"value": "t0k"},
             "filter": "category=authentication&outcome=failure"},
            {"id": "hook", "name": "Vector", "type": "webhook", "format": "ecs", "url": "https://v.example.org/in",
             "body": "ndjson", "gzip": true, "secret": {"value": "0123456789abcdef"}}
        ]});
        let d = ForwardingDoc::parse(&ok).unwrap();
        d.check(false).unwrap();
        assert_eq!(d.destinations[0].syslog_port(), 6514);
        assert_eq!(d.check(true).unwrap_err().path, "content.destinations[1].token");
        let f = d.destinations[1].search_filter().unwrap();
        assert_eq!(f.categories, ["authentication"]);
        let bad = |patch: &dyn Fn(&mut Value), path: &str| {
            let mut v = ok.clone();
            patch(&mut v);
            let err = ForwardingDoc::parse(&v).and_then(|d| d.check(false)).unwrap_err();
            assert_eq!(err.path, path, "{}", err.reason);
        };
        bad(&|v| v["destinations"][0]["format"] = json!("xml"), "content.destinations[0].format");
        bad(&|v| v["destinations"][0]["transport"] = json!("quic"), "content.destinations[0].transport");
        bad(&|v| v["destinations"][0]["host"] = json!("a b"), "content.destinations[0].host");
        bad(&|v| v["destinations"][0]["ca_pem"] = json!("nope"), "content.destinations[0].ca_pem");
        bad(&|v| v["destinations"][0]["url"] = json!("https://x"), "content.destinations[0].url");
        bad(&|v| v["destinations"][1]["filter"] = json!("q=secret"), "content.destinations[1].filter");
        bad(&|v| v["destinations"][1]["filter"] = json!("outcome=maybe"), "content.destinations[1].filter");
        bad(&|v| v["destinations"][1]["batch_size"] = json!(0), "content.destinations[1].batch_size");
        bad(&|v| v["destinations"][1]["hec_channel"] = json!("x"), "content.destinations[1].hec_channel");
        bad(&|v| v["destinations"][2]["secret"] = json!({"value": "short"}), "content.destinations[2].secret");
        bad(&|v| v["destinations"][2]["auth"] = json!("basic"), "content.destinations[2].auth");
        bad(&|v| v["destinations"][2]["id"] = json!("sys"), "content.destinations[2].id");
        bad(&|v| v["destinations"][2]["colour"] = json!("red"), "content.destinations[2]");
        bad(&|v| v["destinations"][1]["url"] = json!("http://splunk.example.org:8088"), "content.destinations[1].url");
        // A secret in the wrong shape is not echoed back.
        let mut v = ok.clone();
        v["destinations"][1]["token"] = json!("a-clear-token-value");
        let err = ForwardingDoc::parse(&v).unwrap_err();
        assert!(!err.reason.contains("a-clear-token-value"), "{}", err.reason);
    }
}
