//! SMTP sending (lettre, async, pooled connections). Every mail carries our own stable
//! Message-ID `<sb-{message id}@{domain}>`, the same on every retry, so a delivery hidden by a
//! network error after DATA is recognisable; acks carry `Auto-Submitted: auto-replied` and
//! In-Reply-To/References. One message per recipient. 4xx and connection errors are retried,
//! 5xx fail the message with the server's reason.

use crate::config::{Settings, SmtpTls};
use crate::outbound::Sender;
use crate::outbound::retry::SendResult;
use crate::store::OutboxItem;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
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

pub struct SmtpSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    domain: String,
}

impl SmtpSender {
    /// # Errors
    /// An invalid `email.from` or TLS relay name.
    pub fn new(settings: &Settings) -> anyhow::Result<SmtpSender> {
        let s = &settings.email.smtp;
        let tls_parameters = || -> anyhow::Result<TlsParameters> {
            let mut p = TlsParameters::builder(s.host.clone());
            if let Some(path) = &s.ca_file {
                let pem = std::fs::read(path)
                    .map_err(|e| anyhow::anyhow!("email.smtp.ca_file {}: {e}", path.display()))?;
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| anyhow::anyhow!("email.smtp.ca_file {}: {e}", path.display()))?;
                p = p.add_root_certificate(cert);
            }
            p.build_rustls()
                .map_err(|e| anyhow::anyhow!("email.smtp TLS settings for {:?}: {e}", s.host))
        };
        let tls = match s.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls => Tls::Required(tls_parameters()?),
            SmtpTls::Tls => Tls::Wrapper(tls_parameters()?),
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host)
            .tls(tls)
            .port(s.port)
            .timeout(Some(Duration::from_secs(s.timeout_secs)))
            .pool_config(PoolConfig::new().max_size(s.concurrency.max(1) as u32));
        if let (Some(u), Some(p)) = (&s.username, &s.password) {
            b = b.credentials(Credentials::new(u.clone(), p.expose().to_string()));
        }
        let from: Mailbox = settings
            .email
            .from
            .parse()
            .map_err(|e| anyhow::anyhow!("email.from {:?}: {e}", settings.email.from))?;
        Ok(SmtpSender {
            transport: b.build(),
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
            .parse()
            .map_err(|e| format!("recipient {:?}: {e}", item.to))?;
        let mut b = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(item.subject.clone().unwrap_or_default())
            .message_id(Some(format!("<sb-{}@{}>", item.message_id, self.domain)));
        if item.kind == "ack" {
            b = b.header(AutoSubmitted("auto-replied".into()));
        }
        if let Some(h) = item
            .headers
            .as_deref()
            .and_then(|h| serde_json::from_str::<serde_json::Value>(h).ok())
        {
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
        match self.transport.send(msg).await {
            Ok(resp) => SendResult::Sent {
                provider_id: resp.message().next().map(|l| l.chars().take(200).collect()),
            },
            Err(e) if e.is_permanent() => SendResult::Fail(format!("SMTP {e}")),
            // 4xx, timeouts and connection errors: the mail may be deliverable later.
            Err(e) => SendResult::Retry(format!("SMTP {e}")),
        }
    }

    fn name(&self) -> &'static str {
        "smtp"
    }
}
