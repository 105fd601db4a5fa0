//! What the API and the CLI do with campaigns, written once: create (checked in full before
//! anything is stored), import recipients, preview, and the status changes (start, pause,
//! resume, cancel).

use super::dispatch::{Compiled, Dispatcher};
use super::import::{Report, Rows, Target};
use super::{CampaignSettings, Kind};
use crate::domain::{CampaignId, Channel};
use crate::store::{CampaignRecord, NewCampaign, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::io::Read;

#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    /// 422: the request cannot be carried out as written.
    #[error("{0}")]
    Invalid(String),
    #[error("campaign {0} not found")]
    NotFound(CampaignId),
    /// 409: not in this status.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `POST /api/v1/campaigns`, `switchboard campaign create`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    pub name: String,
    pub kind: String,
    /// `sms`, `email` or `own` (each recipient's own: phone if any, else email).
    pub channel: String,
    /// minijinja text; CSV columns are its variables (`{{ name }}`, `{{ amount }}`); or
    /// `@name`: the stored template `name` (`templates/<name>.<lang>.txt` or an override in
    /// `templates.dir`) in `lang`.
    pub template: String,
    /// For a stored template: `zh-CN` (default) or `en`.
    #[serde(default)]
    pub lang: Option<String>,
    pub subject: Option<String>,
    /// RFC 3339 or `YYYY-MM-DD HH:MM` in `time.zone`; default now.
    pub start_at: Option<String>,
    /// Never sent after this (same forms).
    pub valid_until: Option<String>,
    pub rate_per_sec: f64,
    /// Service campaigns only: keeps no quiet hours.
    #[serde(default)]
    pub urgent: bool,
    /// Recurring: a cron in `time.zone` (`"0 9 1 * *"`, 09:00 on the 1st of each month); each
    /// occurrence sends to every recipient once, as a run of its own.
    #[serde(default)]
    pub cron: Option<String>,
}

fn instant(v: &str, zone: chrono_tz::Tz, now: i64, key: &str) -> Result<i64, CampaignError> {
    use chrono::TimeZone;
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v.trim()) {
        return Ok(t.timestamp_millis());
    }
    if let Ok(n) = chrono::NaiveDateTime::parse_from_str(v.trim(), "%Y-%m-%d %H:%M")
        && let Some(t) = zone.from_local_datetime(&n).earliest()
    {
        return Ok(t.timestamp_millis());
    }
    crate::sla::report::parse_instant(v, zone, now)
        .map_err(|e| CampaignError::Invalid(format!("{key}: {e}")))
}

/// Checks everything, then stores the campaign as a draft.
///
/// # Errors
/// What is wrong (422), the store.
#[allow(clippy::too_many_arguments)]
pub async fn create(
    store: &dyn Store,
    templates: &crate::templates::Templates,
    s: &CampaignSettings,
    zone: chrono_tz::Tz,
    r: &CreateRequest,
    by: &str,
    now: i64,
) -> Result<CampaignRecord, CampaignError> {
    let bad = |m: String| Err(CampaignError::Invalid(m));
    let name = r.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return bad("name: 1 to 200 characters".into());
    }
    let Some(kind) = Kind::parse(&r.kind) else {
        return bad(format!(
            "kind {:?}: one of payment_reminder, notice, survey, research, marketing",
            r.kind
        ));
    };
    let Some(target) = Target::parse(&r.channel) else {
        return bad(format!("channel {:?}: one of sms, email, own", r.channel));
    };
    if !r.rate_per_sec.is_finite() || r.rate_per_sec <= 0.0 || r.rate_per_sec > s.max_rate_per_sec {
        return bad(format!(
            "rate_per_sec {}: above 0 and at most {} (campaigns.max_rate_per_sec)",
            r.rate_per_sec, s.max_rate_per_sec
        ));
    }
    if r.urgent && kind.is_commercial() {
        return bad("urgent: only service campaigns (reminders, notices, surveys) may be".into());
    }
    let template = match r.template.trim().strip_prefix('@') {
        Some(name) => {
            let lang: crate::domain::Lang = match r.lang.as_deref() {
                None => crate::domain::Lang::ZhCn,
                Some(l) => l
                    .parse()
                    .map_err(|_| CampaignError::Invalid(format!("lang {l:?}: zh-CN or en")))?,
            };
            templates.source(name, lang).ok_or_else(|| {
                CampaignError::Invalid(format!(
                    "template {:?}: no stored template {name}.{}.txt",
                    r.template,
                    lang.as_str()
                ))
            })?
        }
        None => r.template.clone(),
    };
    if template.trim().is_empty() || template.chars().count() > 2_000 {
        return bad("template: 1 to 2000 characters".into());
    }
    let start_at = match &r.start_at {
        Some(v) => instant(v, zone, now, "start_at")?,
        None => now,
    };
    if start_at < now - 60_000 {
        return bad("start_at: in the past".into());
    }
    let valid_until = match &r.valid_until {
        Some(v) => Some(instant(v, zone, now, "valid_until")?),
        None => None,
    };
    if valid_until.is_some_and(|v| v <= start_at) {
        return bad("valid_until: must be after start_at".into());
    }
    let cron = r.cron.as_deref().map(str::trim).filter(|c| !c.is_empty());
    if let Some(c) = cron {
        match super::next_occurrence(c, zone, now) {
            Ok(Some(_)) => {}
            Ok(None) => return bad(format!("cron {c:?}: never occurs")),
            Err(e) => return bad(e),
        }
    }
    let rec = CampaignRecord {
        id: CampaignId(0),
        name: name.to_string(),
        kind,
        channel: target,
        template: template.trim().to_string(),
        subject: r.subject.clone().filter(|s| !s.trim().is_empty()),
        status: crate::domain::CampaignStatus::Draft,
        start_at,
        valid_until,
        rate_per_sec: r.rate_per_sec,
        urgent: i64::from(r.urgent),
        created_by: by.into(),
        created_at: now,
        updated_at: now,
        note: None,
        cron: cron.map(str::to_string),
        parent_id: None,
        next_run_at: None,
    };
    Compiled::new(&rec).map_err(CampaignError::Invalid)?;
    if kind.is_commercial() {
        super::check_commercial(&rec.template, s).map_err(CampaignError::Invalid)?;
    }
    let id = store
        .create_campaign(&NewCampaign {
            name: rec.name,
            kind: rec.kind,
            channel: rec.channel,
            template: rec.template,
            subject: rec.subject,
            start_at,
            valid_until,
            rate_per_sec: r.rate_per_sec,
            urgent: r.urgent,
            created_by: by.into(),
            now_ms: now,
            cron: rec.cron,
        })
        .await?;
    store.campaign(id).await?.ok_or(CampaignError::NotFound(id))
}

async fn get(store: &dyn Store, id: CampaignId) -> Result<CampaignRecord, CampaignError> {
    store.campaign(id).await?.ok_or(CampaignError::NotFound(id))
}

/// Streams a CSV into a draft or paused campaign; `progress(rows so far)` after each batch.
/// The header is checked against the template first: columns it needs and the file lacks are
/// refused by name before any row is stored. All or nothing: a file refused half-way is taken
/// back (its rows removed) before the error is returned.
///
/// # Errors
/// Not found, not importable now (409), a file refused (422), the store.
pub async fn import<R: Read>(
    store: &dyn Store,
    id: CampaignId,
    input: R,
    default_country: &str,
    mut progress: impl FnMut(&Report),
) -> Result<Report, CampaignError> {
    let c = get(store, id).await?;
    if !matches!(c.status.as_str(), "draft" | "paused") {
        return Err(CampaignError::Conflict(format!(
            "campaign {id} is {}: recipients are added to a draft or paused campaign",
            c.status
        )));
    }
    // One import at a time, and no start or resume meanwhile (held for a minute at a time,
    // renewed each batch; a process that died holding it lets go after the minute).
    let now = || crate::clock::Clock::now_ms(&crate::clock::SystemClock);
    if !store
        .hold_import(id, now() + IMPORT_HOLD_MS, now(), false)
        .await?
    {
        return Err(CampaignError::Conflict(format!(
            "an import into campaign {id} is running (or it is no longer a draft or paused); \
             try again when it has finished"
        )));
    }
    let r = import_held(store, id, &c, input, default_country, &mut progress).await;
    if let Err(e) = store.end_import(id).await {
        tracing::warn!(campaign = id.get(), error = %e, "releasing the import hold failed; it lapses by itself");
    }
    r
}

/// How long an import holds its campaign without renewing.
const IMPORT_HOLD_MS: i64 = 60_000;

async fn import_held<R: Read>(
    store: &dyn Store,
    id: CampaignId,
    c: &CampaignRecord,
    input: R,
    default_country: &str,
    progress: &mut impl FnMut(&Report),
) -> Result<Report, CampaignError> {
    let now = || crate::clock::Clock::now_ms(&crate::clock::SystemClock);
    let target = c.channel;
    let mut rows = Rows::new(input, target, default_country)
        .map_err(|e| CampaignError::Invalid(e.to_string()))?;
    let compiled = Compiled::new(c).map_err(CampaignError::Invalid)?;
    let missing = compiled.missing(rows.columns());
    if !missing.is_empty() {
        return Err(CampaignError::Invalid(format!(
            "the template needs columns the file does not have: {}",
            missing.join(", ")
        )));
    }
    let mut stored_dupes = 0;
    // A second file's lines number after the first's (line numbers stay the file's own in
    // the report).
    let offset = store.max_recipient_seq(id).await?;
    let streamed: Result<(), CampaignError> = async {
        while let Some(mut batch) = rows
            .next_batch(5_000)
            .map_err(|e| CampaignError::Invalid(e.to_string()))?
        {
            for r in &mut batch {
                r.line += offset;
            }
            store
                .hold_import(id, now() + IMPORT_HOLD_MS, now(), true)
                .await?;
            let added = store.add_recipients(id, &batch).await?;
            stored_dupes += batch.len() as u64 - added;
            progress(&rows.report);
        }
        Ok(())
    }
    .await;
    if let Err(e) = streamed {
        // All or nothing: a file refused half-way (a line in neither encoding, an outage)
        // leaves the campaign as it was before this import.
        if let Err(undo) = store.remove_recipients_after(id, offset).await {
            tracing::error!(campaign = id.get(), error = %undo, "taking back a failed import failed; its rows stay pending");
        }
        return Err(e);
    }
    let mut report = rows.report;
    // Rows already in the campaign from an earlier import count as duplicates too.
    report.duplicates += stored_dupes;
    report.accepted -= stored_dupes;
    Ok(report)
}

/// Progress of a campaign.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Progress {
    pub recipients: i64,
    pub pending: i64,
    pub queued: i64,
    pub sent: i64,
    pub delivered: i64,
    pub failed: i64,
    pub suppressed: std::collections::BTreeMap<String, i64>,
    /// A survey campaign: recipients who answered (their answers: `GET …/answers`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered: Option<i64>,
}

/// # Errors
/// The store.
pub async fn progress(store: &dyn Store, id: CampaignId) -> Result<Progress, CampaignError> {
    let mut p = Progress::default();
    for (state, reason, status, n) in store.campaign_counts(id).await? {
        p.recipients += n;
        match (state.as_str(), status.as_deref()) {
            ("pending", _) => p.pending += n,
            ("suppressed", _) => {
                *p.suppressed
                    .entry(reason.unwrap_or_else(|| "other".into()))
                    .or_default() += n
            }
            (_, Some("sent")) => p.sent += n,
            (_, Some("delivered")) => p.delivered += n,
            (_, Some("failed" | "cancelled")) => p.failed += n,
            _ => p.queued += n,
        }
    }
    if store
        .campaign(id)
        .await?
        .is_some_and(|c| c.kind == Kind::Survey)
    {
        let answers = store
            .survey_answers(&super::dispatch::survey_name(id.get()))
            .await?;
        let who: std::collections::HashSet<&str> =
            answers.iter().map(|(a, _)| a.as_str()).collect();
        p.answered = Some(who.len() as i64);
    }
    Ok(p)
}

/// One rendered sample of a preview.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub line: i64,
    pub to: String,
    pub channel: String,
    pub text: String,
    pub subject: Option<String>,
    pub encoding: String,
    pub segments: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    pub samples: Vec<Sample>,
    pub pending: i64,
    /// Messages and SMS segments the pending recipients not suppressed would take.
    pub messages: i64,
    pub segments: i64,
    pub estimated_seconds: f64,
    pub suppressed: std::collections::BTreeMap<String, i64>,
    /// Set when the campaign's class is in quiet hours now: when it may go.
    pub quiet_until: Option<String>,
}

/// Renders `n` recipients and works out, over every pending one, what would be sent and what
/// suppressed and why.
///
/// # Errors
/// Not found, the store.
pub async fn preview(
    store: &dyn Store,
    d: &Dispatcher,
    zone: chrono_tz::Tz,
    id: CampaignId,
    n: usize,
    now: i64,
) -> Result<Preview, CampaignError> {
    use chrono::TimeZone;
    let c = get(store, id).await?;
    let kind = c.kind;
    let compiled = Compiled::new(&c).map_err(CampaignError::Invalid)?;
    let mut out = Preview {
        samples: Vec::new(),
        pending: 0,
        messages: 0,
        segments: 0,
        estimated_seconds: 0.0,
        suppressed: Default::default(),
        quiet_until: None,
    };
    let mut after = 0;
    loop {
        let rows = store.pending_recipients(id, after, 2_000).await?;
        let Some(last) = rows.last() else { break };
        after = last.seq;
        for ch in [Channel::Sms, Channel::Email] {
            let addrs: Vec<String> = rows
                .iter()
                .filter(|r| r.channel == ch)
                .map(|r| r.address.clone())
                .collect();
            let st = if addrs.is_empty() {
                Default::default()
            } else {
                store
                    .standings(
                        ch,
                        &addrs,
                        now - 86_400_000,
                        now - d.settings.repeat_after.ms(),
                    )
                    .await?
            };
            for r in rows.iter().filter(|r| r.channel == ch) {
                out.pending += 1;
                let consent = super::has_consent(r.consent.as_deref());
                let standing = st.get(&r.address).cloned().unwrap_or_default();
                if let Err(why) = super::admit(kind, consent, &standing, &d.settings) {
                    *out.suppressed.entry(why.as_str().into()).or_default() += 1;
                    continue;
                }
                let Ok((text, subject)) = compiled.render(&r.vars) else {
                    *out.suppressed.entry("template".into()).or_default() += 1;
                    continue;
                };
                let Some(draft) = d.draft(
                    ch,
                    &r.address,
                    kind.message_kind(c.urgent != 0),
                    text,
                    subject,
                ) else {
                    let why = if ch == Channel::Sms {
                        "too_long_or_channel_off"
                    } else {
                        "channel_off"
                    };
                    *out.suppressed.entry(why.into()).or_default() += 1;
                    continue;
                };
                out.messages += 1;
                out.segments += draft.segments;
                if out.samples.len() < n {
                    out.samples.push(Sample {
                        line: r.seq,
                        to: crate::domain::mask(&r.address),
                        channel: ch.as_str().into(),
                        text: draft.text,
                        subject: draft.subject,
                        encoding: draft.encoding.into(),
                        segments: draft.segments as usize,
                    });
                }
            }
        }
    }
    out.estimated_seconds = (out.messages as f64 / c.rate_per_sec * 10.0).round() / 10.0;
    if let Some(w) = super::quiet_window(kind, c.urgent != 0, &d.settings) {
        let t = w.next_outside(zone, now);
        if t > now {
            out.quiet_until = zone
                .timestamp_millis_opt(t)
                .single()
                .map(|t| t.format("%Y-%m-%d %H:%M").to_string());
        }
    }
    Ok(out)
}

/// start, pause, resume, cancel.
///
/// # Errors
/// Not found, not allowed from its status (409), the store.
pub async fn transition(
    store: &dyn Store,
    zone: chrono_tz::Tz,
    id: CampaignId,
    action: &str,
    now: i64,
) -> Result<CampaignRecord, CampaignError> {
    let c = get(store, id).await?;
    // A recurring campaign runs as children; it is itself `recurring` between occurrences.
    use crate::domain::CampaignStatus::*;
    let active = if c.cron.is_some() { Recurring } else { Running };
    let (from, to): (&[crate::domain::CampaignStatus], _) = match action {
        "start" => (&[Draft], active),
        "pause" => (&[Running, Recurring], Paused),
        "resume" => (&[Paused], active),
        "cancel" => (&[Draft, Running, Recurring, Paused], Cancelled),
        other => return Err(CampaignError::Invalid(format!("unknown action {other:?}"))),
    };
    if action == "start" && progress(store, id).await?.pending == 0 {
        return Err(CampaignError::Conflict(format!(
            "campaign {id} has no recipients waiting: import a CSV first"
        )));
    }
    if action == "start" && c.valid_until.is_some_and(|v| v <= now) {
        return Err(CampaignError::Conflict(format!(
            "campaign {id}: its validity has ended"
        )));
    }
    let note = format!("{action} at {now}");
    let next = match (&c.cron, to) {
        (Some(cron), Recurring) => super::next_occurrence(cron, zone, c.start_at.max(now) - 1)
            .map_err(CampaignError::Invalid)?,
        _ => None,
    };
    let changed = store
        .set_campaign_status(id, &super::status_change(from, to), Some(&note), now)
        .await?
        .ok_or_else(|| {
            CampaignError::Conflict(format!(
                "campaign {id} is {}: {action} needs it {}, and no import into it running",
                c.status,
                from.iter()
                    .map(|f| f.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ))
        })?;
    if to == Recurring {
        store.set_next_run(id, next).await?;
        return get(store, id).await;
    }
    Ok(changed)
}
