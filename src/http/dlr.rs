//! Delivery reports. Kannel: our `dlr-url` carries `msg=<our id>&type=%d`; Jasmin: `id` (its
//! uuid) and `message_status`, plus our `msg`; generic JSON `{id, status}`.

use super::error::Body;
use super::{AppError, AppState, check_token};
use crate::inbound::{form_pairs, text_param};
use crate::store::{DeliveryStatus, DlrUpdate};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Kannel's `%d`: 1 delivered, 2 undelivered, 4 queued on SMSC, 8 delivered to SMSC,
/// 16 rejected by SMSC, 32 intermediate.
pub fn kannel_status(t: u32) -> Option<DeliveryStatus> {
    match t {
        1 => Some(DeliveryStatus::Delivered),
        2 | 16 => Some(DeliveryStatus::Failed),
        4 | 8 | 32 => Some(DeliveryStatus::Accepted),
        _ => None,
    }
}

/// Jasmin's `message_status` (level 1 ESME_* codes, level 2/3 SMSC states).
pub fn jasmin_status(s: &str) -> Option<DeliveryStatus> {
    match s.trim().to_ascii_uppercase().as_str() {
        "DELIVRD" => Some(DeliveryStatus::Delivered),
        "UNDELIV" | "REJECTD" | "EXPIRED" | "DELETED" | "UNKNOWN" => Some(DeliveryStatus::Failed),
        "ESME_ROK" | "ACCEPTD" | "ENROUTE" => Some(DeliveryStatus::Accepted),
        other if other.starts_with("ESME_") => Some(DeliveryStatus::Failed),
        _ => None,
    }
}

async fn record(s: &AppState, dlr: DlrUpdate) -> Result<(), AppError> {
    s.metrics.dlr();
    let applied = s.intake.store.apply_dlr(&dlr).await?;
    if applied.is_none() {
        tracing::warn!(message_id = ?dlr.message_id, provider_id = ?dlr.provider_id, "delivery report for an unknown message (kept)");
    }
    Ok(())
}

fn bad(field: &'static str, reason: &str) -> AppError {
    AppError::new(
        StatusCode::BAD_REQUEST,
        "bad_request",
        format!("{field}: {reason}"),
    )
}

async fn kannel(s: AppState, query: &[u8], headers: &HeaderMap) -> Result<Response, AppError> {
    check_token(&s.settings.inbound.dlr_token, query, headers)?;
    let p = form_pairs(query);
    let msg = text_param(&p, "msg")?.ok_or_else(|| bad("msg", "missing"))?;
    let message_id: i64 = msg.parse().map_err(|_| bad("msg", "not a message id"))?;
    let t: u32 = text_param(&p, "type")?
        .ok_or_else(|| bad("type", "missing"))?
        .parse()
        .map_err(|_| bad("type", "not a number"))?;
    let status = kannel_status(t).ok_or_else(|| bad("type", "unknown DLR type"))?;
    let detail = format!(
        "kannel type={t} reply={}",
        text_param(&p, "reply")?.unwrap_or_default()
    );
    record(
        &s,
        DlrUpdate {
            message_id: Some(message_id),
            provider_id: text_param(&p, "smsc_id")?,
            status,
            detail,
            now_ms: s.intake.clock.now_ms(),
        },
    )
    .await?;
    Ok((StatusCode::OK, "").into_response())
}

pub async fn kannel_get(
    State(s): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    kannel(s, raw.as_deref().unwrap_or_default().as_bytes(), &headers).await
}

pub async fn kannel_post(
    State(s): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    kannel(s, raw.as_deref().unwrap_or_default().as_bytes(), &headers).await
}

async fn jasmin(
    s: AppState,
    query: &[u8],
    form: &[u8],
    headers: &HeaderMap,
) -> Result<Response, AppError> {
    check_token(&s.settings.inbound.dlr_token, query, headers)?;
    let mut p = form_pairs(query);
    p.extend(form_pairs(form));
    let message_id = match text_param(&p, "msg")? {
        Some(m) => Some(
            m.parse::<i64>()
                .map_err(|_| bad("msg", "not a message id"))?,
        ),
        None => None,
    };
    let provider_id = text_param(&p, "id")?;
    if message_id.is_none() && provider_id.is_none() {
        return Err(bad("id", "missing"));
    }
    let st = text_param(&p, "message_status")?.ok_or_else(|| bad("message_status", "missing"))?;
    let status = jasmin_status(&st).ok_or_else(|| bad("message_status", "unknown status"))?;
    let detail = format!(
        "jasmin {st} err={}",
        text_param(&p, "err")?.unwrap_or_default()
    );
    record(
        &s,
        DlrUpdate {
            message_id,
            provider_id,
            status,
            detail,
            now_ms: s.intake.clock.now_ms(),
        },
    )
    .await?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain")],
        "ACK/Jasmin",
    )
        .into_response())
}

pub async fn jasmin_get(
    State(s): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    jasmin(
        s,
        raw.as_deref().unwrap_or_default().as_bytes(),
        b"",
        &headers,
    )
    .await
}

pub async fn jasmin_post(
    State(s): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, AppError> {
    jasmin(
        s,
        raw.as_deref().unwrap_or_default().as_bytes(),
        &body,
        &headers,
    )
    .await
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericDlr {
    id: i64,
    status: DeliveryStatusIn,
    detail: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum DeliveryStatusIn {
    Accepted,
    Delivered,
    Failed,
}

pub async fn generic(
    State(s): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: super::error::AppJson<GenericDlr>,
) -> Result<Response, AppError> {
    check_token(
        &s.settings.inbound.dlr_token,
        raw.as_deref().unwrap_or_default().as_bytes(),
        &headers,
    )?;
    let d = body.0;
    let status = match d.status {
        DeliveryStatusIn::Accepted => DeliveryStatus::Accepted,
        DeliveryStatusIn::Delivered => DeliveryStatus::Delivered,
        DeliveryStatusIn::Failed => DeliveryStatus::Failed,
    };
    record(
        &s,
        DlrUpdate {
            message_id: Some(d.id),
            provider_id: None,
            status,
            detail: d.detail.unwrap_or_default(),
            now_ms: s.intake.clock.now_ms(),
        },
    )
    .await?;
    Ok((
        StatusCode::OK,
        axum::Json(serde_json::json!({"status": "recorded"})),
    )
        .into_response())
}
