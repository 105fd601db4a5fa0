//! Jasmin `POST /send` (port 1401): UCS-2 text as `coding=8` with `hex-content` in UTF-16BE,
//! GSM-7 text as `content`. `200 Success "<uuid>"` gives the id its DLRs carry; 400/403/412
//! are refusals (412 = no route), 5xx retry.

use crate::config::Settings;
use crate::outbound::Sender;
use crate::outbound::retry::{SendResult, classify_error};
use crate::outbound::segment::{is_gsm7, utf16be};
use crate::outbound::sms;
use crate::store::OutboxItem;
use std::sync::Arc;
use std::time::Duration;

pub struct Jasmin {
    settings: Arc<Settings>,
    client: reqwest::Client,
}

impl Jasmin {
    pub fn new(settings: Arc<Settings>) -> Jasmin {
        let client = sms::client(Duration::from_secs(settings.sms.outbound.timeout_secs));
        Jasmin { settings, client }
    }

    /// The form fields of one message.
    pub fn form(&self, item: &OutboxItem) -> Vec<(&'static str, String)> {
        let o = &self.settings.sms.outbound;
        let from = if item.from.is_empty() {
            o.from.clone()
        } else {
            item.from.clone()
        };
        let mut f = vec![
            ("username", o.username.clone()),
            ("password", o.password.expose().to_string()),
            ("to", item.to.as_str().trim_start_matches('+').to_string()),
            ("from", from.trim_start_matches('+').to_string()),
        ];
        if is_gsm7(&item.text) {
            f.push(("coding", "0".into()));
            f.push(("content", item.text.clone()));
        } else {
            f.push(("coding", "8".into()));
            f.push(("hex-content", hex::encode(utf16be(&item.text))));
        }
        if o.dlr {
            f.push(("dlr", "yes".into()));
            f.push((
                "dlr-url",
                sms::dlr_url(&self.settings, "jasmin", item.message_id, ""),
            ));
            f.push(("dlr-level", "3".into()));
            f.push(("dlr-method", "POST".into()));
        }
        f
    }
}

/// Jasmin's refusals (`jasmin/protocols/http/endpoints/send.py`, `errors.py`): `403 Error
/// "User throughput exceeded"` is its quota's way of saying "slow down" and is retried with
/// backoff, like a 429; `Error "Authentication failure…"` and other 4xx (no route, bad
/// parameters, no balance) stay permanent; 5xx are retried.
pub fn classify_refusal(status: u16, body: &str) -> SendResult {
    if status == 403 && body.to_ascii_lowercase().contains("throughput exceeded") {
        let snippet: String = body.chars().take(200).collect();
        return SendResult::Retry(format!("HTTP 403 (Jasmin throughput quota): {snippet}"));
    }
    crate::outbound::retry::classify_status(status, body)
}

/// Jasmin's id from `Success "<uuid>"`.
pub fn parse_success(body: &str) -> Option<String> {
    let rest = body.trim().strip_prefix("Success")?.trim();
    Some(rest.trim_matches('"').to_string()).filter(|s| !s.is_empty())
}

#[async_trait::async_trait]
impl Sender for Jasmin {
    async fn send(&self, item: &OutboxItem) -> SendResult {
        let url = &self.settings.sms.outbound.url;
        match self.client.post(url).form(&self.form(item)).send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap_or_default();
                match status {
                    200..=299 => match parse_success(&body) {
                        Some(id) => SendResult::Sent {
                            provider_id: Some(id),
                        },
                        None => {
                            SendResult::Retry(format!("HTTP {status} without Success: {body:?}"))
                        }
                    },
                    _ => classify_refusal(status, &body),
                }
            }
            Err(e) => classify_error(e),
        }
    }

    fn name(&self) -> &'static str {
        "jasmin"
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn success_body_gives_the_uuid() {
        assert_eq!(
            super::parse_success("Success \"07033084-5cfd-4812-90a4-e4d24ffb6e3d\"").as_deref(),
            Some("07033084-5cfd-4812-90a4-e4d24ffb6e3d")
        );
        assert_eq!(super::parse_success("Error \"No route found\""), None);
    }

    #[test]
    fn throughput_quota_is_retried_and_auth_failure_is_final() {
        use crate::outbound::retry::SendResult;
        let r = super::classify_refusal(403, "Error \"User throughput exceeded\"");
        assert!(matches!(r, SendResult::Retry(_)), "{r:?}");
        let r = super::classify_refusal(403, "Error \"Authentication failure for username:x\"");
        assert!(matches!(r, SendResult::Fail(_)), "{r:?}");
        let r = super::classify_refusal(412, "Error \"No route found\"");
        assert!(matches!(r, SendResult::Fail(_)), "{r:?}");
        assert!(matches!(
            super::classify_refusal(503, ""),
            SendResult::Retry(_)
        ));
    }
}
