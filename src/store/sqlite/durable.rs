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
//! A failed fsync cannot be retried (Linux may have dropped the failed pages from its cache):
//! the jobs waiting for it are answered `Unavailable`, and the writer stops taking work, so
//! `/readyz` reports it and every write answers 503 until the gateway is restarted and SQLite
//! recovers the log.

use super::writer::Job;
use crate::store::StoreError;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

/// How the log is flushed: `File::sync_data` (`fdatasync`); tests put their own in.
pub type SyncFn = Box<dyn FnMut(&File) -> io::Result<()> + Send>;

/// The writer's side of the sync thread.
pub struct Durable {
    tx: Option<mpsc::Sender<Vec<Job>>>,
    thread: Option<JoinHandle<()>>,
    failed: Arc<AtomicBool>,
}

impl Durable {
    /// Starts the sync thread for the database at `db` (its log is `<db>-wal`).
    ///
    /// # Errors
    /// The thread cannot be started.
    pub fn start(db: &Path) -> io::Result<Durable> {
        Self::with(db, Box::new(|f: &File| f.sync_data()))
    }

    /// [`Durable::start`] with `sync` in place of `fdatasync`.
    pub fn with(db: &Path, sync: SyncFn) -> io::Result<Durable> {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        let log = Log {
            path: PathBuf::from(wal),
            file: None,
            sync,
        };
        let (tx, rx) = mpsc::channel();
        let failed = Arc::new(AtomicBool::new(false));
        let flag = failed.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-sync".into())
            .spawn(move || run(log, &rx, &flag))?;
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
            // The thread is gone (a bug): nobody can vouch for these commits.
            for job in jobs {
                job.answer(Err(unsynced("the sync thread is gone")));
            }
        }
    }

    /// A sync failed: the writer must stop taking work.
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

/// The WAL file, opened lazily and again whenever the path names another file.
struct Log {
    path: PathBuf,
    file: Option<(File, u64, u64)>,
    sync: SyncFn,
}

impl Log {
    fn sync(&mut self) -> io::Result<()> {
        let meta = std::fs::metadata(&self.path)?;
        let current =
            matches!(&self.file, Some((_, dev, ino)) if *dev == meta.dev() && *ino == meta.ino());
        if !current {
            let f = std::fs::OpenOptions::new().write(true).open(&self.path)?;
            // A log file new to us: its directory entry is made durable once, as SQLite does
            // for a log it creates.
            if let Some(dir) = self.path.parent() {
                let dir = if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir
                };
                File::open(dir)?.sync_all()?;
            }
            self.file = Some((f, meta.dev(), meta.ino()));
        }
        let (f, _, _) = self.file.as_ref().expect("opened above");
        (self.sync)(f)
    }
}

fn run(mut log: Log, rx: &mpsc::Receiver<Vec<Job>>, failed: &AtomicBool) {
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
                tracing::error!(error = %e, log = %log.path.display(), "fsync of the SQLite log failed; the writer stops, restart the gateway");
                failed.store(true, Ordering::Release);
                let why = e.to_string();
                for job in jobs {
                    job.answer(Err(unsynced(&why)));
                }
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
        fn run(&mut self, _: &Connection) -> StoreResult<()> {
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

    fn db() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        std::fs::write(dir.path().join("t.db-wal"), b"log").unwrap();
        (dir, db)
    }

    #[test]
    fn a_commit_is_answered_only_after_a_sync_that_began_after_it() {
        let (_dir, db) = db();
        let (began_tx, began) = std::sync::mpsc::channel::<()>();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = std::sync::Mutex::new(release_rx);
        let syncs = Arc::new(AtomicUsize::new(0));
        let counted = syncs.clone();
        let d = Durable::with(
            &db,
            Box::new(move |_f: &File| {
                let _ = began_tx.send(());
                release_rx.lock().unwrap().recv().unwrap();
                counted.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }),
        )
        .unwrap();
        let (j1, mut a1) = probe();
        d.answer(vec![j1]);
        began.recv_timeout(Duration::from_secs(5)).unwrap();
        // The first sync is under way; a second commit arrives during it.
        let (j2, mut a2) = probe();
        let (j3, mut a3) = probe();
        d.answer(vec![j2, j3]);
        std::thread::sleep(Duration::from_millis(50));
        assert!(a1.try_recv().is_err(), "answered before its sync returned");
        release.send(()).unwrap();
        assert!(
            matches!(a1.blocking_recv(), Ok(Ok(()))),
            "the first commit is answered once its sync returned"
        );
        // The second and third committed while the first sync ran: that sync may not cover
        // them, so they wait for the next one, which answers both.
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
    fn a_failed_sync_fails_its_commits_and_every_later_one() {
        let (_dir, db) = db();
        let d = Durable::with(
            &db,
            Box::new(|_f: &File| Err(io::Error::other("EIO from the disk"))),
        )
        .unwrap();
        let (j1, a1) = probe();
        d.answer(vec![j1]);
        match a1.blocking_recv().unwrap() {
            Err(StoreError::Unavailable(m)) => assert!(m.contains("EIO from the disk"), "{m}"),
            other => panic!("a failed sync answered {other:?}"),
        }
        assert!(d.failed(), "the writer is told to stop");
        let (j2, a2) = probe();
        d.answer(vec![j2]);
        assert!(matches!(
            a2.blocking_recv().unwrap(),
            Err(StoreError::Unavailable(_))
        ));
    }

    #[test]
    fn the_log_is_synced_through_the_file_at_its_path_now() {
        let (dir, db) = db();
        let inodes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = inodes.clone();
        let d = Durable::with(
            &db,
            Box::new(move |f: &File| {
                seen.lock().unwrap().push(f.metadata()?.ino());
                Ok(())
            }),
        )
        .unwrap();
        let (j, a) = probe();
        d.answer(vec![j]);
        assert!(matches!(a.blocking_recv(), Ok(Ok(()))));
        // The log is deleted and made again (a restart of SQLite's): the next sync must reach
        // the new file, not the unlinked one.
        let wal = dir.path().join("t.db-wal");
        let keep = File::open(&wal).unwrap();
        std::fs::remove_file(&wal).unwrap();
        std::fs::write(&wal, b"new log").unwrap();
        let (j, a) = probe();
        d.answer(vec![j]);
        assert!(matches!(a.blocking_recv(), Ok(Ok(()))));
        drop(keep);
        let now = std::fs::metadata(&wal).unwrap().ino();
        let seen = inodes.lock().unwrap().clone();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1], now, "synced the unlinked log");
    }
}
