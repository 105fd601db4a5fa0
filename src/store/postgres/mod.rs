//! PostgreSQL engine, for several instances behind a load balancer. Intake runs in its own
//! transaction per request; an advisory lock on the customer serialises concurrent messages of
//! one customer (dedupe and reply-to-case decisions), and outbox leases use
//! `FOR UPDATE SKIP LOCKED` so instances share one queue.

use super::{
    CaseProgress, IntakeOutcome, IntakeRequest, OutboundDraft, OutboxItem, StoreError, StoreResult,
    sql,
};
use crate::domain::{CampaignId, CaseId, CaseStatus, Category, Channel, MessageId};
use crate::intake::decide::{
    CaseLookup, InboundRow, IntakeTx, NewCase, OpenCase, SlaState, SurveyAnswer, decide,
};
use sqlx::PgConnection;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::str::FromStr;
use std::time::Duration;

// This engine's types for the shared sqlx code (`store/shared`), compiled once per engine.
type DB = sqlx::Postgres;
type Conn = sqlx::PgConnection;
type Engine = PgStore;
/// READ COMMITTED whatever the server's default: the advisory locks and the delivery report's
/// compare-and-set rely on each statement seeing what committed before it.
const BEGIN: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";
/// Serialises the transactions of one key (a concatenated SMS's part group): READ COMMITTED
/// would let two parts each miss the other and neither join the group.
const LOCK_KEY: Option<&str> = Some("SELECT pg_advisory_xact_lock(hashtextextended($1, 1))");
#[path = "../shared/ops.rs"]
#[allow(clippy::duplicate_mod, reason = "one file, compiled per engine")]
mod ops;
#[path = "../shared/store_impl.rs"]
#[allow(clippy::duplicate_mod, reason = "one file, compiled per engine")]
mod store_impl;

pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects a pool.
    ///
    /// # Errors
    /// Bad URL or unreachable server (the message names neither user nor password).
    pub async fn open(url: &str, max_connections: u32) -> anyhow::Result<PgStore> {
        let opts =
            PgConnectOptions::from_str(url).map_err(|e| anyhow::anyhow!("database.url: {e}"))?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await
            .map_err(|e| anyhow::anyhow!("connecting to PostgreSQL: {e}"))?;
        Ok(PgStore { pool })
    }
}

impl PgStore {
    pub(crate) async fn do_migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("src/store/migrations/postgres")
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Other(e.to_string()))
    }

    pub(crate) async fn do_intake(&self, req: IntakeRequest) -> StoreResult<IntakeOutcome> {
        let mut tx = self.pool.begin_with(BEGIN).await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!(
                "{}:{}",
                req.msg.channel.as_str(),
                req.msg.from.as_str()
            ))
            .execute(&mut *tx)
            .await?;
        let outcome = decide(&mut PgIntake(&mut tx), &req).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    pub(crate) async fn do_apply_sla(
        &self,
        items: &[crate::store::SlaApply],
    ) -> StoreResult<Vec<bool>> {
        // Each item is a savepoint; PostgreSQL keeps 64 subtransactions per transaction in
        // shared memory before it spills, so commit every 50.
        let mut done = Vec::with_capacity(items.len());
        for chunk in items.chunks(50) {
            let mut tx = self.pool.begin_with(BEGIN).await?;
            done.extend(crate::sla::apply::apply_all(&mut PgIntake(&mut tx), chunk).await?);
            tx.commit().await?;
        }
        Ok(done)
    }

    pub(crate) fn engine_ready(&self) -> StoreResult<()> {
        Ok(())
    }

    pub(crate) async fn do_dispatch(
        &self,
        d: crate::campaigns::apply::Dispatch,
    ) -> StoreResult<u64> {
        let mut tx = self.pool.begin_with(BEGIN).await?;
        let n = crate::campaigns::apply::dispatch(&mut PgIntake(&mut tx), &d).await?;
        tx.commit().await?;
        Ok(n)
    }

    pub(crate) async fn do_apply_dlr(
        &self,
        dlr: &crate::store::DlrUpdate,
    ) -> StoreResult<Option<MessageId>> {
        let mut tx = self.pool.begin_with(BEGIN).await?;
        let id = crate::outbound::report::apply(&mut PgIntake(&mut tx), dlr).await?;
        tx.commit().await?;
        Ok(id)
    }

    pub(crate) async fn do_withdraw_opted_out(
        &self,
        ids: &[MessageId],
        now_ms: i64,
    ) -> StoreResult<Vec<MessageId>> {
        let mut tx = self.pool.begin_with(BEGIN).await?;
        let gone = crate::campaigns::apply::withdraw_opted_out(&mut PgIntake(&mut tx), ids, now_ms)
            .await?;
        tx.commit().await?;
        Ok(gone)
    }

    /// The rendered text is written first, on its own: should the result then fail to be
    /// written, the lease expires and the send repeats with that stored text (no inputs left
    /// to render again), which is what it sent.
    pub(crate) async fn do_send_update(
        &self,
        u: crate::store::SendUpdate,
        rendered: Option<crate::store::Rendered>,
    ) -> StoreResult<()> {
        use crate::store::SendUpdate;
        if let Some(r) = rendered {
            sqlx::query(sql::SET_RENDERED)
                .bind(r.text)
                .bind(r.subject)
                .bind(r.html)
                .bind(r.encoding)
                .bind(r.segments)
                .bind(r.message_id)
                .execute(&self.pool)
                .await?;
        }
        match u {
            SendUpdate::Complete {
                message_id,
                provider_id,
                now_ms,
            } => ops::complete_send(&self.pool, message_id, provider_id.as_deref(), now_ms).await,
            SendUpdate::Retry {
                message_id,
                next_at_ms,
                error,
                now_ms,
            } => ops::retry_send(&self.pool, message_id, next_at_ms, &error, now_ms).await,
            SendUpdate::Fail {
                message_id,
                error,
                now_ms,
            } => ops::fail_send(&self.pool, message_id, &error, now_ms).await,
        }
    }

    /// Several instances claim clocks side by side: `SKIP LOCKED` hands each a different set.
    pub(crate) async fn do_claim_sla(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "WITH due AS (SELECT case_id FROM sla_clock WHERE due_at <= $2 \
               AND (lease_until IS NULL OR lease_until < $2) ORDER BY due_at LIMIT $3 \
               FOR UPDATE SKIP LOCKED) \
             UPDATE sla_clock k SET lease_until = $1 FROM due WHERE k.case_id = due.case_id \
             RETURNING k.case_id",
        )
        .bind(now_ms + lease_ms)
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The claim and the bucket it draws from, in one transaction; instances draw from the
    /// bucket one at a time (its row is locked), and claim different rows (`SKIP LOCKED`).
    pub(crate) async fn do_claim(&self, q: super::ClaimQuery) -> StoreResult<Vec<OutboxItem>> {
        let channel = q.channel;
        let mut tx = self.pool.begin_with(BEGIN).await?;
        let mut limit = q.limit;
        let mut tokens = None;
        if let Some(rate) = q.rate {
            sqlx::query(
                "INSERT INTO send_rates (channel, tokens, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (channel) DO NOTHING",
            )
            .bind(channel.as_str())
            .bind(rate.burst)
            .bind(q.now_ms)
            .execute(&mut *tx)
            .await?;
            let last: Option<(f64, i64)> =
                sqlx::query_as(&format!("{} FOR UPDATE", sql::SEND_RATE))
                    .bind(channel.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
            let t = rate.available(last, q.now_ms);
            limit = rate.grant(t, limit);
            if limit <= 0 {
                tx.commit().await?;
                return Ok(Vec::new());
            }
            // A clock behind the last claimer's never moves the bucket back in time.
            tokens = Some((t, last.map_or(q.now_ms, |l: (f64, i64)| l.1.max(q.now_ms))));
        }
        let mut items = Vec::new();
        for lane in crate::domain::Lane::ALL {
            let quota = super::lane_quota(lane, limit, items.len() as i64);
            let rows: Vec<super::OutboxRow> = sqlx::query_as(
                "WITH due AS (SELECT message_id FROM outbox WHERE channel = $1 AND lane = $5 AND not_before <= $2 \
                   AND (lease_until IS NULL OR lease_until < $2) ORDER BY not_before, message_id LIMIT $3 \
                   FOR UPDATE SKIP LOCKED), \
                 claimed AS (UPDATE outbox o SET lease_until = $4 FROM due WHERE o.message_id = due.message_id \
                   RETURNING o.message_id, o.attempts, o.not_after) \
                 SELECT c.message_id, c.attempts, m.from_addr, m.to_addr, m.subject, m.body, m.body_html, m.headers, m.kind, m.render, c.not_after \
                 FROM claimed c JOIN messages m ON m.id = c.message_id ORDER BY c.message_id",
            )
            .bind(channel.as_str())
            .bind(q.now_ms)
            .bind(quota)
            .bind(q.now_ms + q.lease_ms)
            .bind(lane.as_i64())
            .fetch_all(&mut *tx)
            .await?;
            for row in rows {
                match row.into_item(channel) {
                    Ok(item) => items.push(item),
                    Err(u) => {
                        tracing::error!(message_id = u.message_id.get(), error = %u.error, "outbound message failed at its claim");
                        ops::fail_send_in(&mut tx, u.message_id, &u.error, q.now_ms).await?;
                    }
                }
            }
        }
        if let Some(t) = tokens {
            // As on SQLite: the lower lanes' share may take the bucket below zero.
            sqlx::query(sql::SET_SEND_RATE)
                .bind(channel.as_str())
                .bind(t.0 - items.len() as f64)
                .bind(t.1)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(items)
    }

    pub(crate) async fn do_lease_campaign(
        &self,
        campaign_id: i64,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> StoreResult<bool> {
        let n = sqlx::query(sql::LEASE_CAMPAIGN)
            .bind(owner)
            .bind(until_ms)
            .bind(campaign_id)
            .bind(now_ms)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n == 1)
    }
}

/// [`IntakeTx`] on the request's PostgreSQL transaction, with the statement text of `sql.rs`
/// that the SQLite writer runs too.
struct PgIntake<'c>(&'c mut PgConnection);

impl IntakeTx for PgIntake<'_> {
    async fn duplicate_by_key(&mut self, key: &str) -> StoreResult<Option<MessageId>> {
        Ok(sqlx::query_scalar(sql::DUPLICATE_BY_KEY)
            .bind(key)
            .fetch_optional(&mut *self.0)
            .await?)
    }

    async fn duplicate_by_hash(
        &mut self,
        hash: &str,
        since_ms: i64,
    ) -> StoreResult<Option<MessageId>> {
        Ok(
            sqlx::query_scalar::<_, Option<MessageId>>(sql::DUPLICATE_BY_HASH)
                .bind(hash)
                .bind(since_ms)
                .fetch_one(&mut *self.0)
                .await?,
        )
    }

    async fn survey_wait(
        &mut self,
        channel: Channel,
        address: &str,
        now_ms: i64,
    ) -> StoreResult<Option<(String, Option<CaseId>)>> {
        Ok(sqlx::query_as(sql::SURVEY_WAIT)
            .bind(channel.as_str())
            .bind(address)
            .bind(now_ms)
            .fetch_optional(&mut *self.0)
            .await?)
    }

    async fn case_progress(
        &mut self,
        case_id: CaseId,
        customer: &str,
    ) -> StoreResult<Option<CaseProgress>> {
        Ok(sqlx::query_as(sql::CASE_PROGRESS)
            .bind(case_id)
            .bind(customer)
            .fetch_optional(&mut *self.0)
            .await?)
    }

    async fn open_case(&mut self, lookup: CaseLookup<'_>) -> StoreResult<Option<OpenCase>> {
        let row: Option<(CaseId, Category, crate::domain::Tier, CaseStatus)> = match lookup {
            CaseLookup::OfOurMessage(id) => {
                sqlx::query_as(sql::CASE_OF_OUR_MESSAGE)
                    .bind(id)
                    .fetch_optional(&mut *self.0)
                    .await?
            }
            CaseLookup::Numbered { case_id, customer } => {
                sqlx::query_as(sql::CASE_OF_CUSTOMER)
                    .bind(case_id)
                    .bind(customer)
                    .fetch_optional(&mut *self.0)
                    .await?
            }
            CaseLookup::Recent {
                customer,
                channel,
                since_ms,
            } => {
                let cases: Vec<(CaseId, Category, crate::domain::Tier, CaseStatus, i64)> =
                    sqlx::query_as(sql::RECENT_OPEN_CASES)
                        .bind(customer)
                        .bind(channel.as_str())
                        .bind(since_ms)
                        .fetch_all(&mut *self.0)
                        .await?;
                return Ok(crate::intake::decide::latest(cases.into_iter().map(
                    |(id, category, tier, status, last)| {
                        (
                            last,
                            OpenCase {
                                id,
                                category,
                                tier,
                                status,
                            },
                        )
                    },
                )));
            }
        };
        Ok(row.map(|(id, category, tier, status)| OpenCase {
            id,
            category,
            tier,
            status,
        }))
    }

    async fn touch_case(
        &mut self,
        case_id: CaseId,
        now_ms: i64,
        category: Category,
        tier: crate::domain::Tier,
    ) -> StoreResult<()> {
        sqlx::query(sql::TOUCH_CASE)
            .bind(now_ms)
            .bind(category.as_str())
            .bind(tier)
            .bind(case_id)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn case_event(
        &mut self,
        case_id: CaseId,
        now_ms: i64,
        kind: crate::domain::CaseEventKind,
        detail: &str,
    ) -> StoreResult<()> {
        sqlx::query(sql::INSERT_CASE_EVENT)
            .bind(case_id)
            .bind(now_ms)
            .bind(kind)
            .bind(detail)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn insert_case(&mut self, c: &NewCase<'_>) -> StoreResult<CaseId> {
        Ok(sqlx::query_scalar(sql::INSERT_CASE)
            .bind(c.channel.as_str())
            .bind(c.customer)
            .bind(c.category.as_str())
            .bind(c.tier)
            .bind(c.lang)
            .bind(c.subject)
            .bind(c.rules_version)
            .bind(c.now_ms)
            .bind(c.ack_due_ms)
            .bind(c.resolve_due_ms)
            .bind(c.city)
            .bind(c.linked_case_id)
            .fetch_one(&mut *self.0)
            .await?)
    }

    async fn insert_inbound(&mut self, row: &InboundRow<'_>) -> StoreResult<MessageId> {
        let (req, m) = (row.req, &row.req.msg);
        let (dedupe_key, content_hash) = row.dedupe();
        Ok(sqlx::query_scalar(sql::INSERT_INBOUND)
            .bind(m.channel.as_str())
            .bind(m.dialect)
            .bind(&m.external_id)
            .bind(dedupe_key)
            .bind(content_hash)
            .bind(&m.from)
            .bind(&m.to)
            .bind(&m.subject)
            .bind(&m.text)
            .bind(&m.raw)
            .bind(req.category.as_str())
            .bind(row.intent.as_str())
            .bind(&req.rules_version)
            .bind(row.case_id)
            .bind(req.now_ms)
            .fetch_one(&mut *self.0)
            .await?)
    }

    async fn survey_answer(&mut self, a: &SurveyAnswer<'_>) -> StoreResult<()> {
        sqlx::query(sql::INSERT_SURVEY_ANSWER)
            .bind(a.survey)
            .bind(a.channel.as_str())
            .bind(a.address)
            .bind(a.case_id)
            .bind(a.answer)
            .bind(a.message_id)
            .bind(a.now_ms)
            .execute(&mut *self.0)
            .await?;
        sqlx::query(sql::DELETE_SURVEY_WAIT)
            .bind(a.channel.as_str())
            .bind(a.address)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn set_consent(
        &mut self,
        channel: Channel,
        address: &str,
        opted_out: bool,
        now_ms: i64,
        message_id: MessageId,
    ) -> StoreResult<()> {
        sqlx::query(sql::UPSERT_CONSENT)
            .bind(channel.as_str())
            .bind(address)
            .bind(opted_out.then_some(now_ms))
            .bind((!opted_out).then_some(now_ms))
            .bind(message_id)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn email_acks_since(&mut self, to: &str, since_ms: i64) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(sql::EMAIL_ACKS_SINCE)
            .bind(to)
            .bind(since_ms)
            .fetch_one(&mut *self.0)
            .await?)
    }

    async fn sla_state(&mut self, case_id: CaseId) -> StoreResult<Option<SlaState>> {
        let row: Option<(
            i64,
            i64,
            i64,
            i64,
            crate::domain::Tier,
            Category,
            crate::domain::CaseStatus,
        )> = sqlx::query_as(sql::SLA_STATE)
            .bind(case_id)
            .fetch_optional(&mut *self.0)
            .await?;
        Ok(row.map(
            |(fired, answered, opened_ms, has_clock, tier, category, status)| SlaState {
                fired,
                answered: answered != 0,
                opened_ms,
                has_clock: has_clock != 0,
                tier,
                category,
                status,
            },
        ))
    }

    async fn suppress_queued(
        &mut self,
        channel: Channel,
        address: &str,
        now_ms: i64,
    ) -> StoreResult<()> {
        sqlx::query(sql::SUPPRESS_QUEUED_RECIPIENTS)
            .bind(address)
            .bind(channel.as_str())
            .bind(now_ms)
            .execute(&mut *self.0)
            .await?;
        sqlx::query(sql::SUPPRESS_QUEUED_MESSAGES)
            .bind(now_ms)
            .bind(address)
            .bind(channel.as_str())
            .execute(&mut *self.0)
            .await?;
        sqlx::query(sql::DELETE_SUPPRESSED_OUTBOX)
            .bind(address)
            .bind(channel.as_str())
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn set_status(
        &mut self,
        case_id: CaseId,
        status: CaseStatus,
        tier: crate::domain::Tier,
        now_ms: i64,
        forget_resolution: bool,
    ) -> StoreResult<()> {
        sqlx::query(sql::SET_CASE_STATUS)
            .bind(status)
            .bind(tier)
            .bind(now_ms)
            .bind(forget_resolution)
            .bind(case_id)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn finish_visit(
        &mut self,
        case_id: CaseId,
        state: &str,
        answer: &str,
        now_ms: i64,
    ) -> StoreResult<()> {
        sqlx::query(sql::FINISH_VISIT)
            .bind(state)
            .bind(answer)
            .bind(now_ms)
            .bind(case_id)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn set_deadlines(
        &mut self,
        case_id: CaseId,
        answer_due_ms: i64,
        resolve_due_ms: i64,
    ) -> StoreResult<()> {
        sqlx::query(sql::SET_DEADLINES)
            .bind(answer_due_ms)
            .bind(resolve_due_ms)
            .bind(case_id)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn set_clock(
        &mut self,
        case_id: CaseId,
        next: Option<(crate::sla::Step, i64)>,
        fired: i64,
    ) -> StoreResult<()> {
        let (step, due) = crate::sla::clock_row(next);
        sqlx::query(sql::SET_CLOCK)
            .bind(case_id)
            .bind(step)
            .bind(due)
            .bind(fired)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn set_clock_base(&mut self, case_id: CaseId, r: &super::Round) -> StoreResult<()> {
        sqlx::query(sql::SET_CLOCK_BASE)
            .bind(r.base)
            .bind(case_id)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn queue_outbound(
        &mut self,
        d: &OutboundDraft,
        case_id: Option<CaseId>,
        now_ms: i64,
    ) -> StoreResult<MessageId> {
        ops::queue_outbound(&mut *self.0, d, case_id, now_ms)
            .await
            .map(MessageId)
    }
}

impl crate::sla::apply::SlaTx for PgIntake<'_> {
    async fn lock_case(&mut self, case_id: CaseId) -> StoreResult<()> {
        sqlx::query(sql::SLA_LOCK_CASE)
            .bind(case_id)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn savepoint(&mut self) -> StoreResult<()> {
        sqlx::query("SAVEPOINT sla_step")
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn rollback_to_savepoint(&mut self) -> StoreResult<()> {
        sqlx::query("ROLLBACK TO SAVEPOINT sla_step")
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn release_savepoint(&mut self) -> StoreResult<()> {
        sqlx::query("RELEASE SAVEPOINT sla_step")
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn move_clock(
        &mut self,
        a: &crate::store::SlaApply,
        next_step: &str,
        next_due: Option<i64>,
    ) -> StoreResult<u64> {
        Ok(sqlx::query(sql::SLA_MOVE_CLOCK)
            .bind(next_step)
            .bind(next_due)
            .bind(a.fired_after)
            .bind(a.case_id)
            .bind(&a.step)
            .bind(a.fired_before)
            .bind(a.due_before)
            .execute(&mut *self.0)
            .await?
            .rows_affected())
    }

    async fn remove_clock(&mut self, a: &crate::store::SlaApply) -> StoreResult<u64> {
        Ok(sqlx::query(sql::SLA_REMOVE_CLOCK)
            .bind(a.case_id)
            .bind(&a.step)
            .bind(a.fired_before)
            .bind(a.due_before)
            .execute(&mut *self.0)
            .await?
            .rows_affected())
    }

    async fn set_tier(&mut self, a: &crate::store::SlaApply) -> StoreResult<u64> {
        Ok(sqlx::query(sql::SLA_SET_TIER)
            .bind(a.tier_after)
            .bind(a.case_id)
            .bind(a.tier_before)
            .execute(&mut *self.0)
            .await?
            .rows_affected())
    }

    async fn release_lease(&mut self, case_id: CaseId) -> StoreResult<()> {
        sqlx::query(sql::SLA_RELEASE_LEASE)
            .bind(case_id)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }
}

impl crate::campaigns::apply::CampaignTx for PgIntake<'_> {
    async fn campaign_status(&mut self, campaign_id: CampaignId) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar(sql::CAMPAIGN_STATUS)
            .bind(campaign_id)
            .fetch_optional(&mut *self.0)
            .await?)
    }

    async fn opted_out_among(&mut self, addresses: &[&str]) -> StoreResult<Vec<(String, String)>> {
        let text = sql::opted_out_among(addresses.len());
        let mut q = sqlx::query_as::<_, (String, String)>(&text);
        for a in addresses {
            q = q.bind(*a);
        }
        Ok(q.fetch_all(&mut *self.0).await?)
    }

    async fn move_recipient(
        &mut self,
        campaign_id: CampaignId,
        seq: i64,
        state: &str,
        reason: Option<&str>,
    ) -> StoreResult<u64> {
        Ok(sqlx::query(sql::RECIPIENT_MOVE)
            .bind(state)
            .bind(reason)
            .bind(campaign_id)
            .bind(seq)
            .execute(&mut *self.0)
            .await?
            .rows_affected())
    }

    async fn set_not_after(&mut self, message_id: MessageId, not_after: i64) -> StoreResult<()> {
        sqlx::query(sql::OUTBOX_NOT_AFTER)
            .bind(not_after)
            .bind(message_id)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn link_recipient(
        &mut self,
        campaign_id: CampaignId,
        seq: i64,
        message_id: MessageId,
    ) -> StoreResult<()> {
        sqlx::query(sql::RECIPIENT_LINK)
            .bind(message_id)
            .bind(campaign_id)
            .bind(seq)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn wait_survey(
        &mut self,
        channel: Channel,
        address: &str,
        survey: &str,
        now_ms: i64,
        expires_ms: i64,
    ) -> StoreResult<()> {
        sqlx::query(sql::CAMPAIGN_SURVEY_WAIT)
            .bind(channel.as_str())
            .bind(address)
            .bind(survey)
            .bind(now_ms)
            .bind(expires_ms)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn message_opted_out(&mut self, message_id: MessageId) -> StoreResult<bool> {
        Ok(sqlx::query_scalar::<_, i64>(sql::MESSAGE_OPTED_OUT)
            .bind(message_id)
            .fetch_optional(&mut *self.0)
            .await?
            .is_some())
    }

    async fn withdraw_message(&mut self, message_id: MessageId, now_ms: i64) -> StoreResult<()> {
        sqlx::query(sql::WITHDRAW_MESSAGE)
            .bind(now_ms)
            .bind(message_id)
            .execute(&mut *self.0)
            .await?;
        sqlx::query(sql::DELETE_OUTBOX)
            .bind(message_id)
            .execute(&mut *self.0)
            .await?;
        sqlx::query(sql::WITHDRAW_RECIPIENT)
            .bind(message_id)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }
}

impl crate::outbound::report::DeliveryTx for PgIntake<'_> {
    async fn outbound_by_id(&mut self, id: MessageId) -> StoreResult<Option<(MessageId, String)>> {
        Ok(sqlx::query_as(sql::OUTBOUND_BY_ID)
            .bind(id)
            .fetch_optional(&mut *self.0)
            .await?)
    }

    async fn outbound_by_provider_id(
        &mut self,
        pid: &str,
    ) -> StoreResult<Option<(MessageId, String)>> {
        Ok(sqlx::query_as(sql::OUTBOUND_BY_PROVIDER_ID)
            .bind(pid)
            .fetch_optional(&mut *self.0)
            .await?)
    }

    async fn insert_report(
        &mut self,
        message_id: Option<MessageId>,
        dlr: &crate::store::DlrUpdate,
    ) -> StoreResult<()> {
        sqlx::query(sql::INSERT_DELIVERY_REPORT)
            .bind(message_id)
            .bind(dlr.now_ms)
            .bind(dlr.status.as_str())
            .bind(&dlr.detail)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn set_delivery_status(
        &mut self,
        id: MessageId,
        status: &str,
        error: Option<&str>,
        now_ms: i64,
        was: &str,
    ) -> StoreResult<u64> {
        Ok(sqlx::query(sql::SET_DELIVERY_STATUS)
            .bind(status)
            .bind(error)
            .bind(now_ms)
            .bind(id)
            .bind(was)
            .execute(&mut *self.0)
            .await?
            .rows_affected())
    }

    async fn drop_from_outbox(&mut self, id: MessageId) -> StoreResult<()> {
        sqlx::query(sql::DELETE_OUTBOX)
            .bind(id)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }
}
