//! What SMPP bridges hand over from a `deliver_sm`: the `data_coding` octet (SMPP 3.4 §5.2.19
//! for 0x00–0x0F, 3GPP TS 23.038 coding groups above), the user data header of a concatenated
//! part (`05 00 03 ref total seq`, `06 08 04 ref ref total seq`) and the SAR TLVs. Pure
//! functions; the dialects (Jasmin, Kannel) call them.

use crate::inbound::BadInput;
use crate::outbound::segment::{decode_gsm7_unpacked, from_utf16be};

/// The alphabet a `data_coding` value names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alphabet {
    /// GSM 03.38, one septet per byte (SMPP's "SMSC default alphabet").
    Gsm7,
    /// IA5 / ASCII.
    Ascii,
    /// 8-bit data: text only if it is UTF-8.
    Octets,
    Latin1,
    Cyrillic,
    Hebrew,
    /// JIS X 0208 (two 7-bit bytes a character).
    Jis,
    /// ISO-2022-JP.
    Iso2022Jp,
    /// JIS X 0212.
    ExtendedKanji,
    /// KS C 5601 (EUC-KR).
    Korean,
    Ucs2,
}

/// The alphabet of a `data_coding` octet, or a 400 naming the value.
///
/// # Errors
/// Reserved values, compressed text, pictograms.
pub fn alphabet(dcs: u8) -> Result<Alphabet, BadInput> {
    let refuse = |why: &str| {
        Err(BadInput::new(
            "coding",
            format!("data_coding 0x{dcs:02X} ({dcs}): {why}"),
        ))
    };
    match dcs {
        0x00 => Ok(Alphabet::Gsm7),
        0x01 => Ok(Alphabet::Ascii),
        0x02 | 0x04 => Ok(Alphabet::Octets),
        0x03 => Ok(Alphabet::Latin1),
        0x05 => Ok(Alphabet::Jis),
        0x06 => Ok(Alphabet::Cyrillic),
        0x07 => Ok(Alphabet::Hebrew),
        0x08 => Ok(Alphabet::Ucs2),
        0x09 => refuse("pictogram encoding is not supported"),
        0x0A => Ok(Alphabet::Iso2022Jp),
        0x0B | 0x0C | 0x0F => refuse("reserved in SMPP 3.4"),
        0x0D => Ok(Alphabet::ExtendedKanji),
        0x0E => Ok(Alphabet::Korean),
        // General data coding (00xx xxxx) and automatic deletion (01xx xxxx) groups:
        // bit 5 compressed, bit 4 class present, bits 3..2 the alphabet.
        0x10..=0x7F => {
            if dcs & 0x20 != 0 {
                return refuse("compressed text is not supported");
            }
            match (dcs >> 2) & 0x03 {
                0 => Ok(Alphabet::Gsm7),
                1 => Ok(Alphabet::Octets),
                2 => Ok(Alphabet::Ucs2),
                _ => refuse("reserved alphabet"),
            }
        }
        0x80..=0xBF => refuse("reserved coding group"),
        // Message waiting indication: discard / store (GSM 7-bit), store (UCS-2).
        0xC0..=0xDF => Ok(Alphabet::Gsm7),
        0xE0..=0xEF => Ok(Alphabet::Ucs2),
        // Data coding / message class: bit 2 chooses 8-bit data over GSM 7-bit.
        0xF0..=0xFF => Ok(if dcs & 0x04 != 0 {
            Alphabet::Octets
        } else {
            Alphabet::Gsm7
        }),
    }
}

/// Decodes a short message by its `data_coding`.
///
/// # Errors
/// A refused `data_coding`, or bytes that are not text in that alphabet.
pub fn decode(bytes: &[u8], dcs: u8) -> Result<String, BadInput> {
    let a = alphabet(dcs)?;
    let bad = |why: String| BadInput::new("content", format!("data_coding 0x{dcs:02X}: {why}"));
    let legacy = |enc: &'static encoding_rs::Encoding, b: &[u8]| {
        let (s, had_errors) = enc.decode_without_bom_handling(b);
        if had_errors {
            Err(bad(format!("not valid {}", enc.name())))
        } else {
            Ok(s.into_owned())
        }
    };
    match a {
        // Some SMSCs put ASCII or UTF-8 bytes under data_coding 0; GSM codes come first.
        Alphabet::Gsm7 => decode_gsm7_unpacked(bytes)
            .or_else(|_| String::from_utf8(bytes.to_vec()).map_err(|_| ()))
            .map_err(|_| bad("neither GSM 03.38 septets nor UTF-8".into())),
        Alphabet::Ascii => {
            if bytes.is_ascii() {
                Ok(String::from_utf8_lossy(bytes).into_owned())
            } else {
                String::from_utf8(bytes.to_vec()).map_err(|_| bad("not ASCII".into()))
            }
        }
        Alphabet::Octets => String::from_utf8(bytes.to_vec())
            .map_err(|_| bad("8-bit binary data that is not UTF-8 text".into())),
        Alphabet::Latin1 => Ok(bytes.iter().map(|&b| b as char).collect()),
        Alphabet::Cyrillic => legacy(encoding_rs::ISO_8859_5, bytes),
        Alphabet::Hebrew => legacy(encoding_rs::ISO_8859_8, bytes),
        Alphabet::Iso2022Jp => legacy(encoding_rs::ISO_2022_JP, bytes),
        // JIS X 0208 rows/cells as 7-bit pairs are EUC-JP with the high bits set.
        Alphabet::Jis => {
            let euc: Vec<u8> = bytes
                .iter()
                .map(|&b| if b < 0x80 { b | 0x80 } else { b })
                .collect();
            if !euc.len().is_multiple_of(2) {
                return Err(bad("JIS X 0208 text has an odd number of bytes".into()));
            }
            legacy(encoding_rs::EUC_JP, &euc)
        }
        Alphabet::ExtendedKanji => {
            if !bytes.len().is_multiple_of(2) {
                return Err(bad("JIS X 0212 text has an odd number of bytes".into()));
            }
            let mut euc = Vec::with_capacity(bytes.len() / 2 * 3);
            for pair in bytes.chunks_exact(2) {
                euc.extend_from_slice(&[0x8F, pair[0] | 0x80, pair[1] | 0x80]);
            }
            legacy(encoding_rs::EUC_JP, &euc)
        }
        Alphabet::Korean => {
            let euc: Vec<u8> = if bytes.iter().all(|&b| b < 0x80) && bytes.len().is_multiple_of(2) {
                bytes.iter().map(|&b| b | 0x80).collect()
            } else {
                bytes.to_vec()
            };
            legacy(encoding_rs::EUC_KR, &euc)
        }
        Alphabet::Ucs2 => from_utf16be(bytes).map_err(bad),
    }
}

/// One part of a concatenated SMS, as its UDH or SAR fields name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// The reference shared by the parts; 16-bit references are kept apart from 8-bit ones.
    pub reference: u32,
    pub total: u8,
    pub seq: u8,
}

impl Part {
    /// Checks the numbering.
    ///
    /// # Errors
    /// A total of 0, a sequence number of 0 or beyond the total.
    pub fn new(reference: u32, total: u8, seq: u8, field: &'static str) -> Result<Part, BadInput> {
        if total == 0 {
            return Err(BadInput::new(field, "concatenated message with 0 parts"));
        }
        if seq == 0 || seq > total {
            return Err(BadInput::new(
                field,
                format!("part number {seq} is beyond the total of {total} parts"),
            ));
        }
        Ok(Part {
            reference,
            total,
            seq,
        })
    }
}

/// Parses a user data header (its length octet first) and returns the concatenation
/// information element, if any, and the length of the header.
///
/// # Errors
/// A header longer than the message, or an information element that runs past it.
pub fn parse_udh(b: &[u8]) -> Result<(Option<Part>, usize), BadInput> {
    let Some(&udhl) = b.first() else {
        return Err(BadInput::new("udh", "empty user data header"));
    };
    let end = 1 + udhl as usize;
    if b.len() < end || udhl == 0 {
        return Err(BadInput::new(
            "udh",
            format!(
                "user data header of {udhl} bytes is too short or runs past the message ({} bytes)",
                b.len()
            ),
        ));
    }
    let mut i = 1;
    let mut part = None;
    while i < end {
        if i + 2 > end {
            return Err(BadInput::new("udh", "truncated information element"));
        }
        let (iei, len) = (b[i], b[i + 1] as usize);
        let data = b
            .get(i + 2..i + 2 + len)
            .filter(|_| i + 2 + len <= end)
            .ok_or_else(|| {
                BadInput::new(
                    "udh",
                    format!("information element 0x{iei:02X} runs past the header"),
                )
            })?;
        match (iei, len) {
            (0x00, 3) => part = Some(Part::new(u32::from(data[0]), data[1], data[2], "udh")?),
            (0x08, 4) => {
                let r = u32::from(u16::from_be_bytes([data[0], data[1]])) | 0x1_0000;
                part = Some(Part::new(r, data[2], data[3], "udh")?);
            }
            (0x00 | 0x08, _) => {
                return Err(BadInput::new(
                    "udh",
                    format!("concatenation element 0x{iei:02X} with length {len}"),
                ));
            }
            _ => {}
        }
        i += 2 + len;
    }
    Ok((part, end))
}

/// Jasmin does not pass `esm_class` over HTTP: a short message that starts with a
/// concatenation UDH (`05 00 03` or `06 08 04`) is a part it did not reassemble.
///
/// # Errors
/// A malformed header or part numbering.
pub fn leading_concat_udh(b: &[u8]) -> Result<Option<(Part, usize)>, BadInput> {
    if b.starts_with(&[0x05, 0x00, 0x03]) || b.starts_with(&[0x06, 0x08, 0x04]) {
        let (part, len) = parse_udh(b)?;
        return Ok(part.map(|p| (p, len)));
    }
    Ok(None)
}

/// SAR TLVs passed as parameters (`sar_msg_ref_num`, `sar_total_segments`,
/// `sar_segment_seqnum`); all three or none.
///
/// # Errors
/// Some but not all present, or not numbers in range.
pub fn sar(
    ref_num: Option<&str>,
    total: Option<&str>,
    seq: Option<&str>,
) -> Result<Option<Part>, BadInput> {
    match (ref_num, total, seq) {
        (None, None, None) => Ok(None),
        (Some(r), Some(t), Some(s)) => {
            let r: u16 = r.trim().parse().map_err(|_| {
                BadInput::new("sar_msg_ref_num", format!("{r:?} is not a number 0-65535"))
            })?;
            let t: u8 = t.trim().parse().map_err(|_| {
                BadInput::new("sar_total_segments", format!("{t:?} is not a number 1-255"))
            })?;
            let s: u8 = s.trim().parse().map_err(|_| {
                BadInput::new("sar_segment_seqnum", format!("{s:?} is not a number 1-255"))
            })?;
            Ok(Some(Part::new(
                u32::from(r) | 0x2_0000,
                t,
                s,
                "sar_segment_seqnum",
            )?))
        }
        _ => Err(BadInput::new(
            "sar_msg_ref_num",
            "sar_msg_ref_num, sar_total_segments and sar_segment_seqnum go together",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_data_coding_value_is_decoded_or_refused_by_name() {
        for dcs in 0..=255u8 {
            match alphabet(dcs) {
                Ok(_) => {
                    // Plain ASCII letters are text in every accepted alphabet but UCS-2.
                    let r = decode(b"Hi", dcs);
                    let wide = matches!(
                        alphabet(dcs),
                        Ok(Alphabet::Ucs2
                            | Alphabet::Jis
                            | Alphabet::ExtendedKanji
                            | Alphabet::Korean)
                    );
                    assert!(r.is_ok() || wide, "{dcs}: {r:?}");
                }
                Err(e) => {
                    assert_eq!(e.field, "coding");
                    assert!(e.reason.contains(&format!("0x{dcs:02X}")), "{e}");
                }
            }
        }
        assert_eq!(alphabet(0x18), Ok(Alphabet::Ucs2));
        assert_eq!(alphabet(0x11), Ok(Alphabet::Gsm7));
        assert_eq!(alphabet(0xF4), Ok(Alphabet::Octets));
        assert_eq!(alphabet(0xF1), Ok(Alphabet::Gsm7));
        assert_eq!(alphabet(0xE0), Ok(Alphabet::Ucs2));
        assert!(alphabet(0x28).is_err());
        assert!(alphabet(0x90).is_err());
    }

    #[test]
    fn alphabets_decode_their_text() {
        assert_eq!(decode(&[0x4F, 0x60, 0x59, 0x7D], 8).unwrap(), "你好");
        assert_eq!(decode(&[0x4F, 0x60, 0x59, 0x7D], 0x18).unwrap(), "你好");
        assert_eq!(decode(&[0x63, 0x61, 0x66, 0x05], 0).unwrap(), "café");
        assert_eq!(decode(&[0x63, 0x61, 0x66, 0xE9], 3).unwrap(), "café");
        assert_eq!(decode(&[0xCF, 0xE0], 6).unwrap(), "Яр");
        // 日本 in JIS X 0208 (row 38 cell 76, row 43 cell 92).
        assert_eq!(decode(&[0x46, 0x7C, 0x4B, 0x5C], 5).unwrap(), "日本");
        assert_eq!(decode("안녕".as_bytes(), 0x04).unwrap(), "안녕");
        assert!(
            decode(&[0xFF, 0xFE], 4)
                .unwrap_err()
                .reason
                .contains("binary")
        );
        assert!(decode(&[0x4F], 8).is_err());
        assert_eq!(decode(&[0xC7, 0xD1], 0x0E).unwrap(), "한");
    }

    #[test]
    fn concatenation_headers_are_read_and_checked() {
        let (p, n) = parse_udh(&[0x05, 0x00, 0x03, 0x2A, 0x03, 0x02, 0x41]).unwrap();
        assert_eq!(
            (p.unwrap(), n),
            (
                Part {
                    reference: 0x2A,
                    total: 3,
                    seq: 2
                },
                6
            )
        );
        let (p, n) = parse_udh(&[0x06, 0x08, 0x04, 0x12, 0x34, 0x02, 0x01]).unwrap();
        assert_eq!(
            (p.unwrap(), n),
            (
                Part {
                    reference: 0x1_1234,
                    total: 2,
                    seq: 1
                },
                7
            )
        );
        // Too short, running past, part beyond the total, zero parts.
        assert!(parse_udh(&[0x05, 0x00, 0x03]).is_err());
        assert!(parse_udh(&[0x05, 0x00, 0x05, 1, 2, 3]).is_err());
        let e = parse_udh(&[0x05, 0x00, 0x03, 1, 2, 3]).unwrap_err();
        assert!(e.reason.contains("beyond"), "{e}");
        assert!(parse_udh(&[0x05, 0x00, 0x03, 1, 0, 0]).is_err());
        // Other elements are skipped.
        let (p, _) = parse_udh(&[0x04, 0x24, 0x02, 0x00, 0x01]).unwrap();
        assert_eq!(p, None);
        assert_eq!(leading_concat_udh(b"hello").unwrap(), None);
        assert!(sar(Some("7"), Some("2"), None).is_err());
        assert_eq!(
            sar(Some("7"), Some("2"), Some("2")).unwrap().unwrap().seq,
            2
        );
        assert!(sar(Some("7"), Some("2"), Some("3")).is_err());
    }
}
