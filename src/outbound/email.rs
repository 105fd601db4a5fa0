//! SMTP sending (lettre on our own pooled `TCP_NODELAY` connections, `smtp_pool.rs`). Every mail carries our own stable
//! Message-ID `<sb-{message id}@{domain}>`, the same on every retry, so a delivery hidden by a
//! network error after DATA is recognisable; acks carry `Auto-Submitted: auto-replied` and
//! In-Reply-To/References. One message per recipient. 4xx and connection errors are retried,
//! 5xx fail the message with the server's reason.

use crate::config::{Settings, SmtpTls};
use crate::outbound::Sender;
use crate::outbound::retry::SendResult;
use crate::outbound::smtp_pool::{self, SmtpError, SmtpPool, SmtpTarget};
use crate::store::OutboxItem;
use lettre::Message;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, TlsParameters};
use std::sync::Arc;
use std::time::Duration;

/// `Auto-Submitted` (RFC 3834), which lettre does not define.
#[derive(Debug, Clone)]
struct AutoSubmitted(String);

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted(s.to_string()))
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// `List-Unsubscribe` (RFC 2369) with the one-click URL.
#[derive(Debug, Clone)]
struct ListUnsubscribe(String);

impl Header for ListUnsubscribe {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe")
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ListUnsubscribe(s.to_string()))
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058).
#[derive(Debug, Clone)]
struct ListUnsubscribePost;

impl Header for ListUnsubscribePost {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe-Post")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ListUnsubscribePost)
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "List-Unsubscribe=One-Click".to_string())
    }
}

pub struct SmtpSender {
    pool: Arc<SmtpPool>,
    from: Mailbox,
    domain: String,
}

impl SmtpSender {
    /// # Errors
    /// An invalid `email.from`, TLS settings or CA file.
    pub fn new(settings: &Settings) -> anyhow::Result<SmtpSender> {
        let s = &settings.email.smtp;
        let ca_pem = match &s.ca_file {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|e| anyhow::anyhow!("email.smtp.ca_file {}: {e}", path.display()))?,
            ),
            None => None,
        };
        let starttls = match s.tls {
            SmtpTls::Starttls => {
                let mut p = TlsParameters::builder(s.host.clone());
                if let (Some(pem), Some(path)) = (&ca_pem, &s.ca_file) {
                    let cert = Certificate::from_pem(pem).map_err(|e| {
                        anyhow::anyhow!("email.smtp.ca_file {}: {e}", path.display())
                    })?;
                    p = p.add_root_certificate(cert);
                }
                Some(p.build_rustls().map_err(|e| {
                    anyhow::anyhow!("email.smtp TLS settings for {:?}: {e}", s.host)
                })?)
            }
            _ => None,
        };
        let implicit = match s.tls {
            SmtpTls::Tls => Some(
                smtp_pool::implicit_tls_connector(ca_pem.as_deref()).map_err(|e| {
                    anyhow::anyhow!("email.smtp TLS settings (ca_file {:?}): {e}", s.ca_file)
                })?,
            ),
            _ => None,
        };
        let credentials = match (&s.username, &s.password) {
            (Some(u), Some(p)) => Some(Credentials::new(u.clone(), p.expose().to_string())),
            _ => None,
        };
        let from: Mailbox = settings
            .email
            .from
            .parse()
            .map_err(|e| anyhow::anyhow!("email.from {:?}: {e}", settings.email.from))?;
        Ok(SmtpSender {
            pool: SmtpPool::new(SmtpTarget {
                host: s.host.clone(),
                port: s.port,
                tls: s.tls,
                starttls,
                implicit,
                credentials,
                timeout: Duration::from_secs(s.timeout_secs),
                max_idle: s.concurrency.max(1),
            }),
            domain: crate::intake::email_domain(&settings.email.from),
            from,
        })
    }

    /// The mail for one outbox item.
    ///
    /// # Errors
    /// An address lettre cannot use (the message fails without retry).
    pub fn build(&self, item: &OutboxItem) -> Result<Message, String> {
        let to: Mailbox = item
            .to
            .as_str()
            .parse()
            .map_err(|e| format!("recipient {}: {e}", item.to))?;
        let mut b = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(item.subject.clone().unwrap_or_default())
            .message_id(Some(format!("<sb-{}@{}>", item.message_id, self.domain)));
        if item.kind == crate::domain::MessageKind::Ack {
            b = b.header(AutoSubmitted("auto-replied".into()));
        } else if item.kind == crate::domain::MessageKind::SlaNotice {
            // RFC 3834: made by a machine, not in answer to anything.
            b = b.header(AutoSubmitted("auto-generated".into()));
        }
        if let Some(h) = item
            .headers
            .as_deref()
            .and_then(|h| serde_json::from_str::<serde_json::Value>(h).ok())
        {
            if let Some(url) = h["list_unsubscribe"].as_str() {
                b = b
                    .header(ListUnsubscribe(format!("<{url}>")))
                    .header(ListUnsubscribePost);
            }
            if let Some(id) = h["in_reply_to"].as_str() {
                b = b.in_reply_to(format!("<{id}>"));
            }
            if let Some(refs) = h["references"].as_array() {
                let refs: Vec<String> = refs
                    .iter()
                    .filter_map(|r| r.as_str())
                    .map(|r| format!("<{r}>"))
                    .collect();
                if !refs.is_empty() {
                    b = b.references(refs.join(" "));
                }
            }
        }
        let body = match &item.html {
            Some(html) => b.multipart(MultiPart::alternative_plain_html(
                item.text.clone(),
                html.clone(),
            )),
            None => b.body(item.text.clone()),
        };
        body.map_err(|e| format!("building the message: {e}"))
    }
}

#[async_trait::async_trait]
impl Sender for SmtpSender {
    async fn send(&self, item: &OutboxItem) -> SendResult {
        let msg = match self.build(item) {
            Ok(m) => m,
            Err(e) => return SendResult::Fail(e),
        };
        match self.pool.send(msg.envelope(), &msg.formatted()).await {
            Ok(resp) => SendResult::Sent {
                provider_id: resp.message().next().map(|l| l.chars().take(200).collect()),
            },
            Err(SmtpError::Permanent(e)) => SendResult::Fail(e),
            // 4xx, timeouts and connection errors: the mail may be deliverable later.
            Err(SmtpError::Transient(e)) => SendResult::Retry(e),
        }
    }

    fn name(&self) -> &'static str {
        "smtp"
    }
}
