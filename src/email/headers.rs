//! Headers: the one pass over the top header block ([`HeaderScan`]), the reasons not to send
//! an automatic reply (RFC 3834 §2, PROTOCOLS.md "Email"), addresses (From, Return-Path,
//! Sender), the repair of header values mail-parser would misread, threading ids and our case
//! number in the subject.

use super::body::clean_line;
use super::charset::{alias, decode_guess};
use crate::domain::EmailAddress;
use mail_parser::decoders::charsets::DecoderFnc;
use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::{Addr, Header, HeaderName, HeaderValue, MessageParser};
use std::borrow::Cow;

/// The headers we look at, found in one pass. Values are raw header references.
#[derive(Default)]
pub(super) struct HeaderScan<'m> {
    pub(super) from: Option<&'m Header<'m>>,
    pub(super) subject: Option<&'m Header<'m>>,
    /// First (topmost) Return-Path: the one the delivering MTA added.
    pub(super) return_path: Option<&'m Header<'m>>,
    sender: Option<&'m Header<'m>>,
    auto_submitted: Option<String>,
    precedence: Option<String>,
    x_auto_response_suppress: Option<String>,
    x_loop: bool,
    list: bool,
}

impl<'m> HeaderScan<'m> {
    pub(super) fn visit(&mut self, header: &'m Header<'m>, raw: &[u8]) {
        let value = || {
            String::from_utf8_lossy(header_bytes(raw, header))
                .trim()
                .to_ascii_lowercase()
        };
        match &header.name {
            // mail-parser's own accessors use the last occurrence; so do we.
            HeaderName::From => self.from = Some(header),
            HeaderName::Subject => self.subject = Some(header),
            HeaderName::Sender => self.sender = Some(header),
            HeaderName::ReturnPath => {
                self.return_path.get_or_insert(header);
            }
            HeaderName::ListArchive
            | HeaderName::ListHelp
            | HeaderName::ListId
            | HeaderName::ListOwner
            | HeaderName::ListPost
            | HeaderName::ListSubscribe
            | HeaderName::ListUnsubscribe => self.list = true,
            name => {
                let name = name.as_str();
                if name.eq_ignore_ascii_case("auto-submitted") {
                    self.auto_submitted.get_or_insert_with(value);
                } else if name.eq_ignore_ascii_case("precedence") {
                    self.precedence.get_or_insert_with(value);
                } else if name.eq_ignore_ascii_case("x-auto-response-suppress") {
                    self.x_auto_response_suppress.get_or_insert_with(value);
                } else if name.eq_ignore_ascii_case("x-loop") {
                    self.x_loop = true;
                } else if name.len() > 5 && name.as_bytes()[..5].eq_ignore_ascii_case(b"list-") {
                    self.list = true;
                }
            }
        }
    }
}

/// RFC 3834 §2 and PROTOCOLS.md "Email": reasons not to send an automatic reply.
pub(super) fn auto_reason(
    h: &HeaderScan<'_>,
    raw: &[u8],
    is_report: bool,
    return_path: Option<&str>,
    from: &str,
) -> Option<&'static str> {
    if is_report {
        return Some("multipart/report");
    }
    match return_path {
        Some("") => return Some("null return path"),
        Some(rp) if is_mailer_daemon(rp) => return Some("mailer-daemon return path"),
        _ => {}
    }
    if let Some(v) = &h.auto_submitted
        && first_token(v) != "no"
    {
        return Some("auto-submitted");
    }
    if let Some(v) = &h.x_auto_response_suppress
        && v.split([',', ' ', '\t'])
            .any(|t| matches!(t.trim(), "all" | "autoreply" | "oof"))
    {
        return Some("x-auto-response-suppress");
    }
    if let Some(v) = &h.precedence {
        match first_token(v) {
            "bulk" => return Some("precedence: bulk"),
            "list" => return Some("precedence: list"),
            "junk" => return Some("precedence: junk"),
            _ => {}
        }
    }
    if h.list {
        return Some("list");
    }
    if h.x_loop {
        return Some("x-loop");
    }
    let sender = h.sender.map(|s| angle_addr(header_bytes(raw, s)));
    for addr in [Some(from), return_path, sender.as_deref()]
        .into_iter()
        .flatten()
    {
        if is_mailer_daemon(addr) {
            return Some("mailer-daemon sender");
        }
        if is_no_reply(addr) {
            return Some("no-reply sender");
        }
    }
    None
}

pub(super) fn first_token(v: &str) -> &str {
    v.split([' ', '\t', ';', '(']).next().unwrap_or_default()
}

fn local_part(addr: &str) -> &str {
    addr.rsplit_once('@').map_or(addr, |(l, _)| l)
}

/// `(mailer-daemon|postmaster)@`, unanchored on the left like the PROTOCOLS.md regex, plus a
/// bare `MAILER-DAEMON` return path.
fn is_mailer_daemon(addr: &str) -> bool {
    let addr = addr.to_ascii_lowercase();
    let local = local_part(&addr);
    local.ends_with("mailer-daemon") || (addr.contains('@') && local.ends_with("postmaster"))
}

/// `(noreply|no-reply)@` (PROTOCOLS.md), plus the common `donotreply` / `do-not-reply` /
/// `no_reply` spellings.
fn is_no_reply(addr: &str) -> bool {
    let addr = addr.to_ascii_lowercase();
    addr.contains('@')
        && [
            "noreply",
            "no-reply",
            "no_reply",
            "donotreply",
            "do-not-reply",
        ]
        .iter()
        .any(|s| local_part(&addr).ends_with(s))
}

pub(super) fn header_bytes<'r>(raw: &'r [u8], h: &Header<'_>) -> &'r [u8] {
    raw.get(h.offset_start as usize..h.offset_end as usize)
        .unwrap_or_default()
}

pub(super) fn addr_parts(a: &Addr<'_>) -> (Option<String>, Option<String>) {
    (
        a.address().map(str::to_string),
        a.name().map(str::to_string),
    )
}

/// The address, lowercased, if it has exactly one `@` with something on both sides, no
/// spaces, and at most [`EmailAddress::MAX_BYTES`] bytes ([`EmailAddress::parse`]).
pub(super) fn valid_address(a: &str) -> Option<EmailAddress> {
    EmailAddress::parse(a).ok()
}

/// The address inside `<…>` of a Return-Path / Sender style value (`""` for `<>`), lowercased.
pub(super) fn angle_addr(value: &[u8]) -> String {
    let v = String::from_utf8_lossy(value);
    let v = v.trim();
    let inner = match v.find('<') {
        Some(start) => {
            let rest = &v[start + 1..];
            &rest[..rest.find('>').unwrap_or(rest.len())]
        }
        None => v.split_whitespace().next().unwrap_or_default(),
    };
    inner.trim().to_lowercase()
}

/// The raw header value repaired into UTF-8 with known charset labels, when mail-parser would
/// misread it; `None` when mail-parser can read it as is.
pub(super) fn repaired_header(value: &[u8], fallback: Option<DecoderFnc>) -> Option<String> {
    let (text, changed) = match std::str::from_utf8(value) {
        Ok(s) => (Cow::Borrowed(s), false),
        Err(_) => (
            Cow::Owned(fallback.map_or_else(|| decode_guess(value, None), |d| d(value))),
            true,
        ),
    };
    match relabel_encoded_words(&text) {
        Some(relabelled) => Some(relabelled),
        None if changed => Some(text.into_owned()),
        None => None,
    }
}

/// Replaces charset labels of encoded-words that mail-parser does not know by ones it knows.
pub(super) fn relabel_encoded_words(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut copied = 0;
    let mut pos = 0;
    while let Some(found) = s[pos..].find("=?") {
        let start = pos + found + 2;
        let rest = &s[start..];
        let end = rest
            .find(|c: char| c == '?' || c == '*' || c.is_whitespace())
            .unwrap_or(rest.len());
        let label = &rest[..end];
        if end < rest.len()
            && !rest[end..].starts_with(char::is_whitespace)
            && !label.is_empty()
            && charset_decoder(label.as_bytes()).is_none()
            && let Some(known) = alias(label)
        {
            out.push_str(&s[copied..start]);
            out.push_str(known);
            copied = start + end;
        }
        pos = start + end;
    }
    (copied > 0).then(|| {
        out.push_str(&s[copied..]);
        out
    })
}

/// Lets mail-parser parse one repaired header on its own.
pub(super) fn reparse_address(name: &str, value: &str) -> (Option<String>, Option<String>) {
    let block = format!("{name}:{value}\n\n");
    MessageParser::default()
        .parse_headers(block.as_bytes())
        .and_then(|m| m.from().and_then(|a| a.first()).map(addr_parts))
        .unwrap_or_default()
}

pub(super) fn reparse_subject(value: &str) -> String {
    let block = format!("Subject:{value}\n\n");
    MessageParser::default()
        .parse_headers(block.as_bytes())
        .and_then(|m| m.subject().map(str::to_string))
        .unwrap_or_default()
}

/// Message ids of an In-Reply-To / References value, without `<>`.
pub(super) fn ids(v: &HeaderValue<'_>) -> Vec<String> {
    let list: Vec<&str> = match v {
        HeaderValue::Text(t) => vec![t.as_ref()],
        HeaderValue::TextList(l) => l.iter().map(|t| t.as_ref()).collect(),
        _ => Vec::new(),
    };
    list.into_iter()
        .flat_map(|t| t.split_whitespace())
        .map(|id| clean_line(id.trim_matches(['<', '>', ','])))
        .filter(|id| !id.is_empty())
        .collect()
}

/// The case number in a tag like `[SB00000042]` (8 or more digits after `SB`, not glued to
/// other letters or digits).
pub(super) fn case_ref(subject: &str) -> Option<crate::domain::CaseId> {
    let b = subject.as_bytes();
    let mut i = 0;
    while i + 2 <= b.len() {
        if b[i..i + 2].eq_ignore_ascii_case(b"SB") && (i == 0 || !b[i - 1].is_ascii_alphanumeric())
        {
            let digits = b[i + 2..].iter().take_while(|c| c.is_ascii_digit()).count();
            if (8..=18).contains(&digits) {
                let n: i64 = subject[i + 2..i + 2 + digits].parse().ok()?;
                let glued = b.get(i + 2 + digits).is_some_and(u8::is_ascii_alphabetic);
                if n > 0 && !glued {
                    return Some(crate::domain::CaseId(n));
                }
            }
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::email::tests::ok;
    use crate::email::{MAX_EMAIL_BYTES, parse};

    #[test]
    fn case_numbers_in_subjects() {
        assert_eq!(
            case_ref("Re: [SB00000042] x"),
            Some(crate::domain::CaseId(42))
        );
        assert_eq!(
            case_ref("工单SB00000007进展"),
            Some(crate::domain::CaseId(7))
        );
        assert_eq!(case_ref("sb00000042"), Some(crate::domain::CaseId(42)));
        assert_eq!(
            case_ref("[SB123456789]"),
            Some(crate::domain::CaseId(123_456_789))
        );
        assert_eq!(case_ref("SB0000042"), None);
        assert_eq!(case_ref("XSB00000042"), None);
        assert_eq!(case_ref("SB00000042X"), None);
        assert_eq!(case_ref("SB00000000"), None);
        assert_eq!(case_ref("SB99999999999999999999"), None);
    }

    #[test]
    fn auto_replies_get_a_reason_and_customer_mail_none() {
        for (name, reason) in [
            ("auto_submitted", "auto-submitted"),
            ("ooo_x_auto_response", "x-auto-response-suppress"),
            ("precedence_bulk", "precedence: bulk"),
            ("list_message", "list"),
            ("noreply_sender", "no-reply sender"),
            ("mailer_daemon", "null return path"),
            ("x_loop", "x-loop"),
            ("dsn_failed_5xx", "multipart/report"),
            ("dsn_delayed_4xx", "multipart/report"),
            ("mdn_read_receipt", "multipart/report"),
        ] {
            assert_eq!(ok(name).auto, Some(reason), "{name}");
        }
        for name in [
            "gbk_complaint",
            "gb18030_fault",
            "big5_inquiry",
            "iso2022jp",
            "gb2312_alias",
            "x_gbk_alias",
            "html_only",
            "multipart_alternative_utf8",
            "reply_thread",
            "broken_boundary",
            "bad_base64",
            "bad_encoded_word",
            "nul_bytes",
            "many_headers",
        ] {
            assert_eq!(ok(name).auto, None, "{name}");
        }
    }

    #[test]
    fn auto_reply_header_rules() {
        let with = |extra: &str| {
            let raw = format!("From: a@example.com\nTo: cs@gw.test\n{extra}\nSubject: s\n\nbody\n");
            parse(raw.as_bytes(), MAX_EMAIL_BYTES).unwrap().auto
        };
        assert_eq!(with("Auto-Submitted: no"), None);
        assert_eq!(
            with("Auto-Submitted: auto-generated"),
            Some("auto-submitted")
        );
        assert_eq!(with("Precedence: Junk"), Some("precedence: junk"));
        assert_eq!(with("Precedence: first-class"), None);
        assert_eq!(with("X-Auto-Response-Suppress: DR, RN"), None);
        assert_eq!(
            with("X-Auto-Response-Suppress: DR, OOF"),
            Some("x-auto-response-suppress")
        );
        assert_eq!(
            with("List-Unsubscribe-Post: List-Unsubscribe=One-Click"),
            Some("list")
        );
        assert_eq!(
            with("Return-Path: <MAILER-DAEMON>"),
            Some("mailer-daemon return path")
        );
        assert_eq!(
            with("Sender: postmaster@example.com"),
            Some("mailer-daemon sender")
        );
        assert_eq!(with("Return-Path: <a@example.com>"), None);
    }
}
