//! Generic JSON webhook: `{"id": "...", "from": "...", "to": "...", "text": "...",
//! "received_at": "..."}`; `id` is optional (then the content hash dedupes).

use crate::domain::Channel;
use crate::inbound::{BadInput, NewInbound, check_text, phone};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    id: Option<String>,
    from: String,
    to: String,
    text: String,
    #[allow(dead_code)]
    received_at: Option<String>,
}

/// # Errors
/// Invalid JSON (with line and column), missing or unknown fields, bad numbers.
pub fn parse(body: &[u8], country: &str) -> Result<NewInbound, BadInput> {
    let p: Payload =
        serde_json::from_slice(body).map_err(|e| BadInput::new("body", e.to_string()))?;
    let mut p = p;
    check_text("text", &mut p.text)?;
    if p.id.as_deref().is_some_and(|id| id.contains('\0')) {
        return Err(BadInput::new("id", "contains a NUL character"));
    }
    Ok(NewInbound {
        channel: Channel::Sms,
        dialect: "generic",
        external_id: p.id.filter(|s| !s.is_empty()),
        from: phone("from", &p.from, country)?.into(),
        to: phone("to", &p.to, country)?.into(),
        subject: None,
        text: p.text,
        raw: body.to_vec(),
        email: None,
        part: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let m = parse(
            br#"{"id":"g1","from":"13800138000","to":"10000","text":"hi"}"#,
            "86",
        )
        .unwrap();
        assert_eq!(m.from, "+8613800138000");
        let e = parse(br#"{"from":"13800138000","to":"10000"}"#, "86").unwrap_err();
        assert!(e.reason.contains("text"), "{e}");
        let e = parse(
            br#"{"from":"13800138000","to":"10000","text":"x","bogus":1}"#,
            "86",
        )
        .unwrap_err();
        assert!(e.reason.contains("bogus"), "{e}");
        assert_eq!(parse(b"not json", "86").unwrap_err().field, "body");
    }
}
