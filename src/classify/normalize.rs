//! Text folding before matching. Keeps, for every byte of the folded text, the character
//! index in the original so explanations point at what the customer wrote.

use std::collections::HashMap;

pub struct Folded {
    pub text: String,
    /// Original character index of each folded byte (len = text.len() + 1).
    pos: Vec<u32>,
    /// Original byte offset of each original character (len = chars + 1).
    orig_bytes: Vec<u32>,
}

impl Folded {
    pub fn new(input: &str, variants: &HashMap<char, char>) -> Folded {
        let mut text = String::with_capacity(input.len());
        let mut pos = Vec::with_capacity(input.len() + 1);
        let mut orig_bytes = Vec::with_capacity(input.len() + 1);
        let mut last_space = false;
        for (ci, (bi, c)) in input.char_indices().enumerate() {
            orig_bytes.push(bi as u32);
            let mut c = match c as u32 {
                0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
                0x3000 => ' ',
                _ => c,
            };
            if c.is_whitespace() {
                if last_space || text.is_empty() {
                    continue;
                }
                last_space = true;
                text.push(' ');
                pos.push(ci as u32);
                continue;
            }
            last_space = false;
            if c.is_ascii_uppercase() {
                c = c.to_ascii_lowercase();
            } else if !c.is_ascii() && c.is_uppercase() {
                let mut l = c.to_lowercase();
                if let (Some(one), None) = (l.next(), l.next()) {
                    c = one;
                }
            }
            if let Some(&v) = variants.get(&c) {
                c = v;
            }
            let before = text.len();
            text.push(c);
            for _ in before..text.len() {
                pos.push(ci as u32);
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
