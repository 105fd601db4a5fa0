//! Jasmin HTTP connector (GET or form POST), as Jasmin 0.11's `deliverSmThrower` builds it
//! (`jasmin/routing/throwers.py`, captured in `fixtures/jasmin/`): `id`, `from`, `to`,
//! `origin-connector`, `content` (the raw short message bytes), `binary` (their hex),
//! `coding` and optional `priority`, `validity`. `coding` is `DataCodingEncoder().encode(...)`:
//! the `data_coding` octet itself, one raw byte (`coding=%08` for UCS-2, `%00` for the default
//! alphabet); a decimal (`coding=8`) is taken too. The bytes are decoded by that octet (every
//! value SMPP allows: see [`crate::bridges::smpp`]). Jasmin reassembles SAR and 8-bit-reference UDH
//! parts itself; a 16-bit-reference part (`06 08 04 …`) arrives with its header in the content
//! and becomes a [`crate::bridges::smpp::Part`]. Jasmin retries anything but status < 400 with body
//! `ACK/Jasmin` (404 excepted), so duplicates by `id` are expected.

use crate::bridges::smpp::{self, Part};
use crate::domain::Channel;
use crate::inbound::{
    BadInput, NewInbound, check_text, form_pairs, get, phone, redact_query, text_param,
};

/// # Errors
/// Missing fields, bad numbers, refused `data_coding`, undecodable or contradictory content.
pub fn parse(form: &[u8], country: &str) -> Result<NewInbound, BadInput> {
    let q = form_pairs(form);
    let from = text_param(&q, "from")?.ok_or_else(|| BadInput::missing("from"))?;
    let to = text_param(&q, "to")?.ok_or_else(|| BadInput::missing("to"))?;
    let dcs = coding(get(&q, "coding"))?;
    let content = get(&q, "content");
    let bytes = match text_param(&q, "binary")? {
        Some(h) if !h.trim().is_empty() => {
            let b = hex::decode(h.trim())
                .map_err(|e| BadInput::new("binary", format!("not hex: {e}")))?;
            if let Some(c) = content
                && !c.is_empty()
                && c != b.as_slice()
            {
                return Err(BadInput::new(
                    "binary",
                    "binary and content disagree (binary must be the hex of content)",
                ));
            }
            b
        }
        _ => content
            .ok_or_else(|| BadInput::missing("content"))?
            .to_vec(),
    };
    let (part, body) = match smpp::leading_concat_udh(&bytes)? {
        Some((p, n)) => (Some(p), &bytes[n..]),
        None => (None, &bytes[..]),
    };
    let sar = smpp::sar(
        text_param(&q, "sar_msg_ref_num")?.as_deref(),
        text_param(&q, "sar_total_segments")?.as_deref(),
        text_param(&q, "sar_segment_seqnum")?.as_deref(),
    )?;
    let part: Option<Part> = part.or(sar);
    let mut text = smpp::decode(body, dcs)?;
    check_text("content", &mut text)?;
    let id = text_param(&q, "id")?.filter(|s| !s.is_empty());
    Ok(NewInbound {
        channel: Channel::Sms,
        dialect: "jasmin",
        external_id: id,
        from: phone("from", &from, country)?.into(),
        to: phone("to", &to, country)?.into(),
        subject: None,
        text,
        raw: redact_query(form),
        email: None,
        part,
    })
}

/// The `data_coding` octet from Jasmin's `coding`: one raw byte, or a decimal 0–255.
fn coding(v: Option<&[u8]>) -> Result<u8, BadInput> {
    match v {
        None | Some([]) => Ok(0),
        // A lone ASCII digit is a decimal; as a raw octet (0x30–0x39) it would be compressed
        // text, which no bridge delivers.
        Some([b]) if !b.is_ascii_digit() => Ok(*b),
        Some(d) => std::str::from_utf8(d)
            .ok()
            .and_then(|s| s.trim().parse::<u8>().ok())
            .ok_or_else(|| {
                BadInput::new(
                    "coding",
                    format!(
                        "{:?} is neither a data_coding octet nor a number 0-255",
                        String::from_utf8_lossy(d)
                    ),
                )
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coding_is_the_raw_octet_jasmin_sends_or_a_decimal() {
        // What Jasmin 0.11 puts on the wire: coding=%08, content the raw UCS-2 bytes.
        let m = parse(
            b"id=u-1&from=8613800138000&to=10000&origin-connector=smpp&coding=%08&content=O%60Y%7D&binary=4f60597d",
            "86",
        )
        .unwrap();
        assert_eq!(m.text, "你好");
        assert_eq!(m.external_id.as_deref(), Some("u-1"));
        assert_eq!(m.dialect, "jasmin");
        let m = parse(
            b"id=2&from=13800138000&to=10000&coding=%00&content=caf%05&binary=63616605",
            "86",
        );
        assert_eq!(m.unwrap().text, "café");
        let m = parse(
            b"id=2&from=13800138000&to=10000&coding=8&binary=4F60597D",
            "86",
        );
        assert_eq!(m.unwrap().text, "你好");
        let m = parse(
            b"id=2&from=13800138000&to=10000&coding=%18&binary=4F60597D",
            "86",
        );
        assert_eq!(m.unwrap().text, "你好");
    }

    #[test]
    fn content_without_binary_and_a_16_bit_concat_part() {
        let m = parse(
            b"id=3&from=13800138000&to=10000&coding=%00&content=hello",
            "86",
        )
        .unwrap();
        assert_eq!((m.text.as_str(), m.part), ("hello", None));
        let m = parse(
            b"id=4&from=13800138000&to=10000&coding=%08&binary=060804000102014F60",
            "86",
        )
        .unwrap();
        assert_eq!(m.text, "你");
        assert_eq!(
            m.part,
            Some(Part {
                reference: 0x1_0001,
                total: 2,
                seq: 1
            })
        );
    }

    #[test]
    fn bad_jasmin_input_is_named() {
        let field = |q: &[u8]| parse(q, "86").unwrap_err().field;
        assert_eq!(field(b"from=1&to=2&coding=8&binary=zz"), "binary");
        assert_eq!(
            field(b"from=13800138000&to=10000&coding=%09&binary=41"),
            "coding"
        );
        assert_eq!(
            field(b"from=13800138000&to=10000&coding=300&binary=41"),
            "coding"
        );
        assert_eq!(field(b"to=10000&content=x"), "from");
        // hex and raw content that disagree
        assert_eq!(
            field(b"from=13800138000&to=10000&coding=%00&content=x&binary=41"),
            "binary"
        );
        // a part number beyond the total, a UDH too short
        assert_eq!(
            field(b"from=13800138000&to=10000&coding=%08&binary=06080400010203"),
            "udh"
        );
        assert_eq!(
            field(b"from=13800138000&to=10000&coding=%08&binary=060804"),
            "udh"
        );
        assert_eq!(
            field(b"from=13800138000&to=10000&content=x&sar_msg_ref_num=1&sar_total_segments=2"),
            "sar_msg_ref_num"
        );
    }

    /// The form body of a request Jasmin 0.11.0 really sent (captured by tests/jasmin/capture.py).
    fn captured(name: &str) -> Vec<u8> {
        let path = format!("{}/fixtures/jasmin/{name}.http", env!("CARGO_MANIFEST_DIR"));
        let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        if let Some(line) = raw.strip_prefix(b"GET ") {
            let line = &line[..line.iter().position(|&b| b == b' ').unwrap()];
            let q = line.iter().position(|&b| b == b'?').unwrap();
            return line[q + 1..].to_vec();
        }
        let at = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
        let at = at.or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| i + 2));
        let body = &raw[at.expect("a blank line after the headers")..];
        body.strip_suffix(b"\n").unwrap_or(body).to_vec()
    }

    #[test]
    fn every_mo_captured_from_a_real_jasmin_decodes() {
        let text = |name: &str| {
            parse(&captured(name), "86")
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .text
        };
        assert_eq!(text("mo_ucs2"), "我要投诉，宽带断网三天了");
        assert_eq!(text("mo_ucs2_get"), "我要投诉，宽带断网三天了");
        assert_eq!(text("mo_gsm7"), "Hello world & more 100%?");
        assert_eq!(text("mo_gsm7_get"), "Hello world & more 100%?");
        assert_eq!(text("mo_latin1"), "Grüße, café à 5??");
        assert_eq!(text("mo_gsm7_codes"), "@ £5 café ü €");
        assert_eq!(text("mo_dcs_0x18_ucs2_class0"), "你好");
        assert!(text("mo_message_payload").starts_with("payload payload"));
        // Jasmin reassembles SAR and 8-bit-reference UDH parts itself...
        let sar = parse(&captured("mo_long_sar_ucs2"), "86").unwrap();
        assert!(
            sar.text.starts_with("我要投诉，宽带断网三天了，") && sar.part.is_none(),
            "{}",
            sar.text
        );
        let udh8 = parse(&captured("mo_long_udh8_gsm"), "86").unwrap();
        assert!(udh8.part.is_none());
        // ...but passes 16-bit references and class-2 parts through with their header.
        let p = parse(&captured("mo_long_udh16_part1"), "86").unwrap();
        assert_eq!(
            p.part,
            Some(Part {
                reference: 0x1_012C,
                total: 2,
                seq: 1
            })
        );
        assert!(p.text.starts_with("我要投诉"), "{}", p.text);
        let p2 = parse(&captured("mo_long_udh16_part2"), "86").unwrap();
        assert_eq!(p2.part.map(|p| (p.reference, p.seq)), Some((0x1_012C, 2)));
        let c2 = parse(&captured("mo_long_udh8_class2_part1"), "86").unwrap();
        assert_eq!(
            c2.part,
            Some(Part {
                reference: 9,
                total: 2,
                seq: 1
            })
        );
        assert_eq!(c2.text, "class2 one ");
    }

    #[test]
    fn every_data_coding_captured_from_jasmin_is_decoded_or_refused_by_name() {
        let dir = format!("{}/fixtures/jasmin", env!("CARGO_MANIFEST_DIR"));
        let mut seen = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            let Some(stem) = name
                .strip_prefix("mo_dcs_")
                .and_then(|n| n.strip_suffix(".http"))
            else {
                continue;
            };
            seen += 1;
            match parse(&captured(&format!("mo_dcs_{stem}")), "86") {
                Ok(m) => assert!(!m.text.is_empty(), "{name}"),
                Err(e) => assert!(
                    matches!(e.field, "coding" | "content") && e.reason.contains("0x"),
                    "{name}: {e}"
                ),
            }
        }
        assert!(seen >= 10, "only {seen} mo_dcs_* fixtures");
        let e = parse(&captured("mo_dcs_0x80"), "86").unwrap_err();
        assert_eq!((e.field, e.reason.contains("0x80")), ("coding", true));
        assert_eq!(parse(&captured("mo_dcs_0xF4"), "86").unwrap().text, "ABCD");
    }
}
