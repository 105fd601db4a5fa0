//! SMS encoding and segment counting (GSM 03.38 / UCS-2). Pure functions: the counts are
//! stored on every outbound message and shown in campaign previews.

use serde::Serialize;

/// GSM 03.38 basic character set, in code order (0x00..=0x7F); 0x1B is the escape.
pub const GSM7_BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1B}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// Extension table characters (escape + code), each costing two septets.
pub const GSM7_EXTENSION: [(char, u8); 10] = [
    ('\u{0C}', 0x0A),
    ('^', 0x14),
    ('{', 0x28),
    ('}', 0x29),
    ('\\', 0x2F),
    ('[', 0x3C),
    ('~', 0x3D),
    (']', 0x3E),
    ('|', 0x40),
    ('€', 0x65),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "gsm7",
            Encoding::Ucs2 => "ucs2",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentInfo {
    pub encoding: Encoding,
    /// Septets (GSM-7) or UTF-16 code units (UCS-2).
    pub units: usize,
    pub segments: usize,
}

fn gsm7_cost(c: char) -> Option<usize> {
    if c != '\u{1B}' && GSM7_BASIC.contains(&c) {
        Some(1)
    } else if GSM7_EXTENSION.iter().any(|(e, _)| *e == c) {
        Some(2)
    } else {
        None
    }
}

pub fn is_gsm7(text: &str) -> bool {
    text.chars().all(|c| gsm7_cost(c).is_some())
}

/// Counts the segments of `text`: 160/153 septets in GSM-7, 70/67 UTF-16 units in UCS-2.
/// An escape pair or a surrogate pair never straddles two parts, so a part may hold one unit
/// less than the nominal size.
pub fn segment(text: &str) -> SegmentInfo {
    if is_gsm7(text) {
        let costs: Vec<usize> = text.chars().map(|c| gsm7_cost(c).unwrap_or(1)).collect();
        let units = costs.iter().sum();
        let segments = if units <= 160 { 1 } else { pack(&costs, 153) };
        SegmentInfo {
            encoding: Encoding::Gsm7,
            units,
            segments: segments.max(1),
        }
    } else {
        let costs: Vec<usize> = text.chars().map(char::len_utf16).collect();
        let units = costs.iter().sum();
        let segments = if units <= 70 { 1 } else { pack(&costs, 67) };
        SegmentInfo {
            encoding: Encoding::Ucs2,
            units,
            segments: segments.max(1),
        }
    }
}

/// Splits `text` into the parts a concatenated SMS would carry.
pub fn split(text: &str) -> Vec<String> {
    let info = segment(text);
    let (single, part) = match info.encoding {
        Encoding::Gsm7 => (160, 153),
        Encoding::Ucs2 => (70, 67),
    };
    if info.units <= single {
        return vec![text.to_string()];
    }
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut used = 0;
    for c in text.chars() {
        let cost = match info.encoding {
            Encoding::Gsm7 => gsm7_cost(c).unwrap_or(1),
            Encoding::Ucs2 => c.len_utf16(),
        };
        if used + cost > part {
            parts.push(std::mem::take(&mut cur));
            used = 0;
        }
        cur.push(c);
        used += cost;
    }
    if !cur.is_empty() {
        parts.push(cur);
    }
    parts
}

fn pack(costs: &[usize], part: usize) -> usize {
    let mut n = 1;
    let mut used = 0;
    for &c in costs {
        if used + c > part {
            n += 1;
            used = 0;
        }
        used += c;
    }
    n
}

/// `text`, or its longest prefix that with an ellipsis fits in `parts` SMS parts (at least
/// one): what a bridge that cuts at `parts` would otherwise do without saying so.
pub fn fit(text: &str, parts: u32) -> String {
    let parts = parts.max(1) as usize;
    if segment(text).segments <= parts {
        return text.to_string();
    }
    // "..." keeps a GSM-7 text GSM-7; "…" would turn it into UCS-2.
    let ellipsis = if is_gsm7(text) { "..." } else { "…" };
    let ends: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    let (mut lo, mut hi) = (0usize, ends.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        let candidate = format!("{}{ellipsis}", text[..ends[mid]].trim_end());
        if segment(&candidate).segments <= parts {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    format!("{}{ellipsis}", text[..ends[lo]].trim_end())
}

/// Decodes unpacked GSM 03.38 codes (one byte per septet, as Jasmin delivers coding 0).
pub fn decode_gsm7_unpacked(bytes: &[u8]) -> Result<String, String> {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b > 0x7F {
            return Err(format!("byte 0x{b:02X} at {i} is not a GSM 03.38 septet"));
        }
        if b == 0x1B {
            let Some(&n) = bytes.get(i + 1) else {
                return Err("escape at the end of the message".into());
            };
            match GSM7_EXTENSION.iter().find(|(_, code)| *code == n) {
                Some((c, _)) => out.push(*c),
                None => out.push(' '),
            }
            i += 2;
            continue;
        }
        out.push(GSM7_BASIC[b as usize]);
        i += 1;
    }
    Ok(out)
}

/// UTF-16BE bytes, the payload of UCS-2 SMS.
pub fn utf16be(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// Decodes UTF-16BE bytes; an odd length or a lone surrogate is an error.
pub fn from_utf16be(bytes: &[u8]) -> Result<String, String> {
    if !bytes.len().is_multiple_of(2) {
        return Err(format!(
            "UTF-16BE text has an odd number of bytes ({})",
            bytes.len()
        ));
    }
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).map_err(|_| "UTF-16BE text holds an unpaired surrogate".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm7_single_and_concatenated_sizes() {
        assert_eq!(segment(&"a".repeat(160)).segments, 1);
        assert_eq!(segment(&"a".repeat(161)).segments, 2);
        assert_eq!(segment(&"a".repeat(306)).segments, 2);
        assert_eq!(segment(&"a".repeat(307)).segments, 3);
        assert_eq!(segment("").segments, 1);
    }

    #[test]
    fn extension_characters_cost_two_and_never_split() {
        let s = "€".repeat(80);
        let i = segment(&s);
        assert_eq!((i.encoding, i.units, i.segments), (Encoding::Gsm7, 160, 1));
        // 152 'a' + '€' would need 154 septets in the first part: the pair moves on.
        let s = format!("{}€{}", "a".repeat(152), "a".repeat(10));
        assert_eq!(segment(&s).segments, 2);
        let parts = split(&s);
        assert_eq!(parts[0].chars().count(), 152);
        assert!(parts[1].starts_with('€'));
    }

    #[test]
    fn one_chinese_character_makes_the_whole_message_ucs2() {
        let i = segment("hello 你");
        assert_eq!(i.encoding, Encoding::Ucs2);
        assert_eq!(segment(&"你".repeat(70)).segments, 1);
        assert_eq!(segment(&"你".repeat(71)).segments, 2);
        assert_eq!(segment(&"你".repeat(134)).segments, 2);
        assert_eq!(segment(&"你".repeat(135)).segments, 3);
    }

    #[test]
    fn surrogate_pairs_count_two_and_stay_whole() {
        let s = format!("{}😀", "你".repeat(66));
        let i = segment(&s);
        assert_eq!((i.units, i.segments), (68, 1));
        let s = format!("{}😀{}", "你".repeat(66), "你".repeat(10));
        let parts = split(&s);
        assert_eq!(parts.len(), 2);
        assert!(parts[1].starts_with('😀'));
        assert!(parts.iter().all(|p| p.encode_utf16().count() <= 67));
    }

    #[test]
    fn fit_cuts_to_the_part_cap_with_an_ellipsis() {
        assert_eq!(fit("short", 1), "short");
        let zh = "你".repeat(300);
        for cap in 1..=4u32 {
            let f = fit(&zh, cap);
            assert!(f.ends_with('…'));
            assert!(segment(&f).segments <= cap as usize, "{cap}");
            // The longest such prefix: one more character would not fit.
            let more = format!("{}你…", f.trim_end_matches('…'));
            assert!(segment(&more).segments > cap as usize);
        }
        let en = "a".repeat(400);
        let f = fit(&en, 2);
        assert!(f.ends_with("...") && segment(&f).encoding == Encoding::Gsm7);
        assert_eq!(segment(&f).segments, 2);
    }

    #[test]
    fn unpacked_gsm_codes_decode_including_escapes() {
        assert_eq!(decode_gsm7_unpacked(&[0x05, 0x61]).unwrap(), "éa");
        assert_eq!(decode_gsm7_unpacked(&[0x1B, 0x65]).unwrap(), "€");
        assert!(decode_gsm7_unpacked(&[0x80]).is_err());
        assert!(decode_gsm7_unpacked(&[0x1B]).is_err());
    }

    #[test]
    fn utf16be_round_trips_and_rejects_odd_lengths() {
        let b = utf16be("你好😀");
        assert_eq!(&b[..4], &[0x4F, 0x60, 0x59, 0x7D]);
        assert_eq!(from_utf16be(&b).unwrap(), "你好😀");
        assert!(from_utf16be(&[0x4F]).is_err());
        assert!(from_utf16be(&[0xD8, 0x3D]).is_err());
    }
}
