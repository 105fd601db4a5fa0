//! The SQLite writer: one OS thread, one rusqlite connection, group commit. It takes every
//! queued job (up to `max`: intakes, and the outbox's send results), runs them in one
//! `BEGIN IMMEDIATE` transaction and answers each only after COMMIT returned. If the batch
//! fails, each job is retried alone so one bad message cannot fail its neighbours.
//!
//! Why rusqlite here and sqlx elsewhere: sqlx hands every statement to its own worker thread
//! and back, which on this path (six statements per message) cost more than the statements;
//! a synchronous connection on a dedicated thread more than doubled intake throughput (README,
//! Performance). The SQL is the same as `ops::intake_one`, and the conformance suite runs the
//! same scenarios against this writer and against PostgreSQL.

use super::{
    IntakeOutcome, IntakeRequest, SendUpdate, StoreError, StoreResult, merged_category, opens_case,
};
use crate::domain::{CaseId, Category, Intent};
use crate::store::AckContext;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::path::Path;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// One unit of work for the writer, with where its answer goes.
pub enum Job {
    Intake(
        Box<IntakeRequest>,
        oneshot::Sender<StoreResult<IntakeOutcome>>,
    ),
    Send(SendUpdate, oneshot::Sender<StoreResult<()>>),
}

enum Done {
    Intake(IntakeOutcome),
    Send,
}

impl Job {
    fn answer(self, r: StoreResult<Done>) {
        match (self, r) {
            (Job::Intake(_, tx), Ok(Done::Intake(o))) => {
                let _ = tx.send(Ok(o));
            }
            (Job::Intake(_, tx), Err(e)) => {
                let _ = tx.send(Err(e));
            }
            (Job::Send(_, tx), Ok(_)) => {
                let _ = tx.send(Ok(()));
            }
            (Job::Send(_, tx), Err(e)) => {
                let _ = tx.send(Err(e));
            }
            (Job::Intake(_, tx), Ok(Done::Send)) => {
                let _ = tx.send(Err(StoreError::Other(
                    "writer answered the wrong job".into(),
                )));
            }
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match &e {
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseBusy
                        | rusqlite::ErrorCode::DatabaseLocked
                        | rusqlite::ErrorCode::CannotOpen
                        | rusqlite::ErrorCode::DiskFull
                        | rusqlite::ErrorCode::SystemIoFailure
                        | rusqlite::ErrorCode::ReadOnly
                ) =>
            {
                StoreError::Unavailable(e.to_string())
            }
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::TooBig | rusqlite::ErrorCode::TypeMismatch
                ) =>
            {
                StoreError::Rejected(e.to_string())
            }
            _ => StoreError::Other(e.to_string()),
        }
    }
}

/// Opens the writer connection and starts its thread.
///
/// # Errors
/// The database cannot be opened.
pub fn start(path: &Path, max: usize) -> anyhow::Result<mpsc::Sender<Job>> {
    let conn = Connection::open(path)
        .map_err(|e| anyhow::anyhow!("opening SQLite writer connection {}: {e}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // 8 MB of page cache and no mmap: with the earlier 64 MB + mmap, SQLite scanned the whole
    // page-cache hash table at every commit (pcache1TruncateUnsafe, 7 % of the writer's time
    // under load); the OS page cache holds the rest.
    conn.pragma_update(None, "cache_size", -8192)?;
    conn.pragma_update(None, "mmap_size", 0)?;
    conn.set_prepared_statement_cache_capacity(64);
    let (tx, rx) = mpsc::channel(max * 4);
    std::thread::Builder::new()
        .name("sqlite-writer".into())
        .spawn(move || run(conn, rx, max))?;
    Ok(tx)
}

fn run(mut conn: Connection, mut rx: mpsc::Receiver<Job>, max: usize) {
    let mut batch: Vec<Job> = Vec::with_capacity(max);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < max {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let jobs: Vec<&Job> = batch.iter().collect();
        match guarded(&mut conn, &jobs) {
            Ok(done) => {
                for (job, d) in batch.drain(..).zip(done) {
                    job.answer(Ok(d));
                }
            }
            Err(e) if batch.len() == 1 => batch.pop().expect("one").answer(Err(e)),
            Err(_) => {
                for job in batch.drain(..) {
                    let r = guarded(&mut conn, &[&job]).map(|mut v| v.remove(0));
                    job.answer(r);
                }
            }
        }
    }
}

/// Supervision: a panic inside a batch (a bug) rolls the transaction back (the transaction is
/// dropped while unwinding), is answered as an error (503: the peer retries) and leaves the
/// writer thread running, so one bad message never stops every intake.
fn guarded(conn: &mut Connection, jobs: &[&Job]) -> StoreResult<Vec<Done>> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_batch(conn, jobs))) {
        Ok(r) => r,
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(panic = %crate::domain::scrub(&what), "SQLite writer caught a panic; batch rolled back");
            Err(StoreError::Other(format!(
                "the SQLite writer failed: {what}"
            )))
        }
    }
}

fn run_batch(conn: &mut Connection, jobs: &[&Job]) -> StoreResult<Vec<Done>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut out = Vec::with_capacity(jobs.len());
    for job in jobs {
        out.push(match job {
            Job::Intake(req, _) => Done::Intake(intake_one(&tx, req)?),
            Job::Send(u, _) => {
                send_update(&tx, u)?;
                Done::Send
            }
        });
    }
    tx.commit()?;
    Ok(out)
}

/// The same statements as `ops::{complete_send, retry_send, fail_send}`.
fn send_update(c: &Connection, u: &SendUpdate) -> StoreResult<()> {
    match u {
        SendUpdate::Complete {
            message_id,
            provider_id,
            now_ms,
        } => {
            c.prepare_cached(
                "UPDATE messages SET status = CASE WHEN status = 'queued' THEN 'sent' ELSE status END, \
                 provider_id = COALESCE(?1, provider_id), attempts = attempts + 1, last_error = NULL, \
                 updated_at = ?2 WHERE id = ?3",
            )?
            .execute(params![provider_id, now_ms, message_id])?;
            c.prepare_cached("DELETE FROM outbox WHERE message_id = ?1")?
                .execute(params![message_id])?;
        }
        SendUpdate::Retry {
            message_id,
            next_at_ms,
            error,
            now_ms,
        } => {
            c.prepare_cached(
                "UPDATE messages SET attempts = attempts + 1, last_error = ?1, updated_at = ?2 WHERE id = ?3",
            )?
            .execute(params![error, now_ms, message_id])?;
            c.prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, not_before = ?1, lease_until = NULL \
                 WHERE message_id = ?2",
            )?
            .execute(params![next_at_ms, message_id])?;
        }
        SendUpdate::Fail {
            message_id,
            error,
            now_ms,
        } => {
            c.prepare_cached(
                "UPDATE messages SET status = 'failed', attempts = attempts + 1, last_error = ?1, \
                 updated_at = ?2 WHERE id = ?3",
            )?
            .execute(params![error, now_ms, message_id])?;
            c.prepare_cached("DELETE FROM outbox WHERE message_id = ?1")?
                .execute(params![message_id])?;
        }
    }
    Ok(())
}

fn intake_one(c: &Connection, req: &IntakeRequest) -> StoreResult<IntakeOutcome> {
    let m = &req.msg;
    let dup: Option<i64> = match &req.dedupe_key {
        Some(key) => c
            .prepare_cached("SELECT id FROM messages WHERE dedupe_key = ?1")?
            .query_row(params![key], |r| r.get(0))
            .optional()?,
        None => c
            .prepare_cached("SELECT id FROM messages WHERE content_hash = ?1 AND created_at >= ?2 ORDER BY id LIMIT 1")?
            .query_row(params![req.content_hash, req.now_ms - req.dedupe_window_ms], |r| r.get(0))
            .optional()?,
    };
    if let Some(message_id) = dup {
        return Ok(IntakeOutcome::Duplicate { message_id });
    }

    // A survey answer only counts while a survey waits for this customer.
    let mut intent = req.intent;
    let mut survey: Option<(String, Option<i64>)> = None;
    if intent == Intent::Case && req.survey_answer.is_some() {
        survey = c
            .prepare_cached("SELECT survey, case_id FROM survey_waits WHERE channel = ?1 AND address = ?2 AND expires_at > ?3")?
            .query_row(params![m.channel.as_str(), m.from, req.now_ms], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        if survey.is_some() {
            intent = Intent::SurveyAnswer;
        }
    }
    let progress = match req.query {
        Some(crate::domain::Query::CaseProgress(id)) => c
            .prepare_cached("SELECT id, status, category, tier, resolve_due_at FROM cases WHERE id = ?1 AND customer = ?2")?
            .query_row(params![id.0, m.from], |r| {
                Ok(crate::store::CaseProgress {
                    id: r.get(0)?,
                    status: r.get(1)?,
                    category: r.get(2)?,
                    tier: r.get(3)?,
                    resolve_due_at: r.get(4)?,
                })
            })
            .optional()?,
        _ => None,
    };

    let mut case: Option<(i64, bool, Category, i64)> = None;
    if opens_case(intent) {
        // Threading first: a reference to one of our messages, then a quoted case number of
        // this customer, then the customer's recent open case.
        let mut found: Option<(i64, String, i64)> = None;
        for mid in &req.thread_message_ids {
            found = c
                .prepare_cached(
                    "SELECT c.id, c.category, c.tier FROM messages m JOIN cases c ON c.id = m.case_id \
                     WHERE m.id = ?1 AND m.direction = 'out' AND c.status IN ('open', 'acknowledged')",
                )?
                .query_row(params![mid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            if found.is_some() {
                break;
            }
        }
        if found.is_none()
            && let Some(cid) = req.case_ref
        {
            found = c
                .prepare_cached(
                    "SELECT id, category, tier FROM cases WHERE id = ?1 AND customer = ?2 \
                     AND status IN ('open', 'acknowledged')",
                )?
                .query_row(params![cid, m.from], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()?;
        }
        if found.is_none() {
            found = c
                .prepare_cached(
                    "SELECT id, category, tier FROM cases WHERE customer = ?1 AND channel = ?2 \
                     AND status IN ('open', 'acknowledged') AND last_message_at >= ?3 \
                     ORDER BY last_message_at DESC LIMIT 1",
                )?
                .query_row(
                    params![m.from, m.channel.as_str(), req.now_ms - req.reply_window_ms],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
        }
        case = Some(match found {
            Some((id, cat, tier)) => {
                let existing: Category = cat.parse().unwrap_or(Category::Inquiry);
                let merged = merged_category(existing, req.category, req.intent);
                let escalate = req.intent == Intent::Escalate;
                let tier = if escalate { (tier + 1).min(4) } else { tier };
                c.prepare_cached(
                    "UPDATE cases SET last_message_at = ?1, message_count = message_count + 1, \
                     category = ?2, tier = ?3 WHERE id = ?4",
                )?
                .execute(params![req.now_ms, merged.as_str(), tier, id])?;
                c.prepare_cached(
                    "INSERT INTO case_events (case_id, at, kind, detail) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![
                    id,
                    req.now_ms,
                    if escalate { "escalated" } else { "reply" },
                    format!("category {}, tier {tier}", merged.as_str())
                ])?;
                (id, false, merged, tier)
            }
            None => {
                let cat = merged_category(Category::Inquiry, req.category, req.intent);
                let tier: i64 = if req.intent == Intent::Escalate { 2 } else { 1 };
                let id: i64 = c
                    .prepare_cached(
                        "INSERT INTO cases (channel, customer, category, status, tier, lang, subject, \
                         rules_version, opened_at, last_message_at, ack_due_at, resolve_due_at) \
                         VALUES (?1, ?2, ?3, 'open', ?4, ?5, ?6, ?7, ?8, ?8, ?9, ?10) RETURNING id",
                    )?
                    .query_row(
                        params![
                            m.channel.as_str(),
                            m.from,
                            cat.as_str(),
                            tier,
                            req.lang.as_str(),
                            m.subject,
                            req.rules_version,
                            req.now_ms,
                            req.ack_due_ms,
                            req.resolve_due_ms
                        ],
                        |r| r.get(0),
                    )?;
                (id, true, cat, tier)
            }
        });
    }

    let (dedupe_key, content_hash) = match &req.dedupe_key {
        Some(k) => (Some(k.as_str()), None),
        None => (None, Some(req.content_hash.as_str())),
    };
    let message_id: i64 = c
        .prepare_cached(
            "INSERT INTO messages (direction, channel, dialect, external_id, dedupe_key, content_hash, \
             from_addr, to_addr, subject, body, raw, category, intent, rules_version, case_id, status, \
             created_at, updated_at) \
             VALUES ('in', ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, 'received', ?15, ?15) \
             RETURNING id",
        )?
        .query_row(
            params![
                m.channel.as_str(),
                m.dialect,
                m.external_id,
                dedupe_key,
                content_hash,
                m.from,
                m.to,
                m.subject,
                m.text,
                m.raw,
                req.category.as_str(),
                intent.as_str(),
                req.rules_version,
                case.map(|c| c.0),
                req.now_ms
            ],
            |r| r.get(0),
        )?;

    if let (Some((name, survey_case)), Some(answer)) = (&survey, &req.survey_answer) {
        c.prepare_cached(
            "INSERT INTO survey_answers (survey, channel, address, case_id, answer, message_id, at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![name, m.channel.as_str(), m.from, survey_case, answer, message_id, req.now_ms])?;
        c.prepare_cached("DELETE FROM survey_waits WHERE channel = ?1 AND address = ?2")?
            .execute(params![m.channel.as_str(), m.from])?;
    }

    if matches!(intent, Intent::OptOut | Intent::OptIn) {
        let out = intent == Intent::OptOut;
        c.prepare_cached(
            "INSERT INTO contacts (channel, address, opted_out_at, opted_in_at, source_message) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (channel, address) DO UPDATE SET \
             opted_out_at = excluded.opted_out_at, opted_in_at = excluded.opted_in_at, \
             source_message = excluded.source_message",
        )?
        .execute(params![
            m.channel.as_str(),
            m.from,
            out.then_some(req.now_ms),
            (!out).then_some(req.now_ms),
            message_id
        ])?;
    }

    let ctx = AckContext {
        case_id: case.map(|c| CaseId(c.0)),
        new_case: case.is_some_and(|c| c.1),
        category: case.map(|c| c.2).unwrap_or(req.category),
        intent,
        lang: req.lang,
        channel: m.channel,
        customer: m.from.clone(),
        service_addr: m.to.clone(),
        tier: case.map(|c| c.3).unwrap_or(1),
        query: req.query,
        progress,
        reply_to: m.email.as_ref().and_then(|e| e.reply_to.clone()),
        in_reply_to: m.external_id.clone().filter(|_| m.email.is_some()),
        subject: m.subject.clone(),
    };
    let mut ack_allowed = true;
    if let Some((limit, window)) = req.ack_limit {
        let to = ctx.reply_to.clone().unwrap_or_else(|| m.from.clone());
        let sent: i64 = c
            .prepare_cached(
                "SELECT COUNT(*) FROM messages WHERE direction = 'out' AND channel = 'email' AND kind = 'ack' AND to_addr = ?1 \
                 AND created_at >= ?2",
            )?
            .query_row(params![to, req.now_ms - window], |r| r.get(0))?;
        ack_allowed = sent < limit;
    }
    let mut ack_message_id = None;
    if let Some(d) = req.ack.build(&ctx).filter(|_| ack_allowed) {
        let id: i64 = c
            .prepare_cached(
                "INSERT INTO messages (direction, channel, dialect, from_addr, to_addr, subject, body, \
                 case_id, kind, status, encoding, segments, created_at, updated_at, body_html, headers) \
                 VALUES ('out', ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'queued', ?9, ?10, ?11, ?11, ?12, ?13) RETURNING id",
            )?
            .query_row(
                params![
                    d.channel.as_str(),
                    d.driver,
                    d.from,
                    d.to,
                    d.subject,
                    d.text,
                    case.map(|c| c.0),
                    d.kind,
                    d.encoding,
                    d.segments,
                    req.now_ms,
                    d.html,
                    d.headers
                ],
                |r| r.get(0),
            )?;
        c.prepare_cached(
            "INSERT INTO outbox (message_id, channel, not_before, lane) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            id,
            d.channel.as_str(),
            req.now_ms,
            crate::domain::Lane::of_kind(d.kind).as_i64()
        ])?;
        ack_message_id = Some(id);
    }
    Ok(IntakeOutcome::Stored {
        message_id,
        case_id: case.map(|c| c.0),
        new_case: case.is_some_and(|c| c.1),
        ack_message_id,
    })
}
