//! Raw RFC 5322 messages (SendGrid raw mode, Mailgun `body-mime`, Cloudflare Email Workers,
//! the Postfix pipe) parsed into what intake needs: sender, subject, best plain text, threading
//! ids, our case number, whether an automatic acknowledgement is allowed (RFC 3834) and, for
//! RFC 3464 delivery reports, the per-recipient outcome. Pure: no I/O, no database, no async;
//! the caller keeps the raw bytes and runs this in `spawn_blocking`.
//!
//! Decoding is mail-parser's (feature `full_encoding`). We help it in three places:
//! * charset labels it does not know (`eucgb2312_cn`, `x-euc-cn`, `cp950`, `iso-2022-jp-2`, …)
//!   are mapped to a decoder it does know, both for body parts and for encoded-words;
//! * 8-bit header bytes that are not UTF-8 are decoded with the body's charset or, failing
//!   that, GB18030 when it decodes them cleanly; body bytes that do not match their label
//!   (none, unknown, UTF-8 or US-ASCII but not valid as such) are tried as UTF-8, then
//!   GB18030 when it decodes them cleanly;
//! * a base64 / quoted-printable body mail-parser gives up on is decoded leniently instead of
//!   being shown as its encoded form.
//!
//! Bounded work (README "Limits"). mail-parser 0.11 parses iteratively, but a message nested
//! in a message is a `PartType::Message` inside the parent, so dropping a deep tree recurses
//! once per level (50,000 nested `message/rfc822` parts overflow any thread's stack), and a
//! *transfer-encoded* `message/rfc822` part is parsed recursively and copied once per message
//! level inside it (quadratic). So before mail-parser runs, [`check_shape`] walks the raw bytes
//! once the way mail-parser will (header blocks, the innermost boundary searched anywhere,
//! encoded message parts decoded and walked, as mail-parser does, at most three levels down)
//! and refuses mail over [`Limits`] (nesting depth, parts, header fields) or with shapes that
//! make mail-parser rescan or copy the message (missing boundaries, over-long boundaries,
//! messages inside an encoded message part). After the parse the real tree is measured against
//! the same limits, and it is always torn down iteratively. The decoded values are capped too
//! (subject, text, threading ids, DSN recipients), the raw bytes being kept whole by the caller.
//!
//! Files: `mod.rs` the public types, [`parse`] / [`parse_with`], the process-wide limits
//! ([`configure`]) and the assembly of a [`ParsedEmail`]; `shape.rs` the [`Limits`], the
//! [`check_shape`] pre-scan, the measure of the parsed tree and its iterative teardown;
//! `headers.rs` the one-pass header scan, the RFC 3834 auto-reply rules, addresses, header
//! repair, threading ids and the case number; `charset.rs` charset label aliases and the guess
//! for mislabelled bytes; `body.rs` the body text, lenient base64 / quoted-printable, cleaning;
//! `html.rs` HTML reduced to text; `quoting.rs` [`strip_quoted`]; `dsn.rs` RFC 3464 reports.

mod body;
mod charset;
mod dsn;
mod headers;
mod html;
mod quoting;
mod shape;

pub use quoting::strip_quoted;
pub use shape::{
    Limits, MAX_BOUNDARY_BYTES, MAX_EMAIL_BYTES, MAX_ENCODED_MESSAGES, MAX_MISSING_BOUNDARIES,
    Shape, check_shape,
};

use crate::domain::EmailAddress;
use crate::inbound::BadInput;
use body::{body_text, clean_line, is_type};
use charset::{decoder_for, is_ascii_label};
use dsn::delivery_status;
use headers::{
    HeaderScan, addr_parts, angle_addr, auto_reason, case_ref, header_bytes, ids, repaired_header,
    reparse_address, reparse_subject, valid_address,
};
use mail_parser::{Message, MessageParser, MimeHeaders};
use shape::{Flat, measure};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Decoded subject, in characters (the rest is cut).
pub const MAX_SUBJECT_CHARS: usize = 1_000;
/// Decoded text, in bytes (cut at a character boundary and marked `[…]`).
pub const MAX_TEXT_BYTES: usize = 1024 * 1024;
/// `In-Reply-To` ids kept (the first ones) and `References` ids kept (the last ones).
pub const MAX_IN_REPLY_TO: usize = 8;
pub const MAX_REFERENCES: usize = 64;
/// Per-recipient blocks of a delivery status notification kept.
pub const MAX_DSN_RECIPIENTS: usize = 64;
/// Longest From address (RFC 5321 paths are at most 256 octets with the brackets).
pub const MAX_ADDRESS_BYTES: usize = crate::domain::EmailAddress::MAX_BYTES;

/// The structural limits [`parse`] applies, set once at start-up from the configuration
/// ([`configure`]); [`Limits::DEFAULT`] until then. Process-wide because the intake calls
/// [`parse`] with only `max_bytes`; [`parse_with`] takes explicit limits.
static CONFIGURED: [AtomicUsize; 3] = [
    AtomicUsize::new(Limits::DEFAULT.max_depth),
    AtomicUsize::new(Limits::DEFAULT.max_parts),
    AtomicUsize::new(Limits::DEFAULT.max_headers),
];

/// Sets the structural limits (depth, parts, headers) [`parse`] applies in this process.
pub fn configure(limits: &Limits) {
    CONFIGURED[0].store(limits.max_depth, Ordering::Relaxed);
    CONFIGURED[1].store(limits.max_parts, Ordering::Relaxed);
    CONFIGURED[2].store(limits.max_headers, Ordering::Relaxed);
}

/// The configured structural limits with `max_bytes`.
pub fn configured(max_bytes: usize) -> Limits {
    Limits {
        max_bytes,
        max_depth: CONFIGURED[0].load(Ordering::Relaxed),
        max_parts: CONFIGURED[1].load(Ordering::Relaxed),
        max_headers: CONFIGURED[2].load(Ordering::Relaxed),
    }
}

/// What intake needs from one inbound email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedEmail {
    /// `Message-ID` without the angle brackets.
    pub message_id: Option<String>,
    /// The From address (lowercased; masked in logs).
    pub from: EmailAddress,
    pub from_name: Option<String>,
    /// First To address, lowercased; `""` when there is none.
    pub to: String,
    /// The topmost `Return-Path` (the one the delivering MTA wrote), lowercased, without `<>`;
    /// `Some("")` for the null return path `<>`.
    pub return_path: Option<String>,
    /// Decoded to UTF-8; `""` when missing.
    pub subject: String,
    /// Best plain text: the text/plain parts, else HTML reduced to text. UTF-8, LF line ends,
    /// no NUL characters.
    pub text: String,
    /// `text` without quoted history (`>` lines, and everything from an attribution line such
    /// as `On … wrote:` / `在 … 写道：` / `-----Original Message-----` / `发件人:` /
    /// `From: … Sent:` onward).
    pub text_for_classification: String,
    /// `In-Reply-To` ids without `<>`.
    pub in_reply_to: Vec<String>,
    /// `References` ids without `<>`.
    pub references: Vec<String>,
    /// Our case number from a tag like `[SB00000042]` in the subject.
    pub case_ref: Option<crate::domain::CaseId>,
    /// Why no automatic reply may be sent (RFC 3834 and PROTOCOLS.md); `None` = an ack is allowed.
    pub auto: Option<&'static str>,
    /// Present for `multipart/report; report-type=delivery-status`.
    pub dsn: Option<Dsn>,
    /// Parts mail-parser counts as attachments (anything that is not the message body).
    pub attachments: usize,
}

/// An RFC 3464 delivery status notification.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Dsn {
    /// Message-ID (without `<>`) of the message the report is about, from the attached
    /// `message/rfc822` or `text/rfc822-headers` part.
    pub original_message_id: Option<String>,
    pub recipients: Vec<DsnRecipient>,
}

/// One per-recipient block of a delivery-status part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsnRecipient {
    /// Address without its `rfc822;` type, lowercased.
    pub final_recipient: String,
    /// `failed`, `delayed`, `delivered`, `relayed` or `expanded` (lowercased, as sent).
    pub action: String,
    /// Status code such as `5.1.1`.
    pub status: String,
    /// The `Diagnostic-Code` value, unfolded (e.g. `smtp; 550 5.1.1 …`).
    pub diagnostic: Option<String>,
}

const FIELD: &str = "email";

/// Parses a raw message of at most `max_bytes` bytes under the configured structural limits
/// ([`configure`]).
///
/// # Errors
/// Empty input, input over `max_bytes`, input that is not an email (no header block, no From
/// address), a message over a limit, or a message the parser could not handle.
pub fn parse(raw: &[u8], max_bytes: usize) -> Result<ParsedEmail, BadInput> {
    parse_with(raw, &configured(max_bytes))
}

/// Parses a raw message under `limits`. Stack use does not depend on the input (the tree is
/// torn down iteratively; a unit test parses hostile mail on a 256 KiB stack); work and memory
/// are linear in the input's size.
///
/// # Errors
/// As [`parse`].
pub fn parse_with(raw: &[u8], limits: &Limits) -> Result<ParsedEmail, BadInput> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(BadInput::new(FIELD, "empty message"));
    }
    let max_bytes = limits.max_bytes;
    if raw.len() > max_bytes {
        return Err(BadInput::new(
            FIELD,
            format!(
                "message is {} bytes, over the {max_bytes}-byte cap",
                raw.len()
            ),
        ));
    }
    if !starts_with_header(raw) {
        return Err(BadInput::new(
            FIELD,
            "not an email: the input does not start with a header block",
        ));
    }
    guarded(|| {
        check_shape(raw, limits)?;
        parse_message(raw, limits)
    })
}

/// Runs `f`, turning a panic (mail-parser has shipped some on malformed input) into a
/// `BadInput`. Only effective with `panic = "unwind"`.
fn guarded<T>(f: impl FnOnce() -> Result<T, BadInput>) -> Result<T, BadInput> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(BadInput::new(FIELD, "the message could not be parsed")))
}

/// True if the first line (after an optional mbox `From ` line) is a header field.
fn starts_with_header(raw: &[u8]) -> bool {
    let mut lines = raw.split(|&b| b == b'\n');
    let mut first = lines.next().unwrap_or_default();
    if first.starts_with(b"From ") {
        first = lines.next().unwrap_or_default();
    }
    let Some(colon) = first.iter().position(|&b| b == b':') else {
        return false;
    };
    let name = first[..colon].trim_ascii_end();
    !name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b))
}

fn cap_chars(s: String, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => s[..cut].to_string(),
        None => s,
    }
}

/// `text` cut to [`MAX_TEXT_BYTES`] at a character boundary, marked `[…]`.
fn cap_text(mut text: String) -> String {
    if text.len() > MAX_TEXT_BYTES {
        let mut cut = MAX_TEXT_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("\n[…]");
    }
    text
}

fn parse_message(raw: &[u8], limits: &Limits) -> Result<ParsedEmail, BadInput> {
    let msg = Flat(
        MessageParser::default()
            .parse(raw)
            .ok_or_else(|| BadInput::new(FIELD, "not an email: no header block"))?,
    );
    // The scan mirrors mail-parser closely but not bit for bit: the tree it built is what counts.
    measure(&msg).check(limits)?;
    let msg: &Message<'_> = &msg;
    let root = msg.root_part();
    let headers = &root.headers;
    let raw = msg.raw_message();

    // Charset used for 8-bit header bytes that are not UTF-8: the body's, when it is a real one.
    let body_label = msg
        .text_body
        .first()
        .and_then(|&id| msg.parts.get(id as usize))
        .and_then(|p| p.content_type())
        .and_then(|ct| ct.attribute("charset"))
        .filter(|l| !is_ascii_label(l));
    let header_fallback = body_label.and_then(decoder_for);

    // One pass over the (possibly 10,000) headers.
    let mut h = HeaderScan::default();
    for header in headers {
        h.visit(header, raw);
    }

    // From: mail-parser's reading, unless the raw header needs repair.
    let (from_addr, from_name) = match h
        .from
        .and_then(|f| repaired_header(header_bytes(raw, f), header_fallback))
    {
        Some(fixed) => reparse_address("From", &fixed),
        None => msg
            .from()
            .and_then(|a| a.first())
            .map(addr_parts)
            .unwrap_or_default(),
    };
    let from = valid_address(from_addr.as_deref().unwrap_or_default()).ok_or_else(|| {
        BadInput::new(
            FIELD,
            match (h.from, from_addr) {
                (None, _) => "not an email: no From header".to_string(),
                (Some(f), None) => format!(
                    "invalid From address {:?}",
                    clean_line(&String::from_utf8_lossy(header_bytes(raw, f)))
                        .chars()
                        .take(200)
                        .collect::<String>()
                ),
                (Some(_), Some(a)) => format!(
                    "invalid From address {:?}",
                    a.chars().take(200).collect::<String>()
                ),
            },
        )
    })?;
    let from_name = from_name.map(|n| clean_line(&n)).filter(|n| !n.is_empty());

    let subject = match h
        .subject
        .and_then(|s| repaired_header(header_bytes(raw, s), header_fallback))
    {
        Some(fixed) => reparse_subject(&fixed),
        None => msg.subject().unwrap_or_default().to_string(),
    };
    let subject = cap_chars(clean_line(&subject), MAX_SUBJECT_CHARS);

    let to = msg
        .to()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .map(|a| a.trim().to_lowercase())
        .unwrap_or_default();

    let return_path = h.return_path.map(|rp| angle_addr(header_bytes(raw, rp)));

    let text = cap_text(body_text(msg));
    let text_for_classification = strip_quoted(&text);

    let is_report = root
        .content_type()
        .is_some_and(|ct| is_type(ct.ctype(), ct.subtype(), "multipart", "report"));
    let is_delivery_report = is_report
        && root
            .content_type()
            .and_then(|ct| ct.attribute("report-type"))
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("delivery-status"));
    let dsn = is_delivery_report.then(|| delivery_status(msg));

    let auto = auto_reason(&h, raw, is_report, return_path.as_deref(), from.as_str());

    Ok(ParsedEmail {
        message_id: msg
            .message_id()
            .map(|id| clean_line(id.trim_matches(['<', '>'])))
            .filter(|id| !id.is_empty()),
        from,
        from_name,
        to,
        return_path,
        case_ref: case_ref(&subject),
        subject,
        text,
        text_for_classification,
        in_reply_to: {
            let mut v = ids(msg.in_reply_to());
            v.truncate(MAX_IN_REPLY_TO);
            v
        },
        references: {
            let v = ids(msg.references());
            v[v.len().saturating_sub(MAX_REFERENCES)..].to_vec()
        },
        auto,
        dsn,
        attachments: msg.attachments.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/email");

    pub(super) fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{DIR}/{name}.eml")).unwrap()
    }

    pub(super) fn ok(name: &str) -> ParsedEmail {
        parse(&fixture(name), MAX_EMAIL_BYTES).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn crlf(raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
        for &b in raw {
            if b == b'\n' {
                out.push(b'\r');
            }
            out.push(b);
        }
        out
    }

    #[test]
    fn every_fixture_parses_or_is_rejected_in_lf_and_crlf() {
        let rejected = ["empty.eml", "not_an_email.eml"];
        let mut seen = 0;
        for entry in std::fs::read_dir(DIR).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "eml") {
                continue;
            }
            seen += 1;
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let raw = std::fs::read(&path).unwrap();
            let lf = parse(&raw, MAX_EMAIL_BYTES);
            if rejected.contains(&name.as_str()) {
                let e = lf.expect_err(&name);
                assert_eq!(e.field, "email");
                continue;
            }
            let lf = lf.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!lf.text.contains('\0'), "{name}");
            assert!(!lf.subject.contains('\0'), "{name}");
            let wire =
                parse(&crlf(&raw), MAX_EMAIL_BYTES).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(wire.subject, lf.subject, "{name}");
            assert_eq!(wire.from, lf.from, "{name}");
            assert_eq!(wire.text, lf.text, "{name}");
            assert_eq!(wire.auto, lf.auto, "{name}");
            assert_eq!(wire.dsn, lf.dsn, "{name}");
        }
        assert!(seen >= 26, "only {seen} fixtures");
    }

    #[test]
    fn gbk_complaint() {
        let m = ok("gbk_complaint");
        assert_eq!(m.subject, "投诉：宽带三天无法上网");
        assert_eq!(m.from, "zhangsan@example.cn");
        assert_eq!(m.from_name.as_deref(), Some("张三"));
        assert_eq!(m.to, "customer-service@gw.test");
        assert_eq!(m.return_path.as_deref(), Some("zhangsan@example.cn"));
        assert_eq!(
            m.message_id.as_deref(),
            Some("20261124210301.4711@example.cn")
        );
        assert_eq!(
            m.text,
            "客服您好：\n我要投诉，家里宽带已经断了三天，报修两次都没人来处理。\n宽带账号：020-87654321，地址：广州市天河区体育西路1号。\n请今天之内给我一个答复！\n张三\n"
        );
        assert_eq!(m.text_for_classification, m.text.trim());
        assert_eq!(m.auto, None);
        assert_eq!(m.case_ref, None);
        assert_eq!(m.dsn, None);
        assert_eq!(m.attachments, 0);
    }

    #[test]
    fn reply_thread() {
        let m = ok("reply_thread");
        assert_eq!(m.subject, "Re: [SB00000042] 投诉：宽带三天无法上网");
        assert_eq!(m.case_ref, Some(crate::domain::CaseId(42)));
        assert_eq!(m.in_reply_to, vec!["ack-42@switchboard.local"]);
        assert_eq!(
            m.references,
            vec!["20261124210301.4711@example.cn", "ack-42@switchboard.local"]
        );
        assert_eq!(
            m.text_for_classification,
            "还是没有人联系我，今天已经第四天了，到底什么时候来修？"
        );
        assert!(m.text.contains("写道："));
        assert!(m.text.contains("> 您好，我们已收到您的投诉"));
        assert!(m.text.contains(">> 我要投诉"));
        assert_eq!(m.auto, None);
    }

    #[test]
    fn rejects_what_is_not_an_email() {
        let empty = parse(b"", MAX_EMAIL_BYTES).unwrap_err();
        assert_eq!(empty.field, "email");
        assert!(empty.reason.contains("empty"), "{}", empty.reason);
        assert!(parse(b" \r\n\r\n", MAX_EMAIL_BYTES).is_err());

        let png = parse(&fixture("not_an_email"), MAX_EMAIL_BYTES).unwrap_err();
        assert!(png.reason.contains("not an email"), "{}", png.reason);
        // As Postfix delivers it: prepended headers, a blank line, the PNG.
        let mut via_postfix = b"Return-Path: <a@b.c>\nReceived: from x\n\n".to_vec();
        via_postfix.extend_from_slice(&fixture("not_an_email"));
        let e = parse(&via_postfix, MAX_EMAIL_BYTES).unwrap_err();
        assert!(e.reason.contains("no From header"), "{}", e.reason);

        let e = parse(b"From: nobody\nSubject: x\n\nhi", MAX_EMAIL_BYTES).unwrap_err();
        assert!(e.reason.contains("invalid From"), "{}", e.reason);
        assert!(parse(b"From: a@@b\n\nhi", MAX_EMAIL_BYTES).is_err());
        assert!(parse(b"From: @b\n\nhi", MAX_EMAIL_BYTES).is_err());
    }

    #[test]
    fn over_the_cap_is_rejected_with_the_cap_in_the_reason() {
        let raw = fixture("gbk_complaint");
        let e = parse(&raw, 100).unwrap_err();
        assert_eq!(e.field, "email");
        assert!(e.reason.contains("100"), "{}", e.reason);
        assert!(parse(&raw, raw.len()).is_ok());
    }

    #[test]
    fn mbox_from_line_is_accepted() {
        let m = parse(
            b"From alice@example.com Mon Nov 23 10:00:00 2026\nFrom: Alice <Alice@Example.com>\nSubject: hi\n\nbody\n",
            MAX_EMAIL_BYTES,
        )
        .unwrap();
        assert_eq!(m.from, "alice@example.com");
        assert_eq!(m.from_name.as_deref(), Some("Alice"));
        assert_eq!(m.to, "");
        assert_eq!(m.return_path, None);
    }

    #[test]
    fn many_headers_parse() {
        let start = std::time::Instant::now();
        let m = ok("many_headers");
        assert_eq!(m.subject, "Ten thousand headers");
        assert_eq!(
            m.text,
            "Body after 10,000 X-Header lines: no signal at home.\n"
        );
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn a_panic_becomes_bad_input() {
        let e = guarded::<()>(|| panic!("boom")).unwrap_err();
        assert_eq!(e.field, "email");
        assert_eq!(e.reason, "the message could not be parsed");
    }

    #[test]
    fn truncated_and_mutated_fixtures_never_panic() {
        let mut seed: u64 = 0x5eed;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        for entry in std::fs::read_dir(DIR).unwrap() {
            let path = entry.unwrap().path();
            let raw = std::fs::read(&path).unwrap();
            if path.extension().is_none_or(|e| e != "eml") || raw.is_empty() || raw.len() > 10_000 {
                continue;
            }
            let mut inputs: Vec<Vec<u8>> = (0..raw.len())
                .step_by(5)
                .map(|n| raw[..n].to_vec())
                .collect();
            for _ in 0..200 {
                let mut m = raw.clone();
                for _ in 0..1 + next() % 4 {
                    let i = next() % m.len();
                    m[i] = b"=?<>-\n\r:;\"\\\0\xff"[next() % 12];
                }
                inputs.push(m);
            }
            for input in inputs {
                if let Err(e) = parse(&input, MAX_EMAIL_BYTES) {
                    assert_ne!(
                        e.reason,
                        "the message could not be parsed",
                        "{}",
                        path.display()
                    );
                }
            }
        }
    }

    #[test]
    fn huge_header_values_are_bounded_and_capped() {
        let started = std::time::Instant::now();
        let mut raw = b"From: a@example.com\nIn-Reply-To: ".to_vec();
        for i in 0..20 {
            raw.extend_from_slice(format!("<r{i}@x> ").as_bytes());
        }
        raw.extend_from_slice(b"\nReferences:");
        for i in 0..100_000 {
            raw.extend_from_slice(format!(" <id{i}@x>").as_bytes());
        }
        raw.extend_from_slice(b"\nSubject: ");
        raw.extend(std::iter::repeat_n(b's', 9_000_000));
        raw.extend_from_slice(b"\n\nbody\n");
        let m = parse(&raw, MAX_EMAIL_BYTES).unwrap();
        assert_eq!(m.subject.chars().count(), MAX_SUBJECT_CHARS);
        assert_eq!(m.in_reply_to.len(), MAX_IN_REPLY_TO);
        assert_eq!(m.references.len(), MAX_REFERENCES);
        assert_eq!(m.references.last().unwrap(), "id99999@x");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));

        let mut raw = b"From: ".to_vec();
        raw.extend(std::iter::repeat_n(b'a', 1_000_000));
        raw.extend_from_slice(b"@example.com\n\nbody\n");
        let e = parse(&raw, MAX_EMAIL_BYTES).unwrap_err();
        assert!(
            e.reason.starts_with("invalid From address"),
            "{}",
            &e.reason[..100]
        );
        assert!(e.reason.len() < 300);

        let mut raw = b"From: a@example.com\n\n".to_vec();
        raw.extend("断网".repeat(400_000).as_bytes());
        let m = parse(&raw, MAX_EMAIL_BYTES).unwrap();
        assert!(m.text.len() <= MAX_TEXT_BYTES + 8 && m.text.ends_with("\n[…]"));
    }
}
