//! The embedded font: DejaVu Sans read with ttf-parser, its widths, the
//! glyphs a text needs, and the objects that embed it (a CID font with a
//! ToUnicode map, so text can be searched and copied). Only the glyphs a
//! report uses are embedded (`subsetter`, the subsetter typst uses): a
//! report carries tens of KB of font, not the whole 760 KB file.

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

    /// `text` broken into lines no wider than `width` at `size`, at
    /// spaces where it can be (a word wider than the line is cut).
    pub(super) fn wrap(&self, text: &str, width: f32, size: f32) -> Vec<String> {
        let mut lines = Vec::new();
        for para in text.split('\n') {
            let mut line = String::new();
            for word in para.split(' ') {
                let candidate = if line.is_empty() { word.to_owned() } else { format!("{line} {word}") };
                if self.width(&candidate, size) <= width {
                    line = candidate;
                    continue;
                }
                if !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                }
                let mut w = word.to_owned();
                while self.width(&w, size) > width {
                    let mut cut = String::new();
                    for c in w.chars() {
                        if self.width(&format!("{cut}{c}"), size) > width {
                            break;
                        }
                        cut.push(c);
                    }
                    if cut.is_empty() {
                        break;
                    }
                    w = w[cut.len()..].to_owned();
                    lines.push(cut);
                }
                line = w;
            }
            lines.push(line);
        }
        lines
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

/// The font cut down to `used` glyphs (original ids) and the CIDToGIDMap
/// stream that sends each original id (the CID the pages use) to its id in
/// the subset: two bytes per CID, big-endian, unused ones to 0 (.notdef).
pub(super) fn subset(used: impl Iterator<Item = u16>) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let used: Vec<u16> = used.collect();
    let remapper = subsetter::GlyphRemapper::new_from_glyphs(&used);
    let data = subsetter::subset(FONT, 0, &remapper).map_err(|e| io::Error::other(format!("font subset: {e}")))?;
    let max = used.iter().copied().max().unwrap_or(0) as usize;
    let mut map = vec![0u8; 2 * (max + 1)];
    for g in used {
        let new = remapper.get(g).unwrap_or(0);
        map[2 * g as usize..2 * g as usize + 2].copy_from_slice(&new.to_be_bytes());
    }
    Ok((data, map))
}

/// The subset's PostScript name: a tag of six capitals drawn from the
/// glyphs it holds, `+`, the font's name (PDF 32000-1 9.6.4).
pub(super) fn subset_name(used: impl Iterator<Item = u16>) -> String {
    let mut h: u32 = 2_166_136_261; // FNV-1a over the glyph ids
    for g in used {
        for b in g.to_be_bytes() {
            h = (h ^ u32::from(b)).wrapping_mul(16_777_619);
        }
    }
    let tag: String = (0..6).map(|i| char::from(b'A' + ((h >> (i * 5)) % 26) as u8)).collect();
    format!("{tag}+DejaVuSans")
}
