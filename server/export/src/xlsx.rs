//! The Excel export: rust_xlsxwriter in constant-memory mode (each sheet's
//! rows go to a temporary file as they are written; one row in memory).
//! A sheet holds 1,048,576 rows, header included; the export continues on
//! a new sheet ("Events 2", ...) with the header repeated.

use custos_engine::time::DAY_US;
use std::io::Write;

use custos_engine::events::export::{ExportSink, OwnedRow, PageEncoder, Summary, flat_cells};
use rust_xlsxwriter::{Color, Format, FormatAlign, FormatBorder, Workbook, XlsxError};

use super::text::CSV_COLUMNS;

/// Excel's row limit per sheet.
pub const EXCEL_MAX_ROWS: u32 = 1_048_576;
/// Excel's limit on the characters in a cell.
const EXCEL_MAX_CELL: usize = 32_767;

/// Column widths (characters), in `CSV_COLUMNS` order.
const WIDTHS: [f64; 21] = [
    9.0, 38.0, 24.0, 24.0, 14.0, 28.0, 10.0, 10.0, 28.0, 10.0, 20.0, 16.0, 16.0, 24.0, 20.0, 14.0, 10.0, 16.0, 24.0,
    30.0, 60.0,
];

/// Where data row `n` (0-based) goes: (sheet index, row in the sheet),
/// with `rows_per_sheet` rows per sheet of which the first is the header.
pub fn position(n: u64, rows_per_sheet: u32) -> (u32, u32) {
    let per = u64::from(rows_per_sheet.max(2) - 1);
    ((n / per) as u32, (n % per) as u32 + 1)
}

/// Microseconds since the epoch as an Excel serial date (days since
/// 1899-12-30, the 1900 date system).
pub fn excel_serial(us: i64) -> f64 {
    us as f64 / DAY_US as f64 + 25_569.0
}

/// Builds the workbook sheet by sheet.
pub struct XlsxSink {
    book: Workbook,
    rows_per_sheet: u32,
    written: u64,
    sheets: u32,
    header: Format,
    date: Format,
    plain: Format,
}

fn err(e: XlsxError) -> std::io::Error {
    std::io::Error::other(format!("xlsx: {e}"))
}

impl XlsxSink {
    /// A workbook with `rows_per_sheet` rows per sheet (Excel's limit in
    /// production; smaller in tests).
    pub fn new(rows_per_sheet: u32) -> XlsxSink {
        XlsxSink {
            book: Workbook::new(),
            rows_per_sheet: rows_per_sheet.clamp(2, EXCEL_MAX_ROWS),
            written: 0,
            sheets: 0,
            header: Format::new()
                .set_bold()
                .set_font_color(Color::White)
                .set_background_color(Color::RGB(0x21385C))
                .set_border_bottom(FormatBorder::Thin)
                .set_align(FormatAlign::Left),
            date: Format::new().set_num_format("yyyy-mm-dd hh:mm:ss.000"),
            plain: Format::new(),
        }
    }

    fn add_sheet(&mut self) -> std::io::Result<()> {
        self.sheets += 1;
        let name = if self.sheets == 1 { "Events".to_owned() } else { format!("Events {}", self.sheets) };
        let (header, sheet) = (self.header.clone(), self.book.add_worksheet_with_constant_memory().map_err(err)?);
        sheet.set_name(name).map_err(err)?;
        for (i, w) in WIDTHS.iter().enumerate() {
            sheet.set_column_width(i as u16, *w).map_err(err)?;
        }
        sheet.set_freeze_panes(1, 0).map_err(err)?;
        for (i, name) in CSV_COLUMNS.iter().enumerate() {
            let title = match *name {
                "occurred_at" => "occurred_at (UTC)",
                "recorded_at" => "recorded_at (UTC)",
                n => n,
            };
            sheet.write_string_with_format(0, i as u16, title, &header).map_err(err)?;
        }
        Ok(())
    }

    /// Appends rows.
    pub fn append(&mut self, items: &[OwnedRow]) -> std::io::Result<()> {
        for OwnedRow { view: e, occurred_us, recorded_us } in items {
            let (sheet_no, row) = position(self.written, self.rows_per_sheet);
            if sheet_no + 1 > self.sheets {
                self.add_sheet()?;
            }
            let (date, plain) = (self.date.clone(), self.plain.clone());
            let sheet = self.book.worksheet_from_index(sheet_no as usize).map_err(err)?;
            sheet.write_number_with_format(row, 0, e.seq as f64, &plain).map_err(err)?;
            sheet.write_string(row, 1, e.id.to_string()).map_err(err)?;
            sheet.write_number_with_format(row, 2, excel_serial(*occurred_us), &date).map_err(err)?;
            sheet.write_number_with_format(row, 3, excel_serial(*recorded_us), &date).map_err(err)?;
            // The other columns as text, in the flat order.
            for (i, t) in flat_cells(e).iter().enumerate().skip(4) {
                if t.is_empty() {
                    continue;
                }
                // Strings are stored as strings: Excel never runs them.
                let t = match t.char_indices().nth(EXCEL_MAX_CELL) {
                    Some((cut, _)) => &t[..cut],
                    None => t,
                };
                sheet.write_string(row, i as u16, t).map_err(err)?;
            }
            self.written += 1;
        }
        Ok(())
    }

    /// Zips the workbook into `out`; returns the number of sheets.
    pub fn save(mut self, out: &mut (dyn Write + Send)) -> std::io::Result<u32> {
        if self.sheets == 0 {
            self.add_sheet()?;
        }
        self.book.save_to_writer(out).map_err(err)?;
        Ok(self.sheets)
    }
}

impl ExportSink for XlsxSink {
    fn encoder(&self) -> Option<std::sync::Arc<dyn PageEncoder>> {
        None
    }

    fn begin(&mut self, _: &mut (dyn Write + Send)) -> std::io::Result<()> {
        Ok(())
    }

    fn rows(&mut self, rows: &[OwnedRow], _: &mut (dyn Write + Send)) -> std::io::Result<()> {
        self.append(rows)
    }

    fn finish(self: Box<Self>, _: &Summary, _: &str, out: &mut (dyn Write + Send)) -> std::io::Result<()> {
        self.save(out).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_roll_over_to_a_new_sheet_after_the_limit() {
        // Excel: 1,048,575 data rows under the header on each sheet.
        assert_eq!(position(0, EXCEL_MAX_ROWS), (0, 1));
        assert_eq!(position(1_048_574, EXCEL_MAX_ROWS), (0, 1_048_575));
        assert_eq!(position(1_048_575, EXCEL_MAX_ROWS), (1, 1));
        assert_eq!(position(2 * 1_048_575, EXCEL_MAX_ROWS), (2, 1));
        // Small sheets: 3 data rows each.
        let at: Vec<_> = (0..7).map(|n| position(n, 4)).collect();
        assert_eq!(at, vec![(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3), (2, 1)]);
    }

    #[test]
    fn dates_are_excel_serials() {
        assert_eq!(excel_serial(0), 25_569.0);
        // 2026-11-26T12:00:00Z
        let noon = 1_795_694_400_000_000;
        assert!((excel_serial(noon) - 46_352.5).abs() < 1e-9, "{}", excel_serial(noon));
    }
}
