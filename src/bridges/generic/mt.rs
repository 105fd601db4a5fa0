//! Generic HTTP SMS driver: `POST url` with JSON `{id, from, to, text}`; the password, when
//! set, goes as a bearer token. 2xx sent (a JSON `id` in the answer is kept), 4xx refused,
//! 5xx and transport errors retried.

use crate::config::Settings;
use crate::outbound::Sender;
use crate::outbound::retry::{SendResult, classify_error, classify_status};
use crate::outbound::sms;
use crate::store::OutboxItem;
use std::sync::Arc;
use std::time::Duration;

pub struct HttpSms {
    settings: Arc<Settings>,
    client: reqwest::Client,
}

impl HttpSms {
    pub fn new(settings: Arc<Settings>) -> HttpSms {
        let client = sms::client(Duration::from_secs(settings.sms.outbound.timeout_secs));
        HttpSms { settings, client }
    }
}

#[async_trait::async_trait]
impl Sender for HttpSms {
    async fn send(&self, item: &OutboxItem) -> SendResult {
        let o = &self.settings.sms.outbound;
        let from = if item.from.is_empty() {
            o.from.as_str()
        } else {
            item.from.as_str()
        };
        let body = serde_json::json!({
            "id": item.message_id,
            "from": from,
            "to": item.to.as_str(),
            "text": item.text,
            "kind": item.kind,
            "dlr_url": o.dlr.then(|| sms::dlr_url(&self.settings, "generic", item.message_id, "")),
        });
        let mut req = self.client.post(&o.url).json(&body);
        if !o.password.expose().is_empty() {
            req = req.bearer_auth(o.password.expose());
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap_or_default();
                match classify_status(status, &text) {
                    SendResult::Sent { .. } => SendResult::Sent {
                        provider_id: serde_json::from_str::<serde_json::Value>(&text)
                            .ok()
                            .and_then(|v| {
                                v.get("id")
                                    .map(|i| i.to_string().trim_matches('"').to_string())
                            }),
                    },
                    other => other,
                }
            }
            Err(e) => classify_error(e),
        }
    }

    fn name(&self) -> &'static str {
        "http"
    }
}
