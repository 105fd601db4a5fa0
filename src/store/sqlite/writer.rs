//! The SQLite writer: one OS thread, one rusqlite connection, group commit. It takes every
//! queued job (up to `max`: intakes, and the outbox's send results), runs them in one
//! `BEGIN IMMEDIATE` transaction and hands them to the sync thread (`durable.rs`), which
//! answers each only after the log holding its COMMIT is on disk. If the batch
//! fails, each job is retried alone so one bad message cannot fail its neighbours.
//!
//! Why rusqlite here and sqlx elsewhere: sqlx hands every statement to its own worker thread
//! and back, which on this path (six statements per message) cost more than the statements;
//! a synchronous connection on a dedicated thread more than doubled intake throughput (README,
//! Performance). The intake's decisions are not here: `crate::intake::decide` makes them over
//! [`IntakeTx`], which this file implements with the statement text of `sql.rs` that
//! PostgreSQL runs too. Nothing but SQL runs here: `decide` queues an ack with its template
//! inputs (`AckBuilder::build`), and the outbound worker renders it when it sends it.

use super::stmts::WriterDb;
use crate::domain::{CampaignId, CaseId, CaseStatus, Category, Channel, MessageId};
use crate::intake::decide::{
    CaseLookup, InboundRow, IntakeTx, NewCase, OpenCase, SlaState, SurveyAnswer, decide, run_ready,
};
use crate::store::{
    CaseProgress, IntakeOutcome, IntakeRequest, OutboundDraft, Rendered, SendUpdate, SlaApply,
    StoreError, StoreResult, sql,
};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::path::Path;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// One unit of work for the writer: statements to run inside the group's transaction, and
/// where their answer goes once the transaction committed (or failed).
pub trait Work: Send {
    /// Runs the statements; may run twice (alone, after the group's transaction failed), so
    /// it keeps nothing but its answer.
    fn run(&mut self, c: &WriterDb<'_>) -> StoreResult<()>;
    /// Answers the caller: the output of `run` if the transaction committed, else the error.
    fn answer(self: Box<Self>, r: StoreResult<()>);
}

/// A job for the writer.
pub type Job = Box<dyn Work>;

/// A function over the writer's connection with its input and the caller's answer slot.
struct Task<I, O> {
    input: I,
    f: fn(&WriterDb<'_>, &I) -> StoreResult<O>,
    out: Option<O>,
    tx: oneshot::Sender<StoreResult<O>>,
}

impl<I: Send, O: Send> Work for Task<I, O> {
    fn run(&mut self, c: &WriterDb<'_>) -> StoreResult<()> {
        self.out = Some((self.f)(c, &self.input)?);
        Ok(())
    }

    fn answer(self: Box<Self>, r: StoreResult<()>) {
        let Task { out, tx, .. } = *self;
        let _ = tx.send(r.and_then(|()| {
            out.ok_or_else(|| StoreError::Other("the writer answered before running".into()))
        }));
    }
}

/// `f(input)` as a job, and the receiver of its answer.
pub fn task<I: Send + 'static, O: Send + 'static>(
    input: I,
    f: fn(&WriterDb<'_>, &I) -> StoreResult<O>,
) -> (Job, oneshot::Receiver<StoreResult<O>>) {
    let (tx, rx) = oneshot::channel();
    (
        Box::new(Task {
            input,
            f,
            out: None,
            tx,
        }),
        rx,
    )
}

/// An intake: `decide` over the writer's connection.
pub fn intake(c: &WriterDb<'_>, req: &IntakeRequest) -> StoreResult<IntakeOutcome> {
    run_ready(decide(&mut SqliteIntake(c), req))
}

/// SLA steps.
#[allow(clippy::ptr_arg)] // a task's input is owned; `f` borrows it
pub fn sla(c: &WriterDb<'_>, items: &Vec<SlaApply>) -> StoreResult<Vec<bool>> {
    run_ready(crate::sla::apply::apply_all(&mut SqliteIntake(c), items))
}

/// A campaign's decided recipients: queued or suppressed.
pub fn dispatch(c: &WriterDb<'_>, d: &crate::campaigns::apply::Dispatch) -> StoreResult<u64> {
    run_ready(crate::campaigns::apply::dispatch(&mut SqliteIntake(c), d))
}

/// A delivery report.
pub fn delivery(c: &WriterDb<'_>, dlr: &crate::store::DlrUpdate) -> StoreResult<Option<MessageId>> {
    run_ready(crate::outbound::report::apply(&mut SqliteIntake(c), dlr))
}

/// Claimed commercial messages whose recipient opted out meanwhile: withdrawn.
pub fn withdraw(c: &WriterDb<'_>, w: &(Vec<MessageId>, i64)) -> StoreResult<Vec<MessageId>> {
    run_ready(crate::campaigns::apply::withdraw_opted_out(
        &mut SqliteIntake(c),
        &w.0,
        w.1,
    ))
}

/// A campaign's dispatch lease: (campaign id, owner, now, until).
pub fn lease_campaign(c: &WriterDb<'_>, l: &(i64, String, i64, i64)) -> StoreResult<bool> {
    let n = c
        .st(sql::LEASE_CAMPAIGN)?
        .execute(params![l.1, l.3, l.0, l.2])?;
    Ok(n == 1)
}

/// Due SLA clocks leased: (lease until, now, limit).
pub fn claim_sla(c: &WriterDb<'_>, q: &(i64, i64, i64)) -> StoreResult<Vec<i64>> {
    let mut st = c.st(sql::CLAIM_SLA_SQLITE)?;
    let ids = st
        .query_map(params![q.0, q.1, q.2], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(ids)
}

/// The outbox claim of one channel (lane by lane, oldest first within a lane), with each
/// claimed message's content.
pub fn claim(
    c: &WriterDb<'_>,
    q: &crate::store::ClaimQuery,
) -> StoreResult<Vec<crate::store::OutboxItem>> {
    let mut limit = q.limit;
    let mut tokens = None;
    if let Some(rate) = q.rate {
        let last = opt(c
            .st(sql::SEND_RATE)?
            .query_row(params![q.channel.as_str()], |r| Ok((r.get(0)?, r.get(1)?))))?;
        let t = rate.available(last, q.now_ms);
        limit = rate.grant(t, limit);
        if limit <= 0 {
            return Ok(Vec::new());
        }
        // A clock behind the last claimer's never moves the bucket back in time.
        tokens = Some((t, last.map_or(q.now_ms, |l: (f64, i64)| l.1.max(q.now_ms))));
    }
    // A refused row (its recipient no longer parses) fails here and, as on PostgreSQL, takes
    // neither a lane's share nor a token: only what goes to a sender counts.
    let mut items = Vec::new();
    for lane in crate::domain::Lane::ALL {
        let quota = crate::store::lane_quota(lane, limit, items.len() as i64);
        if quota <= 0 {
            continue;
        }
        let mut st = c.st(sql::CLAIM_OUTBOX_SQLITE)?;
        let mut rows: Vec<(i64, i64, Option<i64>)> = st
            .query_map(
                params![
                    q.now_ms + q.lease_ms,
                    q.channel.as_str(),
                    lane.as_i64(),
                    q.now_ms,
                    quota
                ],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?
            .collect::<Result<_, _>>()?;
        rows.sort_unstable();
        claim_content(c, q, rows, &mut items)?;
    }
    if let Some(t) = tokens {
        // The lower lanes' share may take a claim past the tokens: the bucket goes below
        // zero and the next claims wait for it, so the rate holds on average.
        c.st(sql::SET_SEND_RATE)?.execute(params![
            q.channel.as_str(),
            t.0 - items.len() as f64,
            t.1
        ])?;
    }
    Ok(items)
}

/// The content of claimed rows `(id, attempts, not_after)`: each row an item for a sender, or,
/// when its stored recipient no longer parses, failed in the claim's transaction.
fn claim_content(
    c: &WriterDb<'_>,
    q: &crate::store::ClaimQuery,
    rows: Vec<(i64, i64, Option<i64>)>,
    items: &mut Vec<crate::store::OutboxItem>,
) -> StoreResult<()> {
    let mut st = c.st(sql::OUTBOX_CONTENT)?;
    for (id, attempts, not_after) in rows {
        let row = st
            .query_row(params![id], |r| {
                Ok(crate::store::OutboxRow {
                    message_id: crate::domain::MessageId(id),
                    attempts,
                    from_addr: r.get(0)?,
                    to_addr: r.get(1)?,
                    subject: r.get(2)?,
                    body: r.get(3)?,
                    body_html: r.get(4)?,
                    headers: r.get(5)?,
                    kind: r.get(6)?,
                    render: r.get(7)?,
                    not_after,
                })
            })
            .optional()?;
        match row.map(|r| r.into_item(q.channel)) {
            Some(Ok(item)) => items.push(item),
            Some(Err(u)) => {
                tracing::error!(message_id = u.message_id.get(), error = %u.error, "outbound message failed at its claim");
                send_update(
                    c,
                    &SendUpdate::Fail {
                        message_id: u.message_id,
                        error: u.error,
                        now_ms: q.now_ms,
                    },
                    None,
                )?;
            }
            None => {}
        }
    }
    Ok(())
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
    Ok(start_with(
        path,
        max,
        super::durable::Durable::start,
        Box::new(|why: &str| {
            tracing::error!(why, "the SQLite writer thread ended; stopping the process");
            eprintln!("switchboard: the SQLite writer thread ended ({why}); stopping");
            std::process::abort()
        }),
    )?
    .0)
}

/// What the process does when the writer thread ends other than at shutdown (a bug panicked
/// outside a batch, or the log could not be synced): it stops, so that the service manager
/// starts it again and SQLite recovers the log, instead of answering 503 to every intake
/// until someone looks. Tests count instead.
pub type OnDeath = Box<dyn FnOnce(&str) + Send>;

/// How the writer's loop ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// Every sender is gone: the gateway is shutting down.
    Shutdown,
    /// It stopped taking work: the log's sync failed or its thread is gone (a failed fsync
    /// normally aborts on the sync thread first).
    Stopped,
}

/// Runs the writer's loop; `on_death` with the reason unless it ended at shutdown.
fn supervise(f: impl FnOnce() -> Ended, on_death: OnDeath) {
    let why = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ended::Shutdown) => return,
        Ok(Ended::Stopped) => {
            "stopped: the log's sync failed or the sync thread is gone".to_string()
        }
        Err(p) => format!(
            "panicked: {}",
            crate::domain::scrub(
                p.downcast_ref::<&str>()
                    .copied()
                    .or_else(|| p.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("")
            )
        ),
    };
    on_death(&why);
}

/// [`start`] with the sync thread `durable` makes, and `on_death` for its end; also the
/// thread's handle.
fn start_with(
    path: &Path,
    max: usize,
    durable: impl FnOnce(&Connection) -> std::io::Result<super::durable::Durable>,
    on_death: OnDeath,
) -> anyhow::Result<(mpsc::Sender<Job>, std::thread::JoinHandle<()>)> {
    // The log's appends gathered into one write per commit (`walbuf`); SQLite's own VFS if
    // that could not be registered.
    let conn = match super::walbuf::register() {
        Ok(()) => Connection::open_with_flags_and_vfs(
            path,
            rusqlite::OpenFlags::default(),
            super::walbuf::NAME,
        ),
        Err(rc) => {
            tracing::warn!(
                rc,
                "the sbwal VFS could not be registered; SQLite's own is used"
            );
            Connection::open(path)
        }
    }
    .map_err(|e| anyhow::anyhow!("opening SQLite writer connection {}: {e}", path.display()))?;
    roomy_lookaside(&conn);
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // COMMIT writes the log without waiting for the disk; `durable` fsyncs it on its own
    // thread and answers each batch only after that (SQLite still syncs the log before each
    // checkpoint and the database file after it).
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // 8 MB of page cache and no mmap: with the earlier 64 MB + mmap, SQLite scanned the whole
    // page-cache hash table at every commit (pcache1TruncateUnsafe, 7 % of the writer's time
    // under load); the OS page cache holds the rest.
    conn.pragma_update(None, "cache_size", -8192)?;
    conn.pragma_update(None, "mmap_size", 0)?;
    conn.set_prepared_statement_cache_capacity(64);
    let wal = super::checkpoint::start(path, &conn, super::checkpoint::Limits::DEFAULT)?;
    // A read opens the log (SQLite creates it) before the sync thread opens it too.
    conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })?;
    let durable = durable(&conn)
        .map_err(|e| anyhow::anyhow!("starting the SQLite log's sync thread: {e}"))?;
    let (tx, rx) = mpsc::channel(max * 4);
    let thread = std::thread::Builder::new()
        .name("sqlite-writer".into())
        .spawn(move || supervise(move || run(conn, rx, max, wal, durable), on_death))?;
    Ok((tx, thread))
}

/// SQLite's lookaside memory on the writer's connection: [`LOOKASIDE_SLOTS`] ×
/// [`LOOKASIDE_SLOT`] bytes (1.2 MB; SQLite cuts it into about 775 slots of 1,200 bytes and
/// 2,300 of 128).
const LOOKASIDE_SLOTS: i32 = 1024;
const LOOKASIDE_SLOT: i32 = 1200;

/// SQLite serves a connection's small allocations from its lookaside slots before `malloc`.
/// Its default (1,200 × 40 bytes: about 30 large and 93 small slots) is taken for good by the
/// writer's kept statements, so under load every cursor and record of every statement went to
/// `malloc` (6.4 million misses in 5 s of `benches/load.sh`'s load, about 80 a message); with
/// 1.2 MB there were none (419 slots at most in use) and the writer ran 9 % fewer instructions
/// a message (callgrind). Set before the connection runs anything: it cannot change while
/// slots are in use (rusqlite's open runs no statement; SQLite sets up the default lookaside
/// as the last step of opening).
fn roomy_lookaside(conn: &Connection) {
    // SAFETY: a live connection's handle; a null buffer makes SQLite allocate the slots.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_db_config(
            conn.handle(),
            rusqlite::ffi::SQLITE_DBCONFIG_LOOKASIDE,
            std::ptr::null_mut::<std::ffi::c_void>(),
            LOOKASIDE_SLOT,
            LOOKASIDE_SLOTS,
        )
    };
    if rc != rusqlite::ffi::SQLITE_OK {
        tracing::warn!(
            rc,
            "the SQLite writer keeps SQLite's default lookaside memory"
        );
    }
}

fn run(
    conn: Connection,
    mut rx: mpsc::Receiver<Job>,
    max: usize,
    wal: super::checkpoint::Wal,
    durable: super::durable::Durable,
) -> Ended {
    let db = WriterDb::new(&conn);
    let mut batch: Vec<Job> = Vec::with_capacity(max);
    let mut ended = Ended::Shutdown;
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < max {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        if durable.failed() {
            // The log could not be synced: what it holds is in doubt, so nothing more is
            // written; ending the thread closes the channel, which `/readyz` reports.
            for job in batch.drain(..) {
                job.answer(Err(StoreError::Unavailable(
                    "the SQLite writer stopped after a failed fsync; restart the gateway".into(),
                )));
            }
            ended = Ended::Stopped;
            break;
        }
        match guarded(&db, &mut batch) {
            // Answered by the sync thread once the log is on disk.
            Ok(()) => durable.answer(std::mem::replace(&mut batch, Vec::with_capacity(max))),
            Err(e) if batch.len() == 1 => batch.pop().expect("one").answer(Err(e)),
            Err(_) => {
                let mut committed = Vec::with_capacity(batch.len());
                for mut job in batch.drain(..) {
                    match guarded(&db, std::slice::from_mut(&mut job)) {
                        Ok(()) => committed.push(job),
                        Err(e) => job.answer(Err(e)),
                    }
                }
                durable.answer(committed);
            }
        }
        // A batch's callers never wait for the log to be bounded: their answers come from the
        // sync thread.
        wal.bound(&conn);
    }
    drop(db);
    wal.detach(&conn);
    // Dropping `durable` syncs and answers the last batches.
    drop(durable);
    ended
}

/// Supervision: a panic inside a batch (a bug) rolls the transaction back (the transaction is
/// dropped while unwinding), is answered as an error (503: the peer retries) and leaves the
/// writer thread running, so one bad message never stops every intake.
fn guarded(conn: &WriterDb<'_>, jobs: &mut [Job]) -> StoreResult<()> {
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

fn run_batch(conn: &WriterDb<'_>, jobs: &mut [Job]) -> StoreResult<()> {
    // Rolled back when dropped uncommitted (an error, or a panic unwinding).
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    for job in jobs.iter_mut() {
        job.run(conn)?;
    }
    tx.commit()?;
    Ok(())
}

/// Runs a shared `INSERT … RETURNING id` without its RETURNING clause, and answers the new
/// row's id from the connection. SQLite carries out RETURNING through a temporary table that
/// each run of the statement builds and drops (three per message on the intake path); the
/// last inserted rowid is the same id for nothing.
fn insert_id(c: &WriterDb<'_>, insert: &'static str, p: impl rusqlite::Params) -> StoreResult<i64> {
    c.st(sql::without_returning_id(insert))?.execute(p)?;
    Ok(c.last_insert_rowid())
}

/// A send result, with the statements PostgreSQL runs too (`sql::SEND_*`).
pub fn send_update(
    c: &WriterDb<'_>,
    u: &SendUpdate,
    rendered: Option<&Rendered>,
) -> StoreResult<()> {
    if let Some(r) = rendered {
        c.st(sql::SET_RENDERED)?.execute(params![
            r.text,
            r.subject,
            r.html,
            r.encoding,
            r.segments,
            r.message_id
        ])?;
    }
    match u {
        SendUpdate::Complete {
            message_id,
            provider_id,
            now_ms,
        } => {
            c.st(sql::SEND_COMPLETE)?
                .execute(params![provider_id, now_ms, message_id])?;
            c.st(sql::DELETE_OUTBOX)?.execute(params![message_id])?;
        }
        SendUpdate::Retry {
            message_id,
            next_at_ms,
            error,
            now_ms,
        } => {
            c.st(sql::SEND_RETRY_MESSAGE)?
                .execute(params![error, now_ms, message_id])?;
            c.st(sql::SEND_RETRY_OUTBOX)?
                .execute(params![next_at_ms, message_id])?;
        }
        SendUpdate::Fail {
            message_id,
            error,
            now_ms,
        } => {
            c.st(sql::SEND_FAIL)?
                .execute(params![error, now_ms, message_id])?;
            c.st(sql::DELETE_OUTBOX)?.execute(params![message_id])?;
        }
    }
    Ok(())
}

/// [`IntakeTx`] on the writer's connection: each method runs its statement synchronously, so
/// [`decide`]'s futures are always ready and [`run_ready`] drives them on this thread.
struct SqliteIntake<'a, 'c>(&'a WriterDb<'c>);

fn opt<T>(r: rusqlite::Result<T>) -> StoreResult<Option<T>> {
    Ok(r.optional()?)
}

impl IntakeTx for SqliteIntake<'_, '_> {
    async fn duplicate_by_key(&mut self, key: &str) -> StoreResult<Option<MessageId>> {
        opt(self
            .0
            .st(sql::DUPLICATE_BY_KEY)?
            .query_row(params![key], |r| r.get(0)))
    }

    async fn duplicate_by_hash(
        &mut self,
        hash: &str,
        since_ms: i64,
    ) -> StoreResult<Option<MessageId>> {
        Ok(self
            .0
            .st(sql::DUPLICATE_BY_HASH)?
            .query_row(params![hash, since_ms], |r| r.get(0))?)
    }

    async fn survey_wait(
        &mut self,
        channel: Channel,
        address: &str,
        now_ms: i64,
    ) -> StoreResult<Option<(String, Option<CaseId>)>> {
        opt(self
            .0
            .st(sql::SURVEY_WAIT)?
            .query_row(params![channel.as_str(), address, now_ms], |r| {
                Ok((r.get(0)?, r.get(1)?))
            }))
    }

    async fn case_progress(
        &mut self,
        case_id: CaseId,
        customer: &str,
    ) -> StoreResult<Option<CaseProgress>> {
        opt(self
            .0
            .st(sql::CASE_PROGRESS)?
            .query_row(params![case_id, customer], |r| {
                Ok(CaseProgress {
                    id: r.get(0)?,
                    status: r.get(1)?,
                    category: r.get(2)?,
                    tier: r.get(3)?,
                    resolve_due_at: r.get(4)?,
                })
            }))
    }

    async fn open_case(&mut self, lookup: CaseLookup<'_>) -> StoreResult<Option<OpenCase>> {
        let row = |r: &rusqlite::Row<'_>| {
            Ok(OpenCase {
                id: r.get(0)?,
                category: r.get(1)?,
                tier: r.get(2)?,
                status: r.get(3)?,
            })
        };
        opt(match lookup {
            CaseLookup::OfOurMessage(id) => self
                .0
                .st(sql::CASE_OF_OUR_MESSAGE)?
                .query_row(params![id], row),
            CaseLookup::Numbered { case_id, customer } => self
                .0
                .st(sql::CASE_OF_CUSTOMER)?
                .query_row(params![case_id, customer], row),
            CaseLookup::Recent {
                customer,
                channel,
                since_ms,
            } => {
                let mut st = self.0.st(sql::RECENT_OPEN_CASES)?;
                let cases = st
                    .query_map(params![customer, channel.as_str(), since_ms], |r| {
                        Ok((r.get(4)?, row(r)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                return Ok(crate::intake::decide::latest(cases));
            }
        })
    }

    async fn touch_case(
        &mut self,
        case_id: CaseId,
        now_ms: i64,
        category: Category,
        tier: crate::domain::Tier,
    ) -> StoreResult<()> {
        self.0
            .st(sql::TOUCH_CASE)?
            .execute(params![now_ms, category.as_str(), tier, case_id])?;
        Ok(())
    }

    async fn case_event(
        &mut self,
        case_id: CaseId,
        now_ms: i64,
        kind: crate::domain::CaseEventKind,
        detail: &str,
    ) -> StoreResult<()> {
        self.0
            .st(sql::INSERT_CASE_EVENT)?
            .execute(params![case_id, now_ms, kind, detail])?;
        Ok(())
    }

    async fn insert_case(&mut self, c: &NewCase<'_>) -> StoreResult<CaseId> {
        insert_id(
            self.0,
            sql::INSERT_CASE,
            params![
                c.channel.as_str(),
                c.customer,
                c.category.as_str(),
                c.tier,
                c.lang,
                c.subject,
                c.rules_version,
                c.now_ms,
                c.ack_due_ms,
                c.resolve_due_ms,
                c.city,
                c.linked_case_id
            ],
        )
        .map(CaseId)
    }

    async fn insert_inbound(&mut self, row: &InboundRow<'_>) -> StoreResult<MessageId> {
        let (req, m) = (row.req, &row.req.msg);
        let (dedupe_key, content_hash) = row.dedupe();
        insert_id(
            self.0,
            sql::INSERT_INBOUND,
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
                row.intent.as_str(),
                req.rules_version,
                row.case_id,
                req.now_ms
            ],
        )
        .map(MessageId)
    }

    async fn survey_answer(&mut self, a: &SurveyAnswer<'_>) -> StoreResult<()> {
        self.0.st(sql::INSERT_SURVEY_ANSWER)?.execute(params![
            a.survey,
            a.channel.as_str(),
            a.address,
            a.case_id,
            a.answer,
            a.message_id,
            a.now_ms
        ])?;
        self.0
            .st(sql::DELETE_SURVEY_WAIT)?
            .execute(params![a.channel.as_str(), a.address])?;
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
        self.0.st(sql::UPSERT_CONSENT)?.execute(params![
            channel.as_str(),
            address,
            opted_out.then_some(now_ms),
            (!opted_out).then_some(now_ms),
            message_id
        ])?;
        Ok(())
    }

    async fn email_acks_since(&mut self, to: &str, since_ms: i64) -> StoreResult<i64> {
        Ok(self
            .0
            .st(sql::EMAIL_ACKS_SINCE)?
            .query_row(params![to, since_ms], |r| r.get(0))?)
    }

    async fn sla_state(&mut self, case_id: CaseId) -> StoreResult<Option<SlaState>> {
        opt(self.0.st(sql::SLA_STATE)?.query_row(params![case_id], |r| {
            Ok(SlaState {
                fired: r.get(0)?,
                answered: r.get::<_, i64>(1)? != 0,
                opened_ms: r.get(2)?,
                has_clock: r.get::<_, i64>(3)? != 0,
                tier: r.get(4)?,
                category: r.get(5)?,
                status: r.get(6)?,
            })
        }))
    }

    async fn suppress_queued(
        &mut self,
        channel: Channel,
        address: &str,
        now_ms: i64,
    ) -> StoreResult<()> {
        self.0
            .st(sql::SUPPRESS_QUEUED_RECIPIENTS)?
            .execute(params![address, channel.as_str(), now_ms])?;
        self.0.st(sql::SUPPRESS_QUEUED_MESSAGES)?.execute(params![
            now_ms,
            address,
            channel.as_str()
        ])?;
        self.0
            .st(sql::DELETE_SUPPRESSED_OUTBOX)?
            .execute(params![address, channel.as_str()])?;
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
        self.0.st(sql::SET_CASE_STATUS)?.execute(params![
            status,
            tier,
            now_ms,
            forget_resolution,
            case_id
        ])?;
        Ok(())
    }

    async fn finish_visit(
        &mut self,
        case_id: CaseId,
        state: &str,
        answer: &str,
        now_ms: i64,
    ) -> StoreResult<()> {
        self.0
            .st(sql::FINISH_VISIT)?
            .execute(params![state, answer, now_ms, case_id])?;
        Ok(())
    }

    async fn set_deadlines(
        &mut self,
        case_id: CaseId,
        answer_due_ms: i64,
        resolve_due_ms: i64,
    ) -> StoreResult<()> {
        self.0
            .st(sql::SET_DEADLINES)?
            .execute(params![answer_due_ms, resolve_due_ms, case_id])?;
        Ok(())
    }

    async fn set_clock(
        &mut self,
        case_id: CaseId,
        next: Option<(crate::sla::Step, i64)>,
        fired: i64,
    ) -> StoreResult<()> {
        let (step, due) = crate::sla::clock_row(next);
        self.0
            .st(sql::SET_CLOCK)?
            .execute(params![case_id, step, due, fired])?;
        Ok(())
    }

    async fn set_clock_base(
        &mut self,
        case_id: CaseId,
        r: &crate::store::Round,
    ) -> StoreResult<()> {
        self.0
            .st(sql::SET_CLOCK_BASE)?
            .execute(params![r.base, case_id])?;
        Ok(())
    }

    async fn queue_outbound(
        &mut self,
        d: &OutboundDraft,
        case_id: Option<CaseId>,
        now_ms: i64,
    ) -> StoreResult<MessageId> {
        let id = insert_id(
            self.0,
            sql::INSERT_OUTBOUND,
            params![
                d.channel.as_str(),
                d.driver,
                d.from,
                d.to,
                d.subject,
                d.text,
                case_id,
                d.kind,
                d.encoding,
                d.segments,
                now_ms,
                d.html,
                d.headers,
                d.render
            ],
        )?;
        self.0.st(sql::INSERT_OUTBOX)?.execute(params![
            id,
            d.channel.as_str(),
            d.queue_at(now_ms),
            d.kind.lane().as_i64()
        ])?;
        Ok(MessageId(id))
    }
}

impl crate::sla::apply::SlaTx for SqliteIntake<'_, '_> {
    /// SQLite: the writer's transaction holds the only write lock already.
    async fn lock_case(&mut self, _case_id: CaseId) -> StoreResult<()> {
        Ok(())
    }

    async fn savepoint(&mut self) -> StoreResult<()> {
        self.0.execute_batch("SAVEPOINT sla_step")?;
        Ok(())
    }

    async fn rollback_to_savepoint(&mut self) -> StoreResult<()> {
        self.0.execute_batch("ROLLBACK TO SAVEPOINT sla_step")?;
        Ok(())
    }

    async fn release_savepoint(&mut self) -> StoreResult<()> {
        self.0.execute_batch("RELEASE SAVEPOINT sla_step")?;
        Ok(())
    }

    async fn move_clock(
        &mut self,
        a: &SlaApply,
        next_step: &str,
        next_due: Option<i64>,
    ) -> StoreResult<u64> {
        Ok(self.0.st(sql::SLA_MOVE_CLOCK)?.execute(params![
            next_step,
            next_due,
            a.fired_after,
            a.case_id,
            a.step,
            a.fired_before,
            a.due_before
        ])? as u64)
    }

    async fn remove_clock(&mut self, a: &SlaApply) -> StoreResult<u64> {
        Ok(self.0.st(sql::SLA_REMOVE_CLOCK)?.execute(params![
            a.case_id,
            a.step,
            a.fired_before,
            a.due_before
        ])? as u64)
    }

    async fn set_tier(&mut self, a: &SlaApply) -> StoreResult<u64> {
        Ok(self
            .0
            .st(sql::SLA_SET_TIER)?
            .execute(params![a.tier_after, a.case_id, a.tier_before])? as u64)
    }

    async fn release_lease(&mut self, case_id: CaseId) -> StoreResult<()> {
        self.0
            .st(sql::SLA_RELEASE_LEASE)?
            .execute(params![case_id])?;
        Ok(())
    }
}

impl crate::campaigns::apply::CampaignTx for SqliteIntake<'_, '_> {
    async fn campaign_status(&mut self, campaign_id: CampaignId) -> StoreResult<Option<String>> {
        opt(self
            .0
            .st(sql::CAMPAIGN_STATUS)?
            .query_row(params![campaign_id], |r| r.get(0)))
    }

    async fn opted_out_among(&mut self, addresses: &[&str]) -> StoreResult<Vec<(String, String)>> {
        let mut st = self
            .0
            .prepare_cached(&sql::opted_out_among(addresses.len()))?;
        let rows = st
            .query_map(rusqlite::params_from_iter(addresses), |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    async fn move_recipient(
        &mut self,
        campaign_id: CampaignId,
        seq: i64,
        state: &str,
        reason: Option<&str>,
    ) -> StoreResult<u64> {
        Ok(self
            .0
            .st(sql::RECIPIENT_MOVE)?
            .execute(params![state, reason, campaign_id, seq])? as u64)
    }

    async fn set_not_after(&mut self, message_id: MessageId, not_after: i64) -> StoreResult<()> {
        self.0
            .st(sql::OUTBOX_NOT_AFTER)?
            .execute(params![not_after, message_id])?;
        Ok(())
    }

    async fn link_recipient(
        &mut self,
        campaign_id: CampaignId,
        seq: i64,
        message_id: MessageId,
    ) -> StoreResult<()> {
        self.0
            .st(sql::RECIPIENT_LINK)?
            .execute(params![message_id, campaign_id, seq])?;
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
        self.0.st(sql::CAMPAIGN_SURVEY_WAIT)?.execute(params![
            channel.as_str(),
            address,
            survey,
            now_ms,
            expires_ms
        ])?;
        Ok(())
    }

    async fn message_opted_out(&mut self, message_id: MessageId) -> StoreResult<bool> {
        Ok(opt(self
            .0
            .st(sql::MESSAGE_OPTED_OUT)?
            .query_row(params![message_id], |r| r.get::<_, i64>(0)))?
        .is_some())
    }

    async fn withdraw_message(&mut self, message_id: MessageId, now_ms: i64) -> StoreResult<()> {
        self.0
            .st(sql::WITHDRAW_MESSAGE)?
            .execute(params![now_ms, message_id])?;
        self.0
            .st(sql::DELETE_OUTBOX)?
            .execute(params![message_id])?;
        self.0
            .st(sql::WITHDRAW_RECIPIENT)?
            .execute(params![message_id])?;
        Ok(())
    }
}

impl crate::outbound::report::DeliveryTx for SqliteIntake<'_, '_> {
    async fn outbound_by_id(&mut self, id: MessageId) -> StoreResult<Option<(MessageId, String)>> {
        opt(self
            .0
            .st(sql::OUTBOUND_BY_ID)?
            .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?))))
    }

    async fn outbound_by_provider_id(
        &mut self,
        pid: &str,
    ) -> StoreResult<Option<(MessageId, String)>> {
        opt(self
            .0
            .st(sql::OUTBOUND_BY_PROVIDER_ID)?
            .query_row(params![pid], |r| Ok((r.get(0)?, r.get(1)?))))
    }

    async fn insert_report(
        &mut self,
        message_id: Option<MessageId>,
        dlr: &crate::store::DlrUpdate,
    ) -> StoreResult<()> {
        self.0.st(sql::INSERT_DELIVERY_REPORT)?.execute(params![
            message_id,
            dlr.now_ms,
            dlr.status.as_str(),
            dlr.detail
        ])?;
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
        Ok(self
            .0
            .st(sql::SET_DELIVERY_STATUS)?
            .execute(params![status, error, now_ms, id, was])? as u64)
    }

    async fn drop_from_outbox(&mut self, id: MessageId) -> StoreResult<()> {
        self.0.st(sql::DELETE_OUTBOX)?.execute(params![id])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::durable::Durable;
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    fn insert(c: &WriterDb<'_>, x: &i64) -> StoreResult<i64> {
        c.execute("CREATE TABLE IF NOT EXISTS t (x)", [])?;
        c.execute("INSERT INTO t VALUES (?1)", [x])?;
        Ok(c.last_insert_rowid())
    }

    fn send(w: &mpsc::Sender<Job>, x: i64) -> oneshot::Receiver<StoreResult<i64>> {
        let (job, rx) = task(x, insert);
        w.blocking_send(job).expect("the writer takes jobs");
        rx
    }

    /// The writer hands a committed batch to the sync thread: its caller hears nothing until
    /// the log's fsync returned, and the commit is in the log by then.
    #[test]
    fn the_writer_answers_a_commit_only_after_the_log_is_synced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let wait = Mutex::new(wait);
        let death = Arc::new(Mutex::new(None::<String>));
        let died = death.clone();
        let (w, thread) = start_with(
            &path,
            8,
            |c| {
                Durable::with(
                    c,
                    Box::new(move |f| {
                        wait.lock().unwrap().recv().unwrap();
                        f.sync_data()
                    }),
                    Box::new(|| panic!("no sync fails here")),
                )
            },
            Box::new(move |why: &str| *died.lock().unwrap() = Some(why.to_string())),
        )
        .unwrap();
        let mut a = send(&w, 7);
        std::thread::sleep(Duration::from_millis(100));
        assert!(a.try_recv().is_err(), "answered before the log was synced");
        // Committed already: another connection sees the row while the sync is pending.
        let other = Connection::open(&path).unwrap();
        let n: i64 = other
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        release.send(()).unwrap();
        assert_eq!(a.blocking_recv().unwrap().unwrap(), 1);
        // The last sender gone is a shutdown: the thread ends and the process goes on.
        drop(w);
        thread.join().unwrap();
        assert_eq!(*death.lock().unwrap(), None);
    }

    /// A failed fsync: the batch is refused, the process would stop, and the writer takes no
    /// more work (`/readyz` sees the closed channel).
    #[test]
    fn a_failed_fsync_refuses_the_batch_and_stops_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let stops = Arc::new(AtomicUsize::new(0));
        let counted = stops.clone();
        let death = Arc::new(Mutex::new(None::<String>));
        let died = death.clone();
        let (w, _thread) = start_with(
            &path,
            8,
            move |c| {
                Durable::with(
                    c,
                    Box::new(|_| Err(std::io::Error::other("EIO"))),
                    Box::new(move || {
                        counted.fetch_add(1, Ordering::SeqCst);
                    }),
                )
            },
            Box::new(move |why: &str| {
                *died.lock().unwrap() = Some(why.to_string());
            }),
        )
        .unwrap();
        match send(&w, 1).blocking_recv().unwrap() {
            Err(StoreError::Unavailable(m)) => assert!(m.contains("EIO"), "{m}"),
            other => panic!("answered {other:?}"),
        }
        // The stop comes right after the answers.
        for _ in 0..100 {
            if stops.load(Ordering::SeqCst) > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(stops.load(Ordering::SeqCst), 1);
        // The next job is refused, and the writer's channel closes.
        if let Ok(rx) = std::panic::catch_unwind(|| send(&w, 2)) {
            assert!(!matches!(rx.blocking_recv(), Ok(Ok(_))));
        }
        for _ in 0..100 {
            if w.is_closed() && death.lock().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            w.is_closed(),
            "the writer still takes work after a failed fsync"
        );
        // And the process would stop (the service manager starts it again).
        let why = death.lock().unwrap().clone();
        assert!(
            why.as_deref().is_some_and(|w| w.contains("sync failed")),
            "{why:?}"
        );
    }

    /// The writer's supervisor: a panic outside a batch (a bug) or a stop after a failed
    /// fsync ends the process; the end at shutdown does not.
    #[test]
    fn the_writer_thread_ending_other_than_at_shutdown_stops_the_process() {
        let seen = |f: Box<dyn FnOnce() -> Ended>| {
            let why = Arc::new(Mutex::new(None::<String>));
            let w = why.clone();
            supervise(
                f,
                Box::new(move |r: &str| *w.lock().unwrap() = Some(r.to_string())),
            );
            why.lock().unwrap().clone()
        };
        assert_eq!(seen(Box::new(|| Ended::Shutdown)), None);
        let stopped = seen(Box::new(|| Ended::Stopped)).unwrap();
        assert!(stopped.contains("sync failed"), "{stopped}");
        let panicked = seen(Box::new(|| panic!("bug near +8613800138000"))).unwrap();
        assert!(panicked.starts_with("panicked: bug near"), "{panicked}");
        assert!(!panicked.contains("13800138000"), "{panicked}");
    }

    #[test]
    fn the_writer_serves_its_statements_from_lookaside_memory_not_malloc() {
        let dir = tempfile::tempdir().unwrap();
        let w = start(&dir.path().join("w.db"), 8).unwrap();
        // Forty kept statements of different text (their memory holds slots for good), then
        // each run again: no allocation found every slot taken.
        const TEXTS: [&str; 8] = [
            "SELECT ?1 + 1",
            "SELECT ?1 || 'a'",
            "SELECT length(?1)",
            "SELECT upper(?1)",
            "SELECT ?1 * 2",
            "SELECT abs(?1)",
            "SELECT typeof(?1)",
            "SELECT quote(?1)",
        ];
        let (job, rx) = task((), |c, _| {
            c.execute_batch("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT, c TEXT); CREATE INDEX t_b ON t (b, c)")?;
            for round in 0..3 {
                for (i, text) in TEXTS.iter().enumerate() {
                    let _: rusqlite::types::Value =
                        c.st(text)?.query_row([i as i64], |r| r.get(0))?;
                }
                for i in 0..200 {
                    c.st("INSERT INTO t (b, c) VALUES (?1, ?2)")?
                        .execute(params![format!("{round}-{i}"), "x".repeat(i)])?;
                    let _: i64 = c
                        .st("SELECT COUNT(*) FROM t WHERE b >= ?1")?
                        .query_row([format!("{round}")], |r| r.get(0))?;
                }
            }
            let (mut cur, mut missed) = (0, 0);
            // SAFETY: the writer's live connection, on its own thread.
            let rc = unsafe {
                rusqlite::ffi::sqlite3_db_status(
                    c.handle(),
                    rusqlite::ffi::SQLITE_DBSTATUS_LOOKASIDE_MISS_FULL,
                    &mut cur,
                    &mut missed,
                    0,
                )
            };
            assert_eq!(rc, rusqlite::ffi::SQLITE_OK);
            Ok(missed)
        });
        w.blocking_send(job).unwrap();
        assert_eq!(
            rx.blocking_recv().unwrap().unwrap(),
            0,
            "allocations that found the lookaside full"
        );
    }

    #[test]
    fn the_writer_connection_leaves_the_fsync_to_the_sync_thread() {
        let dir = tempfile::tempdir().unwrap();
        let w = start(&dir.path().join("w.db"), 8).unwrap();
        let (job, rx) = task((), |c, _| {
            Ok(c.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0))?)
        });
        w.blocking_send(job).unwrap();
        assert_eq!(rx.blocking_recv().unwrap().unwrap(), 1, "NORMAL");
    }
}
