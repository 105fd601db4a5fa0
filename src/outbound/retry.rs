//! What a bridge's answer means (send again or not) and when to try again.

use rand::Rng;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendResult {
    /// The bridge took the message; `provider_id` is its id when it gives one.
    Sent { provider_id: Option<String> },
    /// 5xx, 429, timeouts, connection errors: try again later.
    Retry(String),
    /// 4xx and other refusals a retry cannot fix.
    Fail(String),
}

/// Maps an HTTP answer to a result: 2xx sent, 408/429/5xx retry, other 4xx fail.
pub fn classify_status(status: u16, body: &str) -> SendResult {
    let snippet: String = body.chars().take(200).collect();
    match status {
        200..=299 => SendResult::Sent { provider_id: None },
        408 | 425 | 429 | 500..=599 => SendResult::Retry(format!("HTTP {status}: {snippet}")),
        _ => SendResult::Fail(format!("HTTP {status}: {snippet}")),
    }
}

/// Maps a transport error: everything is worth retrying (the request may not have arrived).
/// The URL is dropped from the message: Kannel's carries the sendsms password.
pub fn classify_error(e: reqwest::Error) -> SendResult {
    let e = e.without_url();
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "transport error"
    };
    SendResult::Retry(format!("{kind}: {e}"))
}

/// Exponential backoff with "equal jitter": half the delay fixed, half random, so retries of
/// many messages after an outage spread out instead of arriving together.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// Delay before attempt `attempt + 1` (attempt counts from 1).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.max);
        let half = exp / 2;
        let jitter = rand::thread_rng().gen_range(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_retry_or_fail() {
        assert!(matches!(
            classify_status(202, "0: Accepted"),
            SendResult::Sent { .. }
        ));
        assert!(matches!(classify_status(503, ""), SendResult::Retry(_)));
        assert!(matches!(classify_status(429, ""), SendResult::Retry(_)));
        assert!(matches!(classify_status(400, "bad"), SendResult::Fail(_)));
        assert!(matches!(classify_status(403, ""), SendResult::Fail(_)));
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let b = Backoff {
            base: Duration::from_millis(1000),
            max: Duration::from_millis(8000),
        };
        for attempt in 1..=10 {
            let nominal = (1000u64 << (attempt - 1).min(20)).min(8000);
            let d = b.delay(attempt).as_millis() as u64;
            assert!(
                d >= nominal / 2 && d <= nominal,
                "attempt {attempt}: {d} vs {nominal}"
            );
        }
        let samples: std::collections::HashSet<u128> =
            (0..50).map(|_| b.delay(4).as_millis()).collect();
        assert!(samples.len() > 5, "jitter spreads delays");
    }
}
