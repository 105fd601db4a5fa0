//! The axum router: webhooks (`/inbound/*`), delivery reports (`/dlr/*`), health, metrics.
//! Every inbound route answers only after the intake transaction committed; a database error
//! answers 503 so the bridge retries, bad input a 4xx with a JSON error naming the field.
//!
//! Layout: `error.rs` the error shape; `inbound.rs` SMS webhooks; `dlr.rs` delivery reports;
//! `serve.rs` the accept loop (timeouts, deadline, JSON for every error answer).

pub mod api;
mod dlr;
mod email;
mod error;
mod inbound;
pub mod serve;

pub use error::AppError;

use crate::config::{Secret, Settings};
use crate::domain::Channel;
use crate::intake::Intake;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use subtle::ConstantTimeEq;

#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Process counters exported on `/metrics` (Prometheus text format).
#[derive(Default, Debug)]
pub struct Metrics {
    pub inbound_stored: Counter,
    pub inbound_duplicate: Counter,
    pub inbound_rejected: Counter,
    pub inbound_unavailable: Counter,
    /// Send outcomes per channel, indexed by [`Metrics::channel`].
    pub sent: [Counter; 2],
    pub send_retries: [Counter; 2],
    pub send_failures: [Counter; 2],
    pub dlr: Counter,
}

impl Metrics {
    /// Index of a channel in the per-channel counters.
    pub fn channel(c: Channel) -> usize {
        match c {
            Channel::Sms => 0,
            Channel::Email => 1,
        }
    }

    fn render(&self) -> String {
        let rows = [
            (
                "switchboard_inbound_total{outcome=\"stored\"}",
                self.inbound_stored.get(),
            ),
            (
                "switchboard_inbound_total{outcome=\"duplicate\"}",
                self.inbound_duplicate.get(),
            ),
            (
                "switchboard_inbound_total{outcome=\"rejected\"}",
                self.inbound_rejected.get(),
            ),
            (
                "switchboard_inbound_total{outcome=\"unavailable\"}",
                self.inbound_unavailable.get(),
            ),
            ("switchboard_dlr_total", self.dlr.get()),
        ];
        let mut out = String::from(
            "# TYPE switchboard_inbound_total counter\n# TYPE switchboard_outbound_total counter\n# TYPE switchboard_dlr_total counter\n",
        );
        for (k, v) in rows {
            out.push_str(&format!("{k} {v}\n"));
        }
        for channel in [Channel::Sms, Channel::Email] {
            let i = Metrics::channel(channel);
            for (outcome, c) in [
                ("sent", &self.sent[i]),
                ("retry", &self.send_retries[i]),
                ("failed", &self.send_failures[i]),
            ] {
                out.push_str(&format!(
                    "switchboard_outbound_total{{channel=\"{}\",outcome=\"{outcome}\"}} {}\n",
                    channel.as_str(),
                    c.get()
                ));
            }
        }
        out
    }
}

#[derive(Clone)]
pub struct AppState {
    pub intake: Arc<Intake>,
    pub rules: Arc<crate::classify::live::LiveRules>,
    pub settings: Arc<Settings>,
    pub metrics: Arc<Metrics>,
}

pub fn router(state: AppState) -> Router {
    let limit = state.settings.server.max_body_bytes;
    // Room for the multipart envelope around a message of email.max_bytes.
    let email_limit = state.settings.email.max_bytes + 1024 * 1024;
    use crate::config::WebhookRoute as W;
    let on = |r: W| state.settings.serves(r);
    let mut app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    // Route groups switched off in `inbound.routes` are not served (404, no secret needed).
    if on(W::Kannel) {
        app = app.route(
            "/inbound/sms/kannel",
            get(inbound::kannel_get).post(inbound::kannel_post),
        );
    }
    if on(W::Jasmin) {
        app = app.route(
            "/inbound/sms/jasmin",
            get(inbound::jasmin_get).post(inbound::jasmin_post),
        );
    }
    if on(W::Twilio) {
        app = app.route("/inbound/sms/twilio", post(inbound::twilio));
    }
    if on(W::Generic) {
        app = app.route("/inbound/sms", post(inbound::generic));
    }
    if on(W::Email) {
        app = app.route(
            "/inbound/email",
            post(email::inbound_email).layer(DefaultBodyLimit::max(email_limit)),
        );
    }
    if on(W::Dlr) {
        app = app
            .route("/dlr/kannel", get(dlr::kannel_get).post(dlr::kannel_post))
            .route("/dlr/jasmin", get(dlr::jasmin_get).post(dlr::jasmin_post))
            .route("/dlr/generic", post(dlr::generic));
    }
    app.route("/api/v1/classify", post(api::classify))
        .route(
            "/api/v1/rules",
            get(api::list_rules).post(api::propose_rules),
        )
        .route("/api/v1/rules/{id}", get(api::get_rules))
        .route("/api/v1/cases", get(api::list_cases))
        .route("/api/v1/cases/{id}", get(api::get_case))
        .route("/api/v1/cases/{id}/resolve", post(api::resolve_case))
        .route("/api/v1/cases/{id}/replies", post(api::reply))
        .route("/api/v1/rules/{id}/activate", post(api::activate_rules))
        .fallback(|| async { AppError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    match s.intake.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        s.metrics.render(),
    )
}

/// Checks a webhook's shared secret from `?token=` or `X-Switchboard-Token`, in constant time.
/// Without a configured secret every request passes: start-up allows that only on loopback.
pub(crate) fn check_token(
    expected: &Option<Secret>,
    query: &[u8],
    headers: &HeaderMap,
) -> Result<(), AppError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let from_query = crate::inbound::form_pairs(query)
        .into_iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v);
    let given = from_query.or_else(|| {
        headers
            .get("x-switchboard-token")
            .map(|v| v.as_bytes().to_vec())
    });
    match given {
        Some(g) if bool::from(g.ct_eq(expected.expose().as_bytes())) => Ok(()),
        Some(_) => Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong token",
        )),
        None => Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing token (?token= or X-Switchboard-Token)",
        )),
    }
}
