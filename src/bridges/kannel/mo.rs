//! Kannel `sms-service` get-url / post-url. Query names (what the README's `get-url` sends):
//! `id=%I&from=%p&to=%P&ts=%T&coding=%c&charset=%C&text=%b&smsc=%i&udh=%u`. `%b` is the
//! original bytes, so the text is decoded by `coding`/`charset`: UTF-8 (also what
//! `mo-recode = yes` produces), UTF-16BE for UCS-2 (coding 2), Latin-1 for 8-bit charsets.
//! With post-url the text is the body and the metadata arrives in the query string and the
//! `X-Kannel-*` headers.

use crate::bridges::smpp;
use crate::domain::Channel;
use crate::inbound::{
    BadInput, NewInbound, check_text, form_pairs, get, phone, redact_query, text_param,
};
use crate::outbound::segment::from_utf16be;
use axum::http::HeaderMap;

/// Parses a GET (`body` = None) or POST request.
///
/// # Errors
/// Missing or invalid `from`/`to`/`text`, unknown coding or charset, undecodable text.
pub fn parse(
    query: &[u8],
    headers: &HeaderMap,
    body: Option<&[u8]>,
    country: &str,
) -> Result<NewInbound, BadInput> {
    let q = form_pairs(query);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let from = text_param(&q, "from")?
        .or_else(|| header("x-kannel-from"))
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| BadInput::missing("from"))?;
    let to = text_param(&q, "to")?
        .or_else(|| header("x-kannel-to"))
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| BadInput::missing("to"))?;
    let coding = text_param(&q, "coding")?
        .or_else(|| header("x-kannel-coding"))
        .unwrap_or_default();
    let content_type_charset = header("content-type").and_then(|ct| {
        ct.split(';')
            .filter_map(|p| p.trim().strip_prefix("charset="))
            .next()
            .map(|c| c.trim_matches('"').to_string())
    });
    let charset = text_param(&q, "charset")?
        .filter(|c| !c.is_empty())
        .or(content_type_charset)
        .unwrap_or_default();
    let bytes: &[u8] = match body {
        Some(b) => b,
        None => get(&q, "text").ok_or_else(|| BadInput::missing("text"))?,
    };
    let mut text = decode(bytes, coding.trim(), charset.trim())?;
    check_text("text", &mut text)?;
    let id = text_param(&q, "id")?.filter(|s| !s.is_empty() && !s.starts_with('%'));
    // `%u`: the UDH of a part bearerbox did not reassemble (`sms-combine-concatenated-mo = false`
    // or a part it gave up on); SAR fields if a meta-data mapping passes them.
    let udh_part = match get(&q, "udh") {
        Some(u) if !u.is_empty() && !u.starts_with(b"%") => smpp::parse_udh(u)?.0,
        _ => None,
    };
    let sar = smpp::sar(
        text_param(&q, "sar_msg_ref_num")?.as_deref(),
        text_param(&q, "sar_total_segments")?.as_deref(),
        text_param(&q, "sar_segment_seqnum")?.as_deref(),
    )?;
    let mut raw = redact_query(query);
    if let Some(b) = body {
        raw.extend_from_slice(b"\n\n");
        raw.extend_from_slice(b);
    }
    Ok(NewInbound {
        channel: Channel::Sms,
        dialect: "kannel",
        external_id: id,
        from: phone("from", &from, country)?.into(),
        to: phone("to", &to, country)?.into(),
        subject: None,
        text,
        raw,
        email: None,
        part: udh_part.or(sar),
    })
}

/// Decodes `%b` bytes by Kannel's `%c` coding and `%C` charset.
pub fn decode(bytes: &[u8], coding: &str, charset: &str) -> Result<String, BadInput> {
    let cs = charset.to_ascii_uppercase();
    let ucs2 = match coding {
        "2" => true,
        "0" | "1" | "" => matches!(cs.as_str(), "UTF-16BE" | "UCS-2" | "UCS2" | "UTF-16"),
        other => {
            return Err(BadInput::new(
                "coding",
                format!("unknown coding {other:?} (Kannel sends 0 = 7-bit, 1 = 8-bit, 2 = UCS-2)"),
            ));
        }
    };
    if ucs2 {
        return from_utf16be(bytes).map_err(|e| BadInput::new("text", e));
    }
    match cs.as_str() {
        "" | "UTF-8" | "UTF8" | "US-ASCII" | "ASCII" => {
            String::from_utf8(bytes.to_vec()).map_err(|_| {
                BadInput::new(
                    "text",
                    format!("not valid UTF-8 (charset {charset:?}, coding {coding:?})"),
                )
            })
        }
        "ISO-8859-1" | "LATIN1" | "WINDOWS-1252" => Ok(bytes.iter().map(|&b| b as char).collect()),
        "8-BIT" | "BINARY" => String::from_utf8(bytes.to_vec()).map_err(|_| {
            BadInput::new(
                "text",
                "8-bit binary message (charset 8-BIT) that is not text",
            )
        }),
        other => Err(BadInput::new(
            "charset",
            format!("unsupported charset {other:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_with_mo_recode_utf8() {
        let q = b"id=abc&from=%2B8613800138000&to=10000&coding=0&charset=UTF-8&text=%E5%AE%BD%E5%B8%A6%E5%9D%8F%E4%BA%86";
        let m = parse(q, &HeaderMap::new(), None, "86").unwrap();
        assert_eq!(m.text, "宽带坏了");
        assert_eq!(m.from, "+8613800138000");
        assert_eq!(m.to, "10000");
        assert_eq!(m.external_id.as_deref(), Some("abc"));
    }

    #[test]
    fn get_without_mo_recode_ucs2() {
        let q = b"from=13800138000&to=10000&coding=2&charset=UTF-16BE&text=%4F%60%59%7D";
        let m = parse(q, &HeaderMap::new(), None, "86").unwrap();
        assert_eq!(m.text, "你好");
        assert_eq!(m.external_id, None);
    }

    #[test]
    fn post_body_is_the_text() {
        let mut h = HeaderMap::new();
        h.insert("x-kannel-from", "+8613800138000".parse().unwrap());
        h.insert("x-kannel-to", "10000".parse().unwrap());
        let m = parse(
            b"coding=0&charset=UTF-8",
            &h,
            Some("no signal".as_bytes()),
            "86",
        )
        .unwrap();
        assert_eq!(m.text, "no signal");
        assert_eq!(m.from, "+8613800138000");
    }

    #[test]
    fn bad_input_names_the_field() {
        let h = HeaderMap::new();
        assert_eq!(
            parse(b"to=1&text=x", &h, None, "86").unwrap_err().field,
            "from"
        );
        assert_eq!(
            parse(b"from=13800138000&to=10000&coding=7&text=x", &h, None, "86")
                .unwrap_err()
                .field,
            "coding"
        );
        assert_eq!(
            parse(
                b"from=13800138000&to=10000&coding=2&text=%4F",
                &h,
                None,
                "86"
            )
            .unwrap_err()
            .field,
            "text"
        );
        assert_eq!(
            parse(b"from=abc&to=10000&text=x", &h, None, "86")
                .unwrap_err()
                .field,
            "from"
        );
        assert_eq!(
            parse(b"from=13800138000&to=10000&text=%FF", &h, None, "86")
                .unwrap_err()
                .field,
            "text"
        );
        assert_eq!(
            parse(
                b"from=13800138000&to=10000&charset=KOI8&text=x",
                &h,
                None,
                "86"
            )
            .unwrap_err()
            .field,
            "charset"
        );
        assert_eq!(
            parse(b"from=13800138000&to=10000&text=a%00b", &h, None, "86")
                .unwrap_err()
                .field,
            "text"
        );
    }

    #[test]
    fn the_token_is_not_kept_in_raw() {
        let m = parse(
            b"token=s3cret&from=13800138000&to=10000&text=hi",
            &HeaderMap::new(),
            None,
            "86",
        )
        .unwrap();
        assert!(!String::from_utf8_lossy(&m.raw).contains("s3cret"));
    }
}
