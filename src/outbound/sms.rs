//! What the SMS drivers share: the HTTP client, the `dlr-url` they give a bridge, and the
//! choice of driver. The drivers are the bridges' `mt.rs`: Kannel `sendsms`
//! ([`crate::bridges::kannel::mt`]), Jasmin `/send` ([`crate::bridges::jasmin::mt`]) and a
//! generic JSON POST ([`crate::bridges::generic::mt`]).

use super::Sender;
use crate::bridges::{generic, jasmin, kannel};
use crate::config::{Settings, SmsDriver};
use std::sync::Arc;
use std::time::Duration;

/// Shared HTTP client settings of the drivers.
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .pool_max_idle_per_host(16)
        .build()
        .expect("TLS backend initialises")
}

/// The `dlr-url` a bridge calls back, carrying our message id.
pub fn dlr_url(
    settings: &Settings,
    route: &str,
    message_id: crate::domain::MessageId,
    extra: &str,
) -> String {
    let base = settings.server.public_url.trim_end_matches('/');
    let token = settings
        .inbound
        .dlr_token
        .as_ref()
        .map(|t| {
            format!(
                "&token={}",
                percent_encoding::utf8_percent_encode(
                    t.expose(),
                    percent_encoding::NON_ALPHANUMERIC
                )
            )
        })
        .unwrap_or_default();
    format!("{base}/dlr/{route}?msg={message_id}{extra}{token}")
}

/// Builds the configured driver.
pub fn driver(settings: &Settings) -> Arc<dyn Sender> {
    let s = Arc::new(settings.clone());
    match settings.sms.outbound.driver {
        SmsDriver::Kannel => Arc::new(kannel::mt::Kannel::new(s)),
        SmsDriver::Jasmin => Arc::new(jasmin::mt::Jasmin::new(s)),
        SmsDriver::Http => Arc::new(generic::mt::HttpSms::new(s)),
    }
}
