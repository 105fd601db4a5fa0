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
    /// Drop separators (whitespace, punctuation) between two Han characters.
    join_cjk: bool,
}

/// A Han character (CJK unified ideographs, extension A, compatibility ideographs).
#[inline]
pub fn is_han(c: char) -> bool {
    is_han_u32(c as u32)
}

#[inline(always)]
fn is_han_u32(u: u32) -> bool {
    matches!(u, 0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0xF900..=0xFAFF)
}

/// A character that `join_cjk` drops between two Han characters (after folding, so
/// full-width punctuation is already ASCII): ASCII punctuation, the middle dot, general and
/// CJK punctuation (、。「」…—), and whitespace (which folds to `None`).
#[inline]
pub fn is_separator(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(c as u32, 0xB7 | 0x2000..=0x206F | 0x3000..=0x303F | 0x30FB)
}

/// What `join_cjk` tracks while folding: whether the last kept character was Han, and where
/// (byte offset in the output) a run of separators after it began.
#[derive(Default, Clone, Copy)]
struct Joiner {
    last_han: bool,
    pending: Option<usize>,
}

impl Joiner {
    /// Called before pushing folded character `f` (`None`: whitespace) at output length
    /// `len`; returns the length to truncate the output to first, if any.
    #[inline]
    fn step(&mut self, f: Option<char>, len: usize) -> Option<usize> {
        match f {
            None => {
                if self.last_han && self.pending.is_none() {
                    self.pending = Some(len);
                }
                None
            }
            Some(f) if is_han(f) => {
                self.last_han = true;
                self.pending.take()
            }
            Some(f) if is_separator(f) => {
                if self.last_han && self.pending.is_none() {
                    self.pending = Some(len);
                }
                None
            }
            Some(_) => {
                self.last_han = false;
                self.pending = None;
                None
            }
        }
    }
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
            join_cjk: false,
        }
    }

    /// Also drop whitespace and punctuation between two Han characters ("投 诉" = "投诉").
    pub fn with_join_cjk(mut self, on: bool) -> FoldTable {
        self.join_cjk = on;
        self
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
        if self.join_cjk {
            self.fold_fast::<true>(input, out)
        } else {
            self.fold_fast::<false>(input, out)
        }
    }

    /// Whether BMP code point `u` folds to itself.
    #[inline(always)]
    fn same(&self, u: u32) -> bool {
        (self.same[(u / 64) as usize] >> (u % 64)) & 1 == 1
    }

    /// The hot loop of [`FoldTable::fold_into`]: runs of Han characters that fold to
    /// themselves (most Chinese text) and of lowercase ASCII letters and digits are copied as
    /// slices; anything else goes through the table one character at a time.
    #[inline(always)]
    fn fold_fast<const JOIN: bool>(&self, input: &str, out: &mut String) {
        out.clear();
        let bytes = input.as_bytes();
        let n = bytes.len();
        let mut i = 0;
        let mut last_space = true;
        let mut j = Joiner::default();
        while i < n {
            let start = i;
            // Han: three-byte UTF-8 sequences with lead bytes E3..E9 (U+3400..U+9FFF) and EF
            // (U+F900..U+FAFF).
            while i + 2 < n && matches!(bytes[i], 0xE3..=0xE9 | 0xEF) {
                let u = ((bytes[i] as u32 & 0x0F) << 12)
                    | ((bytes[i + 1] as u32 & 0x3F) << 6)
                    | (bytes[i + 2] as u32 & 0x3F);
                if self.same(u) && is_han_u32(u) {
                    i += 3;
                } else {
                    break;
                }
            }
            if i > start {
                if JOIN {
                    if let Some(t) = j.pending.take() {
                        out.truncate(t);
                    }
                    j.last_han = true;
                }
                out.push_str(&input[start..i]);
                last_space = false;
                continue;
            }
            while i < n && bytes[i].is_ascii_alphanumeric() && self.same(bytes[i] as u32) {
                i += 1;
            }
            if i > start {
                if JOIN {
                    j.last_han = false;
                    j.pending = None;
                }
                out.push_str(&input[start..i]);
                last_space = false;
                continue;
            }
            let Some(c) = input[i..].chars().next() else {
                break;
            };
            i += c.len_utf8();
            let u = c as u32;
            let f = if u < 0x10000 && self.same(u) {
                Some(c)
            } else {
                self.fold(c)
            };
            if JOIN && let Some(t) = j.step(f, out.len()) {
                out.truncate(t);
            }
            match f {
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

    pub(super) fn joins_cjk(&self) -> bool {
        self.join_cjk
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
        let mut j = Joiner::default();
        for (ci, (bi, c)) in input.char_indices().enumerate() {
            orig_bytes.push(bi as u32);
            let f = table.fold(c);
            if table.join_cjk
                && let Some(t) = j.step(f, text.len())
            {
                text.truncate(t);
                pos.truncate(t);
            }
            match f {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast fold (slices of unchanged runs) agrees with the per-character one on
    /// random mixes of Han, variants, ASCII of both cases, spaces, punctuation, full-width
    /// forms and astral characters, with and without joining.
    #[test]
    fn fast_fold_agrees_with_the_reference_fold() {
        let pool: Vec<char> = "投诉網们費宽带㐀豈 \t\n,.!?，。、·…　ＡＢａ１AbZz09-_/😀é\u{0}"
            .chars()
            .collect();
        let variants: HashMap<char, char> = [('網', '网'), ('費', '费'), ('b', 'p')].into();
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for join in [false, true] {
            let t = FoldTable::new(&variants).with_join_cjk(join);
            let mut out = String::new();
            for _ in 0..20_000 {
                let len = (next() % 12) as usize;
                let s: String = (0..len)
                    .map(|_| pool[(next() % pool.len() as u64) as usize])
                    .collect();
                t.fold_into(&s, &mut out);
                assert_eq!(out, Folded::new(&s, &t).text, "join {join}: {s:?}");
            }
        }
    }

    fn fold(t: &FoldTable, s: &str) -> String {
        let mut o = String::new();
        t.fold_into(s, &mut o);
        assert_eq!(o, Folded::new(s, t).text, "both folds agree on {s:?}");
        o
    }

    #[test]
    fn join_cjk_drops_spaces_and_punctuation_between_han_only() {
        let t = FoldTable::new(&HashMap::new()).with_join_cjk(true);
        assert_eq!(fold(&t, "投 诉"), "投诉");
        assert_eq!(fold(&t, "投\u{3000}诉"), "投诉");
        assert_eq!(fold(&t, "投-诉"), "投诉");
        assert_eq!(fold(&t, "投 . * 诉！！"), "投诉!!");
        assert_eq!(fold(&t, "我要 投…诉，谢谢"), "我要投诉谢谢");
        // Not between two Han characters: kept.
        assert_eq!(fold(&t, "wifi 一直 断"), "wifi 一直断");
        assert_eq!(fold(&t, "no  signal!"), "no signal!");
        assert_eq!(fold(&t, "５Ｇ 信号"), "5g 信号");
        let off = FoldTable::new(&HashMap::new());
        assert_eq!(fold(&off, "投 诉"), "投 诉");
    }

    #[test]
    fn joined_positions_point_at_the_original() {
        let t = FoldTable::new(&HashMap::new()).with_join_cjk(true);
        let f = Folded::new("我 投 - 诉", &t);
        assert_eq!(f.text, "我投诉");
        let s = f.text.find("投").unwrap();
        assert_eq!(f.char_pos(s), 2);
        assert_eq!(f.char_end(f.text.len()), 7);
        assert_eq!(f.original("我 投 - 诉", s, f.text.len()), "投 - 诉");
    }
}
