//! The `sbwal` VFS: SQLite's default (`unix`) with the write-ahead log's appends gathered
//! into one `pwrite` per commit. Only the intake writer's connection opens its database
//! through it.
//!
//! SQLite writes each log frame with two calls, its 24-byte header and then the page, at
//! offsets that straddle the OS's 4 KB pages: under `benches/load.sh` a commit of ~26
//! messages made ~190 `pwrite`s and the kernel stepped through about three page-cache pages
//! per frame, a quarter of the writer thread's time. Here appends to the log are held in a
//! buffer and written in one call:
//! - when the page after a commit frame's header arrives (a header whose "database size
//!   after commit" field is not zero), in that same `xWrite`, so an error is SQLite's to see;
//! - when the buffer reaches [`CAP`];
//! - before any other call on the log (read, size, sync, truncate, close, file control, ...),
//!   and before a write that is not an append (a rewrite of an earlier frame, the header of
//!   a log that starts over);
//! - when the connection releases the log's write lock (`xShmLock` on lock 0): what is still
//!   held then was never committed (frames a rolled-back transaction spilled), and it goes
//!   out while this connection still owns the log's tail, before another connection can
//!   append at the same offsets;
//! - at `xShmBarrier` on the same connection's database file. SQLite calls it while it
//!   publishes a commit in the shared log index, between the index header's two copies, so
//!   no reader, in this process or another, can see a frame that is not in the file. The
//!   commit frame has been written by then; if a write failed here the process aborts, as
//!   it does when the log's fsync fails (`durable.rs`).
//!
//! `locking_mode = EXCLUSIVE` must not be set on this connection: SQLite then takes no
//! shared-memory locks, so the write lock's release would not be seen.
//!
//! Nothing changes on disk: the same bytes land at the same offsets, in order, before the
//! commit is visible and before the sync thread's `fdatasync`.

use rusqlite::ffi::{
    SQLITE_IOERR, SQLITE_IOERR_WRITE, SQLITE_OK, SQLITE_OPEN_MAIN_DB, SQLITE_OPEN_WAL,
    SQLITE_SHM_UNLOCK, sqlite3_file, sqlite3_int64, sqlite3_io_methods, sqlite3_vfs,
};
use std::collections::HashMap;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// The VFS's name, for `Connection::open_with_flags_and_vfs`.
pub(crate) const NAME: &str = "sbwal";
const NAME_C: &CStr = c"sbwal";

/// The most bytes held before they are written (a commit of ~30 messages is ~400 KB).
const CAP: usize = 4 << 20;

/// The most bytes one write hands the `unix` VFS (below its 128 KB limit).
const CHUNK: usize = 124 << 10;

/// The size of a log frame's header, and where its "database size after commit" sits.
const FRAME_HEADER: usize = 24;

/// Buffered appends and the `pwrite`s that carried them, for tests.
static APPENDS: AtomicU64 = AtomicU64::new(0);
static FLUSHES: AtomicU64 = AtomicU64::new(0);

struct Vfs {
    /// SQLite links registered VFSes through `pNext`, so it writes to this struct.
    ours: std::cell::UnsafeCell<sqlite3_vfs>,
    real: *mut sqlite3_vfs,
}
// SAFETY: both point at VFS structs that live for the whole process and that SQLite shares
// between threads itself.
unsafe impl Send for Vfs {}
unsafe impl Sync for Vfs {}

static VFS: OnceLock<Result<Box<Vfs>, c_int>> = OnceLock::new();

/// Main database files open through this VFS, by the address of their name: SQLite derives
/// a WAL's name from its database's name in the same allocation, so
/// `sqlite3_filename_database` of the WAL's name is that address.
static MAIN_FILES: Mutex<Option<HashMap<usize, usize>>> = Mutex::new(None);

/// Registers the VFS once (not as the default); `Err` holds SQLite's result code.
pub(crate) fn register() -> Result<(), c_int> {
    let vfs = VFS.get_or_init(|| {
        // SAFETY: `sqlite3_vfs_find(NULL)` initialises SQLite if need be and returns the
        // default VFS, which lives as long as the process.
        let real = unsafe { rusqlite::ffi::sqlite3_vfs_find(std::ptr::null()) };
        if real.is_null() {
            return Err(SQLITE_IOERR);
        }
        // SAFETY: `real` is a valid VFS; it is copied, and only the fields below change.
        // The `unix` VFS's other methods do not use the VFS pointer they are called with
        // beyond `mxPathname`, which the copy keeps.
        let mut ours = unsafe { *real };
        ours.szOsFile = std::mem::size_of::<File>() as c_int;
        ours.pNext = std::ptr::null_mut();
        ours.zName = NAME_C.as_ptr();
        ours.pAppData = std::ptr::null_mut();
        ours.xOpen = Some(x_open);
        let vfs = Box::new(Vfs {
            ours: std::cell::UnsafeCell::new(ours),
            real,
        });
        // SAFETY: the box is kept in the `OnceLock` for the rest of the process.
        let rc = unsafe { rusqlite::ffi::sqlite3_vfs_register(vfs.ours.get(), 0) };
        if rc != SQLITE_OK {
            return Err(rc);
        }
        Ok(vfs)
    });
    vfs.as_ref().map(|_| ()).map_err(|rc| *rc)
}

fn real_vfs() -> *mut sqlite3_vfs {
    match VFS.get() {
        Some(Ok(v)) => v.real,
        _ => std::ptr::null_mut(),
    }
}

/// (appends buffered, writes made of them) so far in this process.
#[cfg(test)]
pub(crate) fn counts() -> (u64, u64) {
    (
        APPENDS.load(Ordering::Relaxed),
        FLUSHES.load(Ordering::Relaxed),
    )
}

#[derive(PartialEq)]
enum Kind {
    Main,
    Wal,
    Other,
}

/// One open file: ours, in the memory SQLite gives `xOpen` (`szOsFile` bytes), wrapping the
/// real VFS's, which lives in `real_words` 8-byte words of our own (freed on drop).
#[repr(C)]
struct File {
    base: sqlite3_file,
    real: *mut sqlite3_file,
    real_words: usize,
    kind: Kind,
    /// Main: the address of its name in `MAIN_FILES`; its WAL, once that is open.
    name_key: usize,
    wal: *mut File,
    /// WAL: its main file (null once either is closed), the held bytes and where they go,
    /// the end of what was written or held, and whether the next append ends a commit.
    main: *mut File,
    buf: Vec<u8>,
    buf_at: i64,
    end: i64,
    commit_next: bool,
    /// A write of held bytes failed: until the write lock is released, every call on the
    /// log fails, so SQLite rolls the whole transaction back instead of carrying on with a
    /// log that misses frames it believes written.
    poisoned: bool,
}

/// The real file's memory, zeroed and 8-aligned.
fn real_alloc(words: usize) -> *mut sqlite3_file {
    Box::into_raw(vec![0u64; words].into_boxed_slice()) as *mut u64 as *mut sqlite3_file
}

/// # Safety
/// `p` came from [`real_alloc`] with `words`, and is not used afterwards.
unsafe fn real_free(p: *mut sqlite3_file, words: usize) {
    drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p as *mut u64, words)) });
}

impl Drop for File {
    fn drop(&mut self) {
        // SAFETY: `real` came from `real_alloc(real_words)`; the real file is closed.
        unsafe { real_free(self.real, self.real_words) };
    }
}

impl File {
    fn real_methods(&self) -> &sqlite3_io_methods {
        // SAFETY: the real file was opened successfully, so its methods are set.
        unsafe { &*(*self.real).pMethods }
    }

    /// Writes what is held; SQLite's result code.
    fn flush(&mut self) -> c_int {
        if self.buf.is_empty() {
            return SQLITE_OK;
        }
        let write = self.real_methods().xWrite.expect("xWrite");
        let mut rc = SQLITE_OK;
        // The `unix` VFS writes at most 128 KB - 1 in one call (`seekAndWriteFd` masks the
        // length with 0x1ffff, and a length of exactly 128 KB comes out as 0: "disk full").
        for (i, chunk) in self.buf.chunks(CHUNK).enumerate() {
            FLUSHES.fetch_add(1, Ordering::Relaxed);
            #[cfg(test)]
            if tests::FAIL_WRITES.with(|f| f.get()) {
                rc = rusqlite::ffi::SQLITE_FULL;
                break;
            }
            // SAFETY: the real file is open; the buffer outlives the call.
            rc = unsafe {
                write(
                    self.real,
                    chunk.as_ptr() as *const c_void,
                    chunk.len() as c_int,
                    self.buf_at + (i * CHUNK) as i64,
                )
            };
            if rc != SQLITE_OK {
                break;
            }
        }
        self.buf.clear();
        if rc != SQLITE_OK {
            self.poisoned = true;
            // Not `SQLITE_FULL`: after that SQLite may roll back only the statement at hand
            // and keep a transaction whose frames did not all reach the file.
            return SQLITE_IOERR_WRITE;
        }
        rc
    }

    fn write(&mut self, data: &[u8], at: i64) -> c_int {
        if self.poisoned {
            return SQLITE_IOERR_WRITE;
        }
        let end = at + data.len() as i64;
        // This write ends a commit if the frame header before it said so; a frame header
        // whose "database size after commit" is set announces that its page does.
        let ends_commit = std::mem::take(&mut self.commit_next);
        self.commit_next = data.len() == FRAME_HEADER && data[4..8] != [0, 0, 0, 0];
        // Held only while linked to the database file whose lock release and barrier write
        // it out; a log that could not be linked is written straight through.
        if at == self.end && at != 0 && !self.main.is_null() {
            if self.buf.is_empty() {
                self.buf_at = at;
            }
            APPENDS.fetch_add(1, Ordering::Relaxed);
            self.buf.extend_from_slice(data);
            self.end = end;
            if ends_commit || self.buf.len() >= CAP {
                let rc = self.flush();
                if rc != SQLITE_OK {
                    // What the file holds there is unknown: no appends until a write lands.
                    self.end = -1;
                }
                return rc;
            }
            return SQLITE_OK;
        }
        // Not an append: what is held goes first, then this, straight through.
        let rc = self.flush();
        if rc != SQLITE_OK {
            self.end = -1;
            return rc;
        }
        let write = self.real_methods().xWrite.expect("xWrite");
        // SAFETY: the real file is open; `data` outlives the call.
        let rc = unsafe {
            write(
                self.real,
                data.as_ptr() as *const c_void,
                data.len() as c_int,
                at,
            )
        };
        self.end = if rc == SQLITE_OK { end } else { -1 };
        rc
    }
}

/// # Safety
/// `f` is a file [`x_open`] opened and SQLite has not closed.
unsafe fn file<'a>(f: *mut sqlite3_file) -> &'a mut File {
    unsafe { &mut *(f as *mut File) }
}

fn main_files() -> std::sync::MutexGuard<'static, Option<HashMap<usize, usize>>> {
    MAIN_FILES.lock().unwrap_or_else(|p| p.into_inner())
}

unsafe extern "C" fn x_open(
    _vfs: *mut sqlite3_vfs,
    name: *const c_char,
    f: *mut sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let real_vfs = real_vfs();
    // SAFETY: the VFS is registered only after `real` was found.
    let real = unsafe { &*real_vfs };
    let words = (real.szOsFile as usize).div_ceil(8);
    let real_file = real_alloc(words);
    // SAFETY: `real_file` has the real VFS's `szOsFile` bytes, zeroed and 8-aligned.
    let rc = unsafe { (real.xOpen.expect("xOpen"))(real_vfs, name, real_file, flags, out_flags) };
    if rc != SQLITE_OK || unsafe { (*real_file).pMethods.is_null() } {
        // SAFETY: `f` points at our `szOsFile` bytes; no methods means SQLite will not close it.
        unsafe { (*f).pMethods = std::ptr::null() };
        if unsafe { !(*real_file).pMethods.is_null() } {
            unsafe { ((*(*real_file).pMethods).xClose.expect("xClose"))(real_file) };
        }
        // SAFETY: allocated above, closed, not kept.
        unsafe { real_free(real_file, words) };
        return if rc == SQLITE_OK { SQLITE_IOERR } else { rc };
    }
    let kind = if flags & SQLITE_OPEN_MAIN_DB != 0 && !name.is_null() {
        Kind::Main
    } else if flags & SQLITE_OPEN_WAL != 0 && !name.is_null() {
        Kind::Wal
    } else {
        Kind::Other
    };
    let mut ours = File {
        base: sqlite3_file { pMethods: &METHODS },
        real: real_file,
        real_words: words,
        kind,
        name_key: name as usize,
        wal: std::ptr::null_mut(),
        main: std::ptr::null_mut(),
        buf: Vec::new(),
        buf_at: 0,
        end: 0,
        commit_next: false,
        poisoned: false,
    };
    if ours.kind == Kind::Wal {
        let mut size: sqlite3_int64 = 0;
        // SAFETY: the real file is open.
        let rc =
            unsafe { (ours.real_methods().xFileSize.expect("xFileSize"))(ours.real, &mut size) };
        ours.end = if rc == SQLITE_OK { size } else { 0 };
    }
    let f = f as *mut File;
    // SAFETY: SQLite gave `szOsFile` = size_of::<File>() bytes, suitably aligned.
    unsafe { std::ptr::write(f, ours) };
    let ours = unsafe { &mut *f };
    match ours.kind {
        Kind::Main => {
            main_files()
                .get_or_insert_with(HashMap::new)
                .insert(ours.name_key, f as usize);
        }
        Kind::Wal => {
            // SAFETY: SQLite names a WAL after its database, in the database name's
            // allocation, so this is the address the database file registered.
            let db = unsafe { rusqlite::ffi::sqlite3_filename_database(name) } as usize;
            if let Some(&m) = main_files().as_ref().and_then(|m| m.get(&db)) {
                let main = m as *mut File;
                ours.main = main;
                // SAFETY: a registered main file is open (it leaves the map when closed).
                unsafe { (*main).wal = f };
            }
        }
        Kind::Other => {}
    }
    SQLITE_OK
}

static METHODS: sqlite3_io_methods = sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: Some(x_shm_map),
    xShmLock: Some(x_shm_lock),
    xShmBarrier: Some(x_shm_barrier),
    xShmUnmap: Some(x_shm_unmap),
    xFetch: Some(x_fetch),
    xUnfetch: Some(x_unfetch),
};

// SAFETY (all below): SQLite calls these only on files `x_open` opened and not yet closed.
// Each flushes what a WAL holds first, then forwards to the real file.

/// Flushes a WAL's held bytes; on a database file, nothing.
unsafe fn flushed<'a>(f: *mut sqlite3_file) -> (&'a mut File, c_int) {
    let f = unsafe { file(f) };
    let rc = match f.kind {
        Kind::Wal if f.poisoned => SQLITE_IOERR_WRITE,
        Kind::Wal => f.flush(),
        _ => SQLITE_OK,
    };
    (f, rc)
}

macro_rules! forward {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(f: *mut sqlite3_file $(, $arg: $ty)*) -> c_int {
            let (f, rc) = unsafe { flushed(f) };
            if rc != SQLITE_OK {
                return rc;
            }
            match f.real_methods().$method {
                Some(m) => unsafe { m(f.real $(, $arg)*) },
                None => SQLITE_IOERR,
            }
        }
    };
}

forward!(x_read, xRead, (buf: *mut c_void, amt: c_int, at: sqlite3_int64));
forward!(x_truncate, xTruncate, (size: sqlite3_int64));
forward!(x_sync, xSync, (flags: c_int));
forward!(x_file_size, xFileSize, (size: *mut sqlite3_int64));
forward!(x_lock, xLock, (level: c_int));
forward!(x_unlock, xUnlock, (level: c_int));
forward!(x_check_reserved_lock, xCheckReservedLock, (out: *mut c_int));
forward!(x_file_control, xFileControl, (op: c_int, arg: *mut c_void));
forward!(x_shm_map, xShmMap, (page: c_int, size: c_int, extend: c_int, out: *mut *mut c_void));
forward!(x_shm_unmap, xShmUnmap, (delete: c_int));
forward!(x_fetch, xFetch, (at: sqlite3_int64, amt: c_int, out: *mut *mut c_void));
forward!(x_unfetch, xUnfetch, (at: sqlite3_int64, p: *mut c_void));

unsafe extern "C" fn x_write(
    f: *mut sqlite3_file,
    data: *const c_void,
    amt: c_int,
    at: sqlite3_int64,
) -> c_int {
    let f = unsafe { file(f) };
    if f.kind != Kind::Wal || amt <= 0 {
        return match f.real_methods().xWrite {
            Some(m) => unsafe { m(f.real, data, amt, at) },
            None => SQLITE_IOERR,
        };
    }
    // SAFETY: SQLite passes `amt` readable bytes at `data`.
    let data = unsafe { std::slice::from_raw_parts(data as *const u8, amt as usize) };
    f.write(data, at)
}

unsafe extern "C" fn x_shm_lock(
    f: *mut sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    let f = unsafe { file(f) };
    if f.kind == Kind::Main && flags & SQLITE_SHM_UNLOCK != 0 && offset == 0 && !f.wal.is_null() {
        // Lock 0 is the log's write lock: this connection's write transaction is over, and
        // another connection may append to the log next, at the same offsets. Whatever is
        // still held was never committed (a commit goes out at its commit frame, or at the
        // barrier that publishes it), e.g. frames a rolled-back transaction spilled; it is
        // written now, while this connection still owns the log's tail, as SQLite's own VFS
        // would have done, so it cannot land later on top of another connection's frames. If
        // that write fails, the bytes are dropped: nobody can read them.
        // SAFETY: a linked WAL is open (closing it clears the link).
        let wal = unsafe { &mut *f.wal };
        if wal.poisoned || wal.flush() != SQLITE_OK {
            wal.end = -1;
        }
        wal.buf.clear();
        wal.commit_next = false;
        wal.poisoned = false;
    }
    match f.real_methods().xShmLock {
        Some(m) => unsafe { m(f.real, offset, n, flags) },
        None => SQLITE_IOERR,
    }
}

unsafe extern "C" fn x_sector_size(f: *mut sqlite3_file) -> c_int {
    let f = unsafe { file(f) };
    match f.real_methods().xSectorSize {
        Some(m) => unsafe { m(f.real) },
        None => 4096,
    }
}

unsafe extern "C" fn x_device_characteristics(f: *mut sqlite3_file) -> c_int {
    let f = unsafe { file(f) };
    match f.real_methods().xDeviceCharacteristics {
        Some(m) => unsafe { m(f.real) },
        None => 0,
    }
}

unsafe extern "C" fn x_shm_barrier(f: *mut sqlite3_file) {
    let f = unsafe { file(f) };
    if f.kind == Kind::Main && !f.wal.is_null() {
        // SAFETY: a linked WAL is open (closing it clears the link).
        let wal = unsafe { &mut *f.wal };
        let rc = wal.flush();
        if rc != SQLITE_OK {
            // SQLite is about to publish frames that may not be in the file; it cannot be
            // told here, so stop rather than let a reader see a log with a hole.
            eprintln!("switchboard: writing the SQLite log failed (code {rc}); aborting");
            std::process::abort();
        }
    }
    if let Some(m) = f.real_methods().xShmBarrier {
        unsafe { m(f.real) }
    }
}

unsafe extern "C" fn x_close(f: *mut sqlite3_file) -> c_int {
    let (ours, flush_rc) = unsafe { flushed(f) };
    match ours.kind {
        Kind::Main => {
            if let Some(m) = main_files().as_mut() {
                m.remove(&ours.name_key);
            }
            if !ours.wal.is_null() {
                // SAFETY: a linked WAL is open.
                unsafe { (*ours.wal).main = std::ptr::null_mut() };
            }
        }
        Kind::Wal => {
            if !ours.main.is_null() {
                // SAFETY: a linked main file is open.
                unsafe { (*ours.main).wal = std::ptr::null_mut() };
            }
        }
        Kind::Other => {}
    }
    let rc = match ours.real_methods().xClose {
        Some(m) => unsafe { m(ours.real) },
        None => SQLITE_OK,
    };
    // SAFETY: SQLite does not use the file after `xClose`; this drops the buffer and the
    // real file's memory.
    unsafe { std::ptr::drop_in_place(f as *mut File) };
    if flush_rc != SQLITE_OK { flush_rc } else { rc }
}

#[cfg(test)]
mod tests {
    use rusqlite::{Connection, OpenFlags};

    thread_local! {
        /// Makes this thread's writes of held bytes fail, as a full disk would.
        pub(super) static FAIL_WRITES: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// A connection through `sbwal` as the writer's: the log on, `synchronous = NORMAL`.
    fn open_sbwal(path: &std::path::Path) -> Connection {
        let w =
            Connection::open_with_flags_and_vfs(path, OpenFlags::default(), super::NAME).unwrap();
        let mode: String = w
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        w.pragma_update(None, "synchronous", "NORMAL").unwrap();
        w
    }

    fn assert_intact(c: &Connection) {
        let ok: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
    }

    fn count(c: &Connection) -> i64 {
        c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    fn copy_of(dir: &std::path::Path, stem: &str, n: u32) -> Connection {
        // What a crash right now would leave: the database and its log as the OS has them.
        let to = dir.join(format!("copy{n}.db"));
        std::fs::copy(dir.join(format!("{stem}.db")), &to).unwrap();
        std::fs::copy(
            dir.join(format!("{stem}.db-wal")),
            dir.join(format!("copy{n}.db-wal")),
        )
        .unwrap();
        Connection::open(&to).unwrap()
    }

    /// Through the VFS: commits of random rows (index pages at random places), a small page
    /// cache that spills frames before the commit, pages written twice in one transaction, a
    /// rollback after a spill and the log starting over. After every commit a reader on
    /// SQLite's own VFS sees it, and a copy of the files (a crash at that moment) holds it;
    /// at the end the file is intact, and the appends went out in far fewer writes.
    #[test]
    fn the_log_through_sbwal_is_complete_at_every_commit() {
        super::register().unwrap();
        let (appends0, flushes0) = super::counts();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let w = open_sbwal(&path);
        w.pragma_update(None, "cache_size", 200).unwrap();
        w.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        w.execute_batch(
            "CREATE TABLE t (k TEXT NOT NULL, n INTEGER NOT NULL, v BLOB);
             CREATE UNIQUE INDEX t_k ON t (k);",
        )
        .unwrap();
        let r = Connection::open(&path).unwrap();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut rows = 0i64;
        for round in 0..120u32 {
            w.execute_batch("BEGIN IMMEDIATE").unwrap();
            let tx = &w;
            let n = 5 + (next() % 60) as usize;
            for _ in 0..n {
                tx.execute(
                    "INSERT INTO t (k, n, v) VALUES (?1, 0, randomblob(?2))",
                    rusqlite::params![format!("{:016x}", next()), 50 + (next() % 400) as i64],
                )
                .unwrap();
            }
            rows += n as i64;
            if round % 7 == 0 {
                // Every row rewritten twice: once the table outgrows the 200 pages of cache,
                // pages spill to the log before the commit.
                tx.execute("UPDATE t SET n = n + 1", []).unwrap();
                tx.execute("UPDATE t SET n = n + 1", []).unwrap();
            }
            if round % 11 == 5 {
                w.execute_batch("SAVEPOINT sp").unwrap();
                for i in 0..300 {
                    w.execute(
                        "INSERT INTO t (k, n, v) VALUES (?1, 0, randomblob(300))",
                        [format!("gone-{round}-{i}")],
                    )
                    .unwrap();
                }
                w.execute_batch("ROLLBACK TO sp; RELEASE sp").unwrap();
            }
            if let Err(e) = w.execute_batch("COMMIT") {
                let ok: String = w
                    .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                    .unwrap();
                panic!(
                    "round {round}: {e}; autocommit {}; integrity {ok}",
                    w.is_autocommit()
                );
            }
            assert_eq!(count(&r), rows, "a reader sees commit {round}");
            if round % 10 == 3 {
                assert_eq!(
                    count(&copy_of(dir.path(), "w", round)),
                    rows,
                    "crash copy {round}"
                );
            }
            if round % 40 == 39 {
                // The log starts over: its header is rewritten at offset 0.
                let (busy, _, _): (i64, i64, i64) = w
                    .query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .unwrap();
                assert_eq!(busy, 0);
            }
        }
        // A big transaction rolled back after spilling, then more commits.
        let tx = w.unchecked_transaction().unwrap();
        for i in 0..3000 {
            tx.execute(
                "INSERT INTO t (k, n, v) VALUES (?1, 0, randomblob(300))",
                [format!("rb-{i}")],
            )
            .unwrap();
        }
        tx.rollback().unwrap();
        for _ in 0..10 {
            w.execute(
                "INSERT INTO t (k, n, v) VALUES (?1, 0, randomblob(100))",
                [format!("{:016x}", next())],
            )
            .unwrap();
            rows += 1;
            assert_eq!(count(&r), rows);
        }
        assert_intact(&r);
        let copy = copy_of(dir.path(), "w", 999);
        assert_eq!(count(&copy), rows);
        assert_intact(&copy);
        drop(w);
        let again = Connection::open(&path).unwrap();
        assert_eq!(count(&again), rows);
        let (appends, flushes) = super::counts();
        let (appends, flushes) = (appends - appends0, flushes - flushes0);
        assert!(flushes > 100, "{flushes} writes");
        assert!(
            appends > 4 * flushes,
            "{appends} appends went out in {flushes} writes"
        );
    }

    /// A transaction on the `sbwal` connection spills pages to the log (a 16-page cache)
    /// and rolls back; another connection, on SQLite's own VFS, then commits at the same
    /// offsets of the log. The spilled bytes must not land on top of its frames later: both
    /// connections, and a fresh one after all are closed (the log read from disk), see
    /// every committed row, and the file is intact.
    #[test]
    fn a_rolled_back_spill_never_lands_on_another_connections_commit() {
        super::register().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let w = open_sbwal(&path);
        w.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        w.execute_batch("CREATE TABLE t (k TEXT NOT NULL, v BLOB); CREATE INDEX t_k ON t (k);")
            .unwrap();
        w.pragma_update(None, "cache_size", 16).unwrap();
        let o = Connection::open(&path).unwrap();
        o.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        let mut rows = 0i64;
        for round in 0..5 {
            // An empty log: the rollback then reads page 1 from the database file, not from
            // the log, so nothing on the log's handle makes the held bytes go out first.
            let busy: i64 = o
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
                .unwrap();
            assert_eq!(busy, 0);
            let tx = w.unchecked_transaction().unwrap();
            for i in 0..2000 {
                tx.execute(
                    "INSERT INTO t (k, v) VALUES (?1, randomblob(300))",
                    [format!("spilled-{round}-{i}")],
                )
                .unwrap();
            }
            tx.rollback().unwrap();
            let tx = o.unchecked_transaction().unwrap();
            // More pages than the spill wrote, so its frames cover the spill's offsets.
            for i in 0..3000 {
                tx.execute(
                    "INSERT INTO t (k, v) VALUES (?1, randomblob(300))",
                    [format!("kept-{round}-{i}")],
                )
                .unwrap();
            }
            tx.commit().unwrap();
            rows += 3000;
            assert_eq!(count(&w), rows, "the sbwal connection, round {round}");
            assert_eq!(count(&o), rows, "the other connection, round {round}");
        }
        for c in [&w, &o] {
            assert_intact(c);
        }
        // What a crash now would leave, read by SQLite's own VFS: the log as it is on disk.
        assert_eq!(count(&copy_of(dir.path(), "s", 0)), rows, "crash copy");
        drop(w);
        drop(o);
        let again = Connection::open(&path).unwrap();
        assert_eq!(count(&again), rows);
        assert_intact(&again);
    }

    /// The disk fails while held bytes go out: the transaction fails as a whole (no
    /// statement-level rollback that keeps going with a log missing frames), the connection
    /// works again after it, and every committed row is there, also in a crash copy.
    #[test]
    fn a_failed_write_of_held_bytes_fails_the_whole_transaction() {
        super::register().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.db");
        let w = open_sbwal(&path);
        w.execute_batch("CREATE TABLE t (k TEXT NOT NULL, v BLOB); CREATE INDEX t_k ON t (k);")
            .unwrap();
        let insert = |c: &Connection, k: String| {
            c.execute("INSERT INTO t (k, v) VALUES (?1, randomblob(300))", [k])
        };
        let tx = w.unchecked_transaction().unwrap();
        for i in 0..500 {
            insert(&tx, format!("a-{i}")).unwrap();
        }
        tx.commit().unwrap();
        // A commit whose frames cannot be written.
        FAIL_WRITES.with(|f| f.set(true));
        let tx = w.unchecked_transaction().unwrap();
        for i in 0..500 {
            insert(&tx, format!("b-{i}")).unwrap();
        }
        let err = tx.commit().unwrap_err();
        FAIL_WRITES.with(|f| f.set(false));
        assert_eq!(
            err.sqlite_error_code(),
            Some(rusqlite::ErrorCode::SystemIoFailure),
            "{err}"
        );
        assert!(w.is_autocommit(), "the failed transaction is over");
        // A spill that cannot be written, inside a transaction (a 16-page cache).
        w.pragma_update(None, "cache_size", 16).unwrap();
        FAIL_WRITES.with(|f| f.set(true));
        let tx = w.unchecked_transaction().unwrap();
        let mut failed = false;
        for i in 0..3000 {
            if insert(&tx, format!("c-{i}")).is_err() {
                failed = true;
                break;
            }
        }
        assert!(
            failed || tx.commit().is_err(),
            "a transaction over a failed write must fail"
        );
        FAIL_WRITES.with(|f| f.set(false));
        if !w.is_autocommit() {
            w.execute_batch("ROLLBACK").unwrap();
        }
        w.pragma_update(None, "cache_size", -2000).unwrap();
        for i in 0..100 {
            insert(&w, format!("d-{i}")).unwrap();
        }
        let o = Connection::open(&path).unwrap();
        for c in [&w, &o] {
            assert_eq!(count(c), 600);
            assert_intact(c);
        }
        assert_eq!(count(&copy_of(dir.path(), "f", 0)), 600, "crash copy");
    }
}
