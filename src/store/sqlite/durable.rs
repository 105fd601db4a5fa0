//! Commits answered once durable, with the log's fsync off the writer thread.
//!
//! With `synchronous = FULL` the writer's COMMIT writes the batch's frames into the WAL and
//! then waits for the disk to flush them; under load about a third of the writer's time was
//! that wait, with nothing else done meanwhile. The writer's connection now runs
//! `synchronous = NORMAL`: COMMIT writes the frames and returns. The writer hands the batch's
//! jobs to this module's thread and starts the next batch; this thread `fdatasync`s the WAL
//! file and only then answers the jobs of every batch committed before that fsync began (an
//! fsync flushes every write made to the file before it), so one fsync answers all the
//! batches that queued while the last one ran, and the next batch's statements run while the
//! disk flushes the last one.
//!
//! What SQLite still syncs itself under NORMAL: the log before a checkpoint copies it, the
//! database file after, and the log's header when the log starts over, so nothing is
//! overwritten in the log before it is durable in the database file.
//!
//! What changes for readers: a batch is visible to the pool's readers from its COMMIT, up to
//! one fsync (about a millisecond) before it is durable; only a power loss inside that window
//! could take back what such a reader saw. Every caller of the writer (webhooks, outbox
//! claims, API changes, send results) is answered only after the fsync that covers its commit
//! and every commit before it, so nothing answered is lost, and a send is never claimed before
//! the intake that queued it is durable.
//!
//! A failed fsync cannot be retried: Linux may have dropped the failed pages from its cache
//! and marked them clean, so a later fsync (ours, or a pool connection's) would succeed over
//! a log with a hole in it. As PostgreSQL does, the process stops: the jobs waiting for that
//! fsync are answered `Unavailable` (the bridge retries), then the process aborts, and at the
//! next start SQLite recovers the log up to its last intact commit.
//!
//! The log is the file SQLite itself names (`<database as SQLite resolved it>-wal`, symlinks
//! followed), opened once when the writer starts; if the file at that path is ever another
//! one, that is a failed sync too.

use super::writer::Job;
use crate::store::StoreError;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

/// How the log is flushed: `File::sync_data` (`fdatasync`); tests put their own in.
pub type SyncFn = Box<dyn FnMut(&File) -> io::Result<()> + Send>;

/// What happens after a failed sync has been answered: the process aborts; tests count.
pub type OnFailure = Box<dyn Fn() + Send>;

/// The writer's side of the sync thread.
pub struct Durable {
    tx: Option<mpsc::Sender<Vec<Job>>>,
    thread: Option<JoinHandle<()>>,
    failed: Arc<AtomicBool>,
}

impl Durable {
    /// Starts the sync thread for the log of the writer's connection `conn`.
    ///
    /// # Errors
    /// The connection has no file, its log cannot be opened, or the thread cannot start.
    pub fn start(conn: &rusqlite::Connection) -> io::Result<Durable> {
        Self::with(
            conn,
            Box::new(|f: &File| f.sync_data()),
            Box::new(|| {
                eprintln!("switchboard: fsync of the SQLite log failed; stopping");
                std::process::abort()
            }),
        )
    }

    /// [`Durable::start`] with `sync` in place of `fdatasync` and `on_failure` in place of the
    /// abort.
    ///
    /// # Errors
    /// As [`Durable::start`].
    pub fn with(
        conn: &rusqlite::Connection,
        sync: SyncFn,
        on_failure: OnFailure,
    ) -> io::Result<Durable> {
        let db = conn
            .path()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| io::Error::other("an SQLite writer needs a database file"))?;
        let path = PathBuf::from(format!("{db}-wal"));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", path.display())))?;
        let meta = file.metadata()?;
        let log = Log {
            path,
            file,
            id: (meta.dev(), meta.ino()),
            sync,
        };
        let (tx, rx) = mpsc::channel();
        let failed = Arc::new(AtomicBool::new(false));
        let flag = failed.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-sync".into())
            .spawn(move || run(log, &rx, &flag, &on_failure))?;
        Ok(Durable {
            tx: Some(tx),
            thread: Some(thread),
            failed,
        })
    }

    /// Jobs whose transaction committed: answered `Ok` once the log is synced.
    pub fn answer(&self, jobs: Vec<Job>) {
        if jobs.is_empty() {
            return;
        }
        let Some(tx) = &self.tx else { return };
        if let Err(mpsc::SendError(jobs)) = tx.send(jobs) {
            // The thread is gone (a bug): nobody can vouch for these commits or later ones.
            self.failed.store(true, Ordering::Release);
            for job in jobs {
                job.answer(Err(unsynced("the sync thread is gone")));
            }
        }
    }

    /// A sync failed (or the sync thread is gone): the writer must stop taking work.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }
}

/// The writer ends: the last batches are synced and answered before it returns.
impl Drop for Durable {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn unsynced(why: &str) -> StoreError {
    StoreError::Unavailable(format!(
        "the database log could not be synced ({why}); restart the gateway"
    ))
}

/// The WAL file, open since the writer started.
struct Log {
    path: PathBuf,
    file: File,
    /// (device, inode) of `file`.
    id: (u64, u64),
    sync: SyncFn,
}

impl Log {
    fn sync(&mut self) -> io::Result<()> {
        // SQLite deletes the log only when its last connection closes, and the writer's is
        // open: another file at the path means someone else replaced it.
        let now = std::fs::metadata(&self.path)?;
        if (now.dev(), now.ino()) != self.id {
            return Err(io::Error::other(format!(
                "{} is no longer the log SQLite writes",
                self.path.display()
            )));
        }
        (self.sync)(&self.file)
    }
}

fn run(mut log: Log, rx: &mpsc::Receiver<Vec<Job>>, failed: &AtomicBool, on_failure: &OnFailure) {
    while let Ok(mut jobs) = rx.recv() {
        while let Ok(more) = rx.try_recv() {
            jobs.extend(more);
        }
        if failed.load(Ordering::Acquire) {
            for job in jobs {
                job.answer(Err(unsynced("an earlier sync failed")));
            }
            continue;
        }
        match log.sync() {
            Ok(()) => {
                for job in jobs {
                    job.answer(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, log = %log.path.display(), "fsync of the SQLite log failed; stopping");
                failed.store(true, Ordering::Release);
                let why = e.to_string();
                for job in jobs {
                    job.answer(Err(unsynced(&why)));
                }
                on_failure();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreResult;
    use rusqlite::Connection;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;
    use tokio::sync::oneshot;

    struct Probe(Option<oneshot::Sender<StoreResult<()>>>);
    impl super::super::writer::Work for Probe {
        fn run(&mut self, _: &super::super::stmts::WriterDb<'_>) -> StoreResult<()> {
            Ok(())
        }
        fn answer(mut self: Box<Self>, r: StoreResult<()>) {
            let _ = self.0.take().expect("answered once").send(r);
        }
    }

    fn probe() -> (Job, oneshot::Receiver<StoreResult<()>>) {
        let (tx, rx) = oneshot::channel();
        (Box::new(Probe(Some(tx))), rx)
    }

    /// A database in WAL mode: its log exists.
    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let c = Connection::open(dir.path().join("t.db")).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        (dir, c)
    }

    fn counting() -> (OnFailure, Arc<AtomicUsize>) {
        let n = Arc::new(AtomicUsize::new(0));
        let m = n.clone();
        (
            Box::new(move || {
                m.fetch_add(1, Ordering::SeqCst);
            }),
            n,
        )
    }

    #[test]
    fn a_commit_is_answered_only_after_a_sync_that_began_after_it() {
        let (_dir, c) = db();
        let (began_tx, began) = std::sync::mpsc::channel::<()>();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = std::sync::Mutex::new(release_rx);
        let syncs = Arc::new(AtomicUsize::new(0));
        let counted = syncs.clone();
        let d = Durable::with(
            &c,
            Box::new(move |_f: &File| {
                let _ = began_tx.send(());
                release_rx.lock().unwrap().recv().unwrap();
                counted.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }),
            counting().0,
        )
        .unwrap();
        let (j1, mut a1) = probe();
        d.answer(vec![j1]);
        began.recv_timeout(Duration::from_secs(5)).unwrap();
        // The first sync is under way; two more commits arrive during it.
        let (j2, mut a2) = probe();
        let (j3, mut a3) = probe();
        d.answer(vec![j2]);
        d.answer(vec![j3]);
        std::thread::sleep(Duration::from_millis(50));
        assert!(a1.try_recv().is_err(), "answered before its sync returned");
        release.send(()).unwrap();
        assert!(
            matches!(a1.blocking_recv(), Ok(Ok(()))),
            "the first commit is answered once its sync returned"
        );
        // The others committed while the first sync ran: that sync may not cover them, so
        // they wait for the next one, which answers both.
        began.recv_timeout(Duration::from_secs(5)).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            a2.try_recv().is_err(),
            "answered by a sync that began before its commit"
        );
        assert!(a3.try_recv().is_err());
        release.send(()).unwrap();
        assert!(matches!(a2.blocking_recv(), Ok(Ok(()))));
        assert!(matches!(a3.blocking_recv(), Ok(Ok(()))));
        drop(d);
        assert_eq!(
            syncs.load(Ordering::SeqCst),
            2,
            "one sync for the two waiting commits"
        );
    }

    #[test]
    fn a_failed_sync_fails_its_commits_and_every_later_one_even_if_syncs_work_again() {
        let (_dir, c) = db();
        let mut first = true;
        let (on_failure, failures) = counting();
        let d = Durable::with(
            &c,
            Box::new(move |_f: &File| {
                if std::mem::take(&mut first) {
                    Err(io::Error::other("EIO from the disk"))
                } else {
                    Ok(())
                }
            }),
            on_failure,
        )
        .unwrap();
        let (j1, a1) = probe();
        d.answer(vec![j1]);
        match a1.blocking_recv().unwrap() {
            Err(StoreError::Unavailable(m)) => assert!(m.contains("EIO from the disk"), "{m}"),
            other => panic!("a failed sync answered {other:?}"),
        }
        assert!(d.failed(), "the writer is told to stop");
        // The next fsync would succeed, but the pages the failed one lost are gone.
        let (j2, a2) = probe();
        d.answer(vec![j2]);
        assert!(matches!(
            a2.blocking_recv().unwrap(),
            Err(StoreError::Unavailable(_))
        ));
        assert_eq!(failures.load(Ordering::SeqCst), 1, "the process is stopped");
    }

    #[test]
    fn the_log_is_the_one_sqlite_names_and_a_replaced_log_is_a_failure() {
        let (dir, c) = db();
        let (on_failure, failures) = counting();
        let d = Durable::with(&c, Box::new(|f: &File| f.sync_data()), on_failure).unwrap();
        let (j, a) = probe();
        d.answer(vec![j]);
        assert!(matches!(a.blocking_recv(), Ok(Ok(()))));
        // Someone replaces the log: syncing the file we hold would vouch for nothing.
        let wal = dir.path().join("t.db-wal");
        std::fs::rename(&wal, dir.path().join("moved")).unwrap();
        std::fs::write(&wal, b"not the log").unwrap();
        let (j, a) = probe();
        d.answer(vec![j]);
        assert!(matches!(
            a.blocking_recv(),
            Ok(Err(StoreError::Unavailable(_)))
        ));
        // The stop comes right after the answers, on the sync thread.
        drop(d);
        assert_eq!(failures.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_database_reached_through_a_symlink_syncs_the_log_beside_the_real_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        let real = dir.path().join("real/t.db");
        Connection::open(&real).unwrap();
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let c = Connection::open(&link).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        c.execute_batch("CREATE TABLE t (x)").unwrap();
        assert!(dir.path().join("real/t.db-wal").exists());
        let (on_failure, failures) = counting();
        let d = Durable::with(&c, Box::new(|f: &File| f.sync_data()), on_failure).unwrap();
        let (j, a) = probe();
        d.answer(vec![j]);
        assert!(matches!(a.blocking_recv(), Ok(Ok(()))));
        assert_eq!(failures.load(Ordering::SeqCst), 0);
    }
}
