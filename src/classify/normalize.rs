//! Text folding before matching: full-width → half-width, case, the rules' character variants
//! (Traditional → Simplified), whitespace runs → one space. `FoldTable` precomputes the
//! mapping for the Basic Multilingual Plane so the hot path is one table lookup per character;
//! `Folded` also keeps, for every byte of the folded text, the character index in the original
//! so explanations point at what the customer wrote.

use std::collections::HashMap;

/// Marks whitespace in the table.
const SPACE: char = '\u{0}';

pub struct FoldTable {
    /// Bit `c` set: BMP character `c` folds to itself (most Han text), checked in an 8 KB
    /// bitmap that stays in cache instead of the 256 KB table.
    same: Box<[u64]>,
    bmp: Box<[char]>,
    variants: HashMap<char, char>,
}

impl FoldTable {
    pub fn new(variants: &HashMap<char, char>) -> FoldTable {
        let mut bmp = Vec::with_capacity(0x10000);
        for u in 0u32..0x10000 {
            let c = char::from_u32(u).unwrap_or('\u{FFFD}');
            bmp.push(fold_slow(c, variants));
        }
        let mut same = vec![0u64; 0x10000 / 64];
        for (u, &f) in bmp.iter().enumerate() {
            if f as usize == u && f != SPACE && char::from_u32(u as u32).is_some() {
                same[u / 64] |= 1 << (u % 64);
            }
        }
        FoldTable {
            same: same.into_boxed_slice(),
            bmp: bmp.into_boxed_slice(),
            variants: variants.clone(),
        }
    }

    /// The folded character, or `None` for whitespace.
    #[inline]
    pub fn fold(&self, c: char) -> Option<char> {
        let f = if (c as u32) < 0x10000 {
            self.bmp[c as usize]
        } else {
            fold_slow(c, &self.variants)
        };
        (f != SPACE).then_some(f)
    }

    /// Folds `input` into `out` (cleared first), without position tracking.
    pub fn fold_into(&self, input: &str, out: &mut String) {
        out.clear();
        let mut last_space = true;
        for c in input.chars() {
            let u = c as u32;
            if u < 0x10000 && (self.same[(u / 64) as usize] >> (u % 64)) & 1 == 1 {
                out.push(c);
                last_space = false;
                continue;
            }
            match self.fold(c) {
                None => {
                    if !last_space {
                        out.push(' ');
                        last_space = true;
                    }
                }
                Some(f) => {
                    out.push(f);
                    last_space = false;
                }
            }
        }
        if out.ends_with(' ') {
            out.pop();
        }
    }
}

fn fold_slow(c: char, variants: &HashMap<char, char>) -> char {
    let mut c = match c as u32 {
        0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        0x3000 => ' ',
        _ => c,
    };
    if c.is_whitespace() || c == '\u{0}' {
        return SPACE;
    }
    if c.is_ascii_uppercase() {
        c = c.to_ascii_lowercase();
    } else if !c.is_ascii() && c.is_uppercase() {
        let mut l = c.to_lowercase();
        if let (Some(one), None) = (l.next(), l.next()) {
            c = one;
        }
    }
    variants.get(&c).copied().unwrap_or(c)
}

pub struct Folded {
    pub text: String,
    /// Original character index of each folded byte (len = text.len() + 1).
    pos: Vec<u32>,
    /// Original byte offset of each original character (len = chars + 1).
    orig_bytes: Vec<u32>,
}

impl Folded {
    pub fn new(input: &str, table: &FoldTable) -> Folded {
        let mut text = String::with_capacity(input.len());
        let mut pos = Vec::with_capacity(input.len() + 1);
        let mut orig_bytes = Vec::with_capacity(input.len() + 1);
        let mut last_space = true;
        for (ci, (bi, c)) in input.char_indices().enumerate() {
            orig_bytes.push(bi as u32);
            match table.fold(c) {
                None => {
                    if !last_space {
                        last_space = true;
                        text.push(' ');
                        pos.push(ci as u32);
                    }
                }
                Some(f) => {
                    last_space = false;
                    let before = text.len();
                    text.push(f);
                    for _ in before..text.len() {
                        pos.push(ci as u32);
                    }
                }
            }
        }
        let nchars = orig_bytes.len();
        orig_bytes.push(input.len() as u32);
        if text.ends_with(' ') {
            text.pop();
            pos.pop();
        }
        pos.push(nchars as u32);
        Folded {
            text,
            pos,
            orig_bytes,
        }
    }

    /// Character index in the original of folded byte offset `b` (a match start).
    pub fn char_pos(&self, b: usize) -> usize {
        self.pos[b.min(self.pos.len() - 1)] as usize
    }

    /// Character index one past the original character of folded byte `e - 1` (a match end).
    pub fn char_end(&self, e: usize) -> usize {
        if e == 0 {
            0
        } else {
            self.pos[e - 1] as usize + 1
        }
    }

    /// The original text behind folded bytes `s..e`.
    pub fn original<'a>(&self, input: &'a str, s: usize, e: usize) -> &'a str {
        let cs = self.char_pos(s);
        let ce = self.char_end(e);
        let bs = self.orig_bytes[cs] as usize;
        let be = self.orig_bytes[ce.min(self.orig_bytes.len() - 1)] as usize;
        &input[bs..be.max(bs)]
    }
}
