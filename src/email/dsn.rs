//! Delivery status notifications (RFC 3464): the per-recipient outcome and the Message-ID of
//! the message the report is about.

use super::body::{clean_line, is_type};
use super::headers::first_token;
use super::{Dsn, DsnRecipient, MAX_DSN_RECIPIENTS};
use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

pub(super) fn delivery_status(msg: &Message<'_>) -> Dsn {
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
    use crate::email::tests::ok;

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
}
