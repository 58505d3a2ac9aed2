//! One page being drawn: its content stream of PDF operators.

use super::*;

/// A page's content stream under construction.
pub(super) struct Page<'f> {
    pub(super) ops: String,
    pub(super) font: &'f mut Font,
}

impl Page<'_> {
    pub(super) fn text(&mut self, x: f32, y: f32, size: f32, bold: bool, s: &str) {
        let enc = self.font.encode(s);
        // Bold: fill and stroke the outline (one embedded face keeps
        // every export under a megabyte of font).
        let mode = if bold { "2 Tr 0.35 w" } else { "0 Tr" };
        let _ = writeln!(self.ops, "BT /F1 {size:.1} Tf {mode} {x:.2} {y:.2} Td {enc} Tj ET");
    }

    pub(super) fn text_right(&mut self, right: f32, y: f32, size: f32, bold: bool, s: &str) {
        let w = self.font.width(s, size);
        self.text(right - w, y, size, bold, s);
    }

    pub(super) fn fill_rgb(&mut self, (r, g, b): (f32, f32, f32)) {
        let _ = writeln!(self.ops, "{r:.3} {g:.3} {b:.3} rg {r:.3} {g:.3} {b:.3} RG");
    }

    pub(super) fn rect(&mut self, x: f32, y: f32, w: f32, h: f32) {
        let _ = writeln!(self.ops, "{x:.2} {y:.2} {w:.2} {h:.2} re f");
    }

    pub(super) fn line(&mut self, x1: f32, y1: f32, x2: f32, y2: f32, width: f32) {
        let _ = writeln!(self.ops, "{width:.2} w {x1:.2} {y1:.2} m {x2:.2} {y2:.2} l S");
    }
}
