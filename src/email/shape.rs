//! Limits (README "Limits"): the shape scan before mail-parser ([`check_shape`]), the measure
//! of the tree it built after it, and the iterative teardown of that tree. Why each is needed
//! is in the `email` module documentation.

use super::FIELD;
use super::body::{base64_lenient, qp_lenient};
use crate::inbound::BadInput;
use mail_parser::{Header, HeaderName, HeaderValue, Message, MessageParser, PartType};

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
    pub(super) fn check(&self, limits: &Limits) -> Result<(), BadInput> {
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
/// message (see the `email` module documentation). It stops at the first limit crossed, so
/// hostile input costs no more than the limit. For ordinary mail it reads the header blocks
/// line by line and jumps between boundaries with `memmem`: a few microseconds for 20 KB.
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
pub(super) fn measure(msg: &Message<'_>) -> Shape {
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
pub(super) struct Flat<'x>(pub(super) Message<'x>);

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::email::tests::{DIR, fixture};
    use crate::email::{parse, parse_with};
    use std::panic::catch_unwind;

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
