//! Export encodings: CSV (RFC 4180, with spreadsheet formula injection
//! neutralised), a JSON array and NDJSON, written a page at a time so that
//! an export of any size streams in constant memory.

use std::borrow::Cow;

use crate::events::model::EventView;

/// The CSV columns, in order.
pub const CSV_COLUMNS: [&str; 21] = [
    "seq",
    "id",
    "occurred_at",
    "recorded_at",
    "category",
    "action",
    "outcome",
    "severity",
    "actor_id",
    "actor_kind",
    "actor_name",
    "actor_ip",
    "resource_type",
    "resource_id",
    "resource_name",
    "tenant",
    "channel",
    "application",
    "request_id",
    "reason",
    "details",
];

/// A cell a spreadsheet would take for a formula (`=`, `+`, `-`, `@`, tab
/// or carriage return first) gets a leading `'`, as OWASP advises: the
/// value reads the same and never runs.
pub fn safe_cell(s: &str) -> std::borrow::Cow<'_, str> {
    match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{s}").into(),
        _ => s.into(),
    }
}

fn csv_writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(Vec::new())
}

/// The CSV header line.
pub fn csv_header() -> Vec<u8> {
    let mut w = csv_writer();
    let _ = w.write_record(CSV_COLUMNS);
    w.into_inner().unwrap_or_default()
}

/// CSV lines for a page of events.
pub fn csv_rows(items: &[EventView]) -> Vec<u8> {
    let mut w = CsvRows::new();
    for e in items {
        w.push(e);
    }
    w.finish()
}

/// CSV rows being encoded.
pub struct CsvRows {
    w: csv::Writer<Vec<u8>>,
    details: String,
}

impl Default for CsvRows {
    fn default() -> Self {
        Self::new()
    }
}

impl CsvRows {
    /// An empty buffer.
    pub fn new() -> Self {
        CsvRows { w: csv_writer(), details: String::new() }
    }

    /// Encodes one event.
    pub fn push(&mut self, e: &EventView) {
        fn o(v: &Option<String>) -> &str {
            v.as_deref().unwrap_or_default()
        }
        let r = e.resource.as_ref();
        self.details.clear();
        if let Some(d) = &e.details {
            use std::fmt::Write as _;
            let _ = write!(self.details, "{d}");
        }
        let seq = e.seq.to_string();
        let id = e.id.to_string();
        let record: [&str; 21] = [
            &seq,
            &id,
            &e.occurred_at,
            &e.recorded_at,
            &e.category,
            &e.action,
            &e.outcome,
            &e.severity,
            &e.actor.id,
            &e.actor.kind,
            o(&e.actor.name),
            o(&e.actor.ip),
            r.map(|r| r.kind.as_str()).unwrap_or_default(),
            r.and_then(|r| r.id.as_deref()).unwrap_or_default(),
            r.and_then(|r| r.name.as_deref()).unwrap_or_default(),
            o(&e.tenant),
            &e.source.channel,
            o(&e.source.application),
            o(&e.correlation.request_id),
            o(&e.reason),
            &self.details,
        ];
        let _ =
            self.w.write_record(record.iter().map(|c| safe_cell(c)).collect::<Vec<_>>().iter().map(|c| c.as_bytes()));
    }

    /// The encoded bytes.
    pub fn finish(self) -> Vec<u8> {
        self.w.into_inner().unwrap_or_default()
    }
}

/// A sealed payload read without copying (the export's hot path): strings
/// borrowed where they have no escapes, `details` kept as the JSON text
/// it was sealed as.
#[derive(serde::Deserialize)]
struct SealedRef<'a> {
    #[serde(default)]
    v: u64,
    #[serde(borrow)]
    event: Option<EventRef<'a>>,
}

#[derive(serde::Deserialize)]
struct EventRef<'a> {
    #[serde(borrow, default)]
    reason: Option<Cow<'a, str>>,
    #[serde(borrow)]
    actor: ActorRef<'a>,
    #[serde(borrow, default)]
    resource: Option<ResourceRef<'a>>,
    #[serde(borrow)]
    source: SourceRef<'a>,
    #[serde(borrow, default)]
    correlation: CorrelationRef<'a>,
    #[serde(borrow, default)]
    details: Option<&'a serde_json::value::RawValue>,
}

#[derive(serde::Deserialize)]
struct ActorRef<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    ip: Option<Cow<'a, str>>,
}

#[derive(serde::Deserialize)]
struct ResourceRef<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
}

#[derive(serde::Deserialize)]
struct SourceRef<'a> {
    #[serde(borrow, default)]
    application: Option<Cow<'a, str>>,
    #[serde(borrow)]
    channel: Cow<'a, str>,
}

#[derive(serde::Deserialize, Default)]
struct CorrelationRef<'a> {
    #[serde(borrow, default)]
    request_id: Option<Cow<'a, str>>,
}

impl CsvRows {
    /// Encodes one entry straight from its decrypted payload; false when
    /// the payload is not an event of the current shape (the caller then
    /// goes through the full view).
    pub fn push_sealed(&mut self, entry: &crate::ledger::types::StoredEntry, plain: &[u8]) -> bool {
        let Ok(SealedRef { v: crate::events::service::PAYLOAD_VERSION, event: Some(e) }) =
            serde_json::from_slice::<SealedRef<'_>>(plain)
        else {
            return false;
        };
        let h = &entry.header;
        let f = &h.fields;
        fn o<'b>(v: &'b Option<Cow<'_, str>>) -> &'b str {
            v.as_deref().unwrap_or_default()
        }
        let seq = h.seq.to_string();
        let id = h.event_id.to_string();
        let occurred = crate::events::service::rfc3339(h.occurred_at_us);
        let recorded = crate::events::service::rfc3339(h.recorded_at_us);
        let r = e.resource.as_ref();
        let record: [&str; 21] = [
            &seq,
            &id,
            &occurred,
            &recorded,
            &f.category,
            &f.action,
            &f.outcome,
            &f.severity,
            &e.actor.id,
            &e.actor.kind,
            o(&e.actor.name),
            o(&e.actor.ip),
            r.map(|r| &*r.kind).unwrap_or_default(),
            r.map(|r| o(&r.id)).unwrap_or_default(),
            r.map(|r| o(&r.name)).unwrap_or_default(),
            f.tenant.as_deref().unwrap_or_default(),
            &e.source.channel,
            o(&e.source.application),
            o(&e.correlation.request_id),
            o(&e.reason),
            e.details.map(|d| d.get()).filter(|d| *d != "null").unwrap_or_default(),
        ];
        let _ =
            self.w.write_record(record.iter().map(|c| safe_cell(c)).collect::<Vec<_>>().iter().map(|c| c.as_bytes()));
        true
    }
}

/// NDJSON lines for a page of events (the full event each).
pub fn ndjson_rows(items: &[EventView]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in items {
        if serde_json::to_writer(&mut out, e).is_ok() {
            out.push(b'\n');
        }
    }
    out
}

/// JSON array elements for a page; `first` says whether the array is still
/// empty (no leading comma).
pub fn json_rows(items: &[EventView], first: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, e) in items.iter().enumerate() {
        if !(first && i == 0) {
            out.extend_from_slice(b",\n");
        }
        let _ = serde_json::to_writer(&mut out, e);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(action: &str, note: &str) -> EventView {
        serde_json::from_value(serde_json::json!({
            "seq": 7, "id": "0192f0c4-e4b0-7c3a-8e5f-1a2b3c4d5e6f", "occurred_at": "2026-11-26T10:00:00.000000Z",
            "recorded_at": "2026-11-26T10:00:01.000000Z", "category": "tool", "action": action, "outcome": "success",
            "severity": "info", "actor": {"id": "=HYPERLINK(\"http://x\")", "kind": "user", "name": "Zoë, \"the\" admin"},
            "source": {"channel": "api"}, "correlation": {}, "details": {"note": note}
        }))
        .unwrap()
    }

    #[test]
    fn formula_cells_are_neutralised() {
        for (input, out) in [
            ("=1+1", "'=1+1"),
            ("+1", "'+1"),
            ("-1", "'-1"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("a=1", "a=1"),
            ("", ""),
        ] {
            assert_eq!(safe_cell(input), out);
        }
    }

    #[test]
    fn csv_is_rfc_4180_and_reads_back() {
        let mut bytes = csv_header();
        bytes.extend(csv_rows(&[view("tool.invoke", "line 1\nline 2, \"quoted\""), view("-cmd", "x")]));
        let mut r = csv::Reader::from_reader(&bytes[..]);
        let headers = r.headers().unwrap().clone();
        assert_eq!(headers.len(), CSV_COLUMNS.len());
        let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(&rows[0][8], "'=HYPERLINK(\"http://x\")");
        assert_eq!(&rows[0][10], "Zoë, \"the\" admin");
        assert_eq!(&rows[1][5], "'-cmd");
        let details: serde_json::Value = serde_json::from_str(&rows[0][20]).unwrap();
        assert_eq!(details["note"], "line 1\nline 2, \"quoted\"");
        assert!(bytes.windows(2).any(|w| w == b"\r\n"), "CRLF line ends");
    }

    #[test]
    fn json_and_ndjson_pages_join_into_valid_documents() {
        let page = [view("a.b", "1"), view("c.d", "2")];
        let mut json = b"[".to_vec();
        json.extend(json_rows(&page, true));
        json.extend(json_rows(&page, false));
        json.extend(b"]");
        let all: Vec<EventView> = serde_json::from_slice(&json).unwrap();
        assert_eq!(all.len(), 4);
        let nd = ndjson_rows(&page);
        assert_eq!(nd.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count(), 2);
    }
}
