//! The compliance evidence report as a PDF: a cover (framework, period,
//! organisation, who and when, the checkpoint, the JSON twin's digest),
//! the controls over the period with a strip of their daily status, the
//! checks, the event classes (a plotters bar chart), verifications,
//! operations, policy changes, the sample and the exceptions. Written by
//! the same writer as the exports (font, pages, trailer); a report is a
//! few dozen pages, so it is laid out in memory.

use super::*;
use custos_engine::events::export::Cover;
use custos_model::{CheckStatus, DayCounts, EvidenceReport};

const PASS: (f32, f32, f32) = (0.18, 0.55, 0.34);
const WARN: (f32, f32, f32) = (0.85, 0.60, 0.10);
const FAIL: (f32, f32, f32) = (0.78, 0.16, 0.16);
const GREY: (f32, f32, f32) = (0.62, 0.65, 0.70);
const GAP: (f32, f32, f32) = (0.88, 0.89, 0.91);
const BOTTOM: f32 = MARGIN + 18.0;

fn color(s: CheckStatus) -> (f32, f32, f32) {
    match s {
        CheckStatus::Pass => PASS,
        CheckStatus::Warn => WARN,
        CheckStatus::Fail => FAIL,
        CheckStatus::NoEvidence | CheckStatus::NotConfigured => GREY,
    }
}

fn label(s: CheckStatus) -> &'static str {
    match s {
        CheckStatus::Pass => "PASS",
        CheckStatus::Warn => "WARNING",
        CheckStatus::Fail => "FAIL",
        CheckStatus::NoEvidence => "NO EVIDENCE",
        CheckStatus::NotConfigured => "NOT CONFIGURED",
    }
}

fn days_text(d: &DayCounts) -> String {
    let mut parts = vec![format!("{} pass", d.pass)];
    for (n, what) in [
        (d.warn, "warning"),
        (d.fail, "fail"),
        (d.no_evidence, "no evidence"),
        (d.not_configured, "not configured"),
        (d.missing, "missing"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    parts.join(" · ")
}

/// The document being laid out: pages written as they fill.
struct Doc<'a> {
    pdf: PdfSink,
    out: Vec<u8>,
    ops: String,
    y: f32,
    pages: Vec<u32>,
    footer: String,
    report: &'a EvidenceReport,
    /// The current table's header, repeated atop each page it runs onto.
    header: Option<Vec<(f32, f32, String, bool)>>,
}

impl Doc<'_> {
    fn page(&mut self) -> Page<'_> {
        Page { ops: std::mem::take(&mut self.ops), font: &mut self.pdf.font }
    }

    fn put(&mut self, p: String) {
        self.ops = p;
    }

    fn flush(&mut self) -> io::Result<()> {
        let n = self.pages.len() + 1;
        let footer = self.footer.clone();
        let mut p = self.page();
        p.fill_rgb(MUTED);
        p.text(MARGIN, FOOTER_Y, 7.5, false, &footer);
        p.text_right(PAGE_W - MARGIN, FOOTER_Y, 7.5, false, &format!("Page {n}"));
        let ops = p.ops;
        let id = self.pdf.write_page(&mut self.out, &ops)?;
        self.pages.push(id);
        self.y = PAGE_H - MARGIN;
        Ok(())
    }

    /// Room for `h` points on this page, else a new page.
    fn room(&mut self, h: f32) -> io::Result<()> {
        if self.y - h < BOTTOM {
            self.flush()?;
        }
        Ok(())
    }

    fn heading(&mut self, text: &str) -> io::Result<()> {
        self.header = None;
        self.room(60.0)?;
        self.y -= 8.0;
        let y = self.y - 14.0;
        let mut p = self.page();
        p.fill_rgb(INK);
        p.text(MARGIN, y, 14.0, true, text);
        p.fill_rgb(ACCENT);
        p.line(MARGIN, y - 5.0, PAGE_W - MARGIN, y - 5.0, 0.8);
        let ops = p.ops;
        self.put(ops);
        self.y = y - 18.0;
        Ok(())
    }

    /// A paragraph, wrapped to the page.
    fn para(&mut self, text: &str, size: f32, tint: (f32, f32, f32)) -> io::Result<()> {
        let lines = self.pdf.font.wrap(text, PAGE_W - 2.0 * MARGIN, size);
        for l in lines {
            self.room(size + 4.0)?;
            let y = self.y - size;
            let mut p = self.page();
            p.fill_rgb(tint);
            p.text(MARGIN, y, size, false, &l);
            let ops = p.ops;
            self.put(ops);
            self.y -= size + 4.0;
        }
        Ok(())
    }

    /// A table row: cells (x offset, width, text, bold); the last cell
    /// wraps, the others are cut to fit. `tint`: the status cell's colour.
    fn row(
        &mut self,
        cells: &[(f32, f32, String, bool)],
        status: Option<(usize, CheckStatus)>,
        head: bool,
    ) -> io::Result<()> {
        let size = 8.0;
        let (last_x, last_w, last_text, _) = cells.last().cloned().unwrap_or_default();
        let wrapped = self.pdf.font.wrap(&last_text, last_w, size);
        let lines = wrapped.len().clamp(1, 12);
        let h = lines as f32 * (size + 3.0) + 4.0;
        if head {
            self.header = Some(cells.to_vec());
            self.room(h + 20.0)?;
        } else if self.y - h < BOTTOM {
            self.flush()?;
            if let Some(header) = self.header.clone() {
                self.row(&header, None, true)?;
            }
        }
        let top = self.y;
        let mut p = self.page();
        if head {
            p.fill_rgb(HEAD_BG);
            p.rect(MARGIN - 2.0, top - h + 1.0, PAGE_W - 2.0 * MARGIN + 4.0, h);
        }
        for (i, (x, w, text, bold)) in cells.iter().enumerate().take(cells.len() - 1) {
            let tint = match status {
                Some((c, s)) if c == i => color(s),
                _ if head => WHITE,
                _ => INK,
            };
            p.fill_rgb(tint);
            let t = p.font.fit(text, *w - 4.0, size);
            p.text(MARGIN + x, top - size - 1.0, size, *bold || head, &t);
        }
        p.fill_rgb(if head { WHITE } else { INK });
        for (i, l) in wrapped.iter().take(lines).enumerate() {
            p.text(MARGIN + last_x, top - size - 1.0 - i as f32 * (size + 3.0), size, head, l);
        }
        if !head {
            p.fill_rgb(STRIPE);
            p.line(MARGIN, top - h + 1.0, PAGE_W - MARGIN, top - h + 1.0, 0.4);
        }
        let ops = p.ops;
        self.put(ops);
        self.y -= h;
        Ok(())
    }

    fn cover(&mut self, json_sha256: &str) -> io::Result<()> {
        let r = self.report;
        let mut p = self.page();
        p.fill_rgb(HEAD_BG);
        p.rect(0.0, PAGE_H - 120.0, PAGE_W, 120.0);
        p.fill_rgb(WHITE);
        p.text(MARGIN + 10.0, PAGE_H - 66.0, 24.0, true, "Compliance evidence report");
        p.text(
            MARGIN + 10.0,
            PAGE_H - 94.0,
            13.0,
            false,
            &format!("{} · {} to {}", r.framework.name, r.period_from, r.period_to),
        );
        let (rect_x, rect_y) = (PAGE_W - MARGIN - 190.0, PAGE_H - 100.0);
        p.fill_rgb(color(r.status));
        p.rect(rect_x, rect_y, 180.0, 40.0);
        p.fill_rgb(WHITE);
        p.text(rect_x + 10.0, rect_y + 24.0, 8.0, false, "Over the period");
        p.text(rect_x + 10.0, rect_y + 8.0, 13.0, true, label(r.status));
        let checkpoint = match &r.checkpoint {
            Some(c) => format!("tree size {}, root {}", c.size, c.root),
            None => "none: the ledger is empty".into(),
        };
        let rows: Vec<(&str, String)> = vec![
            ("Organisation", r.organisation.clone().unwrap_or_else(|| "(not set: [reports] organisation)".into())),
            ("Framework", format!("{} ({})", r.framework.name, r.framework.id)),
            ("Period (UTC)", format!("{} to {}, {} days", r.period_from, r.period_to, r.days)),
            ("Status", r.summary.clone()),
            ("Daily snapshots", format!("{} of {} days; {} missing", r.snapshots, r.days, r.missing_days.len())),
            ("Generated by", r.generated_by.clone()),
            ("Generated at", r.generated_at.clone()),
            ("Ledger", r.origin.clone()),
            ("Signed checkpoint", checkpoint),
            ("JSON twin SHA-256", json_sha256.to_owned()),
            ("Sample seed", r.sample.seed.clone()),
            ("Report id", r.id.to_string()),
        ];
        let mut y = PAGE_H - 160.0;
        for (k, v) in rows {
            p.fill_rgb(MUTED);
            p.text(MARGIN + 10.0, y, 10.0, false, k);
            p.fill_rgb(INK);
            let v = p.font.fit(&v, PAGE_W - 2.0 * MARGIN - 170.0, 10.0);
            p.text(MARGIN + 170.0, y, 10.0, false, &v);
            y -= 19.0;
        }
        p.fill_rgb(MUTED);
        for (i, l) in [
            "Each control's status over the period is its worst day's, from the daily compliance snapshots the server",
            "recorded in the ledger; a day without a snapshot is a gap, shown and never filled in. This PDF and its JSON twin",
            "are each signed by a manifest: check them with `custos verify-export FILE MANIFEST --public-key KEY`.",
        ]
        .iter()
        .enumerate()
        {
            p.text(MARGIN + 10.0, MARGIN + 40.0 - i as f32 * 11.0, 8.5, false, l);
        }
        let ops = p.ops;
        self.put(ops);
        self.flush()
    }

    /// Controls with a strip of their daily status.
    fn controls(&mut self) -> io::Result<()> {
        self.heading("Controls over the period")?;
        self.para(
            "One cell per day, oldest first: green passed, amber a warning, red failed, grey no evidence or not \
             configured, pale a day without a snapshot.",
            8.0,
            MUTED,
        )?;
        let r = self.report;
        let strip_x = 420.0;
        let strip_w = PAGE_W - 2.0 * MARGIN - strip_x;
        for c in &r.controls {
            self.room(44.0)?;
            let top = self.y;
            let cell = (strip_w / c.daily.chars().count().max(1) as f32).min(12.0);
            let mut p = self.page();
            p.fill_rgb(INK);
            p.text(MARGIN, top - 10.0, 9.5, true, &c.id);
            let t = p.font.fit(&c.title, 250.0, 9.0);
            p.text(MARGIN + 70.0, top - 10.0, 9.0, false, &t);
            p.fill_rgb(color(c.status));
            p.text(MARGIN + 330.0, top - 10.0, 9.0, true, label(c.status));
            p.fill_rgb(MUTED);
            let d = p.font.fit(&format!("{} · checks: {}", days_text(&c.days), c.checks.join(", ")), 340.0, 7.5);
            p.text(MARGIN + 70.0, top - 22.0, 7.5, false, &d);
            for (i, letter) in c.daily.chars().enumerate() {
                let tint = match letter {
                    'P' => PASS,
                    'W' => WARN,
                    'F' => FAIL,
                    'N' | 'C' => GREY,
                    _ => GAP,
                };
                p.fill_rgb(tint);
                p.rect(MARGIN + strip_x + i as f32 * cell, top - 20.0, (cell - 0.6).max(0.4), 12.0);
            }
            if !c.failing_days.is_empty() {
                p.fill_rgb(FAIL);
                let f =
                    p.font.fit(&format!("Failed on {}", c.failing_days.join(", ")), PAGE_W - 2.0 * MARGIN - 70.0, 7.5);
                p.text(MARGIN + 70.0, top - 33.0, 7.5, false, &f);
            }
            let ops = p.ops;
            self.put(ops);
            self.y -= if c.failing_days.is_empty() { 32.0 } else { 42.0 };
        }
        Ok(())
    }

    fn checks(&mut self) -> io::Result<()> {
        self.heading("Checks")?;
        let cols =
            [(0.0, 120.0), (120.0, 170.0), (290.0, 70.0), (360.0, 170.0), (530.0, PAGE_W - 2.0 * MARGIN - 530.0)];
        let head = ["Check", "What", "Period", "Days", "Last found"];
        self.row(&cells(&cols, &head.map(String::from)), None, true)?;
        for c in &self.report.checks {
            let texts = [
                c.id.clone(),
                c.title.clone(),
                label(c.status).to_owned(),
                days_text(&c.days),
                c.last_detail.clone().unwrap_or_else(|| "—".into()),
            ];
            self.row(&cells(&cols, &texts), Some((2, c.status)), false)?;
        }
        Ok(())
    }

    fn classes(&mut self) -> io::Result<()> {
        let r = self.report;
        self.heading("Events the framework asks to be recorded")?;
        let cols = [(0.0, 70.0), (70.0, 260.0), (330.0, 70.0), (400.0, PAGE_W - 2.0 * MARGIN - 400.0)];
        self.row(&cells(&cols, &["Requirement", "Class", "Events", "Search"].map(String::from)), None, true)?;
        for c in &r.event_classes {
            let search: Vec<String> = c.filters.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let count = if c.flagged { "0 — none".to_owned() } else { group_digits(c.count) };
            let texts = [c.id.clone(), c.title.clone(), count, search.join(" & ")];
            let status = if c.flagged { CheckStatus::Fail } else { CheckStatus::Pass };
            self.row(&cells(&cols, &texts), Some((2, status)), false)?;
        }
        if r.event_classes.iter().any(|c| c.flagged) {
            self.para("Classes with no event in the period are flagged: the auditor should ask why.", 8.0, FAIL)?;
        }
        // The counts as bars (plotters).
        self.room(170.0)?;
        let (x, y, w, h) = (MARGIN, self.y - 165.0, PAGE_W - 2.0 * MARGIN, 160.0);
        let data: Vec<(String, u64)> = r.event_classes.iter().map(|c| (c.id.clone(), c.count)).collect();
        let mut canvas = PdfCanvas { ops: std::mem::take(&mut self.ops), font: &mut self.pdf.font, x, y, w, h };
        draw_bars(&mut canvas, &data).map_err(|e| io::Error::other(format!("chart: {e}")))?;
        self.ops = canvas.ops;
        self.y -= 170.0;
        Ok(())
    }

    fn verifications(&mut self) -> io::Result<()> {
        let v = &self.report.verifications;
        self.heading("Verifications of the ledger")?;
        self.para(
            &format!(
                "{} verifications in the period: {} intact, {} failed; {} of the whole ledger; the whole ledger was \
                 verified intact on {} of {} days.",
                v.total, v.intact, v.failed, v.full, v.days_verified, self.report.days
            ),
            9.0,
            INK,
        )?;
        if v.items.is_empty() {
            return Ok(());
        }
        let cols = [
            (0.0, 70.0),
            (70.0, 150.0),
            (220.0, 90.0),
            (310.0, 70.0),
            (380.0, 100.0),
            (480.0, PAGE_W - 2.0 * MARGIN - 480.0),
        ];
        self.row(
            &cells(&cols, &["Seq", "When", "Outcome", "Scope", "Entries checked", "Failed at"].map(String::from)),
            None,
            true,
        )?;
        for i in &v.items {
            let st = if i.outcome == "success" { CheckStatus::Pass } else { CheckStatus::Fail };
            let texts = [
                i.seq.to_string(),
                i.at.clone(),
                i.outcome.clone(),
                if i.full { "whole ledger" } else { "a range" }.to_owned(),
                group_digits(i.entries_checked),
                i.failed_at_seq.map_or_else(|| "—".into(), |s| format!("seq {s}")),
            ];
            self.row(&cells(&cols, &texts), Some((2, st)), false)?;
        }
        Ok(())
    }

    fn operations(&mut self) -> io::Result<()> {
        let r = self.report;
        self.heading("Retention, backups, alerting and forwarding")?;
        let cols = [(0.0, 90.0), (90.0, 90.0), (180.0, 250.0), (430.0, PAGE_W - 2.0 * MARGIN - 430.0)];
        self.row(&cells(&cols, &["Area", "Last status", "In the period", "Last found"].map(String::from)), None, true)?;
        for o in &r.operations {
            let counts: Vec<String> = o
                .counts
                .iter()
                .map(|(a, n)| format!("{} {}", group_digits(*n), a.rsplit('.').next().unwrap_or(a)))
                .collect();
            let texts = [o.label.clone(), o.status.map_or("—", label).to_owned(), counts.join(", "), o.detail.clone()];
            self.row(&cells(&cols, &texts), o.status.map(|s| (1, s)), false)?;
        }
        Ok(())
    }

    fn policies(&mut self) -> io::Result<()> {
        let r = self.report;
        self.heading("Policy changes and their approvals")?;
        if r.policy_changes.is_empty() {
            return self.para("No policy change in the period.", 9.0, INK);
        }
        if r.policy_changes_total > r.policy_changes.len() as u64 {
            self.para(
                &format!(
                    "The newest {} of {} steps (all in the JSON twin's trail search).",
                    r.policy_changes.len(),
                    r.policy_changes_total
                ),
                8.0,
                MUTED,
            )?;
        }
        let cols = [
            (0.0, 140.0),
            (140.0, 90.0),
            (230.0, 50.0),
            (280.0, 90.0),
            (370.0, 140.0),
            (510.0, PAGE_W - 2.0 * MARGIN - 510.0),
        ];
        self.row(
            &cells(&cols, &["When", "Policy", "Version", "Step", "By", "Approved by"].map(String::from)),
            None,
            true,
        )?;
        for c in &r.policy_changes {
            let approvals = if c.alone {
                "alone (no second person)".to_owned()
            } else if c.approvers.is_empty() {
                "—".to_owned()
            } else {
                c.approvers.join(", ")
            };
            let texts = [c.at.clone(), c.kind.clone(), c.version.to_string(), c.step.clone(), c.by.clone(), approvals];
            self.row(&cells(&cols, &texts), None, false)?;
        }
        Ok(())
    }

    fn sample(&mut self) -> io::Result<()> {
        let r = self.report;
        self.heading("Sample for the auditor's tests")?;
        self.para(
            &format!(
                "Seed {} ({}): event i of control c is the one at position SHA-256(custos.report.sample.v1, seed, c, i) modulo the population, in \
                 ledger order; the same seed draws the same events. Each is provable with its leaf hash and the \
                 checkpoint on the cover.",
                r.sample.seed,
                if r.seed_chosen { "chosen by whoever asked" } else { "drawn by the server" }
            ),
            8.0,
            MUTED,
        )?;
        let cols = [
            (0.0, 60.0),
            (60.0, 70.0),
            (130.0, 150.0),
            (280.0, 150.0),
            (430.0, 60.0),
            (490.0, PAGE_W - 2.0 * MARGIN - 490.0),
        ];
        self.row(
            &cells(&cols, &["Control", "Seq", "Occurred", "Action", "Outcome", "Actor · leaf hash"].map(String::from)),
            None,
            true,
        )?;
        for c in &r.sample.controls {
            if c.events.is_empty() {
                let search: Vec<String> = c.filters.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let texts = [
                    c.control.clone(),
                    "—".into(),
                    format!("population {}", c.population),
                    search.join(" & "),
                    String::new(),
                    "nothing to draw".into(),
                ];
                self.row(&cells(&cols, &texts), None, false)?;
            }
            for e in &c.events {
                let texts = [
                    c.control.clone(),
                    e.seq.to_string(),
                    e.occurred_at.clone(),
                    e.action.clone(),
                    e.outcome.clone(),
                    format!("{} · {}", e.actor, e.leaf_hash),
                ];
                self.row(&cells(&cols, &texts), None, false)?;
            }
        }
        Ok(())
    }

    fn exceptions(&mut self) -> io::Result<()> {
        let r = self.report;
        self.heading("Exceptions")?;
        if r.exceptions.is_empty() {
            self.para("Every check passed on every day with a snapshot.", 9.0, INK)?;
        } else {
            if r.exceptions_total > r.exceptions.len() as u64 {
                self.para(
                    &format!(
                        "The first {} of {} (failures first); all are in the snapshots.",
                        r.exceptions.len(),
                        r.exceptions_total
                    ),
                    8.0,
                    MUTED,
                )?;
            }
            let cols = [(0.0, 80.0), (80.0, 150.0), (230.0, 90.0), (320.0, PAGE_W - 2.0 * MARGIN - 320.0)];
            self.row(&cells(&cols, &["Day", "Check", "Status", "What it found"].map(String::from)), None, true)?;
            for e in &r.exceptions {
                let texts = [e.day.clone(), e.check.clone(), label(e.status).to_owned(), e.detail.clone()];
                self.row(&cells(&cols, &texts), Some((2, e.status)), false)?;
            }
        }
        if !r.missing_days.is_empty() {
            self.heading("Days without a snapshot")?;
            self.para(&r.missing_days.join(", "), 8.0, INK)?;
        }
        if !r.unverified_days.is_empty() {
            self.heading("Snapshots not used")?;
            self.para(
                &format!(
                    "These days' snapshots no longer match their sealed records (or the records are gone), so they \
                     are not used: {}",
                    r.unverified_days.join(", ")
                ),
                8.0,
                FAIL,
            )?;
        }
        Ok(())
    }
}

fn cells(cols: &[(f32, f32)], texts: &[String]) -> Vec<(f32, f32, String, bool)> {
    cols.iter().zip(texts).map(|((x, w), t)| (*x, *w, t.clone(), false)).collect()
}

/// The event classes' counts as bars, drawn by plotters.
fn draw_bars(canvas: &mut PdfCanvas<'_>, data: &[(String, u64)]) -> Result<(), String> {
    let root = plotters::drawing::IntoDrawingArea::into_drawing_area(canvas);
    let max = data.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let n = data.len().max(1) as u32;
    let mut chart = ChartBuilder::on(&root)
        .caption("Events per class in the period", ("sans-serif", 11))
        .margin(6)
        .x_label_area_size(22)
        .y_label_area_size(52)
        .build_cartesian_2d((0u32..n).into_segmented(), 0u64..max + max / 10 + 1)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(TRANSPARENT)
        .y_desc("events")
        .x_labels(data.len().max(1))
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                data.get(*i as usize).map(|(k, _)| k.clone()).unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        })
        .label_style(("sans-serif", 8))
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(
            Histogram::vertical(&chart)
                .style(RGBColor(41, 102, 184).filled())
                .margin(8)
                .data(data.iter().enumerate().map(|(i, (_, c))| (i as u32, *c))),
        )
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

/// Writes `report` as a PDF; `json_sha256` is its JSON twin's digest.
pub fn write_report(report: &EvidenceReport, json_sha256: &str) -> io::Result<Vec<u8>> {
    let cover = Cover { origin: report.origin.clone(), generated_by: report.generated_by.clone(), ..Cover::default() };
    let mut doc = Doc {
        pdf: PdfSink::new(cover)?,
        out: Vec::with_capacity(256 * 1024),
        ops: String::new(),
        y: PAGE_H - MARGIN,
        pages: Vec::new(),
        footer: format!(
            "Custos evidence report · {} · {} to {} · report {}",
            report.framework.name, report.period_from, report.period_to, report.id
        ),
        report,
        header: None,
    };
    doc.pdf.raw(&mut doc.out, b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")?;
    doc.cover(json_sha256)?;
    doc.controls()?;
    doc.checks()?;
    doc.classes()?;
    doc.verifications()?;
    doc.operations()?;
    doc.policies()?;
    doc.sample()?;
    doc.exceptions()?;
    doc.flush()?;
    let info = (
        format!("{} evidence report, {} to {}", report.framework.name, report.period_from, report.period_to),
        report.generated_by.clone(),
        format!("{}; JSON twin SHA-256 {json_sha256}", report.summary),
    );
    let kids = doc.pages.clone();
    let mut out = std::mem::take(&mut doc.out);
    doc.pdf.close(&mut out, &kids, &info)?;
    Ok(out)
}
