//! sqlx statements both engines' pools run (reads, the API's writes, leases). This one file is
//! compiled once per engine, as `postgres::ops` and `sqlite::ops` (`#[path]`), against the
//! engine's `DB`, `Conn` and `BEGIN`: one copy of the code, concrete types, no `sqlx::Any`, and
//! no generic bounds for sqlx's executor traits. The statements use `$N` placeholders, which
//! sqlx accepts on SQLite and PostgreSQL alike. The intake is not here: `crate::intake::decide`
//! makes its decisions over each engine's `IntakeTx`. `BEGIN` is how a write transaction
//! starts: SQLite needs `BEGIN IMMEDIATE`, or a transaction that reads first fails with
//! SQLITE_BUSY when it upgrades to write while the group-commit writer holds the lock.

use super::{BEGIN, Conn, DB, LOCK_KEY};
use crate::domain::{CampaignId, CaseId, MessageId};
use crate::store::{CaseRecord, Counts, MessageRecord, StoreResult, sql};
use sqlx::Pool;

const MESSAGE_COLUMNS: &str = "id, direction, channel, dialect, external_id, from_addr, to_addr, \
    subject, body, category, intent, rules_version, case_id, kind, status, encoding, \
    segments, attempts, provider_id, last_error, created_at, updated_at, render";

/// Bind placeholder `n` of a statement with many of them: `$n` on PostgreSQL, a bare `?`
/// (bound in order) on SQLite. sqlx asks SQLite the name of every parameter when it
/// binds, and SQLite finds a `$n`'s name by a linear scan, so a statement with thousands
/// of `$n` costs O(n²) to bind: 74 % of a 500-row recipient insert's time.
#[allow(dead_code)]
fn ph(n: usize) -> String {
    if <DB as sqlx::Database>::NAME == "SQLite" {
        "?".to_string()
    } else {
        format!("${n}")
    }
}

/// `$first, $first+1, …`: one placeholder per active case status, for `status IN (…)`; the
/// statement binds them last, with [`bind_active`].
fn active_placeholders(first: usize) -> String {
    (0..crate::domain::CaseStatus::ACTIVE.len())
        .map(|i| format!("${}", first + i))
        .collect::<Vec<_>>()
        .join(", ")
}

fn bind_active<'q>(
    mut q: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>> {
    for s in crate::domain::CaseStatus::ACTIVE {
        q = q.bind(s);
    }
    q
}

pub async fn next_outbox_due(pool: &Pool<DB>, channel: &str) -> StoreResult<Option<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT MIN(not_before) FROM outbox WHERE channel = $1 AND lease_until IS NULL",
    )
    .bind(channel)
    .fetch_one(pool)
    .await?)
}

/// (SQLite runs the same statements in its writer thread.)
#[allow(dead_code)]
pub async fn complete_send(
    pool: &Pool<DB>,
    message_id: MessageId,
    provider_id: Option<&str>,
    now_ms: i64,
) -> StoreResult<()> {
    let mut tx = pool.begin_with(BEGIN).await?;
    sqlx::query(sql::SEND_COMPLETE)
        .bind(provider_id)
        .bind(now_ms)
        .bind(message_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(sql::DELETE_OUTBOX)
        .bind(message_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// (SQLite runs the same statements in its writer thread.)
#[allow(dead_code)]
pub async fn retry_send(
    pool: &Pool<DB>,
    message_id: MessageId,
    next_at_ms: i64,
    error: &str,
    now_ms: i64,
) -> StoreResult<()> {
    let mut tx = pool.begin_with(BEGIN).await?;
    sqlx::query(sql::SEND_RETRY_MESSAGE)
        .bind(error)
        .bind(now_ms)
        .bind(message_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(sql::SEND_RETRY_OUTBOX)
        .bind(next_at_ms)
        .bind(message_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// (SQLite runs the same statements in its writer thread.)
#[allow(dead_code)]
pub async fn fail_send(
    pool: &Pool<DB>,
    message_id: MessageId,
    error: &str,
    now_ms: i64,
) -> StoreResult<()> {
    let mut tx = pool.begin_with(BEGIN).await?;
    fail_send_in(&mut tx, message_id, error, now_ms).await?;
    tx.commit().await?;
    Ok(())
}

/// [`fail_send`] inside the caller's transaction (the PostgreSQL claim fails a message whose
/// stored recipient it refuses).
#[allow(dead_code)]
pub async fn fail_send_in(
    conn: &mut Conn,
    message_id: MessageId,
    error: &str,
    now_ms: i64,
) -> StoreResult<()> {
    sqlx::query(sql::SEND_FAIL)
        .bind(error)
        .bind(now_ms)
        .bind(message_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(sql::DELETE_OUTBOX)
        .bind(message_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

const PART_COLUMNS: &str =
    "id, seq, total, dialect, external_id, from_addr, to_addr, body, raw, received_at";

pub async fn store_part(
    pool: &Pool<DB>,
    p: &crate::store::NewPart,
) -> StoreResult<crate::store::PartOutcome> {
    let mut tx = pool.begin_with(BEGIN).await?;
    if let Some(lock) = LOCK_KEY {
        // The parts of one message arrive together: each must see the others it follows.
        sqlx::query(lock)
            .bind(&p.group_key)
            .execute(&mut *tx)
            .await?;
    }
    if let Some(key) = &p.dedupe_key {
        let seen: Option<i64> =
            sqlx::query_scalar("SELECT id FROM sms_parts WHERE dedupe_key = $1")
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
        if seen.is_some() {
            return Ok(crate::store::PartOutcome::Duplicate);
        }
    }
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO sms_parts (group_key, seq, total, dialect, dedupe_key, external_id, from_addr, to_addr, body, raw, received_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (group_key, seq) WHERE done = 0 DO NOTHING RETURNING id",
    )
    .bind(&p.group_key)
    .bind(p.seq)
    .bind(p.total)
    .bind(&p.dialect)
    .bind(&p.dedupe_key)
    .bind(&p.external_id)
    .bind(&p.from)
    .bind(&p.to)
    .bind(&p.body)
    .bind(&p.raw)
    .bind(p.received_at)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(part_id) = id else {
        return Ok(crate::store::PartOutcome::Duplicate);
    };
    let group: Vec<crate::store::StoredPart> = sqlx::query_as(&format!(
        "SELECT {PART_COLUMNS} FROM sms_parts WHERE group_key = $1 AND done = 0 ORDER BY seq"
    ))
    .bind(&p.group_key)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(crate::store::PartOutcome::Stored { part_id, group })
}

pub async fn part_group(
    pool: &Pool<DB>,
    group_key: &str,
) -> StoreResult<Vec<crate::store::StoredPart>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {PART_COLUMNS} FROM sms_parts WHERE group_key = $1 AND done = 0 ORDER BY seq"
    ))
    .bind(group_key)
    .fetch_all(pool)
    .await?)
}

pub async fn overdue_part_groups(
    pool: &Pool<DB>,
    before: i64,
    limit: i64,
) -> StoreResult<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT group_key FROM sms_parts WHERE done = 0 GROUP BY group_key \
         HAVING MIN(received_at) < $1 ORDER BY MIN(received_at) LIMIT $2",
    )
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

pub async fn close_parts(pool: &Pool<DB>, ids: &[i64], purge_before: i64) -> StoreResult<()> {
    let mut tx = pool.begin_with(BEGIN).await?;
    for id in ids {
        sqlx::query("UPDATE sms_parts SET done = 1 WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("DELETE FROM sms_parts WHERE done = 1 AND received_at < $1")
        .bind(purge_before)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn release_leases(pool: &Pool<DB>, ids: &[MessageId]) -> StoreResult<()> {
    for id in ids {
        sqlx::query("UPDATE outbox SET lease_until = NULL WHERE message_id = $1")
            .bind(id)
            .execute(pool)
            .await?;
    }
    Ok(())
}

pub async fn app_secret(pool: &Pool<DB>, name: &str) -> StoreResult<String> {
    let fresh = {
        use rand::Rng;
        let b: [u8; 32] = rand::thread_rng().r#gen();
        hex::encode(b)
    };
    sqlx::query(
        "INSERT INTO app_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(&fresh)
    .execute(pool)
    .await?;
    Ok(
        sqlx::query_scalar("SELECT value FROM app_secrets WHERE name = $1")
            .bind(name)
            .fetch_one(pool)
            .await?,
    )
}

pub async fn opt_out(
    pool: &Pool<DB>,
    channel: crate::domain::Channel,
    address: &str,
    message_id: Option<MessageId>,
    now_ms: i64,
) -> StoreResult<()> {
    let mut tx = pool.begin_with(BEGIN).await?;
    sqlx::query(sql::UPSERT_CONSENT)
        .bind(channel.as_str())
        .bind(address)
        .bind(Some(now_ms))
        .bind(None::<i64>)
        .bind(message_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(sql::SUPPRESS_QUEUED_RECIPIENTS)
        .bind(address)
        .bind(channel.as_str())
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
    sqlx::query(sql::SUPPRESS_QUEUED_MESSAGES)
        .bind(now_ms)
        .bind(address)
        .bind(channel.as_str())
        .execute(&mut *tx)
        .await?;
    sqlx::query(sql::DELETE_SUPPRESSED_OUTBOX)
        .bind(address)
        .bind(channel.as_str())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn campaign_message(
    pool: &Pool<DB>,
    campaign_id: CampaignId,
    address: &str,
) -> StoreResult<Option<i64>> {
    Ok(sqlx::query_scalar::<_, Option<i64>>(
        "SELECT message_id FROM campaign_recipients WHERE campaign_id = $1 AND address = $2",
    )
    .bind(campaign_id)
    .bind(address)
    .fetch_optional(pool)
    .await?
    .flatten())
}

pub async fn campaign_outcomes(
    pool: &Pool<DB>,
    campaign_id: CampaignId,
    since_ms: i64,
) -> StoreResult<(i64, i64)> {
    let (tried, failed): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN m.status = 'failed' OR m.status = 'queued' THEN 1 ELSE 0 END), 0) \
         FROM campaign_recipients r JOIN messages m ON m.id = r.message_id \
         WHERE r.campaign_id = $1 AND m.updated_at >= $2 AND (m.status IN ('sent', 'delivered', 'failed') \
         OR (m.status = 'queued' AND m.last_error IS NOT NULL))",
    )
    .bind(campaign_id)
    .bind(since_ms)
    .fetch_one(pool)
    .await?;
    Ok((tried, failed))
}

pub async fn defer_sends(pool: &Pool<DB>, ids: &[MessageId], not_before: i64) -> StoreResult<()> {
    for id in ids {
        sqlx::query("UPDATE outbox SET lease_until = NULL, not_before = $1 WHERE message_id = $2")
            .bind(not_before)
            .bind(id)
            .execute(pool)
            .await?;
    }
    Ok(())
}

const CAMPAIGN_COLUMNS: &str = "id, name, kind, channel, template, subject, status, start_at, \
    valid_until, rate_per_sec, urgent, created_by, created_at, updated_at, note, cron, parent_id, \
    next_run_at";

pub async fn create_campaign(pool: &Pool<DB>, c: &crate::store::NewCampaign) -> StoreResult<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO campaigns (name, kind, channel, template, subject, status, start_at, valid_until, \
         rate_per_sec, urgent, created_by, created_at, updated_at, cron) \
         VALUES ($1, $2, $3, $4, $5, 'draft', $6, $7, $8, $9, $10, $11, $11, $12) RETURNING id",
    )
    .bind(&c.name)
    .bind(c.kind)
    .bind(c.channel)
    .bind(&c.template)
    .bind(&c.subject)
    .bind(c.start_at)
    .bind(c.valid_until)
    .bind(c.rate_per_sec)
    .bind(i64::from(c.urgent))
    .bind(&c.created_by)
    .bind(c.now_ms)
    .bind(&c.cron)
    .fetch_one(pool)
    .await?)
}

pub async fn campaign(
    pool: &Pool<DB>,
    id: CampaignId,
) -> StoreResult<Option<crate::store::CampaignRecord>> {
    let sql = format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = $1");
    Ok(sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?)
}

pub async fn campaigns(
    pool: &Pool<DB>,
    limit: i64,
) -> StoreResult<Vec<crate::store::CampaignRecord>> {
    let sql = format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns ORDER BY id DESC LIMIT $1");
    Ok(sqlx::query_as(&sql).bind(limit).fetch_all(pool).await?)
}

pub async fn add_recipients(
    pool: &Pool<DB>,
    campaign_id: CampaignId,
    rows: &[crate::campaigns::import::NewRecipient],
) -> StoreResult<u64> {
    let mut tx = pool.begin_with(BEGIN).await?;
    let mut added = 0;
    for chunk in rows.chunks(500) {
        let mut sql = String::from(
            "INSERT INTO campaign_recipients (campaign_id, seq, channel, address, vars, consent, state) VALUES ",
        );
        for i in 0..chunk.len() {
            let b = i * 6;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "({}, {}, {}, {}, {}, {}, 'pending')",
                ph(b + 1),
                ph(b + 2),
                ph(b + 3),
                ph(b + 4),
                ph(b + 5),
                ph(b + 6)
            ));
        }
        sql.push_str(" ON CONFLICT DO NOTHING");
        let mut q = sqlx::query(&sql);
        for r in chunk {
            q = q
                .bind(campaign_id)
                .bind(r.line)
                .bind(r.channel.as_str())
                .bind(&r.address)
                .bind(&r.vars)
                .bind(&r.consent);
        }
        added += q.execute(&mut *tx).await?.rows_affected();
    }
    tx.commit().await?;
    Ok(added)
}

pub async fn hold_import(
    pool: &Pool<DB>,
    campaign_id: CampaignId,
    until_ms: i64,
    now_ms: i64,
    renew: bool,
) -> StoreResult<bool> {
    let q = if renew {
        sqlx::query(
            "UPDATE campaigns SET import_until = $1 WHERE id = $2 AND import_until IS NOT NULL",
        )
        .bind(until_ms)
        .bind(campaign_id)
    } else {
        sqlx::query(
            "UPDATE campaigns SET import_until = $1 WHERE id = $2 AND status IN ('draft', 'paused') \
             AND (import_until IS NULL OR import_until < $3)",
        )
        .bind(until_ms)
        .bind(campaign_id)
        .bind(now_ms)
    };
    Ok(q.execute(pool).await?.rows_affected() == 1)
}

pub async fn end_import(pool: &Pool<DB>, campaign_id: CampaignId) -> StoreResult<()> {
    sqlx::query("UPDATE campaigns SET import_until = NULL WHERE id = $1")
        .bind(campaign_id)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn remove_recipients_after(
    pool: &Pool<DB>,
    campaign_id: CampaignId,
    after_seq: i64,
) -> StoreResult<u64> {
    Ok(sqlx::query(
        "DELETE FROM campaign_recipients WHERE campaign_id = $1 AND seq > $2 AND state = 'pending'",
    )
    .bind(campaign_id)
    .bind(after_seq)
    .execute(pool)
    .await?
    .rows_affected())
}

pub async fn max_recipient_seq(pool: &Pool<DB>, campaign_id: CampaignId) -> StoreResult<i64> {
    Ok(sqlx::query_scalar::<_, Option<i64>>(
        "SELECT MAX(seq) FROM campaign_recipients WHERE campaign_id = $1",
    )
    .bind(campaign_id)
    .fetch_one(pool)
    .await?
    .unwrap_or(0))
}

pub async fn campaign_counts(
    pool: &Pool<DB>,
    campaign_id: CampaignId,
) -> StoreResult<Vec<(String, Option<String>, Option<String>, i64)>> {
    Ok(sqlx::query_as(
        "SELECT r.state, r.reason, m.status, COUNT(*) FROM campaign_recipients r \
         LEFT JOIN messages m ON m.id = r.message_id WHERE r.campaign_id = $1 \
         GROUP BY r.state, r.reason, m.status",
    )
    .bind(campaign_id)
    .fetch_all(pool)
    .await?)
}

pub async fn set_campaign_status(
    pool: &Pool<DB>,
    id: CampaignId,
    c: &crate::campaigns::StatusChange<'_>,
    note: Option<&str>,
    now_ms: i64,
) -> StoreResult<Option<crate::store::CampaignRecord>> {
    let mut tx = pool.begin_with(BEGIN).await?;
    let list: Vec<String> = (0..c.from.len()).map(|i| format!("${}", i + 7)).collect();
    let sql = format!(
        "UPDATE campaigns SET status = $1, note = $2, updated_at = $3, \
         next_run_at = CASE WHEN $5 THEN next_run_at ELSE NULL END \
         WHERE id = $4 AND status IN ({}) \
         AND (NOT $6 OR import_until IS NULL OR import_until < $3)",
        list.join(", ")
    );
    let mut q = sqlx::query(&sql)
        .bind(c.to)
        .bind(note)
        .bind(now_ms)
        .bind(id)
        .bind(c.keep_next_run)
        .bind(c.after_import);
    for f in c.from {
        q = q.bind(*f);
    }
    if q.execute(&mut *tx).await?.rows_affected() == 0 {
        return Ok(None);
    }
    let to = c.to;
    if c.runs_follow {
        sqlx::query(
            "UPDATE campaigns SET status = $1, note = $2, updated_at = $3 WHERE parent_id = $4 \
             AND status IN ('running', 'paused')",
        )
        .bind(to)
        .bind(note)
        .bind(now_ms)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    if c.withdraw_queued {
        sqlx::query(
            "UPDATE messages SET status = 'cancelled', updated_at = $1 WHERE id IN \
             (SELECT r.message_id FROM campaign_recipients r JOIN outbox o ON o.message_id = r.message_id \
             WHERE (r.campaign_id = $2 OR r.campaign_id IN (SELECT id FROM campaigns WHERE parent_id = $2)) \
             AND (o.lease_until IS NULL OR o.lease_until < $1))",
        )
        .bind(now_ms)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM outbox WHERE message_id IN (SELECT id FROM messages WHERE status = 'cancelled' \
             AND id IN (SELECT message_id FROM campaign_recipients WHERE campaign_id = $1 \
             OR campaign_id IN (SELECT id FROM campaigns WHERE parent_id = $1)))",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    let sql = format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = $1");
    let c = sqlx::query_as(&sql)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(c)
}

pub async fn due_recurring(
    pool: &Pool<DB>,
    now_ms: i64,
) -> StoreResult<Vec<crate::store::CampaignRecord>> {
    let sql = format!(
        "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE status = 'recurring' AND next_run_at <= $1 \
         AND {} ORDER BY id",
        crate::campaigns::dispatchable_predicate()
    );
    Ok(sqlx::query_as(&sql).bind(now_ms).fetch_all(pool).await?)
}

pub async fn spawn_run(
    pool: &Pool<DB>,
    p: &crate::store::CampaignRecord,
    occurrence: i64,
    valid_until: Option<i64>,
    next: Option<i64>,
    now_ms: i64,
) -> StoreResult<Option<i64>> {
    let mut tx = pool.begin_with(BEGIN).await?;
    let moved = sqlx::query(
        "UPDATE campaigns SET next_run_at = $1 WHERE id = $2 AND status = 'recurring' AND next_run_at = $3",
    )
    .bind(next)
    .bind(p.id)
    .bind(occurrence)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if moved != 1 {
        return Ok(None);
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO campaigns (name, kind, channel, template, subject, status, start_at, valid_until, \
         rate_per_sec, urgent, created_by, created_at, updated_at, parent_id) \
         VALUES ($1, $2, $3, $4, $5, 'running', $6, $7, $8, $9, $10, $11, $11, $12) RETURNING id",
    )
    .bind(&p.name)
    .bind(p.kind)
    .bind(p.channel)
    .bind(&p.template)
    .bind(&p.subject)
    .bind(occurrence)
    .bind(valid_until)
    .bind(p.rate_per_sec)
    .bind(p.urgent)
    .bind(&p.created_by)
    .bind(now_ms)
    .bind(p.id)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO campaign_recipients (campaign_id, seq, channel, address, vars, consent, state) \
         SELECT $1, seq, channel, address, vars, consent, 'pending' FROM campaign_recipients \
         WHERE campaign_id = $2",
    )
    .bind(id)
    .bind(p.id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(id))
}

pub async fn set_next_run(pool: &Pool<DB>, id: CampaignId, next: Option<i64>) -> StoreResult<()> {
    sqlx::query("UPDATE campaigns SET next_run_at = $1 WHERE id = $2")
        .bind(next)
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn running_campaigns(
    pool: &Pool<DB>,
    now_ms: i64,
) -> StoreResult<Vec<crate::store::CampaignRecord>> {
    let sql = format!(
        "SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE status = 'running' AND start_at <= $1 \
         AND {} ORDER BY id",
        crate::campaigns::dispatchable_predicate()
    );
    Ok(sqlx::query_as(&sql).bind(now_ms).fetch_all(pool).await?)
}

pub async fn pending_recipients(
    pool: &Pool<DB>,
    campaign_id: CampaignId,
    after_seq: i64,
    limit: i64,
) -> StoreResult<Vec<crate::store::RecipientRow>> {
    Ok(sqlx::query_as(
        "SELECT seq, channel, address, vars, consent FROM campaign_recipients \
         WHERE campaign_id = $1 AND state = 'pending' AND seq > $2 ORDER BY seq LIMIT $3",
    )
    .bind(campaign_id)
    .bind(after_seq)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

pub async fn standings(
    pool: &Pool<DB>,
    channel: crate::domain::Channel,
    addresses: &[String],
    since_ms: i64,
    texts_since_ms: i64,
) -> StoreResult<std::collections::HashMap<String, crate::campaigns::Standing>> {
    let mut out: std::collections::HashMap<String, crate::campaigns::Standing> =
        std::collections::HashMap::new();
    for chunk in addresses.chunks(500) {
        let list: Vec<String> = (0..chunk.len()).map(|i| ph(i + 2)).collect();
        let sql = format!(
            "SELECT address, opted_out_at, opted_in_at FROM contacts WHERE channel = {} AND address IN ({})",
            ph(1),
            list.join(", ")
        );
        let mut q =
            sqlx::query_as::<_, (String, Option<i64>, Option<i64>)>(&sql).bind(channel.as_str());
        for a in chunk {
            q = q.bind(a);
        }
        for (a, out_at, in_at) in q.fetch_all(pool).await? {
            let e = out.entry(a).or_default();
            e.opted_out = out_at.is_some_and(|o| in_at.is_none_or(|i| i < o));
            e.opted_in = in_at.is_some() && !e.opted_out;
        }
        let list: Vec<String> = (0..chunk.len()).map(|i| ph(i + 3)).collect();
        let kinds = crate::domain::MessageKind::campaign_predicate("");
        let sql = format!(
            "SELECT to_addr, COUNT(*), SUM(CASE WHEN kind IN ('marketing', 'research') THEN 1 ELSE 0 END) \
             FROM messages WHERE direction = 'out' AND channel = {} AND created_at >= {} \
             AND {kinds} AND status <> 'suppressed' AND status <> 'cancelled' \
             AND to_addr IN ({}) GROUP BY to_addr",
            ph(1),
            ph(2),
            list.join(", ")
        );
        let mut q = sqlx::query_as::<_, (String, i64, i64)>(&sql)
            .bind(channel.as_str())
            .bind(since_ms);
        for a in chunk {
            q = q.bind(a);
        }
        for (a, all, commercial) in q.fetch_all(pool).await? {
            let e = out.entry(a).or_default();
            e.sent_today = all;
            e.commercial_today = commercial;
        }
        let sql = format!(
            "SELECT to_addr, body FROM messages WHERE direction = 'out' AND channel = {} \
             AND created_at >= {} AND {kinds} AND kind IN ('marketing', 'research') \
             AND status <> 'suppressed' AND status <> 'cancelled' AND to_addr IN ({})",
            ph(1),
            ph(2),
            list.join(", ")
        );
        let mut q = sqlx::query_as::<_, (String, String)>(&sql)
            .bind(channel.as_str())
            .bind(texts_since_ms);
        for a in chunk {
            q = q.bind(a);
        }
        for (a, body) in q.fetch_all(pool).await? {
            out.entry(a)
                .or_default()
                .recent_texts
                .push(crate::campaigns::text_hash(&body));
        }
    }
    Ok(out)
}

pub async fn message(pool: &Pool<DB>, id: MessageId) -> StoreResult<Option<MessageRecord>> {
    let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1");
    Ok(sqlx::query_as::<_, MessageRecord>(&sql)
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

pub async fn case_events(
    pool: &Pool<DB>,
    case_id: CaseId,
) -> StoreResult<Vec<crate::store::CaseEvent>> {
    Ok(sqlx::query_as(
        "SELECT id, at, kind, detail FROM case_events WHERE case_id = $1 ORDER BY id",
    )
    .bind(case_id)
    .fetch_all(pool)
    .await?)
}

pub async fn case_messages(pool: &Pool<DB>, case_id: CaseId) -> StoreResult<Vec<MessageRecord>> {
    let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE case_id = $1 ORDER BY id");
    Ok(sqlx::query_as::<_, MessageRecord>(&sql)
        .bind(case_id)
        .fetch_all(pool)
        .await?)
}

pub async fn recent_messages(
    pool: &Pool<DB>,
    direction: &str,
    limit: i64,
) -> StoreResult<Vec<MessageRecord>> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE direction = $1 ORDER BY id DESC LIMIT $2"
    );
    Ok(sqlx::query_as::<_, MessageRecord>(&sql)
        .bind(direction)
        .bind(limit)
        .fetch_all(pool)
        .await?)
}

const CASE_COLUMNS: &str = "id, channel, customer, category, status, tier, lang, subject, \
    rules_version, opened_at, last_message_at, ack_due_at, resolve_due_at, message_count, \
    acked_at, resolved_at, assignee, resolution_code, city, linked_case_id, sla_base_at, \
    answered_at";

pub async fn case(pool: &Pool<DB>, id: CaseId) -> StoreResult<Option<CaseRecord>> {
    let sql = format!("SELECT {CASE_COLUMNS} FROM cases WHERE id = $1");
    Ok(sqlx::query_as::<_, CaseRecord>(&sql)
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

pub async fn find_cases(
    pool: &Pool<DB>,
    f: &crate::store::CaseFilter,
    limit: i64,
) -> StoreResult<Vec<CaseRecord>> {
    let (filter, vals) = sql::case_filter(f);
    let sql =
        format!("SELECT {CASE_COLUMNS} FROM cases {filter} ORDER BY resolve_due_at, id LIMIT $1");
    let mut q = sqlx::query_as::<_, CaseRecord>(&sql).bind(limit);
    for v in vals {
        q = match v {
            sql::Bind::Int(i) => q.bind(i),
            sql::Bind::Text(s) => q.bind(s),
        };
    }
    Ok(q.fetch_all(pool).await?)
}

pub async fn resolve_case(
    pool: &Pool<DB>,
    case_id: CaseId,
    r: &crate::store::Resolve<'_>,
) -> StoreResult<Option<CaseRecord>> {
    let mut tx = pool.begin_with(BEGIN).await?;
    // Resolving is allowed from every active status (`cases::allowed`).
    let sql = format!(
        "UPDATE cases SET status = $1, resolved_at = $2, resolution_code = $3 \
         WHERE id = $4 AND status IN ({})",
        active_placeholders(5)
    );
    let changed = bind_active(
        sqlx::query(&sql)
            .bind(crate::domain::CaseStatus::Resolved)
            .bind(r.now_ms)
            .bind(r.code)
            .bind(case_id),
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if changed > 0 {
        sqlx::query(sql::INSERT_CASE_EVENT)
            .bind(case_id)
            .bind(r.now_ms)
            .bind(crate::domain::CaseEventKind::Resolved)
            .bind(&r.detail)
            .execute(&mut *tx)
            .await?;
        // Its clock stops: the case is no longer active.
        sqlx::query("DELETE FROM sla_clock WHERE case_id = $1")
            .bind(case_id)
            .execute(&mut *tx)
            .await?;
        if let Some(due) = r.visit_due {
            sqlx::query(
                "INSERT INTO return_visits (case_id, channel, customer, state, due_at) \
                 SELECT id, channel, customer, 'scheduled', $1 FROM cases WHERE id = $2 \
                 ON CONFLICT (case_id) DO UPDATE SET state = 'scheduled', due_at = excluded.due_at, \
                 answer = NULL, answered_at = NULL, lease_until = NULL",
            )
            .bind(due)
            .bind(case_id)
            .execute(&mut *tx)
            .await?;
        }
    }
    let sql = format!("SELECT {CASE_COLUMNS} FROM cases WHERE id = $1");
    let case = sqlx::query_as::<_, CaseRecord>(&sql)
        .bind(case_id)
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(case)
}

pub async fn open_linked_case(
    pool: &Pool<DB>,
    old_id: CaseId,
    deadlines: (i64, i64),
    next: Option<(crate::sla::Step, i64)>,
    by: &str,
    now_ms: i64,
) -> StoreResult<Option<CaseRecord>> {
    let mut tx = pool.begin_with(BEGIN).await?;
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO cases (channel, customer, category, status, tier, lang, subject, rules_version, \
         opened_at, last_message_at, ack_due_at, resolve_due_at, city, linked_case_id, message_count) \
         SELECT channel, customer, category, $1, $2, lang, subject, rules_version, $3, $3, $4, $5, \
         city, id, 0 FROM cases WHERE id = $6 AND status = $7 RETURNING id",
    )
    .bind(crate::cases::LINKED_START.0)
    .bind(crate::cases::LINKED_START.1)
    .bind(now_ms)
    .bind(deadlines.0)
    .bind(deadlines.1)
    .bind(old_id)
    .bind(crate::domain::CaseStatus::Closed)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(id) = id else {
        return Ok(None);
    };
    let (step, due) = crate::sla::clock_row(next);
    sqlx::query(sql::SET_CLOCK)
        .bind(id)
        .bind(step)
        .bind(due)
        .bind(0_i64)
        .execute(&mut *tx)
        .await?;
    for (case, detail) in crate::cases::link_details(old_id.get(), id, by) {
        sqlx::query(sql::INSERT_CASE_EVENT)
            .bind(case)
            .bind(now_ms)
            .bind(crate::domain::CaseEventKind::Linked)
            .bind(detail)
            .execute(&mut *tx)
            .await?;
    }
    let sql = format!("SELECT {CASE_COLUMNS} FROM cases WHERE id = $1");
    let case = sqlx::query_as::<_, CaseRecord>(&sql)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(case)
}

pub async fn unclocked_cases(
    pool: &Pool<DB>,
    after_id: i64,
    limit: i64,
) -> StoreResult<Vec<(CaseId, String, i64, bool, String)>> {
    let active = crate::domain::CaseStatus::active_predicate("c.");
    let sql = format!(
        "SELECT c.id, c.category, COALESCE(c.sla_base_at, c.opened_at), \
         CAST(CASE WHEN c.acked_at IS NULL OR COALESCE(c.answered_at, 0) < COALESCE(c.sla_base_at, 0) THEN 0 ELSE 1 END AS BIGINT), c.customer FROM cases c \
         WHERE {active} \
         AND c.id > $1 AND NOT EXISTS (SELECT 1 FROM sla_clock k WHERE k.case_id = c.id) \
         ORDER BY c.id LIMIT $2"
    );
    let rows: Vec<(CaseId, String, i64, i64, String)> = sqlx::query_as(&sql)
        .bind(after_id)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, c, o, a, cu)| (id, c, o, a != 0, cu))
        .collect())
}

pub async fn start_clocks(
    pool: &Pool<DB>,
    clocks: &[(CaseId, String, Option<i64>, i64)],
) -> StoreResult<()> {
    let mut tx = pool.begin_with(BEGIN).await?;
    for (id, step, due, fired) in clocks {
        sqlx::query(
            "INSERT INTO sla_clock (case_id, step, due_at, fired, lease_until) \
             VALUES ($1, $2, $3, $4, NULL) ON CONFLICT (case_id) DO NOTHING",
        )
        .bind(id)
        .bind(step)
        .bind(due)
        .bind(fired)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub async fn case_clock(
    pool: &Pool<DB>,
    case_id: CaseId,
) -> StoreResult<Option<(String, Option<i64>, i64)>> {
    Ok(
        sqlx::query_as("SELECT step, due_at, fired FROM sla_clock WHERE case_id = $1")
            .bind(case_id)
            .fetch_optional(pool)
            .await?,
    )
}

pub async fn recategorize(
    pool: &Pool<DB>,
    c: &crate::store::Recategorize,
) -> StoreResult<Option<CaseRecord>> {
    let mut tx = pool.begin_with(BEGIN).await?;
    let moved = sqlx::query(
        "UPDATE cases SET category = $1, ack_due_at = $2, resolve_due_at = $3 WHERE id = $4 AND category = $5",
    )
    .bind(c.to)
    .bind(c.answer_due)
    .bind(c.resolve_due)
    .bind(c.case_id)
    .bind(c.from)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if moved != 1 {
        return Ok(None);
    }
    change_clock(&mut tx, c.case_id, &c.clock).await?;
    let text: Option<String> = sqlx::query_scalar(
        "SELECT CASE WHEN subject IS NULL OR subject = '' THEN body ELSE subject || ' ' || body END \
         FROM messages WHERE case_id = $1 AND direction = 'in' ORDER BY id LIMIT 1",
    )
    .bind(c.case_id)
    .fetch_optional(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO corrections (case_id, from_category, to_category, text, by_name, reason, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(c.case_id)
    .bind(c.from)
    .bind(c.to)
    .bind(text.unwrap_or_default())
    .bind(&c.by)
    .bind(&c.reason)
    .bind(c.now_ms)
    .execute(&mut *tx)
    .await?;
    let detail = format!("{} -> {} by {}: {}", c.from, c.to, c.by, c.reason);
    let case = event_and_case(
        &mut tx,
        c.case_id,
        c.now_ms,
        crate::domain::CaseEventKind::Recategorized,
        &detail,
    )
    .await?;
    tx.commit().await?;
    Ok(case)
}

pub async fn corrections(pool: &Pool<DB>, since_ms: i64) -> StoreResult<Vec<(String, String)>> {
    Ok(
        sqlx::query_as("SELECT to_category, text FROM corrections WHERE at >= $1 ORDER BY id")
            .bind(since_ms)
            .fetch_all(pool)
            .await?,
    )
}

pub async fn next_visit_due(pool: &Pool<DB>, now_ms: i64) -> StoreResult<Option<i64>> {
    Ok(sqlx::query_scalar::<_, Option<i64>>(
        "SELECT MIN(due_at) FROM return_visits WHERE due_at IS NOT NULL \
         AND (lease_until IS NULL OR lease_until < $1)",
    )
    .bind(now_ms)
    .fetch_one(pool)
    .await?)
}

/// A lease on due visits; two instances may both lease a row (no SKIP LOCKED here,
/// visits are few), and `apply_visit`'s guard lets exactly one of them act.
pub async fn claim_visits(
    pool: &Pool<DB>,
    now_ms: i64,
    lease_ms: i64,
    limit: i64,
) -> StoreResult<Vec<crate::store::DueVisit>> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "UPDATE return_visits SET lease_until = $1 WHERE case_id IN (SELECT case_id FROM return_visits \
         WHERE due_at <= $2 AND (lease_until IS NULL OR lease_until < $2) \
         ORDER BY due_at LIMIT $3) RETURNING case_id",
    )
    .bind(now_ms + lease_ms)
    .bind(now_ms)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let v: Option<crate::store::DueVisit> = sqlx::query_as(
            "SELECT v.case_id, v.state, v.due_at, v.channel, v.customer, c.status, c.category, \
             c.tier, c.lang, c.subject, (SELECT MAX(o.sent_at) FROM return_visits o \
             WHERE o.customer = v.customer AND o.channel = v.channel) AS last_sent \
             FROM return_visits v JOIN cases c ON c.id = v.case_id WHERE v.case_id = $1 AND v.due_at IS NOT NULL",
        )
        .bind(id)
        .fetch_optional(pool)
        .await?;
        out.extend(v);
    }
    Ok(out)
}

pub async fn apply_visit(pool: &Pool<DB>, a: &crate::store::VisitApply) -> StoreResult<bool> {
    let mut tx = pool.begin_with(BEGIN).await?;
    let moved = sqlx::query(
        "UPDATE return_visits SET state = $1, due_at = $2, \
         sent_at = CASE WHEN $3 = 1 THEN $4 ELSE sent_at END, lease_until = NULL \
         WHERE case_id = $5 AND state = $6 AND due_at = $7 \
         AND ($8 = 0 OR EXISTS (SELECT 1 FROM cases c WHERE c.id = $5 AND c.status = 'resolved')) \
         AND NOT EXISTS (SELECT 1 FROM return_visits o WHERE o.customer = return_visits.customer \
           AND o.channel = return_visits.channel AND o.case_id <> $5 AND o.sent_at > $9)",
    )
    .bind(&a.state)
    .bind(a.due_at)
    .bind(i64::from(a.sent))
    .bind(a.now_ms)
    .bind(a.case_id)
    .bind(&a.state_before)
    .bind(a.due_before)
    .bind(i64::from(a.need_resolved))
    .bind(a.not_sent_since.unwrap_or(i64::MAX))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if moved != 1 {
        return Ok(false);
    }
    if a.close_case {
        // A satisfied or silent visit closes the resolved case.
        sqlx::query("UPDATE cases SET status = $2 WHERE id = $1 AND status = $3")
            .bind(a.case_id)
            .bind(crate::domain::CaseStatus::Closed)
            .bind(crate::domain::CaseStatus::Resolved)
            .execute(&mut *tx)
            .await?;
    }
    if let Some((kind, detail)) = &a.event {
        sqlx::query(sql::INSERT_CASE_EVENT)
            .bind(a.case_id)
            .bind(a.now_ms)
            .bind(kind)
            .bind(detail)
            .execute(&mut *tx)
            .await?;
    }
    if let Some((d, wait_until)) = &a.survey {
        queue_outbound(&mut tx, d, Some(a.case_id), a.now_ms).await?;
        sqlx::query(
            "INSERT INTO survey_waits (channel, address, survey, case_id, sent_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (channel, address) DO UPDATE SET survey = excluded.survey, case_id = excluded.case_id, \
             sent_at = excluded.sent_at, expires_at = excluded.expires_at",
        )
        .bind(d.channel.as_str())
        .bind(&d.to)
        .bind(crate::intake::decide::VISIT_SURVEY)
        .bind(a.case_id)
        .bind(a.now_ms)
        .bind(wait_until)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(true)
}

pub async fn counts(pool: &Pool<DB>) -> StoreResult<Counts> {
    let (messages_in, messages_out, cases, outbox): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM messages WHERE direction = 'in'), \
         (SELECT COUNT(*) FROM messages WHERE direction = 'out'), \
         (SELECT COUNT(*) FROM cases), (SELECT COUNT(*) FROM outbox)",
    )
    .fetch_one(pool)
    .await?;
    Ok(Counts {
        messages_in,
        messages_out,
        cases,
        outbox,
    })
}

pub async fn inbound_since(
    pool: &Pool<DB>,
    since_ms: i64,
    limit: i64,
) -> StoreResult<Vec<crate::store::StoredText>> {
    Ok(sqlx::query_as::<_, crate::store::StoredText>(
        "SELECT id, subject, body, category, rules_version, created_at FROM messages \
         WHERE direction = 'in' AND created_at >= $1 ORDER BY id LIMIT $2",
    )
    .bind(since_ms)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// An outbound message and its outbox row, inside the caller's transaction.
pub async fn queue_outbound(
    conn: &mut Conn,
    d: &crate::store::OutboundDraft,
    case_id: Option<CaseId>,
    now_ms: i64,
) -> StoreResult<i64> {
    let id: i64 = sqlx::query_scalar(sql::INSERT_OUTBOUND)
        .bind(d.channel.as_str())
        .bind(&d.driver)
        .bind(&d.from)
        .bind(&d.to)
        .bind(&d.subject)
        .bind(&d.text)
        .bind(case_id)
        .bind(d.kind)
        .bind(d.encoding)
        .bind(d.segments)
        .bind(now_ms)
        .bind(&d.html)
        .bind(&d.headers)
        .bind(&d.render)
        .fetch_one(&mut *conn)
        .await?;
    sqlx::query(sql::INSERT_OUTBOX)
        .bind(id)
        .bind(d.channel.as_str())
        .bind(d.queue_at(now_ms))
        .bind(d.kind.lane().as_i64())
        .execute(&mut *conn)
        .await?;
    Ok(id)
}

/// Queues many outbound messages in one transaction (batches, tests).
pub async fn queue_outbound_bulk(
    pool: &Pool<DB>,
    drafts: &[crate::store::OutboundDraft],
    now_ms: i64,
) -> StoreResult<Vec<i64>> {
    let mut tx = pool.begin_with(BEGIN).await?;
    let mut ids = Vec::with_capacity(drafts.len());
    for d in drafts {
        ids.push(queue_outbound(&mut tx, d, None, now_ms).await?);
    }
    tx.commit().await?;
    Ok(ids)
}

pub async fn queue_reply(
    pool: &Pool<DB>,
    case_id: CaseId,
    d: &crate::store::OutboundDraft,
    by: &str,
    now_ms: i64,
) -> StoreResult<Option<i64>> {
    let mut tx = pool.begin_with(BEGIN).await?;
    let updated = sqlx::query(
        "UPDATE cases SET acked_at = COALESCE(acked_at, $1), answered_at = $1, \
         status = CASE WHEN status = $3 THEN $4 ELSE status END WHERE id = $2",
    )
    .bind(now_ms)
    .bind(case_id)
    .bind(crate::cases::REPLY_MOVES.0)
    .bind(crate::cases::REPLY_MOVES.1)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Ok(None);
    }
    let id = queue_outbound(&mut tx, d, Some(case_id), now_ms).await?;
    sqlx::query(sql::INSERT_CASE_EVENT)
        .bind(case_id)
        .bind(now_ms)
        .bind(crate::domain::CaseEventKind::Reply)
        .bind(format!("message {id} by {by}"))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(id))
}

pub async fn log_contact(
    pool: &Pool<DB>,
    case_id: CaseId,
    channel: &str,
    note: &str,
    by: &str,
    now_ms: i64,
) -> StoreResult<Option<CaseRecord>> {
    let mut tx = pool.begin_with(BEGIN).await?;
    let sql = format!(
        "UPDATE cases SET acked_at = COALESCE(acked_at, $1), answered_at = $1, \
         status = CASE WHEN status = $3 THEN $4 ELSE status END \
         WHERE id = $2 AND status IN ({})",
        active_placeholders(5)
    );
    let updated = bind_active(
        sqlx::query(&sql)
            .bind(now_ms)
            .bind(case_id)
            .bind(crate::cases::REPLY_MOVES.0)
            .bind(crate::cases::REPLY_MOVES.1),
    )
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Ok(None);
    }
    let detail = format!("{channel} by {by}: {note}");
    let case = event_and_case(
        &mut tx,
        case_id,
        now_ms,
        crate::domain::CaseEventKind::Contact,
        &detail,
    )
    .await?;
    tx.commit().await?;
    Ok(case)
}

/// A lifecycle change's effect on the case's clock (inside the caller's transaction).
async fn change_clock(
    conn: &mut Conn,
    case_id: CaseId,
    change: &crate::store::ClockChange,
) -> StoreResult<()> {
    match change {
        crate::store::ClockChange::Keep => {}
        crate::store::ClockChange::Remove => {
            sqlx::query("DELETE FROM sla_clock WHERE case_id = $1")
                .bind(case_id)
                .execute(&mut *conn)
                .await?;
        }
        crate::store::ClockChange::Set {
            step,
            due,
            fired,
            round,
        } => {
            sqlx::query(sql::SET_CLOCK)
                .bind(case_id)
                .bind(step)
                .bind(due)
                .bind(fired)
                .execute(&mut *conn)
                .await?;
            if let Some(r) = round {
                sqlx::query(sql::SET_CLOCK_BASE)
                    .bind(r.base)
                    .bind(case_id)
                    .execute(&mut *conn)
                    .await?;
            }
        }
    }
    Ok(())
}

/// A case event, then the case as it now is (inside the caller's transaction).
async fn event_and_case(
    conn: &mut Conn,
    case_id: CaseId,
    now_ms: i64,
    kind: crate::domain::CaseEventKind,
    detail: &str,
) -> StoreResult<Option<CaseRecord>> {
    sqlx::query(sql::INSERT_CASE_EVENT)
        .bind(case_id)
        .bind(now_ms)
        .bind(kind)
        .bind(detail)
        .execute(&mut *conn)
        .await?;
    let sql = format!("SELECT {CASE_COLUMNS} FROM cases WHERE id = $1");
    Ok(sqlx::query_as::<_, CaseRecord>(&sql)
        .bind(case_id)
        .fetch_optional(&mut *conn)
        .await?)
}

/// A lifecycle change guarded by the status the caller saw.
pub async fn transition(
    pool: &Pool<DB>,
    t: &crate::store::Transition,
) -> StoreResult<Option<CaseRecord>> {
    let mut tx = pool.begin_with(BEGIN).await?;
    let updated = sqlx::query(
        "UPDATE cases SET status = $1, \
         resolved_at = CASE WHEN $2 THEN $3 ELSE resolved_at END, \
         resolution_code = CASE WHEN $2 AND $3 IS NULL THEN NULL ELSE resolution_code END, \
         assignee = COALESCE($4, assignee) WHERE id = $5 AND status = $6",
    )
    .bind(t.to)
    .bind(t.resolved_at.is_some())
    .bind(t.resolved_at.flatten())
    .bind(&t.assignee)
    .bind(t.case_id)
    .bind(t.from)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Ok(None);
    }
    change_clock(&mut tx, t.case_id, &t.clock).await?;
    let case = event_and_case(&mut tx, t.case_id, t.now_ms, t.event, &t.detail).await?;
    tx.commit().await?;
    Ok(case)
}

pub async fn escalate_case(
    pool: &Pool<DB>,
    e: &crate::store::Escalation<'_>,
) -> StoreResult<Option<CaseRecord>> {
    let mut tx = pool.begin_with(BEGIN).await?;
    // Escalating is allowed from every active status (`cases::allowed`).
    let sql = format!(
        "UPDATE cases SET tier = $1 WHERE id = $2 AND tier = $3 AND status IN ({})",
        active_placeholders(4)
    );
    let updated = bind_active(
        sqlx::query(&sql)
            .bind(e.tier_after)
            .bind(e.case_id)
            .bind(e.tier_before),
    )
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Ok(None);
    }
    for d in e.notices {
        queue_outbound(&mut tx, d, Some(e.case_id), e.now_ms).await?;
    }
    let case = event_and_case(
        &mut tx,
        e.case_id,
        e.now_ms,
        crate::domain::CaseEventKind::Escalated,
        &e.detail,
    )
    .await?;
    tx.commit().await?;
    Ok(case)
}

pub async fn insert_rule_version(
    pool: &Pool<DB>,
    v: &crate::store::NewRuleVersion,
) -> StoreResult<i64> {
    if let Some(id) = sqlx::query_scalar::<_, i64>(
        "SELECT id FROM rule_versions WHERE sha = $1 ORDER BY id LIMIT 1",
    )
    .bind(&v.sha)
    .fetch_optional(pool)
    .await?
    {
        return Ok(id);
    }
    Ok(sqlx::query_scalar(
        "INSERT INTO rule_versions (created_at, created_by, sha, source, note, diff, macro_f1) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(v.created_at)
    .bind(&v.created_by)
    .bind(&v.sha)
    .bind(&v.source)
    .bind(&v.note)
    .bind(&v.diff)
    .bind(v.macro_f1)
    .fetch_one(pool)
    .await?)
}

pub async fn activate_rule_version(
    pool: &Pool<DB>,
    id: i64,
    by: &str,
    now_ms: i64,
) -> StoreResult<()> {
    sqlx::query("INSERT INTO rule_activations (version_id, at, by_whom) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(now_ms)
        .bind(by)
        .execute(pool)
        .await?;
    Ok(())
}

const RULE_COLUMNS: &str =
    "v.id, v.created_at, v.created_by, v.sha, v.source, v.note, v.diff, v.macro_f1";

pub async fn active_rule_version(
    pool: &Pool<DB>,
) -> StoreResult<Option<crate::store::RuleVersion>> {
    let sql = format!(
        "SELECT {RULE_COLUMNS} FROM rule_versions v JOIN rule_activations a ON a.version_id = v.id \
         ORDER BY a.id DESC LIMIT 1"
    );
    Ok(sqlx::query_as(&sql).fetch_optional(pool).await?)
}

pub async fn rule_version(
    pool: &Pool<DB>,
    id: i64,
) -> StoreResult<Option<crate::store::RuleVersion>> {
    let sql = format!("SELECT {RULE_COLUMNS} FROM rule_versions v WHERE v.id = $1");
    Ok(sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?)
}

pub async fn rule_versions(pool: &Pool<DB>) -> StoreResult<Vec<crate::store::RuleVersionSummary>> {
    let active: Option<i64> =
        sqlx::query_scalar("SELECT version_id FROM rule_activations ORDER BY id DESC LIMIT 1")
            .fetch_optional(pool)
            .await?;
    type Row = (
        i64,
        i64,
        String,
        String,
        Option<String>,
        Option<f64>,
        Option<i64>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT v.id, v.created_at, v.created_by, v.sha, v.note, v.macro_f1, \
         (SELECT MAX(a.at) FROM rule_activations a WHERE a.version_id = v.id) \
         FROM rule_versions v ORDER BY v.id DESC",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(id, created_at, created_by, sha, note, macro_f1, activated_at)| {
                crate::store::RuleVersionSummary {
                    id,
                    created_at,
                    created_by,
                    sha,
                    note,
                    macro_f1,
                    activated_at,
                    active: active == Some(id),
                }
            },
        )
        .collect())
}

pub async fn insert_api_token(
    pool: &Pool<DB>,
    name: &str,
    role: &str,
    hash: &str,
    now_ms: i64,
) -> StoreResult<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO api_tokens (name, role, token_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(name)
    .bind(role)
    .bind(hash)
    .bind(now_ms)
    .fetch_one(pool)
    .await?)
}

pub async fn api_token(pool: &Pool<DB>, hash: &str) -> StoreResult<Option<(String, String)>> {
    Ok(sqlx::query_as(
        "SELECT name, role FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
    )
    .bind(hash)
    .fetch_optional(pool)
    .await?)
}

pub async fn await_survey(
    pool: &Pool<DB>,
    channel: &str,
    address: &str,
    survey: &str,
    case_id: Option<i64>,
    now_ms: i64,
    expires_ms: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO survey_waits (channel, address, survey, case_id, sent_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (channel, address) DO UPDATE SET survey = excluded.survey, case_id = excluded.case_id, \
         sent_at = excluded.sent_at, expires_at = excluded.expires_at",
    )
    .bind(channel)
    .bind(address)
    .bind(survey)
    .bind(case_id)
    .bind(now_ms)
    .bind(expires_ms)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn survey_answers(pool: &Pool<DB>, survey: &str) -> StoreResult<Vec<(String, String)>> {
    Ok(
        sqlx::query_as("SELECT address, answer FROM survey_answers WHERE survey = $1 ORDER BY id")
            .bind(survey)
            .fetch_all(pool)
            .await?,
    )
}

pub async fn sla_rows(
    pool: &Pool<DB>,
    from_ms: i64,
    to_ms: i64,
) -> StoreResult<Vec<crate::sla::report::SlaRow>> {
    Ok(sqlx::query_as(
        "SELECT c.category, c.tier, c.opened_at, c.acked_at, c.ack_due_at, c.resolved_at, \
         c.resolve_due_at, \
         (SELECT COUNT(*) FROM case_events e WHERE e.case_id = c.id AND e.kind = 'sla_breach') AS breaches, \
         (SELECT a.answer FROM survey_answers a WHERE a.case_id = c.id ORDER BY a.id DESC LIMIT 1) AS satisfaction \
         FROM cases c WHERE c.opened_at >= $1 AND c.opened_at < $2",
    )
    .bind(from_ms)
    .bind(to_ms)
    .fetch_all(pool)
    .await?)
}

pub async fn next_sla_due(pool: &Pool<DB>, now_ms: i64) -> StoreResult<Option<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT due_at FROM sla_clock WHERE due_at IS NOT NULL \
         AND (lease_until IS NULL OR lease_until < $1) ORDER BY due_at LIMIT 1",
    )
    .bind(now_ms)
    .fetch_optional(pool)
    .await?)
}

/// The clocks of `ids` with their cases (after a claim), 500 ids a query. The ids are
/// integers from the claim, written into the statement.
pub async fn due_clocks(pool: &Pool<DB>, ids: &[i64]) -> StoreResult<Vec<crate::store::DueClock>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let list = chunk
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!(
            "SELECT k.case_id, k.step, k.due_at, k.fired, c.category, c.status, c.tier, \
             COALESCE(c.sla_base_at, c.opened_at) AS opened_at, \
             CAST(CASE WHEN c.acked_at IS NULL OR COALESCE(c.answered_at, 0) < COALESCE(c.sla_base_at, 0) THEN 0 ELSE 1 END AS BIGINT) AS acked, \
             c.customer, c.channel, c.ack_due_at, c.resolve_due_at \
             FROM sla_clock k JOIN cases c ON c.id = k.case_id \
             WHERE k.case_id IN ({list}) AND k.due_at IS NOT NULL"
        );
        out.extend(
            sqlx::query_as::<_, crate::store::DueClock>(&sql)
                .fetch_all(pool)
                .await?,
        );
    }
    out.sort_by_key(|c| (c.due_at, c.case_id));
    Ok(out)
}

pub async fn outbox_depth(pool: &Pool<DB>) -> StoreResult<Vec<(String, i64, i64)>> {
    Ok(sqlx::query_as(
        "SELECT channel, CAST(lane AS BIGINT), COUNT(*) FROM outbox GROUP BY channel, lane",
    )
    .fetch_all(pool)
    .await?)
}

pub async fn opted_out(pool: &Pool<DB>, channel: &str, address: &str) -> StoreResult<bool> {
    let row: Option<(Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT opted_out_at, opted_in_at FROM contacts WHERE channel = $1 AND address = $2",
    )
    .bind(channel)
    .bind(address)
    .fetch_optional(pool)
    .await?;
    Ok(matches!(row, Some((Some(out), inn)) if inn.is_none_or(|i| i < out)))
}
