//! `/api/v1/campaigns`: outbound batches (role marketing or admin). The work is in
//! `crate::campaigns::manage`, shared with the CLI.

use super::api::{Caller, Role};
use super::error::{AppJson, AppPath};
use super::{AppError, AppState};
use crate::campaigns::manage::{self, CampaignError, CreateRequest};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;

impl From<CampaignError> for AppError {
    fn from(e: CampaignError) -> AppError {
        match e {
            CampaignError::Invalid(m) => {
                AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_campaign", m)
            }
            CampaignError::NotFound(id) => AppError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("campaign {id} not found"),
            ),
            CampaignError::Conflict(m) => AppError::new(StatusCode::CONFLICT, "conflict", m),
            CampaignError::Store(e) => e.into(),
        }
    }
}

const ROLES: &[Role] = &[Role::Marketing, Role::Admin];

/// `POST /api/v1/campaigns`: a draft, checked in full (kind, channel, pace, template,
/// signature and footer for commercial kinds, schedule); 422 naming what is wrong.
pub async fn create(
    State(s): State<AppState>,
    caller: Caller,
    body: AppJson<CreateRequest>,
) -> Result<impl IntoResponse, AppError> {
    caller.require(ROLES)?;
    let templates = crate::templates::Templates::load(s.settings.templates.dir.as_deref())
        .map_err(|e| AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let c = manage::create(
        s.intake.store.as_ref(),
        &templates,
        &s.settings.campaigns,
        s.settings.time.zone,
        &body.0,
        &caller.name,
        s.intake.clock.now_ms(),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({ "campaign": c })),
    ))
}

pub async fn list(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, AppError> {
    caller.require(ROLES)?;
    let v = s.intake.store.campaigns(200).await?;
    Ok(axum::Json(serde_json::json!({ "campaigns": v })))
}

/// `GET /api/v1/campaigns/{id}`: the campaign and its progress (pending, queued, sent,
/// delivered, failed, suppressed by reason).
pub async fn get(
    State(s): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<i64>,
) -> Result<impl IntoResponse, AppError> {
    let id = crate::domain::CampaignId(id);
    caller.require(ROLES)?;
    let store = s.intake.store.as_ref();
    let c = store
        .campaign(id)
        .await?
        .ok_or(CampaignError::NotFound(id))?;
    let p = manage::progress(store, id).await?;
    Ok(axum::Json(
        serde_json::json!({ "campaign": c, "progress": p }),
    ))
}

/// `POST /api/v1/campaigns/{id}/recipients`: a CSV body (UTF-8 or GBK); the import report
/// (rows, accepted, duplicates, invalid with line numbers, encoding).
pub async fn recipients(
    State(s): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<i64>,
    body: Bytes,
) -> Result<impl IntoResponse, AppError> {
    let id = crate::domain::CampaignId(id);
    caller.require(ROLES)?;
    // The import runs on its own task: a request past its deadline (503) does not cut it
    // half-way; it finishes, and the client's retry finds every row a duplicate.
    let store = s.intake.store.clone();
    let country = s.settings.phone.default_country.clone();
    let r = tokio::spawn(async move {
        manage::import(store.as_ref(), id, &body[..], &country, |_| {}).await
    })
    .await
    .map_err(|e| {
        AppError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the import failed: {e}"),
        )
    })??;
    Ok(axum::Json(serde_json::json!({ "import": r })))
}

/// `GET /api/v1/campaigns/{id}/answers`: a survey campaign's answers, per recipient and
/// counted (the parser the return visits share).
pub async fn answers(
    State(s): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<i64>,
) -> Result<impl IntoResponse, AppError> {
    let id = crate::domain::CampaignId(id);
    caller.require(ROLES)?;
    let store = s.intake.store.as_ref();
    store
        .campaign(id)
        .await?
        .ok_or(CampaignError::NotFound(id))?;
    let rows = store
        .survey_answers(&crate::campaigns::dispatch::survey_name(id.get()))
        .await?;
    let mut counts = std::collections::BTreeMap::<String, i64>::new();
    for (_, a) in &rows {
        *counts.entry(a.clone()).or_default() += 1;
    }
    let per: Vec<serde_json::Value> = rows
        .iter()
        .map(|(addr, a)| serde_json::json!({ "to": crate::domain::mask(addr), "answer": a }))
        .collect();
    Ok(axum::Json(serde_json::json!({
        "answered": rows.len(),
        "counts": counts,
        "answers": per,
    })))
}

fn unsubscribe_target(token: &str, key: &[u8]) -> Result<(i64, String), AppError> {
    crate::campaigns::unsubscribe::verify(key, token).ok_or_else(|| {
        AppError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "this unsubscribe link is not valid",
        )
    })
}

/// `POST /unsubscribe/{token}`: RFC 8058 one-click (the mail client posts
/// `List-Unsubscribe=One-Click`); the address is opted out at once, queued commercial mail to
/// it withdrawn, the campaign's message kept as evidence. Idempotent.
pub async fn unsubscribe(
    State(s): State<AppState>,
    AppPath(token): AppPath<String>,
) -> Result<impl IntoResponse, AppError> {
    let key = s.campaigns.unsubscribe_key().await?.to_vec();
    let (campaign, address) = unsubscribe_target(&token, &key)?;
    let store = s.intake.store.as_ref();
    let message = store
        .campaign_message(crate::domain::CampaignId(campaign), &address)
        .await?;
    store
        .opt_out(
            crate::domain::Channel::Email,
            &address,
            message,
            s.intake.clock.now_ms(),
        )
        .await?;
    tracing::info!(campaign, to = %crate::domain::mask(&address), "unsubscribed by one-click");
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        "您已退订，不会再收到营销邮件。 You are unsubscribed.\n",
    ))
}

/// `GET /unsubscribe/{token}`: the same link opened in a browser shows one button that posts
/// it (a GET never unsubscribes: link scanners follow links).
pub async fn unsubscribe_page(
    State(s): State<AppState>,
    AppPath(token): AppPath<String>,
) -> Result<impl IntoResponse, AppError> {
    let key = s.campaigns.unsubscribe_key().await?.to_vec();
    unsubscribe_target(&token, &key)?;
    let html = format!(
        "<!doctype html><meta charset=utf-8><title>退订 Unsubscribe</title>\
         <form method=post action=\"/unsubscribe/{token}\">\
         <input type=hidden name=List-Unsubscribe value=One-Click>\
         <button>退订 / Unsubscribe</button></form>"
    );
    Ok(axum::response::Html(html))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewQuery {
    n: Option<usize>,
}

/// `POST /api/v1/campaigns/{id}/preview?n=5`.
pub async fn preview(
    State(s): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<i64>,
    q: axum::extract::Query<PreviewQuery>,
) -> Result<impl IntoResponse, AppError> {
    let id = crate::domain::CampaignId(id);
    caller.require(ROLES)?;
    let p = manage::preview(
        s.intake.store.as_ref(),
        &s.campaigns,
        s.settings.time.zone,
        id,
        q.n.unwrap_or(5).min(100),
        s.intake.clock.now_ms(),
    )
    .await?;
    Ok(axum::Json(serde_json::json!({ "preview": p })))
}

/// `POST /api/v1/campaigns/{id}/{start|pause|resume|cancel}`: takes effect within the
/// dispatcher's tick (100 ms); cancel also withdraws what is queued and not yet being sent.
pub async fn action(
    State(s): State<AppState>,
    caller: Caller,
    AppPath((id, action)): AppPath<(i64, String)>,
) -> Result<impl IntoResponse, AppError> {
    let id = crate::domain::CampaignId(id);
    caller.require(ROLES)?;
    if !matches!(action.as_str(), "start" | "pause" | "resume" | "cancel") {
        return Err(AppError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no campaign action {action:?}: start, pause, resume or cancel"),
        ));
    }
    let c = manage::transition(
        s.intake.store.as_ref(),
        s.settings.time.zone,
        id,
        &action,
        s.intake.clock.now_ms(),
    )
    .await?;
    Ok(axum::Json(serde_json::json!({ "campaign": c })))
}
