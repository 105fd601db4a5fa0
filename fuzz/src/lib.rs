//! What each fuzz target does with one input: call the parser and check the properties that
//! hold for every input (no panic is the baseline; round trips, bounds and invariants where
//! they exist). The targets in `fuzz_targets/` call these; `tests/it/fuzz_regressions.rs` in the
//! main crate includes this file (`#[path]`) and replays `fixtures/fuzz/regressions/*` through
//! [`run`], so a regression test checks exactly what the fuzzer checked.
//!
//! Only `switchboard` and `axum` (for `HeaderMap`) are used, both dependencies of the main
//! crate too.

#[cfg(not(test))]
mod guard;
#[cfg(not(test))]
pub use guard::init;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use std::sync::LazyLock;
use switchboard::classify::{Classifier, Hit};
use switchboard::domain::{PhoneError, PhoneNumber};
use switchboard::inbound::{form_pairs, get, text_param, url_decode};
use switchboard::outbound::segment::{
    Encoding, GSM7_BASIC, GSM7_EXTENSION, decode_gsm7_unpacked, from_utf16be, is_gsm7, segment,
    split, utf16be,
};

/// The fuzz targets, by name (the `<target>` of `fixtures/fuzz/<target>/` and of
/// `fixtures/fuzz/regressions/<target>-<name>`).
pub const TARGETS: &[&str] = &[
    "email", "kannel", "jasmin", "twilio", "generic", "dlr", "segment", "rules", "phone",
];

/// Runs one target on one input.
///
/// # Panics
/// On an unknown target, and wherever the target finds a property broken.
pub fn run(target: &str, data: &[u8]) {
    match target {
        "email" => email(data),
        "kannel" => kannel(data),
        "jasmin" => jasmin(data),
        "twilio" => twilio(data),
        "generic" => generic(data),
        "dlr" => dlr(data),
        "segment" => segment_target(data),
        "rules" => rules(data),
        "phone" => phone(data),
        other => panic!("unknown fuzz target {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Shared checks

/// A normalised number parses to itself.
fn normalised(n: &str, country: &str) {
    let again = PhoneNumber::parse(n, country)
        .unwrap_or_else(|e| panic!("normalised number {n:?} does not parse: {e}"));
    assert_eq!(again.as_str(), n, "normalisation is not idempotent");
}

/// No `&`-separated part of a stored payload is our `token` parameter, however its name is
/// encoded.
fn no_token(stored: &[u8]) {
    let kept = stored
        .split(|&b| b == b'&')
        .any(|p| url_decode(p.split(|&b| b == b'=').next().unwrap_or_default()) == b"token");
    assert!(!kept, "the token is kept in the stored payload");
}

fn single_line(field: &str, v: &str) {
    assert!(
        !v.contains(['\0', '\r', '\n']),
        "{field} holds a NUL or line break: {v:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// email

/// `email::parse(raw, MAX_EMAIL_BYTES)`: a parse that succeeds gives a
/// `ParsedEmail` of the documented shape, and the size cap is applied first.
pub fn email(raw: &[u8]) {
    use switchboard::email::{MAX_EMAIL_BYTES, parse};
    let Ok(m) = parse(raw, MAX_EMAIL_BYTES) else {
        return;
    };
    if !raw.is_empty() {
        assert!(
            parse(raw, raw.len() - 1).is_err(),
            "over the cap but accepted"
        );
    }
    assert!(!m.text.contains('\0'), "text holds a NUL");
    assert!(
        !m.text_for_classification.contains('\0'),
        "text_for_classification holds a NUL"
    );
    single_line("subject", &m.subject);
    let from = m.from.as_str();
    single_line("from", from);
    let (local, domain) = from.split_once('@').expect("from has an @");
    assert!(!local.is_empty() && !domain.is_empty() && !domain.contains('@'));
    assert!(!from.chars().any(|c| c.is_whitespace() || c.is_control()));
    assert!(from.len() <= 254, "from is over 254 bytes");
    assert_eq!(from, from.to_lowercase(), "from is not lowercased");
    assert_eq!(m.to, m.to.to_lowercase(), "to is not lowercased");
    if let Some(n) = &m.from_name {
        single_line("from_name", n);
        assert!(!n.is_empty());
    }
    if let Some(id) = &m.message_id {
        single_line("message_id", id);
        assert!(!id.is_empty());
    }
    for id in m.in_reply_to.iter().chain(&m.references) {
        single_line("in_reply_to/references", id);
        assert!(!id.is_empty());
    }
    if let Some(n) = m.case_ref {
        assert!(n.get() > 0, "case_ref {}", n.get());
    }
    if let Some(d) = &m.dsn {
        for r in &d.recipients {
            single_line("dsn final_recipient", &r.final_recipient);
            single_line("dsn status", &r.status);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// kannel

/// The kannel input layout, like an HTTP request without its request line: the first line is
/// the query string; the lines after it, up to a blank line, are `Name: value` headers
/// (unparseable ones are skipped); a blank line makes it a POST whose body is everything after
/// it, otherwise it is a GET (`body = None`, the text comes from the query).
pub fn kannel_request(data: &[u8]) -> (&[u8], HeaderMap, Option<&[u8]>) {
    let (query, mut rest) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let mut headers = HeaderMap::new();
    let mut body = None;
    while let Some(r) = rest {
        let (line, next) = match r.iter().position(|&b| b == b'\n') {
            Some(i) => (&r[..i], Some(&r[i + 1..])),
            None => (r, None),
        };
        if line.is_empty() || line == b"\r" {
            body = Some(next.unwrap_or_default());
            break;
        }
        if let Some(c) = line.iter().position(|&b| b == b':')
            && let Ok(name) = HeaderName::from_bytes(&line[..c])
            && let Ok(value) = HeaderValue::from_bytes(line[c + 1..].trim_ascii())
        {
            headers.append(name, value);
        }
        rest = next;
    }
    (query, headers, body)
}

/// `bridges::kannel::mo::parse(query, headers, body, country)` on [`kannel_request`]'s split.
pub fn kannel(data: &[u8]) {
    let (query, headers, body) = kannel_request(data);
    for country in ["86", "44"] {
        let Ok(m) = switchboard::bridges::kannel::mo::parse(query, &headers, body, country) else {
            continue;
        };
        assert_eq!(m.dialect, "kannel");
        assert!(!m.text.contains('\0'), "text holds a NUL");
        normalised(m.from.as_str(), country);
        normalised(&m.to, country);
        let stored_query = match body {
            Some(b) => {
                assert!(m.raw.ends_with(b), "the POST body is not kept whole");
                &m.raw[..m.raw.len() - b.len() - 2]
            }
            None => &m.raw[..],
        };
        no_token(stored_query);
        if let Some(id) = &m.external_id {
            assert!(!id.is_empty() && !id.starts_with('%'), "id {id:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// jasmin, twilio, generic

/// `bridges::jasmin::mo::parse(form, "86")`.
pub fn jasmin(form: &[u8]) {
    let Ok(m) = switchboard::bridges::jasmin::mo::parse(form, "86") else {
        return;
    };
    assert_eq!(m.dialect, "jasmin");
    assert!(!m.text.contains('\0'), "text holds a NUL");
    normalised(m.from.as_str(), "86");
    normalised(&m.to, "86");
    no_token(&m.raw);
    if let Some(id) = &m.external_id {
        assert!(!id.is_empty());
    }
}

/// `bridges::twilio::mo::parse(form, "86")`, and the signature of the same form.
pub fn twilio(form: &[u8]) {
    use switchboard::bridges::twilio::mo::{parse, signature, verify};
    if let Ok(m) = parse(form, "86") {
        assert_eq!(m.dialect, "twilio");
        assert!(!m.text.contains('\0'), "text holds a NUL");
        assert_eq!(m.raw, form, "the form is not stored as received");
        normalised(m.from.as_str(), "86");
        normalised(&m.to, "86");
    }
    let url = "https://gw.example/inbound/sms/twilio";
    let sig = signature("token", url, form);
    assert!(verify("token", url, form, &sig), "own signature fails");
    assert!(!verify("other", url, form, &sig), "another token's passes");
}

/// `bridges::generic::mo::parse(body, "86")`.
pub fn generic(body: &[u8]) {
    let Ok(m) = switchboard::bridges::generic::mo::parse(body, "86") else {
        return;
    };
    assert_eq!(m.dialect, "generic");
    assert!(!m.text.contains('\0'), "text holds a NUL");
    assert_eq!(m.raw, body, "the body is not stored as received");
    if let Some(id) = &m.external_id {
        assert!(!id.is_empty());
    }
    normalised(m.from.as_str(), "86");
    normalised(&m.to, "86");
}

// ---------------------------------------------------------------------------------------------
// dlr

/// Delivery reports: the form decoding the `/dlr/kannel` and `/dlr/jasmin` parsers use
/// (`inbound::form_pairs`, `url_decode`, `text_param`), on a query + form.
///
/// TODO: the parsers are public and pure now (`bridges::kannel::dlr::parse(query, now_ms)`,
/// `bridges::jasmin::dlr::parse(query, form, now_ms)`, with the status mappers
/// `kannel_status` / `jasmin_status` beside them). Call them here and add: `kannel_status(t)`
/// is `Some` exactly for 1, 2, 4, 8, 16, 32;
/// `jasmin_status(s) == jasmin_status(&s.to_ascii_lowercase()) == jasmin_status(&format!(" {s}\t"))`;
/// every `ESME_*` status maps to `Some`.
pub fn dlr(data: &[u8]) {
    // form_pairs: one pair per non-empty `&`-separated piece, in order, each decoded.
    let pairs = form_pairs(data);
    let pieces: Vec<&[u8]> = data
        .split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .collect();
    assert_eq!(pairs.len(), pieces.len(), "one pair per piece");
    for ((k, v), piece) in pairs.iter().zip(&pieces) {
        let (rk, rv) = match piece.iter().position(|&b| b == b'=') {
            Some(i) => (&piece[..i], &piece[i + 1..]),
            None => (&piece[..], &b""[..]),
        };
        assert_eq!(v, &url_decode(rv));
        assert_eq!(k, &String::from_utf8_lossy(&url_decode(rk)));
    }
    // Bytes without `%` or `+` decode to themselves.
    if !data.contains(&b'%') && !data.contains(&b'+') {
        assert_eq!(url_decode(data), data);
    }
    // What the handlers read: msg, type, reply, smsc_id (Kannel); id, message_status, err.
    for name in [
        "msg",
        "type",
        "reply",
        "smsc_id",
        "id",
        "message_status",
        "err",
    ] {
        let t = text_param(&pairs, name);
        let first = get(&pairs, name);
        match (t, first) {
            (Ok(Some(s)), Some(b)) => assert_eq!(s.as_bytes(), b),
            (Ok(None), None) => {}
            // Refused: a NUL byte (no database stores one) or not UTF-8.
            (Err(e), Some(b)) => {
                assert!(b.contains(&0) || std::str::from_utf8(b).is_err());
                assert_eq!(e.field, name);
            }
            (t, b) => panic!("text_param {t:?} and get {b:?} disagree on {name}"),
        }
    }
    if let Ok(Some(m)) = text_param(&pairs, "msg") {
        let _ = m.parse::<i64>();
    }
    if let Ok(Some(t)) = text_param(&pairs, "type") {
        let _ = t.parse::<u32>();
    }
}

// ---------------------------------------------------------------------------------------------
// segment

/// Septets of a GSM-7 character: 1 basic, 2 extension (escape + code).
fn septets(c: char) -> Option<usize> {
    if c != '\u{1B}' && GSM7_BASIC.contains(&c) {
        Some(1)
    } else if GSM7_EXTENSION.iter().any(|(e, _)| *e == c) {
        Some(2)
    } else {
        None
    }
}

/// Unpacked GSM 03.38 codes of a GSM-7 text (what `decode_gsm7_unpacked` reads).
fn encode_gsm7_unpacked(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for c in text.chars() {
        if let Some(i) = GSM7_BASIC.iter().position(|&b| b == c && c != '\u{1B}') {
            out.push(i as u8);
        } else {
            let (_, code) = GSM7_EXTENSION
                .iter()
                .find(|(e, _)| *e == c)
                .expect("a GSM-7 character");
            out.extend([0x1B, *code]);
        }
    }
    out
}

/// `segment` and `split` on one text: the parts rejoin to it, there are as many as `segment`
/// counts, each within its size (160/153 septets, 70/67 UTF-16 units) and filled greedily;
/// UTF-16BE and (for GSM-7 text) unpacked GSM 03.38 round-trip.
fn segment_text(text: &str) {
    let info = segment(text);
    let gsm = is_gsm7(text);
    assert_eq!(info.encoding == Encoding::Gsm7, gsm, "encoding of {text:?}");
    let size = |p: &str| -> usize {
        if gsm {
            p.chars().map(|c| septets(c).expect("GSM-7")).sum()
        } else {
            p.encode_utf16().count()
        }
    };
    let units = size(text);
    assert_eq!(info.units, units, "units of {text:?}");
    let (single, part) = if gsm { (160, 153) } else { (70, 67) };

    let parts = split(text);
    assert_eq!(parts.concat(), text, "the parts do not rejoin to the text");
    assert_eq!(parts.len(), info.segments, "split and segment disagree");
    if parts.len() == 1 {
        assert!(size(&parts[0]) <= single, "single part over {single}");
    } else {
        assert!(units > single, "split though it fits one part");
        for p in &parts {
            assert!(!p.is_empty(), "empty part");
            assert!(size(p) <= part, "part of {} units over {part}", size(p));
        }
        for w in parts.windows(2) {
            let next = w[1].chars().next().expect("non-empty");
            let cost = if gsm {
                septets(next).expect("GSM-7")
            } else {
                next.len_utf16()
            };
            assert!(size(&w[0]) + cost > part, "a part could have held more");
        }
    }
    assert_eq!(from_utf16be(&utf16be(text)).as_deref(), Ok(text));
    if gsm {
        assert_eq!(
            decode_gsm7_unpacked(&encode_gsm7_unpacked(text)).as_deref(),
            Ok(text)
        );
    }
}

/// `outbound::segment`: the input as text (invalid UTF-8 replaced), and as UCS-2 and unpacked
/// GSM 03.38 payload bytes.
pub fn segment_target(data: &[u8]) {
    segment_text(&String::from_utf8_lossy(data));
    if let Ok(s) = from_utf16be(data) {
        assert_eq!(
            utf16be(&s),
            data,
            "UTF-16BE decoded what it does not encode back"
        );
        segment_text(&s);
    }
    if let Ok(s) = decode_gsm7_unpacked(data) {
        assert!(is_gsm7(&s), "decoded GSM 03.38 is not GSM-7 text: {s:?}");
        segment_text(&s);
    }
}

// ---------------------------------------------------------------------------------------------
// rules

const MESSAGES: &[&str] = &[
    "我要投诉，宽带三天没修好",
    "不是投诉，只是问一下资费",
    "宽頻斷網了 ＡＢＣ abc",
    "TD",
    "sb00000042 进度",
    "Hello, my internet is down since Monday!",
    "",
    "İstanbul ǅ ß ﬁ ＳＴＯＰ",
];

fn check_hit(text: &str, h: &Hit) {
    assert!(h.start <= h.end, "{h:?}");
    let matched: String = text.chars().skip(h.start).take(h.end - h.start).collect();
    assert_eq!(
        matched, h.matched,
        "hit offsets do not point at what matched: {h:?} in {text:?}"
    );
}

/// `classify` and the bulk paths decide the same; hits point at their text.
fn classify_checks(c: &Classifier, text: &str) {
    let r = c.classify(text);
    assert_eq!(
        r.category,
        c.category(text),
        "classify and category disagree on {text:?}"
    );
    assert_eq!(
        r.intent,
        c.intent_of(text),
        "classify and intent_of disagree on {text:?}"
    );
    for h in r.hits.iter().chain(&r.negated) {
        check_hit(text, h);
    }
    for s in r.scores.values() {
        assert!(*s >= 0.0, "score {s}");
    }
}

static BUILTIN: LazyLock<Classifier> = LazyLock::new(Classifier::builtin);

/// The input as a message for the shipped rules, and as a rules file
/// (`Classifier::from_toml`) that, if it compiles, classifies a few messages.
pub fn rules(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    classify_checks(&BUILTIN, &text);
    let Ok(c) = Classifier::from_toml(&text, None) else {
        return;
    };
    for m in MESSAGES {
        classify_checks(&c, m);
    }
    // The rules' own words are the likeliest to match.
    let words = c
        .rules()
        .rules
        .iter()
        .flat_map(|r| r.keywords.iter())
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" 不是 ");
    classify_checks(&c, &words);
    classify_checks(&c, &text);
}

// ---------------------------------------------------------------------------------------------
// phone

/// `domain::PhoneNumber::parse`: the result is E.164 (`+`, 3 to 15 digits, no leading 0) or a
/// short code (3 to 6 digits, as its doc comment says), and parsing it again gives it back.
pub fn phone(data: &[u8]) {
    let input = String::from_utf8_lossy(data);
    for country in ["86", "44", "1"] {
        match PhoneNumber::parse(&input, country) {
            Ok(p) => {
                let s = p.as_str();
                assert_eq!(String::from(p.clone()), s);
                // Formatted (for a log), it is masked.
                assert_eq!(p.to_string(), switchboard::domain::mask(s));
                match s.strip_prefix('+') {
                    Some(d) => {
                        assert!(d.bytes().all(|b| b.is_ascii_digit()), "{s:?}");
                        assert!((3..=15).contains(&d.len()), "E.164 length: {s:?}");
                        assert!(!d.starts_with('0'), "{s:?}");
                        assert_eq!(p.digits(), d);
                    }
                    None => {
                        assert!(s.bytes().all(|b| b.is_ascii_digit()), "{s:?}");
                        assert!(
                            (3..=6).contains(&s.len()),
                            "short code of {} digits {s:?} from {input:?}",
                            s.len()
                        );
                    }
                }
                normalised(s, country);
            }
            Err(PhoneError::Empty) => assert!(input.trim().is_empty()),
            Err(_) => assert!(!input.trim().is_empty()),
        }
    }
}
