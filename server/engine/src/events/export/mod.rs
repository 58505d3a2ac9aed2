//! Exports: CSV, JSON, NDJSON, Excel and PDF, written as the rows are read
//! (constant memory, no row cap), each with a manifest signed by the
//! ledger's key that `custos verify-export` checks offline. The engine
//! drives the export (`run`) and signs its manifest; the formats are the
//! `custos-export` crate's, behind [`ExportSink`] (`sink`).

pub mod jobs;
mod run;
mod sealed;
mod sink;

use crate::time::{DAY_US, HOUR_US};
use std::collections::{BTreeMap, HashMap};

pub use jobs::{ExportJobs, FileError};
pub use run::{ExportProgress, ExportSpec, PreparedExport};
pub use sink::{Cover, ExportFormats, ExportSink, FLAT_COLUMNS, OwnedRow, PageBuffer, PageEncoder, Row, flat_cells};

use crate::events::model::{EventView, ExportManifest};
use crate::events::validate::FieldError;
use crate::ledger::note::NoteVerifier;

/// An export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// RFC 4180 CSV.
    Csv,
    /// A JSON array of full events.
    Json,
    /// One full event per line.
    Ndjson,
    /// Excel workbook.
    Xlsx,
    /// PDF report.
    Pdf,
}

impl ExportFormat {
    /// Parses `csv`, `json`, `ndjson`, `xlsx` or `pdf`.
    pub fn parse(s: &str) -> Option<ExportFormat> {
        Some(match s {
            "csv" => ExportFormat::Csv,
            "json" => ExportFormat::Json,
            "ndjson" => ExportFormat::Ndjson,
            "xlsx" => ExportFormat::Xlsx,
            "pdf" => ExportFormat::Pdf,
            _ => return None,
        })
    }

    /// The file extension (also the parameter value).
    pub fn ext(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Json => "json",
            ExportFormat::Ndjson => "ndjson",
            ExportFormat::Xlsx => "xlsx",
            ExportFormat::Pdf => "pdf",
        }
    }

    /// The media type.
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Csv => "text/csv; charset=utf-8",
            ExportFormat::Json => "application/json",
            ExportFormat::Ndjson => "application/x-ndjson",
            ExportFormat::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            ExportFormat::Pdf => "application/pdf",
        }
    }

    /// The text formats (rows countable line by line).
    fn is_text(self) -> bool {
        matches!(self, ExportFormat::Csv | ExportFormat::Json | ExportFormat::Ndjson)
    }
}

/// The search an export runs: the filters of a search, oldest first
/// unless `order` says otherwise (the order an auditor reads in), and no
/// `limit` or `cursor` (an export has no row cap and no paging).
pub fn export_filter(pairs: &[(String, String)]) -> Result<crate::events::SearchFilter, Vec<FieldError>> {
    if let Some((k, _)) = pairs.iter().find(|(k, _)| k == "limit" || k == "cursor") {
        return Err(vec![FieldError {
            path: k.clone(),
            reason: "an export has no row cap and no paging; remove it".into(),
        }]);
    }
    let mut filter = crate::events::SearchFilter::from_pairs(pairs)?;
    if !pairs.iter().any(|(k, _)| k == "order") {
        filter.descending = false;
    }
    Ok(filter)
}

/// Counts gathered while exporting (the PDF's summary page).
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Rows exported.
    pub rows: u64,
    /// Lowest seq exported.
    pub first_seq: Option<u64>,
    /// Highest seq exported.
    pub last_seq: Option<u64>,
    /// Earliest occurred_at (µs).
    pub first_occurred_us: Option<i64>,
    /// Latest occurred_at (µs).
    pub last_occurred_us: Option<i64>,
    /// Per outcome.
    pub outcomes: HashMap<String, u64>,
    /// Per category.
    pub categories: HashMap<String, u64>,
    /// Per severity.
    pub severities: HashMap<String, u64>,
    /// Per action (at most `MAX_ACTIONS` distinct; the rest as "(other)").
    pub actions: HashMap<String, u64>,
    /// Per hour (µs of the hour's start).
    pub hours: BTreeMap<i64, u64>,
}

const MAX_ACTIONS: usize = 10_000;

impl Summary {
    /// Counts one exported row (every format).
    pub fn count_seq(&mut self, seq: u64) {
        self.rows += 1;
        self.first_seq = Some(self.first_seq.map_or(seq, |s| s.min(seq)));
        self.last_seq = Some(self.last_seq.map_or(seq, |s| s.max(seq)));
    }

    /// Adds an exported event to the PDF summary's breakdowns (the row
    /// itself is counted by `count_seq`).
    pub fn add(&mut self, e: &EventView, occurred_us: i64) {
        self.first_occurred_us = Some(self.first_occurred_us.map_or(occurred_us, |s| s.min(occurred_us)));
        self.last_occurred_us = Some(self.last_occurred_us.map_or(occurred_us, |s| s.max(occurred_us)));
        bump(&mut self.outcomes, &e.outcome);
        bump(&mut self.categories, &e.category);
        bump(&mut self.severities, &e.severity);
        if self.actions.len() < MAX_ACTIONS || self.actions.contains_key(&e.action) {
            bump(&mut self.actions, &e.action);
        } else {
            bump(&mut self.actions, "(other)");
        }
        *self.hours.entry(occurred_us.div_euclid(HOUR_US) * HOUR_US).or_default() += 1;
    }

    /// The chart's bucket: width (µs) and name, for about 100 bars or fewer.
    pub fn bucket(&self) -> (i64, &'static str) {
        let span = match (self.first_occurred_us, self.last_occurred_us) {
            (Some(a), Some(b)) => b - a,
            _ => 0,
        };
        if span <= 4 * DAY_US {
            (HOUR_US, "hour")
        } else if span <= 120 * DAY_US {
            (24 * HOUR_US, "day")
        } else {
            (7 * 24 * HOUR_US, "week")
        }
    }

    /// Counts per bucket of `width` µs, empty buckets included.
    pub fn series(&self, width: i64) -> Vec<(i64, u64)> {
        let (Some(first), Some(last)) = (self.first_occurred_us, self.last_occurred_us) else {
            return Vec::new();
        };
        let start = first.div_euclid(width) * width;
        let n = ((last - start) / width + 1).clamp(1, 2_000) as usize;
        let mut out: Vec<(i64, u64)> = (0..n).map(|i| (start + i as i64 * width, 0)).collect();
        for (hour, c) in &self.hours {
            let i = ((hour - start).div_euclid(width)).clamp(0, n as i64 - 1) as usize;
            out[i].1 += c;
        }
        out
    }
}

fn bump(map: &mut HashMap<String, u64>, key: &str) {
    match map.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            map.insert(key.to_owned(), 1);
        }
    }
}

/// The manifest file: the manifest's JSON signed as a note.
pub fn manifest_note(m: &ExportManifest, signer: &crate::ledger::note::NoteSigner) -> String {
    let mut text = serde_json::to_string_pretty(m).unwrap_or_default();
    text.push('\n');
    signer.sign_text(&text)
}

/// Why a manifest or an exported file does not check out.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest is not a signed note of a manifest.
    #[error("the manifest is malformed: {0}")]
    Malformed(String),
    /// The signature does not verify with the key given.
    #[error("the manifest's signature does not verify: {0}")]
    Signature(String),
}

/// Reads a manifest file. With a key, its signature must verify (else an
/// error); without one, the manifest is parsed unchecked and the caller
/// says so.
pub fn read_manifest(note: &str, key: Option<&NoteVerifier>) -> Result<ExportManifest, ManifestError> {
    let body = match key {
        Some(k) => k.open(note).map_err(|e| ManifestError::Signature(e.to_string()))?,
        None => {
            let split = note.rfind("\n\n").ok_or_else(|| ManifestError::Malformed("no signature block".into()))?;
            &note[..split + 1]
        }
    };
    serde_json::from_str(body).map_err(|e| ManifestError::Malformed(e.to_string()))
}

/// One check `custos verify-export` made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub what: String,
    /// Whether it held.
    pub ok: bool,
    /// Details (expected vs found).
    pub detail: String,
}

/// Checks an exported file against its manifest: size and SHA-256; for
/// the text formats also the row count and the first and last seq; the
/// checkpoint note's signature when a key is given.
pub fn verify_file(
    file: &mut dyn std::io::Read,
    m: &ExportManifest,
    key: Option<&NoteVerifier>,
) -> std::io::Result<Vec<Check>> {
    use sha2::Digest as _;
    let mut checks = Vec::new();
    let mut hasher = sha2::Sha256::new();
    let mut bytes = 0u64;
    let format = ExportFormat::parse(&m.format);
    // Rows are counted as the file streams past (text formats only).
    let mut rows = RowCounter::new(format);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        rows.feed(&buf[..n]);
        bytes += n as u64;
    }
    let sha = hex::encode(hasher.finalize());
    checks.push(Check {
        what: "size".into(),
        ok: bytes == m.bytes,
        detail: format!("manifest {} bytes, file {bytes} bytes", m.bytes),
    });
    checks.push(Check {
        what: "sha256".into(),
        ok: sha == m.sha256,
        detail: format!("manifest {}, file {sha}", m.sha256),
    });
    if let Some((count, first, last)) = rows.finish() {
        checks.push(Check {
            what: "rows".into(),
            ok: count == m.rows,
            detail: format!("manifest {}, file {count}", m.rows),
        });
        checks.push(Check {
            what: "seq range".into(),
            ok: (first, last) == (m.first_seq, m.last_seq),
            detail: format!("manifest {:?}..{:?}, file {first:?}..{last:?}", m.first_seq, m.last_seq),
        });
    }
    if let Some(cp) = &m.checkpoint {
        let covered = m.last_seq.is_none_or(|l| l <= cp.size);
        checks.push(Check {
            what: "checkpoint covers rows".into(),
            ok: covered,
            detail: format!("last seq {:?}, checkpoint size {}", m.last_seq, cp.size),
        });
        if let Some(k) = key {
            let opened = k.open_checkpoint(&cp.note);
            let ok = matches!(&opened, Ok(c) if c.tree_size == cp.size && hex::encode(c.root_hash) == cp.root);
            checks.push(Check {
                what: "checkpoint signature".into(),
                ok,
                detail: match opened {
                    Ok(c) => format!("signed tree size {} root {}", c.tree_size, hex::encode(c.root_hash)),
                    Err(e) => e.to_string(),
                },
            });
        }
    }
    Ok(checks)
}

/// Counts rows and the first/last seq of a CSV, NDJSON or JSON export
/// while it streams past: each row starts with its seq (CSV's first column,
/// JSON's first key), so lines are all that is needed.
struct RowCounter {
    format: Option<ExportFormat>,
    line: Vec<u8>,
    lines: u64,
    rows: u64,
    first: Option<u64>,
    last: Option<u64>,
    in_quotes: bool,
}

impl RowCounter {
    fn new(format: Option<ExportFormat>) -> Self {
        RowCounter { format, line: Vec::new(), lines: 0, rows: 0, first: None, last: None, in_quotes: false }
    }

    fn feed(&mut self, chunk: &[u8]) {
        if !self.format.is_some_and(ExportFormat::is_text) {
            return;
        }
        for &b in chunk {
            if self.format == Some(ExportFormat::Csv) && b == b'"' {
                self.in_quotes = !self.in_quotes;
            }
            if b == b'\n' && !self.in_quotes {
                let line = std::mem::take(&mut self.line);
                self.end_line(&line);
            } else if self.line.len() < 64 {
                // Only a row's start matters: its seq.
                self.line.push(b);
            }
        }
    }

    fn end_line(&mut self, line: &[u8]) {
        self.lines += 1;
        let seq = match self.format {
            Some(ExportFormat::Csv) if self.lines > 1 => leading_number(line),
            Some(ExportFormat::Ndjson) => line.strip_prefix(b"{\"seq\":").and_then(leading_number),
            Some(ExportFormat::Json) => {
                let l = line.strip_prefix(b",").unwrap_or(line);
                l.strip_prefix(b"{\"seq\":").and_then(leading_number)
            }
            _ => None,
        };
        if let Some(s) = seq {
            self.rows += 1;
            // Lowest and highest, as the manifest has them: an export may
            // be newest first.
            self.first = Some(self.first.map_or(s, |f| f.min(s)));
            self.last = Some(self.last.map_or(s, |l| l.max(s)));
        }
    }

    fn finish(mut self) -> Option<(u64, Option<u64>, Option<u64>)> {
        if !self.format.is_some_and(ExportFormat::is_text) {
            return None;
        }
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.end_line(&line);
        }
        Some((self.rows, self.first, self.last))
    }
}

fn leading_number(s: &[u8]) -> Option<u64> {
    let digits: &[u8] = &s[..s.iter().position(|b| !b.is_ascii_digit()).unwrap_or(s.len())];
    std::str::from_utf8(digits).ok()?.parse().ok()
}
