//! SQLite engine: WAL and one writer thread that commits the intake of many concurrent
//! requests in one transaction (group commit, `writer.rs`); a sync thread fsyncs the log
//! after each commit and only then answers its callers (`durable.rs`), so one fsync serves
//! one batch or more, while the writer runs the next. Other writes (outbox leases, send results, delivery reports) are short
//! `BEGIN IMMEDIATE` transactions on the sqlx pool; SQLite serialises them behind the writer
//! with `busy_timeout`.

use super::{IntakeOutcome, IntakeRequest, OutboxItem, StoreError, StoreResult};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::mpsc;

// This engine's types for the shared sqlx code (`store/shared`), compiled once per engine.
type DB = sqlx::Sqlite;
type Conn = sqlx::SqliteConnection;
type Engine = SqliteStore;
const BEGIN: &str = "BEGIN IMMEDIATE";
/// `BEGIN IMMEDIATE` serialises every write transaction already.
const LOCK_KEY: Option<&str> = None;
#[path = "../shared/ops.rs"]
#[allow(clippy::duplicate_mod, reason = "one file, compiled per engine")]
mod ops;
#[path = "../shared/store_impl.rs"]
#[allow(clippy::duplicate_mod, reason = "one file, compiled per engine")]
mod store_impl;

mod checkpoint;
mod durable;
pub(crate) mod pcache;
mod stmts;
mod walbuf;
mod writer;

use writer as sqlite_writer;
use writer::Job;

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
            .foreign_keys(true)
            // The pool's rare writes leave checkpoints to the checkpoint thread too, unless the
            // log is as long as the writer lets it grow (`checkpoint`): SQLite's default (1,000
            // pages) would have them copy up to that many pages inside their own COMMIT.
            .pragma(
                "wal_autocheckpoint",
                checkpoint::Limits::DEFAULT.restart.to_string(),
            );
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
        let writer = sqlite_writer::start(&path, group_commit_max)?;
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
        self.on_writer(Box::new(req), |c, r| sqlite_writer::intake(c, r))
            .await
    }

    /// Send results go through the writer too, so they share its group commit (one fsync for
    /// many) instead of one `BEGIN IMMEDIATE` transaction each.
    pub(crate) async fn do_send_update(
        &self,
        u: crate::store::SendUpdate,
        rendered: Option<crate::store::Rendered>,
    ) -> StoreResult<()> {
        self.on_writer((u, rendered), |c, (u, r)| {
            sqlite_writer::send_update(c, u, r.as_ref())
        })
        .await
    }

    /// SLA steps go through the writer: its statements cost microseconds, not a thread hop
    /// each, and share the group commit.
    pub(crate) async fn do_apply_sla(
        &self,
        items: &[crate::store::SlaApply],
    ) -> StoreResult<Vec<bool>> {
        self.on_writer(items.to_vec(), sqlite_writer::sla).await
    }

    /// A campaign's recipients queued or suppressed, on the writer (its group commit, and no
    /// second connection waiting for the write lock behind it).
    pub(crate) async fn do_dispatch(
        &self,
        d: crate::campaigns::apply::Dispatch,
    ) -> StoreResult<u64> {
        self.on_writer(d, sqlite_writer::dispatch).await
    }

    pub(crate) async fn do_withdraw_opted_out(
        &self,
        ids: &[crate::domain::MessageId],
        now_ms: i64,
    ) -> StoreResult<Vec<crate::domain::MessageId>> {
        self.on_writer((ids.to_vec(), now_ms), sqlite_writer::withdraw)
            .await
    }

    pub(crate) async fn do_apply_dlr(
        &self,
        dlr: &crate::store::DlrUpdate,
    ) -> StoreResult<Option<crate::domain::MessageId>> {
        self.on_writer(dlr.clone(), sqlite_writer::delivery).await
    }

    /// `f(input)` inside the writer's next group transaction; its answer once committed.
    async fn on_writer<I: Send + 'static, O: Send + 'static>(
        &self,
        input: I,
        f: fn(&stmts::WriterDb<'_>, &I) -> StoreResult<O>,
    ) -> StoreResult<O> {
        let (job, rx) = sqlite_writer::task(input, f);
        self.send_job(job).await?;
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

    /// SLA clocks are claimed on the writer too (see `do_claim`).
    pub(crate) async fn do_claim_sla(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<i64>> {
        self.on_writer((now_ms + lease_ms, now_ms, limit), sqlite_writer::claim_sla)
            .await
    }

    /// The outbox claim runs on the writer: a claim on a pool connection would wait for the
    /// write lock behind the writer's group commit (SQLite's busy handler sleeps, up to
    /// 100 ms a try), and the sends behind it with it.
    pub(crate) async fn do_claim(&self, q: super::ClaimQuery) -> StoreResult<Vec<OutboxItem>> {
        self.on_writer(q, sqlite_writer::claim).await
    }

    pub(crate) async fn do_lease_campaign(
        &self,
        campaign_id: i64,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> StoreResult<bool> {
        self.on_writer(
            (campaign_id, owner.to_string(), now_ms, until_ms),
            sqlite_writer::lease_campaign,
        )
        .await
    }
}
