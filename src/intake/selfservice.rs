//! Self-service fee and points queries (查话费, 查积分, the 10001 idea): the answer comes from
//! the operator's billing backend over HTTP, asked before the intake transaction (no I/O ever
//! runs inside it). The backend is bounded three ways: a timeout per call, a small cache of
//! recent answers per number, and a circuit breaker that stops asking for a while after
//! failures in a row. When it cannot answer (none configured, down, slow, garbage) the customer
//! gets the fallback template, which says where to ask and never "text 10001" (they may just
//! have done so).
//!
//! Contract: `GET {backend_url}/{fees|points}?number=+8613800138000` answers 200 with a JSON
//! object; `fees` needs `balance` (string or number; `used` optional), `points` needs `points`.
//! Every string or number field of the object reaches the template as `backend.<name>`.

use crate::clock::Clock;
use crate::domain::Query;
use crate::sla::Span;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// `[self_service]` in the configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfServiceSettings {
    /// Base URL of the billing backend; empty: none (every query gets the fallback).
    pub backend_url: String,
    pub timeout: Span,
    /// How long an answer is reused for the same number and query.
    pub cache_for: Span,
    /// Failures in a row that open the breaker, and how long it stays open.
    pub breaker_failures: u32,
    pub breaker_open_for: Span,
}

impl SelfServiceSettings {
    /// # Errors
    /// Naming the key and the reason.
    pub fn check(&self) -> Result<(), String> {
        let url = self.backend_url.trim();
        if !url.is_empty() && reqwest::Url::parse(url).is_err() {
            return Err(format!("self_service.backend_url: {url:?} is not a URL"));
        }
        if self.timeout.ms() <= 0 || self.timeout.ms() > 30_000 {
            return Err("self_service.timeout: between \"1s\" and \"30s\"".into());
        }
        if self.breaker_failures == 0 {
            return Err("self_service.breaker_failures: at least 1".into());
        }
        Ok(())
    }
}

/// What the backend said, for the template (`backend.balance`, …); `None` in a draft: use the
/// fallback.
pub type Answer = Arc<serde_json::Map<String, serde_json::Value>>;

const CACHE_MAX: usize = 10_000;

#[derive(Default)]
struct State {
    cache: HashMap<(&'static str, String), (i64, Answer)>,
    failures: u32,
    open_until: i64,
}

pub struct Backend {
    settings: SelfServiceSettings,
    client: reqwest::Client,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

fn kind(q: Query) -> Option<(&'static str, &'static str)> {
    match q {
        Query::Fees => Some(("fees", "balance")),
        Query::Points => Some(("points", "points")),
        Query::CaseProgress(_) => None,
    }
}

impl Backend {
    pub fn new(settings: &SelfServiceSettings, clock: Arc<dyn Clock>) -> Backend {
        Backend {
            settings: settings.clone(),
            // No redirects: the number must not be carried anywhere else.
            client: reqwest::Client::builder()
                .timeout(Duration::from_millis(settings.timeout.ms() as u64))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            clock,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The backend's answer to `query` for `number`, or `None` (fallback). Never fails: every
    /// error is logged and counted against the breaker.
    pub async fn ask(&self, query: Query, number: &str) -> Option<Answer> {
        let (path, needs) = kind(query)?;
        let base = self.settings.backend_url.trim().trim_end_matches('/');
        if base.is_empty() {
            return None;
        }
        let now = self.clock.now_ms();
        {
            let mut st = self.state();
            if let Some((until, a)) = st.cache.get(&(path, number.to_string()))
                && *until > now
            {
                return Some(Arc::clone(a));
            }
            if st.open_until > now {
                tracing::debug!(query = path, "self-service backend breaker open; fallback");
                return None;
            }
            if st.open_until > 0 {
                // Half-open: this request is the one probe; the others wait for its result.
                st.open_until = now + self.settings.timeout.ms();
            }
        }
        match self.fetch(base, path, needs, number).await {
            Ok(a) => {
                let mut st = self.state();
                st.failures = 0;
                st.open_until = 0;
                if st.cache.len() >= CACHE_MAX {
                    st.cache.retain(|_, (until, _)| *until > now);
                    if st.cache.len() >= CACHE_MAX {
                        st.cache.clear();
                    }
                }
                st.cache.insert(
                    (path, number.to_string()),
                    (now + self.settings.cache_for.ms(), Arc::clone(&a)),
                );
                Some(a)
            }
            Err(e) => {
                let mut st = self.state();
                st.failures += 1;
                let opened = st.failures >= self.settings.breaker_failures;
                if opened {
                    st.open_until = now + self.settings.breaker_open_for.ms();
                    st.failures = 0;
                }
                tracing::warn!(query = path, error = %e, breaker_opened = opened, "self-service backend failed; the customer gets the fallback answer");
                None
            }
        }
    }

    async fn fetch(
        &self,
        base: &str,
        path: &str,
        needs: &str,
        number: &str,
    ) -> Result<Answer, String> {
        let url = format!("{base}/{path}");
        let resp = self
            .client
            .get(&url)
            .query(&[("number", number)])
            .send()
            .await
            .map_err(|e| format!("request: {}", crate::domain::scrub(&e.to_string())))?;
        if !resp.status().is_success() {
            return Err(format!("status {}", resp.status().as_u16()));
        }
        // A backend answer is a few fields; more than 64 KiB is not one (read no further).
        const MAX: usize = 65_536;
        if resp.content_length().is_some_and(|n| n > MAX as u64) {
            return Err("answer over 65536 bytes".into());
        }
        let mut resp = resp;
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("body: {e}"))? {
            if body.len() + chunk.len() > MAX {
                return Err("answer over 65536 bytes".into());
            }
            body.extend_from_slice(&chunk);
        }
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))?;
        let serde_json::Value::Object(mut map) = v else {
            return Err("not a JSON object".into());
        };
        map.retain(|_, v| v.is_string() || v.is_number());
        for v in map.values_mut() {
            if let serde_json::Value::String(s) = v {
                // A template value, not a message: short and one line.
                *s = s.chars().filter(|c| !c.is_control()).take(64).collect();
            }
        }
        if !map.contains_key(needs) {
            return Err(format!("no {needs:?} in the answer"));
        }
        Ok(Arc::new(map))
    }
}
