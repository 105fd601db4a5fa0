//! SMS webhook handlers: authenticate, parse the dialect, run intake, answer in the dialect.

use super::error::Body;
use super::{AppError, AppState, Inbound, check_token};
use crate::bridges::{generic, jasmin, kannel, twilio};
use crate::inbound::{BadInput, NewInbound};
use crate::store::IntakeOutcome;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

async fn accept(
    s: &AppState,
    parsed: Result<NewInbound, BadInput>,
) -> Result<IntakeOutcome, AppError> {
    let msg = match parsed {
        Ok(m) => m,
        Err(e) => {
            s.metrics.inbound(Inbound::Rejected);
            tracing::info!(error = %crate::domain::scrub(&e.to_string()), "inbound rejected");
            return Err(e.into());
        }
    };
    let started = std::time::Instant::now();
    let taken = s.intake.accept(msg).await;
    s.metrics.intake_took(started);
    match taken {
        Ok(o) => {
            match o {
                IntakeOutcome::Duplicate { .. } => s.metrics.inbound(Inbound::Duplicate),
                IntakeOutcome::Stored { .. } | IntakeOutcome::Part { .. } => {
                    s.metrics.inbound(Inbound::Stored)
                }
            }
            Ok(o)
        }
        Err(e) => {
            s.metrics.inbound(Inbound::Unavailable);
            Err(e.into())
        }
    }
}

fn q(raw: &Option<String>) -> &[u8] {
    raw.as_deref().map(str::as_bytes).unwrap_or_default()
}

/// Kannel sends our body to the phone unless `max-messages = 0`; answer with nothing.
fn kannel_ok() -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], "").into_response()
}

pub async fn kannel_get(
    State(s): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    check_token(&s.settings.inbound.kannel_token, q(&raw), &headers)?;
    let country = &s.settings.phone.default_country;
    accept(&s, kannel::mo::parse(q(&raw), &headers, None, country)).await?;
    Ok(kannel_ok())
}

pub async fn kannel_post(
    State(s): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, AppError> {
    check_token(&s.settings.inbound.kannel_token, q(&raw), &headers)?;
    let country = &s.settings.phone.default_country;
    accept(
        &s,
        kannel::mo::parse(q(&raw), &headers, Some(&body), country),
    )
    .await?;
    Ok(kannel_ok())
}

/// Jasmin counts a delivery only for status < 400 with exactly this body.
fn jasmin_ack() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain")],
        "ACK/Jasmin",
    )
        .into_response()
}

pub async fn jasmin_get(
    State(s): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    check_token(&s.settings.inbound.jasmin_token, q(&raw), &headers)?;
    accept(
        &s,
        jasmin::mo::parse(q(&raw), &s.settings.phone.default_country),
    )
    .await?;
    Ok(jasmin_ack())
}

pub async fn jasmin_post(
    State(s): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, AppError> {
    check_token(&s.settings.inbound.jasmin_token, q(&raw), &headers)?;
    accept(
        &s,
        jasmin::mo::parse(&body, &s.settings.phone.default_country),
    )
    .await?;
    Ok(jasmin_ack())
}

pub async fn twilio(
    State(s): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, AppError> {
    if let Some(token) = &s.settings.inbound.twilio_auth_token {
        let url = match &s.settings.inbound.twilio_url {
            Some(u) => u.clone(),
            None => {
                let host = headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("");
                let query = raw.as_deref().map(|r| format!("?{r}")).unwrap_or_default();
                format!("http://{host}/inbound/sms/twilio{query}")
            }
        };
        let sig = headers
            .get("x-twilio-signature")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                AppError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "missing X-Twilio-Signature",
                )
            })?;
        if !twilio::mo::verify(token.expose(), &url, &body, sig) {
            return Err(AppError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "X-Twilio-Signature does not match",
            ));
        }
    }
    accept(
        &s,
        twilio::mo::parse(&body, &s.settings.phone.default_country),
    )
    .await?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/xml")],
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>",
    )
        .into_response())
}

pub async fn generic(
    State(s): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, AppError> {
    check_token(&s.settings.inbound.generic_token, q(&raw), &headers)?;
    let outcome = accept(
        &s,
        generic::mo::parse(&body, &s.settings.phone.default_country),
    )
    .await?;
    let json = match outcome {
        IntakeOutcome::Duplicate { message_id } => {
            serde_json::json!({"status": "duplicate", "message_id": message_id})
        }
        IntakeOutcome::Stored {
            message_id,
            case_id,
            new_case,
            ..
        } => serde_json::json!({
            "status": "stored",
            "message_id": message_id,
            "case": case_id.map(|c| c.number()),
            "new_case": new_case,
        }),
        IntakeOutcome::Part {
            part_id,
            received,
            total,
        } => serde_json::json!({
            "status": "part_stored", "part_id": part_id, "parts_received": received, "parts_total": total,
        }),
    };
    Ok((StatusCode::OK, axum::Json(json)).into_response())
}
