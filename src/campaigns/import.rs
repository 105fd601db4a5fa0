//! Recipients from CSV, streamed: a header row naming `phone` and/or `email` (the address
//! columns), optionally `consent` (evidence of consent: when and how), and any other columns,
//! which become template variables. UTF-8 or GBK / GB18030 is detected from the first line that
//! is not ASCII; a line in neither (or in the other one later) stops the import naming it.
//! Invalid rows are reported with their line number and reason and skipped; duplicates within
//! the campaign are dropped (here within the file, and by the store's unique key across
//! imports); phone numbers are normalised to E.164.

use crate::domain::Channel;
use std::collections::HashSet;
use std::io::Read;

/// One recipient to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRecipient {
    /// The CSV line the row started on (1 = the header).
    pub line: i64,
    pub channel: Channel,
    pub address: String,
    /// The row's other columns (JSON object), for the template.
    pub vars: String,
    pub consent: Option<String>,
}

/// The campaign's channel: one of them, or each recipient's own (phone when there is a valid
/// one, else email).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Sms,
    Email,
    Own,
}

impl Target {
    pub const ALL: [Target; 3] = [Target::Sms, Target::Email, Target::Own];

    pub fn as_str(self) -> &'static str {
        match self {
            Target::Sms => "sms",
            Target::Email => "email",
            Target::Own => "own",
        }
    }

    pub fn parse(s: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    Gb18030,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Gb18030 => "gb18030",
        }
    }
}

/// Why the whole file is refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ImportError {
    #[error("line {line}: {why}")]
    Line { line: u64, why: String },
    #[error("{0}")]
    File(String),
}

/// What an import did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    pub rows: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub invalid: u64,
    /// The first 1,000 invalid rows: (line, reason).
    pub errors: Vec<(u64, String)>,
    pub encoding: Option<&'static str>,
}

/// Streams batches of recipients out of a CSV.
pub struct Rows<R: Read> {
    csv: csv::Reader<std::io::Chain<std::io::Cursor<Vec<u8>>, R>>,
    target: Target,
    country: String,
    encoding: Option<Encoding>,
    columns: Vec<String>,
    phone: Option<usize>,
    email: Option<usize>,
    consent: Option<usize>,
    seen: HashSet<String>,
    record: csv::ByteRecord,
    pub report: Report,
}

const MAX_FIELD: usize = 1_000;
/// How much of the file's start the encoding is judged on.
const SAMPLE: usize = 64 * 1024;

/// The encoding of a file's first [`SAMPLE`] bytes (cut at the last line end, so no character
/// is cut), judged on all of its lines at once, since one short GBK line can happen to be valid
/// UTF-8 (郑伟 in GBK is D6A3 CEB0, two 2-byte UTF-8 characters):
/// * every non-ASCII line valid UTF-8: UTF-8, unless the file also reads as GB18030 and its
///   UTF-8 reading has no CJK character but some from U+0250–U+07FF (GBK pairs read as UTF-8);
/// * else every one valid GB18030 (a superset of GBK), and none of them real UTF-8 text (Chinese
///   in UTF-8 is three bytes a character; GBK pairs read as UTF-8 give two-byte ones): GB18030;
/// * else (ASCII only, a mixed file, or neither) `None`: each line is then judged as it comes,
///   and the first in neither, or not in the encoding of the lines before, is named.
fn sniff(head: &[u8]) -> Option<Encoding> {
    let cut = if head.len() == SAMPLE {
        &head[..=head.iter().rposition(|&b| b == b'\n')?]
    } else {
        head
    };
    // `real_utf8`: a line that reads as UTF-8 with CJK (3-byte) characters; `odd_utf8`: one
    // that reads as UTF-8 only with characters a customer file hardly has (U+0250–U+07FF:
    // IPA, Greek, Cyrillic, Armenian, Hebrew, Arabic), which is what GBK pairs read as UTF-8
    // give. Accented Latin letters (José, Müller) are plausible UTF-8.
    let (mut all_utf8, mut all_gb, mut real_utf8, mut odd_utf8) = (true, true, false, false);
    for line in cut.split(|&b| b == b'\n').filter(|l| !l.is_ascii()) {
        match std::str::from_utf8(line) {
            Ok(t) => {
                real_utf8 |= t.chars().any(|c| c as u32 >= 0x800);
                odd_utf8 |= t.chars().any(|c| (0x250..0x800).contains(&(c as u32)));
            }
            Err(_) => all_utf8 = false,
        }
        all_gb &= encoding_rs::GB18030
            .decode_without_bom_handling_and_without_replacement(line)
            .is_some();
    }
    if cut.is_ascii() {
        None
    } else if all_utf8 && !(odd_utf8 && all_gb && !real_utf8) {
        Some(Encoding::Utf8)
    } else if all_gb && !real_utf8 {
        Some(Encoding::Gb18030)
    } else {
        None
    }
}

const MAX_ERRORS: usize = 1_000;

impl<R: Read> Rows<R> {
    /// Reads the header.
    ///
    /// # Errors
    /// No header, no address column the channel needs, a header in neither encoding.
    pub fn new(r: R, target: Target, default_country: &str) -> Result<Rows<R>, ImportError> {
        // The first SAMPLE bytes however many reads they take, then the rest of the stream.
        let mut r = r;
        let mut head = Vec::with_capacity(SAMPLE);
        Read::by_ref(&mut r)
            .take(SAMPLE as u64)
            .read_to_end(&mut head)
            .map_err(|e| ImportError::File(format!("reading the file: {e}")))?;
        let encoding = sniff(&head);
        let input = std::io::Cursor::new(head).chain(r);
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(input);
        let mut head = csv::ByteRecord::new();
        let read = csv
            .read_byte_record(&mut head)
            .map_err(|e| ImportError::Line {
                line: 1,
                why: e.to_string(),
            })?;
        if !read {
            return Err(ImportError::File(
                "the file is empty: a header row (phone,email,…) comes first".into(),
            ));
        }
        let mut rows = Rows {
            csv,
            target,
            country: default_country.to_string(),
            encoding,
            columns: Vec::new(),
            phone: None,
            email: None,
            consent: None,
            seen: HashSet::new(),
            record: csv::ByteRecord::new(),
            report: Report {
                encoding: encoding.map(Encoding::as_str),
                ..Report::default()
            },
        };
        let mut columns = Vec::with_capacity(head.len());
        for f in head.iter() {
            let name = rows.decode(f, 1)?;
            let name = name.trim().trim_start_matches('\u{feff}').to_string();
            columns.push(name);
        }
        let find = |n: &str| columns.iter().position(|c| c.eq_ignore_ascii_case(n));
        rows.phone = find("phone");
        rows.email = find("email");
        rows.consent = find("consent");
        let need = match target {
            Target::Sms => rows.phone.is_some(),
            Target::Email => rows.email.is_some(),
            Target::Own => rows.phone.is_some() || rows.email.is_some(),
        };
        if !need {
            return Err(ImportError::Line {
                line: 1,
                why: format!(
                    "the header {:?} has no {} column",
                    columns,
                    match target {
                        Target::Sms => "phone",
                        Target::Email => "email",
                        Target::Own => "phone or email",
                    }
                ),
            });
        }
        rows.columns = columns;
        Ok(rows)
    }

    /// The header's columns (template variables).
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    fn decode(&mut self, bytes: &[u8], line: u64) -> Result<String, ImportError> {
        if bytes.is_ascii() {
            return Ok(String::from_utf8_lossy(bytes).into_owned());
        }
        let utf8 = std::str::from_utf8(bytes).ok();
        let gb = || {
            encoding_rs::GB18030
                .decode_without_bom_handling_and_without_replacement(bytes)
                .map(|c| c.into_owned())
        };
        match self.encoding {
            None => {
                if let Some(s) = utf8 {
                    self.encoding = Some(Encoding::Utf8);
                    self.report.encoding = Some("utf-8");
                    Ok(s.to_string())
                } else if let Some(s) = gb() {
                    self.encoding = Some(Encoding::Gb18030);
                    self.report.encoding = Some("gb18030");
                    Ok(s)
                } else {
                    Err(ImportError::Line {
                        line,
                        why: "neither UTF-8 nor GBK / GB18030; save the file as UTF-8".into(),
                    })
                }
            }
            Some(Encoding::Utf8) => utf8.map(str::to_string).ok_or(ImportError::Line {
                line,
                why: "not UTF-8, although the lines before are (a mixed file)".into(),
            }),
            Some(Encoding::Gb18030) => gb().ok_or(ImportError::Line {
                line,
                why: "not GBK / GB18030, although the lines before are (a mixed file)".into(),
            }),
        }
    }

    fn invalid(&mut self, line: u64, why: String) {
        self.report.invalid += 1;
        if self.report.errors.len() < MAX_ERRORS {
            self.report.errors.push((line, why));
        }
    }

    /// Up to `n` more recipients; `None` at the end.
    ///
    /// # Errors
    /// A line in neither encoding, a CSV the reader cannot read.
    pub fn next_batch(&mut self, n: usize) -> Result<Option<Vec<NewRecipient>>, ImportError> {
        let mut out = Vec::with_capacity(n.min(4096));
        while out.len() < n {
            let mut rec = std::mem::take(&mut self.record);
            let more = self
                .csv
                .read_byte_record(&mut rec)
                .map_err(|e| ImportError::Line {
                    line: e.position().map(|p| p.line()).unwrap_or(0),
                    why: e.to_string(),
                })?;
            if !more {
                self.record = rec;
                break;
            }
            let line = rec.position().map(|p| p.line()).unwrap_or(0);
            let row = self.row(&rec, line);
            self.record = rec;
            match row? {
                Ok(Some(r)) => out.push(r),
                Ok(None) => {}
                Err(why) => self.invalid(line, why),
            }
        }
        Ok((!out.is_empty()).then_some(out))
    }

    /// One row: a recipient, nothing (blank line, duplicate) or why it is invalid.
    #[allow(clippy::type_complexity)]
    fn row(
        &mut self,
        rec: &csv::ByteRecord,
        line: u64,
    ) -> Result<Result<Option<NewRecipient>, String>, ImportError> {
        if rec.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)) {
            return Ok(Ok(None));
        }
        self.report.rows += 1;
        let mut fields = Vec::with_capacity(rec.len());
        for f in rec.iter() {
            let v = self.decode(f, line)?;
            if v.chars().count() > MAX_FIELD {
                return Ok(Err(format!("a field over {MAX_FIELD} characters")));
            }
            fields.push(v.trim().to_string());
        }
        let get = |i: Option<usize>| i.and_then(|i| fields.get(i)).filter(|v| !v.is_empty());
        let phone = get(self.phone);
        let email = get(self.email);
        let phone_ok = phone.map(|p| valid_phone(p, &self.country));
        let email_ok = email.map(|e| valid_email(e));
        let (channel, address) = match self.target {
            Target::Sms => match phone_ok {
                Some(Ok(p)) => (Channel::Sms, p),
                Some(Err(e)) => return Ok(Err(format!("phone: {e}"))),
                None => return Ok(Err("no phone number".into())),
            },
            Target::Email => match email_ok {
                Some(Ok(e)) => (Channel::Email, e),
                Some(Err(e)) => return Ok(Err(format!("email: {e}"))),
                None => return Ok(Err("no email address".into())),
            },
            Target::Own => match (phone_ok, email_ok) {
                (Some(Ok(p)), _) => (Channel::Sms, p),
                (_, Some(Ok(e))) => (Channel::Email, e),
                (Some(Err(e)), _) => return Ok(Err(format!("phone: {e}"))),
                (_, Some(Err(e))) => return Ok(Err(format!("email: {e}"))),
                (None, None) => return Ok(Err("neither a phone number nor an email".into())),
            },
        };
        if !self.seen.insert(format!("{}:{address}", channel.as_str())) {
            self.report.duplicates += 1;
            return Ok(Ok(None));
        }
        let mut vars = serde_json::Map::new();
        for (i, name) in self.columns.iter().enumerate() {
            if name.is_empty() || Some(i) == self.consent {
                continue;
            }
            // An empty cell is no value: a template that needs it fails for this row (the
            // recipient is suppressed as `template`) rather than saying "您欠费元".
            if let Some(v) = fields.get(i).filter(|v| !v.is_empty()) {
                vars.insert(name.clone(), serde_json::Value::String(v.clone()));
            }
        }
        // The address as normalised, whatever the column held.
        match channel {
            Channel::Sms => vars.insert("phone".into(), address.clone().into()),
            Channel::Email => vars.insert("email".into(), address.clone().into()),
        };
        self.report.accepted += 1;
        Ok(Ok(Some(NewRecipient {
            line: line as i64,
            channel,
            address,
            vars: serde_json::Value::Object(vars).to_string(),
            consent: get(self.consent).cloned(),
        })))
    }
}

/// A recipient's number in E.164; short codes and numbers of under seven digits are refused.
///
/// # Errors
/// What is wrong.
pub fn valid_phone(p: &str, country: &str) -> Result<String, String> {
    let n = crate::domain::PhoneNumber::parse(p, country)
        .map(String::from)
        .map_err(|e| e.to_string())?;
    if n.trim_start_matches('+').len() < 7 {
        return Err(format!("{p:?} is too short for a subscriber number"));
    }
    Ok(n)
}

/// A plain check of an email address: one `@`, a dotted domain, no spaces, at most 254 bytes;
/// lower-cased domain.
///
/// # Errors
/// What is wrong.
pub fn valid_email(e: &str) -> Result<String, String> {
    // The form stored is the form sent and opted out (lower-cased whole, as inbound mail
    // stores addresses): `EmailAddress`, with a dotted domain and no angle brackets.
    if e.contains(['<', '>']) {
        return Err(format!("{e:?} is not an address"));
    }
    let a = crate::domain::EmailAddress::parse(e).map_err(|why| format!("{e:?}: {why}"))?;
    let domain = a.domain();
    if !domain.contains('.') || domain.starts_with('.') {
        return Err(format!("{e:?} is not an address"));
    }
    Ok(a.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(csv: &[u8], t: Target) -> Result<(Vec<NewRecipient>, Report), ImportError> {
        let mut rows = Rows::new(csv, t, "86")?;
        let mut v = Vec::new();
        while let Some(b) = rows.next_batch(2)? {
            v.extend(b);
        }
        Ok((v, rows.report))
    }

    /// A GBK file whose only name (郑伟: D6A3 CEB0, "֣ΰ" as UTF-8) is also valid UTF-8 is read
    /// as GBK, while a UTF-8 file of accented Latin names stays UTF-8.
    #[test]
    fn an_all_ambiguous_gbk_file_is_gbk_and_latin_utf8_stays_utf8() {
        let (gbk, _, _) = encoding_rs::GBK.encode("phone,name\n13800138000,郑伟\n");
        assert!(std::str::from_utf8(&gbk).is_ok());
        let (v, r) = all(&gbk, Target::Sms).unwrap();
        assert_eq!(r.encoding, Some("gb18030"));
        assert!(v[0].vars.contains("郑伟"), "{}", v[0].vars);
        let latin = "phone,name\n13800138000,José Müller\n".as_bytes();
        let (v, r) = all(latin, Target::Sms).unwrap();
        assert_eq!(r.encoding, Some("utf-8"));
        assert!(v[0].vars.contains("José"), "{}", v[0].vars);
    }

    /// A GBK file whose first name (郑伟: D6A3 CEB0) is also valid UTF-8 is still read as
    /// GBK: the encoding is judged on the file's start, not on its first non-ASCII line.
    #[test]
    fn a_gbk_file_whose_first_line_looks_like_utf8_is_read_as_gbk() {
        let text = "phone,name\n13800138000,郑伟\n13800138001,张三\n";
        let (gbk, _, _) = encoding_rs::GBK.encode(text);
        assert!(std::str::from_utf8(&encoding_rs::GBK.encode("郑伟").0).is_ok());
        let (v, r) = all(&gbk, Target::Sms).unwrap();
        assert_eq!(r.encoding, Some("gb18030"));
        assert_eq!(v.len(), 2);
        assert!(v[0].vars.contains("郑伟"), "{}", v[0].vars);
        assert!(v[1].vars.contains("张三"), "{}", v[1].vars);
    }

    /// The sample is the file's first 64 KiB however the reads come (a pipe, a socket):
    /// one byte a read gives the same answer as the whole file at once.
    #[test]
    fn the_sample_does_not_depend_on_how_the_reads_come() {
        struct OneByte<'a>(&'a [u8]);
        impl std::io::Read for OneByte<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                match (self.0.split_first(), buf.first_mut()) {
                    (Some((b, rest)), Some(slot)) => {
                        *slot = *b;
                        self.0 = rest;
                        Ok(1)
                    }
                    _ => Ok(0),
                }
            }
        }
        let (gbk, _, _) =
            encoding_rs::GBK.encode("phone,name\n13800138000,郑伟\n13800138001,张三\n");
        let mut rows = Rows::new(OneByte(&gbk), Target::Sms, "86").unwrap();
        let mut v = Vec::new();
        while let Some(b) = rows.next_batch(2).unwrap() {
            v.extend(b);
        }
        assert_eq!(rows.report.encoding, Some("gb18030"));
        assert_eq!(v.len(), 2);
        assert!(v[0].vars.contains("郑伟"), "{}", v[0].vars);
    }

    /// A UTF-8 file longer than the sample, with a character cut at the sample's edge, and a
    /// plain-ASCII start followed by UTF-8 further on, are read as UTF-8.
    #[test]
    fn utf8_is_recognised_past_the_sample() {
        let mut text = String::from("phone,name\n");
        for i in 0..5_000 {
            text.push_str(&format!("1380000{i:04},客户{i}\n"));
        }
        let (v, r) = all(text.as_bytes(), Target::Sms).unwrap();
        assert_eq!((v.len(), r.encoding), (5_000, Some("utf-8")));
        let mut ascii_first = String::from("phone,name\n");
        for i in 0..5_000 {
            ascii_first.push_str(&format!("1380000{i:04},guest\n"));
        }
        ascii_first.push_str("13900000000,张三\n");
        let (v, r) = all(ascii_first.as_bytes(), Target::Sms).unwrap();
        assert_eq!((v.len(), r.encoding), (5_001, Some("utf-8")));
    }

    #[test]
    fn utf8_rows_are_normalised_deduplicated_and_bad_rows_named_by_line() {
        let csv = "phone,name,consent\n13800138000,张三,2026-11-01 web\n\
                   +86 138-0013-8000,张三,\nabc,李四,\n13900139000,\"王, 五\",\n\n";
        let (v, r) = all(csv.as_bytes(), Target::Sms).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].address, "+8613800138000");
        assert_eq!(v[0].consent.as_deref(), Some("2026-11-01 web"));
        assert!(v[0].vars.contains("张三") && !v[0].vars.contains("web"));
        assert_eq!(v[1].line, 5);
        assert!(v[1].vars.contains("王, 五"));
        assert_eq!((r.rows, r.accepted, r.duplicates, r.invalid), (4, 2, 1, 1));
        assert_eq!(r.errors[0].0, 4);
        assert!(r.errors[0].1.starts_with("phone"), "{:?}", r.errors);
        assert_eq!(r.encoding, Some("utf-8"));
    }

    #[test]
    fn gbk_is_detected_and_a_file_in_neither_is_refused_naming_the_line() {
        let (gbk, _, _) = encoding_rs::GBK.encode("phone,name\n13800138000,张三\n");
        let (v, r) = all(&gbk, Target::Sms).unwrap();
        assert_eq!(r.encoding, Some("gb18030"));
        assert!(v[0].vars.contains("张三"));
        let mut mixed = b"phone,name\n13800138000,".to_vec();
        mixed.extend_from_slice("张三\n13900139000,".as_bytes());
        mixed.extend_from_slice(&gbk[gbk.len() - 5..]);
        let e = all(&mixed, Target::Sms).unwrap_err();
        assert!(
            matches!(&e, ImportError::Line { line: 3, why } if why.contains("mixed")),
            "{e:?}"
        );
        let junk = b"phone,name\n13800138000,\xff\xfe\xff\n";
        let e = all(junk, Target::Sms).unwrap_err();
        assert!(matches!(e, ImportError::Line { line: 2, .. }), "{e:?}");
    }

    #[test]
    fn the_header_must_name_the_channels_column() {
        let e = all(b"name,email\nx,a@b.cn\n", Target::Sms).err().unwrap();
        assert!(e.to_string().contains("no phone column"), "{e}");
        let (v, _) = all(
            b"name,email,phone\nx,A@B.CN,\ny,,13800138000\n",
            Target::Own,
        )
        .unwrap();
        assert_eq!(
            (v[0].channel, v[0].address.as_str()),
            (Channel::Email, "a@b.cn")
        );
        assert_eq!(v[1].channel, Channel::Sms);
        assert!(matches!(all(b"", Target::Sms), Err(ImportError::File(_))));
    }
}
