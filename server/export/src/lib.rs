//! The export formats: CSV, JSON and NDJSON (`text`), Excel (`xlsx`) and
//! the PDF report (`pdf`: a streaming writer, the embedded font, the
//! summary chart drawn by plotters). Each implements the engine's
//! `ExportSink`; the engine reads, decrypts, counts and hashes the rows and
//! signs the manifest, and depends on none of these libraries.
//!
//! The server hands [`Formats`] to the engine (`ExportJobs::new`,
//! `PreparedExport::run`).

pub mod pdf;
pub mod text;
pub mod xlsx;

use std::io;

use custos_engine::events::export::{Cover, ExportFormat, ExportFormats, ExportSink};

/// Every format Custos writes.
#[derive(Debug, Clone, Copy)]
pub struct Formats {
    /// Excel rows per sheet, header included (Excel's limit unless a test
    /// wants to see the roll-over).
    pub xlsx_rows_per_sheet: u32,
}

impl Default for Formats {
    fn default() -> Self {
        Formats { xlsx_rows_per_sheet: xlsx::EXCEL_MAX_ROWS }
    }
}

impl ExportFormats for Formats {
    fn sink(&self, format: ExportFormat, cover: Cover) -> io::Result<Box<dyn ExportSink>> {
        let xlsx_rows_per_sheet = self.xlsx_rows_per_sheet;
        Ok(match format {
            ExportFormat::Csv => Box::new(text::TextSink::new(text::Text::Csv)),
            ExportFormat::Json => Box::new(text::TextSink::new(text::Text::Json)),
            ExportFormat::Ndjson => Box::new(text::TextSink::new(text::Text::Ndjson)),
            ExportFormat::Xlsx => Box::new(xlsx::XlsxSink::new(xlsx_rows_per_sheet)),
            ExportFormat::Pdf => Box::new(pdf::PdfSink::new(cover)?),
        })
    }

    fn report_pdf(&self, report: &custos_model::EvidenceReport, json_sha256: &str) -> io::Result<Vec<u8>> {
        pdf::report::write_report(report, json_sha256)
    }
}
