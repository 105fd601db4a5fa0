//! Kannel `GET /cgi-bin/sendsms`. GSM-7 text goes as UTF-8 with `coding=0`; anything else as
//! UTF-16BE bytes with `coding=2&charset=UTF-16BE`. `dlr-url` carries our message id so the
//! report maps back without relying on SMSC ids. Kannel answers `202 0: Accepted for
//! delivery` or `3: Queued for later delivery`; 4xx are refusals, 503 means retry.

use crate::config::Settings;
use crate::outbound::Sender;
use crate::outbound::retry::{SendResult, classify_error, classify_status};
use crate::outbound::segment::{is_gsm7, utf16be};
use crate::outbound::sms;
use crate::store::OutboxItem;
use percent_encoding::{NON_ALPHANUMERIC, percent_encode, utf8_percent_encode};
use std::sync::Arc;
use std::time::Duration;

pub struct Kannel {
    settings: Arc<Settings>,
    client: reqwest::Client,
}

impl Kannel {
    pub fn new(settings: Arc<Settings>) -> Kannel {
        let client = sms::client(Duration::from_secs(settings.sms.outbound.timeout_secs));
        Kannel { settings, client }
    }

    /// The full sendsms URL for one message (public for tests and the docs).
    pub fn url(&self, item: &OutboxItem) -> String {
        let o = &self.settings.sms.outbound;
        let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
        let (text, coding, charset) = if is_gsm7(&item.text) {
            (enc(&item.text), 0, "UTF-8")
        } else {
            (
                percent_encode(&utf16be(&item.text), NON_ALPHANUMERIC).to_string(),
                2,
                "UTF-16BE",
            )
        };
        let from = if item.from.is_empty() {
            o.from.as_str()
        } else {
            item.from.as_str()
        };
        let mut url = format!(
            "{}?username={}&password={}&from={}&to={}&text={text}&coding={coding}&charset={charset}",
            o.url,
            enc(&o.username),
            enc(o.password.expose()),
            enc(from.trim_start_matches('+')),
            enc(item.to.as_str().trim_start_matches('+')),
        );
        if o.dlr {
            let dlr = sms::dlr_url(
                &self.settings,
                "kannel",
                item.message_id,
                "&type=%d&reply=%A&smsc_id=%F",
            );
            url.push_str(&format!("&dlr-mask={}&dlr-url={}", o.dlr_mask, enc(&dlr)));
        }
        url
    }
}

#[async_trait::async_trait]
impl Sender for Kannel {
    async fn send(&self, item: &OutboxItem) -> SendResult {
        match self.client.get(self.url(item)).send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap_or_default();
                match classify_status(status, &body) {
                    // Kannel's own refusals come with 2xx on some versions: "Sending failed".
                    SendResult::Sent { .. }
                        if body.starts_with("0:")
                            || body.starts_with("3:")
                            || body.is_empty()
                            || body.starts_with("Sent") =>
                    {
                        SendResult::Sent { provider_id: None }
                    }
                    SendResult::Sent { .. } => {
                        SendResult::Retry(format!("HTTP {status} but body says {body:?}"))
                    }
                    other => other,
                }
            }
            Err(e) => classify_error(e),
        }
    }

    fn name(&self) -> &'static str {
        "kannel"
    }
}
