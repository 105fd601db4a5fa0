//! PostgreSQL engine, for several instances behind a load balancer. Intake runs in its own
//! transaction per request; an advisory lock on the customer serialises concurrent messages of
//! one customer (dedupe and reply-to-case decisions), and outbox leases use
//! `FOR UPDATE SKIP LOCKED` so instances share one queue.

use super::{IntakeOutcome, IntakeRequest, OutboxItem, StoreError, StoreResult};
use crate::domain::Channel;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::str::FromStr;
use std::time::Duration;

mod ops {
    super::super::ops::common_ops!(sqlx::Postgres, sqlx::PgConnection, "BEGIN");
}

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
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("{}:{}", req.msg.channel.as_str(), req.msg.from))
            .execute(&mut *tx)
            .await?;
        let outcome = ops::intake_one(&mut tx, &req).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    pub(crate) fn engine_ready(&self) -> StoreResult<()> {
        Ok(())
    }

    pub(crate) async fn do_send_update(&self, u: crate::store::SendUpdate) -> StoreResult<()> {
        use crate::store::SendUpdate;
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

    pub(crate) async fn do_claim(
        &self,
        channel: Channel,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<OutboxItem>> {
        let mut items = Vec::new();
        for lane in crate::domain::Lane::ALL {
            let quota = super::lane_quota(lane, limit, items.len() as i64);
            let rows: Vec<super::OutboxRow> = sqlx::query_as(
                "WITH due AS (SELECT message_id FROM outbox WHERE channel = $1 AND lane = $5 AND not_before <= $2 \
                   AND (lease_until IS NULL OR lease_until < $2) ORDER BY not_before, message_id LIMIT $3 \
                   FOR UPDATE SKIP LOCKED), \
                 claimed AS (UPDATE outbox o SET lease_until = $4 FROM due WHERE o.message_id = due.message_id \
                   RETURNING o.message_id, o.attempts) \
                 SELECT c.message_id, c.attempts, m.from_addr, m.to_addr, m.subject, m.body, m.body_html, m.headers, m.kind \
                 FROM claimed c JOIN messages m ON m.id = c.message_id ORDER BY c.message_id",
            )
            .bind(channel.as_str())
            .bind(now_ms)
            .bind(quota)
            .bind(now_ms + lease_ms)
            .bind(lane.as_i64())
            .fetch_all(&self.pool)
            .await?;
            items.extend(rows.into_iter().map(|r| r.into_item(channel)));
        }
        Ok(items)
    }
}

super::ops::impl_store!(PgStore);
