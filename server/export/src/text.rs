//! The text formats: CSV (RFC 4180, with spreadsheet formula injection
//! neutralised), a JSON array and NDJSON. Pages are encoded on the
//! engine's decoding workers, in parallel, and written in order, so an
//! export of any size streams in constant memory.

use std::io::{self, Write};
use std::sync::Arc;

use custos_engine::events::export::{ExportSink, FLAT_COLUMNS, PageBuffer, PageEncoder, Row, Summary, flat_cells};
use custos_model::EventView;

/// The CSV columns, in order.
pub const CSV_COLUMNS: [&str; 21] = FLAT_COLUMNS;

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
        w.push_cells(&flat_cells(e));
    }
    w.finish()
}

/// CSV rows being encoded.
pub struct CsvRows {
    w: csv::Writer<Vec<u8>>,
}

impl Default for CsvRows {
    fn default() -> Self {
        Self::new()
    }
}

impl CsvRows {
    /// An empty buffer.
    pub fn new() -> Self {
        CsvRows { w: csv_writer() }
    }

    /// Encodes one row's flat columns.
    pub fn push_cells<S: AsRef<str>>(&mut self, cells: &[S; 21]) {
        let safe: [std::borrow::Cow<'_, str>; 21] = std::array::from_fn(|i| safe_cell(cells[i].as_ref()));
        let _ = self.w.write_record(safe.iter().map(|c| c.as_bytes()));
    }

    /// The encoded bytes.
    pub fn finish(self) -> Vec<u8> {
        self.w.into_inner().unwrap_or_default()
    }
}

impl PageBuffer for CsvRows {
    fn push(&mut self, row: Row<'_>) {
        match row {
            Row::Flat(cells) => self.push_cells(cells),
            Row::View { view, .. } => self.push_cells(&flat_cells(view)),
        }
    }

    fn finish(self: Box<Self>) -> Vec<u8> {
        CsvRows::finish(*self)
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

/// The text formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Text {
    /// RFC 4180 CSV.
    Csv,
    /// A JSON array of full events.
    Json,
    /// One full event per line.
    Ndjson,
}

/// Encodes one page of a text format.
struct TextPage {
    format: Text,
    csv: Option<CsvRows>,
    out: Vec<u8>,
}

impl PageBuffer for TextPage {
    fn push(&mut self, row: Row<'_>) {
        match (self.format, row) {
            (Text::Csv, row) => {
                if let Some(c) = self.csv.as_mut() {
                    PageBuffer::push(c, row);
                }
            }
            (Text::Ndjson, Row::View { view, .. }) => {
                if serde_json::to_writer(&mut self.out, view).is_ok() {
                    self.out.push(b'\n');
                }
            }
            // Every element after a comma: the sink drops the array's first.
            (Text::Json, Row::View { view, .. }) => {
                self.out.extend_from_slice(b",\n");
                let _ = serde_json::to_writer(&mut self.out, view);
            }
            (_, Row::Flat(_)) => {}
        }
    }

    fn finish(self: Box<Self>) -> Vec<u8> {
        match self.csv {
            Some(c) => c.finish(),
            None => self.out,
        }
    }
}

impl PageEncoder for Text {
    fn flat_is_enough(&self) -> bool {
        *self == Text::Csv
    }

    fn page(&self) -> Box<dyn PageBuffer + '_> {
        Box::new(TextPage { format: *self, csv: (*self == Text::Csv).then(CsvRows::new), out: Vec::new() })
    }
}

/// A text export's file.
#[derive(Debug)]
pub struct TextSink {
    format: Text,
    /// No JSON element written yet.
    first: bool,
}

impl TextSink {
    /// A file of `format`.
    pub fn new(format: Text) -> TextSink {
        TextSink { format, first: true }
    }
}

impl ExportSink for TextSink {
    fn encoder(&self) -> Option<Arc<dyn PageEncoder>> {
        Some(Arc::new(self.format))
    }

    fn begin(&mut self, out: &mut (dyn Write + Send)) -> io::Result<()> {
        match self.format {
            Text::Csv => out.write_all(&csv_header()),
            Text::Json => out.write_all(b"[\n"),
            Text::Ndjson => Ok(()),
        }
    }

    fn encoded(&mut self, page: &[u8], out: &mut (dyn Write + Send)) -> io::Result<()> {
        if self.format == Text::Json && self.first && !page.is_empty() {
            self.first = false;
            // The first element has no comma before it.
            return out.write_all(page.get(2..).unwrap_or_default());
        }
        out.write_all(page)
    }

    fn finish(self: Box<Self>, _: &Summary, _: &str, out: &mut (dyn Write + Send)) -> io::Result<()> {
        match self.format {
            Text::Json => out.write_all(if self.first { b"]\n" } else { b"\n]\n" }),
            _ => Ok(()),
        }
    }
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
