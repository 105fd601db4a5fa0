//! Body: the best plain text of a message (text/plain parts, else HTML reduced to text),
//! re-decoded from the raw bytes where mail-parser would get it wrong (unknown or wrong
//! charset labels, transfer encodings it gives up on), with lenient base64 and
//! quoted-printable decoders and the cleaning of text and one-line values.

use super::charset::{decode_guess, decoder_for, is_ascii_label, is_utf8_label};
use super::html::html_text;
use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::{Message, MessagePart, MimeHeaders, PartType};

/// The text/plain body parts joined (or, if there are none, the HTML ones reduced to text);
/// LF line ends, no NULs.
pub(super) fn body_text(msg: &Message<'_>) -> String {
    let raw = msg.raw_message();
    let mut parts: Vec<(String, bool)> = msg
        .text_body
        .iter()
        .filter_map(|&id| msg.parts.get(id as usize))
        .filter_map(|p| part_text(raw, p))
        .filter(|(t, _)| !t.trim().is_empty())
        .collect();
    if parts.is_empty() {
        // mail-parser files a text part it could not decode under attachments; take the first
        // top-level text/plain or text/html part then.
        parts.extend(
            msg.parts
                .iter()
                .filter(|p| {
                    p.content_type().is_none_or(|ct| {
                        is_type(ct.ctype(), ct.subtype(), "text", "plain")
                            || is_type(ct.ctype(), ct.subtype(), "text", "html")
                    }) && !p
                        .content_disposition()
                        .is_some_and(|d| d.ctype().eq_ignore_ascii_case("attachment"))
                })
                .find_map(|p| part_text(raw, p)),
        );
    }
    // multipart/mixed with both a plain and an HTML inline part lists both: keep the plain.
    let has_plain = parts.iter().any(|(_, html)| !html);
    let pieces: Vec<String> = parts
        .into_iter()
        .filter(|(_, html)| !has_plain || !html)
        .map(|(t, _)| t)
        .collect();
    pieces.join("\n")
}

/// One text part as UTF-8 (HTML reduced to text) and whether it was HTML, re-decoded from the
/// raw bytes where mail-parser would get it wrong.
fn part_text(raw: &[u8], part: &MessagePart<'_>) -> Option<(String, bool)> {
    let decoded = match &part.body {
        PartType::Text(t) | PartType::Html(t) => t,
        _ => return None,
    };
    let is_html = matches!(part.body, PartType::Html(_))
        || part
            .content_type()
            .is_some_and(|ct| is_type(ct.ctype(), ct.subtype(), "text", "html"));
    let label = part
        .content_type()
        .and_then(|ct| ct.attribute("charset"))
        .map(str::trim)
        .filter(|l| !l.is_empty());
    let decoder = label.and_then(decoder_for);
    let cte = part
        .content_transfer_encoding()
        .map(|e| e.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let transfer_encoded = matches!(cte.as_str(), "base64" | "quoted-printable");
    // Labels whose bytes we guess: none, unknown, UTF-8 (often really GBK) and US-ASCII
    // (8-bit text under it is UTF-8 or GBK more often than the Windows-1252 mail-parser uses).
    let guessed = label.is_none_or(|l| decoder.is_none() || is_ascii_label(l));
    let mislabelled = match label {
        Some(l) if is_ascii_label(l) && !is_utf8_label(l) => !decoded.is_ascii(),
        _ => guessed && decoded.contains(char::REPLACEMENT_CHARACTER),
    };
    let aliased =
        label.is_some_and(|l| charset_decoder(l.as_bytes()).is_none()) && decoder.is_some();
    let redo = (part.is_encoding_problem && transfer_encoded) || aliased || mislabelled;
    let text = match raw.get(part.offset_body as usize..part.offset_end as usize) {
        Some(body) if redo => {
            let bytes = match cte.as_str() {
                "base64" => base64_lenient(body),
                "quoted-printable" => qp_lenient(body),
                _ => body.to_vec(),
            };
            match decoder {
                Some(decode) if !guessed => decode(&bytes),
                _ => decode_guess(&bytes, decoder),
            }
        }
        _ => decoded.to_string(),
    };
    let text = clean_text(&text);
    Some(if is_html {
        // Again after the HTML is read: an entity (`&#0;`) can make a NUL.
        (clean_text(&html_text(&text)), true)
    } else {
        (text, false)
    })
}

pub(super) fn is_type(ctype: &str, subtype: Option<&str>, want: &str, want_sub: &str) -> bool {
    ctype.eq_ignore_ascii_case(want) && subtype.is_some_and(|s| s.eq_ignore_ascii_case(want_sub))
}

/// Base64 that skips what is not base64 and restarts after a stray `=`, keeping what decodes.
pub(super) fn base64_lenient(input: &[u8]) -> Vec<u8> {
    fn flush(out: &mut Vec<u8>, acc: u32, n: u8) {
        match n {
            2 => out.push((acc >> 4) as u8),
            3 => out.extend([(acc >> 10) as u8, (acc >> 2) as u8]),
            _ => {}
        }
    }
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let (mut acc, mut n) = (0u32, 0u8);
    for &c in input {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                flush(&mut out, acc, n);
                (acc, n) = (0, 0);
                continue;
            }
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        n += 1;
        if n == 4 {
            out.extend([(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
            (acc, n) = (0, 0);
        }
    }
    flush(&mut out, acc, n);
    out
}

/// Quoted-printable that keeps a `=` it cannot decode.
pub(super) fn qp_lenient(input: &[u8]) -> Vec<u8> {
    fn hex(c: Option<&u8>) -> Option<u8> {
        (*c? as char).to_digit(16).map(|d| d as u8)
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let c = input[i];
        if c == b'=' {
            let rest = &input[i + 1..];
            let blanks = rest
                .iter()
                .take_while(|&&b| b == b' ' || b == b'\t')
                .count();
            if rest[blanks..].starts_with(b"\r\n") {
                i += 1 + blanks + 2;
                continue;
            }
            if rest[blanks..].starts_with(b"\n") {
                i += 1 + blanks + 1;
                continue;
            }
            if let (Some(hi), Some(lo)) = (hex(rest.first()), hex(rest.get(1))) {
                out.push((hi << 4) | lo);
                i += 3;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// LF line ends, no NUL characters.
fn clean_text(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\0', "")
}

/// One line: no NULs, no line breaks, trimmed.
pub(super) fn clean_line(s: &str) -> String {
    s.chars()
        .filter(|&c| c != '\0')
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::email::tests::ok;

    #[test]
    fn multipart_alternative_prefers_plain_text() {
        let m = ok("multipart_alternative_utf8");
        assert_eq!(m.subject, "账单多收了50元流量费");
        assert_eq!(
            m.text,
            "客服你好：\n\n我11月的账单多收了50元流量费，我根本没有用超流量。\n附件是账单PDF，请核实后退费。\n\n赵六 13912345678\n"
        );
        assert_eq!(m.attachments, 1);
    }

    #[test]
    fn nul_bytes_are_stripped() {
        let m = ok("nul_bytes");
        assert!(!m.text.contains('\0'));
        assert_eq!(
            m.text,
            "My phone cannot make calls. Second sentence after two NULs.\n\nLast line.\n"
        );
    }

    #[test]
    fn broken_input_is_recovered() {
        let m = ok("broken_boundary");
        assert!(
            m.text
                .contains("My landline has no dial tone since this morning.")
        );

        let m = ok("bad_base64");
        assert!(
            m.text.contains("Internet is very slow every evening,"),
            "{:?}",
            m.text
        );
        assert!(!m.text.contains("SW50ZXJu"));

        let m = ok("bad_encoded_word");
        assert!(m.subject.contains("café"), "{}", m.subject);
        assert!(m.subject.contains("断网"), "{}", m.subject);
        assert_eq!(m.from, "grace@example.com");
    }

    #[test]
    fn lenient_transfer_decoders() {
        assert_eq!(base64_lenient(b"aGVs\nbG8=\n"), b"hello");
        assert_eq!(base64_lenient(b"aGVsbG8"), b"hello");
        assert_eq!(base64_lenient(b"aG!!Vs bG8="), b"hello");
        assert_eq!(
            qp_lenient(b"caf=C3=A9 =\nok =ZZ=4"),
            "café ok =ZZ=4".as_bytes()
        );
        assert_eq!(qp_lenient(b"a=  \r\nb"), b"ab");
    }
}
