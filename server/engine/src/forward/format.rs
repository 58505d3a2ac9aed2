//! The formats events leave in: derived from the one event shape at the
//! edge, never stored (DESIGN §2). Every record carries the event's id and
//! ledger position so receivers can drop repeats (delivery is at least
//! once). Signed checkpoints leave as records of their own kind.
//!
//! The mapping tables are in the README ("SIEM forwarding: formats").

use custos_model::EventView;
use serde_json::{Map, Value, json};

use crate::time::parse_rfc3339;

/// Formats.
pub const FORMATS: [&str; 5] = ["json", "cef", "leef", "ocsf", "ecs"];
/// The OCSF version the records follow.
pub const OCSF_VERSION: &str = "1.1.0";
const PRODUCT: &str = "Custos";
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A record in its format: a JSON object or a line of text.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// `json`, `ocsf`, `ecs`.
    Json(Value),
    /// `cef`, `leef`.
    Text(String),
}

impl Record {
    /// One line (JSON compact): a syslog message's text, an NDJSON line.
    pub fn line(&self) -> String {
        match self {
            Record::Json(v) => v.to_string(),
            Record::Text(s) => s.clone(),
        }
    }

    /// As a JSON value (text as a string): a webhook array's item, a HEC event.
    pub fn value(&self) -> Value {
        match self {
            Record::Json(v) => v.clone(),
            Record::Text(s) => Value::String(s.clone()),
        }
    }
}

/// A signed checkpoint, as forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointMsg {
    /// The tree size it signs (the ledger's last seq then).
    pub tree_size: u64,
    /// Its root hash (hex).
    pub root_hash: String,
    /// The complete signed note (C2SP signed-note form).
    pub note: String,
    /// When it was made (RFC 3339).
    pub created_at: String,
}

fn ms(rfc: &str) -> i64 {
    parse_rfc3339(rfc).unwrap_or(0) / 1000
}

/// CEF and LEEF severity, 0-10.
pub fn severity_0_10(s: &str) -> u8 {
    match s {
        "debug" => 1,
        "info" => 3,
        "notice" => 4,
        "warning" => 6,
        "error" => 8,
        "critical" => 10,
        _ => 5,
    }
}

/// RFC 5424 severity (0 emergency … 7 debug).
pub fn syslog_severity(s: &str) -> u8 {
    match s {
        "debug" => 7,
        "info" => 6,
        "notice" => 5,
        "warning" => 4,
        "error" => 3,
        "critical" => 2,
        _ => 6,
    }
}

/// Formats an event.
pub fn event(format: &str, e: &EventView) -> Record {
    match format {
        "cef" => Record::Text(cef(e)),
        "leef" => Record::Text(leef(e)),
        "ocsf" => Record::Json(ocsf(e)),
        "ecs" => Record::Json(ecs(e)),
        _ => Record::Json(json_native(e)),
    }
}

/// Formats a checkpoint.
pub fn checkpoint(format: &str, c: &CheckpointMsg) -> Record {
    let ms_at = ms(&c.created_at);
    match format {
        "cef" => Record::Text(format!(
            "CEF:0|{PRODUCT}|{PRODUCT}|{VERSION}|custos.checkpoint|Signed checkpoint|1|rt={ms_at} cn1={} \
             cn1Label=treeSize cs1={} cs1Label=rootHash msg={}",
            c.tree_size,
            c.root_hash,
            cef_value(&c.note)
        )),
        "leef" => Record::Text(format!(
            "LEEF:2.0|{PRODUCT}|{PRODUCT}|{VERSION}|custos.checkpoint|^|devTime={ms_at}^treeSize={}^rootHash={}^note={}",
            c.tree_size,
            c.root_hash,
            leef_value(&c.note)
        )),
        "ocsf" => Record::Json(json!({
            // Base Event, "Other" activity: the checkpoint as it is.
            "class_uid": 0, "category_uid": 0, "activity_id": 99, "type_uid": 99,
            "severity_id": 1, "time": ms_at, "message": "Signed checkpoint",
            "metadata": {"version": OCSF_VERSION, "product": {"name": PRODUCT, "vendor_name": PRODUCT, "version": VERSION}},
            "unmapped": {"custos_type": "custos.checkpoint", "tree_size": c.tree_size, "root_hash": c.root_hash, "note": c.note},
        })),
        "ecs" => Record::Json(json!({
            "@timestamp": c.created_at,
            "event": {"kind": "state", "dataset": "custos.checkpoint", "action": "custos.checkpoint"},
            "message": "Signed checkpoint",
            "custos": {"type": "custos.checkpoint", "tree_size": c.tree_size, "root_hash": c.root_hash, "note": c.note},
        })),
        _ => Record::Json(json!({
            "type": "custos.checkpoint", "tree_size": c.tree_size, "root_hash": c.root_hash,
            "note": c.note, "created_at": c.created_at,
        })),
    }
}

/// The native shape: the API's event, with `type`.
fn json_native(e: &EventView) -> Value {
    let mut v = serde_json::to_value(e).unwrap_or_default();
    if let Value::Object(m) = &mut v {
        m.remove("unmasked");
        m.insert("type".into(), json!("custos.event"));
    }
    v
}

// --- CEF ------------------------------------------------------------------

/// A CEF header field: `\` and `|` escaped, line breaks made spaces.
pub fn cef_header(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A CEF extension value: `\` and `=` escaped, line breaks as `\n` / `\r`.
pub fn cef_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

fn is_ip(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
}

fn cef(e: &EventView) -> String {
    let name = format!("{} {}", e.action, e.outcome);
    let mut ext: Vec<(&str, String)> = vec![
        ("rt", ms(&e.occurred_at).to_string()),
        ("externalId", e.id.to_string()),
        ("cn1", e.seq.to_string()),
        ("cn1Label", "seq".into()),
        ("cat", e.category.clone()),
        ("act", e.action.clone()),
        ("outcome", e.outcome.clone()),
        ("suid", e.actor.id.clone()),
        ("cs5", e.actor.kind.clone()),
        ("cs5Label", "actorKind".into()),
        ("deviceReceiptTime", ms(&e.recorded_at).to_string()),
    ];
    if let Some(n) = &e.actor.name {
        ext.push(("suser", n.clone()));
    }
    if let Some(ip) = e.actor.ip.as_deref().filter(|ip| is_ip(ip)) {
        ext.push(("src", ip.to_owned()));
    }
    if let Some(ua) = &e.actor.user_agent {
        ext.push(("requestClientApplication", ua.clone()));
    }
    if let Some(r) = &e.resource {
        ext.push(("cs1", r.kind.clone()));
        ext.push(("cs1Label", "resourceType".into()));
        if let Some(id) = &r.id {
            ext.push(("cs2", id.clone()));
            ext.push(("cs2Label", "resourceId".into()));
        }
    }
    if let Some(t) = &e.tenant {
        ext.push(("cs3", t.clone()));
        ext.push(("cs3Label", "tenant".into()));
    }
    if let Some(a) = &e.source.application {
        ext.push(("cs4", a.clone()));
        ext.push(("cs4Label", "application".into()));
    }
    ext.push(("cs6", e.source.channel.clone()));
    ext.push(("cs6Label", "channel".into()));
    if let Some(h) = &e.source.host {
        ext.push(("dvchost", h.clone()));
    }
    if let Some(r) = &e.correlation.request_id {
        ext.push(("requestContext", r.clone()));
    }
    if let Some(r) = &e.reason {
        ext.push(("reason", r.clone()));
    }
    let ext: Vec<String> = ext.into_iter().map(|(k, v)| format!("{k}={}", cef_value(&v))).collect();
    format!(
        "CEF:0|{PRODUCT}|{PRODUCT}|{VERSION}|{}|{}|{}|{}",
        cef_header(&e.action),
        cef_header(&name),
        severity_0_10(&e.severity),
        ext.join(" ")
    )
}

// --- LEEF 2.0 ---------------------------------------------------------------

/// The LEEF 2.0 attribute delimiter, named in every header.
pub const LEEF_DELIMITER: char = '^';

/// A LEEF attribute value: `\` and the delimiter escaped with `\`, line
/// breaks as `\n` / `\r`, tabs as `\t`.
pub fn leef_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            LEEF_DELIMITER => out.push_str("\\^"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out
}

fn leef(e: &EventView) -> String {
    let mut attrs: Vec<(&str, String)> = vec![
        ("devTime", ms(&e.occurred_at).to_string()),
        ("cat", e.category.clone()),
        ("sev", severity_0_10(&e.severity).to_string()),
        ("eventId", e.id.to_string()),
        ("seq", e.seq.to_string()),
        ("action", e.action.clone()),
        ("outcome", e.outcome.clone()),
        ("usrName", e.actor.name.clone().unwrap_or_else(|| e.actor.id.clone())),
        ("accountName", e.actor.id.clone()),
        ("actorKind", e.actor.kind.clone()),
        ("channel", e.source.channel.clone()),
    ];
    if let Some(ip) = e.actor.ip.as_deref().filter(|ip| is_ip(ip)) {
        attrs.push(("src", ip.to_owned()));
    }
    if let Some(r) = &e.resource {
        attrs.push(("resourceType", r.kind.clone()));
        if let Some(id) = &r.id {
            attrs.push(("resource", id.clone()));
        }
    }
    if let Some(t) = &e.tenant {
        attrs.push(("tenant", t.clone()));
    }
    if let Some(a) = &e.source.application {
        attrs.push(("application", a.clone()));
    }
    if let Some(h) = &e.source.host {
        attrs.push(("identHostName", h.clone()));
    }
    if let Some(r) = &e.reason {
        attrs.push(("reason", r.clone()));
    }
    let body: Vec<String> = attrs.into_iter().map(|(k, v)| format!("{k}={}", leef_value(&v))).collect();
    format!(
        "LEEF:2.0|{PRODUCT}|{PRODUCT}|{VERSION}|{}|{LEEF_DELIMITER}|{}",
        cef_header(&e.action),
        body.join(&LEEF_DELIMITER.to_string())
    )
}

// --- OCSF -------------------------------------------------------------------

/// The verb of an action: its last dotted part, lower case.
fn verb(action: &str) -> String {
    action.rsplit('.').next().unwrap_or(action).to_ascii_lowercase()
}

fn has(v: &str, words: &[&str]) -> bool {
    words.iter().any(|w| v.contains(w))
}

const CREATE: &[&str] = &["create", "add", "register", "insert", "issue", "invite"];
const DELETE: &[&str] = &["delete", "remove", "revoke_key", "destroy", "purge"];
const UPDATE: &[&str] = &["update", "change", "set", "edit", "rotate", "modify", "rename"];
const READ: &[&str] = &["read", "get", "view", "list", "search", "export", "download", "query"];

/// The OCSF class and activity of an event: `(class_uid, category_uid,
/// activity_id)`. See the README's table.
pub fn ocsf_class(e: &EventView) -> (u32, u32, u32) {
    let v = verb(&e.action);
    let a = e.action.to_ascii_lowercase();
    if e.category == "authentication" {
        let activity = if has(&v, &["logout", "logoff", "signout", "sign_out"]) {
            2
        } else if has(&v, &["login", "logon", "signin", "sign_in", "authenticate", "auth"]) {
            1
        } else {
            99
        };
        return (3002, 3, activity);
    }
    let account = ["user.", "account.", "apikey.", "api_key.", "password.", "mfa."].iter().any(|p| a.starts_with(p));
    if account && matches!(e.category.as_str(), "admin" | "authorization" | "security") {
        let activity = if has(&v, &["password_reset", "reset"]) {
            4
        } else if has(&v, &["password"]) {
            3
        } else if has(&v, &["unlock", "enable"]) {
            2
        } else if has(&v, &["lock"]) {
            9
        } else if has(&v, &["disable", "deactivate", "suspend"]) {
            5
        } else if has(&v, &["grant", "attach", "assign"]) {
            7
        } else if has(&v, &["revoke", "detach", "unassign"]) {
            8
        } else if has(&v, CREATE) {
            1
        } else if has(&v, DELETE) {
            6
        } else {
            99
        };
        return (3001, 3, activity);
    }
    if matches!(e.category.as_str(), "admin" | "policy" | "configuration" | "infrastructure") {
        let activity = if has(&v, CREATE) {
            1
        } else if has(&v, DELETE) {
            4
        } else if has(&v, UPDATE) {
            3
        } else if has(&v, READ) {
            2
        } else if has(&v, &["enable"]) {
            8
        } else if has(&v, &["disable"]) {
            9
        } else if has(&v, &["activate"]) {
            10
        } else {
            99
        };
        return (3004, 3, activity);
    }
    if matches!(e.category.as_str(), "data_access" | "mcp" | "tool" | "plugin") || e.source.channel == "api" {
        let activity = if has(&v, CREATE) {
            1
        } else if has(&v, DELETE) {
            4
        } else if has(&v, UPDATE) {
            3
        } else if has(&v, READ) {
            2
        } else {
            99
        };
        return (6003, 6, activity);
    }
    // The documented fallback: Base Event, activity Other.
    (0, 0, 99)
}

/// OCSF severity_id.
fn ocsf_severity(s: &str) -> u8 {
    match s {
        "debug" | "info" => 1,
        "notice" => 2,
        "warning" => 3,
        "error" => 4,
        "critical" => 5,
        _ => 0,
    }
}

fn user_obj(e: &EventView) -> Value {
    let mut u = Map::new();
    u.insert("uid".into(), json!(e.actor.id));
    if let Some(n) = &e.actor.name {
        u.insert("name".into(), json!(n));
    }
    u.insert(
        "type".into(),
        json!(match e.actor.kind.as_str() {
            "user" => "User",
            "system" => "System",
            _ => "Other",
        }),
    );
    u.insert(
        "type_id".into(),
        json!(match e.actor.kind.as_str() {
            "user" => 1,
            "system" => 3,
            _ => 99,
        }),
    );
    Value::Object(u)
}

fn ocsf(e: &EventView) -> Value {
    let (class_uid, category_uid, activity_id) = ocsf_class(e);
    let (status_id, status) = match e.outcome.as_str() {
        "success" => (1, "Success"),
        _ => (2, "Failure"),
    };
    let mut actor = json!({"user": user_obj(e)});
    if let Some(s) = &e.actor.session_id {
        actor["session"] = json!({"uid": s});
    }
    if let Some(a) = &e.source.application {
        actor["app_name"] = json!(a);
    }
    let mut src = Map::new();
    if let Some(ip) = e.actor.ip.as_deref().filter(|ip| is_ip(ip)) {
        src.insert("ip".into(), json!(ip));
    }
    if let Some(h) = &e.source.host {
        src.insert("hostname".into(), json!(h));
    }
    let mut metadata = json!({
        "version": OCSF_VERSION, "uid": e.id.to_string(),
        "product": {"name": PRODUCT, "vendor_name": PRODUCT, "version": VERSION},
        "logged_time": ms(&e.recorded_at), "labels": [format!("seq:{}", e.seq)],
    });
    if let Some(t) = &e.tenant {
        metadata["tenant_uid"] = json!(t);
    }
    if let Some(r) = &e.correlation.request_id {
        metadata["correlation_uid"] = json!(r);
    }
    let mut v = json!({
        "class_uid": class_uid, "category_uid": category_uid, "activity_id": activity_id,
        "type_uid": class_uid * 100 + activity_id,
        "severity_id": ocsf_severity(&e.severity), "severity": e.severity,
        "status_id": status_id, "status": status,
        "time": ms(&e.occurred_at),
        "message": format!("{} {}", e.action, e.outcome),
        "metadata": metadata,
        "actor": actor,
        "src_endpoint": Value::Object(src),
        "unmapped": {"custos_seq": e.seq, "category": e.category, "action": e.action, "channel": e.source.channel},
    });
    if let Some(r) = &e.reason {
        v["status_detail"] = json!(r);
    }
    if let Some(ua) = &e.actor.user_agent {
        v["http_request"] = json!({"user_agent": ua});
    }
    if let Some(d) = &e.details {
        v["unmapped"]["details"] = d.clone();
    }
    let resource = e.resource.as_ref().map(|r| {
        let mut o = json!({"type": r.kind});
        if let Some(id) = &r.id {
            o["uid"] = json!(id);
        }
        if let Some(n) = &r.name {
            o["name"] = json!(n);
        }
        o
    });
    match class_uid {
        3002 | 3001 => {
            // The subject: the account acted on when it is one, else the actor.
            let subject = match &e.resource {
                Some(r) if matches!(r.kind.as_str(), "user" | "account" | "api_key" | "apikey") => {
                    let mut u = json!({"uid": r.id.clone().unwrap_or_default(), "type": "User", "type_id": 1});
                    if let Some(n) = &r.name {
                        u["name"] = json!(n);
                    }
                    u
                }
                _ => user_obj(e),
            };
            v["user"] = subject;
            if class_uid == 3002 {
                v["auth_protocol_id"] = json!(0);
                v["is_mfa"] = json!(false);
            }
        }
        3004 => {
            v["entity"] = resource.unwrap_or_else(|| json!({"type": e.category}));
        }
        6003 => {
            v["api"] = json!({"operation": e.action, "service": {"name": e.source.application.clone().unwrap_or_else(|| e.category.clone())}});
            if let Some(r) = resource {
                v["resources"] = json!([r]);
            }
        }
        _ => {}
    }
    v
}

// --- ECS --------------------------------------------------------------------

/// ECS `event.category` and `event.type` of an event. See the README's table.
pub fn ecs_kinds(e: &EventView) -> (Vec<&'static str>, Vec<&'static str>) {
    let v = verb(&e.action);
    let category: Vec<&'static str> = match e.category.as_str() {
        "authentication" => vec!["authentication"],
        "authorization" | "admin" => vec!["iam"],
        "policy" | "configuration" | "integrity" => vec!["configuration"],
        "network" => vec!["network"],
        "infrastructure" | "system" => vec!["host"],
        "data_access" => vec!["database"],
        "security" => vec!["intrusion_detection"],
        "notification" => vec!["email"],
        _ => vec!["api"],
    };
    let mut kinds: Vec<&'static str> = Vec::new();
    if e.category == "authentication" {
        if has(&v, &["logout", "logoff", "signout"]) {
            kinds.push("end");
        } else if has(&v, &["login", "logon", "signin"]) {
            kinds.push("start");
        } else {
            kinds.push("info");
        }
    } else if has(&v, CREATE) {
        kinds.push("creation");
    } else if has(&v, DELETE) {
        kinds.push("deletion");
    } else if has(&v, UPDATE) || has(&v, &["grant", "revoke", "assign", "lock", "enable", "disable"]) {
        kinds.push("change");
    } else if has(&v, READ) {
        kinds.push("access");
    } else {
        kinds.push("info");
    }
    if category == ["iam"] {
        kinds.push(if has(&e.action, &["role", "group"]) { "group" } else { "user" });
    }
    match e.outcome.as_str() {
        "denied" => kinds.push("denied"),
        "error" => kinds.push("error"),
        _ => {}
    }
    (category, kinds)
}

fn ecs(e: &EventView) -> Value {
    let (category, kinds) = ecs_kinds(e);
    let outcome = match e.outcome.as_str() {
        "success" => "success",
        _ => "failure",
    };
    let mut event = json!({
        "kind": "event", "category": category, "type": kinds, "action": e.action, "outcome": outcome,
        "id": e.id.to_string(), "sequence": e.seq, "created": e.recorded_at, "severity": severity_0_10(&e.severity),
        "dataset": "custos.audit", "module": "custos",
    });
    if let Some(r) = &e.reason {
        event["reason"] = json!(r);
    }
    if let Some(a) = &e.source.application {
        event["provider"] = json!(a);
    }
    if let Some(d) = e.metrics.as_ref().and_then(|m| m.duration_ms) {
        event["duration"] = json!((d * 1_000_000.0) as i64);
    }
    let mut user = json!({"id": e.actor.id});
    if let Some(n) = &e.actor.name {
        user["name"] = json!(n);
    }
    let mut related_users = vec![e.actor.id.clone()];
    if let Some(n) = &e.actor.name
        && n != &e.actor.id
    {
        related_users.push(n.clone());
    }
    let mut v = json!({
        "@timestamp": e.occurred_at,
        "ecs": {"version": "8.11.0"},
        "message": format!("{} {}", e.action, e.outcome),
        "event": event,
        "user": user,
        "labels": {"custos_seq": e.seq.to_string(), "actor_kind": e.actor.kind, "channel": e.source.channel, "category": e.category},
        "custos": {"seq": e.seq, "category": e.category, "severity": e.severity},
    });
    if let Some(ip) = e.actor.ip.as_deref().filter(|ip| is_ip(ip)) {
        v["source"] = json!({"ip": ip});
        v["related"] = json!({"user": related_users, "ip": [ip]});
    } else {
        v["related"] = json!({"user": related_users});
    }
    if let Some(ua) = &e.actor.user_agent {
        v["user_agent"] = json!({"original": ua});
    }
    if let Some(s) = &e.actor.session_id {
        v["custos"]["session_id"] = json!(s);
    }
    if let Some(h) = &e.source.host {
        v["host"] = json!({"hostname": h});
    }
    if let Some(t) = &e.tenant {
        v["organization"] = json!({"id": t});
    }
    if let Some(r) = &e.resource {
        v["custos"]["resource"] = json!(r);
        if matches!(r.kind.as_str(), "user" | "account") {
            v["user"]["target"] = json!({"id": r.id, "name": r.name});
            if let Some(id) = &r.id
                && let Some(a) = v["related"]["user"].as_array_mut()
            {
                a.push(json!(id));
            }
        }
    }
    if let Some(t) = &e.correlation.trace_id {
        v["trace"] = json!({"id": t});
    }
    if let Some(r) = &e.correlation.request_id {
        v["http"] = json!({"request": {"id": r}});
    }
    if let Some(c) = e.metrics.as_ref().and_then(|m| m.status_code) {
        v["http"]["response"] = json!({"status_code": c});
    }
    if let Some(d) = &e.details {
        v["custos"]["details"] = d.clone();
    }
    v
}

// --- RFC 5424 ---------------------------------------------------------------

/// The RFC 5424 facility (13: log audit).
pub const FACILITY: u8 = 13;

/// An RFC 5424 PRINTUSASCII token (1..=max characters, `-` when empty).
fn token(s: &str, max: usize) -> String {
    let t: String = s.chars().filter(|c| c.is_ascii_graphic()).take(max).collect();
    if t.is_empty() { "-".into() } else { t }
}

/// An SD-PARAM value: `"`, `\` and `]` escaped.
fn sd_value(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace(']', "\\]")
}

/// One RFC 5424 message: `<PRI>1 TIMESTAMP HOST APP - MSGID [custos@32473
/// seq=".." id=".."] MSG` (the structured data names the ledger position
/// and the event id, or a checkpoint's `tree_size`; 32473 is the private enterprise number RFC 5612 keeps
/// for examples and documentation).
pub fn syslog(h: &SyslogHeader<'_>, msg: &str) -> String {
    let pri = u16::from(FACILITY) * 8 + u16::from(syslog_severity(h.severity));
    format!(
        "<{pri}>1 {} {} {} - {} [custos@32473 {}=\"{}\" id=\"{}\"] {msg}",
        token(h.timestamp, 64),
        token(h.hostname, 255),
        token(h.app, 48),
        token(h.msgid, 32),
        if h.checkpoint { "tree_size" } else { "seq" },
        h.seq,
        sd_value(h.id)
    )
}

/// The header fields of an RFC 5424 message.
#[derive(Debug, Clone, Copy)]
pub struct SyslogHeader<'a> {
    /// Our severity word.
    pub severity: &'a str,
    /// RFC 3339.
    pub timestamp: &'a str,
    /// HOSTNAME.
    pub hostname: &'a str,
    /// APP-NAME.
    pub app: &'a str,
    /// MSGID (the action).
    pub msgid: &'a str,
    /// The ledger position (a checkpoint: its tree size).
    pub seq: u64,
    /// A checkpoint: the structured data names `tree_size`, not `seq`.
    pub checkpoint: bool,
    /// The event id.
    pub id: &'a str,
}

/// RFC 5425 / RFC 6587 octet counting: `LEN SP MSG`.
pub fn octet_frame(msg: &str) -> Vec<u8> {
    let mut out = format!("{} ", msg.len()).into_bytes();
    out.extend_from_slice(msg.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EventView {
        serde_json::from_value(json!({
            "seq": 42, "id": "0190a5b4-8f7e-7c3a-9d2b-5e6f7a8b9c0d",
            "occurred_at": "2026-12-01T10:00:00.000000Z", "recorded_at": "2026-12-01T10:00:00.250000Z",
            "category": "authentication", "action": "user.login", "outcome": "failure",
            "reason": "bad password = \\ | pipe\nnext", "severity": "warning",
            "actor": {"id": "u-1", "kind": "user", "name": "ali|ce=x", "ip": "203.0.113.7", "user_agent": "curl/8"},
            "resource": {"type": "account", "id": "u-1"}, "tenant": "acme",
            "source": {"application": "portal", "host": "web-1", "channel": "api"},
            "correlation": {"request_id": "r-9"}, "details": {"k": "v"}
        }))
        .unwrap()
    }

    #[test]
    fn cef_escapes_header_and_extension_characters() {
        let Record::Text(s) = event("cef", &sample()) else { panic!() };
        assert!(s.starts_with("CEF:0|Custos|Custos|"), "{s}");
        assert!(s.contains("|user.login|user.login failure|6|"), "{s}");
        assert!(s.contains("reason=bad password \\= \\\\ | pipe\\nnext"), "{s}");
        assert!(s.contains("suser=ali|ce\\=x"), "{s}");
        assert!(s.contains("externalId=0190a5b4-8f7e-7c3a-9d2b-5e6f7a8b9c0d cn1=42 cn1Label=seq"), "{s}");
        assert!(!s.contains('\n'));
        assert_eq!(cef_header("a|b\\c\nd"), "a\\|b\\\\c d");
    }

    #[test]
    fn leef_names_its_delimiter_and_escapes_it() {
        let mut e = sample();
        e.reason = Some("a^b".into());
        let Record::Text(s) = event("leef", &e) else { panic!() };
        assert!(s.starts_with("LEEF:2.0|Custos|Custos|"), "{s}");
        assert!(s.contains("|user.login|^|devTime="), "{s}");
        assert!(s.contains("^reason=a\\^b"), "{s}");
        assert!(s.contains("^seq=42^"), "{s}");
    }

    #[test]
    fn ocsf_classes_follow_the_table() {
        let mut e = sample();
        let Record::Json(v) = event("ocsf", &e) else { panic!() };
        assert_eq!(
            (v["class_uid"].as_u64(), v["activity_id"].as_u64(), v["type_uid"].as_u64()),
            (Some(3002), Some(1), Some(300201))
        );
        assert_eq!(v["status_id"], 2);
        assert_eq!(v["src_endpoint"]["ip"], "203.0.113.7");
        assert_eq!(v["metadata"]["uid"], "0190a5b4-8f7e-7c3a-9d2b-5e6f7a8b9c0d");
        assert_eq!(v["unmapped"]["custos_seq"], 42);
        e.category = "admin".into();
        e.action = "user.create".into();
        assert_eq!(ocsf_class(&e), (3001, 3, 1));
        e.action = "role.grant".into();
        assert_eq!(ocsf_class(&e), (3004, 3, 99));
        e.action = "settings.update".into();
        assert_eq!(ocsf_class(&e), (3004, 3, 3));
        e.category = "mcp".into();
        e.action = "mcp.request".into();
        assert_eq!(ocsf_class(&e), (6003, 6, 99));
        e.category = "network".into();
        e.source.channel = "syslog".into();
        assert_eq!(ocsf_class(&e), (0, 0, 99));
    }

    #[test]
    fn ecs_fills_event_user_source_and_related() {
        let Record::Json(v) = event("ecs", &sample()) else { panic!() };
        assert_eq!(v["event"]["category"], json!(["authentication"]));
        assert_eq!(v["event"]["type"], json!(["start"]));
        assert_eq!(v["event"]["outcome"], "failure");
        assert_eq!(v["event"]["sequence"], 42);
        assert_eq!(v["user"]["id"], "u-1");
        assert_eq!(v["source"]["ip"], "203.0.113.7");
        assert_eq!(v["related"]["ip"], json!(["203.0.113.7"]));
    }

    #[test]
    fn syslog_messages_are_rfc5424_with_octet_counting() {
        let h = SyslogHeader {
            severity: "warning",
            timestamp: "2026-12-01T10:00:00Z",
            hostname: "web 1",
            app: "custos",
            msgid: "user.login",
            seq: 42,
            checkpoint: false,
            id: "i\"d]",
        };
        let m = syslog(&h, "hello");
        assert_eq!(
            m,
            "<108>1 2026-12-01T10:00:00Z web1 custos - user.login [custos@32473 seq=\"42\" id=\"i\\\"d\\]\"] hello"
        );
        let f = octet_frame("héllo");
        assert_eq!(f, b"6 h\xc3\xa9llo");
    }

    #[test]
    fn checkpoints_leave_in_every_format() {
        let c = CheckpointMsg {
            tree_size: 9,
            root_hash: "ab".into(),
            note: "custos\n9\nq=\n\n— k sig".into(),
            created_at: "2026-12-01T10:00:00Z".into(),
        };
        for f in FORMATS {
            let r = checkpoint(f, &c);
            assert!(r.line().contains("custos.checkpoint"), "{f}: {}", r.line());
            assert!(!r.line().contains('\n'), "{f}");
        }
    }
}
