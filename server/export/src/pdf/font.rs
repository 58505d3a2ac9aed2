//! The embedded font: DejaVu Sans read with ttf-parser, its widths, the
//! glyphs a text needs, and the objects that embed it (a CID font with a
//! ToUnicode map, so text can be searched and copied).

use super::*;

/// The embedded font: glyph lookup, advances, and the glyphs used (for the
/// widths array and the ToUnicode map written at the end).
pub(super) struct Font {
    pub(super) face: ttf_parser::Face<'static>,
    pub(super) upem: f32,
    pub(super) used: BTreeMap<u16, char>,
}

impl Font {
    pub(super) fn load() -> io::Result<Font> {
        let face = ttf_parser::Face::parse(FONT, 0).map_err(|e| io::Error::other(format!("font: {e}")))?;
        let upem = f32::from(face.units_per_em());
        Ok(Font { face, upem, used: BTreeMap::new() })
    }

    pub(super) fn glyph(&self, c: char) -> u16 {
        self.face.glyph_index(c).map_or(0, |g| g.0)
    }

    pub(super) fn advance(&self, gid: u16) -> f32 {
        f32::from(self.face.glyph_hor_advance(ttf_parser::GlyphId(gid)).unwrap_or(0))
    }

    /// Width of `text` at `size` points.
    pub(super) fn width(&self, text: &str, size: f32) -> f32 {
        text.chars().map(|c| self.advance(self.glyph(c))).sum::<f32>() * size / self.upem
    }

    /// `text` as a hex string of glyph ids, recording what was used.
    pub(super) fn encode(&mut self, text: &str) -> String {
        let mut s = String::with_capacity(text.len() * 4 + 2);
        s.push('<');
        for c in text.chars() {
            let c = if c.is_control() { ' ' } else { c };
            let g = self.glyph(c);
            self.used.entry(g).or_insert(c);
            let _ = write!(s, "{g:04X}");
        }
        s.push('>');
        s
    }

    /// `text` cut (with an ellipsis) to fit `width` at `size`.
    pub(super) fn fit(&self, text: &str, width: f32, size: f32) -> String {
        let one_line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        if self.width(&one_line, size) <= width {
            return one_line;
        }
        let limit = width - self.width("…", size);
        let mut out = String::new();
        let mut w = 0.0;
        for c in one_line.chars() {
            let cw = self.advance(self.glyph(c)) * size / self.upem;
            if w + cw > limit {
                break;
            }
            w += cw;
            out.push(c);
        }
        out.push('…');
        out
    }
}
