//! Delivery report handlers: check the DLR secret, parse with the bridge's `dlr.rs`
//! (`crate::bridges::<name>::dlr`), record, and answer in the bridge's form.

use super::error::Body;
use super::{AppError, AppState, check_token};
use crate::bridges::generic::dlr::GenericDlr;
use crate::bridges::{jasmin, kannel};
use crate::store::DlrUpdate;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

async fn record(s: &AppState, dlr: DlrUpdate) -> Result<(), AppError> {
    s.metrics.dlr();
    let applied = s.intake.store.apply_dlr(&dlr).await?;
    if applied.is_none() {
        tracing::warn!(message_id = ?dlr.message_id, provider_id = ?dlr.provider_id, "delivery report for an unknown message (kept)");
    }
    Ok(())
}

async fn kannel(s: AppState, query: &[u8], headers: &HeaderMap) -> Result<Response, AppError> {
    check_token(&s.settings.inbound.dlr_token, query, headers)?;
    record(&s, kannel::dlr::parse(query, s.intake.clock.now_ms())?).await?;
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
    record(
        &s,
        jasmin::dlr::parse(query, form, s.intake.clock.now_ms())?,
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
    record(&s, body.0.update(s.intake.clock.now_ms())).await?;
    Ok((
        StatusCode::OK,
        axum::Json(serde_json::json!({"status": "recorded"})),
    )
        .into_response())
}
