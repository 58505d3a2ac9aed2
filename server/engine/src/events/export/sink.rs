//! What the engine asks of an export format. The engine reads, decrypts,
//! checks and counts the rows, hashes the file and signs the manifest; a
//! format only turns rows into bytes. The formats themselves (CSV, JSON,
//! NDJSON, Excel, PDF, with their libraries and font) live in the
//! `custos-export` crate, which implements [`ExportFormats`]; the engine
//! depends on none of them.
//!
//! Text formats encode whole pages on the decoding workers, in parallel
//! ([`PageEncoder`]), and the engine writes the pages back in order;
//! formats that lay rows out in order (Excel sheets, PDF pages) take them
//! on the writing thread ([`ExportSink::rows`]).

use std::borrow::Cow;
use std::io::{self, Write};
use std::sync::Arc;

use super::{ExportFormat, Summary};
use crate::events::model::EventView;

/// The flat columns of an event, in order (CSV's header, Excel's columns).
pub const FLAT_COLUMNS: [&str; 21] = [
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

/// An event's flat columns (`FLAT_COLUMNS` order; absent values empty,
/// times RFC 3339, `details` as JSON text).
pub fn flat_cells(e: &EventView) -> [Cow<'_, str>; 21] {
    fn o(v: &Option<String>) -> Cow<'_, str> {
        v.as_deref().unwrap_or_default().into()
    }
    let r = e.resource.as_ref();
    [
        e.seq.to_string().into(),
        e.id.to_string().into(),
        e.occurred_at.as_str().into(),
        e.recorded_at.as_str().into(),
        e.category.as_str().into(),
        e.action.as_str().into(),
        e.outcome.as_str().into(),
        e.severity.as_str().into(),
        e.actor.id.as_str().into(),
        e.actor.kind.as_str().into(),
        o(&e.actor.name),
        o(&e.actor.ip),
        r.map(|r| r.kind.as_str()).unwrap_or_default().into(),
        r.map(|r| o(&r.id)).unwrap_or_default(),
        r.map(|r| o(&r.name)).unwrap_or_default(),
        o(&e.tenant),
        e.source.channel.as_str().into(),
        o(&e.source.application),
        o(&e.correlation.request_id),
        o(&e.reason),
        e.details.as_ref().filter(|d| !d.is_null()).map(|d| d.to_string()).unwrap_or_default().into(),
    ]
}

/// One row handed to a page encoder.
#[derive(Debug, Clone, Copy)]
pub enum Row<'a> {
    /// The event, decoded.
    View {
        /// The event (masked).
        view: &'a EventView,
        /// When it happened (µs).
        occurred_us: i64,
        /// When it was recorded (µs).
        recorded_us: i64,
    },
    /// Only its flat columns, read straight from the sealed payload (the
    /// fast path of encoders that say [`PageEncoder::flat_is_enough`]).
    Flat(&'a [&'a str; 21]),
}

/// A decoded row a sink lays out in order.
#[derive(Debug, Clone)]
pub struct OwnedRow {
    /// The event (masked).
    pub view: EventView,
    /// When it happened (µs).
    pub occurred_us: i64,
    /// When it was recorded (µs).
    pub recorded_us: i64,
}

/// Encodes pages of rows on the decoding workers: called from several
/// threads at once, pages out of order.
pub trait PageEncoder: Send + Sync {
    /// Flat columns are all it needs: rows then come as [`Row::Flat`]
    /// whenever the payload can be read that way (no free-text filter).
    fn flat_is_enough(&self) -> bool {
        false
    }

    /// A buffer for one page.
    fn page(&self) -> Box<dyn PageBuffer + '_>;
}

/// One page being encoded.
pub trait PageBuffer {
    /// Adds a row.
    fn push(&mut self, row: Row<'_>);
    /// The page's bytes.
    fn finish(self: Box<Self>) -> Vec<u8>;
}

/// What the title page of a report says about the export.
#[derive(Debug, Clone, Default)]
pub struct Cover {
    /// The ledger's origin.
    pub origin: String,
    /// Who asked.
    pub generated_by: String,
    /// When (RFC 3339).
    pub generated_at: String,
    /// The filters as `name = value` lines.
    pub filters: Vec<String>,
    /// The checkpoint (size, root hex), if any.
    pub checkpoint: Option<(u64, String)>,
    /// The export id.
    pub export_id: String,
}

/// One export's file, written as the engine feeds it.
pub trait ExportSink: Send {
    /// The page encoder, for formats whose rows are encoded on the workers.
    /// Without one, the rows come to [`ExportSink::rows`] in order.
    fn encoder(&self) -> Option<Arc<dyn PageEncoder>>;

    /// What comes before the first row (a header line, `[`, a PDF header).
    fn begin(&mut self, out: &mut (dyn Write + Send)) -> io::Result<()>;

    /// A page from the encoder, in order.
    fn encoded(&mut self, page: &[u8], out: &mut (dyn Write + Send)) -> io::Result<()> {
        out.write_all(page)
    }

    /// Rows in order (formats without an encoder).
    fn rows(&mut self, rows: &[OwnedRow], out: &mut (dyn Write + Send)) -> io::Result<()> {
        let _ = (rows, out);
        Ok(())
    }

    /// Wants every row's view (and the breakdowns of the [`Summary`]).
    fn wants_summary(&self) -> bool {
        false
    }

    /// The end of the file; `summary` holds the counts, `entries_sha256`
    /// the digest of the exported entries' leaf hashes.
    fn finish(self: Box<Self>, summary: &Summary, entries_sha256: &str, out: &mut (dyn Write + Send))
    -> io::Result<()>;
}

/// Makes a sink for each format; the server passes `custos-export`'s.
pub trait ExportFormats: Send + Sync + std::fmt::Debug {
    /// A sink writing `format`.
    fn sink(&self, format: ExportFormat, cover: Cover) -> io::Result<Box<dyn ExportSink>>;

    /// An evidence report as a PDF; `json_sha256` is its JSON twin's
    /// digest (printed on the cover).
    fn report_pdf(&self, report: &custos_model::EvidenceReport, json_sha256: &str) -> io::Result<Vec<u8>>;
}
