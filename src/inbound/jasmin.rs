//! Jasmin HTTP connector (GET or form POST): `id`, `from`, `to`, `origin-connector`,
//! `content`, `binary` (hex of the same bytes), `coding`. `binary` is decoded by `coding`:
//! 0 unpacked GSM 03.38 codes, 1 ASCII, 3 Latin-1, 8 UTF-16BE. Jasmin retries anything but
//! status < 400 with body `ACK/Jasmin`, so duplicates by `id` are expected.

use super::{BadInput, NewInbound, check_text, form_pairs, get, phone, redact_query, text_param};
use crate::domain::Channel;
use crate::outbound::segment::{decode_gsm7_unpacked, from_utf16be};

/// # Errors
/// Missing fields, bad numbers, unsupported coding, undecodable content.
pub fn parse(form: &[u8], country: &str) -> Result<NewInbound, BadInput> {
    let q = form_pairs(form);
    let from = text_param(&q, "from")?.ok_or_else(|| BadInput::missing("from"))?;
    let to = text_param(&q, "to")?.ok_or_else(|| BadInput::missing("to"))?;
    let coding = text_param(&q, "coding")?.unwrap_or_else(|| "0".into());
    let bytes = match text_param(&q, "binary")? {
        Some(h) if !h.is_empty() => {
            hex::decode(h.trim()).map_err(|e| BadInput::new("binary", format!("not hex: {e}")))?
        }
        _ => get(&q, "content")
            .ok_or_else(|| BadInput::missing("content"))?
            .to_vec(),
    };
    let bytes = strip_concat_udh(&bytes, coding.trim());
    let text = decode(bytes, coding.trim())?;
    check_text("content", &text)?;
    let id = text_param(&q, "id")?.filter(|s| !s.is_empty());
    Ok(NewInbound {
        channel: Channel::Sms,
        dialect: "jasmin",
        external_id: id,
        from: phone("from", &from, country)?,
        to: phone("to", &to, country)?,
        subject: None,
        text,
        raw: redact_query(form),
        email: None,
    })
}

/// Jasmin leaves a 16-bit concatenation UDH (`06 08 04 ref ref total seq`) inside the content;
/// in UCS-2 its odd length gives it away. The part is kept as its own message.
fn strip_concat_udh<'a>(b: &'a [u8], coding: &str) -> &'a [u8] {
    if coding == "8" && b.len() >= 7 && b.len() % 2 == 1 && b[..3] == [0x06, 0x08, 0x04] {
        return &b[7..];
    }
    b
}

pub fn decode(bytes: &[u8], coding: &str) -> Result<String, BadInput> {
    match coding {
        "0" => decode_gsm7_unpacked(bytes)
            .or_else(|_| String::from_utf8(bytes.to_vec()).map_err(|_| ()))
            .map_err(|_| BadInput::new("binary", "neither GSM 03.38 codes nor UTF-8 (coding 0)")),
        "1" => String::from_utf8(bytes.to_vec())
            .map_err(|_| BadInput::new("binary", "not ASCII (coding 1)")),
        "3" => Ok(bytes.iter().map(|&b| b as char).collect()),
        "8" => from_utf16be(bytes).map_err(|e| BadInput::new("binary", e)),
        other => Err(BadInput::new(
            "coding",
            format!("unsupported coding {other:?} (0 GSM, 1 ASCII, 3 Latin-1, 8 UCS-2)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ucs2_binary_is_decoded() {
        let m = parse(b"id=u-1&from=8613800138000&to=10000&origin-connector=smpp&coding=8&content=x&binary=4F60597D", "86").unwrap();
        assert_eq!(m.text, "你好");
        assert_eq!(m.external_id.as_deref(), Some("u-1"));
        assert_eq!(m.dialect, "jasmin");
    }

    #[test]
    fn gsm_codes_are_mapped_not_taken_as_latin1() {
        // é is 0x05 in GSM 03.38.
        let m = parse(
            b"id=2&from=13800138000&to=10000&coding=0&content=caf%05&binary=63616605",
            "86",
        );
        assert_eq!(m.unwrap().text, "café");
    }

    #[test]
    fn content_without_binary_and_concat_udh() {
        let m = parse(
            b"id=3&from=13800138000&to=10000&coding=0&content=hello",
            "86",
        )
        .unwrap();
        assert_eq!(m.text, "hello");
        let m = parse(
            b"id=4&from=13800138000&to=10000&coding=8&binary=060804000102014F60",
            "86",
        )
        .unwrap();
        assert_eq!(m.text, "你");
    }

    #[test]
    fn bad_jasmin_input_is_named() {
        assert_eq!(
            parse(b"from=1&to=2&coding=8&binary=zz", "86")
                .unwrap_err()
                .field,
            "binary"
        );
        assert_eq!(
            parse(b"from=13800138000&to=10000&coding=5&binary=41", "86")
                .unwrap_err()
                .field,
            "coding"
        );
        assert_eq!(
            parse(b"to=10000&content=x", "86").unwrap_err().field,
            "from"
        );
    }
}
