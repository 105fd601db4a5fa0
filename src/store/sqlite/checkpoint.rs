//! WAL checkpoints off the writer thread.
//!
//! SQLite's automatic checkpoint runs inside the COMMIT of the connection that takes the log
//! past `wal_autocheckpoint` pages: on the writer thread, which then copies pages into the
//! database file and fsyncs it while every intake waits for it (`perf` under
//! `benches/load.sh`: 15 % of the server's samples). Here the writer's connection only reports
//! the log's length after each commit (`sqlite3_wal_hook`, which takes the automatic
//! checkpoint's place), and a thread of its own, on its own connection, runs a PASSIVE
//! checkpoint every [`Limits::step`] new frames. A PASSIVE checkpoint copies what is committed
//! while the writer goes on committing; neither waits for the other.
//!
//! PASSIVE checkpoints alone do not bound the log under constant load: SQLite writes the log
//! from its start again only when a write transaction begins with every frame copied, and
//! under load new frames always came meanwhile. So once the log is [`Limits::restart`] frames
//! long, the writer checkpoints the little that is left itself, between two batches
//! ([`Wal::bound`]), and its next transaction starts the log over. Were the checkpoint thread
//! gone, that alone would still keep the log bounded.
//!
//! Durability: the checkpoint connection runs with `synchronous = FULL`, and the writer's
//! own checkpoint (`synchronous = NORMAL`, see `durable.rs`) syncs too, so the log is synced
//! before it is copied and the database file before the log may start over.

use rusqlite::{Connection, ffi};
use std::ffi::{c_char, c_int, c_void};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// When checkpoints run, in WAL frames (one page each).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// New frames that start a background checkpoint.
    pub step: i64,
    /// A log this long is checkpointed by the writer itself, so that it starts over.
    pub restart: i64,
}

impl Limits {
    /// A checkpoint every 3,000 new frames; the log starts over at 128,000 (512 MB of 4 KB
    /// pages). Measured under `benches/load.sh` (README, Performance, 2026-12-06 session 13):
    /// - the writer's own checkpoint at `restart` stops the intake for a moment, and was what
    ///   set the p99: at 16,000 frames (every ~0.25 s under load) p99 26–30 ms, at 64,000
    ///   14–18 ms, at 128,000 12–13 ms (with a step of 1,000);
    /// - a longer step copies a page rewritten within it once, so each message costs fewer
    ///   bytes written (~31 KB at 1,000 frames, ~28 KB at 2,000, ~25 KB at 4,000) and the
    ///   rate rises (2,000: +2–6 %; 3,000: +5 % more), but the checkpoint's fsync of the
    ///   database file then holds up the log's, and the p99 rises (2,000: 14–23 ms; 3,000:
    ///   25–33 ms, what it was before this session; 4,000: 30–43 ms).
    ///
    /// The cost: a log of up to 512 MB on disk, read through once after a crash.
    pub const DEFAULT: Limits = Limits {
        step: 3000,
        restart: 128_000,
    };
}

/// What the writer's commit hook and the checkpoint thread share.
struct Shared {
    limits: Limits,
    /// Frames in the log after the writer's last commit.
    frames: AtomicI64,
    /// Frames in the log when the last checkpoint ran (all copied if it completed).
    copied: AtomicI64,
    /// A checkpoint is wanted (set by the hook, taken by the thread).
    wanted: Mutex<bool>,
    cv: Condvar,
    stop: AtomicBool,
    /// The log's length at the writer's last checkpoint of its own (`Wal::bound`).
    tried_at: AtomicI64,
}

impl Shared {
    fn want(&self) {
        let mut w = self.wanted.lock().unwrap_or_else(|e| e.into_inner());
        if !*w {
            *w = true;
            self.cv.notify_one();
        }
    }
}

/// The writer's side: the log's length, and the means to bound it.
pub struct Wal {
    shared: Arc<Shared>,
    /// The count of `shared` handed to SQLite as the hook's argument; taken back by
    /// [`Wal::detach`].
    hook_arg: *const Shared,
    /// The connection the hook is on: `detach` refuses any other.
    db: *mut ffi::sqlite3,
}

// SAFETY: `hook_arg` is a counted reference to `Shared`, which is Sync; SQLite hands it only to
// the hook, which runs on the thread that commits, and `detach` takes it back on that thread.
unsafe impl Send for Wal {}

/// Installs the commit hook on the writer's connection and starts the checkpoint thread on a
/// connection of its own to `path`.
///
/// # Errors
/// The checkpoint connection cannot be opened.
pub fn start(path: &Path, writer: &Connection, limits: Limits) -> anyhow::Result<Wal> {
    let conn = Connection::open(path).map_err(|e| {
        anyhow::anyhow!(
            "opening SQLite checkpoint connection {}: {e}",
            path.display()
        )
    })?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // Only for the WAL index's locks, which readers hold for moments.
    conn.busy_timeout(Duration::from_millis(100))?;
    let shared = Arc::new(Shared {
        limits,
        frames: AtomicI64::new(0),
        copied: AtomicI64::new(0),
        wanted: Mutex::new(false),
        cv: Condvar::new(),
        stop: AtomicBool::new(false),
        tried_at: AtomicI64::new(0),
    });
    let thread = shared.clone();
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || run(conn, &thread))?;
    let hook_arg = Arc::into_raw(shared.clone());
    // SAFETY: `writer.handle()` is the open connection the writer thread will own. The hook's
    // argument stays valid until `Wal::detach` removes the hook and takes the count back; if
    // the writer thread dies without detaching, the count leaks and the pointer stays valid.
    let db = unsafe { writer.handle() };
    unsafe {
        ffi::sqlite3_wal_hook(db, Some(on_commit), hook_arg as *mut c_void);
    }
    Ok(Wal {
        shared,
        hook_arg,
        db,
    })
}

/// `sqlite3_wal_hook`: called by SQLite on the writer thread after each commit, with the
/// number of frames now in the log.
unsafe extern "C" fn on_commit(
    arg: *mut c_void,
    _db: *mut ffi::sqlite3,
    _name: *const c_char,
    frames: c_int,
) -> c_int {
    // SAFETY: `arg` is the `Arc<Shared>` count `start` handed over, alive until `detach`.
    let s = unsafe { &*(arg as *const Shared) };
    let frames = i64::from(frames);
    s.frames.store(frames, Ordering::Relaxed);
    let copied = s.copied.load(Ordering::Relaxed);
    // A log shorter than what was copied has started over. From `restart` frames on the
    // writer checkpoints itself, and this thread keeps out of its way (two checkpoints at once
    // make one a no-op, and a reading checkpointer can keep the log from starting over).
    if frames < s.limits.restart && (frames < copied || frames - copied >= s.limits.step) {
        s.want();
    }
    ffi::SQLITE_OK
}

impl Wal {
    /// Between two batches: a log of [`Limits::restart`] frames or more is checkpointed here,
    /// so that the next transaction starts it over. The checkpoint thread has copied most of
    /// it already, so this is short; while that thread is mid-checkpoint this is a no-op and
    /// the next batch tries again.
    ///
    /// A reader still inside the log keeps it from starting over even after a complete
    /// checkpoint; the writer then tries again only `step` frames later, not every batch.
    pub fn bound(&self, conn: &Connection) {
        let s = &self.shared;
        let frames = s.frames.load(Ordering::Relaxed);
        let tried = s.tried_at.load(Ordering::Relaxed);
        if frames < s.limits.restart || (frames >= tried && frames - tried < s.limits.step) {
            return;
        }
        s.tried_at.store(frames, Ordering::Relaxed);
        if let Err(e) = passive(conn) {
            tracing::warn!(error = %e, "SQLite checkpoint on the writer failed");
        }
    }

    /// Removes the hook (the writer is ending); dropping `self` stops the checkpoint thread.
    ///
    /// # Panics
    /// `conn` is not the connection `start` installed the hook on.
    pub fn detach(self, conn: &Connection) {
        // SAFETY: only the handle's address is compared.
        assert_eq!(
            unsafe { conn.handle() },
            self.db,
            "not the writer's connection"
        );
        // SAFETY: the connection `start` installed the hook on (checked above); once the hook
        // is removed SQLite no longer holds `hook_arg`, so its count is taken back exactly once.
        unsafe {
            ffi::sqlite3_wal_hook(self.db, None, std::ptr::null_mut());
            drop(Arc::from_raw(self.hook_arg));
        }
    }
}

/// However the writer ends (detached, or unwinding from a bug), the checkpoint thread stops
/// and closes its connection.
impl Drop for Wal {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.want();
    }
}

/// `PRAGMA wal_checkpoint(PASSIVE)`: (frames in the log, frames copied).
fn passive(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })
}

fn run(conn: Connection, s: &Shared) {
    loop {
        {
            let mut w = s.wanted.lock().unwrap_or_else(|e| e.into_inner());
            while !*w {
                w = s.cv.wait(w).unwrap_or_else(|e| e.into_inner());
            }
            *w = false;
        }
        if s.stop.load(Ordering::Relaxed) {
            return;
        }
        let seen = s.frames.load(Ordering::Relaxed);
        if seen >= s.limits.restart {
            continue;
        }
        match passive(&conn) {
            // The hook asks again `step` frames after what this checkpoint saw of the log.
            Ok((log, _)) => s.copied.store(log.max(seen), Ordering::Relaxed),
            Err(e) => {
                tracing::warn!(error = %e, "SQLite background checkpoint failed; trying again later");
                s.copied.store(seen, Ordering::Relaxed);
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wal_pages(path: &Path) -> u64 {
        let wal = path.with_extension("db-wal");
        std::fs::metadata(wal).map_or(0, |m| m.len()) / 4096
    }

    fn commit_rows(c: &mut Connection, from: u64) {
        let tx = c.transaction().unwrap();
        for i in from..from + 8 {
            // Random keys and rows of about half a page: many pages dirtied per commit.
            let k = format!("{:x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            tx.execute("INSERT INTO t VALUES (?1, zeroblob(1500))", [k])
                .unwrap();
        }
        tx.commit().unwrap();
    }

    /// Small transactions: the checkpoint thread copies pages into the database file while
    /// the writer only commits, and with the writer's `bound` between them the log file never
    /// grows much past `restart` frames.
    #[test]
    fn the_log_is_copied_in_the_background_and_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut c = Connection::open(&path).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        c.pragma_update(None, "synchronous", "FULL").unwrap();
        c.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB NOT NULL)")
            .unwrap();
        let limits = Limits {
            step: 20,
            restart: 400,
        };
        let wal = start(&path, &c, limits).unwrap();
        let file_pages = || std::fs::metadata(&path).unwrap().len() / 4096;
        let empty = file_pages();
        // Below `restart` the writer never checkpoints, and SQLite's automatic checkpoint is
        // off (the hook replaced it): pages reach the file only through the thread.
        let mut n = 0;
        while wal_pages(&path) < 150 {
            assert!(n < 100_000, "the log does not grow");
            commit_rows(&mut c, n);
            n += 8;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while file_pages() <= empty + 20 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(file_pages() > empty + 20, "nothing was checkpointed");
        // Without `bound` the log grows by every commit (a few thousand frames here).
        let mut largest = 0;
        for _ in 0..600 {
            commit_rows(&mut c, n);
            n += 8;
            wal.bound(&c);
            largest = largest.max(wal_pages(&path));
        }
        // Bounded: near `restart`, give or take what commits while the checkpoint thread is
        // mid-copy (seen up to 871 pages with other tests running; 8,647 without `bound`).
        assert!(
            largest < (limits.restart * 4) as u64,
            "the log reached {largest} pages"
        );
        wal.detach(&c);
        let rows: u64 = c
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, n);
    }
}
