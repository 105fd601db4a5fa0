//! SQLite engine: WAL, `synchronous = FULL`, and one writer thread that commits the intake of
//! many concurrent requests in one transaction (group commit, `sqlite_writer.rs`), so one
//! fsync serves a batch. Other writes (outbox leases, send results, delivery reports) are short
//! `BEGIN IMMEDIATE` transactions on the sqlx pool; SQLite serialises them behind the writer
//! with `busy_timeout`.

use super::{IntakeOutcome, IntakeRequest, OutboxItem, StoreError, StoreResult};
use crate::domain::Channel;
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

mod ops {
    super::super::ops::common_ops!(sqlx::Sqlite, sqlx::SqliteConnection, "BEGIN IMMEDIATE");
}

use super::sqlite_writer::Job;

pub struct SqliteStore {
    pool: SqlitePool,
    writer: mpsc::Sender<Job>,
}

impl SqliteStore {
    /// Opens (creating file and directory) a SQLite database.
    ///
    /// # Errors
    /// Bad URL, unwritable directory, unopenable file.
    pub async fn open(
        url: &str,
        max_connections: u32,
        group_commit_max: usize,
    ) -> anyhow::Result<SqliteStore> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| anyhow::anyhow!("database.url: {e}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let path = opts.get_filename().to_path_buf();
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
            && path.as_os_str() != ":memory:"
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                anyhow::anyhow!("creating database directory {}: {e}", dir.display())
            })?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts.clone())
            .await
            .map_err(|e| anyhow::anyhow!("opening SQLite database {}: {e}", path.display()))?;
        let writer = super::sqlite_writer::start(&path, group_commit_max)?;
        Ok(SqliteStore { pool, writer })
    }
}

impl SqliteStore {
    pub(crate) async fn do_migrate(&self) -> StoreResult<()> {
        sqlx::migrate!("src/store/migrations/sqlite")
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Other(e.to_string()))
    }

    pub(crate) async fn do_intake(&self, req: IntakeRequest) -> StoreResult<IntakeOutcome> {
        let (tx, rx) = oneshot::channel();
        self.send_job(Job::Intake(Box::new(req), tx)).await?;
        rx.await
            .map_err(|_| StoreError::Unavailable("SQLite writer dropped the request".into()))?
    }

    /// Send results go through the writer too, so they share its group commit (one fsync for
    /// many) instead of one `BEGIN IMMEDIATE` transaction each.
    pub(crate) async fn do_send_update(&self, u: crate::store::SendUpdate) -> StoreResult<()> {
        let (tx, rx) = oneshot::channel();
        self.send_job(Job::Send(u, tx)).await?;
        rx.await
            .map_err(|_| StoreError::Unavailable("SQLite writer dropped the request".into()))?
    }

    /// SLA steps go through the writer: its statements cost microseconds, not a thread hop
    /// each, and share the group commit.
    pub(crate) async fn do_apply_sla(
        &self,
        items: &[crate::store::SlaApply],
    ) -> StoreResult<Vec<bool>> {
        let (tx, rx) = oneshot::channel();
        self.send_job(Job::Sla(items.to_vec(), tx)).await?;
        rx.await
            .map_err(|_| StoreError::Unavailable("SQLite writer dropped the request".into()))?
    }

    /// `/readyz`: the writer thread must be there to take intakes.
    pub(crate) fn engine_ready(&self) -> StoreResult<()> {
        if self.writer.is_closed() {
            return Err(StoreError::Unavailable(
                "the SQLite writer thread stopped".into(),
            ));
        }
        Ok(())
    }

    async fn send_job(&self, job: Job) -> StoreResult<()> {
        self.writer
            .send(job)
            .await
            .map_err(|_| StoreError::Unavailable("SQLite writer stopped".into()))
    }

    pub(crate) async fn do_claim_sla(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "UPDATE sla_clock SET lease_until = $1 WHERE case_id IN (SELECT case_id FROM sla_clock \
             WHERE due_at <= $2 AND (lease_until IS NULL OR lease_until < $2) \
             ORDER BY due_at LIMIT $3) RETURNING case_id",
        )
        .bind(now_ms + lease_ms)
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    pub(crate) async fn do_claim(
        &self,
        channel: Channel,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<OutboxItem>> {
        let mut claimed: Vec<(i64, i64, Option<i64>)> = Vec::new();
        for lane in crate::domain::Lane::ALL {
            let quota = super::lane_quota(lane, limit, claimed.len() as i64);
            let mut rows: Vec<(i64, i64, Option<i64>)> = sqlx::query_as(
                "UPDATE outbox SET lease_until = $1 WHERE message_id IN (SELECT message_id FROM outbox \
                 WHERE channel = $2 AND lane = $5 AND not_before <= $3 \
                 AND (lease_until IS NULL OR lease_until < $3) \
                 ORDER BY not_before, message_id LIMIT $4) RETURNING message_id, attempts, not_after",
            )
            .bind(now_ms + lease_ms)
            .bind(channel.as_str())
            .bind(now_ms)
            .bind(quota)
            .bind(lane.as_i64())
            .fetch_all(&self.pool)
            .await?;
            rows.sort_unstable();
            claimed.extend(rows);
        }
        let mut items = Vec::with_capacity(claimed.len());
        for (id, attempts, not_after) in claimed {
            let row: Option<super::OutboxRow> = sqlx::query_as(
                "SELECT id AS message_id, $2 AS attempts, from_addr, to_addr, subject, body, body_html, headers, kind, \
                 $3 AS not_after FROM messages WHERE id = $1",
            )
            .bind(id)
            .bind(attempts)
            .bind(not_after)
            .fetch_optional(&self.pool)
            .await?;
            items.extend(row.map(|r| r.into_item(channel)));
        }
        // Claim order: lane by lane, oldest first within a lane.
        Ok(items)
    }
}

super::ops::impl_store!(SqliteStore);
