//! What every edge parser shares: [`BadInput`] (input we refuse with a 4xx, naming the
//! field), form decoding that keeps raw bytes, phone numbers, SMS text checks, and the
//! redaction of our secret before a payload is stored. The webhook dialects that use them are
//! in [`crate::bridges`] (each parses its peer's request into a [`NewInbound`]: phone numbers
//! normalised to E.164, text decoded to UTF-8); the email parser is [`crate::email`]. Nothing
//! here touches the database.

use crate::domain::PhoneNumber;
pub use crate::store::NewInbound;
use std::borrow::Cow;

/// Input we refuse with a 4xx; `field` names the parameter, `reason` what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct BadInput {
    pub field: &'static str,
    pub reason: String,
}

impl BadInput {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        BadInput {
            field,
            reason: reason.into(),
        }
    }
    pub fn missing(field: &'static str) -> Self {
        BadInput::new(field, "missing")
    }
}

/// Parses a number or says which field is wrong.
/// A sender of only zeros (`0`, `000`) or of fewer than three digits is no one we could answer:
/// refused, so no ack goes to a number that does not exist.
pub fn phone(field: &'static str, v: &str, country: &str) -> Result<PhoneNumber, BadInput> {
    let p = PhoneNumber::parse(v, country).map_err(|e| BadInput::new(field, e.to_string()))?;
    let digits = p.digits();
    if field.eq_ignore_ascii_case("from") && (digits.len() < 3 || digits.bytes().all(|b| b == b'0'))
    {
        return Err(BadInput::new(
            field,
            format!("{v:?} is not a number that can be answered"),
        ));
    }
    Ok(p)
}

/// Splits an `application/x-www-form-urlencoded` string into raw byte values. Unlike a
/// `String` decoder this keeps bytes that are not UTF-8 (Kannel's `%b` with UCS-2 text).
/// A name and value borrow from the input unless they had to be decoded (`%`, `+`), so a
/// request of plain parameters costs no allocation but the list.
pub fn form_pairs(input: &[u8]) -> Vec<Pair<'_>> {
    input
        .split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &[][..]),
            };
            let name = match url_decode_cow(k) {
                Cow::Borrowed(b) => String::from_utf8_lossy(b),
                Cow::Owned(v) => Cow::Owned(
                    String::from_utf8(v)
                        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
                ),
            };
            (name, url_decode_cow(v))
        })
        .collect()
}

/// A decoded form parameter: its name (not UTF-8: replaced) and its raw value.
pub type Pair<'a> = (Cow<'a, str>, Cow<'a, [u8]>);

/// [`url_decode`], borrowing what needs no decoding.
pub fn url_decode_cow(v: &[u8]) -> Cow<'_, [u8]> {
    if v.iter().any(|&b| b == b'%' || b == b'+') {
        Cow::Owned(url_decode(v))
    } else {
        Cow::Borrowed(v)
    }
}

/// Percent-decoding with `+` as space (form encoding).
/// One pass into a buffer of the input's length (the decoded value is never longer); a `%`
/// not followed by two hex digits stays as it is, as with `percent_encoding`.
pub fn url_decode(v: &[u8]) -> Vec<u8> {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        let b = v[i];
        i += 1;
        match b {
            b'+' => out.push(b' '),
            b'%' => match (
                v.get(i).copied().and_then(hex),
                v.get(i + 1).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            _ => out.push(b),
        }
    }
    out
}

/// Looks up the first value of `name`.
pub fn get<'a>(pairs: &'a [Pair<'_>], name: &str) -> Option<&'a [u8]> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_ref())
}

/// A parameter as UTF-8 text, or an error naming it.
pub fn text_param(pairs: &[Pair<'_>], name: &'static str) -> Result<Option<String>, BadInput> {
    match get(pairs, name) {
        None => Ok(None),
        // No database stores a NUL in text (PostgreSQL refuses it): refused here, the same
        // on both engines, instead of a 503 the bridge would retry forever.
        Some(v) if v.contains(&0) => Err(BadInput::new(name, "contains a NUL byte")),
        Some(v) => String::from_utf8(v.to_vec())
            .map(Some)
            .map_err(|_| BadInput::new(name, "not valid UTF-8")),
    }
}

/// Removes secrets (our `token` parameter) before the raw payload is stored.
pub fn redact_query(q: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(q.len());
    for part in q.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let key = part.split(|&b| b == b'=').next().unwrap_or_default();
        if *url_decode_cow(key) == *b"token" {
            continue;
        }
        if !out.is_empty() {
            out.push(b'&');
        }
        out.extend_from_slice(part);
    }
    out
}

/// The text of an SMS as we store it, or why not: an empty (or blank) message is refused,
/// since there is nothing to classify or answer; NUL is refused (no database keeps it in text);
/// other control characters (C0 but tab, line feed and carriage return; DEL; C1) are removed
/// from the text, the raw payload keeps them.
pub fn check_text(field: &'static str, text: &mut String) -> Result<(), BadInput> {
    if text.contains('\0') {
        return Err(BadInput::new(field, "contains a NUL character"));
    }
    let is_control = |c: char| c.is_control() && !matches!(c, '\t' | '\n' | '\r');
    if text.chars().any(is_control) {
        text.retain(|c| !is_control(c));
    }
    if text.trim().is_empty() {
        return Err(BadInput::new(field, "empty message"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_decode_agrees_with_percent_encoding_with_plus_as_space() {
        let reference = |v: &[u8]| -> Vec<u8> {
            let plus: Vec<u8> = v
                .iter()
                .map(|&b| if b == b'+' { b' ' } else { b })
                .collect();
            percent_encoding::percent_decode(&plus).collect()
        };
        // Every string of up to 5 symbols over an alphabet with the interesting bytes.
        let alphabet = b"%+0aFgz \xff";
        let mut inputs: Vec<Vec<u8>> = vec![Vec::new()];
        for _ in 0..5 {
            let longer: Vec<Vec<u8>> = inputs
                .iter()
                .filter(|v| v.len() == inputs.last().map_or(0, |l| l.len()))
                .flat_map(|v| {
                    alphabet.iter().map(move |&b| {
                        let mut w = v.clone();
                        w.push(b);
                        w
                    })
                })
                .collect();
            inputs.extend(longer);
        }
        assert!(inputs.len() > 30_000);
        for v in &inputs {
            assert_eq!(url_decode(v), reference(v), "{v:?}");
        }
        assert_eq!(url_decode(b"%E6%88%91+%2b%2G%"), "我 +%2G%".as_bytes());
    }

    #[test]
    fn form_pairs_keep_non_utf8_bytes() {
        let p = form_pairs(b"text=%4F%60%59%7D&from=%2B86138&x");
        assert_eq!(get(&p, "text").unwrap(), &[0x4F, 0x60, 0x59, 0x7D]);
        assert_eq!(get(&p, "from").unwrap(), b"+86138");
        assert_eq!(get(&p, "x").unwrap(), b"");
        assert_eq!(url_decode(b"a+b%20c"), b"a b c");
    }

    #[test]
    fn plain_parameters_are_borrowed_and_encoded_ones_decoded() {
        let p = form_pairs(b"id=w0-1&from=8613800138000&te%78t=a+%E6%88%91&%FF=1&token=s");
        assert!(matches!(
            (&p[0].0, &p[0].1),
            (Cow::Borrowed("id"), Cow::Borrowed(b"w0-1"))
        ));
        assert!(matches!(&p[1].1, Cow::Borrowed(_)));
        assert_eq!(get(&p, "text").unwrap(), "a 我".as_bytes());
        assert!(matches!(&p[2].1, Cow::Owned(_)));
        assert_eq!(p[3].0, "\u{FFFD}");
        assert_eq!(
            redact_query(b"from=1&tok%65n=s&token=t&text=x"),
            b"from=1&text=x"
        );
    }

    #[test]
    fn empty_messages_zero_senders_and_control_characters() {
        let mut t = String::from("  \u{7} ");
        assert_eq!(
            check_text("text", &mut t).unwrap_err().reason,
            "empty message"
        );
        let mut t = String::from("bell\u{7} and\u{1b}[0m escape\u{85}\tkept\r\n");
        check_text("text", &mut t).unwrap();
        assert_eq!(t, "bell and[0m escape\tkept\r\n");
        for sender in ["0", "000", "00000000000", "12"] {
            assert_eq!(
                phone("from", sender, "86").unwrap_err().field,
                "from",
                "{sender}"
            );
        }
        assert_eq!(phone("to", "10000", "86").unwrap().as_str(), "10000");
        assert_eq!(phone("from", "10086", "86").unwrap().as_str(), "10086");
    }

    #[test]
    fn redaction_drops_only_the_token() {
        assert_eq!(redact_query(b"a=1&token=s3cret&b=2"), b"a=1&b=2");
        assert_eq!(redact_query(b"token=x"), b"");
        // However the key is encoded: %74oken, t%6Fken, tok%65n.
        assert_eq!(
            redact_query(b"a=1&%74oken=s3cret&t%6Fken=s&tok%65n&b=2"),
            b"a=1&b=2"
        );
    }
}
