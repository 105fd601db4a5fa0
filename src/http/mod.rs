//! The axum router: webhooks (`/inbound/*`), delivery reports (`/dlr/*`), health, metrics.
//! Every inbound route answers only after the intake transaction committed; a database error
//! answers 503 so the bridge retries, bad input a 4xx with a JSON error naming the field.
//!
//! Layout: `error.rs` the error shape; `inbound.rs` SMS webhooks; `dlr.rs` delivery reports;
//! `serve.rs` the accept loop (timeouts, deadline, JSON for every error answer).

pub mod api;
mod campaigns;
mod dlr;
mod email;
mod error;
mod inbound;
pub mod metrics;
pub mod serve;

pub use error::AppError;

use crate::config::{Secret, Settings};
use crate::intake::Intake;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use std::sync::Arc;
use subtle::ConstantTimeEq;

pub use metrics::{Inbound, Metrics, Sent};

#[derive(Clone)]
pub struct AppState {
    pub intake: Arc<Intake>,
    pub rules: Arc<crate::classify::live::LiveRules>,
    pub settings: Arc<Settings>,
    pub metrics: Arc<Metrics>,
    /// The SLA scheduler's settings and notices (escalation by hand tells the new tier).
    pub sla: Arc<crate::sla::scheduler::Scheduler>,
    /// Campaign templates render and preview as the dispatcher does.
    pub campaigns: Arc<crate::campaigns::dispatch::Dispatcher>,
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
        .route("/api/v1/reports/sla", get(api::sla_report))
        .route(
            "/api/v1/campaigns",
            get(campaigns::list).post(campaigns::create),
        )
        .route("/api/v1/campaigns/{id}", get(campaigns::get))
        .route(
            "/api/v1/campaigns/{id}/recipients",
            post(campaigns::recipients).layer(DefaultBodyLimit::max(256 * 1024 * 1024)),
        )
        .route("/api/v1/campaigns/{id}/preview", post(campaigns::preview))
        .route("/api/v1/campaigns/{id}/answers", get(campaigns::answers))
        .route(
            "/unsubscribe/{token}",
            get(campaigns::unsubscribe_page).post(campaigns::unsubscribe),
        )
        .route("/api/v1/campaigns/{id}/{action}", post(campaigns::action))
        .route("/api/v1/cases", get(api::list_cases))
        .route("/api/v1/cases/{id}", get(api::get_case))
        .route("/api/v1/cases/{id}/resolve", post(api::resolve_case))
        .route("/api/v1/cases/{id}/start", post(api::start_case))
        .route("/api/v1/cases/{id}/category", post(api::recategorize))
        .route("/api/v1/corrections", get(api::corrections))
        .route("/api/v1/cases/{id}/contacts", post(api::log_contact))
        .route("/api/v1/cases/{id}/escalate", post(api::escalate))
        .route("/api/v1/cases/{id}/notes", post(api::add_note))
        .route("/api/v1/cases/{id}/assign", post(api::assign))
        .route("/api/v1/cases/{id}/close", post(api::close_case))
        .route("/api/v1/cases/{id}/reopen", post(api::reopen))
        .route("/api/v1/cases/{id}/replies", post(api::reply))
        .route("/api/v1/rules/{id}/activate", post(api::activate_rules))
        .fallback(|| async { AppError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            metrics::observe,
        ))
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
    match s.intake.store.outbox_depth().await {
        Ok(rows) => s.metrics.set_outbox_depth(&rows),
        Err(e) => tracing::warn!(error = %e, "outbox depth unavailable for /metrics"),
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
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
        .map(|(_, v)| v.into_owned());
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
