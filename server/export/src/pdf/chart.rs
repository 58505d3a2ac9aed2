//! The summary chart, drawn by plotters through a backend that emits PDF
//! operators into the page.

use super::*;
use custos_engine::time::DAY_US;

/// Events per bucket over the summary's period, as bars.
pub(super) fn draw_histogram(canvas: &mut PdfCanvas<'_>, s: &Summary) -> Result<(), String> {
    let (width_us, label) = s.bucket();
    let series = s.series(width_us);
    let root = plotters::drawing::IntoDrawingArea::into_drawing_area(canvas);
    let max = series.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let n = series.len().max(1) as u32;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("Events per {label} (UTC)"), ("sans-serif", 12))
        .margin(6)
        .x_label_area_size(28)
        .y_label_area_size(52)
        .build_cartesian_2d((0u32..n).into_segmented(), 0u64..max + max / 10 + 1)
        .map_err(|e| e.to_string())?;
    let labels: Vec<String> = series
        .iter()
        .map(|(start, _)| {
            let t = custos_engine::time::rfc3339(*start);
            if width_us >= DAY_US {
                t.get(..10).unwrap_or(&t).to_owned()
            } else {
                t.get(5..16).unwrap_or(&t).replace('T', " ")
            }
        })
        .collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(TRANSPARENT)
        .y_desc("events")
        .x_labels(8)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
            SegmentValue::Last => String::new(),
        })
        .label_style(("sans-serif", 8))
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(
            Histogram::vertical(&chart)
                .style(RGBColor(41, 102, 184).filled())
                .margin(1)
                .data(series.iter().enumerate().map(|(i, (_, c))| (i as u32, *c))),
        )
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

/// A plotters backend drawing into a PDF content stream: plotters' pixels
/// are points, its origin the top left of the box at (`x`, `y` + `h`).
pub(super) struct PdfCanvas<'f> {
    pub(super) ops: String,
    pub(super) font: &'f mut Font,
    pub(super) x: f32,
    pub(super) y: f32,
    pub(super) w: f32,
    pub(super) h: f32,
}

impl PdfCanvas<'_> {
    pub(super) fn at(&self, (px, py): BackendCoord) -> (f32, f32) {
        (self.x + px as f32, self.y + self.h - py as f32)
    }

    pub(super) fn color(&mut self, c: BackendColor) -> bool {
        if c.alpha <= 0.0 {
            return false;
        }
        // Alpha blended against white (the page).
        let mix = |v: u8| 1.0 - (1.0 - f32::from(v) / 255.0) * c.alpha as f32;
        let (r, g, b) = (mix(c.rgb.0), mix(c.rgb.1), mix(c.rgb.2));
        let _ = writeln!(self.ops, "{r:.3} {g:.3} {b:.3} rg {r:.3} {g:.3} {b:.3} RG");
        true
    }
}

#[derive(Debug)]
pub(super) struct CanvasError;

impl std::fmt::Display for CanvasError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PDF canvas error")
    }
}

impl std::error::Error for CanvasError {}

impl plotters_backend::DrawingBackend for &mut PdfCanvas<'_> {
    type ErrorType = CanvasError;

    fn get_size(&self) -> (u32, u32) {
        (self.w as u32, self.h as u32)
    }

    fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<CanvasError>> {
        Ok(())
    }

    fn present(&mut self) -> Result<(), DrawingErrorKind<CanvasError>> {
        Ok(())
    }

    fn draw_pixel(&mut self, point: BackendCoord, color: BackendColor) -> Result<(), DrawingErrorKind<CanvasError>> {
        if self.color(color) {
            let (x, y) = self.at(point);
            let _ = writeln!(self.ops, "{x:.2} {:.2} 1 1 re f", y - 1.0);
        }
        Ok(())
    }

    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), DrawingErrorKind<CanvasError>> {
        if self.color(style.color()) {
            let ((x1, y1), (x2, y2)) = (self.at(from), self.at(to));
            let w = style.stroke_width().max(1) as f32 * 0.5;
            let _ = writeln!(self.ops, "{w:.2} w {x1:.2} {y1:.2} m {x2:.2} {y2:.2} l S");
        }
        Ok(())
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<CanvasError>> {
        if self.color(style.color()) {
            let ((x1, y1), (x2, y2)) = (self.at(upper_left), self.at(bottom_right));
            let (x, y, w, h) = (x1.min(x2), y1.min(y2), (x2 - x1).abs(), (y2 - y1).abs());
            if fill {
                let _ = writeln!(self.ops, "{x:.2} {y:.2} {w:.2} {h:.2} re f");
            } else {
                let _ = writeln!(self.ops, "0.5 w {x:.2} {y:.2} {w:.2} {h:.2} re S");
            }
        }
        Ok(())
    }

    fn draw_text<T: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &T,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<CanvasError>> {
        if !self.color(style.color()) {
            return Ok(());
        }
        let size = style.size() as f32;
        let width = self.font.width(text, size);
        let anchor = style.anchor();
        let (mut x, mut y) = self.at(pos);
        x -= match anchor.h_pos {
            HPos::Left => 0.0,
            HPos::Center => width / 2.0,
            HPos::Right => width,
        };
        y -= match anchor.v_pos {
            VPos::Top => size * 0.8,
            VPos::Center => size * 0.35,
            VPos::Bottom => 0.0,
        };
        let enc = self.font.encode(text);
        let _ = writeln!(self.ops, "BT /F1 {size:.1} Tf 0 Tr {x:.2} {y:.2} Td {enc} Tj ET");
        Ok(())
    }

    fn estimate_text_size<T: BackendTextStyle>(
        &self,
        text: &str,
        style: &T,
    ) -> Result<(u32, u32), DrawingErrorKind<CanvasError>> {
        let size = style.size() as f32;
        Ok((self.font.width(text, size).ceil() as u32, size.ceil() as u32))
    }
}
