//! `POST /inbound/email`: a raw RFC 5322 message (`message/rfc822` or any non-multipart body:
//! Cloudflare Email Workers, our own relays), or multipart form data with the field `email`
//! (SendGrid Inbound Parse, raw mode) or `body-mime` (Mailgun routes, `forward()` to a URL
//! ending in `mime`; `signature` = HMAC-SHA256(signing key, timestamp + token) is checked when
//! `inbound.mailgun_signing_key` is set). Mailgun treats 406 as "rejected, do not retry".

use super::{AppError, AppState, check_token};
use crate::intake::EmailRefused;
use crate::store::IntakeOutcome;
use axum::extract::{FromRequest, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Raw and SendGrid posts carry no signature: they need `inbound.email_token`. A deployment
/// that set only `inbound.mailgun_signing_key` takes Mailgun's signed posts and nothing else,
/// so the route is secured by exactly the secrets it checks.
fn check_raw_email_secret(
    s: &AppState,
    query: &[u8],
    headers: &axum::http::HeaderMap,
) -> Result<(), AppError> {
    if s.settings.inbound.email_token.is_none() && s.settings.inbound.mailgun_signing_key.is_some()
    {
        return Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "raw and SendGrid posts need inbound.email_token; only signed Mailgun posts are taken",
        ));
    }
    check_token(&s.settings.inbound.email_token, query, headers)
}

/// The Mailgun signature of `timestamp` + `token`.
pub fn mailgun_signature(key: &str, timestamp: &str, token: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.as_bytes());
    mac.update(token.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

pub async fn inbound_email(
    State(s): State<AppState>,
    RawQuery(raw_q): RawQuery,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, AppError> {
    let query = raw_q.as_deref().unwrap_or_default().as_bytes();
    let is_multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("multipart/form-data"));
    let (raw, mailgun) = if is_multipart {
        let mut form = axum::extract::Multipart::from_request(req, &s)
            .await
            .map_err(|e| AppError::rejection(&e, e.status(), "bad_request", e.body_text()))?;
        let (mut email, mut mime, mut ts, mut token, mut sig) = (None, None, None, None, None);
        while let Some(field) = form
            .next_field()
            .await
            .map_err(|e| AppError::rejection(&e, e.status(), "bad_request", e.body_text()))?
        {
            let name = field.name().unwrap_or_default().to_string();
            let data = field
                .bytes()
                .await
                .map_err(|e| AppError::rejection(&e, e.status(), "bad_request", e.body_text()))?;
            match name.as_str() {
                "email" => email = Some(data),
                "body-mime" => mime = Some(data),
                "timestamp" => ts = Some(String::from_utf8_lossy(&data).into_owned()),
                "token" => token = Some(String::from_utf8_lossy(&data).into_owned()),
                "signature" => sig = Some(String::from_utf8_lossy(&data).into_owned()),
                _ => {}
            }
        }
        if let Some(m) = mime {
            if let Some(key) = &s.settings.inbound.mailgun_signing_key {
                let (Some(ts), Some(token), Some(sig)) = (ts, token, sig) else {
                    return Err(AppError::new(
                        StatusCode::UNAUTHORIZED,
                        "unauthorized",
                        "Mailgun timestamp, token and signature are required",
                    ));
                };
                let want = mailgun_signature(key.expose(), &ts, &token);
                if !bool::from(want.as_bytes().ct_eq(sig.trim().as_bytes())) {
                    return Err(AppError::new(
                        StatusCode::UNAUTHORIZED,
                        "unauthorized",
                        "Mailgun signature does not match",
                    ));
                }
            } else {
                check_token(&s.settings.inbound.email_token, query, &headers)?;
            }
            (m.to_vec(), true)
        } else if let Some(e) = email {
            check_raw_email_secret(&s, query, &headers)?;
            (e.to_vec(), false)
        } else {
            return Err(AppError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "multipart form without an `email` or `body-mime` field",
            ));
        }
    } else {
        check_raw_email_secret(&s, query, &headers)?;
        let body = axum::body::Bytes::from_request(req, &s).await?;
        (body.to_vec(), false)
    };
    if raw.len() > s.settings.email.max_bytes {
        return Err(AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "email: message is over email.max_bytes ({})",
                s.settings.email.max_bytes
            ),
        ));
    }
    let started = std::time::Instant::now();
    let taken = s.intake.accept_email(raw, s.settings.email.max_bytes).await;
    s.metrics.intake_took(started);
    match taken {
        Ok(o) => {
            let json = match o {
                IntakeOutcome::Duplicate { message_id } => {
                    s.metrics.inbound(super::Inbound::Duplicate);
                    serde_json::json!({"status": "duplicate", "message_id": message_id})
                }
                IntakeOutcome::Stored {
                    message_id,
                    case_id,
                    new_case,
                    ..
                } => {
                    s.metrics.inbound(super::Inbound::Stored);
                    serde_json::json!({
                        "status": "stored",
                        "message_id": message_id,
                        "case": case_id.map(|c| c.number()),
                        "new_case": new_case,
                    })
                }
                // Email has no SMS parts.
                IntakeOutcome::Part { part_id, .. } => {
                    serde_json::json!({"status": "part_stored", "part_id": part_id})
                }
            };
            Ok((StatusCode::OK, axum::Json(json)).into_response())
        }
        Err(EmailRefused::Bad(b)) => {
            s.metrics.inbound(super::Inbound::Rejected);
            let status = if b.reason.contains("cap") {
                StatusCode::PAYLOAD_TOO_LARGE
            } else if mailgun {
                StatusCode::NOT_ACCEPTABLE
            } else {
                StatusCode::BAD_REQUEST
            };
            Err(AppError::new(status, "bad_request", b.to_string()))
        }
        Err(EmailRefused::Store(e)) => {
            s.metrics.inbound(super::Inbound::Unavailable);
            Err(e.into())
        }
    }
}
