//! Admin API under `/api/v1` (JSON, `Authorization: Bearer <token>`, roles agent < marketing <
//! ops < admin). Tokens are created with `switchboard token create` and stored as SHA-256.

use super::error::{AppJson, AppPath};
use super::{AppError, AppState};
use crate::classify::live::RulesChangeError;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use serde::Deserialize;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Agent,
    Marketing,
    Ops,
    Admin,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "agent" => Ok(Role::Agent),
            "marketing" => Ok(Role::Marketing),
            "ops" => Ok(Role::Ops),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role {other:?} (agent, marketing, ops, admin)"
            )),
        }
    }
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The authenticated caller of an admin route.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

impl Caller {
    pub(super) fn require(&self, allowed: &[Role]) -> Result<(), AppError> {
        if allowed.contains(&self.role) {
            Ok(())
        } else {
            Err(AppError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this route needs another role",
            ))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                AppError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "missing Authorization: Bearer token",
                )
            })?;
        let found = state
            .intake
            .store
            .api_token(&hash_token(token.trim()))
            .await?;
        let (name, role) = found.ok_or_else(|| {
            AppError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "unknown or revoked token",
            )
        })?;
        let role = role
            .parse()
            .map_err(|e: String| AppError::new(StatusCode::UNAUTHORIZED, "unauthorized", e))?;
        Ok(Caller { name, role })
    }
}

impl From<RulesChangeError> for AppError {
    fn from(e: RulesChangeError) -> Self {
        match e {
            RulesChangeError::Store(s) => s.into(),
            RulesChangeError::NotFound(_) => {
                AppError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            other => AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "rules_refused",
                other.to_string(),
            ),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifyRequest {
    text: String,
}

/// Explains a classification with the live rules.
pub async fn classify(
    State(s): State<AppState>,
    _caller: Caller,
    body: AppJson<ClassifyRequest>,
) -> Result<impl IntoResponse, AppError> {
    Ok(axum::Json(s.intake.classifier().classify(&body.0.text)))
}

pub async fn list_rules(
    State(s): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, AppError> {
    caller.require(&[Role::Ops, Role::Admin])?;
    let versions = s.intake.store.rule_versions().await?;
    Ok(axum::Json(
        serde_json::json!({ "live": s.intake.classifier().version(), "versions": versions }),
    ))
}

pub async fn get_rules(
    State(s): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<i64>,
) -> Result<impl IntoResponse, AppError> {
    caller.require(&[Role::Ops, Role::Admin])?;
    let v = s.intake.store.rule_version(id).await?.ok_or_else(|| {
        AppError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no rule version {id}"),
        )
    })?;
    Ok(axum::Json(v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProposeRules {
    /// The rules file (TOML).
    source: String,
    note: Option<String>,
    /// Make it live at once (default true).
    activate: Option<bool>,
}

pub async fn propose_rules(
    State(s): State<AppState>,
    caller: Caller,
    body: AppJson<ProposeRules>,
) -> Result<impl IntoResponse, AppError> {
    caller.require(&[Role::Ops, Role::Admin])?;
    let p = body.0;
    let a = s
        .rules
        .propose(
            &p.source,
            &caller.name,
            p.note.as_deref(),
            p.activate.unwrap_or(true),
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(a)))
}

pub async fn activate_rules(
    State(s): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<i64>,
) -> Result<impl IntoResponse, AppError> {
    caller.require(&[Role::Ops, Role::Admin])?;
    Ok(axum::Json(s.rules.activate(id, &caller.name).await?))
}

impl From<crate::intake::ReplyError> for AppError {
    fn from(e: crate::intake::ReplyError) -> Self {
        use crate::intake::ReplyError;
        match e {
            ReplyError::Store(s) => s.into(),
            ReplyError::NoCase(id) => no_case(id),
            ReplyError::Invalid(m) => {
                AppError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_reply", m)
            }
            ReplyError::Disabled(m) => AppError::new(StatusCode::CONFLICT, "channel_disabled", m),
        }
    }
}

fn no_case(id: crate::domain::CaseId) -> AppError {
    AppError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("case {} does not exist", id.get()),
    )
}

/// A case with its messages, oldest first.
pub async fn get_case(
    State(s): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<crate::domain::CaseId>,
) -> Result<impl IntoResponse, AppError> {
    caller.require(&[Role::Agent, Role::Ops, Role::Admin])?;
    let case = s.intake.store.case(id).await?.ok_or_else(|| no_case(id))?;
    let mut messages = s.intake.store.case_messages(id).await?;
    let acks = s.intake.acks();
    messages.iter_mut().for_each(|m| acks.show(m));
    let events = s.intake.store.case_events(id).await?;
    // Every deadline of the case's policy, and whether its step was taken.
    let clock = s.intake.store.case_clock(id).await?;
    let fired = clock.as_ref().map(|c| c.2).unwrap_or(0);
    let category = case.category;
    let deadlines: Vec<serde_json::Value> = crate::sla::plan(
        s.sla.sla.policy(category, &case.customer),
        case.clock_base(),
    )
    .into_iter()
    .map(|(step, due)| {
        serde_json::json!({
            "step": step.as_str(),
            "due_at": due,
            "taken": fired & step.bit() != 0,
        })
    })
    .collect();
    Ok(axum::Json(serde_json::json!({
        "case": case,
        "case_no": id.number(),
        "messages": messages,
        "events": events,
        "deadlines": deadlines,
        "segment": s.sla.sla.segment_of(&case.customer).map(|g| g.name.clone()),
        "next_step": clock.as_ref().map(|c| serde_json::json!({"step": c.0, "due_at": c.1})),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyRequest {
    text: String,
}

/// An agent answers a case: queued on the case's channel (SMS or threaded email), 201 with
/// the outbound message id once stored. A reply to a closed case opens a new case linked to
/// it (`case_id` the new one, `linked_from` the old).
pub async fn reply(
    State(s): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<crate::domain::CaseId>,
    body: AppJson<ReplyRequest>,
) -> Result<impl IntoResponse, AppError> {
    caller.require(&[Role::Agent, Role::Ops, Role::Admin])?;
    let (message_id, case_id) = s.intake.reply_on(id, &body.0.text, &caller.name).await?;
    let out = s.intake.store.message(message_id).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({
            "message_id": message_id,
            "case_id": case_id,
            "linked_from": (case_id != id).then_some(id),
            "channel": out.as_ref().map(|m| m.channel),
            "to": out.as_ref().map(|m| m.to_addr.clone()),
            "status": out.as_ref().map(|m| m.status.clone()),
        })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasesQuery {
    /// Comma-separated: open, acknowledged, in_progress, resolved, closed (default: the first
    /// three).
    status: Option<String>,
    /// 1..=500, default 50.
    limit: Option<i64>,
    category: Option<String>,
    tier: Option<i64>,
    /// Resolve deadline before this (RFC 3339, a date, or a span back like `2h`).
    due_before: Option<String>,
    breached: Option<bool>,
    /// Customer number or address, or subject, contains this.
    q: Option<String>,
    /// The `next` of the previous page.
    after: Option<String>,
    assignee: Option<String>,
    /// The case's city (`sla.city_prefixes`).
    city: Option<String>,
}

/// The work queue: cases by status, the earliest resolve deadline first.
pub async fn list_cases(
    State(s): State<AppState>,
    caller: Caller,
    query: Result<axum::extract::Query<CasesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, AppError> {
    caller.require(&[Role::Agent, Role::Ops, Role::Admin])?;
    let axum::extract::Query(q) =
        query.map_err(|e| AppError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))?;
    let mut statuses = Vec::new();
    for p in q
        .status
        .as_deref()
        .unwrap_or("open,acknowledged,in_progress")
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let Some(st) = crate::cases::CaseStatus::parse(p) else {
            return Err(AppError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!(
                    "status {p:?}: expected open, acknowledged, in_progress, resolved or closed"
                ),
            ));
        };
        statuses.push(st);
    }
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(AppError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("limit {limit}: expected 1 to 500"),
        ));
    }
    let bad = |m: String| AppError::new(StatusCode::BAD_REQUEST, "bad_request", m);
    if let Some(c) = &q.category
        && c.parse::<crate::domain::Category>().is_err()
    {
        return Err(bad(format!(
            "category {c:?}: expected complaint, fault or inquiry"
        )));
    }
    if let Some(t) = q.tier
        && crate::domain::Tier::new(t).is_none()
    {
        return Err(bad(format!("tier {t}: expected 1 to 4")));
    }
    let now = s.intake.clock.now_ms();
    let due_before = match &q.due_before {
        None => None,
        Some(v) => Some(
            crate::sla::report::parse_instant(v, s.settings.time.zone, now)
                .map_err(|e| bad(format!("due_before: {e}")))?,
        ),
    };
    if q.q.as_ref().is_some_and(|t| t.chars().count() > 200) {
        return Err(bad("q: at most 200 characters".into()));
    }
    let after = match &q.after {
        None => None,
        Some(c) => Some(
            c.split_once(':')
                .and_then(|(a, b)| Some((a.parse::<i64>().ok()?, b.parse::<i64>().ok()?)))
                .ok_or_else(|| bad(format!("after {c:?}: pass the `next` of the previous page")))?,
        ),
    };
    let filter = crate::store::CaseFilter {
        assignee: q.assignee.clone().filter(|a| !a.trim().is_empty()),
        city: q.city.clone().filter(|c| !c.trim().is_empty()),
        statuses,
        category: q.category.clone(),
        tier: q.tier.and_then(crate::domain::Tier::new),
        due_before,
        breached: q.breached,
        text: q.q.clone().filter(|t| !t.trim().is_empty()),
        after,
    };
    let cases = s.intake.store.find_cases(&filter, limit).await?;
    let next = (cases.len() as i64 == limit)
        .then(|| {
            cases
                .last()
                .map(|c| format!("{}:{}", c.resolve_due_at, c.id.get()))
        })
        .flatten();
    Ok(axum::Json(
        serde_json::json!({ "cases": cases, "next": next }),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    /// One of `cases.resolution_codes`.
    code: Option<String>,
    note: Option<String>,
}

/// `POST /api/v1/cases/{id}/resolve` `{code, note?}`: an agent marks an active case resolved
/// with a resolution code; its clock stops and its return visit is scheduled. Resolving a
/// resolved case again changes nothing (200); a closed case answers 409.
pub async fn resolve_case(
    State(s): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<crate::domain::CaseId>,
    body: AppJson<ResolveRequest>,
) -> Result<impl IntoResponse, AppError> {
    caller.require(&[Role::Agent, Role::Ops, Role::Admin])?;
    let note = optional_note(body.0.note.as_deref(), "note")?;
    let note = Some(note.as_str()).filter(|n| !n.is_empty());
    let store = &s.intake.store;
    let case = store.case(id).await?.ok_or_else(|| no_case(id))?;
    if case.status == "resolved" {
        return Ok(axum::Json(serde_json::json!({ "case": case })));
    }
    if crate::cases::target(case.status, crate::cases::Action::Resolve, false).is_none() {
        return Err(not_allowed(&case, crate::cases::Action::Resolve));
    }
    let codes = &s.settings.cases.resolution_codes;
    let code = body.0.code.as_deref().map(str::trim).unwrap_or_default();
    if !codes.iter().any(|c| c == code) {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_code",
            format!(
                "code {code:?}: a resolution code is one of {}",
                codes.join(", ")
            ),
        ));
    }
    let now = s.intake.clock.now_ms();
    let category = case.category;
    let visit_due = s
        .settings
        .cases
        .visit_due(category, s.settings.time.zone, now);
    let r = crate::store::Resolve {
        code: Some(code),
        detail: crate::cases::resolve_detail(&caller.name, Some(code), note),
        visit_due,
        now_ms: now,
    };
    let case = store
        .resolve_case(id, &r)
        .await?
        .ok_or_else(|| no_case(id))?;
    if case.status != "resolved" {
        return Err(changed_meanwhile(id));
    }
    if visit_due.is_some() {
        s.sla.wake.notify_one();
    }
    Ok(axum::Json(serde_json::json!({ "case": case })))
}

/// `POST /api/v1/cases/{id}/start`: an agent starts working on the case (`in_progress`).
pub async fn start_case(
    State(s): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<crate::domain::CaseId>,
) -> Result<impl IntoResponse, AppError> {
    caller.require(&[Role::Agent, Role::Ops, Role::Admin])?;
    let detail = format!("by {}", caller.name);
    let keep = |_: &crate::store::CaseRecord, _| crate::store::ClockChange::Keep;
    let case = lifecycle(
        &s,
        id,
        crate::cases::Action::Start,
        crate::domain::CaseEventKind::Started,
        detail,
        None,
        keep,
    )
    .await?;
    Ok(axum::Json(serde_json::json!({ "case": case })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    from: Option<String>,
    to: Option<String>,
}

/// `GET /api/v1/reports/sla?from=..&to=..`: the SLA report of the cases opened in the window
/// (default: the last 30 days), JSON, or CSV with `Accept: text/csv`.
pub async fn sla_report(
    State(s): State<AppState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    query: Result<axum::extract::Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::response::Response, AppError> {
    caller.require(&[Role::Agent, Role::Ops, Role::Admin])?;
    let axum::extract::Query(q) =
        query.map_err(|e| AppError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))?;
    let now = s.intake.clock.now_ms();
    let zone = s.settings.time.zone;
    let bound = |v: &Option<String>, name: &str, default: i64| match v {
        None => Ok(default),
        Some(v) => crate::sla::report::parse_instant(v, zone, now).map_err(|e| {
            AppError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("{name}: {e}"),
            )
        }),
    };
    let from = bound(&q.from, "from", now - 30 * 86_400_000)?;
    let to = bound(&q.to, "to", now + 1)?;
    if from >= to {
        return Err(AppError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "from must be before to",
        ));
    }
    let rows = s.intake.store.sla_rows(from, to).await?;
    let lines = crate::sla::report::summarize(&rows, now);
    let wants_csv = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/csv"));
    if wants_csv {
        let body = crate::sla::report::csv(&lines).map_err(|e| {
            AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        })?;
        return Ok((
            [(axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            body,
        )
            .into_response());
    }
    Ok(axum::Json(serde_json::json!({
        "from": from,
        "to": to,
        "lines": lines,
    }))
    .into_response())
}

/// Ways an agent reaches a customer outside switchboard.
const CONTACT_CHANNELS: &[&str] = &["phone", "visit", "sms", "email", "wechat", "other"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactRequest {
    channel: String,
    note: Option<String>,
}

/// A case that cannot take an action in its state: 409 naming the state and what is allowed.
fn not_in_state(case: &crate::store::CaseRecord, action: &str) -> AppError {
    AppError::new(
        StatusCode::CONFLICT,
        "conflict",
        format!(
            "case {} is {}: {action} needs an open or acknowledged case (allowed now: view{})",
            case.id.number(),
            case.status,
            if case.status == "resolved" {
                ", a new message from the customer opens a new case"
            } else {
                ""
            }
        ),
    )
}

/// A text field that must say something: trimmed, 1 to 2000 characters; else 422 with `code`
/// and `why`.
fn required_text(
    value: &str,
    name: &str,
    code: &'static str,
    why: &str,
) -> Result<String, AppError> {
    let text = optional_note(Some(value), name)?;
    if text.is_empty() {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
            format!("{name}: {why}"),
        ));
    }
    Ok(text)
}

fn optional_note(note: Option<&str>, name: &str) -> Result<String, AppError> {
    let note = note.map(str::trim).unwrap_or_default();
    if note.chars().count() > 2000 {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_note",
            format!("{name} is at most 2000 characters"),
        ));
    }
    Ok(note.to_string())
}

/// `POST /api/v1/cases/{id}/contacts`: the agent reached the customer another way (phoned,
/// visited…); this counts as the case's answer (the SLA answer steps then pass silently).
pub async fn log_contact(
    State(s): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<crate::domain::CaseId>,
    body: AppJson<ContactRequest>,
) -> Result<impl IntoResponse, AppError> {
    caller.require(&[Role::Agent, Role::Ops, Role::Admin])?;
    let channel = body.0.channel.trim().to_lowercase();
    if !CONTACT_CHANNELS.contains(&channel.as_str()) {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_channel",
            format!(
                "channel {:?}: expected one of {}",
                body.0.channel,
                CONTACT_CHANNELS.join(", ")
            ),
        ));
    }
    let note = optional_note(body.0.note.as_deref(), "note")?;
    let store = &s.intake.store;
    let case = store.case(id).await?.ok_or_else(|| no_case(id))?;
    if !case.status.is_active() {
        return Err(not_in_state(&case, "logging a contact"));
    }
    let case = store
        .log_contact(id, &channel, &note, &caller.name, s.intake.clock.now_ms())
        .await?
        .ok_or_else(|| not_in_state(&case, "logging a contact"))?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({ "case": case })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalateRequest {
    reason: String,
}

/// `POST /api/v1/cases/{id}/escalate`: one tier up by hand, with a reason; the new tier's
/// contacts are told like an SLA escalation. 409 at tier 4, on a case that is not open, or
/// when another agent changed the tier meanwhile.
pub async fn escalate(
    State(s): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<crate::domain::CaseId>,
    body: AppJson<EscalateRequest>,
) -> Result<impl IntoResponse, AppError> {
    caller.require(&[Role::Agent, Role::Ops, Role::Admin])?;
    let reason = required_text(
        &body.0.reason,
        "reason",
        "invalid_reason",
        "say why the case goes up a tier",
    )?;
    let store = &s.intake.store;
    let case = store.case(id).await?.ok_or_else(|| no_case(id))?;
    if !case.status.is_active() {
        return Err(not_in_state(&case, "escalating"));
    }
    if case.tier == crate::domain::Tier::NATIONAL {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "case {} is at tier 4, the national centre, already",
                id.number()
            ),
        ));
    }
    let to = case.tier.up();
    let category: crate::domain::Category = case.category;
    let notices = s.sla.notices.render(
        &s.sla.sla,
        &crate::store::DueClock::of_case(&case),
        category,
        None,
        to,
        s.intake.clock.now_ms(),
    );
    let detail = format!(
        "by hand: tier {} -> {to} by {}: {reason}",
        case.tier, caller.name
    );
    let updated = store
        .escalate_case(&crate::store::Escalation {
            case_id: id,
            tier_before: case.tier,
            tier_after: to,
            detail,
            notices: &notices,
            now_ms: s.intake.clock.now_ms(),
        })
        .await?
        .ok_or_else(|| {
            AppError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!(
                    "case {} changed meanwhile (another agent, or the SLA clock); look again",
                    id.number()
                ),
            )
        })?;
    if !notices.is_empty() {
        s.sla.sms_notify.notify_one();
        s.sla.email_notify.notify_one();
    }
    Ok(axum::Json(
        serde_json::json!({ "case": updated, "notices": notices.len() }),
    ))
}

/// A case's clock going on from its policy with `fired` steps taken: the next step, or none.
fn clock_from(
    policy: &crate::sla::Policy,
    case: &crate::store::CaseRecord,
    fired: i64,
) -> crate::store::ClockChange {
    match crate::sla::next_step(policy, case.clock_base(), fired, case.answered_in_round()) {
        Some((step, due)) => crate::store::ClockChange::Set {
            step: step.as_str().to_string(),
            due: Some(due),
            fired,
            round: None,
        },
        None => crate::store::ClockChange::Remove,
    }
}

/// 409 for an action the case's status does not allow, naming the ones it does.
fn not_allowed(case: &crate::store::CaseRecord, action: crate::cases::Action) -> AppError {
    AppError::new(
        StatusCode::CONFLICT,
        "conflict",
        format!(
            "case {} is {}: {} is not allowed; allowed: {}",
            case.id.number(),
            case.status,
            action.as_str(),
            crate::cases::allowed_list(case.status)
        ),
    )
}

fn changed_meanwhile(id: crate::domain::CaseId) -> AppError {
    AppError::new(
        StatusCode::CONFLICT,
        "conflict",
        format!(
            "case {} changed meanwhile (another agent); look again",
            id.number()
        ),
    )
}

/// Runs one lifecycle action: checks it against the case's status, then has the store apply
/// it only if the status is still the one seen.
async fn lifecycle(
    s: &AppState,
    id: crate::domain::CaseId,
    action: crate::cases::Action,
    event: crate::domain::CaseEventKind,
    detail: String,
    assignee: Option<String>,
    clock: impl FnOnce(&crate::store::CaseRecord, i64) -> crate::store::ClockChange,
) -> Result<crate::store::CaseRecord, AppError> {
    let store = &s.intake.store;
    let case = store.case(id).await?.ok_or_else(|| no_case(id))?;
    let now = s.intake.clock.now_ms();
    let clock = clock(&case, now);
    // A new round of the clock is a new promise: the case is open until a person answers.
    let new_round = matches!(clock, crate::store::ClockChange::Set { round: Some(_), .. });
    let to = crate::cases::target(case.status, action, case.acked_at.is_some() && !new_round)
        .ok_or_else(|| not_allowed(&case, action))?;
    let t = crate::store::Transition {
        case_id: id,
        from: case.status,
        to,
        resolved_at: crate::cases::resolved_at(case.status, to, now),
        assignee,
        event,
        detail: format!("{} -> {to} {detail}", case.status),
        clock,
        now_ms: now,
    };
    store
        .transition(&t)
        .await?
        .ok_or_else(|| changed_meanwhile(id))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoryRequest {
    category: String,
    reason: String,
}

/// `POST /api/v1/cases/{id}/category` `{category, reason}` (agent/ops/admin): corrects what the
/// classifier said. The case takes the new category's deadlines (counted from when it opened;
/// a step already past due fires at once, steps taken stay taken), the change is a
/// `recategorized` event, and the correction is kept as a labeled row
/// (`GET /api/v1/corrections`, `switchboard rules suggest --corrections`).
pub async fn recategorize(
    State(s): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<crate::domain::CaseId>,
    body: AppJson<CategoryRequest>,
) -> Result<impl IntoResponse, AppError> {
    caller.require(&[Role::Agent, Role::Ops, Role::Admin])?;
    let to: crate::domain::Category = body.0.category.trim().parse().map_err(|_| {
        AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_category",
            format!(
                "category {:?}: complaint, fault or inquiry",
                body.0.category
            ),
        )
    })?;
    let reason = required_text(
        &body.0.reason,
        "reason",
        "invalid_reason",
        "say why the category is wrong",
    )?;
    let store = &s.intake.store;
    let case = store.case(id).await?.ok_or_else(|| no_case(id))?;
    if case.status == "closed" {
        return Err(not_in_state(&case, "correcting the category"));
    }
    if case.category == to {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("case {} is a {} already", id.number(), to.as_str()),
        ));
    }
    let now = s.intake.clock.now_ms();
    let policy = s.sla.sla.policy(to, &case.customer);
    let clock = if case.status.is_active() {
        let fired = store
            .case_clock(id)
            .await?
            .map(|c| c.2)
            .unwrap_or_else(|| crate::sla::past_steps(policy, case.clock_base(), now));
        clock_from(policy, &case, fired)
    } else {
        crate::store::ClockChange::Keep
    };
    let c = crate::store::Recategorize {
        case_id: id,
        from: case.category,
        to,
        answer_due: case.clock_base() + policy.answer_within.ms(),
        resolve_due: case.clock_base() + policy.resolve_within.ms(),
        clock,
        by: caller.name.clone(),
        reason,
        now_ms: now,
    };
    let case = store
        .recategorize(&c)
        .await?
        .ok_or_else(|| changed_meanwhile(id))?;
    s.sla.wake.notify_one();
    Ok(axum::Json(serde_json::json!({ "case": case })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorrectionsQuery {
    since: Option<String>,
}

/// `GET /api/v1/corrections?since=30d` (ops/admin): agents' corrections as a labeled CSV
/// (`label,text`), the input of `rules eval` and `rules suggest --corrections`.
pub async fn corrections(
    State(s): State<AppState>,
    caller: Caller,
    query: Result<axum::extract::Query<CorrectionsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::response::Response, AppError> {
    caller.require(&[Role::Ops, Role::Admin])?;
    let axum::extract::Query(q) =
        query.map_err(|e| AppError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))?;
    let now = s.intake.clock.now_ms();
    let since = match &q.since {
        Some(v) => {
            crate::sla::report::parse_instant(v, s.settings.time.zone, now).map_err(|e| {
                AppError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    format!("since: {e}"),
                )
            })?
        }
        None => 0,
    };
    let rows = s.intake.store.corrections(since).await?;
    let mut w = csv::Writer::from_writer(Vec::new());
    let internal =
        |e: csv::Error| AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string());
    w.write_record(["label", "text"]).map_err(internal)?;
    for (label, text) in rows {
        w.write_record([label, text]).map_err(internal)?;
    }
    let body = w
        .into_inner()
        .map_err(|e| AppError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8")],
        body,
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteRequest {
    text: String,
}

/// `POST /api/v1/cases/{id}/notes`: an internal note (never sent to the customer).
pub async fn add_note(
    State(s): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<crate::domain::CaseId>,
    body: AppJson<NoteRequest>,
) -> Result<impl IntoResponse, AppError> {
    caller.require(&[Role::Agent, Role::Ops, Role::Admin])?;
    let text = required_text(&body.0.text, "text", "invalid_note", "a note needs text")?;
    let detail = format!("by {}: {text}", caller.name);
    let keep = |_: &crate::store::CaseRecord, _| crate::store::ClockChange::Keep;
    let case = lifecycle(
        &s,
        id,
        crate::cases::Action::Note,
        crate::domain::CaseEventKind::Note,
        detail,
        None,
        keep,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({ "case": case })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignRequest {
    /// An agent's name (as on their API token).
    to: String,
}

/// `POST /api/v1/cases/{id}/assign`: who works on the case.
pub async fn assign(
    State(s): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<crate::domain::CaseId>,
    body: AppJson<AssignRequest>,
) -> Result<impl IntoResponse, AppError> {
    caller.require(&[Role::Agent, Role::Ops, Role::Admin])?;
    let to = body.0.to.trim().to_string();
    if to.is_empty() || to.chars().count() > 100 || to.chars().any(char::is_control) {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_assignee",
            "to: an agent's name, 1 to 100 characters",
        ));
    }
    let detail = format!("to {to} by {}", caller.name);
    let keep = |_: &crate::store::CaseRecord, _| crate::store::ClockChange::Keep;
    let case = lifecycle(
        &s,
        id,
        crate::cases::Action::Assign,
        crate::domain::CaseEventKind::Assigned,
        detail,
        Some(to),
        keep,
    )
    .await?;
    Ok(axum::Json(serde_json::json!({ "case": case })))
}

/// `POST /api/v1/cases/{id}/close`: a resolved case is closed for good (a new message from the
/// customer opens a new case).
pub async fn close_case(
    State(s): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<crate::domain::CaseId>,
) -> Result<impl IntoResponse, AppError> {
    caller.require(&[Role::Agent, Role::Ops, Role::Admin])?;
    let detail = format!("by {}", caller.name);
    let remove = |_: &crate::store::CaseRecord, _| crate::store::ClockChange::Remove;
    let case = lifecycle(
        &s,
        id,
        crate::cases::Action::Close,
        crate::domain::CaseEventKind::Closed,
        detail,
        None,
        remove,
    )
    .await?;
    Ok(axum::Json(serde_json::json!({ "case": case })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReopenRequest {
    reason: String,
}

/// `POST /api/v1/cases/{id}/reopen`: a resolved or closed case back to work. Its clock goes on
/// from the policy of its category: steps already past are taken as done, the rest fire.
pub async fn reopen(
    State(s): State<AppState>,
    caller: Caller,
    AppPath(id): AppPath<crate::domain::CaseId>,
    body: AppJson<ReopenRequest>,
) -> Result<impl IntoResponse, AppError> {
    caller.require(&[Role::Agent, Role::Ops, Role::Admin])?;
    let reason = required_text(
        &body.0.reason,
        "reason",
        "invalid_reason",
        "say why the case is reopened",
    )?;
    let sla = s.sla.sla.clone();
    let clock = move |case: &crate::store::CaseRecord, now: i64| {
        let category = case.category;
        let policy = sla.policy(category, &case.customer);
        match crate::sla::new_round(policy, case.clock_base(), now) {
            // Past its resolution deadline: a new round from now.
            Some(round) => match crate::sla::next_step(policy, round.base, 0, false) {
                Some((step, due)) => crate::store::ClockChange::Set {
                    step: step.as_str().to_string(),
                    due: Some(due),
                    fired: 0,
                    round: Some(round),
                },
                None => crate::store::ClockChange::Remove,
            },
            None => {
                let fired = crate::sla::past_steps(policy, case.clock_base(), now);
                clock_from(policy, case, fired)
            }
        }
    };
    let detail = format!("by {}: {reason}", caller.name);
    let case = lifecycle(
        &s,
        id,
        crate::cases::Action::Reopen,
        crate::domain::CaseEventKind::Reopened,
        detail,
        None,
        clock,
    )
    .await?;
    s.sla.wake.notify_one();
    Ok(axum::Json(serde_json::json!({ "case": case })))
}
