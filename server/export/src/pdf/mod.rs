//! The PDF export: a streaming PDF 1.7 writer. Table pages are written as
//! rows arrive (one page in memory at a time), so an export of a million
//! events is some 25,000 pages in constant memory. The title and summary
//! pages are written last, when the counts are known, and placed first in
//! the page tree. Text is set in DejaVu Sans (a subset of the glyphs used,
//! embedded at the end with a CIDToGIDMap, Identity-H, with a
//! ToUnicode map so the text can be searched and copied); the summary chart
//! is drawn by plotters through a backend that emits PDF operators.
//!
//! Here the writer and the layout; `font` (the embedded font), `page` (a
//! page's content stream), `chart` (the plotters backend). The writer is
//! hand-written because the PDF engines available (typst) lay the whole
//! document out in memory: a million-row export would not fit.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};

use plotters::prelude::*;
use plotters::series::Histogram;
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind, text_anchor::HPos, text_anchor::VPos,
};

use custos_engine::events::export::{Cover, ExportSink, OwnedRow, PageEncoder, Summary};

mod chart;
mod font;
mod page;
pub mod report;

use self::chart::{PdfCanvas, draw_histogram};
use self::font::Font;
use self::page::Page;

const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// A4 landscape, in points.
const PAGE_W: f32 = 841.89;
const PAGE_H: f32 = 595.28;
const MARGIN: f32 = 36.0;
const ROW_H: f32 = 11.5;
const TABLE_SIZE: f32 = 7.0;
const TABLE_TOP: f32 = PAGE_H - MARGIN - 24.0;
const FOOTER_Y: f32 = MARGIN - 14.0;
/// Rows per table page.
pub const ROWS_PER_PAGE: usize = ((TABLE_TOP - ROW_H - (MARGIN + 6.0)) / ROW_H) as usize;

/// Table columns: heading and width in points.
const COLUMNS: [(&str, f32); 10] = [
    ("Seq", 48.0),
    ("Occurred (UTC)", 104.0),
    ("Category", 66.0),
    ("Action", 118.0),
    ("Outcome", 48.0),
    ("Severity", 44.0),
    ("Actor", 112.0),
    ("Resource", 122.0),
    ("Tenant", 54.0),
    ("Channel", 53.8),
];

// Fixed object numbers; pages get theirs as they are written.
const CATALOG: u32 = 1;
const PAGES: u32 = 2;
const FONT_TYPE0: u32 = 3;
const FONT_CID: u32 = 4;
const FONT_DESC: u32 = 5;
const FONT_FILE: u32 = 6;
const TO_UNICODE: u32 = 7;
const INFO: u32 = 8;
const CID_TO_GID: u32 = 9;
const FIRST_FREE: u32 = 10;

const INK: (f32, f32, f32) = (0.11, 0.13, 0.17);
const MUTED: (f32, f32, f32) = (0.38, 0.42, 0.48);
const HEAD_BG: (f32, f32, f32) = (0.13, 0.22, 0.36);
const STRIPE: (f32, f32, f32) = (0.94, 0.95, 0.97);
const WHITE: (f32, f32, f32) = (1.0, 1.0, 1.0);
const ACCENT: (f32, f32, f32) = (0.16, 0.40, 0.72);

/// Writes the PDF to `out` as rows arrive.
pub struct PdfSink {
    font: Font,
    cover: Cover,
    offsets: Vec<u64>,
    written: u64,
    pages: Vec<u32>,
    rows_on_page: usize,
    current: String,
    footer: String,
}

impl PdfSink {
    /// A document about the export `cover` describes.
    pub fn new(cover: Cover) -> io::Result<PdfSink> {
        let footer = match &cover.checkpoint {
            Some((size, root)) => format!("Checkpoint {size} · root {root} · export {}", cover.export_id),
            None => format!("No checkpoint yet · export {}", cover.export_id),
        };
        Ok(PdfSink {
            font: Font::load()?,
            cover,
            offsets: vec![0; FIRST_FREE as usize - 1],
            written: 0,
            pages: Vec::new(),
            rows_on_page: 0,
            current: String::new(),
            footer,
        })
    }

    fn raw(&mut self, out: &mut (dyn Write + Send), bytes: &[u8]) -> io::Result<()> {
        out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn new_id(&mut self) -> u32 {
        self.offsets.push(0);
        self.offsets.len() as u32
    }

    fn object(&mut self, out: &mut (dyn Write + Send), id: u32, body: &[u8]) -> io::Result<()> {
        self.offsets[id as usize - 1] = self.written;
        self.raw(out, format!("{id} 0 obj\n").as_bytes())?;
        self.raw(out, body)?;
        self.raw(out, b"\nendobj\n")
    }

    fn stream(&mut self, out: &mut (dyn Write + Send), id: u32, dict: &str, data: &[u8]) -> io::Result<()> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(data)?;
        let packed = z.finish()?;
        let mut body = format!("<< {dict} /Length {} /Filter /FlateDecode >>\nstream\n", packed.len()).into_bytes();
        body.extend_from_slice(&packed);
        body.extend_from_slice(b"\nendstream");
        self.object(out, id, &body)
    }

    fn write_page(&mut self, out: &mut (dyn Write + Send), ops: &str) -> io::Result<u32> {
        let content = self.new_id();
        let page = self.new_id();
        self.stream(out, content, "", ops.as_bytes())?;
        let dict = format!(
            "<< /Type /Page /Parent {PAGES} 0 R /MediaBox [0 0 {PAGE_W} {PAGE_H}] \
             /Resources << /Font << /F1 {FONT_TYPE0} 0 R >> >> /Contents {content} 0 R >>"
        );
        self.object(out, page, dict.as_bytes())?;
        Ok(page)
    }

    fn table_header(&mut self) {
        let number = self.pages.len() + 3; // after the title and summary pages
        let mut p = Page { ops: std::mem::take(&mut self.current), font: &mut self.font };
        p.fill_rgb(INK);
        p.text(MARGIN, PAGE_H - MARGIN, 11.0, true, "Audit events");
        p.fill_rgb(MUTED);
        p.text_right(PAGE_W - MARGIN, PAGE_H - MARGIN, 8.0, false, &format!("Page {number}"));
        p.fill_rgb(HEAD_BG);
        p.rect(MARGIN, TABLE_TOP - 3.0, PAGE_W - 2.0 * MARGIN, ROW_H);
        p.fill_rgb(WHITE);
        let mut x = MARGIN + 3.0;
        for (name, w) in COLUMNS {
            p.text(x, TABLE_TOP, TABLE_SIZE, true, name);
            x += w;
        }
        p.fill_rgb(MUTED);
        let footer = p.font.fit(&self.footer, PAGE_W - 2.0 * MARGIN, 6.5);
        p.text(MARGIN, FOOTER_Y, 6.5, false, &footer);
        self.current = p.ops;
    }

    /// Adds rows, writing each page as it fills.
    fn table_rows(&mut self, items: &[OwnedRow], out: &mut (dyn Write + Send)) -> io::Result<()> {
        for OwnedRow { view: e, .. } in items {
            if self.rows_on_page == 0 {
                self.table_header();
            }
            let y = TABLE_TOP - ROW_H * (self.rows_on_page as f32 + 1.0);
            let resource = e
                .resource
                .as_ref()
                .map(|r| match &r.id {
                    Some(id) => format!("{}:{id}", r.kind),
                    None => r.kind.clone(),
                })
                .unwrap_or_default();
            let time = e.occurred_at.replace('T', " ");
            let time = time.get(..23).unwrap_or(&time).to_owned();
            let cells = [
                e.seq.to_string(),
                time,
                e.category.clone(),
                e.action.clone(),
                e.outcome.clone(),
                e.severity.clone(),
                e.actor.id.clone(),
                resource,
                e.tenant.clone().unwrap_or_default(),
                e.source.channel.clone(),
            ];
            let mut p = Page { ops: std::mem::take(&mut self.current), font: &mut self.font };
            if self.rows_on_page % 2 == 1 {
                p.fill_rgb(STRIPE);
                p.rect(MARGIN, y - 3.0, PAGE_W - 2.0 * MARGIN, ROW_H);
            }
            let mut x = MARGIN + 3.0;
            for (i, (cell, (_, w))) in cells.iter().zip(COLUMNS).enumerate() {
                let color = match (i, e.outcome.as_str()) {
                    (4, "failure" | "denied" | "error") => (0.70, 0.13, 0.13),
                    _ => INK,
                };
                p.fill_rgb(color);
                let fitted = p.font.fit(cell, w - 5.0, TABLE_SIZE);
                p.text(x, y, TABLE_SIZE, false, &fitted);
                x += w;
            }
            self.current = p.ops;
            self.rows_on_page += 1;
            if self.rows_on_page == ROWS_PER_PAGE {
                self.flush_page(out)?;
            }
        }
        Ok(())
    }

    fn flush_page(&mut self, out: &mut (dyn Write + Send)) -> io::Result<()> {
        let ops = std::mem::take(&mut self.current);
        let id = self.write_page(out, &ops)?;
        self.pages.push(id);
        self.rows_on_page = 0;
        Ok(())
    }

    /// Writes the title and summary pages, the font, the page tree and the
    /// trailer. `entries_sha256` is the digest over the exported entries.
    fn finish_pdf(mut self, summary: &Summary, entries_sha256: &str, out: &mut (dyn Write + Send)) -> io::Result<u64> {
        if self.rows_on_page > 0 {
            self.flush_page(out)?;
        }
        let total_pages = self.pages.len() + 2;
        let title = self.title_page(summary, entries_sha256, total_pages);
        let title_id = self.write_page(out, &title)?;
        let summary_ops = self.summary_page(summary)?;
        let summary_id = self.write_page(out, &summary_ops)?;
        let mut kids = vec![title_id, summary_id];
        kids.extend(self.pages.iter().copied());
        let info = (
            format!("Custos audit export {}", self.cover.export_id),
            self.cover.generated_by.clone(),
            format!("{} events; entries SHA-256 {entries_sha256}", summary.rows),
        );
        self.close(out, &kids, &info)?;
        Ok(total_pages as u64)
    }

    /// Writes the font, the page tree of `kids` in order, the catalog, the
    /// document information (title, author, subject) and the trailer.
    fn close(&mut self, out: &mut (dyn Write + Send), kids: &[u32], info: &(String, String, String)) -> io::Result<()> {
        self.write_font(out)?;
        let mut list = String::with_capacity(kids.len() * 9 + 20);
        for (i, id) in kids.iter().enumerate() {
            let _ = write!(list, "{}{id} 0 R", if i > 0 { " " } else { "" });
        }
        let tree = format!("<< /Type /Pages /Count {} /Kids [{list}] >>", kids.len());
        self.object(out, PAGES, tree.as_bytes())?;
        self.object(out, CATALOG, format!("<< /Type /Catalog /Pages {PAGES} 0 R >>").as_bytes())?;
        let info = format!(
            "<< /Title {} /Author {} /Producer (Custos) /Subject {} >>",
            pdf_text(&info.0),
            pdf_text(&info.1),
            pdf_text(&info.2),
        );
        self.object(out, INFO, info.as_bytes())?;

        let xref_at = self.written;
        let mut xref = format!("xref\n0 {}\n0000000000 65535 f \n", self.offsets.len() + 1);
        for off in &self.offsets {
            let _ = writeln!(xref, "{off:010} 00000 n ");
        }
        let _ = write!(
            xref,
            "trailer\n<< /Size {} /Root {CATALOG} 0 R /Info {INFO} 0 R >>\nstartxref\n{xref_at}\n%%EOF\n",
            self.offsets.len() + 1
        );
        self.raw(out, xref.as_bytes())
    }

    fn title_page(&mut self, s: &Summary, entries_sha256: &str, pages: usize) -> String {
        let c = self.cover.clone();
        let mut p = Page { ops: String::new(), font: &mut self.font };
        p.fill_rgb(HEAD_BG);
        p.rect(0.0, PAGE_H - 120.0, PAGE_W, 120.0);
        p.fill_rgb(WHITE);
        p.text(MARGIN + 10.0, PAGE_H - 70.0, 26.0, true, "Audit log export");
        p.text(MARGIN + 10.0, PAGE_H - 95.0, 11.0, false, &format!("Custos · {}", c.origin));
        let period = match (s.first_occurred_us, s.last_occurred_us) {
            (Some(a), Some(b)) => {
                format!("{} — {}", custos_engine::time::rfc3339(a), custos_engine::time::rfc3339(b))
            }
            _ => "no events".into(),
        };
        let seqs = match (s.first_seq, s.last_seq) {
            (Some(a), Some(b)) => format!("{a} — {b}"),
            _ => "none".into(),
        };
        let checkpoint = match &c.checkpoint {
            Some((size, root)) => format!("tree size {size}, root {root}"),
            None => "none yet".into(),
        };
        let mut rows: Vec<(&str, String)> = vec![
            ("Generated by", c.generated_by.clone()),
            ("Generated at", c.generated_at.clone()),
            ("Period (occurred)", period),
            ("Events", group_digits(s.rows)),
            ("Pages", pages.to_string()),
            ("Ledger positions (seq)", seqs),
            ("Checkpoint", checkpoint),
            ("Entries SHA-256", entries_sha256.to_owned()),
            ("Export id", c.export_id.clone()),
        ];
        if c.filters.is_empty() {
            rows.insert(3, ("Filters", "none: every event".into()));
        } else {
            for (i, f) in c.filters.iter().enumerate() {
                rows.insert(3 + i, (if i == 0 { "Filters" } else { "" }, f.clone()));
            }
        }
        let mut y = PAGE_H - 165.0;
        for (k, v) in rows {
            p.fill_rgb(MUTED);
            p.text(MARGIN + 10.0, y, 10.0, false, k);
            p.fill_rgb(INK);
            let v = p.font.fit(&v, PAGE_W - 2.0 * MARGIN - 170.0, 10.0);
            p.text(MARGIN + 170.0, y, 10.0, false, &v);
            y -= 19.0;
            if y < MARGIN + 60.0 {
                break;
            }
        }
        p.fill_rgb(MUTED);
        p.text(
            MARGIN + 10.0,
            MARGIN + 20.0,
            8.5,
            false,
            "The file's SHA-256 is in the export's manifest, signed with the ledger's key: check both with \
             `custos verify-export FILE MANIFEST --public-key KEY`.",
        );
        p.ops
    }

    fn summary_page(&mut self, s: &Summary) -> io::Result<String> {
        let mut ops = String::new();
        {
            let mut p = Page { ops: String::new(), font: &mut self.font };
            p.fill_rgb(INK);
            p.text(MARGIN, PAGE_H - MARGIN - 4.0, 16.0, true, "Summary");
            let blocks: [(&str, Vec<(String, u64)>); 4] = [
                ("Outcome", top(&s.outcomes, 6)),
                ("Category", top(&s.categories, 10)),
                ("Severity", top(&s.severities, 6)),
                ("Top actions", top(&s.actions, 10)),
            ];
            let col_w = (PAGE_W - 2.0 * MARGIN) / 4.0;
            for (i, (name, list)) in blocks.iter().enumerate() {
                let x = MARGIN + col_w * i as f32;
                let mut y = PAGE_H - MARGIN - 32.0;
                p.fill_rgb(ACCENT);
                p.text(x, y, 10.0, true, name);
                y -= 4.0;
                p.fill_rgb(MUTED);
                p.line(x, y, x + col_w - 14.0, y, 0.5);
                y -= 12.0;
                if list.is_empty() {
                    p.text(x, y, 8.5, false, "—");
                }
                for (value, n) in list {
                    p.fill_rgb(INK);
                    let v = p.font.fit(value, col_w - 70.0, 8.5);
                    p.text(x, y, 8.5, false, &v);
                    p.text_right(x + col_w - 14.0, y, 8.5, false, &group_digits(*n));
                    y -= 12.0;
                }
            }
            ops.push_str(&p.ops);
        }
        // The chart: events over time, drawn by plotters.
        let (cx, cy, cw, ch) = (MARGIN, MARGIN, PAGE_W - 2.0 * MARGIN, 250.0);
        let mut canvas = PdfCanvas { ops: String::new(), font: &mut self.font, x: cx, y: cy, w: cw, h: ch };
        draw_histogram(&mut canvas, s).map_err(|e| io::Error::other(format!("chart: {e}")))?;
        ops.push_str(&canvas.ops);
        Ok(ops)
    }

    fn write_font(&mut self, out: &mut (dyn Write + Send)) -> io::Result<()> {
        let upem = self.font.upem;
        let scale = |v: i16| (f32::from(v) * 1000.0 / upem) as i32;
        let face = &self.font.face;
        let bbox = face.global_bounding_box();
        let (ascent, descent) = (scale(face.ascender()), scale(face.descender()));
        let cap = face.capital_height().map_or(ascent, scale);
        // Only the glyphs the report uses are embedded. The pages address
        // glyphs by their id in the full font (CID = original glyph id, known
        // only now that every page is written); the subset numbers them
        // afresh, and the CIDToGIDMap stream maps the one to the other.
        let (subset, cid_to_gid) = font::subset(self.font.used.keys().copied())?;
        self.stream(out, FONT_FILE, &format!("/Length1 {}", subset.len()), &subset)?;
        self.stream(out, CID_TO_GID, "", &cid_to_gid)?;
        let name = font::subset_name(self.font.used.keys().copied());
        let desc = format!(
            "<< /Type /FontDescriptor /FontName /{name} /Flags 32 /FontBBox [{} {} {} {}] /ItalicAngle 0 \
             /Ascent {ascent} /Descent {descent} /CapHeight {cap} /StemV 80 /FontFile2 {FONT_FILE} 0 R >>",
            scale(bbox.x_min),
            scale(bbox.y_min),
            scale(bbox.x_max),
            scale(bbox.y_max),
        );
        self.object(out, FONT_DESC, desc.as_bytes())?;
        let mut widths = String::new();
        for gid in self.font.used.keys() {
            let w = (self.font.advance(*gid) * 1000.0 / upem).round() as i32;
            let _ = write!(widths, "{gid} [{w}] ");
        }
        let cid = format!(
            "<< /Type /Font /Subtype /CIDFontType2 /BaseFont /{name} \
             /CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> \
             /FontDescriptor {FONT_DESC} 0 R /CIDToGIDMap {CID_TO_GID} 0 R /DW 600 /W [{widths}] >>"
        );
        self.object(out, FONT_CID, cid.as_bytes())?;
        let mut cmap = String::from(
            "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n\
             /CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n\
             /CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n\
             1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n",
        );
        let used: Vec<(u16, char)> = self.font.used.iter().map(|(g, c)| (*g, *c)).collect();
        for chunk in used.chunks(100) {
            let _ = writeln!(cmap, "{} beginbfchar", chunk.len());
            for (g, c) in chunk {
                let mut units = [0u16; 2];
                let hex: String = c.encode_utf16(&mut units).iter().map(|u| format!("{u:04X}")).collect();
                let _ = writeln!(cmap, "<{g:04X}> <{hex}>");
            }
            cmap.push_str("endbfchar\n");
        }
        cmap.push_str("endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n");
        self.stream(out, TO_UNICODE, "", cmap.as_bytes())?;
        let type0 = format!(
            "<< /Type /Font /Subtype /Type0 /BaseFont /{name} /Encoding /Identity-H \
             /DescendantFonts [{FONT_CID} 0 R] /ToUnicode {TO_UNICODE} 0 R >>"
        );
        self.object(out, FONT_TYPE0, type0.as_bytes())
    }
}

impl ExportSink for PdfSink {
    fn encoder(&self) -> Option<std::sync::Arc<dyn PageEncoder>> {
        None
    }

    fn begin(&mut self, out: &mut (dyn Write + Send)) -> io::Result<()> {
        self.raw(out, b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    }

    fn rows(&mut self, rows: &[OwnedRow], out: &mut (dyn Write + Send)) -> io::Result<()> {
        self.table_rows(rows, out)
    }

    fn wants_summary(&self) -> bool {
        true
    }

    fn finish(
        self: Box<Self>,
        summary: &Summary,
        entries_sha256: &str,
        out: &mut (dyn Write + Send),
    ) -> io::Result<()> {
        self.finish_pdf(summary, entries_sha256, out).map(|_| ())
    }
}

fn top(map: &std::collections::HashMap<String, u64>, n: usize) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = map.iter().map(|(k, c)| (k.clone(), *c)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(n);
    v
}

/// 1234567 -> "1,234,567".
pub fn group_digits(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A PDF literal string in UTF-16BE (for the document information).
fn pdf_text(s: &str) -> String {
    let mut out = String::from("<FEFF");
    for u in s.encode_utf16() {
        let _ = write!(out, "{u:04X}");
    }
    out.push('>');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_grouped() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1_000), "1,000");
        assert_eq!(group_digits(1_048_576), "1,048,576");
    }

    #[test]
    fn text_is_fitted_to_its_column() {
        let f = Font::load().unwrap();
        let long = "a.very.long.action.name.that.does.not.fit";
        let fitted = f.fit(long, 60.0, 7.0);
        assert!(fitted.ends_with('…') && f.width(&fitted, 7.0) <= 60.0, "{fitted}");
        assert_eq!(f.fit("short", 60.0, 7.0), "short");
        assert_eq!(f.fit("two\nlines", 200.0, 7.0), "two lines");
    }

    #[test]
    fn text_wraps_at_spaces_and_cuts_long_words_on_character_boundaries() {
        let f = Font::load().unwrap();
        let text = "Verified intact in full at 2027-03-31: 10 entries checked; Prüfung bestanden ✓";
        let lines = f.wrap(text, 120.0, 8.0);
        assert!(lines.len() > 1, "{lines:?}");
        assert!(lines.iter().all(|l| f.width(l, 8.0) <= 120.0), "{lines:?}");
        assert_eq!(lines.join(" "), text, "nothing lost or reordered");
        let word = "ééééééééééééééééééééééééééééééééééééééééé";
        let cut = f.wrap(word, 40.0, 8.0);
        assert!(cut.len() > 1 && cut.iter().all(|l| f.width(l, 8.0) <= 40.0), "{cut:?}");
        assert_eq!(cut.concat(), word);
        assert_eq!(f.wrap("a\nb", 100.0, 8.0), ["a", "b"]);
    }
}
