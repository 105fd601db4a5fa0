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

use super::BadInput;
use mail_parser::decoders::charsets::DecoderFnc;
use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::decoders::html::html_to_text;
use mail_parser::{
    Addr, Header, HeaderName, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders,
    PartType,
};
use std::borrow::Cow;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Default size cap; the caller may pass a configured one.
pub const MAX_EMAIL_BYTES: usize = 10 * 1024 * 1024;

/// Structural limits of one inbound email. Over any of them the mail is refused (400 over
/// HTTP, exit 65 from `ingest-email`) with a reason naming the limit: such mail is never
/// customer mail a sender's MTA should keep retrying, and storing it would feed the intake
/// (classifier, acks, threading) with megabytes of structure nobody reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest raw message (`email.max_bytes`).
    pub max_bytes: usize,
    /// Deepest nesting of multipart and message parts; a message without parts is depth 0
    /// (`email.max_mime_depth`, like Postfix's `mime_nesting_limit`).
    pub max_depth: usize,
    /// Header blocks: the message, each MIME part and each nested message
    /// (`email.max_parts`).
    pub max_parts: usize,
    /// Header fields in all header blocks together (`email.max_headers`).
    pub max_headers: usize,
}

impl Limits {
    /// The built-in values (config/default.toml has the same).
    pub const DEFAULT: Limits = Limits {
        max_bytes: MAX_EMAIL_BYTES,
        max_depth: 100,
        max_parts: 1_000,
        max_headers: 20_000,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Longest MIME boundary accepted (RFC 2046 allows 70 characters). mail-parser compares the
/// boundary at every `--` of the body, so its length multiplies the work.
pub const MAX_BOUNDARY_BYTES: usize = 256;
/// Multipart parts whose boundary never occurs: mail-parser searches the rest of the message
/// for each, so they multiply the work.
pub const MAX_MISSING_BOUNDARIES: usize = 8;
/// Message parts inside one transfer-encoded message part (RFC 2046 forbids encoding
/// `message/rfc822`; `message/global` may be): mail-parser copies the decoded part once per
/// message inside it.
pub const MAX_ENCODED_MESSAGES: usize = 4;
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
pub const MAX_ADDRESS_BYTES: usize = 254;

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
    /// Lowercased From address: one `@`, non-empty local part and domain.
    pub from: String,
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
    pub case_ref: Option<i64>,
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

// ---------------------------------------------------------------------------------------------
// Limits: the shape scan before mail-parser, the measure after it, the iterative teardown

/// What a message is made of, as [`check_shape`] or the parsed tree count it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Deepest nesting of multipart and message parts (0: a message without parts).
    pub depth: usize,
    /// Header blocks (the message, each part, each nested message).
    pub parts: usize,
    /// Header fields, all header blocks together.
    pub headers: usize,
}

impl Shape {
    fn check(&self, limits: &Limits) -> Result<(), BadInput> {
        if self.depth > limits.max_depth {
            return Err(over_depth(limits));
        }
        if self.parts > limits.max_parts {
            return Err(over_parts(limits));
        }
        if self.headers > limits.max_headers {
            return Err(over_headers(limits));
        }
        Ok(())
    }
}

fn over_depth(l: &Limits) -> BadInput {
    BadInput::new(
        FIELD,
        format!(
            "refused: MIME parts nested more than {} deep (limit email.max_mime_depth)",
            l.max_depth
        ),
    )
}

fn over_parts(l: &Limits) -> BadInput {
    BadInput::new(
        FIELD,
        format!(
            "refused: more than {} MIME parts (limit email.max_parts)",
            l.max_parts
        ),
    )
}

fn over_headers(l: &Limits) -> BadInput {
    BadInput::new(
        FIELD,
        format!(
            "refused: more than {} header fields (limit email.max_headers)",
            l.max_headers
        ),
    )
}

/// Walks the raw message the way mail-parser 0.11 will and refuses it when it is over
/// `limits` or has a shape that would make mail-parser's work or memory grow faster than the
/// message (see the module documentation). It stops at the first limit crossed, so hostile
/// input costs no more than the limit. For ordinary mail it reads the header blocks line by
/// line and jumps between boundaries with `memmem`: a few microseconds for 20 KB.
///
/// # Errors
/// The limit crossed, named with its configuration key.
pub fn check_shape(raw: &[u8], limits: &Limits) -> Result<Shape, BadInput> {
    let mut scan = Scan {
        limits,
        shape: Shape::default(),
        missing: 0,
    };
    scan.message(raw, 0, MAIL_PARSER_ENCODED_LEVELS)?;
    Ok(scan.shape)
}

/// mail-parser parses a transfer-encoded message part (recursively) this many levels deep;
/// deeper ones stay binary.
const MAIL_PARSER_ENCODED_LEVELS: u8 = 3;

struct Scan<'l> {
    limits: &'l Limits,
    shape: Shape,
    missing: usize,
}

enum Level {
    /// `needle` is `--` + the boundary.
    Multipart {
        needle: Vec<u8>,
        digest: bool,
    },
    Message,
}

/// What a header block makes of the part it starts.
enum PartKind {
    Leaf,
    Multipart { boundary: Vec<u8>, digest: bool },
    Message { encoding: Option<Encoded> },
}

#[derive(Clone, Copy)]
enum Encoded {
    Base64,
    QuotedPrintable,
}

impl Scan<'_> {
    /// Scans one message (the input or a decoded encoded part) whose top header block is at
    /// depth `base`; returns how many message parts it holds.
    fn message(&mut self, data: &[u8], base: usize, encoded_left: u8) -> Result<usize, BadInput> {
        let mut stack: Vec<Level> = Vec::new();
        let mut messages = 0;
        let mut pos = 0;
        'block: loop {
            // A header block starts at `pos`.
            let depth = base + stack.len();
            self.shape.depth = self.shape.depth.max(depth);
            if depth > self.limits.max_depth {
                return Err(over_depth(self.limits));
            }
            self.shape.parts += 1;
            if self.shape.parts > self.limits.max_parts {
                return Err(over_parts(self.limits));
            }
            let in_digest = matches!(stack.last(), Some(Level::Multipart { digest: true, .. }));
            let (end, kind) = self.header_block(data, pos, in_digest)?;
            pos = end;
            match kind {
                PartKind::Leaf => {}
                PartKind::Message { encoding: None } => {
                    // The nested message's header block follows at once.
                    messages += 1;
                    stack.push(Level::Message);
                    continue 'block;
                }
                PartKind::Message {
                    encoding: Some(encoding),
                } => {
                    // mail-parser decodes the body (up to the next delimiter) and parses it.
                    messages += 1;
                    let end = innermost(&stack)
                        .and_then(|needle| memchr::memmem::find(&data[pos..], needle))
                        .map_or(data.len(), |i| pos + i);
                    if encoded_left > 0 {
                        let body = &data[pos..end];
                        let decoded = match encoding {
                            Encoded::Base64 => base64_lenient(body),
                            Encoded::QuotedPrintable => qp_lenient(body),
                        };
                        let inside = self.message(&decoded, depth + 1, encoded_left - 1)?;
                        if inside > MAX_ENCODED_MESSAGES {
                            return Err(BadInput::new(
                                FIELD,
                                format!(
                                    "refused: more than {MAX_ENCODED_MESSAGES} messages inside a \
                                     transfer-encoded message part"
                                ),
                            ));
                        }
                        messages += inside;
                    }
                    pos = end;
                }
                PartKind::Multipart { boundary, digest } => {
                    if boundary.len() > MAX_BOUNDARY_BYTES {
                        return Err(BadInput::new(
                            FIELD,
                            format!(
                                "refused: a MIME boundary of {} bytes (at most \
                                 {MAX_BOUNDARY_BYTES})",
                                boundary.len()
                            ),
                        ));
                    }
                    let mut needle = Vec::with_capacity(boundary.len() + 2);
                    needle.extend_from_slice(b"--");
                    needle.extend_from_slice(&boundary);
                    // mail-parser: the first `--boundary` anywhere after the header block
                    // starts the first part; without one the part is text.
                    if let Some(i) = memchr::memmem::find(&data[pos..], &needle) {
                        pos = skip_line_end(data, pos + i + needle.len());
                        stack.push(Level::Multipart { needle, digest });
                        continue 'block;
                    }
                    self.missing += 1;
                    if self.missing > MAX_MISSING_BOUNDARIES {
                        return Err(BadInput::new(
                            FIELD,
                            format!(
                                "refused: more than {MAX_MISSING_BOUNDARIES} multipart parts \
                                 whose boundary never occurs"
                            ),
                        ));
                    }
                }
            }
            // The body runs to the next delimiter of the innermost multipart (mail-parser
            // searches only that boundary, anywhere in a line).
            loop {
                let Some(level) = stack
                    .iter()
                    .rposition(|l| matches!(l, Level::Multipart { .. }))
                else {
                    break 'block;
                };
                stack.truncate(level + 1);
                let Some(Level::Multipart { needle, .. }) = stack.last() else {
                    break 'block;
                };
                let Some(i) = memchr::memmem::find(&data[pos..], needle) else {
                    break 'block;
                };
                let after = pos + i + needle.len();
                if data[after..].starts_with(b"--") {
                    // Closing delimiter: the parent's body goes on.
                    stack.pop();
                    pos = after + 2;
                    continue;
                }
                pos = skip_line_end(data, after);
                continue 'block;
            }
        }
        Ok(messages)
    }

    /// The header block at `pos`, read by mail-parser itself (so its end, field count and
    /// Content-Type / Content-Transfer-Encoding are exactly what the parse will see): where
    /// the body starts and what kind of part the block starts.
    fn header_block(
        &mut self,
        data: &[u8],
        pos: usize,
        in_digest: bool,
    ) -> Result<(usize, PartKind), BadInput> {
        let block = &data[pos..];
        let budget = self.limits.max_headers.saturating_sub(self.shape.headers);
        // A field takes at least 3 bytes: only a block this long can hold too many, and then
        // they are counted before mail-parser allocates them.
        if block.len() > budget.saturating_mul(3) && field_lines(block, budget) > budget {
            return Err(over_headers(self.limits));
        }
        let parsed = MessageParser::default().parse_headers(block);
        let headers: &[Header<'_>] = parsed
            .as_ref()
            .and_then(|m| m.parts.first())
            .map_or(&[], |p| p.headers.as_slice());
        self.shape.headers += headers.len();
        if self.shape.headers > self.limits.max_headers {
            return Err(over_headers(self.limits));
        }
        let end = pos + body_start(block, headers.last().map_or(0, |h| h.offset_end as usize));
        let find = |name: HeaderName<'_>| headers.iter().rev().find(|h| h.name == name);
        let ct = find(HeaderName::ContentType).and_then(|h| h.value.as_content_type());
        let is_message = match ct {
            Some(ct) if ct.ctype().eq_ignore_ascii_case("multipart") => {
                let kind = match ct.attribute("boundary") {
                    Some(b) if !b.is_empty() => PartKind::Multipart {
                        boundary: b.as_bytes().to_vec(),
                        digest: ct
                            .subtype()
                            .is_some_and(|s| s.eq_ignore_ascii_case("digest")),
                    },
                    _ => PartKind::Leaf,
                };
                return Ok((end, kind));
            }
            Some(ct) => {
                ct.ctype().eq_ignore_ascii_case("message")
                    && ct.subtype().is_some_and(|s| {
                        s.eq_ignore_ascii_case("rfc822") || s.eq_ignore_ascii_case("global")
                    })
            }
            None => in_digest,
        };
        if !is_message {
            return Ok((end, PartKind::Leaf));
        }
        let encoding = match find(HeaderName::ContentTransferEncoding).map(|h| &h.value) {
            Some(HeaderValue::Text(t)) if t.eq_ignore_ascii_case("base64") => Some(Encoded::Base64),
            Some(HeaderValue::Text(t)) if t.eq_ignore_ascii_case("quoted-printable") => {
                Some(Encoded::QuotedPrintable)
            }
            _ => None,
        };
        Ok((end, PartKind::Message { encoding }))
    }
}

/// Where mail-parser's `parse_headers` starts the body, given where its last field ended:
/// whitespace, lines it cannot read as a field, then the line that is empty after leading
/// whitespace.
fn body_start(block: &[u8], mut p: usize) -> usize {
    loop {
        while p < block.len() && block[p] != b'\n' && block[p].is_ascii_whitespace() {
            p += 1;
        }
        match block.get(p) {
            None => return block.len(),
            Some(b'\n') => return p + 1,
            Some(_) => match memchr::memchr(b'\n', &block[p..]) {
                Some(i) => p += i + 1,
                None => return block.len(),
            },
        }
    }
}

/// Lines that start a field (not indented, a colon after a name) up to the first line that
/// is empty after leading whitespace, counted until `budget` is passed.
fn field_lines(block: &[u8], budget: usize) -> usize {
    let mut n = 0;
    for line in block.split(|&c| c == b'\n') {
        let rest = line.trim_ascii_start();
        if rest.is_empty() {
            break;
        }
        if !matches!(line[0], b' ' | b'\t') && rest.iter().skip(1).any(|&c| c == b':') {
            n += 1;
            if n > budget {
                break;
            }
        }
    }
    n
}

/// The needle of the innermost multipart.
fn innermost(stack: &[Level]) -> Option<&[u8]> {
    stack.iter().rev().find_map(|l| match l {
        Level::Multipart { needle, .. } => Some(needle.as_slice()),
        Level::Message => None,
    })
}

/// After a delimiter: spaces, tabs and CRs, then one LF (mail-parser's `skip_crlf`).
fn skip_line_end(data: &[u8], mut at: usize) -> usize {
    while matches!(data.get(at), Some(b' ' | b'\t' | b'\r')) {
        at += 1;
    }
    if data.get(at) == Some(&b'\n') {
        at += 1;
    }
    at
}

/// The shape of the tree mail-parser built.
fn measure(msg: &Message<'_>) -> Shape {
    let mut shape = Shape::default();
    let mut messages: Vec<(&Message<'_>, usize)> = vec![(msg, 0)];
    let mut parts: Vec<(usize, usize)> = Vec::new();
    while let Some((m, base)) = messages.pop() {
        shape.parts += m.parts.len();
        shape.headers += m.parts.iter().map(|p| p.headers.len()).sum::<usize>();
        parts.clear();
        parts.push((0, base));
        while let Some((id, depth)) = parts.pop() {
            let Some(part) = m.parts.get(id) else {
                continue;
            };
            shape.depth = shape.depth.max(depth);
            match &part.body {
                PartType::Multipart(children) => parts.extend(
                    children
                        .iter()
                        .map(|&c| c as usize)
                        .filter(|&c| c > id)
                        .map(|c| (c, depth + 1)),
                ),
                PartType::Message(inner) => messages.push((inner, depth + 1)),
                _ => {}
            }
        }
    }
    shape
}

/// A parsed message that is torn down iteratively: dropping a `PartType::Message` inside a
/// `PartType::Message` … recurses once per level.
struct Flat<'x>(Message<'x>);

impl<'x> std::ops::Deref for Flat<'x> {
    type Target = Message<'x>;
    fn deref(&self) -> &Message<'x> {
        &self.0
    }
}

impl Drop for Flat<'_> {
    fn drop(&mut self) {
        let mut pending = vec![std::mem::take(&mut self.0)];
        while let Some(mut m) = pending.pop() {
            for part in &mut m.parts {
                if matches!(part.body, PartType::Message(_))
                    && let PartType::Message(inner) = std::mem::take(&mut part.body)
                {
                    pending.push(inner);
                }
            }
        }
    }
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

    let auto = auto_reason(&h, raw, is_report, return_path.as_deref(), &from);

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

/// The headers we look at, found in one pass. Values are raw header references.
#[derive(Default)]
struct HeaderScan<'m> {
    from: Option<&'m Header<'m>>,
    subject: Option<&'m Header<'m>>,
    /// First (topmost) Return-Path: the one the delivering MTA added.
    return_path: Option<&'m Header<'m>>,
    sender: Option<&'m Header<'m>>,
    auto_submitted: Option<String>,
    precedence: Option<String>,
    x_auto_response_suppress: Option<String>,
    x_loop: bool,
    list: bool,
}

impl<'m> HeaderScan<'m> {
    fn visit(&mut self, header: &'m Header<'m>, raw: &[u8]) {
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
fn auto_reason(
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

fn first_token(v: &str) -> &str {
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

// ---------------------------------------------------------------------------------------------
// Headers

fn header_bytes<'r>(raw: &'r [u8], h: &Header<'_>) -> &'r [u8] {
    raw.get(h.offset_start as usize..h.offset_end as usize)
        .unwrap_or_default()
}

fn addr_parts(a: &Addr<'_>) -> (Option<String>, Option<String>) {
    (
        a.address().map(str::to_string),
        a.name().map(str::to_string),
    )
}

/// Lowercased address if it has exactly one `@` with something on both sides, no spaces, and
/// at most [`MAX_ADDRESS_BYTES`] bytes.
fn valid_address(a: &str) -> Option<String> {
    let a = a.trim().trim_matches(['<', '>']);
    if a.len() > MAX_ADDRESS_BYTES {
        return None;
    }
    let a = a.to_lowercase();
    let (local, domain) = a.split_once('@')?;
    (!local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !a.chars().any(|c| c.is_whitespace() || c.is_control()))
    .then_some(a)
}

/// The address inside `<…>` of a Return-Path / Sender style value (`""` for `<>`), lowercased.
fn angle_addr(value: &[u8]) -> String {
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
fn repaired_header(value: &[u8], fallback: Option<DecoderFnc>) -> Option<String> {
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
fn relabel_encoded_words(s: &str) -> Option<String> {
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
fn reparse_address(name: &str, value: &str) -> (Option<String>, Option<String>) {
    let block = format!("{name}:{value}\n\n");
    MessageParser::default()
        .parse_headers(block.as_bytes())
        .and_then(|m| m.from().and_then(|a| a.first()).map(addr_parts))
        .unwrap_or_default()
}

fn reparse_subject(value: &str) -> String {
    let block = format!("Subject:{value}\n\n");
    MessageParser::default()
        .parse_headers(block.as_bytes())
        .and_then(|m| m.subject().map(str::to_string))
        .unwrap_or_default()
}

/// Message ids of an In-Reply-To / References value, without `<>`.
fn ids(v: &HeaderValue<'_>) -> Vec<String> {
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
fn case_ref(subject: &str) -> Option<i64> {
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
                    return Some(n);
                }
            }
        }
        i += 1;
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Charsets

/// A decoder for `label`, also for labels mail-parser does not know. `None` = UTF-8.
fn decoder_for(label: &str) -> Option<DecoderFnc> {
    charset_decoder(label.as_bytes())
        .or_else(|| alias(label).and_then(|l| charset_decoder(l.as_bytes())))
}

/// Labels seen in real mail that mail-parser 0.11 does not know, mapped to one it does.
/// (It already knows gbk, x-gbk, gb2312, gb_2312-80, cp936, ms936, big5, big5-hkscs, cn-big5,
/// iso-2022-jp, shift_jis, ms932, euc-jp, euc-kr, ks_c_5601-1987 and the WHATWG labels.)
fn alias(label: &str) -> Option<&'static str> {
    let l = label
        .trim()
        .trim_matches(['"', '\''])
        .to_ascii_lowercase()
        .replace('_', "-");
    Some(match l.as_str() {
        // GB2312 / GBK / GB18030 family: GB18030 decodes all of them.
        "eucgb2312-cn" | "euc-cn" | "euccn" | "x-euc-cn" | "x-euc" | "cn-gb" | "x-cp936"
        | "936" | "gb2312-80" | "gb2312-1980" | "gb-2312-1980" | "csgb231280" | "gb-18030"
        | "gb18030-2000" | "gb18030-2005" | "gb18030-2022" | "x-gb18030" | "cp54936"
        | "windows-54936" | "x-mac-chinesesimp" => "gb18030",
        // Big5 (mail-parser's Big5 is the WHATWG one, i.e. with HKSCS).
        "big5hkscs" | "big5-hkscs-2004" | "big5-hkscs-2008" | "cp950" | "ms950" | "windows-950"
        | "x-windows-950" | "x-big5" | "big-5" | "big5-2003" | "big5-eten" | "x-ms950-hkscs"
        | "x-mac-chinesetrad" => "big5",
        "iso-2022-jp-1" | "iso-2022-jp-2" | "iso-2022-jp-3" | "iso-2022-jp-2004"
        | "csiso2022jp2" => "iso-2022-jp",
        "cp932" | "cswindows31j" | "x-ms-cp932" | "windows-932" => "shift_jis",
        "eucjp" | "x-eucjp" | "cp51932" | "euc-jp-ms" => "euc-jp",
        "ks-c-5601" | "cp949" | "uhc" | "x-uhc" | "x-windows-949" | "euckr" | "ks-c-5601-1989" => {
            "euc-kr"
        }
        _ => return None,
    })
}

fn is_utf8_label(label: &str) -> bool {
    let l = label.trim().to_ascii_lowercase();
    matches!(
        l.as_str(),
        "utf-8" | "utf8" | "unicode-1-1-utf-8" | "x-unicode20utf8"
    )
}

fn is_ascii_label(label: &str) -> bool {
    let l = label.trim().to_ascii_lowercase();
    matches!(l.as_str(), "us-ascii" | "ascii" | "ansi_x3.4-1968") || is_utf8_label(&l)
}

/// Bytes whose label is missing, unknown or wrong: UTF-8 if valid, else GB18030 if it decodes
/// without errors (mislabelled Chinese mail is what we mostly see), else `last_resort`, else
/// lossy UTF-8.
fn decode_guess(bytes: &[u8], last_resort: Option<DecoderFnc>) -> String {
    if let Ok(s) = std::str::from_utf8(bytes) {
        return s.to_string();
    }
    if let Some(gb) = charset_decoder(b"gb18030") {
        let s = gb(bytes);
        if !s.contains(char::REPLACEMENT_CHARACTER) {
            return s;
        }
    }
    match last_resort {
        Some(decode) => decode(bytes),
        None => String::from_utf8_lossy(bytes).into_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Body

/// The text/plain body parts joined (or, if there are none, the HTML ones reduced to text);
/// LF line ends, no NULs.
fn body_text(msg: &Message<'_>) -> String {
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
        (html_text(&text), true)
    } else {
        (text, false)
    })
}

fn is_type(ctype: &str, subtype: Option<&str>, want: &str, want_sub: &str) -> bool {
    ctype.eq_ignore_ascii_case(want) && subtype.is_some_and(|s| s.eq_ignore_ascii_case(want_sub))
}

/// Base64 that skips what is not base64 and restarts after a stray `=`, keeping what decodes.
fn base64_lenient(input: &[u8]) -> Vec<u8> {
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
fn qp_lenient(input: &[u8]) -> Vec<u8> {
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
fn clean_line(s: &str) -> String {
    s.chars()
        .filter(|&c| c != '\0')
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// HTML reduced to text with mail-parser's `html_to_text` (drops `<head>`, `<style>`,
/// `<script>`, tags; decodes entities; `<br>` and `</p>` become line breaks) after a pre-pass
/// that drops `<title>` anywhere, closes an unclosed `<head>` at `<body>` and breaks lines at
/// block elements; then no-break spaces become spaces, lines are trimmed and blank lines
/// collapsed.
fn html_text(html: &str) -> String {
    let text = html_to_text(&html_prepass(html)).replace('\u{a0}', " ");
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines().map(str::trim) {
        if line.is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        out.push_str(line);
    }
    out
}

fn html_prepass(html: &str) -> String {
    const BLOCKS: &[&str] = &[
        "div",
        "p",
        "li",
        "tr",
        "table",
        "blockquote",
        "ul",
        "ol",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "pre",
        "hr",
        "dt",
        "dd",
        "section",
        "article",
        "header",
        "footer",
        "address",
    ];
    let b = html.as_bytes();
    let mut out = String::with_capacity(html.len() + html.len() / 16);
    let mut copied = 0;
    let mut pos = 0;
    let mut title_closed = true;
    let mut in_head = false;
    // Text seen since the last line break: a block boundary right after another one (as in
    // `</div><div>`) must not add a second break.
    let mut text_since_break = false;
    while let Some(off) = b[pos..].iter().position(|&c| c == b'<') {
        let lt = pos + off;
        text_since_break |= b[pos..lt].iter().any(|c| !c.is_ascii_whitespace());
        if b[lt..].starts_with(b"<!--") {
            match find_ci(&b[lt + 4..], b"-->") {
                Some(i) => pos = lt + 4 + i + 3,
                None => break,
            }
            continue;
        }
        let Some(gt) = b[lt..].iter().position(|&c| c == b'>').map(|i| lt + i) else {
            break;
        };
        pos = gt + 1;
        let closing = b.get(lt + 1) == Some(&b'/');
        let name_start = lt + 1 + usize::from(closing);
        let name_len = b[name_start..gt]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric())
            .count();
        let name = &html[name_start..name_start + name_len];
        let is = |t: &str| name.eq_ignore_ascii_case(t);
        if !closing && is("title") && title_closed {
            // Skip to the end of `</title…>`; remember a missing close so this stays linear.
            match find_ci(&b[gt..], b"</title").map(|i| gt + i) {
                Some(close) => {
                    let end = b[close..]
                        .iter()
                        .position(|&c| c == b'>')
                        .map_or(b.len(), |i| close + i + 1);
                    out.push_str(&html[copied..lt]);
                    copied = end;
                    pos = end;
                }
                None => title_closed = false,
            }
        } else if is("head") {
            in_head = !closing;
        } else if !closing && is("body") && in_head {
            // html_to_text drops everything after an unclosed <head>.
            out.push_str(&html[copied..lt]);
            out.push_str("</head>");
            copied = lt;
            in_head = false;
        } else if is("br") || (closing && is("p")) {
            // html_to_text breaks the line itself.
            text_since_break = false;
        } else if BLOCKS.iter().any(|t| is(t)) {
            if text_since_break {
                out.push_str(&html[copied..lt]);
                out.push_str("<br>");
                copied = lt;
                text_since_break = false;
            }
        } else if !closing && (is("td") || is("th")) {
            out.push_str(&html[copied..lt]);
            out.push(' ');
            copied = lt;
        }
    }
    out.push_str(&html[copied..]);
    out
}

fn find_ci(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

// ---------------------------------------------------------------------------------------------
// Quoted history

/// `text` without quoted history: lines starting with `>`, and everything from the first
/// attribution / separator line on. If nothing is left above it (a bottom-posted reply), the
/// text below it minus the quoted lines.
pub fn strip_quoted(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let cut = (0..lines.len()).find(|&i| is_history_start(&lines, i));
    let quoted = |i: &usize| lines[*i].trim_start().starts_with('>');
    let top = join_lines(
        &lines,
        (0..cut.unwrap_or(lines.len())).filter(|i| !quoted(i)),
    );
    match cut {
        Some(cut) if top.is_empty() => join_lines(
            &lines,
            (cut + 1..lines.len()).filter(|i| !quoted(i) && !is_history_start(&lines, *i)),
        ),
        _ => top,
    }
}

fn join_lines(lines: &[&str], keep: impl Iterator<Item = usize>) -> String {
    let kept: Vec<&str> = keep.map(|i| lines[i].trim_end()).collect();
    kept.join("\n").trim().to_string()
}

fn is_history_start(lines: &[&str], i: usize) -> bool {
    let line = lines[i].trim();
    if line.is_empty() || line.starts_with('>') {
        return false;
    }
    let next = lines.get(i + 1).map_or("", |l| l.trim());
    let wrote = |s: &str| s.ends_with("wrote:");
    let xiedao = |s: &str| s.ends_with("写道：") || s.ends_with("写道:");
    if (line.starts_with("On ") && (wrote(line) || wrote(next)))
        || (wrote(line) && line.contains('@'))
        || xiedao(line)
        || (line.starts_with('在') && xiedao(next))
    {
        return true;
    }
    for prefix in ["发件人:", "发件人：", "寄件者:", "寄件者："] {
        if line.starts_with(prefix) {
            return true;
        }
    }
    if starts_with_ci(line, "from:")
        && lines[i + 1..]
            .iter()
            .take(4)
            .any(|l| starts_with_ci(l.trim(), "sent:"))
    {
        return true;
    }
    // "-----Original Message-----", "------------------ 原始邮件 ------------------", and an
    // Outlook "______" rule directly above a From: line.
    if line.starts_with("--") {
        let inner = line
            .trim_matches(|c: char| c == '-' || c.is_whitespace())
            .to_lowercase();
        if matches!(
            inner.as_str(),
            "original message" | "original" | "原始邮件" | "原始郵件" | "回复的原邮件"
        ) {
            return true;
        }
    }
    line.len() >= 10
        && line.chars().all(|c| c == '_')
        && (starts_with_ci(next, "from:") || next.starts_with("发件人"))
}

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len()
        && s.is_char_boundary(prefix.len())
        && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

// ---------------------------------------------------------------------------------------------
// Delivery status notifications (RFC 3464)

fn delivery_status(msg: &Message<'_>) -> Dsn {
    let mut dsn = Dsn::default();
    for part in msg.parts.iter().skip(1) {
        let Some(ct) = part.content_type() else {
            continue;
        };
        let (ctype, sub) = (ct.ctype(), ct.subtype());
        let body_bytes: Option<&[u8]> = match &part.body {
            PartType::Binary(b) | PartType::InlineBinary(b) => Some(b.as_ref()),
            PartType::Text(t) | PartType::Html(t) => Some(t.as_bytes()),
            _ => None,
        };
        if is_type(ctype, sub, "message", "delivery-status")
            || is_type(ctype, sub, "message", "global-delivery-status")
        {
            if let Some(b) = body_bytes {
                let room = MAX_DSN_RECIPIENTS.saturating_sub(dsn.recipients.len());
                dsn.recipients.extend(
                    dsn_recipients(&String::from_utf8_lossy(b))
                        .into_iter()
                        .take(room),
                );
            }
        } else if dsn.original_message_id.is_none()
            && (is_type(ctype, sub, "message", "rfc822")
                || is_type(ctype, sub, "message", "global")
                || is_type(ctype, sub, "text", "rfc822-headers")
                || is_type(ctype, sub, "message", "global-headers"))
        {
            dsn.original_message_id = match &part.body {
                PartType::Message(m) => m.message_id().map(str::to_string),
                _ => body_bytes.and_then(|b| {
                    MessageParser::default()
                        .parse_headers(b)
                        .and_then(|m| m.message_id().map(str::to_string))
                }),
            }
            .map(|id| clean_line(id.trim_matches(['<', '>'])))
            .filter(|id| !id.is_empty());
        }
    }
    dsn
}

/// The per-recipient blocks of a message/delivery-status body (blocks of header fields
/// separated by blank lines; the first, per-message block has no Final-Recipient).
fn dsn_recipients(body: &str) -> Vec<DsnRecipient> {
    let mut blocks: Vec<Vec<(String, String)>> = Vec::new();
    let mut block: Vec<(String, String)> = Vec::new();
    for line in body.lines() {
        if line.trim().is_empty() {
            if !block.is_empty() {
                blocks.push(std::mem::take(&mut block));
            }
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = block.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            block.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    if !block.is_empty() {
        blocks.push(block);
    }
    blocks
        .iter()
        .filter_map(|fields| {
            let get = |name: &str| {
                fields
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.as_str())
            };
            let recipient = get("final-recipient").or_else(|| get("original-recipient"))?;
            let address = recipient.split_once(';').map_or(recipient, |(_, a)| a);
            Some(DsnRecipient {
                final_recipient: clean_line(address.trim().trim_matches(['<', '>'])).to_lowercase(),
                action: get("action")
                    .map(|a| first_token(&a.to_ascii_lowercase()).to_string())
                    .unwrap_or_default(),
                status: get("status")
                    .and_then(|s| s.split_whitespace().next())
                    .map(clean_line)
                    .unwrap_or_default(),
                diagnostic: get("diagnostic-code")
                    .map(clean_line)
                    .filter(|d| !d.is_empty()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/email");

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{DIR}/{name}.eml")).unwrap()
    }

    fn ok(name: &str) -> ParsedEmail {
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
    fn gb18030_keeps_four_byte_sequences() {
        let m = ok("gb18030_fault");
        assert_eq!(m.subject, "故障报修：光纤宽带断网");
        assert_eq!(
            m.text,
            "您好，我家光纤宽带从昨天晚上开始断网，光猫LOS灯一直红灯闪烁🔴，重启了好几次也不行。\n宽带账号：020-88886666，地址：广州市越秀区中山五路2号3楼。\n请尽快安排师傅上门维修，谢谢！联系电话13800138000。\n"
        );
        assert_eq!(m.auto, None);
    }

    #[test]
    fn big5_8bit_with_backslash_trail_byte() {
        let m = ok("big5_inquiry");
        assert_eq!(m.subject, "查詢：光纖寬頻升級資費");
        assert_eq!(m.from_name.as_deref(), Some("陳小姐"));
        assert_eq!(
            m.text,
            "您好：\n請問我現在的寬頻是100M，想升級到1000M，每月費用是多少？需要換光貓嗎？\n光貓的WiFi功能可以單獨關閉嗎？另外營業廳週末有沒有開？\n謝謝！\n陳小姐\n"
        );
        assert!(m.text.contains('功'));
    }

    #[test]
    fn iso2022jp() {
        let m = ok("iso2022jp");
        assert_eq!(m.subject, "お問い合わせ：光回線の料金について");
        assert_eq!(m.from_name.as_deref(), Some("山田太郎"));
        assert_eq!(
            m.text,
            "お世話になっております。\n現在契約している光回線プランの月額料金と、解約手数料について教えてください。\nよろしくお願いいたします。\n山田太郎\n"
        );
    }

    #[test]
    fn eucgb2312_cn_alias_in_body_and_subject() {
        let m = ok("gb2312_alias");
        assert_eq!(m.subject, "咨询：怎么查询本月话费和剩余流量");
        assert_eq!(
            m.text,
            "你好，请问怎么查询本月的话费和剩余流量？\n发短信到10001可以查吗？需要发什么内容？\n谢谢。\n"
        );
        assert_eq!(m.from_name.as_deref(), Some("Wang Wu"));
    }

    #[test]
    fn x_gbk_alias_keeps_gbk_only_characters() {
        let m = ok("x_gbk_alias");
        assert_eq!(m.subject, "报修：固话没有拨号音");
        assert_eq!(m.from_name.as_deref(), Some("王喆"));
        assert_eq!(
            m.text,
            "客服你好，我是王喆，家里的固定电话从今天早上开始拿起来没有拨号音，打不出去也打不进来。\n号码020-83334444，麻烦派人来检查一下线路。\n"
        );
    }

    #[test]
    fn aliases_mail_parser_does_not_know() {
        for label in [
            "eucgb2312_cn",
            "x-euc-cn",
            "EUC-CN",
            "gb2312-80",
            "x-gb18030",
        ] {
            assert!(decoder_for(label).is_some(), "{label}");
        }
        for label in ["cp950", "big5hkscs", "iso-2022-jp-2", "cp932", "cp949"] {
            assert!(decoder_for(label).is_some(), "{label}");
        }
        // GBK bytes for 王喆 under an unknown-to-mail-parser label, in a header and a body.
        let raw = "From: =?x-euc-cn?B?zfWGtA==?= <A@Example.ORG>\nTo: cs@gw.test\nSubject: =?euc-cn?Q?=CD=F5=86=B4?=\nContent-Type: text/plain; charset=cp936-unknown\nContent-Transfer-Encoding: base64\n\nzfWGtA==\n";
        let m = parse(raw.as_bytes(), MAX_EMAIL_BYTES).unwrap();
        assert_eq!(m.from_name.as_deref(), Some("王喆"));
        assert_eq!(m.from, "a@example.org");
        assert_eq!(m.subject, "王喆");
        // Unknown label, not UTF-8: GB18030 decodes it cleanly, so it is used.
        assert_eq!(m.text, "王喆");
        assert_eq!(relabel_encoded_words("=?utf-8?B?YQ==?= plain"), None);
    }

    #[test]
    fn raw_8bit_gbk_subject_and_body_without_charset() {
        let mut raw = b"From: a@example.cn\nSubject: ".to_vec();
        raw.extend_from_slice(&[0xB1, 0xA8, 0xD0, 0xDE]); // 报修
        raw.extend_from_slice(b"\n\n");
        raw.extend_from_slice(&[0xB6, 0xCF, 0xCD, 0xF8, b'\n']); // 断网
        let m = parse(&raw, MAX_EMAIL_BYTES).unwrap();
        assert_eq!(m.subject, "报修");
        assert_eq!(m.text, "断网\n");

        let labelled = |charset: &str, body: &[u8]| {
            let mut raw = format!(
                "From: a@example.cn\nSubject: s\nContent-Type: text/plain; charset={charset}\n\n"
            )
            .into_bytes();
            raw.extend_from_slice(body);
            parse(&raw, MAX_EMAIL_BYTES).unwrap().text
        };
        // GBK bytes labelled UTF-8 or US-ASCII.
        assert_eq!(labelled("utf-8", &[0xB6, 0xCF, 0xCD, 0xF8]), "断网");
        assert_eq!(labelled("us-ascii", &[0xB6, 0xCF, 0xCD, 0xF8]), "断网");
        // UTF-8 labelled US-ASCII.
        assert_eq!(labelled("us-ascii", "断网".as_bytes()), "断网");
        // Latin-1 labelled US-ASCII that GB18030 cannot decode: Windows-1252.
        assert_eq!(labelled("us-ascii", b"caf\xe9 ok"), "café ok");
        // Proper labels are left alone.
        assert_eq!(labelled("iso-8859-1", b"caf\xe9"), "café");
        assert_eq!(labelled("gbk", &[0xB6, 0xCF, 0xCD, 0xF8]), "断网");
    }

    #[test]
    fn html_only_is_reduced_to_text() {
        let m = ok("html_only");
        assert!(
            m.text.contains(
                "My broadband is down since Monday & the router shows a red \"LOS\" light."
            ),
            "{:?}",
            m.text
        );
        assert!(
            m.text.contains("Bob Smith — 张三's neighbour"),
            "{:?}",
            m.text
        );
        assert!(m.text.contains("Please send a technician <urgently>."));
        for bad in [
            "STYLE-MUST-NOT-LEAK",
            "font-family",
            "Fault report",
            "<p",
            "<br",
            "&nbsp;",
            "&amp;",
            "\u{a0}",
        ] {
            assert!(!m.text.contains(bad), "{bad:?} in {:?}", m.text);
        }
        assert_eq!(m.auto, None);
    }

    #[test]
    fn html_reduction_breaks_blocks_and_drops_stray_title() {
        let t = html_text(
            "<title>T-LEAK</title><div>one</div><div>two</div><table><tr><td>a</td><td>b</td></tr></table>",
        );
        assert_eq!(t, "one\ntwo\na b");
        let t =
            html_text("<html><head><title>T</title><meta x><body><p>kept</p><!-- <div> --></body>");
        assert_eq!(t, "kept");
        // An unclosed <title> does not swallow the text, and stays linear.
        let t = html_text(&"<title>x ".repeat(1000));
        assert!(t.contains('x'));
    }

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
    fn reply_thread() {
        let m = ok("reply_thread");
        assert_eq!(m.subject, "Re: [SB00000042] 投诉：宽带三天无法上网");
        assert_eq!(m.case_ref, Some(42));
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
    fn quoted_history_forms() {
        let cases = [
            (
                "Fixed now?\n\nOn Tue, 24 Nov 2026 at 21:03, A <a@b.c> wrote:\n> old",
                "Fixed now?",
            ),
            (
                "Fixed now?\nOn Tue, 24 Nov 2026 at 21:03, A <\na@b.c> wrote:\n> old",
                "Fixed now?",
            ),
            (
                "still down\n-----Original Message-----\nFrom: x\nSent: y\n\nold text",
                "still down",
            ),
            (
                "still down\n\nFrom: CS <cs@gw.test>\nSent: Tuesday\nTo: me\nSubject: x\n\nold",
                "still down",
            ),
            (
                "还是不行\n\n发件人: 客服中心\n发送时间: 2026年11月25日\n旧内容",
                "还是不行",
            ),
            (
                "还是不行\n------------------ 原始邮件 ------------------\n旧内容",
                "还是不行",
            ),
            (
                "还是不行\n张三 <a@b.c> 于2026年11月24日周二 21:03写道：\n> 旧",
                "还是不行",
            ),
            ("line one\n> quoted\nline two", "line one\nline two"),
            // Bottom-posted reply: keep what is below the quote.
            (
                "On Mon, A <a@b.c> wrote:\n> old\n\nmy reply below",
                "my reply below",
            ),
            (
                "From: me\nTo: you\nplain text that mentions From: lines",
                "From: me\nTo: you\nplain text that mentions From: lines",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(strip_quoted(text), want, "{text:?}");
        }
    }

    #[test]
    fn case_numbers_in_subjects() {
        assert_eq!(case_ref("Re: [SB00000042] x"), Some(42));
        assert_eq!(case_ref("工单SB00000007进展"), Some(7));
        assert_eq!(case_ref("sb00000042"), Some(42));
        assert_eq!(case_ref("[SB123456789]"), Some(123_456_789));
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

    #[test]
    fn mailer_daemon_is_not_a_dsn() {
        let m = ok("mailer_daemon");
        assert_eq!(m.return_path.as_deref(), Some(""));
        assert_eq!(m.from, "mailer-daemon@mx.example.net");
        assert_eq!(m.dsn, None);
    }

    #[test]
    fn dsn_failed_5xx() {
        let m = ok("dsn_failed_5xx");
        let dsn = m.dsn.expect("dsn");
        assert_eq!(
            dsn.original_message_id.as_deref(),
            Some("out-7@switchboard.local")
        );
        assert_eq!(
            dsn.recipients,
            vec![DsnRecipient {
                final_recipient: "nosuchuser@example.cn".into(),
                action: "failed".into(),
                status: "5.1.1".into(),
                diagnostic: Some(
                    "smtp; 550 5.1.1 <nosuchuser@example.cn>: Recipient address rejected: User unknown"
                        .into()
                ),
            }]
        );
        assert_eq!(m.return_path.as_deref(), Some(""));
        assert!(m.text.starts_with("This is the mail system"));
        assert_eq!(m.attachments, 2);
    }

    #[test]
    fn dsn_delayed_4xx() {
        let dsn = ok("dsn_delayed_4xx").dsn.expect("dsn");
        assert_eq!(
            dsn.original_message_id.as_deref(),
            Some("out-7@switchboard.local")
        );
        assert_eq!(dsn.recipients.len(), 1);
        let r = &dsn.recipients[0];
        assert_eq!(r.final_recipient, "slow@example.cn");
        assert_eq!(r.action, "delayed");
        assert_eq!(r.status, "4.4.1");
        assert!(
            r.diagnostic
                .as_deref()
                .unwrap()
                .ends_with("Connection timed out")
        );
    }

    #[test]
    fn read_receipt_is_a_report_but_not_a_dsn() {
        let m = ok("mdn_read_receipt");
        assert_eq!(m.dsn, None);
        assert!(m.text.starts_with("Your message was displayed"));
    }

    #[test]
    fn dsn_blocks_with_several_recipients() {
        let r = dsn_recipients(
            "Reporting-MTA: dns; mx\r\n\r\nFinal-Recipient: rfc822; <A@x.cn>\r\nAction: failed (bad)\r\nStatus: 5.1.1 (user unknown)\r\n\r\nOriginal-Recipient: rfc822;b@x.cn\r\nAction: Delivered\r\nStatus: 2.0.0\r\n",
        );
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].final_recipient, "a@x.cn");
        assert_eq!(r[0].action, "failed");
        assert_eq!(r[0].status, "5.1.1");
        assert_eq!(r[0].diagnostic, None);
        assert_eq!(r[1].final_recipient, "b@x.cn");
        assert_eq!(r[1].action, "delivered");
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

    // -----------------------------------------------------------------------------------------
    // Limits

    /// `n` messages each the single part of the previous one.
    fn nested_rfc822(n: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for _ in 0..n {
            v.extend_from_slice(b"From: a@example.com\nContent-Type: message/rfc822\n\n");
        }
        v.extend_from_slice(b"From: a@example.com\nSubject: deep\n\nhello\n");
        v
    }

    fn nested_multipart(n: usize) -> Vec<u8> {
        let mut v = b"From: a@example.com\n".to_vec();
        for i in 0..n {
            v.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=\"b{i}\"\n\n--b{i}\n").as_bytes(),
            );
        }
        v.extend_from_slice(b"Content-Type: text/plain\n\nhello\n");
        for i in (0..n).rev() {
            v.extend_from_slice(format!("--b{i}--\n").as_bytes());
        }
        v
    }

    fn many_parts(n: usize) -> Vec<u8> {
        let mut v = b"From: a@example.com\nContent-Type: multipart/mixed; boundary=zz\n\n".to_vec();
        for _ in 0..n {
            v.extend_from_slice(b"--zz\n\nx\n");
        }
        v.extend_from_slice(b"--zz--\n");
        v
    }

    fn many_headers(n: usize) -> Vec<u8> {
        let mut v = b"From: a@example.com\n".to_vec();
        for i in 0..n {
            v.extend_from_slice(format!("X-H{i}: v\n").as_bytes());
        }
        v.extend_from_slice(b"\nbody\n");
        v
    }

    fn b64(data: &[u8]) -> Vec<u8> {
        use base64::Engine;
        let s = base64::engine::general_purpose::STANDARD.encode(data);
        let mut out = Vec::with_capacity(s.len() + s.len() / 76 + 1);
        for line in s.as_bytes().chunks(76) {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        out
    }

    /// A base64-encoded `message/rfc822` part holding `inner`.
    fn encoded_message(inner: &[u8]) -> Vec<u8> {
        let mut v = b"From: a@example.com\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n".to_vec();
        v.extend(b64(inner));
        v
    }

    /// Runs `f` on a thread with a 256 KiB stack (the blocking pool's threads have 2 MiB).
    fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn hostile_structures_are_refused_quickly_naming_the_limit_on_a_small_stack() {
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "rfc822 nested 50,000 deep",
                nested_rfc822(50_000),
                "email.max_mime_depth",
            ),
            (
                "multipart nested 50,000 deep",
                nested_multipart(50_000),
                "email.max_mime_depth",
            ),
            ("100,000 parts", many_parts(100_000), "email.max_parts"),
            (
                "100,000 headers",
                many_headers(100_000),
                "email.max_headers",
            ),
            (
                "base64 message holding 20,000 nested messages",
                encoded_message(&nested_rfc822(20_000)),
                "email.max_mime_depth",
            ),
            (
                "base64 message holding 10 nested messages",
                encoded_message(&nested_rfc822(10)),
                "transfer-encoded message part",
            ),
            (
                "missing boundaries",
                {
                    let mut v = many_parts(0);
                    v.truncate(v.len() - b"--zz--\n".len());
                    for i in 0..1000 {
                        v.extend_from_slice(
                            format!("--zz\nContent-Type: multipart/mixed; boundary=nope{i}\n\nx\n")
                                .as_bytes(),
                        );
                    }
                    v
                },
                "boundary never occurs",
            ),
            (
                "a 5,000-byte boundary",
                {
                    let b = "-".repeat(5000);
                    let mut v = format!(
                        "From: a@example.com\nContent-Type: multipart/mixed; boundary=\"{b}x\"\n\n--{b}x\n\n"
                    )
                    .into_bytes();
                    v.extend(std::iter::repeat_n(b'-', 1_000_000));
                    v
                },
                "MIME boundary of 5001 bytes",
            ),
        ];
        for (name, raw, want) in cases {
            let started = std::time::Instant::now();
            let e = on_small_stack(move || parse(&raw, MAX_EMAIL_BYTES)).expect_err(name);
            let took = started.elapsed();
            assert!(e.reason.contains(want), "{name}: {e}");
            assert!(e.reason.starts_with("refused: "), "{name}: {e}");
            assert!(took < std::time::Duration::from_secs(2), "{name}: {took:?}");
        }
    }

    #[test]
    fn limits_hold_exactly_at_their_values() {
        let l = |depth, parts, headers| Limits {
            max_bytes: MAX_EMAIL_BYTES,
            max_depth: depth,
            max_parts: parts,
            max_headers: headers,
        };
        // Depth: 3 nested messages = depth 3, 4 header blocks, 2 fields each (+ Subject).
        let raw = nested_rfc822(3);
        assert_eq!(
            check_shape(&raw, &Limits::DEFAULT).unwrap(),
            Shape {
                depth: 3,
                parts: 4,
                headers: 8
            }
        );
        assert!(parse_with(&raw, &l(3, 4, 8)).is_ok());
        assert!(
            parse_with(&raw, &l(2, 4, 8))
                .unwrap_err()
                .reason
                .contains("max_mime_depth")
        );
        assert!(
            parse_with(&raw, &l(3, 3, 8))
                .unwrap_err()
                .reason
                .contains("max_parts")
        );
        assert!(
            parse_with(&raw, &l(3, 4, 7))
                .unwrap_err()
                .reason
                .contains("max_headers")
        );
        let m = parse_with(&nested_multipart(5), &l(5, 100, 100)).unwrap();
        assert_eq!(m.subject, "");
        assert!(parse_with(&nested_multipart(6), &l(5, 100, 100)).is_err());
        // The fixture with 10,000 headers is within the defaults.
        assert!(parse_with(&fixture("many_headers"), &Limits::DEFAULT).is_ok());
        // A legitimate encoded message/global with one forward inside passes.
        let inner = b"From: b@example.com\nSubject: fwd\nContent-Type: message/rfc822\n\nFrom: c@example.com\nSubject: orig\n\nhi\n";
        assert!(parse(&encoded_message(inner), MAX_EMAIL_BYTES).is_ok());
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

    /// The scan must see at least what mail-parser builds, or a crafted message could slip
    /// an oversized tree past it (the measure after the parse would still refuse it, but only
    /// after mail-parser did the work).
    #[test]
    fn the_scan_never_sees_less_than_mail_parser_builds() {
        let mut seed: u64 = 0xfeed;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        for entry in std::fs::read_dir(DIR).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "eml") {
                inputs.push(std::fs::read(&path).unwrap());
            }
        }
        inputs.push(nested_rfc822(5));
        inputs.push(nested_multipart(5));
        inputs.push(many_parts(20));
        inputs.push(encoded_message(&nested_multipart(3)));
        inputs.push(
            b"From: a@b.c\nContent-Type: multipart/digest; boundary=d\n\n--d\n\nFrom: x@y\nContent-Type: multipart/mixed; boundary=e\n\n--e\nContent-Type: message/rfc822\n\nFrom: q@r\n\nz\n--e--\n--d\n\nFrom: y@z\n\nw\n--d--\n".to_vec(),
        );
        let base = inputs.clone();
        let tokens: &[&[u8]] = &[
            b"\n",
            b"\r\n",
            b"\n\n",
            b" ",
            b"\t",
            b":",
            b"--",
            b"--zz",
            b"--b1",
            b"--d",
            b"--e",
            b"\nContent-Type: message/rfc822\n",
            b"\nContent-Type: multipart/mixed; boundary=zz\n",
            b"\nC ontent-Type: message/rfc822\n",
            b"Content-Type: multipart/digest; boundary=d\n\n",
            b"\nContent-Transfer-Encoding: base64\n",
            b"\"",
            b"(",
            b"=?",
            b"\n \n",
            b"garbage\n ",
        ];
        for raw in &base {
            for _ in 0..300 {
                let mut m = raw.clone();
                for _ in 0..1 + next() % 5 {
                    let at = next() % (m.len() + 1);
                    let t = tokens[next() % tokens.len()];
                    m.splice(at..at, t.iter().copied());
                }
                inputs.push(m);
            }
        }
        let roomy = Limits {
            max_bytes: MAX_EMAIL_BYTES,
            max_depth: usize::MAX,
            max_parts: usize::MAX,
            max_headers: usize::MAX,
        };
        for raw in &inputs {
            let Ok(scanned) = check_shape(raw, &roomy) else {
                continue;
            };
            // mail-parser's debug assertions fire on some mutations (parse contains them).
            let Ok(Some(built)) = catch_unwind(|| {
                MessageParser::default()
                    .parse(raw)
                    .map(|m| measure(&Flat(m)))
            }) else {
                continue;
            };
            assert!(
                scanned.depth >= built.depth
                    && scanned.parts >= built.parts
                    && scanned.headers >= built.headers,
                "scan {scanned:?} < built {built:?} for {:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn the_shape_scan_is_cheap_for_ordinary_mail() {
        let mut raw = fixture("multipart_alternative_utf8");
        raw.extend(std::iter::repeat_n(b'x', 20_000));
        let n = 2_000;
        let started = std::time::Instant::now();
        for _ in 0..n {
            check_shape(std::hint::black_box(&raw), &Limits::DEFAULT).unwrap();
        }
        let each = started.elapsed() / n;
        eprintln!("check_shape: {each:?} per 20 KB message");
        // Generous for debug builds on a shared machine; release is ~1 µs.
        assert!(each < std::time::Duration::from_micros(200), "{each:?}");
    }
}
