//! Parsing and validation of incoming events: every bad field is reported
//! with its path and the reason, and a request with any bad item stores
//! nothing.

use crate::time::{DAY_US, SECOND_US};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::model::{ACTOR_KINDS, Actor, CATEGORIES, Correlation, Event, Metrics, Outcome, Resource, Severity, Source};

/// Limits on what one request may carry.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most events per request.
    pub max_batch: usize,
    /// Largest `details`, serialised, in bytes.
    pub max_details_bytes: usize,
    /// Deepest nesting of `details`.
    pub max_details_depth: usize,
    /// How far in the future `occurred_at` may be (clock skew), seconds.
    pub max_future_secs: i64,
    /// How far in the past `occurred_at` may be, days.
    pub max_past_days: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_batch: 1000,
            max_details_bytes: 16 * 1024,
            max_details_depth: 8,
            max_future_secs: 300,
            max_past_days: 3650,
        }
    }
}

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// Where: `occurred_at`, `[3].actor.id`, `line 7`.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// Why a request body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Not JSON / NDJSON at all.
    Malformed(FieldError),
    /// More events than allowed.
    TooMany {
        /// The limit.
        max: usize,
        /// How many were sent.
        got: usize,
    },
    /// No event at all.
    Empty,
    /// Well-formed, but items are invalid.
    Invalid(Vec<FieldError>),
}

/// Parses a JSON body: one event object, or an array of them.
pub fn parse_json(body: &[u8]) -> Result<Vec<Value>, BodyError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        BodyError::Malformed(FieldError {
            path: format!("line {} column {}", e.line(), e.column()),
            reason: e.to_string(),
        })
    })?;
    match value {
        Value::Array(items) => Ok(items),
        v @ Value::Object(_) => Ok(vec![v]),
        _ => Err(BodyError::Malformed(FieldError {
            path: "body".into(),
            reason: "must be an event object or an array of event objects".into(),
        })),
    }
}

/// Counts the events in a body without building them: the items of a
/// top-level JSON array (1 for an object), or the non-blank lines of NDJSON.
/// A request can then be refused for holding too many events before memory
/// is spent on millions of tiny values. A malformed body counts as what was
/// read; the full parse reports the problem.
pub fn count_events(body: &[u8], ndjson: bool) -> usize {
    if ndjson {
        return body.split(|b| *b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)).count();
    }
    struct Count<'c>(&'c std::cell::Cell<usize>);
    impl<'de> serde::de::Visitor<'de> for Count<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an event or an array of events")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                self.0.set(self.0.get() + 1);
            }
            Ok(())
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            self.0.set(1);
            while map.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {}
            Ok(())
        }
    }
    // Counted as read, so that a long array cut short still counts.
    let n = std::cell::Cell::new(0);
    let mut de = serde_json::Deserializer::from_slice(body);
    let _ = serde::Deserializer::deserialize_any(&mut de, Count(&n));
    n.get()
}

/// Parses an NDJSON body: one event object per line (blank lines ignored).
pub fn parse_ndjson(body: &[u8]) -> Result<Vec<Value>, BodyError> {
    parse_ndjson_lines(body).map(|(values, _)| values)
}

/// Parses an NDJSON body; also returns each event's line number (1-based),
/// for error paths such as `line 7.actor.id`.
pub fn parse_ndjson_lines(body: &[u8]) -> Result<(Vec<Value>, Vec<usize>), BodyError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| BodyError::Malformed(FieldError { path: "body".into(), reason: format!("not UTF-8: {e}") }))?;
    let mut out = Vec::new();
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .map_err(|e| BodyError::Malformed(FieldError { path: format!("line {}", i + 1), reason: e.to_string() }))?;
        out.push(v);
        lines.push(i + 1);
    }
    Ok((out, lines))
}

struct Checker<'a> {
    errors: &'a mut Vec<FieldError>,
    prefix: String,
}

impl Checker<'_> {
    fn err(&mut self, field: &str, reason: impl Into<String>) {
        let path = if self.prefix.is_empty() { field.to_owned() } else { format!("{}.{field}", self.prefix) };
        self.errors.push(FieldError { path, reason: reason.into() });
    }

    fn object<'v>(
        &mut self,
        parent: &'v Map<String, Value>,
        field: &str,
        allowed: &[&str],
    ) -> Option<&'v Map<String, Value>> {
        match parent.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => {
                for k in m.keys() {
                    if !allowed.contains(&k.as_str()) {
                        self.err(&format!("{field}.{k}"), format!("unknown field (allowed: {})", allowed.join(", ")));
                    }
                }
                Some(m)
            }
            Some(_) => {
                self.err(field, "must be an object");
                None
            }
        }
    }

    /// A string field: present or not, bounded, without control characters.
    fn string(
        &mut self,
        obj: &Map<String, Value>,
        field: &str,
        path: &str,
        max: usize,
        required: bool,
    ) -> Option<String> {
        match obj.get(field) {
            None | Some(Value::Null) => {
                if required {
                    self.err(path, "is required");
                }
                None
            }
            Some(Value::String(s)) => {
                if s.trim().is_empty() {
                    if required {
                        self.err(path, "must not be empty");
                    }
                    return None;
                }
                if s.chars().count() > max {
                    self.err(path, format!("must be at most {max} characters"));
                    return None;
                }
                if s.chars().any(|c| c.is_control() && c != '\t') {
                    self.err(path, "must not contain control characters");
                    return None;
                }
                Some(s.clone())
            }
            Some(other) => {
                self.err(path, format!("must be a string, not {}", kind(other)));
                None
            }
        }
    }

    /// A word of a vocabulary enum; the error lists the allowed words.
    fn word<T: std::str::FromStr<Err = String>>(&mut self, value: Option<String>, path: &str) -> Option<T> {
        match value?.parse() {
            Ok(v) => Some(v),
            Err(e) => {
                self.err(path, e);
                None
            }
        }
    }

    fn one_of(&mut self, value: Option<String>, path: &str, allowed: &[&str]) -> Option<String> {
        let v = value?;
        if allowed.contains(&v.as_str()) {
            Some(v)
        } else {
            self.err(path, format!("must be one of: {}", allowed.join(", ")));
            None
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn valid_action(a: &str) -> bool {
    !a.starts_with('.')
        && !a.ends_with('.')
        && !a.contains("..")
        && a.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}

fn valid_token(s: &str) -> bool {
    s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// Action namespaces Custos writes about itself: ingest refuses them, so
/// that no client can forge a verification, a purge, a key rotation or a
/// policy change (each later feature adds its namespace here).
pub const RESERVED_ACTION_PREFIXES: &[&str] = &[
    "audit.",
    "ledger.",
    "custos.",
    "rpc.",
    "ui.",
    "api.",
    "alert.",
    "siem.",
    "retention.",
    "compliance.",
    "policy.masking.",
    "search.saved.",
    "demo.",
];

/// The actor id and application name of Custos itself: refused from clients.
pub const RESERVED_NAME: &str = "custos";

/// Whether an action is in a namespace Custos reserves for its own events.
pub fn is_reserved_action(action: &str) -> bool {
    RESERVED_ACTION_PREFIXES.iter().any(|p| action.starts_with(p) || action == &p[..p.len() - 1])
}

/// Characters that show nothing (zero-width, joiners, direction marks,
/// variation selectors, tags): a name made of `custos` and these looks like
/// `custos`.
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F | 0x200B..=0x200F
        | 0x202A..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F | 0xFEFF | 0xFFA0 | 0xE0000..=0xE0FFF)
}

fn is_reserved_name(s: &str) -> bool {
    let seen: String = s.chars().filter(|c| !c.is_whitespace() && !is_invisible(*c)).collect();
    seen.to_lowercase() == RESERVED_NAME
}

const TOP: &[&str] = &[
    "id",
    "occurred_at",
    "category",
    "action",
    "outcome",
    "reason",
    "severity",
    "actor",
    "resource",
    "tenant",
    "source",
    "correlation",
    "metrics",
    "details",
];

/// Validates one event; appends problems to `errors` (with `prefix` on
/// each path) and returns the event when there were none.
pub fn validate_one(
    v: &Value,
    prefix: &str,
    now_us: i64,
    limits: &Limits,
    errors: &mut Vec<FieldError>,
) -> Option<Event> {
    let before = errors.len();
    let mut c = Checker { errors, prefix: prefix.to_owned() };
    let Value::Object(obj) = v else {
        c.err("", format!("must be an event object, not {}", kind(v)));
        return None;
    };
    for k in obj.keys() {
        if !TOP.contains(&k.as_str()) {
            c.err(k, "unknown field");
        }
    }
    let id = match c.string(obj, "id", "id", 64, false) {
        None => Some(Uuid::now_v7()),
        Some(s) => match Uuid::parse_str(&s) {
            Ok(u) if !u.is_nil() => Some(u),
            _ => {
                c.err("id", "must be a UUID (it is the idempotency key)");
                None
            }
        },
    };
    let occurred_at_us =
        c.string(obj, "occurred_at", "occurred_at", 64, true).and_then(|s| match chrono::DateTime::parse_from_rfc3339(
            &s,
        ) {
            Ok(t) => {
                let us = t.timestamp_micros();
                if us > now_us + limits.max_future_secs * SECOND_US {
                    c.err("occurred_at", format!("is more than {} seconds in the future", limits.max_future_secs));
                    None
                } else if us < now_us - limits.max_past_days * DAY_US {
                    c.err("occurred_at", format!("is more than {} days in the past", limits.max_past_days));
                    None
                } else {
                    Some(us)
                }
            }
            Err(_) => {
                c.err("occurred_at", "must be an RFC 3339 date-time, e.g. 2026-11-26T14:03:00Z");
                None
            }
        });
    let category = {
        let v = c.string(obj, "category", "category", 32, true);
        c.one_of(v, "category", &CATEGORIES)
    };
    let action = c.string(obj, "action", "action", 128, true).and_then(|a| {
        if valid_action(&a) && is_reserved_action(&a) {
            c.err(
                "action",
                format!(
                    "`{a}` is in a namespace Custos reserves for its own records ({}); use another name",
                    RESERVED_ACTION_PREFIXES.iter().map(|p| format!("{p}*")).collect::<Vec<_>>().join(", ")
                ),
            );
            None
        } else if valid_action(&a) {
            Some(a)
        } else {
            c.err("action", "must be a dotted lowercase verb like user.login (letters, digits, '.', '_', '-')");
            None
        }
    });
    let outcome = {
        let v = c.string(obj, "outcome", "outcome", 16, true);
        c.word::<Outcome>(v, "outcome")
    };
    let reason = c.string(obj, "reason", "reason", 1024, false);
    let severity = match obj.get("severity") {
        None | Some(Value::Null) => Some(Severity::Info),
        _ => {
            let v = c.string(obj, "severity", "severity", 16, true);
            c.word::<Severity>(v, "severity")
        }
    };

    let actor = match c.object(obj, "actor", &["id", "kind", "name", "ip", "user_agent", "session_id"]) {
        None => {
            if !obj.contains_key("actor") || obj.get("actor") == Some(&Value::Null) {
                c.err("actor", "is required");
            }
            None
        }
        Some(a) => {
            let id = c.string(a, "id", "actor.id", 256, true).and_then(|id| {
                if is_reserved_name(&id) {
                    c.err("actor.id", "`custos` is Custos itself; events from clients cannot claim it");
                    None
                } else {
                    Some(id)
                }
            });
            let kind = {
                let k = c.string(a, "kind", "actor.kind", 16, true);
                c.one_of(k, "actor.kind", &ACTOR_KINDS)
            };
            let name = c.string(a, "name", "actor.name", 256, false);
            let ip = c.string(a, "ip", "actor.ip", 64, false).and_then(|ip| {
                if ip.parse::<std::net::IpAddr>().is_ok() {
                    Some(ip)
                } else {
                    c.err("actor.ip", "must be an IPv4 or IPv6 address");
                    None
                }
            });
            let user_agent = c.string(a, "user_agent", "actor.user_agent", 512, false);
            let session_id = c.string(a, "session_id", "actor.session_id", 256, false);
            match (id, kind) {
                (Some(id), Some(kind)) => Some(Actor { id, kind, name, ip, user_agent, session_id }),
                _ => None,
            }
        }
    };

    let resource = c.object(obj, "resource", &["type", "id", "name"]).map(|r| {
        let kind = c.string(r, "type", "resource.type", 64, true);
        let id = c.string(r, "id", "resource.id", 256, false);
        let name = c.string(r, "name", "resource.name", 256, false);
        kind.map(|kind| Resource { kind, id, name })
    });
    let tenant = c.string(obj, "tenant", "tenant", 128, false);
    let source = match c.object(obj, "source", &["application", "host", "channel"]) {
        None => Some(Source { channel: "api".into(), ..Source::default() }),
        Some(s) => {
            let application = c.string(s, "application", "source.application", 128, false).and_then(|app| {
                if is_reserved_name(&app) {
                    c.err("source.application", "`custos` is Custos itself; events from clients cannot claim it");
                    None
                } else {
                    Some(app)
                }
            });
            let host = c.string(s, "host", "source.host", 255, false);
            let channel = match c.string(s, "channel", "source.channel", 32, false) {
                None => Some("api".to_owned()),
                Some(ch) if valid_token(&ch) => Some(ch),
                Some(_) => {
                    c.err("source.channel", "may contain only letters, digits, '.', '_' and '-'");
                    None
                }
            };
            channel.map(|channel| Source { application, host, channel })
        }
    };
    let correlation = match c.object(obj, "correlation", &["request_id", "trace_id", "parent_id"]) {
        None => Correlation::default(),
        Some(m) => Correlation {
            request_id: c.string(m, "request_id", "correlation.request_id", 128, false),
            trace_id: c.string(m, "trace_id", "correlation.trace_id", 128, false),
            parent_id: c.string(m, "parent_id", "correlation.parent_id", 128, false),
        },
    };
    let metrics = c.object(obj, "metrics", &["duration_ms", "status_code", "bytes"]).map(|m| {
        let mut out = Metrics::default();
        match m.get("duration_ms") {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) if n.as_f64().is_some_and(|d| d.is_finite() && d >= 0.0) => {
                out.duration_ms = n.as_f64()
            }
            Some(_) => c.err("metrics.duration_ms", "must be a number of milliseconds, 0 or more"),
        }
        match m.get("status_code") {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) if n.as_u64().is_some_and(|s| (0..=65535).contains(&s)) => {
                out.status_code = n.as_u64().and_then(|s| u16::try_from(s).ok());
            }
            Some(_) => c.err("metrics.status_code", "must be an integer from 0 to 65535"),
        }
        match m.get("bytes") {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) if n.as_u64().is_some() => out.bytes = n.as_u64(),
            Some(_) => c.err("metrics.bytes", "must be a non-negative integer"),
        }
        out
    });
    let details = match obj.get("details") {
        None | Some(Value::Null) => None,
        Some(d @ Value::Object(_)) => {
            let size = serde_json::to_vec(d).map(|b| b.len()).unwrap_or(usize::MAX);
            if size > limits.max_details_bytes {
                c.err("details", format!("is {size} bytes; at most {} are allowed", limits.max_details_bytes));
                None
            } else if depth(d) > limits.max_details_depth {
                c.err("details", format!("is nested deeper than {} levels", limits.max_details_depth));
                None
            } else {
                Some(d.clone())
            }
        }
        Some(other) => {
            c.err("details", format!("must be an object, not {}", kind(other)));
            None
        }
    };
    if c.errors.len() > before {
        return None;
    }
    Some(Event {
        id: id?,
        occurred_at_us: occurred_at_us?,
        category: category?,
        action: action?,
        outcome: outcome?,
        reason,
        severity: severity?,
        actor: actor?,
        resource: resource.flatten(),
        tenant,
        source: source?,
        correlation,
        metrics,
        details,
    })
}

/// Validates a batch: all events, or the errors of every bad item (paths
/// prefixed `[i]` when more than one event was sent).
pub fn validate_batch(items: &[Value], now_us: i64, limits: &Limits) -> Result<Vec<Event>, BodyError> {
    validate_lines(items, None, now_us, limits)
}

/// Like [`validate_batch`]; with `lines` (NDJSON), paths start `line N.`
/// instead of `[i].`.
pub fn validate_lines(
    items: &[Value],
    lines: Option<&[usize]>,
    now_us: i64,
    limits: &Limits,
) -> Result<Vec<Event>, BodyError> {
    if items.is_empty() {
        return Err(BodyError::Empty);
    }
    if items.len() > limits.max_batch {
        return Err(BodyError::TooMany { max: limits.max_batch, got: items.len() });
    }
    let mut errors = Vec::new();
    let mut events = Vec::with_capacity(items.len());
    let single = items.len() == 1;
    let mut ids = std::collections::HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let prefix = match lines.and_then(|l| l.get(i)) {
            Some(line) => format!("line {line}"),
            None if single => String::new(),
            None => format!("[{i}]"),
        };
        if let Some(e) = validate_one(item, &prefix, now_us, limits, &mut errors) {
            if let Some(first) = ids.insert(e.id, i) {
                errors.push(FieldError {
                    path: format!("{prefix}.id").trim_start_matches('.').to_owned(),
                    reason: format!("repeats the id of event [{first}] in the same request"),
                });
            }
            events.push(e);
        }
    }
    if errors.is_empty() { Ok(events) } else { Err(BodyError::Invalid(errors)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_alikes_of_the_reserved_name_are_reserved() {
        for name in
            ["custos", " Custos ", "CUSTOS", "cus\u{200b}tos", "custos\u{200b}", "\u{feff}custos", "cus\u{00ad}tos"]
        {
            assert!(is_reserved_name(name), "{name:?}");
        }
        for name in ["custos-app", "cust0s", "my custos"] {
            assert!(!is_reserved_name(name), "{name:?}");
        }
    }
    use serde_json::json;

    const NOW: i64 = 1_800_000_000_000_000;

    fn good() -> Value {
        json!({
            "occurred_at": "2027-01-15T08:00:00Z",
            "category": "authentication", "action": "user.login", "outcome": "success",
            "actor": {"id": "u-1", "kind": "user", "ip": "203.0.113.9"},
            "resource": {"type": "session", "id": "s-1"},
            "details": {"method": "password"}
        })
    }

    fn errors(items: Vec<Value>) -> Vec<(String, String)> {
        match validate_batch(&items, NOW, &Limits::default()) {
            Err(BodyError::Invalid(e)) => e.into_iter().map(|e| (e.path, e.reason)).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_good_event_gets_defaults() {
        let e = validate_batch(&[good()], NOW, &Limits::default()).unwrap().remove(0);
        assert_eq!((e.severity.as_str(), e.source.channel.as_str()), ("info", "api"));
        assert_eq!(
            e.occurred_at_us,
            chrono::DateTime::parse_from_rfc3339("2027-01-15T08:00:00Z").unwrap().timestamp_micros()
        );
        assert_eq!(e.id.get_version_num(), 7);
    }

    #[test]
    fn every_bad_field_is_named_with_its_reason() {
        let mut bad = good();
        bad["category"] = json!("login");
        bad["outcome"] = json!(1);
        bad["actor"]["ip"] = json!("999.1.1.1");
        bad["actor"]["nickname"] = json!("x");
        bad["occurred_at"] = json!("yesterday");
        bad["colour"] = json!("red");
        let e = errors(vec![good(), bad]);
        let paths: Vec<&str> = e.iter().map(|(p, _)| p.as_str()).collect();
        for p in ["[1].colour", "[1].occurred_at", "[1].category", "[1].outcome", "[1].actor.nickname", "[1].actor.ip"]
        {
            assert!(paths.contains(&p), "{p} in {e:?}");
        }
        assert!(e.iter().any(|(p, r)| p == "[1].outcome" && r == "must be a string, not a number"));
    }

    #[test]
    fn limits_and_dates_are_enforced() {
        let mut far = good();
        far["occurred_at"] = json!("2099-01-01T00:00:00Z");
        assert!(errors(vec![far])[0].1.contains("future"));
        let mut deep = good();
        deep["details"] = json!({"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{"i":1}}}}}}}}});
        assert!(errors(vec![deep])[0].1.contains("nested deeper"));
        let mut big = good();
        big["details"] = json!({"blob": "x".repeat(20_000)});
        assert!(errors(vec![big])[0].1.contains("bytes"));
        let mut ctl = good();
        ctl["actor"]["name"] = json!("ad\u{0}min");
        assert!(errors(vec![ctl])[0].1.contains("control characters"));
        assert!(matches!(
            validate_batch(&vec![good(); 1001], NOW, &Limits::default()),
            Err(BodyError::TooMany { max: 1000, got: 1001 })
        ));
        assert!(matches!(validate_batch(&[], NOW, &Limits::default()), Err(BodyError::Empty)));
        let mut dup = good();
        dup["id"] = json!("0192f0c4-e4b0-7c3a-8e5f-1a2b3c4d5e6f");
        assert!(errors(vec![dup.clone(), dup])[0].1.contains("repeats the id"));
    }

    #[test]
    fn injection_looking_and_unicode_strings_are_data() {
        let mut e = good();
        e["actor"]["name"] = json!("Robert'); DROP TABLE ledger_entries;-- 🦀 Zoë");
        e["resource"]["name"] = json!("<script>alert(1)</script>");
        let v = validate_batch(&[e], NOW, &Limits::default()).unwrap();
        assert_eq!(v[0].actor.name.as_deref(), Some("Robert'); DROP TABLE ledger_entries;-- 🦀 Zoë"));
    }

    #[test]
    fn bodies_are_json_objects_arrays_or_ndjson() {
        assert_eq!(parse_json(br#"{"a":1}"#).unwrap().len(), 1);
        assert_eq!(count_events(br#"[{},{},{"a":[1,2,{}]}]"#, false), 3);
        assert_eq!(count_events(br#"{"a":[1,2]}"#, false), 1);
        assert_eq!(count_events(b"{}\n\n  \n{}\n{}", true), 3);
        assert_eq!(count_events(b"[{},{},{", false), 2, "a body cut short counts what was read");
        assert_eq!(parse_json(br#"[{"a":1},{"b":2}]"#).unwrap().len(), 2);
        assert!(matches!(parse_json(b"{not json"), Err(BodyError::Malformed(_))));
        assert!(matches!(parse_json(b"42"), Err(BodyError::Malformed(_))));
        assert_eq!(parse_ndjson(b"{\"a\":1}\n\n{\"b\":2}\n").unwrap().len(), 2);
        match parse_ndjson(b"{\"a\":1}\n{oops\n") {
            Err(BodyError::Malformed(e)) => assert_eq!(e.path, "line 2"),
            other => panic!("{other:?}"),
        }
    }
}
